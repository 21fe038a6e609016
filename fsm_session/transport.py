"""The trio-websocket driver beneath a session: it moves bytes and reports what happened.

The transport keeps no protocol state: the socket's state lives in the
:class:`~fsm_session.client_protocol.ClientProtocol`, which it tells of every move with the
connection's serial, so that nothing an older connection does can act on a newer one. What it
works around in trio-websocket (see the project's design notes):

* the connect (TCP, TLS, then the WebSocket handshake) runs in the caller's own task under our
  own deadline: the library's timeout does not fire when a peer accepts TCP and never answers
  the upgrade, and a TLS failure would otherwise surface only as a timeout;
* the stream is opened and always closed here, so a rejected handshake, a 1009 close or a
  dropped peer leaves no file descriptor behind;
* the library's reader task runs in the service's nursery through a guard that turns what it
  raises (a rejected handshake) into our error, rather than in a nursery per connection;
* ``send_message`` is not cancel-safe, so a send is shielded and bounded by its own deadline; a
  send that fails or times out poisons the connection, which is dropped (the session resumes);
* one reader task per connection takes every message off the library's queue as it comes, feeds
  it to the listener, pings for keepalive (R15) and wakes at the protocol's request deadlines.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from fsm_session.client_protocol import ClientProtocol
from fsm_session.connection import Connection, close_now, connect_failure, tls_handshake
from fsm_session.errors import (
    ConnectionFailed,
    ConnectionLost,
    RemoteProtocolError,
    SessionError,
)
from fsm_session.machine import WebSocketState
from fsm_session.protocol import MAX_FRAME_BYTES, SUBPROTOCOL, CloseCode, Message, decode_reply

__all__ = ["StreamOpener", "Transport", "TransportConfig"]

StreamOpener = Callable[[], Awaitable[trio.abc.Stream]]
"""Opens a connected byte stream to the backend, in place of a TCP connection."""

log = logging.getLogger("fsm_session.transport")


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Limits of one connection, in seconds and bytes."""

    connect_timeout: float = 10.0
    """The whole connect: TCP, TLS, then the WebSocket handshake."""
    send_timeout: float = 10.0
    """One frame's send; past it the connection is dropped."""
    close_timeout: float = 2.0
    """The WebSocket close handshake."""
    keepalive_interval: float | None = 30.0
    """How often to ping the backend while connected (rule R15); ``None``: never."""
    keepalive_timeout: float = 10.0
    """A pong later than this after its ping is a connection loss (rule R15)."""
    max_frame_bytes: int = MAX_FRAME_BYTES


class Listener(Protocol):
    """What the transport reports to its owner, from trio tasks, one call at a time."""

    def _frame(self, serial: int, message: Message) -> None: ...

    def _dropped(self, serial: int, error: SessionError) -> None: ...


