"""Fault injection and leak checks for tests: a loopback WebSocket proxy, a silent peer, and
helpers that find file descriptors and trio tasks a test left behind (issue 4, items 2 and 3).

The proxy sits between a client and a backend on 127.0.0.1. It passes the HTTP upgrade through,
then cuts each direction's byte stream into WebSocket frames (RFC 6455 section 5.2: a 2 to 14
byte header, a 7, 16 or 64-bit payload length, a mask key on client-to-server frames) and
forwards every frame byte for byte unless a fault armed for it says otherwise. Text frames are
decoded (unmasked first when they go to the server) so a fault can match the JSON ``type``::

    proxy = await nursery.start(FaultProxy.serve, "127.0.0.1", server_port)
    lost = proxy.arm(Drop(after=True), TO_CLIENT, "opened")
    async with open_session_service(proxy.url, access_token=token) as session:
        await session.open(info)          # the reply arrives, then both TCP sides close
        await lost.fired.wait()

Faults: ``Drop`` (close both TCP sides, optionally with a reset), ``Delay``, ``Stall`` (until
``proxy.release()``), ``Truncate``, ``Corrupt`` (re-framed, masked when it goes to the server),
``Inject`` (an extra frame). A fault is armed for a direction and a frame ``type`` (``"open"``,
``"opened"``, ``HANDSHAKE`` for the upgrade request or response, ``"<close>"`` and the like for
control frames), or the ``nth`` frame, optionally on one connection only.

Leak checks::

    before = leak_snapshot()              # file descriptors and trio tasks alive now
    ...                                   # the test
    await assert_no_leaks(before)         # waits up to ``settle`` for them to go, then fails

The proxy is a test tool: it buffers whole frames (up to ``max_frame_bytes``; a bigger one
turns that direction into a plain byte pipe), and it does not reassemble fragmented messages
(a continuation frame is matched as ``"<continuation>"``).
"""

from __future__ import annotations

import enum
import os
import socket
import struct
from collections import Counter, deque
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio
import trio.lowlevel
import trio.testing

from fsm_session.testing.wsframes import (
    HANDSHAKE,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_frame,
    parse_frame,
)
from fsm_session.testing.wsframes import WireFrame as Frame

__all__ = [
    "GARBAGE_JSON",
    "HANDSHAKE",
    "INVALID_UTF8",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "TO_CLIENT",
    "TO_SERVER",
    "Armed",
    "Capture",
    "Corrupt",
    "Delay",
    "Direction",
    "Drop",
    "Fault",
    "FaultProxy",
    "Frame",
    "Inject",
    "LeakSnapshot",
    "SilentPeer",
    "Stall",
    "Truncate",
    "assert_no_leaks",
    "build_frame",
    "fd_count",
    "fd_targets",
    "leak_snapshot",
    "live_tasks",
    "open_fault_proxy",
    "open_silent_peer",
    "parse_frame",
    "upstream_of",
]


class Direction(enum.StrEnum):
    """Which way bytes travel through the proxy."""

    TO_SERVER = "to_server"
    TO_CLIENT = "to_client"


TO_SERVER = Direction.TO_SERVER
TO_CLIENT = Direction.TO_CLIENT

_MAX_HEAD = 64 * 1024  # an HTTP head longer than this is passed through unparsed
_MAX_UNITS = 10_000_000  # bounds every pump loop; far above what a test sends
_CHUNK = 65536


# --- frames -------------------------------------------------------------------------------------


# --- faults -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Hit:
    """A fault's view of the frame it matched, and of the connection it is on."""

    proxy: FaultProxy
    link: _Link
    direction: Direction
    frame: Frame

    async def forward(self, data: bytes) -> None:
        await self.link.send(self.direction, data)

    async def cut(self, reset: bool = False) -> None:
        """Close both TCP sides now; never returns (the connection's tasks are cancelled)."""
        self.link.cut(reset)
        await trio.lowlevel.checkpoint()
        raise AssertionError("unreachable: a cut connection is cancelled")  # pragma: no cover


