"""The session service: a thin trio driver around the sans-I/O client protocol.

Each public method fires a trigger through :class:`~fsm_session.client_protocol.ClientProtocol`,
whose machine's guards enforce the rules of ``specs/session.md``. The caller's own task then does
the I/O its call needs (connect, send) and waits for the request's outcome; no task is spawned
per request. One reader task per connection feeds every frame to the protocol object, which
resolves outcomes and moves the machine. No session state lives here.

Cancellation stays truthful. A cancelled caller cancels only its own wait: once its frame is on
the wire, the backend's answer still moves the session. A caller cancelled before its frame left
tells the protocol so, and the open fails (CLOSED). ``close()`` fails every request at once, in
data, and always ends CLOSED within its bound.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast, overload

import trio

from fsm_session import tokens, upkeep
from fsm_session.client_protocol import ClientProtocol, Pending, ReconnectPolicy
from fsm_session.errors import (
    ArgumentTypeError,
    RemoteProtocolError,
    SessionError,
    SessionNotOpen,
)
from fsm_session.events import Event
from fsm_session.machine import MISSING, Effect, On, SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import Message
from fsm_session.streams import EventsDropped, EventStream, Hub, ServiceWatcher, Watchers
from fsm_session.transport import StreamOpener, Transport, TransportConfig
from fsm_session.upkeep import settled, wait

__all__ = [
    "EventStream",
    "EventsDropped",
    "ReconnectPolicy",
    "ServiceConfig",
    "ServiceWatcher",
    "SessionService",
    "open_session_service",
]

log = logging.getLogger("fsm_session.service")
_S = SessionState


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Timeouts and buffers of a session service, in seconds and events."""

    transport: TransportConfig = field(default_factory=TransportConfig)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    wall_clock: Callable[[], float] = time.time
    """Seconds since the epoch, to schedule token refreshes from the token's own times (R16)."""
    request_timeout: float = 10.0
    """How long a request waits for its reply before the connection is judged lost."""
    logout_timeout: float = 5.0
    """How long ``close()`` waits for the backend to confirm the logout (rule R11)."""
    event_buffer: int = 1024
    """Events a subscriber may fall behind by before its stream ends with ``EventsDropped``."""


