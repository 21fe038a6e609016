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
:class:`~fsm_session.server.handlers.ConnectionState`, each connection driven by
:class:`~fsm_session.server.connection.Connection`; this module accepts them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from wsproto.events import Request

from fsm_session.errors import InvalidToken, TokenExpired
from fsm_session.protocol import SUBPROTOCOL, ErrorCode
from fsm_session.server.config import ServerConfig, check_secret
from fsm_session.server.connection import Connection
from fsm_session.server.limits import Admission, Bucket, PendingSlot
from fsm_session.server.memory import MemoryTrimmer
from fsm_session.server.observe import ObservedStore, Observer
from fsm_session.server.store import MemoryStore, SessionStore, check_store_url, open_store
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
    store: str | SessionStore | None = None,
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
    against the WebSocket handshake's timeout.

    ``store`` says where participants and sessions live: ``None`` or ``"memory"`` for this
    process's memory (gone when ``serve()`` returns), ``"redis://HOST:PORT/DB"`` for a Redis
    database that several servers ("nodes") may share, so that sessions outlive any one of them
    (``specs/protocol.md``, "More than one node"), or a
    :class:`~fsm_session.server.store.SessionStore` the caller runs.

    ``observer`` is told of every change of the sessions, read-only (the live inspector of
    ``fsm-session serve --inspect``; see :mod:`fsm_session.server.observe`).

    When cancelled, it stops accepting at once, closes every connection with 1001 and waits,
    shielded, at most ``config.drain_timeout`` seconds for the clients to answer, then returns
    (re-raising the cancellation).

    Raises :class:`~fsm_session.server.config.ConfigurationError` for an empty or short secret
    (fewer than 32 bytes, the HS256 minimum), and
    ``OSError`` when the address cannot be bound, both before ``task_status.started``.
    """
    check_secret(secret)
    config = ServerConfig() if config is None else config
    if not isinstance(store, SessionStore) and check_store_url(store) is None:
        store = MemoryStore(resume_grace=config.resume_grace)  # Needs no task of its own.
    if isinstance(store, SessionStore):
        if observer is None:
            await _serve_on(host, port, secret, config, ssl_context, store, task_status)
            return
        observed = ObservedStore(store, observer)
        async with trio.open_nursery() as background:
            background.start_soon(observed.watch)  # the caller runs the store itself
            await _serve_on(host, port, secret, config, ssl_context, observed, task_status)
            background.cancel_scope.cancel()
        return
    try:
        async with _running_store(store, config.resume_grace, observer) as opened:
            await _serve_on(host, port, secret, config, ssl_context, opened, task_status)
    except BaseExceptionGroup as group:
        # The store's task puts what the server raised in a group: raise it as it is.
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def _running_store(
    url: str | None, resume_grace: float, observer: Observer | None
) -> AsyncIterator[SessionStore]:
    """The store ``url`` names, with its background work, outliving a cancellation of the block.

    When ``serve()`` is cancelled its connections still release their sessions into the store
    while they drain (P9), so the store (and its Redis connections) runs shielded in a task of
    its own, and stops only once the block is over.
    """
    done = trio.Event()

    async def own(task_status: trio.TaskStatus[SessionStore]) -> None:
        with trio.CancelScope(shield=True):
            async with (
                open_store(url, resume_grace=resume_grace) as opened,
                trio.open_nursery() as background,
            ):
                active = opened if observer is None else ObservedStore(opened, observer)
                await background.start(active.run)
                task_status.started(active)
                await done.wait()
                background.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        opened: SessionStore = await nursery.start(own)
        try:
            yield opened
        finally:
            done.set()


async def _serve_on(
    host: str,
    port: int,
    secret: str,
    config: ServerConfig,
    ssl_context: ssl.SSLContext | None,
    store: SessionStore,
    task_status: trio.TaskStatus[str],
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    try:
        if port == 0 and len(listeners) > 1:
            # Each would have a port of its own: keep one, so the URL is the whole truth.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        url = _url(listeners[0], "ws" if ssl_context is None else "wss")
        server = _Server(secret, config, store, ssl_context)
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
    config = ServerConfig() if config is None else config
    server = _Server(secret, config, MemoryStore(resume_grace=config.resume_grace))
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
        store: SessionStore,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.secret = secret
        self.config = config
        self.ssl_context = ssl_context
        self.store = store
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
                await Connection(self, ws, claims, peer).run()
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