class Fault:
    """What happens to a matched frame. ``apply`` returns the bytes still to forward."""

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Drop(Fault):
    """Close both TCP sides abruptly, before (default) or after forwarding the matched frame.

    ``reset=True`` closes with SO_LINGER 0, so the peers see a reset rather than an EOF (and
    bytes not yet delivered may be lost).
    """

    after: bool = False
    reset: bool = False

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        if self.after:
            await hit.forward(data)
        await hit.cut(self.reset)
        return None  # pragma: no cover


@dataclass(frozen=True)
class Delay(Fault):
    """Hold the matched frame (and everything behind it in that direction) for ``seconds``."""

    seconds: float

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        await trio.sleep(self.seconds)
        return data


@dataclass(frozen=True)
class Stall(Fault):
    """Stop forwarding in that direction until ``proxy.release()``; the matched frame waits
    (``after=True``: it goes first, and what follows waits)."""

    after: bool = False

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        if self.after:
            await hit.forward(data)
        released = hit.proxy._released
        hit.proxy._stalled += 1
        try:
            await released.wait()
        finally:
            hit.proxy._stalled -= 1
        return None if self.after else data


@dataclass(frozen=True)
class Truncate(Fault):
    """Forward only the first ``keep`` bytes of the frame as it is on the wire (default: its
    header and half its payload), then close both TCP sides."""

    keep: int | None = None
    reset: bool = False

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        frame = hit.frame
        keep = self.keep
        if keep is None and frame.is_handshake:
            keep = len(data) // 2
        elif keep is None:
            keep = frame.header_len + (len(data) - frame.header_len) // 2
        await hit.forward(data[:keep])
        await hit.cut(self.reset)
        return None  # pragma: no cover


GARBAGE_JSON = b'{"type": "opened", "id": 1, "participant": {oops'
INVALID_UTF8 = b'{"type": "\xff\xfe\xc0\x80"}'


@dataclass(frozen=True)
class Corrupt(Fault):
    """Replace the matched frame's payload (default: JSON that does not parse; ``INVALID_UTF8``
    for bytes a text frame may not hold), re-framed correctly and masked when it goes to the
    server, so the peer reads a well-formed frame with a bad payload. ``opcode`` changes the
    frame's kind (``OP_BINARY``...). On the handshake, ``payload`` replaces the whole HTTP head.
    """

    payload: bytes = GARBAGE_JSON
    opcode: int | None = None

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        frame = hit.frame
        if frame.opcode is None:
            return self.payload
        key = None
        if hit.direction is TO_SERVER:
            key = frame.mask_key if frame.mask_key is not None else os.urandom(4)
        opcode = frame.opcode if self.opcode is None else self.opcode
        return build_frame(self.payload, opcode=opcode, fin=frame.fin, mask_key=key)


@dataclass(frozen=True)
class Inject(Fault):
    """Send an extra frame holding ``message`` to ``to`` (default: the client), after the
    matched frame (default) or before it. ``opcode`` defaults to text for ``str``, binary for
    ``bytes``; ``replace=True`` sends the injected frame instead of the matched one."""

    message: str | bytes
    to: Direction = TO_CLIENT
    after: bool = True
    opcode: int | None = None
    replace: bool = False

    def frame_bytes(self) -> bytes:
        opcode = self.opcode
        if opcode is None:
            opcode = OP_TEXT if isinstance(self.message, str) else OP_BINARY
        key = os.urandom(4) if self.to is TO_SERVER else None
        return build_frame(self.message, opcode=opcode, mask_key=key)

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        extra = self.frame_bytes()
        if self.replace:
            await hit.link.send(self.to, extra)
            return None
        if self.after:
            await hit.forward(data)
            await hit.link.send(self.to, extra)
            return None
        await hit.link.send(self.to, extra)
        return data


