"""Where the time of one open/close cycle goes, on the client and on the reference server.

Run ``python benchmarks/profile_cycle.py [--cycles N] [--top N]``. It starts the reference server
in a second process under ``cProfile`` (``wire.py --serve ours --profile``), runs N open/close
cycles of one session here under ``cProfile``, stops the server with SIGINT so that it writes its
profile, and prints for each side the CPU time per cycle by layer (machine, codec, tokens,
logging, trio-websocket, wsproto, trio, ...) and the most expensive functions. Loopback only.
``--bare-server`` runs our client against the bare JSON server of ``bare.py`` instead (the
client-only figure of ``wire.py``); ``--floor`` profiles the bare client against it.

Self time (``tottime``) is summed by the file each function lives in, so every microsecond is
counted once. The layers are a reading aid, not a precise attribution: a helper of the standard
library called by the codec counts as "stdlib" (``json`` is given its own line).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import signal
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare import bare_cycle
from harness import Server, info_for, port_of, token_for, ws_headers

LAYERS: list[tuple[str, str]] = [
    ("fsm_session/machine.py", "machine (ours)"),
    ("fsm_session/session_rules.py", "machine (ours)"),
    ("fsm_session/engine/", "machine (ours)"),
    ("/transitions/", "machine (transitions)"),
    ("fsm_session/protocol.py", "codec (ours)"),
    ("/json/", "codec (json)"),
    ("fsm_session/service.py", "service"),
    ("fsm_session/transport.py", "transport"),
    ("fsm_session/events.py", "service"),
    ("fsm_session/models.py", "models"),
    ("fsm_session/errors.py", "models"),
    ("fsm_session/tokens.py", "tokens"),
    ("/jwt/", "tokens (PyJWT)"),
    ("fsm_session/server/registry.py", "server registry"),
    ("fsm_session/server/handlers.py", "server handlers"),
    ("fsm_session/server/app.py", "server app"),
    ("/logging/", "logging"),
    ("/trio_websocket/", "trio-websocket"),
    ("/wsproto/", "wsproto"),
    ("/h11/", "h11 (handshake)"),
    ("/trio/_core/", "trio core (scheduler, I/O)"),
    ("/trio/", "trio (streams, sync, sockets)"),
    ("/outcome/", "trio core (scheduler, I/O)"),
    ("/idna/", "stdlib/idna"),
    ("/cryptography/", "tokens (PyJWT)"),
]


def layer_of(filename: str) -> str:
    for needle, name in LAYERS:
        if needle in filename:
            return name
    if filename.startswith("~") or filename == "":
        return "builtins (C)"
    if "/benchmarks/" in filename:
        return "benchmark loop"
    return "stdlib/other"


def report(title: str, stats: pstats.Stats, cycles: int, top: int) -> None:
    by_layer: dict[str, float] = {}
    rows = []
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, callers) in raw.items():
        name = layer_of(filename)
        if name == "builtins (C)":
            # Charge a C function to the layer of its heaviest caller.
            best = max(callers.items(), key=lambda kv: kv[1][2], default=None)
            if best is not None:
                name = layer_of(best[0][0]) + " (C calls)"
        by_layer[name] = by_layer.get(name, 0.0) + tottime
        rows.append((tottime, ncalls, cumtime, f"{Path(filename).name}:{line}({func})"))
    total = sum(by_layer.values())
    print(f"\n{title}: {total / cycles * 1e6:.0f} µs per cycle (profiled, so inflated)")
    for name, t in sorted(by_layer.items(), key=lambda kv: -kv[1]):
        if t / total < 0.005:
            continue
        print(f"   {name:38} {t / cycles * 1e6:7.0f} µs  {t / total:6.1%}")
    print(f"   top {top} functions by self time (µs/cycle, calls/cycle):")
    for tottime, ncalls, _cum, where in sorted(rows, reverse=True)[:top]:
        print(f"      {tottime / cycles * 1e6:7.1f}  {ncalls / cycles:6.1f}  {where}")


async def client(url: str, cycles: int, profiler: cProfile.Profile, floor: bool) -> float:
    from fsm_session.service import open_session_service

    external_id = "bench-profile"
    token = token_for(external_id)
    info = info_for(external_id)
    async with open_session_service(url, access_token=token) as session:

        async def ours() -> None:
            await session.open(info)
            await session.close()

        bare = partial(bare_cycle, port_of(url), ws_headers(token), info)
        cycle = bare if floor else ours
        for _ in range(50):
            await cycle()
        t0 = time.perf_counter()
        profiler.enable()
        for _ in range(cycles):
            await cycle()
        profiler.disable()
        return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="profile the bare client against the bare JSON server instead",
    )
    parser.add_argument(
        "--bare-server",
        action="store_true",
        help="profile our client against the bare JSON server (the client-only figure)",
    )
    parser.add_argument(
        "--wall", action="store_true", help="wall-clock time (waits included), not CPU time"
    )
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="fsm-profile-"))
    server_prof = out / "server.prof"
    extra = ("--profile", str(server_prof), *([] if args.wall else ["--cpu"]))
    bare_server = args.floor or args.bare_server
    server = Server.bare(extra) if bare_server else Server.reference(extra=extra)
    try:
        profiler = cProfile.Profile() if args.wall else cProfile.Profile(time.process_time)
        elapsed = trio.run(client, server.url, args.cycles, profiler, args.floor)
    finally:
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(30)
        server.stop()
    print(
        f"{args.cycles} cycles in {elapsed:.2f} s under the profiler "
        f"({elapsed / args.cycles * 1e3:.2f} ms per cycle)"
    )
    report("client", pstats.Stats(profiler), args.cycles, args.top)
    # The server also profiled the warm-up cycles.
    report("server", pstats.Stats(str(server_prof)), args.cycles + 50, args.top)
    print(f"\nprofiles: {out}")
    profiler.dump_stats(out / "client.prof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
