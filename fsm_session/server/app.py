"""The reference backend: a trio WebSocket server that speaks ``specs/protocol.md``.

Built on ``trio.serve_listeners`` and the server's own WebSocket layer
(:mod:`fsm_session.server.websocket`, on wsproto), so that this module owns each TCP stream and
every resource a client can make it spend is bounded before it is spent:

- a TCP connection takes a *pending* slot until its handshake is done, under a short deadline;
  pending slots are capped per address and in all, and when all are taken a newcomer pushes out
  the oldest of the address holding the most (:class:`~fsm_session.server.limits.Admission`);
- an accepted WebSocket takes an *open* slot, capped per address and in all (503 beyond, P1);
- every byte and every frame is charged to the connection's budgets before it is decoded, and a
  connection whose budget is spent is not read until it refills;
- every protocol error ends with its close code, and every close lingers so that the close
  frame reaches the client before the TCP connection closes;
- when cancelled (the server stopping), it stops accepting, then closes every connection with
  1001, waiting at most ``drain_timeout`` for the clients to answer.

Every connection runs inside a handler that catches and logs whatever it raises: one misbehaving
client never takes the server down. Protocol decisions are made by
:class:`~fsm_session.server.handlers.ConnectionState`; this module only moves frames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from functools import partial

import trio
from wsproto.events import Request

from fsm_session.errors import InvalidToken, TokenExpired
from fsm_session.protocol import SUBPROTOCOL, CloseCode, ErrorCode, Message, encode
from fsm_session.server.config import ServerConfig, check_secret
from fsm_session.server.handlers import ConnectionState
from fsm_session.server.limits import Admission, Bucket, PendingSlot
from fsm_session.server.memory import MemoryTrimmer
from fsm_session.server.registry import Observer, Registry
from fsm_session.server.tokencache import VerifiedTokens
from fsm_session.server.websocket import Budget, ServerWebSocket, WebSocketClosed
from fsm_session.tokens import TokenClaims

__all__ = ["serve", "serve_streams"]

logger = logging.getLogger("fsm_session.server")


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    secret: str,
    config: ServerConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    observer: Observer | None = None,
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
    against the WebSocket handshake's timeout. ``observer`` is told of every change of the
    sessions (the live inspector of ``fsm-session serve --inspect``).

    When cancelled, it stops accepting at once, closes every connection with 1001 and waits,
    shielded, at most ``config.drain_timeout`` seconds for the clients to answer, then returns
    (re-raising the cancellation).

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
        server = _Server(secret, config, ssl_context, observer)
        async with trio.open_nursery() as connections:
            connections.start_soon(server.trimmer.run)
            try:
                async with trio.open_nursery() as accepting:
                    await accepting.start(
                        partial(
                            trio.serve_listeners,
                            server.handle_stream,
                            listeners,
                            handler_nursery=connections,
                        )
                    )
                    logger.info("serving %s on %s", SUBPROTOCOL, url)
                    task_status.started(url)
            finally:
                # Stop accepting before the connections drain: a client connecting now is
                # refused by the kernel rather than left waiting in the backlog.
                for listener in listeners:
                    listener.socket.close()
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)


async def serve_streams(
    streams: trio.abc.ReceiveChannel[trio.abc.Stream],
    *,
    secret: str,
    config: ServerConfig | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the protocol on every stream received from ``streams``, until cancelled.

    The same server as :func:`serve`, on connections made elsewhere: say one end of each of
    ``trio.testing.memory_stream_pair()``, for tests with no sockets (the in-memory backend of
    :mod:`fsm_session.testing` runs on it). Each stream is a connection of its own peer for the
    per-address caps. Stops taking new streams when ``streams`` is closed, and returns once the
    connections it serves have ended. When cancelled it closes every connection with 1001, as
    :func:`serve` does.

    Raises :class:`~fsm_session.server.config.ConfigurationError` for an empty or short secret,
    before ``task_status.started``.
    """
    check_secret(secret)
    server = _Server(secret, ServerConfig() if config is None else config)
    async with trio.open_nursery() as connections:
        task_status.started()
        async with streams:
            async for stream in streams:
                connections.start_soon(server.handle_stream, stream)


