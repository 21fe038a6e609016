"""The session machine written as plain if/else: the baseline of ``benchmarks/core.py``.

``PlainSession`` has the fields of :class:`fsm_session.machine.SessionCore` (``state``,
``token_external_id``, ``identity``, ``opening``, ``updating``, ``participant``) and one method
per trigger. Each method branches on the state with ``if``/``elif``, calls the same checks of
``fsm_session.models``, raises the same error classes with the same rule, reason, trigger and
state, makes the same data updates and returns the same :class:`~fsm_session.machine.Effect`.
There is no table, no row object and no dispatch: this is what a careful programmer would write
by hand for these five states, and so the floor against which the table-driven core is measured.

``benchmarks/core.py`` drives this class and ``SessionCore`` through the same seeded random
calls and stops before timing anything if they ever disagree (outcome, error and its message,
state and data). When ``SESSION_TABLE`` changes, this file must follow.
"""

from __future__ import annotations

from typing import Any, NoReturn

from fsm_session.errors import (
    ArgumentTypeError,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
    TransitionNotAllowed,
)
from fsm_session.machine import MISSING, Effect, SessionState
from fsm_session.models import (
    Participant,
    ParticipantInfo,
    avatar_url_problem,
    info_problem,
    name_problem,
)

__all__ = ["PlainSession"]

CLOSED = SessionState.CLOSED
OPENING = SessionState.OPENING
OPEN = SessionState.OPEN
GHOST = SessionState.GHOST
CLOSING = SessionState.CLOSING

_NO_OPEN = "no open is in flight"
_NO_UPDATE = "no update is in flight"
_ANOTHER_INFO = "a session is already opening or open with another participant info; close it first"
_GHOST_OPEN = "a ghost session is open; give it a name with update(name=...) or close it first"


def _external_id_problem(info: ParticipantInfo, token_external_id: str | None) -> str | None:
    """Rule R3, in the words of ``fsm_session.machine``."""
    if info.external_id is None or info.external_id == token_external_id:
        return None
    if token_external_id is None:
        return "the participant has an external ID but the access token carries none"
    return "the participant's external ID differs from the access token's"


