"""The session and socket state machines, declared on :mod:`fsm_session.engine`.

Everything that affects a state or a transition lives in this module and the named predicates of
:mod:`fsm_session.session_rules`; nothing else may change a state. The machines are data: each
is a table with one key per state (even when its row is empty), read top to bottom. A row says:
on this trigger, when these selectors hold, after these guards pass, go to this state, run these
actions, and ask the driver for this effect (:class:`~fsm_session.states.Effect`). A row without
an effect asks for ``Effect.NOTHING``.

This module does no I/O: it imports no trio, opens no socket and reads no clock. Connection loss,
backend replies and timeouts come in as triggers. Both tables are checked and built when this
module loads (:func:`fsm_session.engine.declare`), on one shared ``transitions.Machine`` each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from fsm_session.engine import (
    Core,
    Guard,
    InvalidDefinition,
    On,
    Refusal,
    TriggerKind,
    check_definition,
    declare,
    guard,
)
from fsm_session.errors import ArgumentTypeError, SessionNotOpen, TransitionNotAllowed
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.session_rules import (
    SESSION_SAMPLES,
    apply_update,
    become_ghost,
    become_open,
    begin_ghost,
    begin_open,
    begin_reopen,
    begin_update,
    external_id_matches_token,
    forget_opening,
    forget_session,
    forget_update,
    has_info,
    info_is_valid,
    info_is_valid_if_given,
    no_update_in_flight,
    nothing_to_change,
    opening_named,
    remembered_external_id_matches_token,
    remembers_identity,
    reply_is_participant,
    resume,
    resume_named_ghost,
    resumed_named,
    same_identity,
    same_participant,
    update_in_flight,
    update_is_valid,
    update_names_ghost,
)
from fsm_session.states import MISSING, Effect, SessionState, WebSocketState, _Missing

__all__ = [
    "MISSING",
    "SESSION_DEFINITION",
    "SESSION_TABLE",
    "SOCKET_DEFINITION",
    "SOCKET_TABLE",
    "Effect",
    "Guard",
    "InvalidDefinition",
    "On",
    "Refusal",
    "SessionCore",
    "SessionState",
    "SocketCore",
    "WebSocketState",
    "check_definition",
    "guard",
]

S = SessionState

SESSION_TABLE: Final[Mapping[SessionState, tuple[On, ...]]] = {
    S.CLOSED: (
        On("open", S.OPENING, when=(has_info,), guards=(info_is_valid, external_id_matches_token),
           do=(begin_open,), effect=Effect.SEND_OPEN, rule="R2 R3 R4"),
        On("open", S.OPENING, when=(remembers_identity,),
           guards=(remembered_external_id_matches_token,),
           do=(begin_reopen,), effect=Effect.SEND_OPEN, rule="R6"),
        On("open", S.OPENING, do=(begin_ghost,), effect=Effect.SEND_OPEN, rule="R6"),
        On("close", rule="R11"),
        On("connection_lost", rule="R14"),
    ),
    S.OPENING: (
        On("open", guards=(info_is_valid_if_given, same_identity), effect=Effect.JOIN_OPEN,
           rule="R5"),
        On("opened", S.OPEN, when=(opening_named,), guards=(reply_is_participant,),
           do=(become_open,), rule="R4"),
        On("opened", S.GHOST, guards=(reply_is_participant,), do=(become_ghost,), rule="R6"),
        On("open_failed", S.CLOSED, do=(forget_opening,), rule="R13"),
        On("close", S.CLOSING, do=(forget_opening,), effect=Effect.SEND_CLOSE, rule="R11"),
        On("connection_lost", S.CLOSED, do=(forget_opening,), rule="R14"),
        On("lost", S.CLOSED, do=(forget_opening,), rule="R14"),
    ),
    S.OPEN: (
        On("open", guards=(info_is_valid_if_given, same_identity), effect=Effect.RETURN_PARTICIPANT,
           rule="R5"),
        On("update", when=(nothing_to_change,), rule="R10"),
        On("update", guards=(no_update_in_flight, update_is_valid), do=(begin_update,),
           effect=Effect.SEND_UPDATE, rule="R10"),
        On("updated", guards=(update_in_flight, reply_is_participant), do=(apply_update,),
           rule="R10"),
        On("update_failed", guards=(update_in_flight,), do=(forget_update,), rule="R13"),
        On("resumed", guards=(reply_is_participant, same_participant), do=(resume,),
           rule="R14 R18"),
        On("close", S.CLOSING, do=(forget_update,), effect=Effect.SEND_CLOSE, rule="R11"),
        On("connection_lost", rule="R14"),
        On("lost", S.CLOSED, do=(forget_session,), rule="R14"),
    ),
    S.GHOST: (
        On("open", guards=(info_is_valid_if_given, same_identity), effect=Effect.RETURN_PARTICIPANT,
           rule="R5 R6"),
        On("update", when=(nothing_to_change,), rule="R10"),
        On("update", guards=(no_update_in_flight, update_is_valid), do=(begin_update,),
           effect=Effect.SEND_UPDATE, rule="R10"),
        On("updated", S.OPEN, when=(update_names_ghost,), guards=(reply_is_participant,),
           do=(apply_update,), rule="R7"),
        On("updated", guards=(update_in_flight, reply_is_participant), do=(apply_update,),
           rule="R10"),
        On("update_failed", guards=(update_in_flight,), do=(forget_update,), rule="R13"),
        On("resumed", S.OPEN, when=(resumed_named,),
           guards=(reply_is_participant, same_participant),
           do=(resume_named_ghost,), rule="R7 R14 R18"),
        On("resumed", guards=(reply_is_participant, same_participant), do=(resume,),
           rule="R14 R18"),
        On("close", S.CLOSING, do=(forget_update,), effect=Effect.SEND_CLOSE, rule="R11"),
        On("connection_lost", rule="R14"),
        On("lost", S.CLOSED, do=(forget_session,), rule="R14"),
    ),
    S.CLOSING: (
        On("close", effect=Effect.JOIN_CLOSE, rule="R11"),
        On("closed", S.CLOSED, do=(forget_session,), rule="R11"),
        On("connection_lost", S.CLOSED, do=(forget_session,), rule="R11"),
        On("lost", S.CLOSED, do=(forget_session,), rule="R11"),
    ),
}  # fmt: skip

SESSION_REFUSALS: Final[Mapping[str, Refusal]] = {
    "open": Refusal(TransitionNotAllowed, "R11", "the session is closing"),
    "update": Refusal(SessionNotOpen, "R10", "update() needs an open session (OPEN or GHOST)"),
    "opened": Refusal(TransitionNotAllowed, "M1", "no open is in flight"),
    "open_failed": Refusal(TransitionNotAllowed, "M1", "no open is in flight"),
    "updated": Refusal(TransitionNotAllowed, "M1", "no update is in flight"),
    "update_failed": Refusal(TransitionNotAllowed, "M1", "no update is in flight"),
    "resumed": Refusal(TransitionNotAllowed, "M1", "only an open session can be resumed"),
    "closed": Refusal(TransitionNotAllowed, "M1", "no close is in flight"),
    "lost": Refusal(TransitionNotAllowed, "M1", "there is no session to lose"),
}  # fmt: skip

W = WebSocketState

SOCKET_TABLE: Final[Mapping[WebSocketState, tuple[On, ...]]] = {
    W.CLOSED: (
        On("connect", W.CONNECTING, rule="S1"),
    ),
    W.CONNECTING: (
        On("connected", W.CONNECTED, rule="S1"),
        On("connect_failed", W.CLOSED, rule="S1"),
    ),
    W.CONNECTED: (
        On("close", W.CLOSING, rule="S1"),
        On("dropped", W.CLOSED, rule="S1"),
    ),
    W.CLOSING: (
        On("closed", W.CLOSED, rule="S1"),
        On("dropped", W.CLOSED, rule="S1"),
    ),
}  # fmt: skip

_SOCKET_REFUSAL_REASON = "the socket cannot make this move from its state"
SOCKET_REFUSALS: Final[Mapping[str, Refusal]] = {
    trigger: Refusal(TransitionNotAllowed, "S1", _SOCKET_REFUSAL_REASON)
    for trigger in ("connect", "connected", "connect_failed", "close", "dropped", "closed")
}


class _Core(Core):
    __slots__ = ()

    if TYPE_CHECKING:  # the engine's fire hands back what the rows say: an Effect here

        def _fire(self, trigger: str, **kwargs: object) -> Effect: ...


class SessionCore(_Core):
    """One session's state and data, driven by the shared session machine.

    Each method fires the trigger of the same name. It returns the :class:`Effect` the driver
    must carry out, or raises the typed error of the broken rule, leaving everything unchanged.
    """

    __slots__ = ("identity", "opening", "participant", "token_external_id", "updating")

    def __init__(self, token_external_id: str | None = None) -> None:
        self.state: SessionState = SessionState.CLOSED
        self.last = None
        self.token_external_id = token_external_id
        """The external ID of the current access token, which rule R3 compares against."""
        self.identity: ParticipantInfo | None = None
        """The remembered identity that ``open()`` reopens with (rules R4, R6, R7)."""
        self.opening: ParticipantInfo | None = None
        """The info of the open in flight (``None`` for a ghost)."""
        self.updating: ParticipantInfo | None = None
        """What the update in flight turns the participant into."""
        self.participant: Participant | None = None
        """The participant the backend assigned, from OPEN or GHOST until CLOSED."""

    def __repr__(self) -> str:
        return f"<SessionCore {self.state.name} participant={self.participant!r}>"

    # Public calls.
    def open(self, info: ParticipantInfo | _Missing | None = MISSING) -> Effect:
        return self._fire("open", info=info)

    def update(self, name: str | None = None, avatar_url: str | None = None) -> Effect:
        return self._fire("update", name=name, avatar_url=avatar_url)

    def close(self) -> Effect:
        return self._fire("close")

    # Backend replies and what the driver observes.
    def opened(self, participant: Participant) -> Effect:
        return self._fire("opened", participant=participant)

    def open_failed(self) -> Effect:
        return self._fire("open_failed")

    def updated(self, participant: Participant) -> Effect:
        return self._fire("updated", participant=participant)

    def resumed(self, participant: Participant) -> Effect:
        return self._fire("resumed", participant=participant)

    def update_failed(self) -> Effect:
        return self._fire("update_failed")

    def closed(self) -> Effect:
        return self._fire("closed")

    def connection_lost(self) -> Effect:
        return self._fire("connection_lost")

    def lost(self) -> Effect:
        return self._fire("lost")

    # Queries.
    def is_open(self) -> bool:
        """True exactly in OPEN and GHOST (rule R8)."""
        return self.state is SessionState.OPEN or self.state is SessionState.GHOST

    def is_local_participant(self, participant: Participant) -> bool:
        """True exactly when a session is open and ``participant`` is ours (rule R9)."""
        if not isinstance(participant, Participant):
            raise ArgumentTypeError(
                f"expected a Participant, not {type(participant).__name__}",
                rule="R9",
                trigger="is_local_participant",
                state=self.state,
            )
        return (
            self.is_open()
            and self.participant is not None
            and participant.id == self.participant.id
        )


class SocketCore(_Core):
    """The socket's own machine: which of the four WebSocket states it is in."""

    __slots__ = ()

    def __init__(self) -> None:
        self.state: WebSocketState = WebSocketState.CLOSED
        self.last = None

    def __repr__(self) -> str:
        return f"<SocketCore {self.state.name}>"

    def connect(self) -> Effect:
        return self._fire("connect")

    def connected(self) -> Effect:
        return self._fire("connected")

    def connect_failed(self) -> Effect:
        return self._fire("connect_failed")

    def close(self) -> Effect:
        return self._fire("close")

    def dropped(self) -> Effect:
        return self._fire("dropped")

    def closed(self) -> Effect:
        return self._fire("closed")


