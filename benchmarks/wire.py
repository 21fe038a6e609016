"""What a session costs on the wire, printed beside bare trio-websocket and raw trio TCP.

Run ``python benchmarks/wire.py`` (``--quick``, the default, about 25 s) or
``python benchmarks/wire.py --full`` (about 5 minutes). ``--json [PATH]`` also writes every figure
as JSON, by default under ``benchmarks/results/`` (ignored by git), to compare commits. Only
loopback (127.0.0.1) traffic; every loop is bounded.

The client is this process; every server is a second process started here, so the two sides do
not share a core's event loop. Three figures, each beside a floor measured in the same run:

1. **Cycle latency**: ``await session.open(info)`` then ``await session.close()`` of one session
   against the reference server (``python -m fsm_session.cli serve --port 0``), median and p99
   over N cycles. Floors, with the same number of frames of the same sizes (the sizes are taken
   from our own encoded ``open``/``opened``/``close``/``closed`` frames, and the floor's upgrade
   carries the same subprotocol and ``Authorization`` header):

   * ``trio-websocket``: ``open_websocket`` (TCP connect + upgrade), send, receive, send,
     receive, close handshake, against a bare ``serve_websocket`` server in its own process;
   * ``tcp``: ``open_tcp_stream``, the same four frames with a 4-byte length prefix, then
     ``send_eof`` and wait for the server's EOF.

   The three kinds run in alternating rounds, so drift and noise hit all of them alike.

2. **Scale**: K sessions open at once (each its own service, token and external ID), opened
   concurrently in batches. Time to open them all; client RSS growth per session
   (``/proc/self/statm``) and server RSS growth per session (``/proc/<pid>/statm``), beside K
   bare trio-websocket connections against the bare server. The reference server here is started
   by ``wire.py --serve ours`` (the same ``serve()`` as the CLI, INFO logging to stderr like the
   CLI) because the CLI cannot raise ``ServerConfig.max_connections`` (1,024 by default).

3. **Churn**: C concurrent sessions each doing open/close cycles until N cycles are done:
   cycles per second (beside bare trio-websocket doing the same over C connections), and client
   RSS after warm-up (10% of the cycles) against RSS at the end.

This script asserts nothing: it prints figures and ratios, and the reader judges.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import trio
import trio_websocket

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fsm_session.protocol import SUBPROTOCOL, Close, Closed, Open, Opened, encode  # noqa: E402

SECRET = "wire-benchmark-secret-" + "x" * 32  # Loopback only; at least 32 bytes (HS256).
HOST = "127.0.0.1"
PAGE = os.sysconf("SC_PAGE_SIZE")
KIB = 1024


@dataclass(frozen=True)
class Plan:
    name: str
    cycles: int
    rounds: int
    scale: int
    batch: int
    churn_cycles: int
    churn_sessions: int
    churn_floor_cycles: int


QUICK = Plan("quick", 300, 6, 1_000, 250, 5_000, 50, 5_000)
FULL = Plan("full", 3_000, 20, 10_000, 500, 100_000, 100, 20_000)


# --------------------------------------------------------------------------- measuring helpers


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class Server:
    """A server in a child process; its first stdout line is its URL."""

    def __init__(self, args: list[str], log: Path | None = None) -> None:
        env = dict(os.environ, FSM_SESSION_SECRET=SECRET, PYTHONUNBUFFERED="1")
        self._log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=ROOT,
            preexec_fn=raise_nofile,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("ws://"):
            self.stop()
            raise RuntimeError(f"server {args} did not print its URL (got {line!r})")
        self.url = line
        port = int(line.rsplit(":", 1)[1].strip("/"))
        self.port = port

    @property
    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- frames and tokens


@dataclass(frozen=True)
class Frames:
    open: str
    opened: str
    close: str
    closed: str

    @property
    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k).encode()) for k in ("open", "opened", "close", "closed")}


def our_frames(external_id: str) -> Frames:
    from fsm_session.models import Participant, ParticipantInfo
    from fsm_session.server.registry import random_participant_id

    info = ParticipantInfo(name="Bench User", external_id=external_id, avatar_url=None)
    return Frames(
        open=encode(Open(1, info)),
        opened=encode(Opened(1, Participant(random_participant_id(), info))),
        close=encode(Close(2)),
        closed=encode(Closed(2)),
    )


def token_for(external_id: str) -> str:
    from fsm_session.tokens import mint

    return mint(SECRET, external_id=external_id, ttl=24 * 3600, now=time.time())


def info_for(external_id: str) -> Any:
    from fsm_session.models import ParticipantInfo

    return ParticipantInfo(name="Bench User", external_id=external_id, avatar_url=None)


def pad(size: int) -> str:
    return "x" * size


# --------------------------------------------------------------------------- floor servers


class _PortReporter:
    """Passes a server's ``started`` value on as the URL of its port."""

    def __init__(self, task_status: Any) -> None:
        self._task_status = task_status

    def started(self, value: Any) -> None:
        # trio.serve_tcp reports its listeners; trio_websocket.serve_websocket its server.
        port = value[0].socket.getsockname()[1] if isinstance(value, list) else value.port
        self._task_status.started(f"ws://{HOST}:{port}/")


