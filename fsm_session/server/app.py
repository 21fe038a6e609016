"""The reference backend: a trio WebSocket server that speaks ``specs/protocol.md``.

Built on ``trio.serve_listeners`` and ``trio_websocket.wrap_server_stream`` rather than
``trio_websocket.serve_websocket``, so that this module owns each TCP stream: it closes a stream
itself right after a rejected handshake (trio-websocket would wait for the client to hang up,
and a trio-websocket client keeps its socket open after a rejection, so both would wait), it
bounds the handshake and counts connections, and it sees every byte arriving, pings included,
which is what the idle timeout measures (P13).

Every connection runs inside a handler that catches and logs whatever it raises: one misbehaving
client never takes the server down. Protocol decisions are made by
:class:`~fsm_session.server.handlers.ConnectionState`; this module only moves frames.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from fsm_session.errors import InvalidToken, TokenExpired
from fsm_session.protocol import SUBPROTOCOL, CloseCode, ErrorCode, Message, encode
from fsm_session.server.config import ServerConfig, check_secret
from fsm_session.server.handlers import ConnectionState
from fsm_session.server.registry import Registry
from fsm_session.server.tokencache import VerifiedTokens
from fsm_session.tokens import TokenClaims

__all__ = ["serve"]

logger = logging.getLogger("fsm_session.server")

# Frames trio-websocket may hold for us while we answer the previous one. Small, so a flooding
# client meets TCP backpressure, but more than one, so a short burst does not stall its reader.
_MESSAGE_QUEUE_SIZE = 8
# Beyond this many times ``max_connections``, a new TCP connection is closed before its handshake
# is read: up to it, one over the limit is read and answered 503 (P1), which costs up to a
# handshake timeout; past it, a flood costs nothing but the accept.
_UNREAD_FACTOR = 2


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    secret: str,
    config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the protocol on ``host``:``port`` until cancelled.

    Binds first, then reports the ``ws://HOST:PORT/`` URL actually bound through
    ``task_status`` (``url = await nursery.start(partial(serve, secret=...))``); port 0 picks a
    free port. When ``host`` resolves to several addresses and ``port`` is 0, only the first is
    served, so that the URL names every listener. ``secret`` verifies access tokens (HS256).

    With ``ssl_context`` (a server-side context holding the certificate and its key, say
    ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` after ``load_cert_chain``), every
    connection speaks TLS first and the URL is ``wss://HOST:PORT/``. The TLS handshake counts
    against the WebSocket handshake's timeout.

    Raises :class:`~fsm_session.server.config.ConfigurationError` for an empty or short secret
    (fewer than 32 bytes, the HS256 minimum), and
    ``OSError`` when the address cannot be bound, both before ``task_status.started``.
    """
    check_secret(secret)
    config = ServerConfig() if config is None else config
    listeners = await trio.open_tcp_listeners(port, host=host)
    try:
        if port == 0 and len(listeners) > 1:
            # Each would have a port of its own: keep one, so the URL is the whole truth.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        url = _url(listeners[0], "ws" if ssl_context is None else "wss")
        server = _Server(secret, config, ssl_context)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, server.handle_stream, listeners)
            logger.info("serving %s on %s", SUBPROTOCOL, url)
            task_status.started(url)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)


def _url(listener: trio.SocketListener, scheme: str) -> str:
    address, port = listener.socket.getsockname()[:2]
    if ":" in address:
        address = f"[{address}]"
    return f"{scheme}://{address}:{port}/"


def _peer(stream: trio.SocketStream) -> str:
    try:
        address, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown peer"
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class _Activity(trio.abc.Stream):
    """A stream that notes when its peer last sent anything (P13: any byte counts, pings too).

    It only notes the time: the driver reads it when its deadline fires, rather than moving a
    deadline at every read. It also calls ``on_end`` when the peer hangs up or trio-websocket
    closes the stream (after an unreadable request, say): trio-websocket's reader task then
    stops, but ``wrap_server_stream`` would go on waiting for a request until the handshake
    timeout, holding a connection slot (P1).
    """

    __slots__ = ("broken", "inner", "last_received", "on_end")

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.last_received = trio.current_time()
        self.on_end: Callable[[], None] | None = None
        # Why the stream broke, if it did: a reset, or a TLS handshake that failed.
        self.broken: trio.BrokenResourceError | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.inner.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            # A reset, or a failed TLS handshake: the peer is as gone as after a hang-up.
            self.broken = exc
            if self.on_end is not None:
                self.on_end()
            raise
        self.last_received = trio.current_time()
        if not data and self.on_end is not None:
            self.on_end()
        return data

    async def aclose(self) -> None:
        if self.on_end is not None:
            self.on_end()
        await self.inner.aclose()