@dataclass(eq=False)
class Capture(Fault):
    """No fault: keep each matched frame in ``frames`` and forward it unchanged (arm it with
    ``times=None`` to see every match)."""

    frames: list[Frame] = field(default_factory=list)

    async def apply(self, hit: _Hit, data: bytes) -> bytes | None:
        self.frames.append(hit.frame)
        return data


@dataclass(eq=False)
class Armed:
    """A fault waiting for its match. ``fired`` is set at the first match; ``hits`` counts."""

    fault: Fault
    direction: Direction
    type: str | None = None
    nth: int | None = None
    connection: int | None = None
    times: int | None = 1
    hits: int = 0
    fired: trio.Event = field(default_factory=trio.Event)

    def matches(self, link: _Link, direction: Direction, frame: Frame, index: int) -> bool:
        if direction is not self.direction:
            return False
        if self.connection is not None and link.number != self.connection:
            return False
        if self.nth is not None and (frame.is_handshake or index != self.nth):
            return False
        if self.type is None:
            return not frame.is_handshake
        return frame.label == self.type


# --- the proxy ----------------------------------------------------------------------------------


class _Link:
    """One proxied connection: the client's stream, the backend's, and a cancel scope."""

    def __init__(self, number: int, client: trio.SocketStream, upstream: tuple[str, int]) -> None:
        self.number = number
        self.client = client
        self.upstream = upstream
        self.server: trio.SocketStream | None = None
        self.server_ready = trio.Event()
        self.scope = trio.CancelScope()
        self.reset = False
        self.frames = {TO_SERVER: 0, TO_CLIENT: 0}
        self.framing = {TO_SERVER: False, TO_CLIENT: False}
        self.locks = {TO_SERVER: trio.Lock(), TO_CLIENT: trio.Lock()}

    def destination(self, direction: Direction) -> trio.SocketStream:
        stream = self.server if direction is TO_SERVER else self.client
        assert stream is not None
        return stream

    async def connect(self) -> None:
        """Connect to the backend when the first bytes go its way, so a connection dropped
        before that never reaches it."""
        if self.server is None:
            try:
                self.server = await trio.open_tcp_stream(*self.upstream)
            except OSError:
                self.cut()
                await trio.lowlevel.checkpoint()
            self.server_ready.set()

    async def send(self, direction: Direction, data: bytes) -> None:
        if data and direction is TO_SERVER:
            await self.connect()
        if data:
            async with self.locks[direction]:
                await self.destination(direction).send_all(data)

    def cut(self, reset: bool = False) -> None:
        self.reset = self.reset or reset
        self.scope.cancel()


