"""The session store: the Redis store beside the memory store, in one run, on loopback.

Each node is a real ``fsm-session serve`` process (``--store memory`` or ``--store redis://...``
on a ``redis-server`` this script starts in a temporary directory). The client is a bare
trio-websocket client in this process doing the protocol's open+close cycle: connect, ``open``,
``opened``, ``close``, ``closed``, close the WebSocket. Measured:

* **cycle latency**: one client, cycles one after another, median and p90 in microseconds; the
  kinds take turns in rounds so that the machine's noise falls on all of them alike;
* **sessions per second**: ``--clients`` clients at once, each cycling, for the same count;
* with **one node** and with **two nodes** (each connection to the next node in turn; with the
  memory store two nodes share nothing, the fair floor of spreading the load);
* **Redis memory per session**: ``used_memory`` of ``INFO memory`` before and after 10,000
  sessions opened through the store (participant ID, session record, holder set entry).

Run: ``python benchmarks/store.py [--cycles N] [--clients N]``. Target: Redis cycle <= 1.3x the
memory store's, one node.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402
import trio_websocket  # noqa: E402

from fsm_session import tokens  # noqa: E402
from fsm_session.models import ParticipantInfo  # noqa: E402
from fsm_session.protocol import SUBPROTOCOL  # noqa: E402
from fsm_session.server.store import open_store  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

SECRET = "store-benchmark-secret-" + "x" * 32  # Loopback only; HS256 needs 32 bytes.


class _Holder:
    def session_ended(self, reason: str) -> None:
        pass


def start_node(store: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "FSM_SESSION_SECRET": SECRET}
    argv = [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0", "--store", store]
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("ws://"):
        process.kill()
        raise SystemExit(f"the node did not start: {url!r}")
    return process, url


async def cycle(url: str, header: list[tuple[bytes, bytes]]) -> None:
    """One open+close cycle on a new connection."""
    async with trio_websocket.open_websocket_url(
        url, subprotocols=[SUBPROTOCOL], extra_headers=header
    ) as ws:
        await ws.send_message('{"type":"open","id":1,"info":{"name":"Bench","external_id":null,'
                              '"avatar_url":null}}')  # fmt: skip
        reply = json.loads(await ws.get_message())
        assert reply["type"] == "opened", reply
        await ws.send_message('{"type":"close","id":2}')
        reply = json.loads(await ws.get_message())
        assert reply["type"] == "closed", reply


def header_for(user: str) -> list[tuple[bytes, bytes]]:
    token = tokens.mint(SECRET, external_id=user, ttl=3600, now=time.time())
    return [(b"authorization", f"Bearer {token}".encode())]


async def latencies(urls: list[str], count: int, header: list[tuple[bytes, bytes]]) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        await cycle(urls[i % len(urls)], header)
        times.append(time.perf_counter() - start)
    return times


async def throughput(urls: list[str], count: int, clients: int) -> float:
    per_client = count // clients

    async def client(k: int) -> None:
        header = header_for(f"load-{k}")
        for i in range(per_client):
            await cycle(urls[(k + i) % len(urls)], header)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(clients):
            nursery.start_soon(client, k)
    return per_client * clients / (time.perf_counter() - start)


async def memory_per_session(redis_url: str, sessions: int) -> float:
    async with open_store(redis_url, resume_grace=60) as store:
        client = store._client  # type: ignore[attr-defined]
        before = int((await client.info("memory"))["used_memory"])
        holder = _Holder()
        for i in range(sessions):
            info = ParticipantInfo(name=f"User {i}", external_id=f"user-{i}")
            await store.open(holder, info, f"user-{i}")
        after = int((await client.info("memory"))["used_memory"])
    return (after - before) / sessions


async def main(args: argparse.Namespace) -> None:
    redis = RedisServer()
    redis.start()
    processes = []
    try:
        redis_url = redis.url(prefix="bench:")
        kinds: dict[str, list[str]] = {}
        for name, store, nodes in (
            ("memory, 1 node", "memory", 1),
            ("redis, 1 node", redis_url, 1),
            ("memory, 2 nodes", "memory", 2),
            ("redis, 2 nodes", redis_url, 2),
        ):
            urls = []
            for _ in range(nodes):
                process, url = start_node(store)
                processes.append(process)
                urls.append(url)
            kinds[name] = urls
        header = header_for("bench")
        for urls in kinds.values():  # Warm up every node: imports, caches, Redis scripts.
            await latencies(urls, 50, header)
        samples: dict[str, list[float]] = {name: [] for name in kinds}
        rounds = 10
        for _ in range(rounds):
            for name, urls in kinds.items():
                samples[name] += await latencies(urls, args.cycles // rounds, header)
        rates = {
            name: await throughput(urls, args.cycles, args.clients) for name, urls in kinds.items()
        }
        per_session = await memory_per_session(redis.url(prefix="mem:"), args.sessions)
    finally:
        for process in processes:
            process.kill()
            process.wait()
        redis.close()

    print(f"# store benchmark: {platform.python_version()}, {os.cpu_count()} CPUs, loopback")
    print(f"# {args.cycles} cycles per kind (in {rounds} interleaved rounds); "
          f"{args.clients} clients for sessions/s")  # fmt: skip
    print()
    print("| store, nodes | cycle median (µs) | p90 (µs) | vs memory, same nodes | sessions/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, times in samples.items():
        base = samples[name.replace("redis", "memory")]
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        ratio = median / statistics.median(base)
        print(f"| {name} | {median * 1e6:,.0f} | {p90 * 1e6:,.0f} | {ratio:.2f}x | "
              f"{rates[name]:,.0f} |")  # fmt: skip
    print()
    print(f"Redis memory per session at {args.sessions:,} sessions: {per_session:,.0f} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    # At most 16: the reference server takes 16 handshakes at once from one address.
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=10_000)
    trio.run(main, parser.parse_args())