class _Server:
    """What the connections of one ``serve()`` call share."""

    def __init__(
        self, secret: str, config: ServerConfig, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.secret = secret
        self.config = config
        self.ssl_context = ssl_context
        self.registry = Registry(resume_grace=config.resume_grace)
        self.tokens = VerifiedTokens(secret)
        self.connections = 0

    async def handle_stream(self, stream: trio.SocketStream) -> None:
        """Serve one TCP connection; log, never raise, whatever goes wrong (except cancellation,
        which is the server stopping)."""
        if self.connections >= _UNREAD_FACTOR * self.config.max_connections:
            # Far over the limit (a flood of connections that never finish their handshake):
            # hang up unread, so that each costs no task and no handshake timeout of waiting.
            logger.debug("over %d connections: hung up unread", self.connections)
            await trio.aclose_forcefully(stream)
            return
        peer = _peer(stream)
        self.connections += 1
        try:
            await self._serve_stream(stream, peer)
        except* Exception:
            logger.exception("%s: the connection failed", peer)
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_stream(self, stream: trio.SocketStream, peer: str) -> None:
        inner: trio.abc.Stream = stream
        if self.ssl_context is not None:
            # The TLS handshake happens at the first read, inside the handshake's deadline.
            inner = trio.SSLStream(stream, self.ssl_context, server_side=True)
        activity = _Activity(inner)
        async with trio.open_nursery() as nursery:
            try:
                accepted: tuple[WebSocketConnection, TokenClaims] | None = None
                ended = False

                def end() -> None:
                    nonlocal ended
                    ended = True
                    scope.cancel()

                with trio.move_on_after(self.config.handshake_timeout) as scope:
                    activity.on_end = end
                    request = await trio_websocket.wrap_server_stream(
                        nursery,
                        activity,
                        message_queue_size=_MESSAGE_QUEUE_SIZE,
                        max_message_size=self.config.max_frame_bytes,
                    )
                    accepted = await self._handshake(request, peer)
                activity.on_end = None
                if ended:
                    accepted = None
                    tls_error = activity.broken and activity.broken.__cause__
                    if isinstance(tls_error, ssl.SSLError):
                        logger.info("%s: the TLS handshake failed: %s", peer, tls_error)
                    else:
                        logger.debug("%s: the stream ended before the handshake did", peer)
                elif scope.cancelled_caught:
                    logger.info("%s: no handshake within %g s", peer, self.config.handshake_timeout)
                if accepted is not None:
                    ws, claims = accepted
                    await _Connection(self, ws, claims, activity, peer).run()
            finally:
                # Stops trio-websocket's reader task; handle_stream then closes the stream, which
                # after a rejected handshake nothing else would.
                nursery.cancel_scope.cancel()

    async def _handshake(
        self, request: WebSocketRequest, peer: str
    ) -> tuple[WebSocketConnection, TokenClaims] | None:
        """P1: accept the upgrade with the subprotocol and a valid token, or reject it."""
        if self.connections > self.config.max_connections:
            await _reject(
                request,
                503,
                ErrorCode.RATE_LIMITED,
                "the server is at its connection limit; try again later",
                peer,
            )
            return None
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await _reject(
                request,
                400,
                ErrorCode.BAD_REQUEST,
                f"offer the WebSocket subprotocol {SUBPROTOCOL!r}",
                peer,
            )
            return None
        token, problem = _bearer_token(request.headers)
        if token is None:
            await _reject(request, 401, ErrorCode.INVALID_TOKEN, problem, peer)
            return None
        try:
            claims = self.tokens.verify(token, now=time.time())
        except TokenExpired as exc:
            await _reject(request, 401, ErrorCode.TOKEN_EXPIRED, exc.reason, peer)
            return None
        except InvalidToken as exc:
            await _reject(request, 401, ErrorCode.INVALID_TOKEN, exc.reason, peer)
            return None
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        logger.debug("%s: connected", peer)
        return ws, claims


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str]:
    """The token of the one ``Authorization: Bearer`` header, or ``None`` and why not."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if not values:
        return None, "no access token: send the header 'Authorization: Bearer <token>'"
    if len(values) > 1:
        return None, "send exactly one Authorization header"
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "the Authorization header must be 'Bearer <token>'"
    return token, ""


async def _reject(
    request: WebSocketRequest, status: int, code: str, message: str, peer: str
) -> None:
    logger.info("%s: handshake rejected with %d: %s", peer, status, code)
    body = json.dumps({"code": code, "message": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", f'Bearer error="{code}"'.encode("ascii")))
    await request.reject(status, extra_headers=headers, body=body)


class _Connection:
    """Moves frames between one accepted WebSocket and its :class:`ConnectionState`.

    Only this task sends on the WebSocket. Another connection that takes this one's session
    (R17) only marks the state and cancels the wait for the next frame; this task then sends
    ``ended`` and closes, so no two tasks ever write to one socket.

    One cancel scope serves many frames: its deadline is the earlier of the idle deadline (P13)
    and the token's expiry (P11), set when the scope is entered, lowered when a new token
    expires sooner, and otherwise left alone. The idle deadline is checked lazily: when the
    scope's deadline fires, the driver looks at when the peer last sent a byte, and when that
    was recent it enters a new scope with the later deadline. So a busy connection enters a
    scope once per ``idle_timeout``, not once per frame. Only ``get_message`` (which is
    cancel-safe) may be cancelled: each send runs shielded, and a wake-up from another
    connection cancels the scope only while the driver waits for a frame.
    """

    __slots__ = ("_scope", "activity", "config", "peer", "state", "ws")

    def __init__(
        self,
        server: _Server,
        ws: WebSocketConnection,
        claims: TokenClaims,
        activity: _Activity,
        peer: str,
    ) -> None:
        self.ws = ws
        self.config = server.config
        self.activity = activity
        self.peer = peer
        self.state = ConnectionState(
            registry=server.registry,
            secret=server.secret,
            claims=claims,
            config=server.config,
            clock=trio.current_time,
            wall_clock=time.time,
            name=peer,
            tokens=server.tokens,
        )
        self.state.wake = self._wake
        # The scope of the frame being waited for; None while the driver does anything else.
        self._scope: trio.CancelScope | None = None

    def _wake(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _deadline(self) -> float:
        """The earlier of the idle deadline and the token's expiry, on trio's clock."""
        deadline = self.activity.last_received + self.config.idle_timeout
        expires_at = self.state.expires_at()
        if expires_at is not None:
            # Token expiry is wall-clock time; trio's clock is monotonic.
            deadline = min(deadline, trio.current_time() + (expires_at - time.time()))
        return deadline

    async def run(self) -> None:
        state = self.state
        try:
            while state.ending is None:
                await self._serve_frames()
            ending = state.ending
            # Release the session now, not after the close handshake, so that a client that
            # reconnects at once can already resume it.
            state.connection_closed()
            for message in ending.frames:
                await self._send(message)
            with trio.move_on_after(self.config.close_timeout):
                await self.ws.aclose(ending.code, ending.reason)
        except ConnectionClosed as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s: connection closed (%s)", self.peer, _describe(exc))
        except Exception:
            # A bug of the server outside any one request (those are answered internal_error).
            logger.exception("%s: closing after an unexpected error", self.peer)
            with trio.move_on_after(self.config.close_timeout):
                await self.ws.aclose(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._scope = None
            state.connection_closed()

    async def _serve_frames(self) -> None:
        """Read and answer frames until the connection must end or the deadline fires."""
        state = self.state
        ws = self.ws
        claims = state.claims
        with trio.CancelScope(deadline=self._deadline()) as scope:
            while state.ending is None:
                self._scope = scope
                try:
                    frame = await ws.get_message()  # Cancel-safe: no frame is lost.
                finally:
                    self._scope = None
                reply = state.receive(frame)
                if reply is not None:
                    # send_message is not cancel-safe: a deadline passing now is delivered at
                    # the next get_message instead.
                    scope.shield = True
                    try:
                        await self._send(reply)
                    finally:
                        scope.shield = False
                if state.claims is not claims:
                    claims = state.claims  # A new token (P10) may expire sooner.
                    scope.deadline = min(scope.deadline, self._deadline())
        if scope.cancelled_caught:
            state.check_token()
            if (
                state.ending is None
                and trio.current_time() >= self.activity.last_received + self.config.idle_timeout
            ):
                state.idle()

    async def _send(self, message: Message) -> None:
        await self.ws.send_message(encode(message))


def _describe(exc: ConnectionClosed) -> str:
    reason = exc.reason
    return "no reason" if reason is None else f"{reason.code} {reason.name}"
