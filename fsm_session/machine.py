"""The session and socket state machines.

Everything that affects a state or a transition lives in this module; nothing else may change a
state. The machines are data: each is a table with one key per state (even when its row is
empty), read top to bottom. A row says: on this trigger, when these selectors hold, after these
guards pass, go to this state, run these actions, and ask the driver for this effect.

* Selectors (``when``) choose between rows of the same trigger; they return ``True`` or ``False``.
* Guards (``guards``) enforce a written rule of ``specs/session.md``; a broken rule raises the
  typed error that names the rule, the trigger and the state. Guards run before anything changes,
  so a refused trigger leaves the state as it was and asks for no I/O (rule R13).
* Actions (``do``) update the session's data; they run only after every guard passed.
* The effect tells the trio driver what I/O the transition needs. This module does none itself:
  it imports no trio, opens no socket and reads no clock. Connection loss, backend replies and
  timeouts come in as triggers.

Both tables are handed to one shared :class:`transitions.Machine` each, built once when this
module loads. Sessions are plain objects with ``__slots__`` whose ``state`` attribute the shared
machine reads and writes: ``transitions`` costs 18-34 KB and 70-140 us per ``Machine`` and its
``add_model`` is quadratic, so one machine per session would not scale. The definition is checked
at load time (:func:`check_definition`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, NamedTuple, cast

from transitions import EventData, Machine
from transitions.core import Condition, Event, State, Transition

from fsm_session.errors import (
    ArgumentTypeError,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
    TransitionNotAllowed,
)
from fsm_session.models import (
    Participant,
    ParticipantInfo,
    avatar_url_problem,
    info_problem,
    name_problem,
)

__all__ = [
    "MISSING",
    "SESSION_TABLE",
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
]


class SessionState(Enum):
    """The states of a session. CLOSED is the initial state (rule R1)."""

    CLOSED = "CLOSED"
    OPENING = "OPENING"
    OPEN = "OPEN"
    GHOST = "GHOST"
    CLOSING = "CLOSING"


class WebSocketState(Enum):
    """The states of the socket beneath a session, published as ``SocketStateChangeEvent``."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class Effect(Enum):
    """The I/O a transition asks of the driver."""

    NOTHING = "nothing"
    """Nothing to send: the call is already satisfied, or the input only changed data."""
    SEND_OPEN = "send_open"
    """Connect if needed, then send an open request for ``core.opening`` (``None``: a ghost)."""
    JOIN_OPEN = "join_open"
    """An open is in flight: wait for its outcome instead of sending another (rule R5)."""
    RETURN_PARTICIPANT = "return_participant"
    """The session is already open as asked: answer with ``core.participant`` (rule R5)."""
    SEND_UPDATE = "send_update"
    """Send an update request that turns the participant into ``core.updating``."""
    SEND_CLOSE = "send_close"
    """Abandon requests in flight, log out and close the socket (rule R11)."""
    JOIN_CLOSE = "join_close"
    """A close is in flight: wait for it to finish (rule R11)."""


class _Missing(Enum):
    MISSING = "MISSING"


MISSING: Final = _Missing.MISSING
"""Stands for an argument that was not given at all, as distinct from ``None``."""


class InvalidDefinition(Exception):
    """A state machine table breaks a structural rule; raised when this module loads."""


# --------------------------------------------------------------------------------------------
# Named predicates. A selector returns a bool; a guard raises the error of the rule it enforces.
# --------------------------------------------------------------------------------------------

Selector = Callable[[EventData], bool]
Action = Callable[[EventData], None]


class Guard:
    """A named predicate that enforces one written rule.

    ``check`` returns why the rule is broken, or ``None``. Called by the machine, the guard
    raises ``error(reason, rule=..., trigger=..., state=...)`` or returns ``True``.
    """

    __slots__ = ("__name__", "check", "error", "rule")

    def __init__(
        self, rule: str, error: type[SessionError], check: Callable[[EventData], str | None]
    ) -> None:
        self.rule = rule
        self.error = error
        self.check = check
        self.__name__ = check.__name__

    def __call__(self, event: EventData) -> bool:
        reason = self.check(event)
        if reason is not None:
            raise self.error(
                reason, rule=self.rule, trigger=event.event.name, state=cast(Any, event.model).state
            )
        return True

    def __repr__(self) -> str:
        return f"<guard {self.__name__} ({self.rule})>"


