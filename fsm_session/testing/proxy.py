"""A loopback TCP proxy between a session service and a backend, for the conformance kit.

The kit never reaches into a service's transport. It puts this proxy in front of the backend and
gives the service the proxy's URL instead. The proxy forwards bytes unchanged, and on the way:

* reads the WebSocket frames of both directions (RFC 6455 framing, no extensions) and reports
  each complete text message to ``on_frame`` *before* forwarding (or holding) it, so an observer
  sees a request before the backend can answer it, and a reply before the client reads it;
* can **hold** one direction (``hold("server")``: replies wait in the proxy until
  ``release("server")``), which keeps a session OPENING or CLOSING for as long as a test needs;
* can **cut** every live connection (``cut()``), which is a dropped TCP peer for both sides.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import trio

from fsm_session.testing.wsframes import build_frame, parse_frame

__all__ = ["Direction", "Frame", "LoopbackProxy", "Mutator"]

Direction = Literal["client", "server"]
"""Who sent a frame: the ``client`` (the service) or the ``server`` (the backend)."""

_TEXT, _CONTINUATION, _CLOSE = 0x1, 0x0, 0x8


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete WebSocket message seen by the proxy."""

    sender: Direction
    connection: int
    """Which TCP connection through the proxy (0, 1, ...)."""
    opcode: int
    text: str | None
    """The text of a text message; ``None`` for other kinds."""
    data: dict[str, Any] | None = field(default=None, compare=False)
    """The text decoded as a JSON object, when it is one."""

    @property
    def type(self) -> str | None:
        return None if self.data is None else _str(self.data.get("type"))

    @property
    def id(self) -> int | None:
        value = None if self.data is None else self.data.get("id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class _Parser:
    """Splits one direction's bytes into raw frames, after the HTTP upgrade's header block."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.passthrough = False
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[bytes, int | None, bytes | None]]:
        """Raw chunks ready to forward, each with the message it completes (opcode, payload)."""
        self.buffer += data
        out: list[tuple[bytes, int | None, bytes | None]] = []
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return out
            head = bytes(self.buffer[: end + 4])
            del self.buffer[: end + 4]
            self.upgraded = True
            out.append((head, None, None))
            if head.startswith(b"HTTP/") and not head.startswith(
                (b"HTTP/1.1 101", b"HTTP/1.0 101")
            ):
                self.passthrough = True  # a refused upgrade: its body is not frames
        if self.passthrough:
            if self.buffer:
                out.append((bytes(self.buffer), None, None))
                self.buffer.clear()
            return out
        while True:
            parsed = self._frame()
            if parsed is None:
                return out
            raw, fin, opcode, payload = parsed
            if opcode >= 0x8:  # control frames are never fragmented
                out.append((raw, opcode, payload))
                continue
            if opcode != _CONTINUATION:
                self.fragment_opcode = opcode
                self.fragments = []
            self.fragments.append(payload)
            if fin:
                message = b"".join(self.fragments)
                self.fragments = []
                out.append((raw, self.fragment_opcode, message))
            else:
                out.append((raw, None, None))

    def _frame(self) -> tuple[bytes, bool, int, bytes] | None:
        frame = parse_frame(self.buffer)
        if frame is None or frame.opcode is None:
            return None
        del self.buffer[: len(frame.raw)]
        return frame.raw, frame.fin, frame.opcode, frame.payload


class Mutator(Protocol):
    """Rewrites what crosses a :class:`LoopbackProxy`: the mutation harness's broken backends
    are the real server behind a proxy with a mutator."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        """The HTTP upgrade request (``client``) or response (``server``), as it goes on."""
        ...

    def message(
        self, sender: Direction, connection: int, opcode: int, payload: bytes
    ) -> list[tuple[int, bytes]] | None:
        """A complete message (a control frame, or all of a message's fragments): ``None`` to
        forward it unchanged, else the ``(opcode, payload)`` messages to send in its place."""
        ...


class LoopbackProxy:
    """``url = await proxy.start(nursery)``; point a service at ``url`` instead of ``target``.

    Runs until the nursery is cancelled. ``on_frame(frame)`` is called synchronously for every
    complete message, before it is forwarded; it must not raise.
    """

    def __init__(
        self,
        target: str,
        on_frame: Callable[[Frame], None] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        mutator: Mutator | None = None,
    ) -> None:
        parts = urlsplit(target)
        self.mutator = mutator
        self._tls = ssl_context
        """For a ``wss://`` target: the proxy speaks TLS to the backend and plain WebSocket to
        its own clients (its URL is ``ws://``), so it can read every frame."""
        self.target = target
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._path = parts.path or "/"
        self._scheme = "ws" if ssl_context is not None else (parts.scheme or "ws")
        self.on_frame = on_frame
        self.frames: list[Frame] = []
        """Every message seen, both directions, in the order seen."""
        self.connections = 0
        self._live: set[trio.CancelScope] = set()
        self._streams: set[trio.SocketStream] = set()
        self._held: dict[Direction, bool] = {"client": False, "server": False}
        self._released: dict[Direction, trio.Event] = {
            "client": trio.Event(),
            "server": trio.Event(),
        }
        self.url = ""

    async def start(self, nursery: trio.Nursery) -> str:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._handle, listeners)
        self.url = urlunsplit((self._scheme, f"127.0.0.1:{port}", self._path, "", ""))
        return self.url

    def hold(self, sender: Direction) -> None:
        """Keep ``sender``'s messages in the proxy until :meth:`release`."""
        if not self._held[sender]:
            self._held[sender] = True
            self._released[sender] = trio.Event()

    def release(self, sender: Direction) -> None:
        self._held[sender] = False
        self._released[sender].set()

    def cut(self) -> None:
        """Drop every live connection at once, without a close handshake (a dropped peer)."""
        for scope in list(self._live):
            scope.cancel()

    @property
    def live(self) -> int:
        """How many connections are going through the proxy now."""
        return len(self._live)

    async def _handle(self, client: trio.SocketStream) -> None:
        number = self.connections
        self.connections += 1
        server: trio.SocketStream | None = None
        try:
            server = await trio.open_tcp_stream(self._host, self._port)
            upstream: trio.abc.Stream = server
            if self._tls is not None:
                upstream = trio.SSLStream(
                    server, self._tls, server_hostname=self._host, https_compatible=True
                )
                await upstream.do_handshake()
            self._streams.update((client, server))
            with trio.CancelScope() as scope:
                self._live.add(scope)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pipe, client, upstream, "client", number, scope)
                        nursery.start_soon(self._pipe, upstream, client, "server", number, scope)
                finally:
                    self._live.discard(scope)
        except (OSError, trio.BrokenResourceError):
            pass  # the backend is not there: the client sees its connection closed
        finally:
            for stream in (client, server):
                if stream is not None:
                    self._streams.discard(stream)
                    await trio.aclose_forcefully(stream)

    def close(self) -> None:
        """Close every stream still open (call after the proxy's nursery has ended)."""
        for stream in list(self._streams):
            stream.socket.close()
        self._streams.clear()

    async def _pipe(
        self,
        source: trio.abc.Stream,
        sink: trio.abc.Stream,
        sender: Direction,
        number: int,
        scope: trio.CancelScope,
    ) -> None:
        parser = _Parser()
        mutator = self.mutator
        pending = bytearray()  # with a mutator: a message's fragments, until it is complete
        first = True
        try:
            while True:
                data = await source.receive_some(65536)
                if not data:
                    break
                for raw, opcode, payload in parser.feed(bytes(data)):
                    is_head, first = first, False
                    if is_head and mutator is not None:
                        raw = mutator.head(sender, number, raw)
                    if opcode is not None and payload is not None:
                        # Reported first: a held reply was sent by the backend, not yet read.
                        self._seen(sender, number, opcode, payload)
                        while self._held[sender]:
                            await self._released[sender].wait()
                        if mutator is not None:
                            raw = bytes(pending) + raw if opcode < 0x8 else raw
                            if opcode < 0x8:
                                pending.clear()
                            raw = self._mutated(mutator, sender, number, opcode, payload, raw)
                    elif mutator is not None and not is_head and not parser.passthrough:
                        pending += raw
                        continue
                    await sink.send_all(raw)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        # One side hung up: end both, as a TCP peer would see it.
        scope.cancel()

    @staticmethod
    def _mutated(
        mutator: Mutator, sender: Direction, number: int, opcode: int, payload: bytes, raw: bytes
    ) -> bytes:
        replaced = mutator.message(sender, number, opcode, payload)
        if replaced is None:
            return raw
        key = os.urandom(4) if sender == "client" else None  # RFC 6455: clients mask
        return b"".join(build_frame(data, opcode=op, mask_key=key) for op, data in replaced)

    def _seen(self, sender: Direction, number: int, opcode: int, payload: bytes) -> None:
        if opcode not in (_TEXT, _CLOSE):
            return
        text = payload.decode("utf-8", "replace") if opcode == _TEXT else None
        data: dict[str, Any] | None = None
        if text is not None:
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            data = decoded if isinstance(decoded, dict) else None
        frame = Frame(sender, number, opcode, text, data)
        self.frames.append(frame)
        if self.on_frame is not None:
            self.on_frame(frame)
