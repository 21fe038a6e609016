"""The build on ``transitions``: one shared ``Machine`` per declared table.

Models are plain objects whose ``state`` attribute the shared machine reads and writes:
``transitions`` costs 18-34 KB and 70-140 us per ``Machine`` and its ``add_model`` is quadratic, so
one machine per model would not scale. Only documented extension points are used: the
``event_cls``, ``transition_cls`` and ``condition_cls`` class attributes, ``send_event``,
``after_state_change`` and ``add_transition``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import Enum
from typing import Any, cast

from transitions import EventData, Machine
from transitions.core import Condition, Event, State, Transition

from fsm_session.engine.rows import On

__all__ = ["build_machine"]


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


def build_machine(name: str, table: Mapping[Any, tuple[On, ...]], initial: Enum) -> Machine:
    """A shared ``transitions.Machine`` for ``table``; each transition knows its row."""
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
