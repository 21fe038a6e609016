"""The server's end of one WebSocket (RFC 6455), on wsproto, owning its TCP stream.

The reference server reads its connections itself rather than through trio-websocket, for three
reasons a hostile client makes plain:

- **Budgets before work.** Every byte is charged to the connection's byte budget before wsproto
  sees it, and every frame to its frame budget before the frame is handed on; when either is
  spent, nothing more is read from the connection until it has refilled, so a client cannot make
  the server parse faster than its budget allows (TCP backpressure slows the client instead).
- **Every protocol error ends with its close code** (1002, 1007, 1009), sent before the TCP
  connection closes; trio-websocket hangs up without a close frame after a framing error.
- **A lingering close.** After its close frame the server half-closes the stream and reads (and
  drops) what the client still sends, for a bounded time, before closing: closing a socket with
  unread data resets the connection, and a reset can destroy the close frame still in flight to
  the client (a fragmented message over the limit used to lose its 1009 that way).

There is no reader task: the connection's own task reads when it wants a message, so waiting for
a message is cancel-safe (a cancelled read consumes nothing), and every send is shielded under a
deadline of its own (a send cut short would leave half a frame on the wire).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from fsm_session.server.limits import Bucket

__all__ = ["Budget", "ServerWebSocket", "WebSocketClosed"]

_RECEIVE_BYTES = 16384  # At most this many bytes per read: a read is charged before parsing.
_FLUSH_BYTES = 16384  # Buffered replies are written once they reach this much.
_EVENTS_PER_CHECKPOINT = 32  # Frames handled in a row before other tasks get a turn.
_MIN_READ = 512  # The smallest read, even when the byte budget is almost empty.
_LINGER_BYTES = 1 << 20  # What a lingering close reads and drops at most.
_ABNORMAL = 1006  # No close frame (RFC 6455, section 7.1.5); never sent on the wire.


class WebSocketClosed(Exception):
    """The WebSocket is closed: by the peer, by a protocol error, or by a broken stream.

    ``code`` is the peer's close code, the code the server sent for a protocol error, or 1006
    when the TCP connection ended without a close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Budget:
    """What a connection may send: its byte and frame buckets (see :mod:`.limits`)."""

    bytes: Bucket
    frames: Bucket