class PlainSession:
    """One session, its machine written out as if/else; see the module's docstring."""

    __slots__ = ("identity", "opening", "participant", "state", "token_external_id", "updating")

    def __init__(self, token_external_id: str | None = None) -> None:
        self.state = CLOSED
        self.token_external_id = token_external_id
        self.identity: ParticipantInfo | None = None
        self.opening: ParticipantInfo | None = None
        self.updating: ParticipantInfo | None = None
        self.participant: Participant | None = None

    def _refuse(self, error: type[SessionError], rule: str, reason: str, trigger: str) -> NoReturn:
        raise error(reason, rule=rule, trigger=trigger, state=self.state)

    def _check_participant(self, participant: object, trigger: str) -> None:
        if not isinstance(participant, Participant):
            reason = f"expected a Participant, not {type(participant).__name__}"
            self._refuse(ArgumentTypeError, "M2", reason, trigger)

    def _check_same_participant(self, participant: Participant, trigger: str) -> None:
        current = self.participant
        if current is not None and participant.id != current.id:
            reason = "the backend resumed another participant than the one this session holds"
            self._refuse(TransitionNotAllowed, "R18", reason, trigger)

    # Public calls.

    def open(self, info: Any = MISSING) -> Effect:
        state = self.state
        if state is CLOSED:
            if info is not MISSING:
                problem = info_problem(info)
                if problem is not None:
                    self._refuse(InvalidParticipantInfo, "R2", problem, "open")
                problem = _external_id_problem(info, self.token_external_id)
                if problem is not None:
                    self._refuse(ExternalIdMismatch, "R3", problem, "open")
                self.state = OPENING
                self.opening = info
            elif self.identity is not None:
                problem = _external_id_problem(self.identity, self.token_external_id)
                if problem is not None:
                    self._refuse(ExternalIdMismatch, "R3", problem, "open")
                self.state = OPENING
                self.opening = self.identity
            else:
                self.state = OPENING
                self.opening = None
            return Effect.SEND_OPEN
        if state is CLOSING:
            self._refuse(TransitionNotAllowed, "R11", "the session is closing", "open")
        if info is not MISSING:
            problem = info_problem(info)
            if problem is not None:
                self._refuse(InvalidParticipantInfo, "R2", problem, "open")
            current = self.opening if state is OPENING else self.identity
            if info != current:
                reason = _GHOST_OPEN if state is GHOST else _ANOTHER_INFO
                self._refuse(SessionAlreadyOpen, "R5", reason, "open")
        return Effect.JOIN_OPEN if state is OPENING else Effect.RETURN_PARTICIPANT

    def update(self, name: Any = None, avatar_url: Any = None) -> Effect:
        state = self.state
        if state is not OPEN and state is not GHOST:
            reason = "update() needs an open session (OPEN or GHOST)"
            self._refuse(SessionNotOpen, "R10", reason, "update")
        if name is None and avatar_url is None:
            return Effect.NOTHING
        if self.updating is not None:
            reason = "another update is in flight; send the next after its reply"
            self._refuse(TransitionNotAllowed, "M4", reason, "update")
        problem = None if name is None else name_problem(name)
        if problem is None and avatar_url is not None:
            problem = avatar_url_problem(avatar_url)
        if problem is not None:
            self._refuse(InvalidParticipantInfo, "R10", problem, "update")
        current = self.participant.info  # type: ignore[union-attr]  # OPEN and GHOST have one
        self.updating = ParticipantInfo(
            name=current.name if name is None else name,
            external_id=current.external_id,
            avatar_url=current.avatar_url if avatar_url is None else avatar_url,
        )
        return Effect.SEND_UPDATE

    def close(self) -> Effect:
        state = self.state
        if state is CLOSED:
            return Effect.NOTHING
        if state is CLOSING:
            return Effect.JOIN_CLOSE
        self.state = CLOSING
        if state is OPENING:
            self.opening = None
        else:
            self.updating = None
        return Effect.SEND_CLOSE

    # Backend replies and what the driver observes.

    def opened(self, participant: Any) -> Effect:
        if self.state is not OPENING:
            self._refuse(TransitionNotAllowed, "M1", _NO_OPEN, "opened")
        self._check_participant(participant, "opened")
        self.participant = participant
        if self.opening is not None:
            self.state = OPEN
            self.identity = self.opening
            self.opening = None
        else:
            self.state = GHOST
        return Effect.NOTHING

    def open_failed(self) -> Effect:
        if self.state is not OPENING:
            self._refuse(TransitionNotAllowed, "M1", _NO_OPEN, "open_failed")
        self.state = CLOSED
        self.opening = None
        return Effect.NOTHING

    def updated(self, participant: Any) -> Effect:
        state = self.state
        updating = self.updating
        if state is GHOST and updating is not None and updating.name is not None:
            self._check_participant(participant, "updated")
            self.state = OPEN  # a ghost given a name (R7)
        elif state is OPEN or state is GHOST:
            if updating is None:
                self._refuse(TransitionNotAllowed, "M1", _NO_UPDATE, "updated")
            self._check_participant(participant, "updated")
        else:
            self._refuse(TransitionNotAllowed, "M1", _NO_UPDATE, "updated")
        self.participant = participant
        if updating.name is not None:  # type: ignore[union-attr]  # checked above
            self.identity = updating
        self.updating = None
        return Effect.NOTHING

    def update_failed(self) -> Effect:
        state = self.state
        if (state is not OPEN and state is not GHOST) or self.updating is None:
            self._refuse(TransitionNotAllowed, "M1", _NO_UPDATE, "update_failed")
        self.updating = None
        return Effect.NOTHING

    def resumed(self, participant: Any) -> Effect:
        state = self.state
        if state is not OPEN and state is not GHOST:
            reason = "only an open session can be resumed"
            self._refuse(TransitionNotAllowed, "M1", reason, "resumed")
        self._check_participant(participant, "resumed")
        self._check_same_participant(participant, "resumed")
        self.participant = participant
        if state is GHOST and participant.info.name is not None:
            self.state = OPEN  # named while the socket was down (R7)
            self.identity = participant.info
        return Effect.NOTHING

    def closed(self) -> Effect:
        if self.state is not CLOSING:
            self._refuse(TransitionNotAllowed, "M1", "no close is in flight", "closed")
        self._forget_session()
        return Effect.NOTHING

    def connection_lost(self) -> Effect:
        state = self.state
        if state is OPENING:
            self.state = CLOSED
            self.opening = None
        elif state is CLOSING:
            self._forget_session()
        return Effect.NOTHING

    def lost(self) -> Effect:
        state = self.state
        if state is CLOSED:
            self._refuse(TransitionNotAllowed, "M1", "there is no session to lose", "lost")
        if state is OPENING:
            self.state = CLOSED
            self.opening = None
        else:
            self._forget_session()
        return Effect.NOTHING

    def _forget_session(self) -> None:
        self.state = CLOSED
        self.participant = None
        self.opening = None
        self.updating = None