class FaultProxy:
    """A loopback WebSocket proxy that forwards faithfully until an armed fault fires.

    Start it with ``await nursery.start(FaultProxy.serve, host, port)`` (or
    ``open_fault_proxy``); it stops when that nursery is cancelled, closing every connection.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, max_frame_bytes: int = 1 << 24
    ) -> None:
        self.upstream: tuple[str, int] = (upstream_host, upstream_port)
        """Where new connections go; change it to follow a restarted backend."""
        self.max_frame_bytes = max_frame_bytes
        self.port = 0
        self.connections = 0
        """Connections accepted so far."""
        self.frames: Counter[tuple[Direction, str]] = Counter()
        """Frames seen, by direction and label (the handshake counts as ``HANDSHAKE``)."""
        self.log: deque[tuple[int, Direction, str]] = deque(maxlen=10_000)
        """(connection number, direction, label) of the latest frames seen, oldest first."""
        self._armed: list[Armed] = []
        self._links: set[_Link] = set()
        self._released = trio.Event()
        self._stalled = 0
        self._changed = trio.Event()

    # -- running

    @classmethod
    async def serve(
        cls,
        upstream_host: str,
        upstream_port: int,
        *,
        max_connections: int = 10_000,
        max_frame_bytes: int = 1 << 24,
        task_status: trio.TaskStatus[FaultProxy] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on 127.0.0.1 (a free port) and proxy to the upstream until cancelled;
        ``task_status.started`` hands over the proxy. After ``max_connections`` accepts, new
        connections wait in the listen backlog."""
        proxy = cls(upstream_host, upstream_port, max_frame_bytes=max_frame_bytes)
        await proxy._run(max_connections, task_status)

    async def _run(self, max_connections: int, task_status: trio.TaskStatus[FaultProxy]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        listener = listeners[0]
        try:
            self.port = listener.socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                for _ in range(max_connections):
                    stream = await listener.accept()
                    self.connections += 1
                    self._notify()
                    nursery.start_soon(self._handle, _Link(self.connections, stream, self.upstream))
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for extra in listeners:
                    await trio.aclose_forcefully(extra)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/``: what to hand the client."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def live(self) -> int:
        """Connections open right now."""
        return len(self._links)

    @property
    def stalled(self) -> int:
        """Directions held by a ``Stall`` right now."""
        return self._stalled

    # -- faults

    def arm(
        self,
        fault: Fault,
        direction: Direction,
        type: str | None = None,
        *,
        nth: int | None = None,
        connection: int | None = None,
        times: int | None = 1,
    ) -> Armed:
        """Apply ``fault`` to the next frame going ``direction`` whose label is ``type``
        (any frame but the handshake when None) and, when given, that is the ``nth`` frame
        (from 1, handshake not counted) that way on the ``connection``-th connection (from 1).
        It fires ``times`` times (None: every match)."""
        armed = Armed(fault, direction, type, nth, connection, times)
        self._armed.append(armed)
        return armed

    def disarm(self, armed: Armed | None = None) -> None:
        """Disarm one fault, or all of them."""
        if armed is None:
            self._armed.clear()
        elif armed in self._armed:
            self._armed.remove(armed)

    def release(self) -> None:
        """Let every ``Stall`` in effect go on (stalls that begin later wait for the next)."""
        self._released.set()
        self._released = trio.Event()

    def drop_all(self, *, reset: bool = False) -> int:
        """Close every live connection's two TCP sides now; returns how many."""
        links = list(self._links)
        for link in links:
            link.cut(reset)
        return len(links)

    async def inject(self, message: str | bytes, *, to: Direction = TO_CLIENT) -> int:
        """Send an extra frame to ``to`` on every live upgraded connection; returns how many."""
        frame = Inject(message, to=to).frame_bytes
        sent = 0
        for link in list(self._links):
            if link.framing[TO_CLIENT] and link.framing[TO_SERVER]:
                try:
                    await link.send(to, frame())
                    sent += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    link.cut()
        return sent

    # -- counters

    def count(self, direction: Direction, label: str) -> int:
        """How many frames labelled ``label`` went ``direction`` so far."""
        return self.frames[direction, label]

    async def wait_for(self, direction: Direction, label: str, count: int = 1) -> None:
        """Wait until ``count`` frames labelled ``label`` went ``direction`` (bound it yourself)."""
        for _ in range(_MAX_UNITS):
            if self.frames[direction, label] >= count:
                return
            await self._changed.wait()
        raise AssertionError("wait_for looped too long")  # pragma: no cover

    async def wait_connections(self, count: int) -> None:
        """Wait until ``count`` connections were accepted (bound it yourself)."""
        for _ in range(_MAX_UNITS):
            if self.connections >= count:
                return
            await self._changed.wait()
        raise AssertionError("wait_connections looped too long")  # pragma: no cover

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- one connection

    async def _handle(self, link: _Link) -> None:
        self._links.add(link)
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, TO_SERVER)
                    nursery.start_soon(self._pump, link, TO_CLIENT)
        finally:
            self._links.discard(link)
            # Shielded: when the proxy itself is cancelled, the Cancelled of the first close
            # would otherwise skip the second (it belongs to the outermost cancelled scope).
            with trio.CancelScope(shield=True):
                for stream in (link.client, link.server):
                    if stream is None:
                        continue
                    if link.reset:
                        _linger_zero(stream)
                    await trio.aclose_forcefully(stream)
            self._notify()

    async def _pump(self, link: _Link, direction: Direction) -> None:
        try:
            if direction is TO_CLIENT:
                await link.server_ready.wait()
            source = link.client if direction is TO_SERVER else link.server
            assert source is not None
            await self._pump_bytes(link, direction, source)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            link.cut()

    async def _pump_bytes(
        self, link: _Link, direction: Direction, source: trio.SocketStream
    ) -> None:
        buffer = bytearray()
        framing = False
        head_done = False
        for _ in range(_MAX_UNITS):
            if not head_done:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    head = bytes(buffer[: end + 4])
                    del buffer[: end + 4]
                    head_done = True
                    framing = direction is TO_SERVER or head.startswith(b"HTTP/1.1 101")
                    await self._deliver(link, direction, Frame(raw=head, header_len=len(head)))
                    link.framing[direction] = framing
                    continue
                if len(buffer) > _MAX_HEAD:
                    head_done = True  # not HTTP: a plain byte pipe from here on
            elif framing:
                try:
                    frame = parse_frame(buffer, self.max_frame_bytes)
                except ValueError:
                    framing = False
                    continue
                if frame is not None:
                    del buffer[: len(frame.raw)]
                    link.frames[direction] += 1
                    await self._deliver(link, direction, frame)
                    continue
            elif buffer:
                chunk = bytes(buffer)
                buffer.clear()
                await link.send(direction, chunk)
                continue
            data = await source.receive_some(_CHUNK)
            if not data:
                # EOF: pass on what is left (a partial frame stays partial), then half-close.
                await link.send(direction, bytes(buffer))
                if link.server is None:
                    link.cut()  # the client left before sending anything
                    return
                async with link.locks[direction]:
                    destination = link.destination(direction)
                    await destination.send_eof()
                return
            buffer += data

    async def _deliver(self, link: _Link, direction: Direction, frame: Frame) -> None:
        label = frame.label
        self.frames[direction, label] += 1
        self.log.append((link.number, direction, label))
        self._notify()
        data: bytes | None = frame.raw
        hit = _Hit(self, link, direction, frame)
        for armed in list(self._armed):
            if data is None:
                break
            if not armed.matches(link, direction, frame, link.frames[direction]):
                continue
            armed.hits += 1
            if armed.times is not None and armed.hits >= armed.times:
                self.disarm(armed)
            armed.fired.set()
            data = await armed.fault.apply(hit, data)
        if data is not None:
            await link.send(direction, data)


