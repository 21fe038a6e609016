"""The session service: the state machine driving a real trio-websocket connection.

Each public method fires a trigger of the session machine, whose guards enforce the rules of
``specs/session.md``; the effect the transition asks for is carried out here, and the backend's
answer comes back as the next trigger. No session state lives here: the machine holds it.

Requests run as *flights*: tasks of the service's own nursery that callers wait on. Cancelling a
call cancels the caller's wait, never half a request, so the state always tells the truth: an
open in flight still ends OPEN or CLOSED, and a close always ends CLOSED. Calls that the rules
join (a second ``open`` with the same info, a ``close`` during CLOSING) wait on the same flight;
updates go one at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import trio

from fsm_session import tokens
from fsm_session.errors import (
    BackendError,
    ConnectionLost,
    InvalidToken,
    RequestAborted,
    SessionError,
    SessionNotOpen,
    SessionSwitched,
    TokenError,
    TokenExpired,
)
from fsm_session.events import (
    Event,
    SessionLostEvent,
    SessionStateChangeEvent,
    SessionSwitchedEvent,
    SocketStateChangeEvent,
)
from fsm_session.machine import MISSING, Effect, SessionCore, SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import (
    Close,
    ErrorReply,
    Message,
    Open,
    Opened,
    RefreshToken,
    Reply,
    Request,
    Resume,
    Resumed,
    SessionEnded,
    TokenAccepted,
    Update,
    Updated,
    encode,
    error_from_reply,
)
from fsm_session.transport import Transport, TransportConfig, TransportListener

__all__ = [
    "EventStream",
    "EventsDropped",
    "ReconnectPolicy",
    "ServiceConfig",
    "SessionService",
    "open_session_service",
]

log = logging.getLogger("fsm_session.service")

T = TypeVar("T")
_S = SessionState


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a session whose connection dropped gets it back (rule R14), in seconds.

    The first attempt waits ``initial_delay``; each next delay is ``factor`` times the last, at
    most ``max_delay``. Each attempt (connect and resume) is bounded by ``attempt_timeout``.
    After ``give_up_after`` the session is lost: CLOSED, with a ``SessionLostEvent``.
    """

    initial_delay: float = 0.05
    factor: float = 2.0
    max_delay: float = 2.0
    attempt_timeout: float = 2.0
    give_up_after: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.factor < 1 or self.max_delay < self.initial_delay:
            raise ValueError("delays must be non-negative, growing and capped above the first")
        if self.attempt_timeout <= 0 or self.give_up_after < 0:
            raise ValueError("attempt_timeout must be positive and give_up_after non-negative")


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


class EventsDropped(SessionError):
    """A subscriber fell more than its buffer behind; its stream was ended, not thinned."""

    code = "events_dropped"


class _Flight(Generic[T]):
    """One request in flight, which any number of callers may wait on."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def finish(self, result: T) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()

    async def wait(self) -> T:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class _Subscriber:
    __slots__ = ("overflowed", "send")

    def __init__(self, send: trio.MemorySendChannel[Event]) -> None:
        self.send = send
        self.overflowed = False


class EventStream:
    """Every event of the session, in order, from the moment of ``subscribe()``.

    Iterate with ``async for``. The stream ends when the service ends; if this subscriber falls
    more than ``ServiceConfig.event_buffer`` events behind, it ends with ``EventsDropped``
    instead of silently skipping events.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[Event], subscriber: _Subscriber) -> None:
        self._receive = receive
        self._subscriber = subscriber

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._subscriber.overflowed:
                raise EventsDropped("this subscriber fell too far behind", rule="R18") from None
            raise StopAsyncIteration from None

    def ready(self) -> list[Event]:
        """The events already delivered to this stream, taken without waiting."""
        events: list[Event] = []
        while True:
            try:
                events.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return events

    async def receive(self) -> Event:
        """The next event (``StopAsyncIteration`` when the stream has ended)."""
        return await self.__anext__()


_REQUEST_TRIGGERS: Final = {
    Open: "open",
    Update: "update",
    Close: "close",
    Resume: "resume",
    RefreshToken: "refresh_token",
}


