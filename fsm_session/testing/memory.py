"""An in-memory backend for testing code that uses a session service: no sockets, no real time.

:func:`memory_backend` runs the reference server (:func:`fsm_session.server.serve_streams`) in
the test's own trio run, and gives session services that reach it over
``trio.testing.memory_stream_pair()`` instead of TCP::

    async def test_my_app_survives_a_drop(autojump_clock):
        async with memory_backend() as backend:
            async with backend.session_service("ada") as session:
                await session.open(ParticipantInfo(name="Ada", external_id="ada"))
                backend.drop()  # the network fails; the service reconnects and resumes
                await session.update(name="Ada L.")

Everything runs on trio's clock, so under ``autojump_clock`` the service's backoff, keepalive
and timeouts take no real time, and a run is deterministic.

Between each service and the server sits a relay that moves whole messages and can be told to
misbehave, as a real network and backend do:

* :meth:`MemoryBackend.drop`: cut every connection at once, without a close handshake;
* :meth:`MemoryBackend.unreachable`: while inside, new connections fail as to a host that is down;
* :meth:`MemoryBackend.delay_replies`: while inside, the server's frames arrive late;
* :meth:`MemoryBackend.refuse_next`: the next requests of a kind are answered with an error
  by the relay, without reaching the server.
"""

from __future__ import annotations

import errno
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial

import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from fsm_session.protocol import REQUESTS, ErrorCode, ErrorReply, encode
from fsm_session.server import ServerConfig, serve_streams
from fsm_session.service import ServiceConfig, SessionService, open_session_service
from fsm_session.testing.credentials import token_minter

__all__ = ["MemoryBackend", "memory_backend"]

URL = "ws://memory.invalid/"
"""The URL of every in-memory backend: its host is never looked up."""

# The relay must not refuse what the server would answer itself (a frame over the limit: 1009).
_RELAY_MAX_MESSAGE = 64 * 1024 * 1024
# Close codes a peer may not send in a close frame: the connection ended without one.
_UNSENDABLE = frozenset({1005, 1006, 1015})
_ERROR_CODES = frozenset(
    value for name, value in vars(ErrorCode).items() if name.isupper() and isinstance(value, str)
)


@dataclass(slots=True)
class _Refusal:
    code: str
    message: str
    left: int


class _ReaderGuard:
    """Stands in for a nursery to trio-websocket's client side: a rejection its reader task
    raises is kept here, and ends the handshake, instead of failing the relay."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.scope = trio.CancelScope()
        self.rejected: ConnectionRejected | None = None

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object, **_: object) -> None:
        self._nursery.start_soon(self._guarded, fn, args)

    async def _guarded(
        self, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        try:
            await fn(*args)
        except ConnectionRejected as rejected:
            self.rejected = rejected
            self.scope.cancel()


@dataclass(eq=False, slots=True)
class _Link:
    """One connection: the relay's end towards the service and its end towards the server."""

    client_end: trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]
    server_end: trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]
    cut: bool = False

    def sever(self) -> None:
        """End both legs at once, as a network failure does: no close frame either way."""
        self.cut = True
        for end in (self.client_end, self.server_end):
            end.send_stream.close()
            end.receive_stream.close()


