"""The client's side of the protocol, sans I/O: everything the client does with a frame.

One :class:`ClientProtocol` per session service owns the whole truth of the client: the session
machine and the socket machine, the request ids, the table of pending requests, which reply
kinds each request accepts, what happens to pending requests on a drop, a resume and a close,
and the reconnect schedule. It takes in calls, decoded messages, connection events and the
current time; it gives out frames to send, moves its machines (publishing each move through
``on_event``), and resolves the outcome of each request. It imports no trio, opens no socket and
reads no clock: the driver (``service.py``, ``transport.py``) moves bytes and time.

Generations make stale work harmless by construction. Every open and every close starts a new
generation; every connection has a serial. A request belongs to the generation it was made in,
and a frame, drop or timeout reported for a connection that is no longer the current one is
ignored. So nothing that belonged to an older open or close can act on a newer one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, cast

from fsm_session.errors import (
    BackendError,
    ConnectionLost,
    RemoteProtocolError,
    RequestAborted,
    SessionError,
    SessionSwitched,
    TokenExpired,
)
from fsm_session.events import (
    Event,
    SessionLostEvent,
    SessionStateChangeEvent,
    SessionSwitchedEvent,
    SocketStateChangeEvent,
)
from fsm_session.machine import MISSING, Effect, SessionCore, SessionState, SocketCore
from fsm_session.machine import WebSocketState as W
from fsm_session.models import ParticipantInfo
from fsm_session.protocol import (
    ErrorReply,
    Message,
    Opened,
    Resumed,
    SessionEnded,
    Updated,
    encode,
    error_from_reply,
)
from fsm_session.requests import MAKERS, Kind, Outcome, Pending, ReconnectPolicy

__all__ = ["ClientProtocol", "Kind", "Outcome", "Pending", "ReconnectPolicy"]

log = logging.getLogger("fsm_session.session")
socket_log = logging.getLogger("fsm_session.socket")
_NEVER: Final = float("inf")
_S = SessionState


class ClientProtocol:
    """The client's protocol state: one per session service. Read the module's docstring."""

    __slots__ = (
        "_backoff",
        "_connected_at",
        "_give_up_at",
        "_inflight",
        "_last_id",
        "_on_event",
        "_ping_at",
        "_queued",
        "close_outcome",
        "connection",
        "generation",
        "keepalive_interval",
        "logout_timeout",
        "open_request",
        "policy",
        "reconnecting",
        "request_timeout",
        "session",
        "short_id",
        "socket",
        "update_request",
    )

    def __init__(
        self,
        *,
        token_external_id: str | None,
        on_event: Callable[[Event], None],
        request_timeout: float = 10.0,
        logout_timeout: float = 5.0,
        policy: ReconnectPolicy | None = None,
        keepalive_interval: float | None = None,
    ) -> None:
        self.session = SessionCore(token_external_id=token_external_id)
        self.socket = SocketCore()
        self.policy = policy or ReconnectPolicy()
        self.request_timeout = request_timeout
        self.logout_timeout = logout_timeout
        self._on_event = on_event
        self.short_id = f"{id(self) & 0xFFFF:04x}"
        """Names the session in its events and log records."""
        self.keepalive_interval = keepalive_interval
        """How often to ping a connection (R15); ``None``: never."""
        self._ping_at = _NEVER
        self.generation = 0
        """Starts again at every open and every close."""
        self.connection = 0
        """The serial of the current (or last) connection."""
        self._last_id = 0
        self._inflight: dict[int, Pending | None] = {}
        """Requests on the wire of the current connection by id; ``None`` for one abandoned
        (by a close, a loss or a timeout) whose reply, if any, is to be ignored."""
        self._queued: list[Pending] = []
        """Requests of the current generation waiting for a connection (sent after a resume)."""
        self.open_request: Pending | None = None
        self.update_request: Pending | None = None
        self.close_outcome: Outcome | None = None
        self.reconnecting = False
        self._backoff = self.policy.initial_delay
        self._give_up_at = 0.0
        self._connected_at = 0.0

    # ------------------------------------------------------------------ machines and events

    def _fire(self, trigger: str, **kwargs: Any) -> Effect:
        core = self.session
        old = core.state
        effect: Effect = getattr(core, trigger)(**kwargs)
        new = core.state
        if log.isEnabledFor(logging.DEBUG):
            row = core.last
            log.debug("session %s: %s -> %s on %s (%s)", self.short_id, old.name, new.name,
                      trigger, row.rule if row else "")  # fmt: skip
        if new is not old:
            self._on_event(SessionStateChangeEvent(old, new, trigger, self.short_id))
        return effect

    def _move_socket(self, trigger: str) -> None:
        old = self.socket.state
        getattr(self.socket, trigger)()
        new = self.socket.state
        if socket_log.isEnabledFor(logging.DEBUG):
            socket_log.debug("session %s socket: %s -> %s on %s (S1)", self.short_id, old.name,
                             new.name, trigger)  # fmt: skip
        self._on_event(SocketStateChangeEvent(old, new, trigger, self.short_id))

    # ------------------------------------------------------------------ calls

    def open(
        self, info: ParticipantInfo | Any = MISSING, *, now: float
    ) -> tuple[Effect, Pending | None]:
        """Fire ``open``: the effect, and the request to carry (SEND_OPEN) or wait for (JOIN)."""
        effect = self._fire("open", info=info)
        if effect is Effect.SEND_OPEN:
            self.generation += 1
            # Its deadline starts when its frame leaves: the connect before has its own.
            request = Pending(Kind.OPEN, self.generation, (self.session.opening,), _NEVER)
            self.open_request = request
            return effect, request
        if effect is Effect.JOIN_OPEN:
            return effect, self.open_request
        return effect, None

    def update(self, name: str | None, avatar_url: str | None, *, now: float) -> Pending | None:
        """Fire ``update``: the request to send, or ``None`` when there is nothing to change."""
        if self._fire("update", name=name, avatar_url=avatar_url) is Effect.NOTHING:
            return None
        request = self._request(Kind.UPDATE, (name, avatar_url), now + self.request_timeout)
        self.update_request = request
        return request

    def refresh_token(self, token: str, *, now: float) -> Pending | None:
        """A ``token`` request for the backend (rule R16); ``None`` when not connected."""
        if self.socket.state is not W.CONNECTED or self.session.state is _S.CLOSED:
            return None
        return self._request(Kind.TOKEN, (token,), now + self.request_timeout)

    def close(self, *, now: float) -> tuple[Effect, Pending | None]:
        """Fire ``close``: abandon every request at once (R11) and make the logout request.

        Returns the effect and, for SEND_CLOSE while a socket is connected, the logout to send.
        """
        effect = self._fire("close")
        if effect is not Effect.SEND_CLOSE:
            return effect, None
        self.generation += 1
        self.reconnecting = False
        self.close_outcome = Outcome()
        self._abandon(RequestAborted("the session was closed", trigger="close", state=_S.CLOSING))
        if self.socket.state is not W.CONNECTED:
            return effect, None
        return effect, self._request(Kind.CLOSE, (), now + self.logout_timeout)

    def finish_close(self, outcome: Outcome) -> None:
        """The driver finished the close whose outcome this is: the session is CLOSED."""
        if outcome is not self.close_outcome:
            return  # an older close: the session has moved on
        self._abandon(RequestAborted("the session was closed", rule="R11", state=self.state))
        if self.session.state is _S.CLOSING:
            self._fire("closed")
        self._end_close()

    def _end_close(self) -> None:
        outcome, self.close_outcome = self.close_outcome, None
        if outcome is not None:
            outcome._resolve()

    def _request(self, kind: Kind, args: tuple[Any, ...], deadline: float) -> Pending:
        request = Pending(kind, self.generation, args, deadline)
        self._queued.append(request)
        return request

    # ------------------------------------------------------------------ frames out

    def send(self, request: Pending, serial: int, *, now: float) -> str | None:
        """The frame that puts ``request`` on connection ``serial``, or ``None`` not to send.

        ``None`` when the request is already resolved, or the connection is not the current,
        connected one (a queued request then waits for the resume, R14).
        """
        if request.done or serial != self.connection or self.socket.state is not W.CONNECTED:
            return None
        if request.generation != self.generation:  # made for an open or close since ended
            self._fail(request, RequestAborted("the session it was made for ended", rule="R11"))
            return None
        if request.id is not None:
            return None  # already on this connection
        if request.kind is Kind.OPEN:
            request.deadline = now + self.request_timeout
        else:
            if request in self._queued:
                self._queued.remove(request)
        self._last_id += 1
        request.id = self._last_id
        request.sends += 1
        self._inflight[request.id] = request
        return encode(MAKERS[request.kind](request.id, *request.args))

    def not_sent(self, request: Pending, error: SessionError) -> None:
        """The driver could not put ``request`` on the wire (cancelled, or the connect failed)."""
        self._fail(request, error)

    def resume(self, *, now: float) -> Pending | None:
        """The resume request of a reconnect attempt; ``None`` when there is nothing to resume."""
        participant = self.session.participant
        if not self.reconnecting or participant is None:
            return None
        return Pending(
            Kind.RESUME, self.generation, (participant.id,), now + self.policy.attempt_timeout
        )

    def resend(self, serial: int, *, now: float) -> list[str]:
        """After a resume: the frames of the requests that wait for a connection, in order."""
        frames = []
        for request in list(self._queued):
            frame = self.send(request, serial, now=now)
            if frame is not None:
                frames.append(frame)
        return frames

    # ------------------------------------------------------------------ frames in

    def receive(self, serial: int, message: Message, *, now: float) -> bool:
        """A decoded frame from connection ``serial``; ``True`` when it ended the session
        (``ended``: the driver then drops the connection and cancels the session's work).

        Raises :class:`RemoteProtocolError` for a frame no request can take: a reply to an id
        that was never sent or was already answered, or an ``error`` with no id. A reply of the
        wrong kind fails its request with a ``RemoteProtocolError`` instead.
        """
        if serial != self.connection:
            return False  # a frame of an older connection
        if isinstance(message, SessionEnded):
            return self._ended(message.reason)
        rid: int | None = getattr(message, "id", None)
        if rid is None:
            if isinstance(message, ErrorReply):
                raise RemoteProtocolError(
                    f"the backend reported an error: {message.code}: {message.message[:200]}",
                    rule="P5",
                    code=message.code,
                )
            raise RemoteProtocolError(f"a {message.TYPE!r} frame without an id", rule="P4")
        if rid not in self._inflight:
            seen = "was never sent" if rid > self._last_id else "is not waiting for a reply"
            raise RemoteProtocolError(
                f"a {message.TYPE!r} reply to request {rid}, which {seen}", rule="P4"
            )
        request = self._inflight.pop(rid)
        if request is None:
            return False  # the reply to a request abandoned meanwhile
        request.id = None
        kind = request.kind
        if isinstance(message, ErrorReply):
            self._fail(request, error_from_reply(message, trigger=kind.trigger, state=self.state))
        elif type(message) is not kind.reply:
            self._fail(
                request,
                RemoteProtocolError(
                    f"the backend answered {kind.trigger!r} (request {rid}) with "
                    f"{message.TYPE!r}, not {kind.reply.TYPE!r}",
                    rule="P4",
                    trigger=kind.trigger,
                    state=self.state,
                ),
            )
        else:
            self._succeed(request, message)
        return False

    @property
    def state(self) -> SessionState:
        return self.session.state

    def _succeed(self, request: Pending, message: Message) -> None:
        # The caller checked that the message is the reply kind of the request.
        kind = request.kind
        try:
            if kind is Kind.OPEN and request is self.open_request:
                participant = cast(Opened, message).participant
                self._fire("opened", participant=participant)
                self.open_request = None
                request._resolve(participant)
            elif kind is Kind.UPDATE and request is self.update_request:
                participant = cast(Updated, message).participant
                self._fire("updated", participant=participant)
                self.update_request = None
                request._resolve(participant)
            elif kind is Kind.RESUME:
                participant = cast(Resumed, message).participant
                self._fire("resumed", participant=participant)
                self.reconnecting = False
                request._resolve(participant)
            else:
                request._resolve(message)
        except SessionError as refused:  # the machine refused what the backend said (R18)
            self._fail(request, refused)

    def _fail(self, request: Pending, error: SessionError) -> None:
        if request.done:
            return
        if request.id is not None:
            self._inflight[request.id] = None
            request.id = None
        if request in self._queued:
            self._queued.remove(request)
        error.locate(request.kind.trigger, self.state)
        if request is self.open_request:
            self.open_request = None
            if self.state is _S.OPENING:
                self._fire("open_failed")
        elif request is self.update_request:
            self.update_request = None
            if self.session.updating is not None and self.session.is_open():
                self._fire("update_failed")
        request._resolve(error=error)

    def _abandon(self, error: SessionError) -> None:
        """Fail every request at once, in data (R11); their replies, if any, are ignored."""
        requests = [r for r in self._inflight.values() if r is not None]
        requests += self._queued
        if self.open_request is not None:
            requests.append(self.open_request)
        self._inflight = dict.fromkeys(self._inflight)
        self._queued.clear()
        self.open_request = self.update_request = None
        for request in requests:
            request.id = None
            request._resolve(error=error)

    def _ended(self, reason: str) -> bool:
        """The backend ended the session (R16 token expiry, R17 switched)."""
        participant = self.session.participant
        error: SessionError
        if reason == "switched":
            if self.session.state is not _S.CLOSED:
                self._on_event(
                    SessionSwitchedEvent(participant.id if participant else None, self.short_id)
                )
            error = SessionSwitched(
                "the same external ID opened a session elsewhere", state=self.state
            )
        elif reason == "token_expired":
            error = TokenExpired("the access token expired", rule="R16", state=self.state)
        else:
            error = BackendError(f"the backend ended the session ({reason[:64]})", state=self.state)
        return self.lose(reason, error)

    def lose(self, reason: str, error: SessionError) -> bool:
        """End the session without ``close()`` (``lost``); ``True`` when there was one to end.

        The driver then drops the connection.
        """
        if self.session.state is _S.CLOSED:
            return False
        self.reconnecting = False
        self._abandon(error)
        self._fire("lost")
        self._end_close()
        self._on_event(SessionLostEvent(reason, error, self.short_id))
        return True

    # ------------------------------------------------------------------ the connection

    def connecting(self) -> int:
        """The driver starts a connection: its serial. Raises unless the socket is CLOSED."""
        self._move_socket("connect")
        self.connection += 1
        self._inflight.clear()
        return self.connection

    def connected(self, serial: int, *, now: float) -> None:
        if serial == self.connection and self.socket.state is W.CONNECTING:
            self._connected_at = now
            self.ponged(now=now)
            self._move_socket("connected")

    def connect_failed(self, serial: int) -> None:
        if serial == self.connection and self.socket.state is W.CONNECTING:
            self._move_socket("connect_failed")

    def closing(self, serial: int) -> bool:
        """The driver closes connection ``serial`` on purpose; ``False`` if it is not ours."""
        if serial != self.connection or self.socket.state is not W.CONNECTED:
            return False
        self._move_socket("close")
        return True

    def closed(self, serial: int) -> None:
        if serial == self.connection and self.socket.state is W.CLOSING:
            self._move_socket("closed")

    def dropped(self, serial: int, error: SessionError, *, now: float) -> bool:
        """Connection ``serial`` ended without our asking. ``True``: start reconnecting (R14)."""
        if serial != self.connection or self.socket.state not in (W.CONNECTED, W.CLOSING):
            return False
        self._move_socket("dropped")
        if now - self._connected_at >= self.policy.max_delay:
            self._backoff = self.policy.initial_delay  # it had been stable: start afresh
        state = self.session.state
        if state is _S.OPENING or state is _S.CLOSING:
            # A loss fails the open in flight, or completes the close (R14, R11).
            self._fire("connection_lost")
            self._abandon(error.locate("open" if state is _S.OPENING else "close", state))
            self._end_close()
            return False
        self._fire("connection_lost")
        if state is _S.CLOSED:
            return False
        self._requeue(error)
        if self.policy.give_up_after <= 0:
            self.lose("connection_lost", error)
            return False
        if not self.reconnecting:
            self.reconnecting = True
            self._give_up_at = now + self.policy.give_up_after
        return True

    def _requeue(self, error: SessionError) -> None:
        """Requests whose connection ended before their reply wait to be sent again (R14)."""
        inflight = sorted((k, r) for k, r in self._inflight.items() if r is not None)
        self._inflight.clear()
        again = []
        for _, request in inflight:
            request.id = None
            if request.kind is Kind.RESUME:
                request._resolve(error=error)
            elif request.sends >= self.policy.max_sends:
                self._fail(
                    request,
                    ConnectionLost(
                        f"the connection ended before the reply {request.sends} times; "
                        f"the last time: {error.reason}",
                        rule="R14",
                    ),
                )
            else:
                again.append(request)
        self._queued[:0] = again

    # ------------------------------------------------------------------ time

    def reconnect_delay(self, *, now: float) -> float | None:
        """How long to wait before the next reconnect attempt; ``None``: do not try (R14)."""
        if not self.reconnecting or not self.session.is_open():
            return None
        delay = self._backoff
        if now + delay >= self._give_up_at:
            return None
        self._backoff = min(delay * self.policy.factor, self.policy.max_delay)
        return delay

    def reconnect_failed(self, error: SessionError, *, final: bool, now: float) -> bool:
        """An attempt failed; ``True`` when the session was given up on (lost, R14)."""
        if not self.reconnecting:
            return False
        if final or now + self._backoff >= self._give_up_at:
            return self.lose("reconnect_failed", error)
        return False

    def next_deadline(self) -> float:
        """When the driver must next call :meth:`due`: the earliest deadline of a request in
        flight, or the next keepalive ping (``inf`` when there is neither)."""
        deadline = self._ping_at
        for request in self._inflight.values():
            if request is not None and request.deadline < deadline:
                deadline = request.deadline
        for request in self._queued:
            if request.deadline < deadline:
                deadline = request.deadline
        return deadline

    def due(self, *, now: float) -> tuple[bool, bool]:
        """What is due at ``now``: ``(drop, ping)``. ``drop``: a request on the wire timed out
        (see :meth:`expire`); ``ping``: the connection is to be pinged (R15), then
        :meth:`ponged` said when the pong came."""
        if self.expire(now=now):
            return True, False
        if now >= self._ping_at:
            self._ping_at = _NEVER
            return False, True
        return False, False

    def ponged(self, *, now: float) -> None:
        """The connection answered (or just opened): the next ping is one interval away."""
        interval = self.keepalive_interval
        self._ping_at = _NEVER if interval is None else now + interval

    def expire(self, *, now: float) -> bool:
        """Fail every request past its deadline. ``True``: one was on the wire, so the
        connection is out of step (a reply may still come) and the driver drops it."""
        late = [r for r in (*self._inflight.values(), *self._queued) if r and r.deadline <= now]
        on_wire = False
        for request in late:
            on_wire = on_wire or request.id is not None
            timeout = self.logout_timeout if request.kind is Kind.CLOSE else self.request_timeout
            self._fail(request, ConnectionLost(f"no reply within {timeout} s", rule="R14"))
        return on_wire