class ServerWebSocket:
    """One server-side WebSocket: handshake, messages, pings, close, with budgets charged first.

    ``last_received`` is when (trio's clock) the peer last sent any byte, pings included (P13).
    """

    __slots__ = (
        "_budget",
        "_closing",
        "_events",
        "_max_message_bytes",
        "_out",
        "_parts",
        "_send_deadline",
        "_send_timeout",
        "_size",
        "_stream",
        "_ws",
        "broken",
        "last_received",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message_bytes: int,
        send_timeout: float,
        budget: Budget | None = None,
    ) -> None:
        self._stream = stream
        self._ws = WSConnection(ConnectionType.SERVER)
        self._max_message_bytes = max_message_bytes
        self._send_timeout = send_timeout
        self._budget = budget
        self._events: Iterator[Event] = iter(())
        self._parts: list[str | bytes | bytearray] = []
        self._size = 0  # Characters (text) or bytes (binary) of the message being reassembled.
        self._closing = False  # Our close frame has been sent, or the stream is broken.
        # Replies and pongs wait here until the connection is about to wait for input, so a
        # burst of frames read at once is answered with one write, not one per frame.
        self._out = bytearray()
        self._send_deadline = math.inf  # No send outlasts this (set while closing).
        self.last_received = trio.current_time()
        self.broken: BaseException | None = None
        """Why reading broke, if it did: a reset, or a TLS handshake that failed."""

    @property
    def is_open(self) -> bool:
        """The handshake is done and no close frame has gone either way."""
        return self._ws.state is ConnectionState.OPEN and not self._closing

    # ------------------------------------------------------------------------------------------
    # The opening handshake.
    # ------------------------------------------------------------------------------------------

    async def read_request(self) -> Request | None:
        """The client's upgrade request; ``None`` when the client sent something else (it has
        been answered 400 when wsproto could say why) or hung up."""
        while True:
            for event in self._ws.events():
                if isinstance(event, Request):
                    return event
            data = await self._read(_RECEIVE_BYTES)
            if not data:
                return None
            try:
                self._ws.receive_data(data)
            except RemoteProtocolError as error:
                hint = error.event_hint
                if isinstance(hint, RejectConnection):
                    await self._send_event(hint)
                return None

    async def accept(self, subprotocol: str) -> None:
        await self._send_event(AcceptConnection(subprotocol=subprotocol))
        # Frames the client sent right behind its request are already in wsproto's buffer.
        self._events = self._ws.events()

    async def reject(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        # With its length, the body is sent as is rather than in chunks.
        headers = [*headers, (b"content-length", str(len(body)).encode("ascii"))]
        await self._send_event(RejectConnection(status_code=status, headers=headers, has_body=True))
        await self._send_event(RejectData(data=body))

    # ------------------------------------------------------------------------------------------
    # Messages.
    # ------------------------------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next whole message (text as ``str``, binary as ``bytes``).

        Answers pings on the way. Raises :class:`WebSocketClosed` when the connection is over:
        the peer closed it (answered), or broke the protocol (the close frame with the code of
        RFC 6455 is sent first: 1002, 1007, or 1009 for a message over the limit), or the TCP
        connection ended. Cancel-safe: a cancelled call loses nothing, the next call goes on.
        """
        budget = self._budget
        unyielded = 0
        while True:
            if budget is not None:
                # Each event is a frame parsed: wait for the frame budget before the next one,
                # not only before the next read (one read can hold thousands of tiny frames).
                now = trio.current_time()
                ready = budget.frames.ready_at(now)
                if ready > now:
                    await self._flush()
                    await trio.sleep_until(ready)
            event = next(self._events, None)
            if event is not None:
                message = await self._on_event(event)
                if message is not None:
                    return message
                unyielded += 1
                if unyielded % _EVENTS_PER_CHECKPOINT == 0:
                    await trio.lowlevel.checkpoint()  # Let other connections run too.
                continue
            if self._closing:
                raise WebSocketClosed(_ABNORMAL, "the connection is closing")
            await self._flush()
            data = await self._read(_RECEIVE_BYTES)
            if not data:
                self._closing = True
                raise WebSocketClosed(_ABNORMAL, "the TCP connection ended")
            self._ws.receive_data(data)
            self._events = self._ws.events()

    async def _on_event(self, event: Event) -> str | bytes | None:
        budget = self._budget
        if budget is not None and (
            not isinstance(event, TextMessage | BytesMessage) or event.frame_finished
        ):
            # One frame more, charged before the message is handed on; when the budget is
            # spent, the next frame waits (see receive).
            budget.frames.charge(1, trio.current_time())
        if isinstance(event, TextMessage | BytesMessage):
            self._size += len(event.data)
            if self._size > self._max_message_bytes:
                # A character is at least one byte: over the limit whatever its encoding. The
                # size is of the whole message, however many frames carry it (P2).
                await self._fail(1009, f"messages are limited to {self._max_message_bytes} bytes")
            self._parts.append(event.data)
            if not event.message_finished:
                return None
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, BytesMessage):
                return b"".join(parts)  # type: ignore[arg-type]
            return "".join(parts)  # type: ignore[arg-type]
        if isinstance(event, Ping):
            await self._send_event(event.response(), flush=False)
            return None
        if isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                # The peer closed: answer with its code, then hang up (RFC 6455, 5.5.1).
                await self._send_event(event.response())
                self._closing = True
                raise WebSocketClosed(event.code, event.reason or "")
            if self._ws.state is ConnectionState.OPEN:
                # wsproto found a protocol error; the event carries its close code.
                await self._fail(event.code, event.reason or "protocol error")
            self._closing = True
            raise WebSocketClosed(event.code, event.reason or "")
        return None  # Pongs, and anything else, need nothing.

    async def _fail(self, code: int, reason: str) -> None:
        await self._send_close(code, reason)
        raise WebSocketClosed(code, reason)

    async def send_text(self, text: str) -> None:
        """Send one text message; :class:`WebSocketClosed` when the connection is closing."""
        if not self.is_open:
            raise WebSocketClosed(_ABNORMAL, "the connection is closing")
        await self._send_event(TextMessage(data=text), flush=False)

    # ------------------------------------------------------------------------------------------
    # Closing.
    # ------------------------------------------------------------------------------------------

    async def close(self, code: int, reason: str, linger_for: float) -> None:
        """Send a close frame with ``code`` (when none has been sent), then linger: read and drop
        what the client still sends until it closes too, hangs up, or ``linger_for`` passes.

        Runs shielded: it is also how a cancelled connection says goodbye (1001). The caller
        closes the stream afterwards.
        """
        deadline = trio.current_time() + linger_for
        # The sends below shield themselves; this bounds them too (the drain time, say).
        self._send_deadline = deadline
        with trio.CancelScope(shield=True, deadline=deadline):
            try:
                if self.is_open:
                    await self._send_close(code, reason)
            except WebSocketClosed:
                return  # The stream is broken: nothing more can be said.
            await self.linger()

    async def linger(self) -> None:
        """Read and drop incoming bytes until the peer's close frame or EOF (call under a
        deadline); then the stream can be closed without a reset destroying our close frame."""
        ws = self._ws
        if isinstance(self._stream, trio.abc.HalfCloseableStream):  # TLS cannot half-close
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self._stream.send_eof()
        dropped = 0
        while dropped < _LINGER_BYTES and ws.state is not ConnectionState.CLOSED:
            try:
                data = await self._stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            dropped += len(data)
            if ws.state is ConnectionState.LOCAL_CLOSING:
                ws.receive_data(bytes(data))
                for event in ws.events():  # After a parse error this yields nothing.
                    if isinstance(event, CloseConnection):
                        return

    async def _send_close(self, code: int, reason: str) -> None:
        if self._ws.state is ConnectionState.OPEN and not self._closing:
            await self._send_event(CloseConnection(code=code, reason=reason))
        self._closing = True

    # ------------------------------------------------------------------------------------------
    # Bytes.
    # ------------------------------------------------------------------------------------------

    async def _read(self, max_bytes: int) -> bytes:
        budget = self._budget
        if budget is not None:
            now = trio.current_time()
            ready = max(budget.bytes.ready_at(now), budget.frames.ready_at(now))
            if ready > now:
                await trio.sleep_until(ready)  # The budget is spent: read nothing until then.
                now = ready
            # No more than the budget holds (a little more when it is almost empty), so a read
            # overdraws it by a few hundred bytes at most.
            max_bytes = min(max_bytes, max(_MIN_READ, int(budget.bytes.level(now))))
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            self.broken = error
            data = b""
        if data:
            now = trio.current_time()
            self.last_received = now
            if budget is not None:
                budget.bytes.charge(len(data), now)
        return bytes(data)

    async def _send_event(self, event: Event, *, flush: bool = True) -> None:
        """Send ``event``; with ``flush=False`` it may wait in the buffer until the connection
        is about to wait for input (or the buffer is large)."""
        self._out += self._ws.send(event)
        if flush or len(self._out) >= _FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._out:
            return
        data = bytes(self._out)
        self._out.clear()
        deadline = min(trio.current_time() + self._send_timeout, self._send_deadline)
        with trio.CancelScope(shield=True, deadline=deadline):
            try:
                await self._stream.send_all(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        # Cut short (the client reads nothing) or broken: a partial frame may be on the wire.
        self._closing = True
        raise WebSocketClosed(_ABNORMAL, "the client does not read what is sent")
