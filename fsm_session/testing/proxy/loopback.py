"""The loopback proxy: forwards a WebSocket conversation byte for byte, watching and altering it.

It passes the HTTP upgrade through, then cuts each direction's bytes into WebSocket frames
(:mod:`fsm_session.testing.wsframes`) and, for each:

* joins fragments into messages and reports every text or close message to ``on_frame``
  *before* forwarding (or holding) it, so an observer sees a request before the backend can
  answer it, and a reply before the client reads it;
* waits while its direction is **held** (``hold("server")`` until ``release("server")``);
* lets a :class:`~fsm_session.testing.proxy.messages.Mutator` rewrite the message;
* applies the faults armed for it (:mod:`fsm_session.testing.proxy.faults`), then forwards
  what is left.

A refused upgrade's body, or a frame over ``max_frame_bytes``, turns that direction into a plain
byte pipe. One side's end of stream is passed on as a half-close.
"""

from __future__ import annotations

import os
import ssl
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from fsm_session.testing.proxy.faults import Armed, Fault, Hit, Inject
from fsm_session.testing.proxy.links import Link
from fsm_session.testing.proxy.messages import (
    TO_CLIENT,
    TO_SERVER,
    Direction,
    Frame,
    Mutator,
    Reassembler,
)
from fsm_session.testing.wsframes import OP_CLOSE, WireFrame, build_frame, parse_frame

__all__ = ["LoopbackProxy", "open_proxy"]

_MAX_HEAD = 64 * 1024  # an HTTP head longer than this is passed through unparsed
_MAX_UNITS = 10_000_000  # bounds every loop; far above what a test sends
_CHUNK = 65536
_UPGRADED = (b"HTTP/1.1 101", b"HTTP/1.0 101")