class MemoryBackend:
    """The reference server in this trio run, and a relay in front of it that can misbehave.

    Made by :func:`memory_backend`; see the module's documentation for an example.
    """

    url: str = URL
    """The URL to give :func:`~fsm_session.service.open_session_service` with
    :meth:`open_stream`; its host is never looked up."""

    def __init__(
        self, secret: str, nursery: trio.Nursery, streams: trio.MemorySendChannel[trio.abc.Stream]
    ) -> None:
        self.secret = secret
        """The secret that signs this backend's tokens."""
        self._nursery = nursery
        self._streams = streams
        self._links: set[_Link] = set()
        self._refusing = 0
        self._delay = 0.0
        self._refusals: dict[str, _Refusal] = {}

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.connections} connection(s)>"

    # ------------------------------------------------------------------ using it

    @property
    def connections(self) -> int:
        """Connections open through the relay now."""
        return len(self._links)

    def mint(self, external_id: str | None = None, *, ttl: float = 3600.0) -> str:
        """A token this backend accepts, for ``external_id`` (``None``: a ghost), valid ``ttl``
        seconds of wall-clock time."""
        return token_minter(self.secret)(external_id, ttl=ttl)

    async def open_stream(self) -> trio.abc.Stream:
        """A new connection to the backend: pass as ``open_stream=`` to
        :func:`~fsm_session.service.open_session_service` with :attr:`url`."""
        if self._refusing:
            raise OSError(errno.ECONNREFUSED, "the in-memory backend is unreachable")
        service_end, client_end = trio.testing.memory_stream_pair()
        server_end, server_side = trio.testing.memory_stream_pair()
        link = _Link(client_end, server_end)
        self._links.add(link)
        await self._streams.send(server_side)
        self._nursery.start_soon(self._relay, link)
        return service_end

    @asynccontextmanager
    async def session_service(
        self,
        external_id: str | None = None,
        *,
        config: ServiceConfig | None = None,
        ttl: float = 3600.0,
    ) -> AsyncIterator[SessionService]:
        """A session service connected to this backend, with a fresh token for
        ``external_id`` (``None``: a token that names nobody)."""
        async with open_session_service(
            self.url,
            access_token=self.mint(external_id, ttl=ttl),
            config=config,
            open_stream=self.open_stream,
        ) as service:
            yield service

    # ------------------------------------------------------------------ faults

    def drop(self) -> int:
        """Cut every open connection at once, without a close frame either way; how many.

        The services see their connection lost (and reconnect by their policy); the server
        sees its peers gone (and keeps their sessions for the resume grace, P9).
        """
        links = list(self._links)
        for link in links:
            link.sever()
        return len(links)

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """While inside, a new connection fails as to a host that is down; open ones stay."""
        self._refusing += 1
        try:
            yield
        finally:
            self._refusing -= 1

    @contextmanager
    def delay_replies(self, seconds: float) -> Iterator[None]:
        """While inside, each frame from the server reaches its service ``seconds`` late (on
        trio's clock), in order. Frames already waiting keep the delay they were given."""
        if not seconds >= 0:
            raise ValueError(f"a delay is a number of seconds >= 0, got {seconds!r}")
        previous, self._delay = self._delay, seconds
        try:
            yield
        finally:
            self._delay = previous

    def refuse_next(
        self,
        kind: str,
        *,
        code: str = ErrorCode.INTERNAL_ERROR,
        message: str = "refused by the in-memory backend",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests of type ``kind`` (``"open"``, ``"update"``,
        ``"close"``, ``"resume"``, ``"token"``) with an ``error`` frame of ``code``, without
        passing them to the server."""
        if kind not in REQUESTS:
            raise ValueError(f"{kind!r} is not a request type; one of {sorted(REQUESTS)}")
        if code not in _ERROR_CODES:
            raise ValueError(f"{code!r} is not an error code of the protocol")
        if isinstance(times, bool) or not (isinstance(times, int) and times >= 1):
            raise ValueError(f"times must be a whole number >= 1, got {times!r}")
        self._refusals[kind] = _Refusal(code, message, times)

    # ------------------------------------------------------------------ the relay

    async def _relay(self, link: _Link) -> None:
        try:
            async with trio.open_nursery() as nursery:
                towards_service = await self._accept(nursery, link)
                if towards_service is None:
                    return
                service_ws, server_ws = towards_service
                nursery.start_soon(partial(self._pump, link, service_ws, server_ws, requests=True))
                nursery.start_soon(partial(self._pump, link, server_ws, service_ws, requests=False))
        finally:
            link.sever()
            self._links.discard(link)

    async def _accept(
        self, nursery: trio.Nursery, link: _Link
    ) -> tuple[WebSocketConnection, WebSocketConnection] | None:
        """Take the service's handshake to the server and the server's answer back."""
        try:
            request = await wrap_server_stream(
                nursery, link.client_end, max_message_size=_RELAY_MAX_MESSAGE
            )
            headers = [(k, v) for k, v in request.headers if k.lower() == b"authorization"]
            guard = _ReaderGuard(nursery)
            server_ws = None
            with guard.scope:
                server_ws = await wrap_client_stream(
                    guard,  # type: ignore[arg-type]
                    link.server_end,  # type: ignore[arg-type]  # any trio stream works
                    "memory.invalid",
                    request.path,
                    subprotocols=request.proposed_subprotocols,
                    extra_headers=headers,
                    max_message_size=_RELAY_MAX_MESSAGE,
                )
            if server_ws is None:
                rejected = guard.rejected
                if rejected is not None:  # The server's refusal, passed on as it was.
                    await request.reject(
                        rejected.status_code,
                        extra_headers=list(rejected.headers or []),
                        body=rejected.body,
                    )
                return None
            service_ws = await request.accept(subprotocol=server_ws.subprotocol)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        return service_ws, server_ws

    async def _pump(
        self,
        link: _Link,
        source: WebSocketConnection,
        sink: WebSocketConnection,
        *,
        requests: bool,
    ) -> None:
        """Move messages from ``source`` to ``sink`` until one side closes; the faults armed
        now apply: refusals to requests, the delay to what the server sends."""
        while True:
            try:
                message = await source.get_message()
            except ConnectionClosed as closed:
                await _pass_close(link, closed, sink)
                return
            target = sink
            if requests:
                refused = self._refused(message)
                if refused is not None:
                    message, target = refused, source
            elif self._delay > 0:
                await trio.sleep(self._delay)
            with suppress(ConnectionClosed):  # The other direction passes the close on.
                await target.send_message(message)

    def _refused(self, message: str | bytes) -> str | None:
        """The error frame answering ``message`` when a refusal is armed for its type."""
        if not self._refusals:
            return None
        try:
            frame = json.loads(message)
        except ValueError:
            return None
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        refusal = self._refusals.get(kind) if isinstance(kind, str) else None
        rid = frame.get("id")
        if refusal is None or not (isinstance(rid, int) and not isinstance(rid, bool)):
            return None
        refusal.left -= 1
        if refusal.left == 0:
            del self._refusals[kind]  # type: ignore[arg-type]
        return encode(ErrorReply(id=rid, code=refusal.code, message=refusal.message))


async def _pass_close(link: _Link, closed: ConnectionClosed, other: WebSocketConnection) -> None:
    """One side ended: end the other the same way (a close frame, or a cut)."""
    reason = closed.reason
    if not link.cut and reason is not None and reason.code not in _UNSENDABLE:
        with suppress(ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            await other.aclose(reason.code, reason.reason)
    link.sever()


@asynccontextmanager
async def memory_backend(
    *, secret: str | None = None, config: ServerConfig | None = None
) -> AsyncIterator[MemoryBackend]:
    """Run the reference server in this trio run, reached through memory; see the module.

    ``secret`` signs and checks the tokens (a fresh random one by default); ``config`` sets the
    server's limits and timers (its ``resume_grace``, ``idle_timeout``...). Leaving the block
    stops the server: open connections are closed with 1001 (going away).
    """
    secret = secrets.token_urlsafe(32) if secret is None else secret
    send, receive = trio.open_memory_channel[trio.abc.Stream](0)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_streams, receive, secret=secret, config=config))
            relays = await nursery.start(_relays)
            try:
                yield MemoryBackend(secret, relays, send)
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # What the test's own code raised comes out as itself, not inside an exception group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _relays(task_status: trio.TaskStatus[trio.Nursery]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()
