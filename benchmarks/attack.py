"""The reference server under attack: a well-behaved client's latency beside its latency idle.

Run ``python benchmarks/attack.py`` (about a minute on 2 cores). Loopback only; every attack is
bounded in connections and in time. Three processes: the server (``fsm-session serve --port 0``,
its defaults), the attacker (this script with ``--attacker NAME``), and the well-behaved client
(this script). The attackers connect from 127.0.0.2 and up; the client from 127.0.0.1.

For each attack, the client runs open+close cycles for a few seconds idle, then for a few seconds
under the attack (the attack started a moment before), each cycle a fresh
``open_session_service``: connect, upgrade, ``open``, ``close``, hang up. The script prints the
median and p90 of a cycle under attack beside the same idle just before it (the machine's load
drifts; each pair shares it), their ratio (target: at most 3x), the cycles the client lost, and
what the attacker saw. Then a memory spike: the server's RSS before, during and after 2,000 idle
WebSockets, with the heap trimmed after they leave.

This script asserts nothing: it prints figures and the reader judges.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import trio

from fsm_session import ParticipantInfo, open_session_service
from fsm_session.testing.wsframes import (
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    build_frame,
    parse_frame,
)
from fsm_session.tokens import mint

SECRET = "attack-benchmark-secret-of-enough-length-0123456789"
PHASE = 4.0  # Seconds of good-client cycles under each attack.
IDLE = 2.5  # Seconds of good-client cycles idle, right before each attack.
WARMUP = 1.5  # Seconds the attack runs before the client measures.


def masked(payload: bytes | str, *, opcode: int, fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame (masked), with the RSV bits ``rsv`` (0 to 7) set."""
    frame = bytearray(build_frame(payload, opcode=opcode, fin=fin, mask_key=os.urandom(4)))
    frame[0] |= (rsv & 7) << 4
    return bytes(frame)


def unmasked(payload: bytes | str, *, opcode: int) -> bytes:
    return build_frame(payload, opcode=opcode)


def token(external_id: str | None = None, ttl: float = 3600) -> str:
    return mint(SECRET, external_id=external_id, ttl=ttl, now=time.time())


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
    return host, int(port)


def upgrade_request(host: str, port: int, access_token: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Protocol: fsm-session.v1\r\nAuthorization: Bearer {access_token}\r\n\r\n"
    ).encode()


# ---------------------------------------------------------------------------------------------
# The attacker process.
# ---------------------------------------------------------------------------------------------


class Attacker:
    def __init__(self, url: str, duration: float) -> None:
        self.host, self.port = host_port(url)
        self.deadline = trio.current_time() + duration
        self.seen: Counter[str] = Counter()

    async def connect(self, source: str) -> trio.SocketStream | None:
        try:
            return await trio.open_tcp_stream(self.host, self.port, local_address=source)
        except OSError:
            self.seen["connect failed"] += 1
            return None

    async def upgraded(self, source: str) -> trio.SocketStream | None:
        stream = await self.connect(source)
        if stream is None:
            return None
        await stream.send_all(upgrade_request(self.host, self.port, token()))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(1)
            if not chunk:
                self.seen["refused"] += 1
                await stream.aclose()
                return None
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            self.seen[f"rejected {head[9:12].decode()}"] += 1
            await stream.aclose()
            return None
        return stream

    async def silent(self, source: str) -> None:
        """Connect and never send a byte; when hung up, come back a second later."""
        while trio.current_time() < self.deadline:
            stream = await self.connect(source)
            if stream is None:
                await trio.sleep(1)
                continue
            self.seen["connections"] += 1
            async with stream:
                try:
                    with trio.move_on_at(self.deadline):
                        if await stream.receive_some() == b"":
                            self.seen["hung up by the server"] += 1
                            await trio.sleep(1)
                except trio.BrokenResourceError:
                    self.seen["reset by the server"] += 1

    async def flood(self, source: str, frame: bytes) -> None:
        """Send ``frame`` as fast as the server reads, reading (and dropping) its replies."""
        stream = await self.upgraded(source)
        if stream is None:
            return
        async with stream, trio.open_nursery() as nursery:

            async def drain() -> None:
                with trio.move_on_at(self.deadline):
                    while data := await stream.receive_some():
                        self.seen["bytes answered"] += len(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(drain)
            with trio.move_on_at(self.deadline):
                while True:
                    await stream.send_all(frame)
                    self.seen["frames sent"] += 1
            nursery.cancel_scope.cancel()

    async def broken(self, source: str, data: bytes, expected: int) -> None:
        """Connect, send ``data`` that breaks the protocol, check the close code; again."""
        while trio.current_time() < self.deadline:
            stream = await self.upgraded(source)
            if stream is None:
                await trio.sleep(0.1)
                continue
            async with stream:
                received = bytearray()
                try:
                    with trio.fail_after(5):
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_send_quietly, stream, data)
                            while chunk := await stream.receive_some():
                                received += chunk
                except (trio.BrokenResourceError, trio.TooSlowError):
                    self.seen["reset or stuck"] += 1
                    continue
            frame = parse_frame(received)
            code = frame.close_code if frame is not None and frame.opcode == OP_CLOSE else None
            self.seen["right close code" if code == expected else f"close code {code}"] += 1