async def serve_bare_ws(replies: list[int], task_status: Any) -> None:
    """A bare trio-websocket server: the i-th frame of a connection gets a reply of replies[i]."""
    texts = [pad(n) for n in replies]

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        try:
            ws = await request.accept(subprotocol=SUBPROTOCOL)
            i = 0
            while True:
                await ws.get_message()
                await ws.send_message(texts[i % len(texts)])
                i += 1
        except trio_websocket.ConnectionClosed:
            pass
        except Exception:
            pass

    await trio_websocket.serve_websocket(
        handler, HOST, 0, ssl_context=None, task_status=_PortReporter(task_status)
    )


async def serve_tcp(replies: list[int], task_status: Any) -> None:
    """Raw trio TCP: 4-byte length-prefixed frames; the i-th frame gets replies[i]; EOF closes."""
    blobs = [struct.pack("!I", n) + pad(n).encode() for n in replies]

    async def handler(stream: trio.SocketStream) -> None:
        buf = bytearray()
        i = 0
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    (n,) = struct.unpack_from("!I", buf)
                    if len(buf) < 4 + n:
                        break
                    del buf[: 4 + n]
                    await stream.send_all(blobs[i % len(blobs)])
                    i += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_tcp(handler, 0, host=HOST, task_status=_PortReporter(task_status))


async def serve_ours(max_connections: int, task_status: Any) -> None:
    from fsm_session.server import ServerConfig, serve

    # Every session of the scale and churn runs comes from 127.0.0.1, hundreds of handshakes at
    # once: the per-address and pending caps (meant for hostile floods) are raised to match.
    config = ServerConfig(
        max_connections=max_connections,
        max_connections_per_peer=max_connections,
        max_pending=max_connections,
        max_pending_per_peer=max_connections,
        max_requests_per_second=1e9,
    )
    await serve(HOST, 0, secret=SECRET, config=config, task_status=task_status)


def run_server(
    kind: str, replies: list[int], max_connections: int, profile: str | None, cpu: bool = False
) -> int:
    import cProfile
    import logging

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    raise_nofile()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if kind == "ws":
                url = await nursery.start(serve_bare_ws, replies)
            elif kind == "tcp":
                url = await nursery.start(serve_tcp, replies)
            else:
                url = await nursery.start(serve_ours, max_connections)
            print(url, flush=True)

    profiler = None
    if profile:
        profiler = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
    if profiler is not None:
        profiler.enable()
    try:
        trio.run(main)
    except KeyboardInterrupt:  # how profile_cycle.py stops a profiled server
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
    return 0


# --------------------------------------------------------------------------- clients