class Transport:
    """One WebSocket connection at a time to ``url``; its tasks run in ``nursery``."""

    __slots__ = (
        "_changed",
        "_conn",
        "_host",
        "_host_header",
        "_listener",
        "_nursery",
        "_open_stream",
        "_port",
        "_proto",
        "_resource",
        "_ssl",
        "config",
        "url",
    )

    def __init__(
        self,
        url: str,
        nursery: trio.Nursery,
        proto: ClientProtocol,
        listener: Listener,
        config: TransportConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        open_stream: StreamOpener | None = None,
    ) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("ws", "wss") or not parts.hostname or port == -1:
            raise ConnectionFailed(
                f"expected a ws:// or wss:// URL with a host, got {url!r}", rule="P1"
            )
        if parts.scheme == "ws" and ssl_context is not None:
            raise ConnectionFailed(f"an ssl_context needs a wss:// URL, got {url!r}", rule="P1")
        self.url = url
        self._host = parts.hostname
        default = 443 if parts.scheme == "wss" else 80
        self._port = port or default
        self._host_header = self._host if self._port == default else f"{self._host}:{self._port}"
        self._resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl = ssl_context
        if parts.scheme == "wss" and ssl_context is None:
            self._ssl = ssl.create_default_context()
        self._nursery = nursery
        self._open_stream = open_stream
        self._proto = proto
        self._listener = listener
        self.config = config or TransportConfig()
        self._conn: Connection | None = None
        self._changed: trio.Event | None = None

    @property
    def state(self) -> WebSocketState:
        return self._proto.socket.state

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    # ------------------------------------------------------------------ connecting

    async def connect(self, token: str) -> int:
        """Connect in the caller's task; the new connection's serial.

        Raises :class:`InvalidToken`/:class:`TokenExpired` when the backend refuses the token
        and :class:`ConnectionFailed` for anything else, within ``connect_timeout``. Failed or
        cancelled, it leaves the socket CLOSED and nothing open.
        """
        serial = self._proto.connecting()
        conn = Connection(serial, self._nursery)
        self._conn = conn
        try:
            # One scope: the connect's deadline, and what a rejection or an abort cancels.
            conn.scope.deadline = trio.current_time() + self.config.connect_timeout
            with conn.scope:
                conn.ws = await self._handshake(conn, token)
            if conn.failure is not None:
                raise conn.failure
            if conn.ws is None:
                raise ConnectionFailed(
                    f"no WebSocket handshake within {self.config.connect_timeout} s", rule="P1"
                )
            if conn.ws.subprotocol != SUBPROTOCOL:
                raise ConnectionFailed(f"the backend does not speak {SUBPROTOCOL}", rule="P1")
        except BaseException as exc:
            self._discard(conn)
            self._proto.connect_failed(serial)
            self._notify()
            raise connect_failure(exc, self.url, self.config.connect_timeout) from None
        conn.scope = trio.CancelScope()
        self._proto.connected(serial, now=trio.current_time())
        self._notify()
        self._nursery.start_soon(self._read, conn)
        return serial

    async def _handshake(self, conn: Connection, token: str) -> WebSocketConnection:
        stream: trio.abc.Stream
        if self._open_stream is not None:
            stream = await self._open_stream()
        else:
            stream = await trio.open_tcp_stream(self._host, self._port)
        conn.stream = stream
        if self._ssl is not None:
            stream = await tls_handshake(stream, self._ssl, self._host, self._port)
            conn.stream = stream
        return await wrap_client_stream(
            cast(trio.Nursery, conn),
            cast(trio.SocketStream, stream),
            self._host_header,
            self._resource,
            subprotocols=[SUBPROTOCOL],
            extra_headers=[(b"authorization", f"Bearer {token}".encode())],
            message_queue_size=64,
            max_message_size=self.config.max_frame_bytes,
        )

    def _discard(self, conn: Connection) -> None:
        """Close the stream of a connection that is over, at once; its reader tasks then end.

        The socket itself is closed rather than the stream: that cannot block or be cancelled,
        and a TLS stream owes no close_notify to a connection being dropped.
        """
        stream, conn.stream = conn.stream, None
        if stream is not None:
            close_now(stream)
        conn.down = True

    # ------------------------------------------------------------------ reading

    async def _read(self, conn: Connection) -> None:
        """The reader of one connection, until it ends; then the drop is reported."""
        error: SessionError = ConnectionLost("the connection ended", rule="R14")
        try:
            error = await self._loop(conn)
        except Exception as exc:  # A failure of ours must not take the service down.
            log.exception("the connection failed")
            error = ConnectionLost(f"the connection failed: {exc!r}", rule="R14")
        finally:
            self._discard(conn)
            if not conn.by_us and not conn.reported:
                conn.reported = True
                self._listener._dropped(conn.serial, conn.failure or error)
            self._notify()

    async def _loop(self, conn: Connection) -> SessionError:
        """Read until the connection ends. One cancel scope a wait: its deadline is the next
        ping or request deadline, and an abort cancels it."""
        ws = cast(WebSocketConnection, conn.ws)
        proto = self._proto
        while True:
            with conn.scope:
                conn.scope.deadline = proto.next_deadline()
                conn.timer = conn.scope
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
                        with trio.move_on_after(self.config.close_timeout) as closing:
                            closing.shield = True
                            await ws.aclose(CloseCode.PROTOCOL_ERROR, "bad frame")
                        return exc
                    self._listener._frame(conn.serial, message)
                    conn.scope.deadline = proto.next_deadline()
            if conn.scope.cancel_called and (conn.failure is not None or conn.by_us):
                return conn.failure or ConnectionLost("the connection was closed", rule="R14")
            conn.timer = None
            conn.scope = trio.CancelScope()  # the deadline passed: a new wait after this
            drop, ping = proto.due(now=trio.current_time())
            if drop:
                return ConnectionLost(f"no reply within {proto.request_timeout} s", rule="R14")
            if ping:
                if not await self._pong(ws):
                    timeout = self.config.keepalive_timeout
                    return ConnectionLost(f"no pong within {timeout} s", rule="R15")
                proto.ponged(now=trio.current_time())

    async def _pong(self, ws: WebSocketConnection) -> bool:
        """Ping and wait for the pong; ``False`` when it does not come in time (rule R15)."""
        with trio.move_on_after(self.config.keepalive_timeout):
            try:
                await ws.ping()
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                return True  # the connection is ending; the reader says so next
            return True
        return False

    # ------------------------------------------------------------------ sending and ending

    async def send(self, serial: int, text: str, reply_by: float = math.inf) -> None:
        """Send one frame on connection ``serial``, shielded from cancellation (a cut frame
        would poison the stream); the reader wakes by ``reply_by`` to time out the reply, and
        drops the connection then, which also ends a send still stuck.

        Never raises: a send that fails drops the connection, and the protocol decides what
        becomes of the requests on it (R14).
        """
        conn = self._conn
        if conn is None or conn.serial != serial or conn.ws is None:
            return
        timer = conn.timer
        if timer is not None and reply_by < timer.deadline:
            timer.deadline = reply_by
        with trio.CancelScope(shield=True):
            try:
                await conn.ws.send_message(text)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                lost = ConnectionLost("the connection closed during a send", rule="R14")
                self.abort(serial, lost)

    async def close(self) -> None:
        """Close the current connection gracefully, bounded by ``close_timeout``; shielded."""
        conn = self._conn
        if conn is None or not self._proto.closing(conn.serial):
            return
        conn.by_us = True
        self._notify()
        ws = conn.ws
        if ws is not None:
            deadline = trio.current_time() + self.config.close_timeout
            with trio.CancelScope(shield=True, deadline=deadline):
                try:
                    await ws.aclose(CloseCode.NORMAL)
                except Exception as exc:  # Closing what is already broken.
                    log.debug("closing the connection: %r", exc)
        conn.scope.cancel()
        self._discard(conn)
        self._proto.closed(conn.serial)
        self._notify()

    def abort(self, serial: int | None = None, error: SessionError | None = None) -> None:
        """Drop connection ``serial`` (the current one by default) now, without a handshake.

        A connected socket is closed and the drop reported before this returns, so the state
        never shows a connection that is already gone; a connect in progress fails.
        """
        conn = self._conn
        if conn is None or conn.by_us or conn.reported:
            return
        if serial is not None and conn.serial != serial:
            return
        if conn.failure is None:
            conn.failure = error or ConnectionLost("the connection was dropped", rule="R14")
        conn.scope.cancel()
        if conn.ws is not None:
            self._discard(conn)
            conn.reported = True
            self._listener._dropped(conn.serial, conn.failure)
        self._notify()

    async def settle(self) -> None:
        """Wait until no connection is starting or ending: the socket is CLOSED and its
        stream closed, or CONNECTED to a connection nobody is ending."""
        while not self._settled():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    def _settled(self) -> bool:
        conn = self._conn
        state = self._proto.socket.state
        if state is WebSocketState.CLOSED:
            return conn is None or conn.down
        if state is WebSocketState.CONNECTED:
            return conn is not None and conn.failure is None and not conn.by_us
        return False