def guard(
    rule: str, error: type[SessionError]
) -> Callable[[Callable[[EventData], str | None]], Guard]:
    """Declare a guard for ``rule`` that raises ``error``."""

    def wrap(check: Callable[[EventData], str | None]) -> Guard:
        return Guard(rule, error, check)

    return wrap


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
# The tables.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class On:
    """One row of a table: what happens on ``trigger`` in the state whose row this is.

    Rows compare by identity: two states may hold rows that read alike, and ``core.last``
    must name the one that was taken.
    """

    trigger: str
    dest: Enum | None = None
    """The next state; ``None`` stays in the same state (an internal transition)."""
    when: tuple[Selector, ...] = ()
    guards: tuple[Guard, ...] = ()
    do: tuple[Action, ...] = ()
    effect: Effect = Effect.NOTHING
    rule: str = ""
    """The rule(s) this row implements, as written in ``specs/session.md``."""


class Refusal(NamedTuple):
    """How a trigger is refused in a state that has no row for it."""

    error: type[TransitionNotAllowed]
    rule: str
    reason: str


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


# --------------------------------------------------------------------------------------------
# Checking and building.
# --------------------------------------------------------------------------------------------


def check_definition(
    table: Mapping[Any, tuple[On, ...]],
    initial: Enum,
    refusals: Mapping[str, Refusal],
    handler: type,
) -> None:
    """Raise :class:`InvalidDefinition` unless the table is sound.

    Every state is a key; every state is reachable from the initial one and the initial state
    from every state; every trigger has a handler method on ``handler`` and, where some state has
    no row for it, a refusal; no row is shadowed by an unconditional row before it.
    """
    states = set(type(initial))
    if set(table) != states:
        raise InvalidDefinition(f"the table's keys {set(table)} are not the states {states}")
    edges: dict[Enum, set[Enum]] = {state: set() for state in states}
    triggers: set[str] = set()
    for source, rows in table.items():
        open_ended: set[str] = set()
        for row in rows:
            if row.trigger in open_ended:
                raise InvalidDefinition(
                    f"{source.name}: a row on {row.trigger!r} follows one that always applies"
                )
            if not row.when:
                open_ended.add(row.trigger)
            if row.dest is not None and row.dest not in states:
                raise InvalidDefinition(f"{source.name}: {row.dest!r} is not a state")
            edges[source].add(source if row.dest is None else row.dest)
            triggers.add(row.trigger)
    for trigger in sorted(triggers):
        if not callable(getattr(handler, trigger, None)):
            raise InvalidDefinition(f"trigger {trigger!r} has no handler on {handler.__name__}")
        everywhere = all(any(r.trigger == trigger for r in table[s]) for s in states)
        if not everywhere and trigger not in refusals:
            raise InvalidDefinition(
                f"trigger {trigger!r} is missing from some states but has no refusal"
            )
    unknown = set(refusals) - triggers
    if unknown:
        raise InvalidDefinition(f"refusals name triggers no row uses: {sorted(unknown)}")

    def reach(start: Enum, graph: Mapping[Enum, set[Enum]]) -> set[Enum]:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in graph[todo.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    unreachable = states - reach(initial, edges)
    if unreachable:
        raise InvalidDefinition(
            f"states unreachable from {initial.name}: {sorted(s.name for s in unreachable)}"
        )
    backwards: dict[Enum, set[Enum]] = {state: set() for state in states}
    for source, targets in edges.items():
        for target in targets:
            backwards[target].add(source)
    stuck = states - reach(initial, backwards)
    if stuck:
        raise InvalidDefinition(
            f"{initial.name} is unreachable from: {sorted(s.name for s in stuck)}"
        )


def _record_row(event: EventData) -> None:
    cast(Any, event.model).last = cast(Any, event.transition).row


# transitions logs every step of a trigger (a dozen DEBUG and INFO calls, each a method call even
# when nothing is printed), finds states by name through Enum and State properties, and walks
# every callback list, empty or not: about 60% of a guarded trigger (see BENCHMARKS.md). The
# subclasses below keep transitions as the engine (its Machine builds and holds the states,
# events, transitions and conditions) and take a short path through them for what our tables
# use: conditions, ``after`` callbacks and ``after_state_change``. Anything else (a queued
# machine, prepare/before/enter/exit/final/exception/finalize callbacks, or someone listening
# to transitions' log) goes through transitions' own code, unchanged.
_TRANSITIONS_LOG = logging.getLogger("transitions.core")
# transitions logs every step of every trigger at DEBUG and INFO: quiet unless the application
# set a level on it itself (then its records, and its slower path, are back).
if logging.getLogger("transitions").level == logging.NOTSET:
    logging.getLogger("transitions").setLevel(logging.WARNING)


def _call_all(machine: Any, funcs: list[Any], event_data: EventData) -> None:
    for func in funcs:
        machine.callback(func, event_data)


class _Condition(Condition):
    def check(self, event_data: EventData) -> bool:
        func = self.func
        if isinstance(func, str) or not event_data.machine.send_event:
            return super().check(event_data)
        return bool(func(event_data) == self.target)


class _Transition(Transition):
    condition_cls = _Condition

    def run(self, event_data: EventData) -> bool:
        """``execute``, without its log lines, when only conditions and after callbacks are set."""
        machine = event_data.machine
        if self.prepare or self.before or machine.before_state_change:
            return self.execute(event_data)
        dest = None
        if self.dest:
            source, dest = machine.states[self.source], machine.states[self.dest]
            if source.on_exit or dest.on_enter or dest.final:
                return self.execute(event_data)
        for condition in self.conditions:
            if not condition.check(event_data):
                return False
        if dest is not None:
            setattr(event_data.model, machine.model_attribute, dest.value)
            event_data.state = dest
        _call_all(machine, self.after, event_data)
        _call_all(machine, machine.after_state_change, event_data)
        return True


class _Event(Event):
    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        machine = cast(_Machine, self.machine)
        if (
            machine.has_queue
            or machine.prepare_event
            or machine.finalize_event
            or machine.on_exception
            or _TRANSITIONS_LOG.isEnabledFor(logging.INFO)
        ):
            return super().trigger(model, *args, **kwargs)
        state, name = machine.lookup(getattr(model, machine.model_attribute))
        transitions = cast("list[_Transition] | None", self.transitions.get(name))
        if transitions is None:  # transitions raises MachineError or ignores it, as configured
            return super().trigger(model, *args, **kwargs)
        event_data = EventData(state, self, machine, model, args=args, kwargs=kwargs)
        for transition in transitions:
            event_data.transition = transition
            if transition.run(event_data):
                event_data.result = True
                return True
        return False


class _Machine(Machine):
    """A ``transitions.Machine`` whose triggers take the short path above."""

    event_cls = _Event
    transition_cls = _Transition

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lookups: dict[Any, tuple[State, str]] = {}
        super().__init__(*args, **kwargs)

    def add_states(self, *args: Any, **kwargs: Any) -> None:
        self._lookups.clear()
        super().add_states(*args, **kwargs)

    def lookup(self, value: Any) -> tuple[State, str]:
        """The state a model's state attribute holds, and its name, found once per value."""
        try:
            return self._lookups[value]
        except KeyError:
            state = self.get_state(value)
            self._lookups[value] = found = (state, state.name)
            return found


def _build(name: str, table: Mapping[Any, tuple[On, ...]], initial: Enum) -> Machine:
    machine = _Machine(
        model=None,
        states=type(initial),
        initial=initial,
        send_event=True,
        auto_transitions=False,
        after_state_change=[_record_row],
        name=name,
    )
    for source, rows in table.items():
        for row in rows:
            machine.add_transition(
                row.trigger,
                source,
                row.dest,
                conditions=[*row.when, *row.guards],
                after=list(row.do),
            )
            # Let the driver and the diagrams see which row was taken.
            transition = machine.events[row.trigger].transitions[source.name][-1]
            transition.row = row  # type: ignore[attr-defined]
    return machine


def _sources(table: Mapping[Any, tuple[On, ...]]) -> dict[str, frozenset[Enum]]:
    """For each trigger, the states that have a row for it (no ``Enum.name`` per call)."""
    sources: dict[str, set[Enum]] = {}
    for source, rows in table.items():
        for row in rows:
            sources.setdefault(row.trigger, set()).add(source)
    return {trigger: frozenset(states) for trigger, states in sources.items()}


class _Core:
    """What both cores share: firing a trigger through their shared machine."""

    __slots__ = ("last", "state")
    _machine: Machine
    _refusals: Mapping[str, Refusal]
    _sources: Mapping[str, frozenset[Enum]]
    state: Any
    last: On | None

    def _fire(self, trigger: str, **kwargs: object) -> Effect:
        event = self._machine.events[trigger]
        if self.state not in self._sources[trigger]:
            refusal = self._refusals[trigger]
            raise refusal.error(
                refusal.reason, rule=refusal.rule, trigger=trigger, state=self.state
            )
        if not event.trigger(self, **kwargs):  # pragma: no cover - check_definition forbids it
            raise InvalidDefinition(f"no row of {self.state.name} applies to {trigger!r}")
        assert self.last is not None
        return self.last.effect


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


check_definition(SESSION_TABLE, SessionState.CLOSED, SESSION_REFUSALS, SessionCore)
check_definition(SOCKET_TABLE, WebSocketState.CLOSED, SOCKET_REFUSALS, SocketCore)

SESSION_MACHINE: Final = _build("session", SESSION_TABLE, SessionState.CLOSED)
SOCKET_MACHINE: Final = _build("socket", SOCKET_TABLE, WebSocketState.CLOSED)
SessionCore._machine = SESSION_MACHINE
SessionCore._refusals = SESSION_REFUSALS
SessionCore._sources = _sources(SESSION_TABLE)
SocketCore._machine = SOCKET_MACHINE
SocketCore._refusals = SOCKET_REFUSALS
SocketCore._sources = _sources(SOCKET_TABLE)