class SessionService:
    """A client's session with a backend. Create it with :func:`open_session_service`."""

    __slots__ = (
        "_claims",
        "_complaints",
        "_hub",
        "_nursery",
        "_proto",
        "_reconnector",
        "_token",
        "_transport",
        "_watchers",
        "_work",
        "config",
    )

    def __init__(
        self,
        url: str,
        *,
        access_token: str,
        nursery: trio.Nursery,
        refresh_token: Callable[[bool], Awaitable[str]] | None = None,
        config: ServiceConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        open_stream: StreamOpener | None = None,
    ) -> None:
        claims = tokens.read_claims(access_token)
        self.config = config = config or ServiceConfig()
        self._hub = Hub()
        self._watchers = Watchers()
        self._proto = ClientProtocol(
            token_external_id=claims.external_id,
            on_event=self._publish,
            request_timeout=config.request_timeout,
            logout_timeout=config.logout_timeout,
            policy=config.reconnect,
            keepalive_interval=config.transport.keepalive_interval,
        )
        self._transport = Transport(
            url,
            nursery,
            self._proto,
            self,
            config.transport,
            ssl_context=ssl_context,
            open_stream=open_stream,
        )
        self._token = access_token
        self._claims = claims
        self._nursery = nursery
        self._work: list[trio.CancelScope] = []  # a list: it holds one or two
        self._reconnector: trio.CancelScope | None = None
        self._complaints = upkeep.Complaints(log)
        if refresh_token is not None:
            nursery.start_soon(upkeep.keep_token_fresh, self, refresh_token)

    def __repr__(self) -> str:  # Never the token (rule R16).
        return (
            f"<SessionService {self.state.name} socket={self.socket_state.name} "
            f"participant={self.participant!r} url={self._transport.url!r}>"
        )

    # ------------------------------------------------------------------ what the session is

    @property
    def state(self) -> SessionState:
        """The session state (CLOSED, OPENING, OPEN, GHOST or CLOSING)."""
        return self._proto.session.state

    @property
    def socket_state(self) -> WebSocketState:
        """The state of the socket beneath the session."""
        return self._proto.socket.state

    @property
    def participant(self) -> Participant | None:
        """The local participant while OPEN, GHOST or CLOSING; else ``None``."""
        return self._proto.session.participant

    @property
    def identity(self) -> ParticipantInfo | None:
        """The remembered identity a bare ``open()`` reopens with (rule R6), or ``None``."""
        return self._proto.session.identity

    @property
    def last_transition(self) -> On | None:
        """The row of the session table taken last (for coverage tools), or ``None``."""
        return self._proto.session.last

    def diagram(self, fmt: str = "mermaid") -> str:
        """The session machine drawn with the current state and the last transition marked.

        ``fmt`` is ``mermaid``, ``dot``, ``svg`` (needs Graphviz) or ``table``.
        """
        from fsm_session.diagrams import diagram_of

        return diagram_of(self._proto.session, fmt)

    def is_open(self) -> bool:
        """True exactly in OPEN and GHOST (rule R8)."""
        return self._proto.session.is_open()

    def is_local_participant(self, participant: Participant) -> bool:
        """True exactly when a session is open and ``participant`` is ours (rule R9).

        Raises ``ArgumentTypeError`` (a ``TypeError``) for anything but a ``Participant``.
        """
        return self._proto.session.is_local_participant(participant)

    # ------------------------------------------------------------------ the calls

    @overload
    async def open(self) -> Participant: ...

    @overload
    async def open(self, info: ParticipantInfo) -> Participant: ...

    async def open(self, info: ParticipantInfo | Any = MISSING) -> Participant:
        """Open the session as ``info``; with no argument, reopen or open a ghost (R2-R6).

        Returns the participant the backend assigned. A refused call (bad info, an external ID
        that is not the token's, another identity already open) raises the rule's error with the
        state unchanged and nothing sent. A backend refusal or a failed connection raises too,
        and the session is CLOSED.
        """
        proto = self._proto
        while True:
            closing = proto.close_outcome
            if closing is not None and proto.session.state is _S.CLOSING:
                await settled(closing)  # R11: open after the close in progress
                continue
            effect, request = proto.open(info, now=trio.current_time())
            if request is None:  # RETURN_PARTICIPANT: already open as asked (R5)
                await trio.lowlevel.checkpoint()
                return cast(Participant, proto.session.participant)
            if effect is Effect.JOIN_OPEN:
                return cast(Participant, await wait(request))
            return await upkeep.carry_open(self, request)

    async def update(self, name: str | None = None, avatar_url: str | None = None) -> Participant:
        """Change the name and/or avatar URL; ``None`` leaves a value as it is (R7, R10).

        Returns the participant as the backend now knows it. Outside OPEN and GHOST it raises
        ``SessionNotOpen``; bad values raise ``InvalidParticipantInfo``; both unchanged and
        nothing is sent. Updates made at once are sent one after another (M4).
        """
        proto = self._proto
        while proto.update_request is not None:
            await settled(proto.update_request)
        request = proto.update(name, avatar_url, now=trio.current_time())
        if request is None:  # nothing to change (R10)
            await trio.lowlevel.checkpoint()
            return cast(Participant, proto.session.participant)
        await self._send(request)
        return cast(Participant, await wait(request))

    async def _send(self, request: Pending) -> None:
        """Send a request on the current connection; while there is none it waits in the
        protocol for the resume (R14)."""
        serial = self._proto.connection
        frame = self._proto.send(request, serial, now=trio.current_time())
        if frame is not None:
            await self._transport.send(serial, frame, request.deadline)

    async def close(self) -> None:
        """Close the session: cancel its work, log out, close the socket; end CLOSED (R11).

        From CLOSED it does nothing; during CLOSING it waits for the close in progress. It ends
        CLOSED even when the backend does not answer (after ``logout_timeout``), and even when
        the caller is cancelled meanwhile.
        """
        proto = self._proto
        effect, logout = proto.close(now=trio.current_time())
        outcome = proto.close_outcome
        if effect is Effect.NOTHING or outcome is None:
            await trio.lowlevel.checkpoint()
            return
        if effect is Effect.JOIN_CLOSE:
            await settled(outcome)
            return
        self._cancel_work()
        with trio.CancelScope(shield=True):
            transport = self._transport
            await transport.settle()  # an open's connect, cancelled above, unwinds
            if logout is not None:
                await self._send(logout)
                await settled(logout)  # the reader times it out at its deadline, or it drops
                if logout.error is not None:
                    log.info("logout not confirmed: %s", logout.error)
            await transport.close()
            proto.finish_close(outcome)

    async def wait_for(
        self, target: SessionState | WebSocketState | Callable[[SessionService], bool]
    ) -> SessionState:
        """Wait until the session (or its socket) is in ``target``, or ``target(session)`` is
        true; return the session state then. Returns at once when it already holds.

        Bounded only by the caller's cancel scope (``with trio.fail_after(5): ...``), like
        XState's ``waitFor``; it changes nothing, so cancelling it is always safe.
        """
        if isinstance(target, SessionState):
            holds: Callable[[SessionService], bool] = lambda s: s.state is target  # noqa: E731
        elif isinstance(target, WebSocketState):
            holds = lambda s: s.socket_state is target  # noqa: E731
        elif callable(target):
            holds = target
        else:
            raise ArgumentTypeError(
                "wait_for() takes a SessionState, a WebSocketState or a predicate, "
                f"not {type(target).__name__}",
                trigger="wait_for",
                state=self.state,
            )
        await trio.lowlevel.checkpoint()
        while not holds(self):
            await self._hub.changed().wait()
        return self.state

    def start_soon(
        self, fn: Callable[..., Awaitable[object]], *args: object, name: str | None = None
    ) -> None:
        """Run ``fn(*args)`` as work tied to this session: ``close()`` cancels it (rule R11).

        Allowed while OPENING, OPEN or GHOST; elsewhere raises ``SessionNotOpen``.
        """
        state = self.state
        if state not in (_S.OPENING, _S.OPEN, _S.GHOST):
            raise SessionNotOpen(
                "work can be tied only to an opening or open session",
                rule="R11",
                trigger="start_soon",
                state=state,
            )
        scope = trio.CancelScope()
        self._work.append(scope)

        async def run() -> None:
            try:
                with scope:
                    await fn(*args)
            finally:
                self._work.remove(scope)

        self._nursery.start_soon(run, name=name or getattr(fn, "__qualname__", repr(fn)))

    @asynccontextmanager
    async def subscribe(self, max_buffer: int | None = None) -> AsyncIterator[EventStream]:
        """Receive every event from now on, in order, while the block runs (rule S1)."""
        size = self.config.event_buffer if max_buffer is None else max_buffer
        stream, subscriber, receive = self._hub.subscribe(size)
        try:
            yield stream
        finally:
            self._hub.unsubscribe(subscriber)
            receive.close()

    @property
    def subscriber_count(self) -> int:
        """How many ``subscribe()`` blocks are open (a leak check for tests)."""
        return len(self._hub.subscribers)

    def watch(self, watcher: ServiceWatcher) -> None:
        """Tell ``watcher`` of every event from now on, and of the service's end."""
        self._watchers.add(watcher)

    def _publish(self, event: Event) -> None:
        self._hub.publish(event)
        if self._watchers:
            self._watchers.event(self, event)

    # ------------------------------------------------------------------ what the transport reports

    def _frame(self, serial: int, message: Message) -> None:
        try:
            lost = self._proto.receive(serial, message, now=trio.current_time())
        except RemoteProtocolError as error:
            self._complaints.add(error, trio.current_time())
            return
        if lost:
            self._after_loss()

    def _dropped(self, serial: int, error: SessionError) -> None:
        reconnect = self._proto.dropped(serial, error, now=trio.current_time())
        if reconnect and self._reconnector is None:
            # Registered now, not when the task starts: a close() in between must stop it.
            scope = trio.CancelScope()
            self._reconnector = scope
            self._work.append(scope)
            self._nursery.start_soon(upkeep.reconnect, self, scope, error)
        elif self.state is _S.CLOSED:
            self._cancel_work()

    def _cancel_work(self) -> None:
        for scope in list(self._work):
            scope.cancel()

    def _after_loss(self, error: SessionError | None = None) -> None:
        self._cancel_work()
        self._transport.abort(None, error)

    def _lose(self, reason: str, error: SessionError) -> None:
        if self._proto.lose(reason, error):
            self._after_loss(error)