class LoopbackProxy:
    """``url = await proxy.start(nursery)``; point a service at ``url`` instead of ``target``.

    Runs until the nursery is cancelled. ``on_frame(frame)`` is called synchronously for every
    complete text or close message, before it is forwarded; it must not raise. For a ``wss://``
    target give ``ssl_context``: the proxy speaks TLS to the backend and plain WebSocket to its
    own clients (its URL is ``ws://``), so it can read every frame. After ``max_connections``
    accepts, new connections wait in the listen backlog.
    """

    def __init__(
        self,
        target: str,
        on_frame: Callable[[Frame], None] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        mutator: Mutator | None = None,
        max_frame_bytes: int = 1 << 24,
        max_connections: int = 10_000,
    ) -> None:
        parts = urlsplit(target)
        self.target = target
        self.upstream: tuple[str, int] = (
            parts.hostname or "127.0.0.1",
            parts.port or (443 if parts.scheme == "wss" else 80),
        )
        """Where new connections go; change it to follow a restarted backend."""
        self._path = parts.path or "/"
        self._scheme = "ws" if ssl_context is not None else (parts.scheme or "ws")
        self._tls = ssl_context
        self.on_frame = on_frame
        self.mutator = mutator
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.url = ""
        self.port = 0
        self.frames: list[Frame] = []
        """Every message seen, both directions, in the order seen."""
        self.counts: Counter[tuple[Direction, str]] = Counter()
        """Frames seen, by direction and label (the handshake counts as ``HANDSHAKE``)."""
        self.log: deque[tuple[int, Direction, str]] = deque(maxlen=10_000)
        """(connection, direction, label) of the latest frames seen, oldest first."""
        self.connections = 0
        """Connections accepted so far."""
        self._links: set[Link] = set()
        self._armed: list[Armed] = []
        self._held: dict[Direction, bool] = {"client": False, "server": False}
        self._released: dict[Direction, trio.Event] = {
            "client": trio.Event(),
            "server": trio.Event(),
        }
        self._waiting = 0
        self._changed = trio.Event()

    # -- running

    async def start(self, nursery: trio.Nursery) -> str:
        """Listen on 127.0.0.1 (a free port) in ``nursery``; the proxy's URL."""
        url: str = await nursery.start(self._serve)
        return url

    async def _serve(self, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        try:
            self.port = listeners[0].socket.getsockname()[1]
            netloc = f"127.0.0.1:{self.port}"
            self.url = urlunsplit((self._scheme, netloc, self._path, "", ""))
            async with trio.open_nursery() as nursery:
                task_status.started(self.url)
                for _ in range(self.max_connections):
                    stream = await listeners[0].accept()
                    link = Link(self.connections, stream, self.upstream, self._tls)
                    self.connections += 1
                    self._notify()
                    nursery.start_soon(self._handle, link)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    def close(self) -> None:
        """Close every stream still open (call after the proxy's nursery has ended)."""
        for link in list(self._links):
            link.close_sockets()
        self._links.clear()

    @property
    def live(self) -> int:
        """How many connections are going through the proxy now."""
        return len(self._links)

    # -- holding and cutting

    def hold(self, sender: Direction) -> None:
        """Keep ``sender``'s messages in the proxy until :meth:`release`."""
        if not self._held[sender]:
            self._held[sender] = True
            self._released[sender] = trio.Event()

    def release(self, sender: Direction | None = None) -> None:
        """Let ``sender``'s messages (``None``: both directions') go on."""
        for one in (sender,) if sender is not None else (TO_SERVER, TO_CLIENT):
            self._held[one] = False
            self._released[one].set()

    async def wait_released(self, sender: Direction) -> None:
        """Return once ``sender``'s direction is not held."""
        self._waiting += 1
        try:
            for _ in range(_MAX_UNITS):
                if not self._held[sender]:
                    return
                await self._released[sender].wait()
        finally:
            self._waiting -= 1

    @property
    def stalled(self) -> int:
        """Directions of connections waiting on a hold right now."""
        return self._waiting

    def cut(self, *, reset: bool = False) -> int:
        """Drop every live connection at once, without a close handshake (a dropped peer);
        ``reset``: with TCP resets rather than FINs. Returns how many."""
        links = list(self._links)
        for link in links:
            link.cut(reset)
        return len(links)

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
        """Apply ``fault`` to the next frame going ``direction`` (``TO_SERVER``, ``TO_CLIENT``)
        whose label is ``type`` (any frame but the handshake when None) and, when given, that is
        the ``nth`` frame (from 1, handshake not counted) that way on ``connection`` (from 0).
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

    async def inject(self, message: str | bytes, *, to: Direction = TO_CLIENT) -> int:
        """Send an extra frame in direction ``to`` on every live upgraded connection; returns
        how many."""
        sent = 0
        for link in list(self._links):
            if link.framing[TO_CLIENT] and link.framing[TO_SERVER]:
                try:
                    await link.send(to, Inject(message, to=to).frame_bytes())
                    sent += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    link.cut()
        return sent

    # -- counters

    def count(self, direction: Direction, label: str) -> int:
        """How many frames labelled ``label`` went ``direction`` so far."""
        return self.counts[direction, label]

    async def wait_for(self, direction: Direction, label: str, count: int = 1) -> None:
        """Wait until ``count`` frames labelled ``label`` went ``direction`` (bound it yourself)."""
        for _ in range(_MAX_UNITS):
            if self.counts[direction, label] >= count:
                return
            await self._changed.wait()
        raise RuntimeError("wait_for waited too long")  # pragma: no cover

    async def wait_connections(self, count: int) -> None:
        """Wait until ``count`` connections were accepted (bound it yourself)."""
        for _ in range(_MAX_UNITS):
            if self.connections >= count:
                return
            await self._changed.wait()
        raise RuntimeError("wait_connections waited too long")  # pragma: no cover

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- one connection

    async def _handle(self, link: Link) -> None:
        self._links.add(link)
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, TO_SERVER)
                    nursery.start_soon(self._pump, link, TO_CLIENT)
        finally:
            self._links.discard(link)
            await link.aclose()
            self._notify()

    async def _pump(self, link: Link, sender: Direction) -> None:
        try:
            if sender == TO_CLIENT:
                await link.server_ready.wait()
            source = link.client if sender == TO_SERVER else link.server
            if source is not None:
                await self._pump_bytes(link, sender, source)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            link.cut()

    async def _pump_bytes(self, link: Link, sender: Direction, source: trio.abc.Stream) -> None:
        buffer = bytearray()
        framing = head_done = False
        messages = Reassembler()
        pending = bytearray()  # with a mutator: a message's fragments, until it is complete
        for _ in range(_MAX_UNITS):
            if not head_done:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    head = bytes(buffer[: end + 4])
                    del buffer[: end + 4]
                    head_done = True
                    framing = sender == TO_SERVER or head.startswith(_UPGRADED)
                    if self.mutator is not None:
                        head = self.mutator.head(sender, link.number, head)
                    await self._deliver(link, sender, WireFrame(head, len(head)), head)
                    link.framing[sender] = framing
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
                    link.frames[sender] += 1
                    await self._frame(link, sender, frame, messages, pending)
                    continue
            elif buffer:
                chunk = bytes(buffer)
                buffer.clear()
                await link.send(sender, chunk)
                continue
            data = await source.receive_some(_CHUNK)
            if not data:
                # End of stream: pass on what is left (a partial frame stays partial).
                await link.send(sender, bytes(pending) + bytes(buffer))
                if link.server is None:
                    link.cut()  # the client left before sending anything
                    return
                await link.send_eof(sender)
                return
            buffer += data

    async def _frame(
        self,
        link: Link,
        sender: Direction,
        frame: WireFrame,
        messages: Reassembler,
        pending: bytearray,
    ) -> None:
        message = messages.add(frame)
        mutator = self.mutator
        data: bytes | None = frame.raw
        if message is not None:
            opcode, payload = message
            seen = Frame.of(sender, link.number, opcode, payload)
            if seen is not None:
                self.frames.append(seen)
                if self.on_frame is not None:
                    self.on_frame(seen)
            # After reporting: a held reply was sent by the backend, not yet read.
            await self.wait_released(sender)
            if mutator is not None:
                whole = frame.raw
                if opcode < OP_CLOSE:  # a data message: all its fragments go on together
                    whole = bytes(pending) + whole
                    pending.clear()
                data = self._mutated(mutator, sender, link.number, opcode, payload, whole)
        elif mutator is not None:
            pending += frame.raw
            data = None
        await self._deliver(link, sender, frame, data)

    @staticmethod
    def _mutated(
        mutator: Mutator, sender: Direction, number: int, opcode: int, payload: bytes, raw: bytes
    ) -> bytes:
        replaced = mutator.message(sender, number, opcode, payload)
        if replaced is None:
            return raw
        key = os.urandom(4) if sender == TO_SERVER else None  # RFC 6455: clients mask
        return b"".join(build_frame(data, opcode=op, mask_key=key) for op, data in replaced)

    async def _deliver(
        self, link: Link, sender: Direction, frame: WireFrame, data: bytes | None
    ) -> None:
        """Count ``frame``, apply the faults armed for it to ``data`` (its bytes as they go on;
        ``None``: held back for now), and send what is left."""
        label = frame.label
        self.counts[sender, label] += 1
        self.log.append((link.number, sender, label))
        self._notify()
        if data is None:
            return
        hit = Hit(self, link, sender, frame)
        for armed in list(self._armed):
            if data is None:
                break
            if not armed.matches(link.number, sender, frame, link.frames[sender]):
                continue
            armed.hits += 1
            if armed.times is not None and armed.hits >= armed.times:
                self.disarm(armed)
            armed.fired.set()
            data = await armed.fault.apply(hit, data)
        if data is not None:
            await link.send(sender, data)


@asynccontextmanager
async def open_proxy(target: str, **options: Any) -> AsyncIterator[LoopbackProxy]:
    """A running :class:`LoopbackProxy` to ``target`` for the block; leaving it closes every
    proxied connection. ``options`` are the proxy's keyword arguments."""
    proxy = LoopbackProxy(target, **options)
    async with trio.open_nursery() as nursery:
        await proxy.start(nursery)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
