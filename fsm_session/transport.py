"""The trio-websocket driver beneath a session: one connection at a time, and its socket machine.

The transport holds no protocol state of its own. It moves the socket machine
(:class:`~fsm_session.machine.SocketCore`) as the connection goes, hands every decoded frame to its
listener from one reader task, and sends frames through one lock. What it works around in
trio-websocket (see ``specs/protocol.md`` and the project's design notes):

* the connect, TCP and WebSocket handshake together, runs under our own ``fail_after``: the
  library's timeout does not fire when a peer accepts TCP and never answers the upgrade;
* the TCP stream is opened here and always closed here, so a rejected handshake, a 1009 close or a
  dropped peer leaves no file descriptor behind;
* ``send_message`` is not cancel-safe, so a send is shielded from the caller's cancellation and
  bounded by its own timeout; a send that times out poisons the connection, which is aborted;
* messages are taken off the library's queue as they come, so pings and closes keep flowing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from fsm_session.errors import (
    ConnectionFailed,
    ConnectionLost,
    InvalidToken,
    LocalProtocolError,
    RemoteProtocolError,
    SessionError,
    TokenExpired,
)
from fsm_session.machine import SocketCore, WebSocketState
from fsm_session.protocol import MAX_FRAME_BYTES, SUBPROTOCOL, CloseCode, Message, decode_reply

__all__ = ["Transport", "TransportConfig", "TransportListener"]

log = logging.getLogger("fsm_session.transport")


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Limits of one connection, in seconds and bytes."""

    connect_timeout: float = 10.0
    """The whole connect: TCP, then the WebSocket handshake."""
    send_timeout: float = 10.0
    """One frame's send; past it the connection is aborted."""
    close_timeout: float = 2.0
    """The WebSocket close handshake."""
    keepalive_interval: float | None = 30.0
    """How often to ping the backend while connected (rule R15); ``None``: never."""
    keepalive_timeout: float = 10.0
    """A pong later than this after its ping is a connection loss (rule R15)."""
    max_frame_bytes: int = MAX_FRAME_BYTES


class TransportListener:
    """What the transport tells its owner. All calls come from trio tasks, never concurrently."""

    __slots__ = ()

    def socket_changed(self, old: WebSocketState, new: WebSocketState) -> None:
        """The socket machine moved (rule S1)."""

    def received(self, message: Message) -> None:
        """A frame arrived and decoded."""

    def dropped(self, error: SessionError) -> None:
        """The connection ended without our asking: the peer closed it, or it broke."""


_REJECT_ERRORS: Final = {"invalid_token": InvalidToken, "token_expired": TokenExpired}


def _rejection(exc: ConnectionRejected) -> SessionError:
    """Turn an HTTP refusal of the upgrade into our error; a 401 is about the token."""
    if exc.status_code == 401:
        code = b"token_expired" if exc.body and b"token_expired" in exc.body else b"invalid_token"
        cls = _REJECT_ERRORS[code.decode()]
        return cls(f"the backend refused the access token (HTTP {exc.status_code})", rule="P1")
    return ConnectionFailed(f"the backend refused the upgrade (HTTP {exc.status_code})", rule="P1")