SESSION_KINDS: Final = {
    **{t: TriggerKind.REPLY for t in ("opened", "open_failed", "updated", "update_failed")},
    **{t: TriggerKind.REPLY for t in ("resumed", "closed")},
    "connection_lost": TriggerKind.EVENT,
    "lost": TriggerKind.EVENT,
}
"""Who fires each session trigger; the rest are public calls."""
SOCKET_KINDS: Final = {
    "connected": TriggerKind.REPLY,
    "connect_failed": TriggerKind.REPLY,
    "closed": TriggerKind.REPLY,
    "dropped": TriggerKind.EVENT,
}
"""Who fires each socket trigger: the driver calls ``connect`` and ``close``."""

SESSION_DEFINITION: Final = declare(
    "session", SessionCore, SESSION_TABLE, initial=SessionState.CLOSED,
    refusals=SESSION_REFUSALS, kinds=SESSION_KINDS, samples=SESSION_SAMPLES,
    no_effect=Effect.NOTHING,
)  # fmt: skip
SOCKET_DEFINITION: Final = declare(
    "socket", SocketCore, SOCKET_TABLE, initial=WebSocketState.CLOSED,
    refusals=SOCKET_REFUSALS, kinds=SOCKET_KINDS, no_effect=Effect.NOTHING,
)  # fmt: skip
SESSION_MACHINE: Final = SESSION_DEFINITION.machine
SOCKET_MACHINE: Final = SOCKET_DEFINITION.machine