def _url(listener: trio.SocketListener, scheme: str) -> str:
    address, port = listener.socket.getsockname()[:2]
    if ":" in address:
        address = f"[{address}]"
    return f"{scheme}://{address}:{port}/"


def _peer(stream: trio.abc.Stream) -> tuple[str, str]:
    """The peer's IP address (what the per-peer caps count) and how log lines name it.

    A stream that is not a socket (an in-memory one) is a peer of its own.
    """
    if not isinstance(stream, trio.SocketStream):
        name = f"stream-{id(stream):x}"
        return name, name
    try:
        address, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown", "unknown peer"
    return address, (f"[{address}]:{port}" if ":" in address else f"{address}:{port}")


class _Server:
    """What the connections of one ``serve()`` call share."""

    def __init__(
        self,
        secret: str,
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.secret = secret
        self.config = config
        self.ssl_context = ssl_context
        self.registry = Registry(resume_grace=config.resume_grace, observer=observer)
        self.tokens = VerifiedTokens(secret)
        self.admission = Admission(
            max_open=config.max_connections,
            max_open_per_peer=config.max_connections_per_peer,
            max_pending=config.max_pending,
            max_pending_per_peer=config.max_pending_per_peer,
        )
        self.trimmer = MemoryTrimmer(lambda: self.connections)

    @property
    def connections(self) -> int:
        """TCP connections being served: pending handshakes and open WebSockets."""
        return self.admission.open_count + self.admission.pending_count

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one TCP connection; log, never raise, whatever goes wrong (except cancellation,
        which is the server stopping)."""
        address, peer = _peer(stream)
        self.trimmer.note(self.connections + 1)
        with trio.CancelScope() as pending_scope:
            slot = self.admission.admit(address, pending_scope.cancel)
            if slot is None:
                # This address already has its share of handshakes under way: hang up unread,
                # so that a flood costs nothing but the accept.
                logger.debug("%s: too many handshakes from this address; hung up", peer)
                await trio.aclose_forcefully(stream)
                return
            try:
                await self._serve_stream(stream, address, peer, slot, pending_scope)
            except* Exception:
                logger.exception("%s: the connection failed", peer)
            finally:
                self.admission.leave_pending(slot)
                await trio.aclose_forcefully(stream)
        if pending_scope.cancelled_caught:
            logger.debug("%s: pushed out by newer handshakes", peer)

    async def _serve_stream(
        self,
        stream: trio.abc.Stream,
        address: str,
        peer: str,
        slot: PendingSlot,
        pending_scope: trio.CancelScope,
    ) -> None:
        config = self.config
        now = trio.current_time()
        budget = Budget(
            bytes=Bucket(config.max_bytes_per_second, config.byte_burst, now),
            frames=Bucket(config.frames_per_second, config.frames_per_second, now),
        )
        transport: trio.abc.Stream = stream
        if self.ssl_context is not None:
            transport = trio.SSLStream(stream, self.ssl_context, server_side=True)
        ws = ServerWebSocket(
            transport,
            max_message_bytes=config.max_frame_bytes,
            send_timeout=config.send_timeout,
            budget=budget,
        )
        claims: TokenClaims | None = None
        with trio.move_on_after(config.handshake_timeout) as timer:
            request = await ws.read_request()
            if request is not None:
                claims = await self._handshake(ws, request, address, peer)
        # From here on the connection cannot be pushed out: it holds an open slot, or none.
        self.admission.leave_pending(slot)
        if claims is None:
            tls_error = ws.broken.__cause__ if ws.broken is not None else None
            if isinstance(tls_error, ssl.SSLError):
                logger.info("%s: the TLS handshake failed: %s", peer, tls_error)
            elif timer.cancelled_caught:
                logger.info("%s: no handshake within %g s", peer, config.handshake_timeout)
            return
        try:
            if not pending_scope.cancel_called:  # Else pushed out while being accepted.
                await _Connection(self, ws, claims, peer).run()
        finally:
            self.admission.leave_open(address)

    async def _handshake(
        self, ws: ServerWebSocket, request: Request, address: str, peer: str
    ) -> TokenClaims | None:
        """P1: accept the upgrade with the subprotocol and a valid token, or reject it.

        On success the connection holds an open slot of ``address`` (the caller gives it back).
        """
        refusal = self.admission.open_refusal(address)
        if refusal is not None:
            await _reject(ws, 503, ErrorCode.RATE_LIMITED, refusal, peer)
            return None
        if SUBPROTOCOL not in request.subprotocols:
            await _reject(
                ws,
                400,
                ErrorCode.BAD_REQUEST,
                f"offer the WebSocket subprotocol {SUBPROTOCOL!r}",
                peer,
            )
            return None
        token, problem = _bearer_token(list(request.extra_headers))
        if token is None:
            await _reject(ws, 401, ErrorCode.INVALID_TOKEN, problem, peer)
            return None
        try:
            claims = self.tokens.verify(token, now=time.time())
        except TokenExpired as exc:
            await _reject(ws, 401, ErrorCode.TOKEN_EXPIRED, exc.reason, peer)
            return None
        except InvalidToken as exc:
            await _reject(ws, 401, ErrorCode.INVALID_TOKEN, exc.reason, peer)
            return None
        self.admission.enter_open(address)
        try:
            await ws.accept(SUBPROTOCOL)
        except BaseException:
            self.admission.leave_open(address)
            raise
        logger.debug("%s: connected", peer)
        return claims


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


async def _reject(ws: ServerWebSocket, status: int, code: str, message: str, peer: str) -> None:
    logger.info("%s: handshake rejected with %d: %s", peer, status, code)
    body = json.dumps({"code": code, "message": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", f'Bearer error="{code}"'.encode("ascii")))
    with contextlib.suppress(WebSocketClosed):  # A client that left gets no answer.
        await ws.reject(status, headers, body)


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
    scope once per ``idle_timeout``, not once per frame. Waiting for a frame is cancel-safe and
    every send is shielded inside the WebSocket layer; a wake-up from another connection
    cancels the scope only while the driver waits for a frame.
    """

    __slots__ = ("_scope", "config", "peer", "state", "ws")

    def __init__(
        self, server: _Server, ws: ServerWebSocket, claims: TokenClaims, peer: str
    ) -> None:
        self.ws = ws
        self.config = server.config
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
        deadline = self.ws.last_received + self.config.idle_timeout
        expires_at = self.state.expires_at()
        if expires_at is not None:
            # Token expiry is wall-clock time; trio's clock is monotonic.
            deadline = min(deadline, trio.current_time() + (expires_at - time.time()))
        return deadline

    async def run(self) -> None:
        state = self.state
        ws = self.ws
        config = self.config
        try:
            while state.ending is None:
                await self._serve_frames()
            ending = state.ending
            # Release the session now, not after the close handshake, so that a client that
            # reconnects at once can already resume it.
            state.connection_closed()
            for message in ending.frames:
                await self._send(message)
            await ws.close(ending.code, ending.reason, config.close_timeout)
        except WebSocketClosed as exc:
            logger.debug("%s: connection closed (%d %s)", self.peer, exc.code, exc.reason)
            # After a protocol error the close frame is out: linger so that it arrives.
            await ws.close(exc.code, exc.reason, config.close_timeout)
        except trio.Cancelled:
            # The server is stopping: every client is told so (1001), within the drain time.
            state.connection_closed()
            await ws.close(
                CloseCode.GOING_AWAY, "the server is shutting down", config.drain_timeout
            )
            raise
        except Exception:
            # A bug of the server outside any one request (those are answered internal_error).
            logger.exception("%s: closing after an unexpected error", self.peer)
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error", config.close_timeout)
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
                    frame = await ws.receive()  # Cancel-safe: no frame is lost.
                finally:
                    self._scope = None
                reply = state.receive(frame)
                if reply is not None:
                    # Shielded inside: a deadline passing now is delivered at the next receive.
                    await self._send(reply)
                if state.claims is not claims:
                    claims = state.claims  # A new token (P10) may expire sooner.
                    scope.deadline = min(scope.deadline, self._deadline())
        if scope.cancelled_caught:
            state.check_token()
            if (
                state.ending is None
                and trio.current_time() >= ws.last_received + self.config.idle_timeout
            ):
                state.idle()

    async def _send(self, message: Message) -> None:
        await self.ws.send_text(encode(message))
