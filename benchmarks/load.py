"""The scale and churn figures of ``wire.py``, each run in a fresh client process.

``wire.py --child scale|heap|churn KIND URL PID`` runs one of them against the server at URL
(whose process is PID) and prints its figures as one JSON line. KIND is ``ours`` (our client) or
``bare`` (the bare client of ``bare.py``). A fresh process per measurement keeps one run's heap
from hiding another's growth.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

import trio
from bare import BareConnection, bare_cycle, connect
from harness import KIB, Plan, info_for, port_of, raise_nofile, rss_bytes, token_for, ws_headers

from fsm_session.service import open_session_service


async def ours_cycle(session: Any, info: Any) -> None:
    """One open+close cycle of a session service (``open_session_service``'s)."""
    await session.open(info)
    await session.close()


async def scale_one(plan: Plan, kind: str, url: str, server_pid: int, heap: bool) -> dict[str, Any]:
    """K sessions (or bare connections) held open at once; run in a fresh child process."""
    k = plan.scale
    port = port_of(url)
    ids = [f"bench-scale-{i}" for i in range(k)]
    tokens = [token_for(x) for x in ids]
    infos = [info_for(x) for x in ids]
    headers = [ws_headers(t) for t in tokens]

    async def hold_ours(i: int, opened: trio.MemorySendChannel[int], stop: trio.Event) -> None:
        async with open_session_service(url, access_token=tokens[i]) as session:
            await session.open(infos[i])
            await opened.send(i)
            await stop.wait()

    async def hold_bare(i: int, opened: trio.MemorySendChannel[int], stop: trio.Event) -> None:
        async with connect(port, headers[i]) as ws:
            conn = BareConnection(ws)
            await conn.open(infos[i])
            await opened.send(i)
            await stop.wait()

    hold = hold_ours if kind == "ours" else hold_bare
    stop = trio.Event()
    send, receive = trio.open_memory_channel[int](k)
    gc.collect()
    if heap:
        tracemalloc.start()
    heap0 = tracemalloc.get_traced_memory()[0]
    client0, server0 = rss_bytes(), rss_bytes(server_pid)
    t0 = time.perf_counter()
    with trio.fail_after(900):
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
            heap1 = tracemalloc.get_traced_memory()[0]
            client1, server1 = rss_bytes(), rss_bytes(server_pid)
            t1 = time.perf_counter()
            stop.set()
        closed_in = time.perf_counter() - t1
    if heap:
        return {"heap_kib_per_session": (heap1 - heap0) / k / KIB}
    return {
        "open_all_s": elapsed,
        "close_all_s": closed_in,
        "client_kib_per_session": (client1 - client0) / k / KIB,
        "server_kib_per_session": (server1 - server0) / k / KIB,
    }


async def churn_one(plan: Plan, kind: str, url: str, server_pid: int) -> dict[str, Any]:
    """C workers doing open/close cycles until the total is reached; run in a fresh child."""
    c = plan.churn_sessions
    total = plan.churn_cycles if kind == "ours" else plan.churn_floor_cycles
    port = port_of(url)
    ids = [f"bench-churn-{i}" for i in range(c)]
    tokens = [token_for(x) for x in ids]
    infos = [info_for(x) for x in ids]
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
                await ours_cycle(session, infos[i])

    async def bare_worker(i: int) -> None:
        h = ws_headers(tokens[i])
        while claim():
            await bare_cycle(port, h, infos[i])

    worker = ours_worker if kind == "ours" else bare_worker
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
        "client_rss_warm_kib": rss["warm_client"] / KIB,
        "client_rss_end_kib": rss["end_client"] / KIB,
        "client_growth": rss["end_client"] / rss["warm_client"] - 1,
        "server_rss_warm_kib": rss["warm_server"] / KIB,
        "server_rss_end_kib": rss["end_server"] / KIB,
        "server_growth": rss["end_server"] / rss["warm_server"] - 1,
    }


def run_child(plan: Plan, what: str, kind: str, url: str, pid: int) -> dict[str, Any]:
    raise_nofile()
    if what == "churn":
        return trio.run(churn_one, plan, kind, url, pid)
    return trio.run(scale_one, plan, kind, url, pid, what == "heap")