@asynccontextmanager
async def open_session_service(
    url: str,
    *,
    access_token: str,
    refresh_token: Callable[[bool], Awaitable[str]] | None = None,
    config: ServiceConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    open_stream: StreamOpener | None = None,
    inspector: ServiceWatcher | None = None,
) -> AsyncIterator[SessionService]:
    """A session service for the backend at ``url`` (``ws://`` or ``wss://``), CLOSED at first.

    Nothing goes on the network until the first ``open`` (rule R1). Leaving the block closes
    the session (bounded by the configured timeouts) and ends every event stream.
    ``refresh_token(is_expired)`` is awaited at 1/2 and 3/4 of the token's life and at its
    expiry for a fresh token (rule R16). For ``wss://``, ``ssl_context`` says whom to trust
    (by default the system's trust store). ``open_stream``, an async callable that returns a
    connected ``trio.abc.Stream``, replaces the TCP connection to the URL's host (the in-memory
    backend of ``fsm_session.testing`` uses it). ``inspector`` (an
    :class:`~fsm_session.inspector.Inspector`) shows the session live in a browser.
    """
    try:
        async with trio.open_nursery() as nursery:
            service = SessionService(
                url,
                access_token=access_token,
                nursery=nursery,
                refresh_token=refresh_token,
                config=config,
                ssl_context=ssl_context,
                open_stream=open_stream,
            )
            if inspector is not None:
                inspector.follow(service)
            try:
                yield service
            finally:
                with trio.CancelScope(shield=True):
                    await service.close()
                    service._hub.end()
                    service._watchers.ended(service)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Let one error out of the nursery as itself, not inside an exception group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
