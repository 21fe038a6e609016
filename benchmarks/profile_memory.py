"""What one open session holds in the client, line by line, beside a bare trio-websocket connection.

Run ``python benchmarks/profile_memory.py [--sessions K] [--top N]``. It starts the reference
server and the bare JSON server of ``bare.py`` in second processes, holds K sessions (then K
bare trio-websocket connections that have each exchanged one request and reply) open in this
process under ``tracemalloc``, and prints the Python heap
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare import BareConnection, connect
from harness import ROOT, Server, info_for, port_of, raise_nofile, token_for, ws_headers


async def hold(kind: str, url: str, k: int) -> tracemalloc.Snapshot:
    from fsm_session.service import open_session_service

    port = port_of(url)
    ids = [f"bench-mem-{i}" for i in range(k)]
    tokens = [token_for(x) for x in ids]
    infos = [info_for(x) for x in ids]
    headers = [ws_headers(t) for t in tokens]
    stop = trio.Event()
    send, receive = trio.open_memory_channel[int](k)

    async def ours(i: int) -> None:
        async with open_session_service(url, access_token=tokens[i]) as session:
            await session.open(infos[i])
            await send.send(i)
            await stop.wait()

    async def bare(i: int) -> None:
        async with connect(port, headers[i]) as ws:
            conn = BareConnection(ws)
            await conn.open(infos[i])  # one request and its reply, as ours has done
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
        name = d.traceback[0].filename.split("site-packages/")[-1].split(f"{ROOT}/")[-1]
        print(f"      {d.size_diff / k:7.0f} B  {d.count_diff / k:5.1f} blocks  {name}")
    print("   by line:")
    for d in sorted(by_line, key=lambda d: -d.size_diff)[:top]:
        frame = d.traceback[0]
        name = frame.filename.split("site-packages/")[-1].split(f"{ROOT}/")[-1]
        print(
            f"      {d.size_diff / k:7.0f} B  {d.count_diff / k:5.1f} blocks  {name}:{frame.lineno}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    raise_nofile()
    ours_server = Server.reference(max_connections=args.sessions + 64)
    ws_server = Server.bare()
    try:
        tracemalloc.start(1)
        for kind, server in (("ours", ours_server), ("bare client", ws_server)):
            diffs = trio.run(hold, "ours" if kind == "ours" else "bare", server.url, args.sessions)
            show(kind, diffs, args.sessions, args.top)
    finally:
        ours_server.stop()
        ws_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