async def _send_quietly(stream: trio.SocketStream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


def costly_frame() -> bytes:
    """A 64 KiB frame that is slow to parse: thousands of floats (about 5 ms of json.loads)."""
    body = '{"type":"close","id":1,"x":[' + ",".join(["1.5e-3"] * 9350) + "]}"
    assert len(body) <= 65536
    return masked(body, opcode=OP_TEXT)


def oversize_fragments() -> bytes:
    text = json.dumps({"type": "close", "id": 1, "x": "x" * 70_000}).encode()
    pieces = [text[i : i + 512] for i in range(0, len(text), 512)]
    return b"".join(
        masked(p, opcode=OP_TEXT if i == 0 else OP_CONTINUATION, fin=i == len(pieces) - 1)
        for i, p in enumerate(pieces)
    )


BROKEN = [
    (masked(b"\xff\xfe", opcode=OP_TEXT), 1007),
    (unmasked(b'{"type":"close","id":1}', opcode=OP_TEXT), 1002),
    (masked(b'{"type":"close","id":1}', opcode=OP_TEXT, rsv=4), 1002),
    (masked(b'{"type":"close","id":1}', opcode=OP_CONTINUATION), 1002),
    (masked(b"p" * 200, opcode=OP_PING), 1002),
    (oversize_fragments(), 1009),
]


async def attack(name: str, url: str, duration: float) -> None:
    attacker = Attacker(url, duration)
    async with trio.open_nursery() as nursery:
        if name == "silent-one-address":
            for _ in range(2000):
                nursery.start_soon(attacker.silent, "127.0.0.2")
        elif name == "silent-many-addresses":
            for n in range(2000):
                nursery.start_soon(attacker.silent, f"127.0.0.{2 + n % 40}")
        elif name == "costly-frames":
            frame = costly_frame()
            for n in range(50):
                nursery.start_soon(attacker.flood, f"127.0.0.{2 + n % 5}", frame)
        elif name == "tiny-frames":
            frame = masked(b"", opcode=OP_PING) + masked(b"{}", opcode=OP_TEXT)
            for n in range(50):
                nursery.start_soon(attacker.flood, f"127.0.0.{2 + n % 5}", frame * 200)
        elif name == "protocol-errors":
            for n in range(24):
                data, code = BROKEN[n % len(BROKEN)]
                nursery.start_soon(attacker.broken, f"127.0.0.{2 + n % 6}", data, code)
        else:
            raise SystemExit(f"no attack {name!r}")
    print(json.dumps(dict(attacker.seen)), flush=True)


# ---------------------------------------------------------------------------------------------
# The well-behaved client, and the whole run.
# ---------------------------------------------------------------------------------------------


async def cycles(url: str, seconds: float) -> tuple[list[float], int]:
    """Open+close cycles for ``seconds``: their durations, and how many failed."""
    info = ParticipantInfo("Carol", external_id="carol")
    access_token = token("carol")
    samples: list[float] = []
    lost = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        try:
            with trio.fail_after(10):
                async with open_session_service(url, access_token=access_token) as session:
                    await session.open(info)
                    await session.close()
            samples.append(time.perf_counter() - start)
        except Exception:  # A lost cycle is a figure, not a crash.
            lost += 1
    return samples, lost


async def forever(url: str) -> str:
    """Handshakes with signed tokens whose exp is not a finite number: how many got 401."""
    host, port = host_port(url)
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    statuses = []
    for exp in ("NaN", "Infinity", "1e309"):
        body = base64.urlsafe_b64encode(f'{{"exp": {exp}}}'.encode()).rstrip(b"=")
        signature = hmac.new(SECRET.encode(), head + b"." + body, hashlib.sha256).digest()
        forged = b".".join([head, body, base64.urlsafe_b64encode(signature).rstrip(b"=")])
        stream = await trio.open_tcp_stream(host, port, local_address="127.0.0.2")
        async with stream:
            await stream.send_all(upgrade_request(host, port, forged.decode()))
            response = await stream.receive_some()
        statuses.append(response[9:12].decode())
    return f"refused with 401: {statuses.count('401')} of {len(statuses)} ({', '.join(statuses)})"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


async def spike(url: str, pid: int, count: int) -> list[tuple[str, float]]:
    """RSS before, with ``count`` idle WebSockets open, and after they leave."""
    host, port = host_port(url)
    figures = [("before", rss_mb(pid))]
    streams: list[trio.SocketStream] = []
    for n in range(count):
        stream = await trio.open_tcp_stream(host, port, local_address=f"127.0.0.{2 + n // 250}")
        await stream.send_all(upgrade_request(host, port, token()))
        streams.append(stream)
    for stream in streams:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(1)
    figures.append((f"{count} WebSockets open", rss_mb(pid)))
    for stream in streams:
        await stream.aclose()
    await trio.sleep(0.5)
    figures.append(("0.5 s after they left", rss_mb(pid)))
    await trio.sleep(3)
    figures.append(("3.5 s after (the heap trimmed)", rss_mb(pid)))
    return figures


def row(name: str, idle: list[float], attacked: list[float], lost: int, seen: str) -> str:
    def p90(samples: list[float]) -> float:
        return statistics.quantiles(samples, n=10)[-1] if len(samples) > 10 else math.nan

    idle_median = statistics.median(idle) if idle else math.nan
    median = statistics.median(attacked) if attacked else math.nan
    return (
        f"| {name} | {idle_median * 1e3:.2f} | {median * 1e3:.2f} | {median / idle_median:.2f}x | "
        f"{p90(idle) * 1e3:.2f} | {p90(attacked) * 1e3:.2f} | {len(idle)} / {len(attacked)} | "
        f"{lost} | {seen} |"
    )


async def main(attacks: list[str]) -> None:
    env = {**os.environ, "FSM_SESSION_SECRET": SECRET}
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                line += await server.stdout.receive_some(1)
        url = line.decode().strip()
        await cycles(url, 0.5)  # Warm-up.
        print(
            "| attack (hostile from 127.0.0.2+) | idle median ms | attacked median ms | ratio"
            " | idle p90 ms | attacked p90 ms | cycles idle / attacked | lost"
            " | what the attacker saw |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in attacks:
            # Idle right before each attack: the machine's load drifts, the pair shares it.
            idle, idle_lost = await cycles(url, IDLE)
            duration = WARMUP + PHASE + 1
            attacker = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    __file__,
                    "--attacker",
                    name,
                    "--url",
                    url,
                    "--duration",
                    str(duration),
                ],
                stdout=subprocess.PIPE,
            )
            try:
                await trio.sleep(WARMUP)
                samples, lost = await cycles(url, PHASE)
                assert attacker.stdout is not None
                output = b""
                with trio.fail_after(30):
                    while chunk := await attacker.stdout.receive_some():
                        output += chunk
                    await attacker.wait()
            finally:
                if attacker.returncode is None:
                    attacker.kill()
            seen = ", ".join(f"{k}: {v}" for k, v in json.loads(output or b"{}").items())
            print(row(name, idle, samples, idle_lost + lost, seen), flush=True)
        print(f"tokens that never expire (exp NaN, Infinity, 1e309): {await forever(url)}")
        for label, value in await spike(url, server.pid, 2000):
            print(f"server RSS, {label}: {value:.1f} MB", flush=True)
    finally:
        server.terminate()
        with trio.move_on_after(10):
            await server.wait()


ATTACKS = [
    "silent-one-address",
    "silent-many-addresses",
    "costly-frames",
    "tiny-frames",
    "protocol-errors",
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=PHASE, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", choices=ATTACKS, help="run only these attacks")
    args = parser.parse_args()
    if args.attacker:
        trio.run(attack, args.attacker, args.url, args.duration)
    else:
        trio.run(main, args.only or ATTACKS)