def _first(group: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(group, kind):
        return group
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            found = _first(inner, kind)
            if found is not None:
                return found
    return None


class Transport:
    """One WebSocket connection at a time to ``url``, its tasks run in ``nursery``."""

    __slots__ = (
        "_abort_error",
        "_closing_by_us",
        "_down",
        "_finished",
        "_handshake_over",
        "_host",
        "_host_header",
        "_listener",
        "_nursery",
        "_port",
        "_resource",
        "_scope",
        "_send_lock",
        "_ws",
        "config",
        "socket",
        "url",
    )

    def __init__(
        self,
        url: str,
        nursery: trio.Nursery,
        listener: TransportListener,
        config: TransportConfig | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ConnectionFailed(f"expected a ws:// URL with a host, got {url!r}", rule="P1")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._host_header = self._host if self._port == 80 else f"{self._host}:{self._port}"
        self._resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._nursery = nursery
        self._listener = listener
        self.config = config or TransportConfig()
        self.socket = SocketCore()
        self._ws: WebSocketConnection | None = None
        self._scope: trio.CancelScope | None = None
        self._finished = trio.Event()
        self._finished.set()
        self._down = trio.Event()
        self._down.set()
        self._handshake_over = trio.Event()
        self._send_lock = trio.Lock()
        self._closing_by_us = False
        self._abort_error: SessionError | None = None

    @property
    def state(self) -> WebSocketState:
        return self.socket.state

    def _move(self, trigger: str) -> None:
        old = self.socket.state
        getattr(self.socket, trigger)()
        if self.socket.state is WebSocketState.CLOSED:
            self._down.set()
        self._listener.socket_changed(old, self.socket.state)

    async def connect(self, token: str) -> None:
        """Connect and finish the handshake, or raise and leave the socket CLOSED.

        Raises :class:`InvalidToken`/:class:`TokenExpired` when the backend refuses the token and
        :class:`ConnectionFailed` for anything else, within ``connect_timeout``. Cancelled, it
        leaves the socket CLOSED and nothing open.
        """
        if self.socket.state is not WebSocketState.CLOSED or not self._finished.is_set():
            raise LocalProtocolError(
                "connect() needs a CLOSED socket", rule="S1", trigger="connect", state=self.state
            )
        self._down = trio.Event()
        self._move("connect")
        self._finished = trio.Event()
        self._handshake_over = trio.Event()
        self._closing_by_us = False
        self._abort_error = None
        try:
            await self._nursery.start(self._run, token)
        except BaseException:
            if self.state is WebSocketState.CONNECTING:
                self._move("connect_failed")
            raise

    async def _run(self, token: str, task_status: trio.TaskStatus[None]) -> None:
        stream: trio.SocketStream | None = None
        connected = False
        error: SessionError = ConnectionLost("the connection ended", rule="R14")
        try:
            async with trio.open_nursery() as inner:  # hosts trio-websocket's own reader
                try:
                    with trio.fail_after(self.config.connect_timeout):
                        stream = await trio.open_tcp_stream(self._host, self._port)
                        ws = await wrap_client_stream(
                            inner,
                            stream,
                            self._host_header,
                            self._resource,
                            subprotocols=[SUBPROTOCOL],
                            extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                            message_queue_size=64,
                            max_message_size=self.config.max_frame_bytes,
                        )
                except BaseException as exc:
                    raise self._connect_error(exc) from None
                if ws.subprotocol != SUBPROTOCOL:
                    raise ConnectionFailed(f"the backend does not speak {SUBPROTOCOL}", rule="P1")
                self._ws = ws
                connected = True
                with trio.CancelScope() as scope:
                    self._scope = scope
                    self._move("connected")
                    task_status.started()
                    error = await self._read(ws)
                # The library's reader task completes a close handshake: cancel it only once
                # the handshake is over (ours, in close(), or the peer's, answered here).
                if self._closing_by_us:
                    await self._handshake_over.wait()
                elif not scope.cancelled_caught and self._abort_error is None:
                    with trio.move_on_after(self.config.close_timeout):
                        await ws.aclose()
                inner.cancel_scope.cancel()
        except BaseException as exc:
            if not connected:
                raise self._connect_error(exc) from None
            if _first(exc, trio.Cancelled) is not None:
                raise  # the service itself is going away
            log.exception("the connection failed")
            error = ConnectionLost(f"the connection failed: {exc!r}", rule="R14")
        finally:
            self._ws = None
            self._scope = None
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            self._finished.set()
            if connected and not self._closing_by_us:
                self._move("dropped")
                self._listener.dropped(self._abort_error or error)

    def _connect_error(self, exc: BaseException) -> BaseException:
        """The error a failed connect raises; cancellation stays cancellation."""
        ours = _first(exc, SessionError)
        if ours is not None:
            return ours
        rejected = _first(exc, ConnectionRejected)
        if isinstance(rejected, ConnectionRejected):
            return _rejection(rejected)
        if _first(exc, trio.TooSlowError) is not None:
            return ConnectionFailed(
                f"no WebSocket handshake within {self.config.connect_timeout} s", rule="P1"
            )
        if _first(exc, trio.Cancelled) is not None:
            return exc
        cause = _first(exc, OSError) or _first(exc, HandshakeError) or exc
        return ConnectionFailed(f"cannot connect to {self.url}: {cause!r}", rule="P1")

    async def _read(self, ws: WebSocketConnection) -> SessionError:
        """The reader: decode each frame and hand it over, until the connection ends.

        It also keeps the connection alive (rule R15): every ``keepalive_interval`` it pings,
        and a pong missing after ``keepalive_timeout`` ends the connection as lost. One task
        and one deadline per interval do both, rather than a task of its own per connection.
        """
        interval = self.config.keepalive_interval
        while True:
            deadline = math.inf if interval is None else trio.current_time() + interval
            with trio.CancelScope(deadline=deadline):
                while True:
                    try:
                        text = await ws.get_message()  # cancel-safe: no frame is lost
                    except ConnectionClosed as exc:
                        code = exc.reason.code if exc.reason is not None else None
                        return ConnectionLost(f"the connection closed (code {code})", rule="R14")
                    try:
                        message = decode_reply(text)
                    except RemoteProtocolError as exc:
                        log.warning("closing the connection: %s", exc)
                        with (
                            trio.CancelScope(shield=True),
                            trio.move_on_after(self.config.close_timeout),
                        ):
                            await ws.aclose(CloseCode.PROTOCOL_ERROR, "bad frame")
                        return exc
                    self._listener.received(message)
            if not await self._pong(ws):
                timeout = self.config.keepalive_timeout
                self._abort_error = ConnectionLost(f"no pong within {timeout} s", rule="R15")
                return self._abort_error

    async def _pong(self, ws: WebSocketConnection) -> bool:
        """Ping and wait for the pong; ``False`` when it does not come in time (rule R15)."""
        with trio.move_on_after(self.config.keepalive_timeout):
            try:
                await ws.ping()
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                return True  # the connection is ending; the reader says so next
            return True
        return False

    async def send(self, text: str) -> None:
        """Send one frame, shielded from cancellation (a cut frame would poison the stream).

        Raises :class:`ConnectionLost` when the socket is not connected or the send fails; a
        send that takes longer than ``send_timeout`` aborts the connection.
        """
        async with self._send_lock:
            ws = self._ws
            if ws is None or self.socket.state is not WebSocketState.CONNECTED:
                raise ConnectionLost("the socket is not connected", rule="R14")
            with trio.CancelScope(shield=True), trio.move_on_after(self.config.send_timeout):
                try:
                    await ws.send_message(text)
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                    raise ConnectionLost(
                        "the connection closed during a send", rule="R14"
                    ) from None
                return
            error = ConnectionLost(f"no send within {self.config.send_timeout} s", rule="R14")
            self.abort(error)
            raise error

    async def close(self) -> None:
        """Close the connection gracefully, bounded by ``close_timeout``; the socket ends CLOSED.

        Shielded: once begun, a close finishes even if the caller is cancelled.
        """
        if self.socket.state is not WebSocketState.CONNECTED:
            return
        ws, scope = self._ws, self._scope
        self._closing_by_us = True
        self._move("close")
        with trio.CancelScope(shield=True):
            try:
                if ws is not None:
                    with trio.move_on_after(self.config.close_timeout):
                        await ws.aclose(CloseCode.NORMAL)
            finally:
                self._handshake_over.set()
            if scope is not None:
                scope.cancel()
            await self._finished.wait()
        self._move("closed")

    async def settle(self) -> None:
        """Wait until a connection that is going down (aborted, dropping or closing) is down.

        Afterwards the socket is CLOSED, or CONNECTED to a connection nobody is ending.
        """
        state = self.socket.state
        ending = state is WebSocketState.CLOSING or (
            state is WebSocketState.CONNECTED and self._abort_error is not None
        )
        if ending:
            await self._down.wait()

    def abort(self, error: SessionError | None = None) -> None:
        """Drop the connection now, without a close handshake; the drop is reported as usual."""
        if self._scope is not None and not self._closing_by_us:
            self._abort_error = error or ConnectionLost("the connection was aborted", rule="R14")
            self._scope.cancel()