class SessionService(TransportListener):
    """A client's session with a backend. Create it with :func:`open_session_service`."""

    __slots__ = (
        "_claims",
        "_close_flight",
        "_core",
        "_last_id",
        "_nursery",
        "_open_flight",
        "_pending",
        "_reconnecting",
        "_refresh_token",
        "_subscribers",
        "_token",
        "_transport",
        "_update_flight",
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
    ) -> None:
        claims = tokens.read_claims(access_token)
        self.config = config or ServiceConfig()
        self._core = SessionCore(token_external_id=claims.external_id)
        self._token = access_token
        self._refresh_token = refresh_token
        self._nursery = nursery
        self._transport = Transport(url, nursery, self, self.config.transport)
        self._subscribers: list[_Subscriber] = []
        self._pending: dict[int, tuple[_Flight[Message], str]] = {}
        self._last_id = 0
        self._open_flight: _Flight[Participant] | None = None
        self._update_flight: _Flight[Participant] | None = None
        self._close_flight: _Flight[None] | None = None
        self._work: set[trio.CancelScope] = set()
        self._claims = claims
        self._reconnecting: trio.Event | None = None
        if refresh_token is not None:
            nursery.start_soon(self._keep_token_fresh, refresh_token)

    def __repr__(self) -> str:  # Never the token (rule R16).
        return (
            f"<SessionService {self.state.name} socket={self.socket_state.name} "
            f"participant={self.participant!r} url={self._transport.url!r}>"
        )

    # ------------------------------------------------------------------ what the session is

    @property
    def state(self) -> SessionState:
        """The session state (CLOSED, OPENING, OPEN, GHOST or CLOSING)."""
        return self._core.state

    @property
    def socket_state(self) -> WebSocketState:
        """The state of the socket beneath the session."""
        return self._transport.state

    @property
    def participant(self) -> Participant | None:
        """The local participant while OPEN, GHOST or CLOSING; else ``None``."""
        return self._core.participant

    @property
    def core(self) -> SessionCore:
        """The pure machine of this session (read it; drive it only through the service)."""
        return self._core

    def diagram(self, fmt: str = "mermaid") -> str:
        """The session machine drawn with the current state and the last transition marked.

        ``fmt`` is ``mermaid``, ``dot``, ``svg`` (needs Graphviz) or ``table``.
        """
        from fsm_session.diagrams import diagram_of

        return diagram_of(self._core, fmt)

    def is_open(self) -> bool:
        """True exactly in OPEN and GHOST (rule R8)."""
        return self._core.is_open()

    def is_local_participant(self, participant: Participant) -> bool:
        """True exactly when a session is open and ``participant`` is ours (rule R9).

        Raises ``ArgumentTypeError`` (a ``TypeError``) for anything but a ``Participant``.
        """
        return self._core.is_local_participant(participant)

    # ------------------------------------------------------------------ the calls

    async def open(self, info: ParticipantInfo | Any = MISSING) -> Participant:
        """Open the session as ``info``; with no argument, reopen or open a ghost (R2-R6).

        Returns the participant the backend assigned. A refused call (bad info, an external ID
        that is not the token's, another identity already open) raises the rule's error with the
        state unchanged and nothing sent. A backend refusal or a failed connection raises too,
        and the session is CLOSED.
        """
        while True:
            close_flight = self._close_flight
            if self._core.state is _S.CLOSING and close_flight is not None:
                await close_flight.done.wait()  # R11: open after the close in progress
                continue
            effect = self._fire("open", info=info)
            if effect is Effect.RETURN_PARTICIPANT:
                assert self._core.participant is not None
                return self._core.participant
            if effect is Effect.JOIN_OPEN:
                assert self._open_flight is not None
                return await self._open_flight.wait()
            assert effect is Effect.SEND_OPEN
            flight: _Flight[Participant] = _Flight()
            self._open_flight = flight
            self._nursery.start_soon(self._run_open, flight, self._core.opening)
            return await flight.wait()

    async def update(self, name: str | None = None, avatar_url: str | None = None) -> Participant:
        """Change the name and/or avatar URL; ``None`` leaves a value as it is (R7, R10).

        Returns the participant as the backend now knows it. Outside OPEN and GHOST it raises
        ``SessionNotOpen``; bad values raise ``InvalidParticipantInfo``; both unchanged and
        nothing is sent. Updates made at once are sent one after another.
        """
        while self._update_flight is not None:
            await self._update_flight.done.wait()
        effect = self._fire("update", name=name, avatar_url=avatar_url)
        if effect is Effect.NOTHING:
            assert self._core.participant is not None
            return self._core.participant
        flight: _Flight[Participant] = _Flight()
        self._update_flight = flight
        self._nursery.start_soon(self._run_update, flight, name, avatar_url)
        return await flight.wait()

    async def close(self) -> None:
        """Close the session: cancel its work, log out, close the socket; end CLOSED (R11).

        From CLOSED it does nothing; during CLOSING it waits for the close in progress. It ends
        CLOSED even when the backend does not answer (after ``logout_timeout``).
        """
        effect = self._fire("close")
        if effect is Effect.NOTHING:
            return
        if effect is Effect.JOIN_CLOSE:
            assert self._close_flight is not None
            await self._close_flight.done.wait()
            return
        assert effect is Effect.SEND_CLOSE
        self._abandon_work(
            RequestAborted("the session was closed", trigger="close", state=_S.CLOSING)
        )
        flight: _Flight[None] = _Flight()
        self._close_flight = flight
        self._nursery.start_soon(self._run_close, flight)
        await flight.done.wait()

    def start_soon(
        self, fn: Callable[..., Awaitable[object]], *args: object, name: str | None = None
    ) -> None:
        """Run ``fn(*args)`` as work tied to this session: ``close()`` cancels it (rule R11).

        Allowed while OPENING, OPEN or GHOST; elsewhere raises ``SessionNotOpen``.
        """
        if self._core.state not in (_S.OPENING, _S.OPEN, _S.GHOST):
            raise SessionNotOpen(
                "work can be tied only to an opening or open session",
                rule="R11",
                trigger="start_soon",
                state=self._core.state,
            )
        scope = trio.CancelScope()
        self._work.add(scope)

        async def run() -> None:
            try:
                with scope:
                    await fn(*args)
            finally:
                self._work.discard(scope)

        self._nursery.start_soon(run, name=name or getattr(fn, "__qualname__", repr(fn)))

    @asynccontextmanager
    async def subscribe(self, max_buffer: int | None = None) -> AsyncIterator[EventStream]:
        """Receive every event from now on, in order, while the block runs (rule S1)."""
        size = self.config.event_buffer if max_buffer is None else max_buffer
        send, receive = trio.open_memory_channel[Event](size)
        subscriber = _Subscriber(send)
        self._subscribers.append(subscriber)
        try:
            yield EventStream(receive, subscriber)
        finally:
            # Unsubscribe before closing, with no checkpoint between: a publish in between
            # would find the receiving end closed.
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
            send.close()
            receive.close()

    @property
    def subscriber_count(self) -> int:
        """How many ``subscribe()`` blocks are open (a leak check for tests)."""
        return len(self._subscribers)

    # ------------------------------------------------------------------ machine and events

    def _fire(self, trigger: str, **kwargs: Any) -> Effect:
        old = self._core.state
        effect: Effect = getattr(self._core, trigger)(**kwargs)
        if self._core.state is not old:
            self._publish(SessionStateChangeEvent(old, self._core.state, trigger))
        return effect

    def _publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.send.send_nowait(event)
            except trio.WouldBlock:
                subscriber.overflowed = True
                subscriber.send.close()
                self._subscribers.remove(subscriber)
            except (trio.ClosedResourceError, trio.BrokenResourceError):  # pragma: no cover
                self._subscribers.remove(subscriber)  # unsubscribed before it closes; to be safe

    def socket_changed(self, old: WebSocketState, new: WebSocketState) -> None:
        self._publish(SocketStateChangeEvent(new, old))

    # ------------------------------------------------------------------ flights

    async def _exchange(
        self, make: Callable[[int], Request], trigger: str, awaited: Callable[[], bool]
    ) -> Message:
        """A flight's request, as work tied to the session: ``close()`` abandons it (R11).

        Raises ``RequestAborted`` when it was abandoned or when, once answered, the session no
        longer waits for the answer (``awaited()`` is false).
        """
        with trio.CancelScope() as scope:
            self._work.add(scope)
            try:
                if trigger == "open":
                    await self._transport.settle()
                    if self._transport.state is WebSocketState.CLOSED:
                        await self._transport.connect(self._token)
                reply = await self._request(make)
            finally:
                self._work.discard(scope)
        if scope.cancelled_caught or not awaited():
            raise RequestAborted(
                f"the session was closed before the {trigger} finished",
                trigger=trigger,
                state=self._core.state,
            )
        return reply

    async def _run_open(self, flight: _Flight[Participant], info: ParticipantInfo | None) -> None:
        try:
            reply = await self._exchange(
                lambda rid: Open(rid, info), "open", lambda: self._core.state is _S.OPENING
            )
            assert isinstance(reply, Opened)
            self._fire("opened", participant=reply.participant)
            flight.finish(reply.participant)
        except SessionError as error:
            error.locate("open", _S.OPENING)
            if self._core.state is _S.OPENING:
                # Close the socket first: until the session is CLOSED no other open can start
                # and find a socket still going down.
                await self._transport.close()
                if self._core.state is _S.OPENING:
                    self._fire("open_failed")
            flight.fail(error)
        finally:
            if self._open_flight is flight:
                self._open_flight = None
            if not flight.done.is_set():
                flight.fail(RequestAborted("the service ended", trigger="open", state=self.state))

    async def _run_update(
        self, flight: _Flight[Participant], name: str | None, avatar_url: str | None
    ) -> None:
        state = self._core.state
        try:
            reply = await self._exchange(
                lambda rid: Update(rid, name, avatar_url),
                "update",
                lambda: self._core.updating is not None and self._core.is_open(),
            )
            assert isinstance(reply, Updated)
            self._fire("updated", participant=reply.participant)
            flight.finish(reply.participant)
        except SessionError as error:
            error.locate("update", state)
            if self._core.updating is not None and self._core.is_open():
                self._fire("update_failed")
            flight.fail(error)
        finally:
            if self._update_flight is flight:
                self._update_flight = None
            if not flight.done.is_set():
                flight.fail(RequestAborted("the service ended", trigger="update", state=self.state))

    async def _run_close(self, flight: _Flight[None]) -> None:
        try:
            open_flight = self._open_flight
            if open_flight is not None:
                await open_flight.done.wait()  # it was cancelled; let it unwind its connect
            reconnecting = self._reconnecting
            if reconnecting is not None:
                await reconnecting.wait()  # likewise the reconnect loop
            if self._transport.state is WebSocketState.CONNECTED:
                with trio.move_on_after(self.config.logout_timeout):
                    try:
                        await self._request(Close)
                    except SessionError as error:
                        log.info("logout not confirmed: %s", error)
            await self._transport.close()
        finally:
            if self._core.state is _S.CLOSING:
                self._fire("closed")
            if self._close_flight is flight:
                self._close_flight = None
            flight.finish(None)

    async def _request(self, make: Callable[[int], Request]) -> Message:
        """Send a request and wait for its reply, across reconnects, within ``request_timeout``.

        A request whose connection drops while the session is being resumed is sent again on
        the new connection (R14). Raises the typed error of an error reply, ``ConnectionLost``
        when there is no connection to wait for or no reply in time, ``RequestAborted`` when
        the session closes.
        """
        timeout = self.config.request_timeout
        with trio.move_on_after(timeout):
            while True:
                reconnecting = self._reconnecting
                if reconnecting is not None:
                    await reconnecting.wait()
                    continue
                try:
                    return await self._exchange_once(make)
                except ConnectionLost:
                    if self._reconnecting is None:
                        raise
        error = ConnectionLost(
            f"no reply within {timeout} s", rule="R14", trigger="request", state=self.state
        )
        if self._reconnecting is None:
            self._transport.abort(error)  # a reply may still come: the stream is out of step
        raise error

    async def _exchange_once(self, make: Callable[[int], Request]) -> Message:
        """One request on the current connection; its reply, or the error it stands for."""
        if self._transport.state is not WebSocketState.CONNECTED:
            raise ConnectionLost("the socket is not connected", rule="R14", state=self.state)
        self._last_id += 1
        rid = self._last_id
        message = make(rid)
        waiter: _Flight[Message] = _Flight()
        self._pending[rid] = (waiter, _REQUEST_TRIGGERS[type(message)])
        try:
            await self._transport.send(encode(message))
            return await waiter.wait()
        finally:
            self._pending.pop(rid, None)

    def _abandon_work(self, error: SessionError) -> None:
        """Fail every request in flight and cancel the work tied to the session (R11)."""
        for waiter, _ in list(self._pending.values()):
            waiter.fail(error)
        self._pending.clear()
        for scope in list(self._work):
            scope.cancel()

    # ------------------------------------------------------------------ transport listener

    def received(self, message: Message) -> None:
        if isinstance(message, Reply | ErrorReply) and message.id is not None:
            entry = self._pending.pop(message.id, None)
            if entry is None:
                log.debug("a reply to request %s that no one waits for", message.id)
                return
            waiter, trigger = entry
            if isinstance(message, ErrorReply):
                waiter.fail(error_from_reply(message, trigger=trigger, state=self._core.state))
            else:
                waiter.finish(message)
        elif isinstance(message, SessionEnded):
            self._end(message.reason)
        elif isinstance(message, ErrorReply):
            log.warning("the backend reported an error: %s %s", message.code, message.message)
        else:  # pragma: no cover - decode_reply returns nothing else
            log.warning("unexpected %s", type(message).__name__)

    def dropped(self, error: SessionError) -> None:
        for waiter, _ in list(self._pending.values()):
            waiter.fail(error)
        self._pending.clear()
        if self._reconnecting is not None:
            return  # an attempt of the reconnect loop failed; the loop goes on
        # OPENING and CLOSING end here (R14); their flights see the failure and stop.
        self._fire("connection_lost")
        if self._core.is_open():
            if self.config.reconnect.give_up_after > 0:
                self._reconnecting = trio.Event()
                # Registered now, not when the task starts: a close() in between must stop it.
                scope = trio.CancelScope()
                self._work.add(scope)
                self._nursery.start_soon(self._reconnect, error, scope)
            else:
                self._lose("connection_lost", error)

    async def _reconnect(self, error: SessionError, scope: trio.CancelScope) -> None:
        """Get the connection back and resume the same participant, or give up (R14, R18).

        ``scope`` is work tied to the session: ``close()`` cancels it and so stops the loop.
        """
        policy = self.config.reconnect
        give_up_at = trio.current_time() + policy.give_up_after
        delay = policy.initial_delay
        resumed = False
        try:
            with scope:
                while not resumed and self._core.is_open():
                    await trio.sleep(delay)
                    final = False
                    try:
                        resumed = await self._resume_once(policy.attempt_timeout)
                    except (TokenError, BackendError) as refusal:
                        error, final = refusal, True  # the token, or an unknown participant
                    except SessionError as transient:
                        error = transient
                    if not resumed:
                        self._transport.abort(error)
                        await self._transport.settle()  # the socket is CLOSED before we go on
                        if final or trio.current_time() + delay >= give_up_at:
                            break
                        delay = min(delay * policy.factor, policy.max_delay)
        finally:
            self._work.discard(scope)
            done, self._reconnecting = self._reconnecting, None
            if done is not None:
                done.set()
        if not resumed and self._core.is_open():
            self._lose("reconnect_failed", error)

    async def _resume_once(self, attempt_timeout: float) -> bool:
        """One attempt: connect and resume; ``False`` when it ran out of time."""
        participant = self._core.participant
        assert participant is not None
        with trio.move_on_after(attempt_timeout):
            await self._transport.settle()
            if self._transport.state is WebSocketState.CLOSED:
                await self._transport.connect(self._token)
            reply = await self._exchange_once(lambda rid: Resume(rid, participant.id))
            assert isinstance(reply, Resumed)
            self._fire("resumed", participant=reply.participant)
            return True
        return False

    async def _keep_token_fresh(self, refresh: Callable[[bool], Awaitable[str]]) -> None:
        """Ask for a fresh token at 1/2 and 3/4 of its life and at expiry (rule R16)."""
        while True:
            times = tokens.refresh_times(self._claims)
            if times is None:
                return
            renewed = False
            for when in times:
                await trio.sleep(max(0.0, when - self.config.wall_clock()))
                expired = when == times[-1]
                if await self._try_refresh(refresh, expired):
                    renewed = True
                    break
            if not renewed:
                if self._core.state is not _S.CLOSED:
                    self._lose(
                        "token_expired",
                        TokenExpired("the access token expired", rule="R16", state=self.state),
                    )
                return

    async def _try_refresh(self, refresh: Callable[[bool], Awaitable[str]], expired: bool) -> bool:
        """Call the callback and adopt its token; ``False`` when that failed (never logged)."""
        try:
            token = await refresh(expired)
            if not isinstance(token, str) or not token:
                raise InvalidToken("the refresh callback returned no token", rule="R16")
            claims = tokens.read_claims(token)
            if self._transport.state is WebSocketState.CONNECTED:
                reply = await self._request(lambda rid: RefreshToken(rid, token))
                assert isinstance(reply, TokenAccepted)
        except Exception as exc:  # The callback is the application's: contain its failure.
            log.warning("token refresh failed (%s); the current token stays", type(exc).__name__)
            return False
        self._token = token
        self._claims = claims
        self._core.token_external_id = claims.external_id
        return True

    def _end(self, reason: str) -> None:
        """The backend ended the session (R16 token expiry, R17 switched)."""
        participant = self._core.participant
        error: SessionError
        if reason == "switched":
            self._publish(SessionSwitchedEvent(participant.id if participant else None))
            error = SessionSwitched(
                "the same external ID opened a session elsewhere", state=self._core.state
            )
        elif reason == "token_expired":
            error = TokenExpired("the access token expired", rule="R16", state=self._core.state)
        else:
            error = BackendError(
                f"the backend ended the session ({reason})", state=self._core.state
            )
        self._lose(reason, error)

    def _lose(self, reason: str, error: SessionError) -> None:
        if self._core.state is _S.CLOSED:
            return
        self._abandon_work(error)
        self._fire("lost")
        self._publish(SessionLostEvent(reason, error))
        self._transport.abort(error)

    # ------------------------------------------------------------------ teardown

    def _end_streams(self) -> None:
        for subscriber in self._subscribers:
            subscriber.send.close()
        self._subscribers.clear()


@contextmanager
def _unwrap_single() -> Generator[None, None, None]:
    """Let one error out of the nursery as itself, not inside an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def open_session_service(
    url: str,
    *,
    access_token: str,
    refresh_token: Callable[[bool], Awaitable[str]] | None = None,
    config: ServiceConfig | None = None,
) -> AsyncIterator[SessionService]:
    """A session service for the backend at ``url`` (``ws://host:port/``), CLOSED at first.

    Nothing goes on the network until the first ``open`` (rule R1). Leaving the block closes
    the session (bounded by the configured timeouts) and ends every event stream.
    ``refresh_token(is_expired)`` is awaited at 1/2 and 3/4 of the token's life and at its
    expiry for a fresh token (rule R16).
    """
    with _unwrap_single():
        async with trio.open_nursery() as nursery:
            service = SessionService(
                url,
                access_token=access_token,
                nursery=nursery,
                refresh_token=refresh_token,
                config=config,
            )
            try:
                yield service
            finally:
                with trio.CancelScope(shield=True):
                    await service.close()
                    service._end_streams()
                nursery.cancel_scope.cancel()