def ws_headers(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


async def ws_cycle(port: int, headers: Any, frames: Frames) -> None:
    async with trio_websocket.open_websocket(
        HOST, port, "/", use_ssl=False, subprotocols=[SUBPROTOCOL], extra_headers=headers
    ) as ws:
        await ws.send_message(frames.open)
        await ws.get_message()
        await ws.send_message(frames.close)
        await ws.get_message()


async def tcp_cycle(port: int, frames: Frames) -> None:
    stream = await trio.open_tcp_stream(HOST, port)
    try:
        for text, expect in ((frames.open, frames.opened), (frames.close, frames.closed)):
            data = text.encode()
            await stream.send_all(struct.pack("!I", len(data)) + data)
            want = 4 + len(expect.encode())
            got = 0
            while got < want:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise RuntimeError("tcp floor: early EOF")
                got += len(chunk)
        await stream.send_eof()
        while await stream.receive_some(65536):
            pass
    finally:
        await stream.aclose()


async def timed(fn: Callable[[], Awaitable[None]], n: int, out: list[float]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append((clock() - t0) / 1e3)  # µs


async def cycle_latency(plan: Plan, servers: dict[str, Server], frames: Frames) -> dict[str, Any]:
    from fsm_session.service import open_session_service

    external_id = "bench-cycle"
    token = token_for(external_id)
    info = info_for(external_id)
    headers = ws_headers(token)
    samples: dict[str, list[float]] = {"ours": [], "trio-websocket": [], "tcp": []}
    client_cpu = dict.fromkeys(samples, 0.0)
    server_cpu = dict.fromkeys(samples, 0.0)
    pids = {
        "ours": servers["cli"].proc.pid,
        "trio-websocket": servers["ws"].proc.pid,
        "tcp": servers["tcp"].proc.pid,
    }
    per_round = max(1, plan.cycles // plan.rounds)
    async with open_session_service(servers["cli"].url, access_token=token) as session:

        async def ours() -> None:
            await session.open(info)
            await session.close()

        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "ours": ours,
            "trio-websocket": partial(ws_cycle, servers["ws"].port, headers, frames),
            "tcp": partial(tcp_cycle, servers["tcp"].port, frames),
        }
        # Warm-up: imports, caches, first connections.
        for fn in kinds.values():
            for _ in range(20):
                await fn()
        for r in range(plan.rounds):
            order = list(kinds) if r % 2 == 0 else list(reversed(kinds))
            for name in order:
                gc.collect()
                c0, s0 = time.process_time(), cpu_seconds(pids[name])
                await timed(kinds[name], per_round, samples[name])
                client_cpu[name] += time.process_time() - c0
                server_cpu[name] += cpu_seconds(pids[name]) - s0
    result: dict[str, Any] = {}
    for name, values in samples.items():
        result[name] = {
            "n": len(values),
            "median_us": statistics.median(values),
            "p99_us": p99(values),
            "mean_us": statistics.fmean(values),
            "client_cpu_us": client_cpu[name] / len(values) * 1e6,
            "server_cpu_us": server_cpu[name] / len(values) * 1e6,
        }
    return result


async def scale_one(plan: Plan, kind: str, url: str, server_pid: int) -> dict[str, Any]:
    """K sessions (or bare connections) held open at once; run in a fresh child process."""
    from fsm_session.service import open_session_service

    k = plan.scale
    port = int(url.rsplit(":", 1)[1].strip("/"))
    ids = [f"bench-scale-{i}" for i in range(k)]
    tokens = [token_for(x) for x in ids]
    infos = [info_for(x) for x in ids]
    headers = [ws_headers(t) for t in tokens]

    async def hold_ours(i: int, opened: trio.MemorySendChannel[int], stop: trio.Event) -> None:
        async with open_session_service(url, access_token=tokens[i]) as session:
            await session.open(infos[i])
            await opened.send(i)
            await stop.wait()

    async def hold_ws(i: int, opened: trio.MemorySendChannel[int], stop: trio.Event) -> None:
        async with trio_websocket.open_websocket(
            HOST, port, "/", use_ssl=False, subprotocols=[SUBPROTOCOL], extra_headers=headers[i]
        ):
            await opened.send(i)
            await stop.wait()

    hold = hold_ours if kind == "ours" else hold_ws
    stop = trio.Event()
    send, receive = trio.open_memory_channel[int](k)
    gc.collect()
    client0, server0 = rss_bytes(), rss_bytes(server_pid)
    t0 = time.perf_counter()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for first in range(0, k, plan.batch):
                n = min(plan.batch, k - first)
                for i in range(first, first + n):
                    nursery.start_soon(hold, i, send, stop)
                for _ in range(n):
                    await receive.receive()
            elapsed = time.perf_counter() - t0
            gc.collect()
            await trio.sleep(0.5)  # let the server finish its bookkeeping
            client1, server1 = rss_bytes(), rss_bytes(server_pid)
            t1 = time.perf_counter()
            stop.set()
        closed_in = time.perf_counter() - t1
    return {
        "open_all_s": elapsed,
        "close_all_s": closed_in,
        "client_kib_per_session": (client1 - client0) / k / KIB,
        "server_kib_per_session": (server1 - server0) / k / KIB,
    }


async def churn_one(plan: Plan, kind: str, url: str, server_pid: int) -> dict[str, Any]:
    """C workers doing open/close cycles until the total is reached; run in a fresh child."""
    from fsm_session.service import open_session_service

    c = plan.churn_sessions
    total = plan.churn_cycles if kind == "ours" else plan.churn_floor_cycles
    port = int(url.rsplit(":", 1)[1].strip("/"))
    ids = [f"bench-churn-{i}" for i in range(c)]
    tokens = [token_for(x) for x in ids]
    infos = [info_for(x) for x in ids]
    frames = our_frames("bench-churn-0")
    done = 0
    warm = max(1, total // 10)
    marks: dict[str, float] = {}
    rss: dict[str, int] = {}

    def claim() -> bool:
        nonlocal done
        if done >= total:
            return False
        done += 1
        if done == warm:
            gc.collect()
            marks["warm"] = time.perf_counter()
            rss["warm_client"] = rss_bytes()
            rss["warm_server"] = rss_bytes(server_pid)
        return True

    async def ours_worker(i: int) -> None:
        async with open_session_service(url, access_token=tokens[i]) as session:
            while claim():
                await session.open(infos[i])
                await session.close()

    async def ws_worker(i: int) -> None:
        h = ws_headers(tokens[i])
        while claim():
            await ws_cycle(port, h, frames)

    worker = ours_worker if kind == "ours" else ws_worker
    t0 = time.perf_counter()
    with trio.fail_after(1800):
        async with trio.open_nursery() as nursery:
            for i in range(c):
                nursery.start_soon(worker, i)
    end = time.perf_counter()
    gc.collect()
    rss["end_client"] = rss_bytes()
    rss["end_server"] = rss_bytes(server_pid)
    return {
        "cycles": total,
        "sessions": c,
        "cycles_per_s": (total - warm) / (end - marks["warm"]),
        "total_s": end - t0,
        "client_rss_warm_kib": rss["warm_client"] / KIB,
        "client_rss_end_kib": rss["end_client"] / KIB,
        "client_growth": rss["end_client"] / rss["warm_client"] - 1,
        "server_rss_warm_kib": rss["warm_server"] / KIB,
        "server_rss_end_kib": rss["end_server"] / KIB,
        "server_growth": rss["end_server"] / rss["warm_server"] - 1,
    }


def in_child(me: str, plan: Plan, what: str, kind: str, server: Server) -> dict[str, Any]:
    """Run one measurement in a fresh client process, so no other run's heap skews its RSS."""
    out = subprocess.run(
        [
            sys.executable,
            me,
            f"--{plan.name}",
            "--child",
            what,
            kind,
            server.url,
            str(server.proc.pid),
        ],
        check=True,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        timeout=2400,
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- report


def fmt_us(us: float) -> str:
    return f"{us / 1000:.3f} ms" if us >= 1000 else f"{us:.0f} µs"


def table(rows: list[tuple[str, str, str, str, str, str]]) -> str:
    head = ("figure", "value", "floor/baseline", "ratio", "target", "result")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def git_commit() -> str:
    """The short commit of the checkout, with ``+dirty`` when it has changes."""
    try:
        run = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=10)
        commit = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip() or "nogit"
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    return commit + ("+dirty" if dirty else "")


def default_json_path(plan: Plan, when: str) -> Path:
    stamp = when.replace("-", "").replace(":", "").replace("+0000", "Z").split("+")[0]
    return ROOT / "benchmarks" / "results" / f"wire-{git_commit()}-{plan.name}-{stamp}.json"


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
        "trio": version("trio"),
        "trio-websocket": version("trio-websocket"),
        "wsproto": version("wsproto"),
        "transitions": version("transitions"),
        "commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: about 25 s")
    mode.add_argument("--full", action="store_true", help="the issue's sizes: about 5 minutes")
    parser.add_argument(
        "--json",
        metavar="PATH",
        nargs="?",
        const="",
        help="also write the figures as JSON (default path: benchmarks/results/)",
    )
    parser.add_argument(
        "--only", choices=["cycle", "scale", "churn"], action="append", help="run only these"
    )
    parser.add_argument("--serve", choices=["ours", "ws", "tcp"], help=argparse.SUPPRESS)
    parser.add_argument("--replies", default="", help=argparse.SUPPRESS)
    parser.add_argument("--max-connections", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        replies = [int(x) for x in args.replies.split(",") if x]
        return run_server(args.serve, replies or [1], args.max_connections, args.profile, args.cpu)

    plan = FULL if args.full else QUICK
    if args.child:
        what, kind, url, pid = args.child
        raise_nofile()
        fn = scale_one if what == "scale" else churn_one
        print(json.dumps(trio.run(fn, plan, kind, url, int(pid))))
        return 0
    only = set(args.only or ["cycle", "scale", "churn"])
    nofile = raise_nofile()
    frames = our_frames("bench-cycle")
    sizes = frames.sizes
    replies = f"{sizes['opened']},{sizes['closed']}"
    me = str(Path(__file__).resolve())
    print(f"wire benchmark ({plan.name}); RLIMIT_NOFILE={nofile}; frame bytes {sizes}")
    m = machine_info()
    print(
        f"python {m['python']} on {m['cpu']} x{m['cores']}; trio {m['trio']}, "
        f"trio-websocket {m['trio-websocket']}, wsproto {m['wsproto']}"
    )

    servers: dict[str, Server] = {}
    results: dict[str, Any] = {"plan": plan.__dict__, "machine": m, "frame_bytes": sizes}
    rows: list[tuple[str, str, str, str, str, str]] = []
    started = time.perf_counter()
    try:
        servers["cli"] = Server(["-m", "fsm_session.cli", "serve", "--port", "0"])
        servers["ws"] = Server([me, "--serve", "ws", "--replies", replies])
        servers["tcp"] = Server([me, "--serve", "tcp", "--replies", replies])
        big = max(plan.scale, plan.churn_sessions) + 64
        servers["ours"] = Server([me, "--serve", "ours", "--max-connections", str(big)])

        if "cycle" in only:
            print(f"\n1. cycle latency: open(info) + close(), {plan.cycles} cycles per kind")
            cyc = trio.run(cycle_latency, plan, servers, frames)
            results["cycle"] = cyc
            for name in ("ours", "trio-websocket", "tcp"):
                r = cyc[name]
                print(
                    f"   {name:15} median {fmt_us(r['median_us']):>10}   "
                    f"p99 {fmt_us(r['p99_us']):>10}   mean {fmt_us(r['mean_us']):>10}   "
                    f"CPU/cycle: client {fmt_us(r['client_cpu_us']):>8}, "
                    f"server {fmt_us(r['server_cpu_us']):>8}"
                )
            o, w, t = cyc["ours"], cyc["trio-websocket"], cyc["tcp"]
            rw, rt = o["median_us"] / w["median_us"], o["median_us"] / t["median_us"]
            rw99 = o["p99_us"] / w["p99_us"]
            cyc["ratio_median_vs_ws"], cyc["ratio_median_vs_tcp"] = rw, rt
            cyc["ratio_p99_vs_ws"] = rw99
            print(
                f"   ratio ours/trio-websocket: median {rw:.2f}x, p99 {rw99:.2f}x; "
                f"ours/tcp: median {rt:.2f}x"
            )
            rows.append(
                (
                    "cycle median",
                    fmt_us(o["median_us"]),
                    f"ws {fmt_us(w['median_us'])}",
                    f"{rw:.2f}x",
                    "<= 1.25x",
                    verdict(rw <= 1.25),
                )
            )
            rows.append(
                (
                    "cycle p99",
                    fmt_us(o["p99_us"]),
                    f"ws {fmt_us(w['p99_us'])}",
                    f"{rw99:.2f}x",
                    "(info)",
                    "-",
                )
            )
            rows.append(
                (
                    "cycle median vs tcp",
                    fmt_us(o["median_us"]),
                    f"tcp {fmt_us(t['median_us'])}",
                    f"{rt:.2f}x",
                    "(info)",
                    "-",
                )
            )

        if "scale" in only:
            print(f"\n2. scale: {plan.scale} sessions open at once, batches of {plan.batch}")
            sc = {
                "sessions": plan.scale,
                "trio-websocket": in_child(me, plan, "scale", "ws", servers["ws"]),
                "ours": in_child(me, plan, "scale", "ours", servers["ours"]),
            }
            results["scale"] = sc
            for name in ("ours", "trio-websocket"):
                r = sc[name]
                print(
                    f"   {name:15} open all {r['open_all_s']:7.2f} s   close all "
                    f"{r['close_all_s']:6.2f} s   client {r['client_kib_per_session']:6.1f} "
                    f"KiB/session   server {r['server_kib_per_session']:6.1f} KiB/session"
                )
            o, w = sc["ours"], sc["trio-websocket"]
            rc = o["client_kib_per_session"] / w["client_kib_per_session"]
            rs = o["server_kib_per_session"] / w["server_kib_per_session"]
            rtime = o["open_all_s"] / w["open_all_s"]
            print(
                f"   ratio ours/trio-websocket: client memory {rc:.2f}x, server memory "
                f"{rs:.2f}x, time to open all {rtime:.2f}x"
            )
            limit_s = 30.0 * plan.scale / 10_000
            rows.append(
                (
                    f"open {plan.scale}",
                    f"{o['open_all_s']:.2f} s",
                    f"ws {w['open_all_s']:.2f} s",
                    f"{rtime:.2f}x",
                    f"<= {limit_s:g} s",
                    verdict(o["open_all_s"] <= limit_s),
                )
            )
            rows.append(
                (
                    "client KiB/session",
                    f"{o['client_kib_per_session']:.1f}",
                    f"ws {w['client_kib_per_session']:.1f}",
                    f"{rc:.2f}x",
                    "<= 24",
                    verdict(o["client_kib_per_session"] <= 24),
                )
            )
            rows.append(
                (
                    "server KiB/session",
                    f"{o['server_kib_per_session']:.1f}",
                    f"ws {w['server_kib_per_session']:.1f}",
                    f"{rs:.2f}x",
                    "<= 32",
                    verdict(o["server_kib_per_session"] <= 32),
                )
            )

        if "churn" in only:
            print(
                f"\n3. churn: {plan.churn_cycles} open/close cycles over "
                f"{plan.churn_sessions} sessions (floor: {plan.churn_floor_cycles} bare cycles)"
            )
            ch = {
                "trio-websocket": in_child(me, plan, "churn", "ws", servers["ws"]),
                "ours": in_child(me, plan, "churn", "ours", servers["ours"]),
            }
            results["churn"] = ch
            for name in ("ours", "trio-websocket"):
                r = ch[name]
                print(
                    f"   {name:15} {r['cycles_per_s']:8.0f} cycles/s   client RSS "
                    f"{r['client_rss_warm_kib']:.0f} -> {r['client_rss_end_kib']:.0f} KiB "
                    f"({r['client_growth']:+.1%})"
                )
            o, w = ch["ours"], ch["trio-websocket"]
            rr = o["cycles_per_s"] / w["cycles_per_s"]
            print(
                f"   ratio ours/trio-websocket cycles/s: {rr:.2f}x; server RSS "
                f"{o['server_rss_warm_kib']:.0f} -> {o['server_rss_end_kib']:.0f} KiB "
                f"({o['server_growth']:+.1%})"
            )
            rows.append(
                (
                    "churn cycles/s",
                    f"{o['cycles_per_s']:.0f}",
                    f"ws {w['cycles_per_s']:.0f}",
                    f"{rr:.2f}x",
                    "(info)",
                    "-",
                )
            )
            rows.append(
                (
                    "churn client RSS",
                    f"{o['client_growth']:+.1%}",
                    f"warm {o['client_rss_warm_kib']:.0f} KiB",
                    "-",
                    "within 5%",
                    verdict(abs(o["client_growth"]) <= 0.05),
                )
            )
            rows.append(
                (
                    "churn server RSS",
                    f"{o['server_growth']:+.1%}",
                    f"warm {o['server_rss_warm_kib']:.0f} KiB",
                    "-",
                    "(info)",
                    "-",
                )
            )
    finally:
        for server in servers.values():
            server.stop()

    total = time.perf_counter() - started
    results["rows"] = rows
    results["seconds"] = total
    results["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"\nsummary ({plan.name}, {total:.0f} s)")
    print(table(rows))
    if args.json is not None:
        path = Path(args.json) if args.json else default_json_path(plan, results["when"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