def _linger_zero(stream: trio.SocketStream) -> None:
    """Make the coming close send a TCP reset instead of a FIN."""
    with suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def upstream_of(url: str) -> tuple[str, int]:
    """The (host, port) of a ``ws://host:port/`` URL."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host and port in {url!r}")
    return parts.hostname, parts.port


@asynccontextmanager
async def open_fault_proxy(
    upstream: str | tuple[str, int], **options: Any
) -> AsyncIterator[FaultProxy]:
    """A running ``FaultProxy`` to ``upstream`` (a ``ws://`` URL or (host, port)) for the
    block; leaving it closes every proxied connection."""
    host, port = upstream_of(upstream) if isinstance(upstream, str) else upstream
    async with trio.open_nursery() as nursery:
        proxy: FaultProxy = await nursery.start(
            lambda task_status: FaultProxy.serve(host, port, task_status=task_status, **options)
        )
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


# --- a peer that never answers ------------------------------------------------------------------


class SilentPeer:
    """A TCP listener on 127.0.0.1 that accepts connections, reads what comes, answers nothing
    (so an upgrade never completes), and closes them when cancelled."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self.received = 0
        """Bytes received over all connections."""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @classmethod
    async def serve(
        cls,
        *,
        max_connections: int = 10_000,
        task_status: trio.TaskStatus[SilentPeer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        peer = cls()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        try:
            peer.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(peer)
                for _ in range(max_connections):
                    stream = await listeners[0].accept()
                    peer.accepted += 1
                    nursery.start_soon(peer._listen, stream)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _listen(self, stream: trio.SocketStream) -> None:
        try:
            for _ in range(_MAX_UNITS):
                data = await stream.receive_some(_CHUNK)
                if not data:
                    break
                self.received += len(data)
            await trio.sleep_forever()  # after EOF too: never answer, never close first
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_silent_peer() -> AsyncIterator[SilentPeer]:
    async with trio.open_nursery() as nursery:
        peer: SilentPeer = await nursery.start(
            lambda task_status: SilentPeer.serve(task_status=task_status)
        )
        try:
            yield peer
        finally:
            nursery.cancel_scope.cancel()


# --- leak checks --------------------------------------------------------------------------------


def fd_targets() -> dict[int, str]:
    """This process's open file descriptors and what each points at (``socket:[...]``...)."""
    targets = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor listdir itself used, closed by now
    return targets


def fd_count() -> int:
    """How many file descriptors this process holds."""
    return len(fd_targets())


def live_tasks() -> set[trio.lowlevel.Task]:
    """Every task of the current trio run: the root task and all its descendants."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    found: set[trio.lowlevel.Task] = set()
    stack = [root]
    for _ in range(_MAX_UNITS):
        if not stack:
            break
        task = stack.pop()
        found.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


@dataclass(frozen=True)
class LeakSnapshot:
    """What was open before a test: file descriptors (with targets) and trio tasks."""

    fds: dict[int, str]
    tasks: frozenset[trio.lowlevel.Task]


def leak_snapshot() -> LeakSnapshot:
    """Take it before the code under test runs (inside a trio run)."""
    return LeakSnapshot(fd_targets(), frozenset(live_tasks()))


async def assert_no_leaks(
    before: LeakSnapshot | int | Collection[str] | Collection[int],
    *,
    settle: float = 1.0,
    step: float = 0.01,
) -> None:
    """Fail unless every file descriptor (and, given a ``LeakSnapshot``, every trio task)
    opened since ``before`` is gone. It waits up to ``settle`` seconds (in ``step``
    sleeps, at most ``settle / step`` of them) for closers to finish first.

    ``before`` is a ``LeakSnapshot``, an ``fd_count()``, or a set of descriptors (names from
    ``os.listdir("/proc/self/fd")`` as ``tests.conftest.open_fds`` returns, or ints). It runs
    no garbage collection: a socket only the collector would close is a leak.
    """
    problems: list[str] = []
    for _ in range(max(1, int(settle / step)) + 1):
        await trio.testing.wait_all_tasks_blocked(cushion=0)
        problems = _leaks(before)
        if not problems:
            return
        await trio.sleep(step)
    raise AssertionError("leaked: " + "; ".join(problems))


def _leaks(before: LeakSnapshot | int | Collection[str] | Collection[int]) -> list[str]:
    now = fd_targets()
    problems = []
    if isinstance(before, int):
        if len(now) > before:
            problems.append(f"{len(now) - before} file descriptor(s) more than before")
        return problems
    if isinstance(before, LeakSnapshot):
        old_fds: dict[int, str | None] = dict(before.fds)
    else:
        old_fds = {int(fd): None for fd in before}
    new = {
        fd: target
        for fd, target in now.items()
        if fd not in old_fds or (old_fds[fd] is not None and old_fds[fd] != target)
    }
    if new:
        listed = ", ".join(f"{fd} -> {target}" for fd, target in sorted(new.items()))
        problems.append(f"file descriptor(s) {listed}")
    if isinstance(before, LeakSnapshot):
        current = trio.lowlevel.current_task()
        extra = [t for t in live_tasks() - before.tasks if t is not current]
        if extra:
            problems.append("task(s) " + ", ".join(sorted(t.name for t in extra)))
    return problems
