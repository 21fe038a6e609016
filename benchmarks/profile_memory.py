"""What one open session holds in the client, line by line, beside a bare trio-websocket connection.

Run ``python benchmarks/profile_memory.py [--sessions K] [--top N]``. It starts the reference
server and the bare trio-websocket server of ``wire.py`` in second processes, holds K sessions
(then K bare connections) open in this process under ``tracemalloc``, and prints the Python heap
growth per session grouped by the source line that allocated it, and by file. tracemalloc sees
only the Python heap (not the kernel's socket buffers or the allocator's slack), so its totals
are below the RSS figures of ``wire.py``. Loopback only.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import trio
import trio_websocket

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wire

from fsm_session.protocol import SUBPROTOCOL


async def hold(kind: str, url: str, k: int) -> tracemalloc.Snapshot:
    from fsm_session.service import open_session_service

    port = int(url.rsplit(":", 1)[1].strip("/"))
    ids = [f"bench-mem-{i}" for i in range(k)]
    tokens = [wire.token_for(x) for x in ids]
    infos = [wire.info_for(x) for x in ids]
    headers = [wire.ws_headers(t) for t in tokens]
    stop = trio.Event()
    send, receive = trio.open_memory_channel[int](k)

    async def ours(i: int) -> None:
        async with open_session_service(url, access_token=tokens[i]) as session:
            await session.open(infos[i])
            await send.send(i)
            await stop.wait()

    async def bare(i: int) -> None:
        async with trio_websocket.open_websocket(
            wire.HOST,
            port,
            "/",
            use_ssl=False,
            subprotocols=[SUBPROTOCOL],
            extra_headers=headers[i],
        ):
            await send.send(i)
            await stop.wait()

    fn: Any = ours if kind == "ours" else bare
    gc.collect()
    before = tracemalloc.take_snapshot()
    async with trio.open_nursery() as nursery:
        for first in range(0, k, 250):
            n = min(250, k - first)
            for i in range(first, first + n):
                nursery.start_soon(fn, i)
            for _ in range(n):
                await receive.receive()
        gc.collect()
        after = tracemalloc.take_snapshot()
        stop.set()
    return after.compare_to(before, "lineno"), after.compare_to(before, "filename")  # type: ignore[return-value]


def show(title: str, diffs: Any, k: int, top: int) -> None:
    by_line, by_file = diffs
    total = sum(d.size_diff for d in by_file)
    print(
        f"\n{title}: {total / k:.0f} B of Python heap per session "
        f"({sum(d.count_diff for d in by_file) / k:.1f} blocks)"
    )
    print("   by file:")
    for d in sorted(by_file, key=lambda d: -d.size_diff)[:12]:
        name = d.traceback[0].filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(f"      {d.size_diff / k:7.0f} B  {d.count_diff / k:5.1f} blocks  {name}")
    print("   by line:")
    for d in sorted(by_line, key=lambda d: -d.size_diff)[:top]:
        frame = d.traceback[0]
        name = frame.filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(
            f"      {d.size_diff / k:7.0f} B  {d.count_diff / k:5.1f} blocks  {name}:{frame.lineno}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    wire.raise_nofile()
    me = str(Path(wire.__file__).resolve())
    sizes = wire.our_frames("x").sizes
    ours_server = wire.Server([me, "--serve", "ours", "--max-connections", str(args.sessions + 64)])
    ws_server = wire.Server(
        [me, "--serve", "ws", "--replies", f"{sizes['opened']},{sizes['closed']}"]
    )
    try:
        tracemalloc.start(1)
        for kind, server in (("ours", ours_server), ("bare trio-websocket", ws_server)):
            diffs = trio.run(hold, "ours" if kind == "ours" else "ws", server.url, args.sessions)
            show(kind, diffs, args.sessions, args.top)
    finally:
        ours_server.stop()
        ws_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
