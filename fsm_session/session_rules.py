"""The session machine's named predicates: selectors, guards (one written rule each), actions.

A selector returns a bool and chooses between rows of one trigger; a guard returns why its rule
of ``specs/session.md`` is broken (or ``None``) and the engine raises the guard's typed error; an
action updates the session's data once every guard passed. The table that uses them is
:data:`fsm_session.machine.SESSION_TABLE`. Also here: the argument samples with which the
exploration of transition paths fires the session's triggers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

from transitions import EventData

from fsm_session.engine import Sample, guard
from fsm_session.errors import (
    ArgumentTypeError,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    SessionAlreadyOpen,
    TransitionNotAllowed,
)
from fsm_session.models import (
    Participant,
    ParticipantInfo,
    avatar_url_problem,
    info_problem,
    name_problem,
)
from fsm_session.states import MISSING, SessionState

if TYPE_CHECKING:
    from fsm_session.machine import SessionCore


def _session(event: EventData) -> SessionCore:
    return cast("SessionCore", event.model)


def has_info(event: EventData) -> bool:
    """``open(info)`` was called with an argument (even ``None``)."""
    return event.kwargs["info"] is not MISSING


def remembers_identity(event: EventData) -> bool:
    """A previous ``open(info)`` left an identity to reopen with (rule R6)."""
    return _session(event).identity is not None


def opening_named(event: EventData) -> bool:
    """The open in flight carries a participant info, so it opens OPEN rather than GHOST."""
    return _session(event).opening is not None


def nothing_to_change(event: EventData) -> bool:
    """``update()`` with both values ``None`` changes nothing and sends nothing (rule R10)."""
    return event.kwargs["name"] is None and event.kwargs["avatar_url"] is None


def update_names_ghost(event: EventData) -> bool:
    """The accepted update gave the ghost a name, which promotes it to OPEN (rule R7)."""
    updating = _session(event).updating
    return updating is not None and updating.name is not None


def resumed_named(event: EventData) -> bool:
    """The resumed participant has a name: a ghost named while the socket was down (R7, R14)."""
    participant = event.kwargs["participant"]
    return isinstance(participant, Participant) and participant.info.name is not None


def _external_id_problem(info: ParticipantInfo, token_external_id: str | None) -> str | None:
    if info.external_id is None or info.external_id == token_external_id:
        return None
    if token_external_id is None:
        return "the participant has an external ID but the access token carries none"
    return "the participant's external ID differs from the access token's"


@guard("R2", InvalidParticipantInfo)
def info_is_valid(event: EventData) -> str | None:
    """The info is a ``ParticipantInfo`` within the limits of rule R2."""
    return info_problem(event.kwargs["info"])


@guard("R3", ExternalIdMismatch)
def external_id_matches_token(event: EventData) -> str | None:
    """The info's external ID, if any, is the access token's (rule R3)."""
    return _external_id_problem(event.kwargs["info"], _session(event).token_external_id)


@guard("R3", ExternalIdMismatch)
def remembered_external_id_matches_token(event: EventData) -> str | None:
    """The remembered identity's external ID, if any, is the access token's (rules R3, R6)."""
    core = _session(event)
    assert core.identity is not None  # selected by remembers_identity
    return _external_id_problem(core.identity, core.token_external_id)


@guard("R2", InvalidParticipantInfo)
def info_is_valid_if_given(event: EventData) -> str | None:
    """``open(info)`` while opening or open still needs a valid info; ``open()`` needs none."""
    info = event.kwargs["info"]
    return None if info is MISSING else info_problem(info)


@guard("R5", SessionAlreadyOpen)
def same_identity(event: EventData) -> str | None:
    """``open(info)`` on a session opening or open names the same info, or none (rule R5)."""
    info = event.kwargs["info"]
    core = _session(event)
    current = core.opening if core.state is SessionState.OPENING else core.identity
    if info is MISSING or info == current:
        return None
    if core.state is SessionState.GHOST:
        return "a ghost session is open; give it a name with update(name=...) or close it first"
    return "a session is already opening or open with another participant info; close it first"


@guard("R10", InvalidParticipantInfo)
def update_is_valid(event: EventData) -> str | None:
    """Given values of ``update()`` keep the limits of rule R2 (rule R10)."""
    name, avatar_url = event.kwargs["name"], event.kwargs["avatar_url"]
    problem = None if name is None else name_problem(name)
    if problem is None and avatar_url is not None:
        problem = avatar_url_problem(avatar_url)
    return problem


@guard("M1", TransitionNotAllowed)
def update_in_flight(event: EventData) -> str | None:
    """A reply to an update comes only while an update is in flight."""
    return None if _session(event).updating is not None else "no update is in flight"


@guard("M4", TransitionNotAllowed)
def no_update_in_flight(event: EventData) -> str | None:
    """One update at a time: the driver queues the next until the reply to this one."""
    if _session(event).updating is None:
        return None
    return "another update is in flight; send the next after its reply"


@guard("R18", TransitionNotAllowed)
def same_participant(event: EventData) -> str | None:
    """A resumed session is the same participant: never a second one (rule R18)."""
    participant, current = event.kwargs["participant"], _session(event).participant
    if not isinstance(participant, Participant) or current is None:
        return None  # reply_is_participant names the type error
    if participant.id == current.id:
        return None
    return "the backend resumed another participant than the one this session holds"


@guard("M2", ArgumentTypeError)
def reply_is_participant(event: EventData) -> str | None:
    """A backend reply that carries a participant carries a ``Participant``."""
    participant = event.kwargs["participant"]
    if isinstance(participant, Participant):
        return None
    return f"expected a Participant, not {type(participant).__name__}"


def begin_open(event: EventData) -> None:
    _session(event).opening = event.kwargs["info"]


def begin_reopen(event: EventData) -> None:
    _session(event).opening = _session(event).identity


def begin_ghost(event: EventData) -> None:
    _session(event).opening = None


def become_open(event: EventData) -> None:
    core = _session(event)
    core.participant = event.kwargs["participant"]
    core.identity = core.opening
    core.opening = None


def become_ghost(event: EventData) -> None:
    _session(event).participant = event.kwargs["participant"]


def forget_opening(event: EventData) -> None:
    _session(event).opening = None


def begin_update(event: EventData) -> None:
    core = _session(event)
    assert core.participant is not None  # OPEN and GHOST always have one
    current = core.participant.info
    name, avatar_url = event.kwargs["name"], event.kwargs["avatar_url"]
    core.updating = ParticipantInfo(
        name=current.name if name is None else name,
        external_id=current.external_id,
        avatar_url=current.avatar_url if avatar_url is None else avatar_url,
    )


def apply_update(event: EventData) -> None:
    core = _session(event)
    core.participant = event.kwargs["participant"]
    assert core.updating is not None  # set by begin_update
    if core.updating.name is not None:
        # A named participant's info is the remembered identity (rules R7, R10); a ghost that
        # only changed its avatar stays unremembered.
        core.identity = core.updating
    core.updating = None


def resume(event: EventData) -> None:
    _session(event).participant = event.kwargs["participant"]


def resume_named_ghost(event: EventData) -> None:
    core = _session(event)
    core.participant = event.kwargs["participant"]
    assert core.participant is not None
    core.identity = core.participant.info  # named while the socket was down (rule R7)


def forget_update(event: EventData) -> None:
    _session(event).updating = None


def forget_session(event: EventData) -> None:
    core = _session(event)
    core.participant = None
    core.opening = None
    core.updating = None


# --------------------------------------------------------------------------------------------
# Argument samples for the exploration of transition paths, in the order they are tried: among
# paths of equal length, the earlier sample wins. Backend replies are offered only while their
# request is in flight, as a backend would send them; public calls and connection losses may
# come at any time. A fixed participant ID keeps the set of configurations finite.
# --------------------------------------------------------------------------------------------

SAMPLE_INFO: Final = ParticipantInfo(name="Ada")
SAMPLE_NAME: Final = "Grace"
SAMPLE_AVATAR_URL: Final = "https://example.com/avatar.png"
SAMPLE_PARTICIPANT_ID: Final = "participant-1"
_GHOST_INFO: Final = ParticipantInfo(name=None)


def _opened_reply(core: SessionCore) -> dict[str, object]:
    info = _GHOST_INFO if core.opening is None else core.opening
    return {"participant": Participant(id=SAMPLE_PARTICIPANT_ID, info=info)}


def _updated_reply(core: SessionCore) -> dict[str, object]:
    assert core.participant is not None and core.updating is not None  # see _update_in_flight
    return {"participant": Participant(id=core.participant.id, info=core.updating)}


def _resumed_reply(core: SessionCore) -> dict[str, object]:
    assert core.participant is not None  # see _session_open
    return {"participant": core.participant}


def _resumed_named_reply(core: SessionCore) -> dict[str, object]:
    assert core.participant is not None  # see _session_open
    return {"participant": Participant(id=core.participant.id, info=ParticipantInfo(SAMPLE_NAME))}


def _session_open(core: SessionCore) -> bool:
    return core.is_open() and core.participant is not None


def _open_in_flight(core: SessionCore) -> bool:
    return core.state is SessionState.OPENING


def _update_in_flight(core: SessionCore) -> bool:
    return core.updating is not None and core.participant is not None


def _close_in_flight(core: SessionCore) -> bool:
    return core.state is SessionState.CLOSING


SESSION_SAMPLES: Final[dict[str, tuple[Sample, ...]]] = {
    "open": (Sample("open(info)", {"info": SAMPLE_INFO}), Sample("open()")),
    "opened": (Sample("opened", _opened_reply, _open_in_flight),),
    "open_failed": (Sample("open_failed", when=_open_in_flight),),
    "update": (
        Sample("update()"),
        Sample("update(name)", {"name": SAMPLE_NAME}),
        Sample("update(avatar_url)", {"avatar_url": SAMPLE_AVATAR_URL}),
    ),
    "updated": (Sample("updated", _updated_reply, _update_in_flight),),
    "update_failed": (Sample("update_failed", when=_update_in_flight),),
    "resumed": (
        Sample("resumed", _resumed_reply, _session_open),
        Sample("resumed(named)", _resumed_named_reply, _session_open),
    ),
    "close": (Sample("close"),),
    "closed": (Sample("closed", when=_close_in_flight),),
    "connection_lost": (Sample("connection_lost"),),
    "lost": (Sample("lost"),),
}
"""Per trigger, what the exploration gives it (see :func:`fsm_session.engine.transition_paths`)."""
