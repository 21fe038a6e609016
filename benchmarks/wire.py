"""What a session costs on the wire, beside a bare trio-websocket client doing the same JSON work.

Run ``python benchmarks/wire.py`` (``--quick``, the default, one to two minutes) or
``python benchmarks/wire.py --full`` (the issue's sizes, a few minutes). ``--json [PATH]`` also
writes every figure as JSON, by default under ``benchmarks/results/`` (ignored by git).
``--only cycle|update|scale|churn`` runs some parts only. Loopback only; every loop is bounded.

The client is this process (scale and churn run in fresh child processes); the two servers are
processes of their own, started once: the reference server (``serve()`` as the CLI runs it, with
the connection limit raised and the rate limit off) and the bare JSON server of ``bare.py``.
The baseline everywhere is the bare client of ``bare.py`` against the bare JSON server. Before
anything is timed, both servers answer the same requests and the run stops unless their replies
match key for key, and unless the bare client's frames are byte for byte ours.

1. **open+close cycle**: ``await s.open(info)`` then ``await s.close()`` (connect, upgrade,
   open, opened, close, closed, close handshake). Client-only: ours against the bare server,
   beside the bare client against the same server. End-to-end: ours against the reference
   server, beside the bare client against the bare server.
2. **update() round trip** on an open session (our ``await s.update(name=...)``, two names in
   turn so each is a change) beside the bare client's update request and reply on an open
   connection; client-only and end-to-end as above.
3. **trio work per operation** (counted after the timed rounds, client-only): tasks spawned,
   cancel scopes entered and function calls per cycle and per update, ours and the bare client's.
4. **scale**: K sessions open at once, each its own service and token, beside K bare
   connections that have each exchanged one request and reply (open/opened). Time to open all,
   client resident-set growth per session, client Python heap per session (tracemalloc, in a
   separate child), server resident-set growth per session.
5. **churn**: C sessions doing open/close cycles until N are done: cycles per second and client
   resident set after warm-up against the end, beside the bare client.

Figures 1 and 2 run their kinds in interleaved rounds (the order rotates each round), so drift
hits all kinds alike; each figure is the median over every operation of every round. This script
asserts nothing: it prints figures, ratios and targets, and the reader judges.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare import BareConnection, bare_cycle, connect, dumps, info_json, run_server
from counting import count
from harness import (
    BARE,
    FULL,
    NAMES,
    OURS_BARE,
    OURS_REF,
    QUICK,
    ROOT,
    Op,
    Plan,
    Server,
    cpu_seconds,
    git_commit,
    info_for,
    machine_info,
    raise_nofile,
    token_for,
    ws_headers,
)
from load import ours_cycle, run_child
from report import Row, report_churn, report_counts, report_scale, report_timed, table

from fsm_session.protocol import Close, Open, Update, encode
from fsm_session.service import open_session_service


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# --------------------------------------------------------------------------- fairness check


async def replies_of(port: int, headers: list[tuple[bytes, bytes]], info: Any) -> list[Any]:
    """What a server answers to open, update and close (participant IDs masked)."""
    async with connect(port, headers) as ws:
        conn = BareConnection(ws)
        replies = [await conn.open(info), await conn.update(name=NAMES[0]), await conn.close()]
    for reply in replies:
        if "participant" in reply:
            reply["participant"]["id"] = "<participant id>"
    return replies


async def check_frames(reference: Server, bare: Server) -> dict[str, int]:
    """Stop the run unless the baseline sends and receives exactly what ours does."""
    info = info_for("bench-frames")
    ours = [encode(Open(1, info)), encode(Update(2, NAMES[0], None)), encode(Close(3))]
    theirs = [
        dumps({"type": "open", "id": 1, "info": info_json(info)}),
        dumps({"type": "update", "id": 2, "name": NAMES[0], "avatar_url": None}),
        dumps({"type": "close", "id": 3}),
    ]
    if ours != theirs:
        sys.exit(f"the bare client's frames differ from ours:\n  {ours}\n  {theirs}")
    headers = ws_headers(token_for("bench-frames"))
    expected = await replies_of(reference.port, headers, info)
    got = await replies_of(bare.port, headers, info)
    if expected != got:
        sys.exit(
            f"the bare server's replies differ from the reference server's:\n  {expected}\n  {got}"
        )
    sizes = {
        kind: len(text.encode())
        for kind, text in zip(("open", "update", "close"), ours, strict=True)
    }
    for kind, reply in zip(("opened", "updated", "closed"), expected, strict=True):
        sizes[kind] = len(dumps(reply).replace("<participant id>", "x" * 32).encode())
    return sizes


# --------------------------------------------------------------------------- timed rounds


async def interleave(
    kinds: dict[str, Op], total: int, rounds: int, pids: dict[str, int], warmup: int = 20
) -> dict[str, dict[str, float]]:
    """Median, p99 and CPU per operation of each kind, in rounds whose order rotates."""
    names = list(kinds)
    samples: dict[str, list[float]] = {name: [] for name in names}
    client_cpu = dict.fromkeys(names, 0.0)
    server_cpu = dict.fromkeys(names, 0.0)
    per_round = max(1, total // rounds)
    clock = time.perf_counter_ns
    for op in kinds.values():
        for _ in range(warmup):
            await op()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            op, out = kinds[name], samples[name]
            gc.collect()
            c0, s0 = time.process_time(), cpu_seconds(pids[name])
            for _ in range(per_round):
                t0 = clock()
                await op()
                out.append((clock() - t0) / 1e3)  # µs
            client_cpu[name] += time.process_time() - c0
            server_cpu[name] += cpu_seconds(pids[name]) - s0
    return {
        name: {
            "n": len(values),
            "median_us": statistics.median(values),
            "p99_us": p99(values),
            "mean_us": statistics.fmean(values),
            "client_cpu_us": client_cpu[name] / len(values) * 1e6,
            "server_cpu_us": server_cpu[name] / len(values) * 1e6,
        }
        for name, values in samples.items()
    }


def alternating_updates(update: Callable[..., Awaitable[Any]]) -> Op:
    """An operation that renames, to each of NAMES in turn: every call is a real change."""
    names = itertools.cycle(NAMES)
    return lambda: update(name=next(names))


async def latency(plan: Plan, reference: Server, bare: Server, parts: set[str]) -> dict[str, Any]:
    """Figures 1, 2 and 3, in one trio run."""
    external_id = "bench-latency"
    token, info = token_for(external_id), info_for(external_id)
    headers = ws_headers(token)
    pids = {OURS_REF: reference.pid, OURS_BARE: bare.pid, BARE: bare.pid}
    out: dict[str, Any] = {}
    async with (
        open_session_service(reference.url, access_token=token) as to_reference,
        open_session_service(bare.url, access_token=token) as to_bare,
    ):
        if "cycle" in parts:
            cycles: dict[str, Op] = {
                OURS_REF: partial(ours_cycle, to_reference, info),
                OURS_BARE: partial(ours_cycle, to_bare, info),
                BARE: partial(bare_cycle, bare.port, headers, info),
            }
            out["cycle"] = await interleave(cycles, plan.cycles, plan.rounds, pids)
            out["cycle_counts"] = {
                "ours": asdict(await count(cycles[OURS_BARE], plan.counted)),
                "bare": asdict(await count(cycles[BARE], plan.counted)),
            }
        if "update" in parts:
            await to_reference.open(info)
            await to_bare.open(info)
            async with connect(bare.port, headers) as ws:
                conn = BareConnection(ws)
                await conn.open(info)
                updates = {
                    OURS_REF: alternating_updates(to_reference.update),
                    OURS_BARE: alternating_updates(to_bare.update),
                    BARE: alternating_updates(conn.update),
                }
                out["update"] = await interleave(updates, plan.updates, plan.rounds, pids)
                out["update_counts"] = {
                    "ours": asdict(await count(updates[OURS_BARE], plan.counted * 4)),
                    "bare": asdict(await count(updates[BARE], plan.counted * 4)),
                }
                await conn.close()
    return out


# --------------------------------------------------------------------------- child processes


def in_child(plan: Plan, what: str, kind: str, server: Server) -> dict[str, Any]:
    """Run one measurement in a fresh client process, so no other run's heap skews it."""
    args = [sys.executable, __file__, f"--{plan.name}", "--child", what, kind, server.url]
    out = subprocess.run(
        [*args, str(server.pid)], check=True, stdout=subprocess.PIPE, cwd=ROOT, timeout=2400
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def default_json_path(plan: Plan, when: str) -> Path:
    stamp = when.replace("-", "").replace(":", "").split("+")[0] + "Z"
    return ROOT / "benchmarks" / "results" / f"wire-{git_commit()}-{plan.name}-{stamp}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: one to two minutes")
    mode.add_argument("--full", action="store_true", help="the issue's sizes: several minutes")
    parser.add_argument(
        "--json",
        metavar="PATH",
        nargs="?",
        const="",
        help="also write the figures as JSON (default path: benchmarks/results/)",
    )
    parser.add_argument(
        "--only",
        choices=["cycle", "update", "scale", "churn"],
        action="append",
        help="run only these",
    )
    parser.add_argument("--serve", choices=["ours", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--max-connections", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return run_server(args.serve, args.max_connections, args.profile, args.cpu)
    plan = FULL if args.full else QUICK
    if args.child:
        what, kind, url, pid = args.child
        print(json.dumps(run_child(plan, what, kind, url, int(pid))))
        return 0

    parts = set(args.only or ["cycle", "update", "scale", "churn"])
    nofile = raise_nofile()
    m = machine_info()
    print(f"wire benchmark ({plan.name}), commit {m['commit']}; RLIMIT_NOFILE={nofile}")
    print(
        f"python {m['python']} on {m['cpu']} x{m['cores']}, load average {m['load_average']}; "
        f"trio {m['trio']}, trio-websocket {m['trio-websocket']}, wsproto {m['wsproto']}"
    )
    results: dict[str, Any] = {"plan": asdict(plan), "machine": m}
    rows: list[Row] = []
    started = time.perf_counter()
    servers: list[Server] = []
    try:
        big = max(plan.scale, plan.churn_sessions) + 64
        reference = Server.reference(max_connections=big)
        servers.append(reference)
        bare = Server.bare()
        servers.append(bare)
        sizes = trio.run(check_frames, reference, bare)
        results["frame_bytes"] = sizes
        print(
            f"frames: the bare client's requests are ours byte for byte, the bare server's "
            f"replies the reference server's key for key; bytes {sizes}"
        )

        if parts & {"cycle", "update"}:
            lat = trio.run(latency, plan, reference, bare, parts)
            results.update(lat)
            if "cycle" in parts:
                rows += report_timed(
                    f"1. open+close cycle, {plan.cycles:,} per kind, {plan.rounds} rounds",
                    "cycle",
                    lat["cycle"],
                    (1.10, 1.15),
                )
            if "update" in parts:
                rows += report_timed(
                    f"2. update() round trip, {plan.updates:,} per kind, {plan.rounds} rounds",
                    "update",
                    lat["update"],
                    (1.15, None),
                )
            print(
                f"\n3. trio work per operation, counted over {plan.counted} cycles "
                f"and {plan.counted * 4} updates"
            )
            if "cycle" in parts:
                rows += report_counts("cycle", lat["cycle_counts"])
            if "update" in parts:
                rows += report_counts("update", lat["update_counts"])

        if "scale" in parts:
            sc: dict[str, Any] = {"sessions": plan.scale}
            for kind, server in (("bare", bare), ("ours", reference)):
                sc[kind] = in_child(plan, "scale", kind, server)
            for kind, server in (("bare", bare), ("ours", reference)):
                sc[kind] |= in_child(plan, "heap", kind, server)
            results["scale"] = sc
            rows += report_scale(plan, sc)

        if "churn" in parts:
            ch = {
                "bare": in_child(plan, "churn", "bare", bare),
                "ours": in_child(plan, "churn", "ours", reference),
            }
            results["churn"] = ch
            rows += report_churn(plan, ch)
    finally:
        for server in servers:
            server.stop()

    total = time.perf_counter() - started
    results["rows"] = rows
    results["seconds"] = total
    results["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"\nsummary ({plan.name}, {total:.0f} s); baseline: {BARE}")
    print(table(rows))
    if args.json is not None:
        path = Path(args.json) if args.json else default_json_path(plan, results["when"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
