"""Declaring a machine: :func:`declare` checks a table, builds it and binds it to a model class.

A model is a plain object (a subclass of :class:`Core`, with ``__slots__``) whose ``state`` the
shared machine reads and writes, and whose ``last`` names the row taken last. Each trigger is a
method of the model class that calls :meth:`Core.fire`; the definition check insists on one
handler per trigger, so a model's public surface is written out and type-checked.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar, cast

from transitions import Machine

from fsm_session.engine.build import build_machine
from fsm_session.engine.checks import InvalidDefinition, check_definition
from fsm_session.engine.rows import On, Refusal, RuleError, Sample, TriggerKind

__all__ = ["Core", "Definition", "declare"]


class Core:
    """The base of a model class: its state, the row it took last, and :meth:`fire`."""

    __slots__ = ("last", "state")
    definition: ClassVar[Definition[Any]]
    _machine: ClassVar[Machine]
    _refusals: ClassVar[Mapping[str, Refusal]]
    _sources: ClassVar[Mapping[str, frozenset[Enum]]]
    _no_effect: ClassVar[Any]
    state: Any
    last: On | None

    def __init__(self) -> None:
        self.state = self.definition.initial
        self.last = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.name}>"

    def fire(self, trigger: str, **kwargs: object) -> Any:
        """Fire ``trigger``: take the first row whose selectors hold and whose guards pass.

        Returns the row's effect (or the machine's "no effect"). A trigger the state has no row
        for raises its refusal's error; a broken rule raises its guard's error; either way the
        state and the data are as they were.
        """
        event = self._machine.events[trigger]
        if self.state not in self._sources[trigger]:
            refusal = self._refusals[trigger]
            error = cast(RuleError, refusal.error)
            raise error(refusal.reason, rule=refusal.rule, trigger=trigger, state=self.state)
        # check_definition makes some row always apply (the last row of each trigger has no
        # selector, and guards pass or raise), so this is only reached by a machine built around it.
        if not event.trigger(self, **kwargs):  # pragma: no cover - declare's check forbids it
            raise InvalidDefinition(f"no row of {self.state.name} applies to {trigger!r}")
        effect = self.last.effect  # type: ignore[union-attr]  # the row just taken
        return self._no_effect if effect is None else effect

    _fire = fire


_C = TypeVar("_C", bound=Core)


def _frozen(value: object) -> Hashable:
    """``value`` with its lists, dicts and sets made hashable, each tagged with its type."""
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_frozen(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((key, _frozen(item)) for key, item in value.items()))
    if isinstance(value, set | frozenset):
        return (type(value).__name__, frozenset(_frozen(item) for item in value))
    return value


def _slots_snapshot(model: Core) -> Hashable:
    """Every slot of the model but ``last``, lists, dicts and sets frozen: the data a row's
    outcome may depend on."""
    names = [
        name
        for cls in type(model).__mro__
        for name in getattr(cls, "__slots__", ())
        if name != "last"
    ]
    return tuple(_frozen(getattr(model, name, None)) for name in names)


@dataclass(frozen=True, eq=False)
class Definition(Generic[_C]):
    """A declared machine: its table and everything the engine and the diagrams derive from it."""

    name: str
    table: Mapping[Any, tuple[On, ...]]
    initial: Enum
    model: type[_C]
    refusals: Mapping[str, Refusal]
    kinds: Mapping[str, TriggerKind]
    samples: tuple[tuple[str, Sample], ...]
    """What the exploration of paths tries, in order: (trigger, sample)."""
    snapshot: Callable[[_C], Hashable]
    no_effect: Any
    table_name: str
    module: str
    machine: Machine = field(repr=False)

    @property
    def states(self) -> tuple[Enum, ...]:
        return tuple(type(self.initial))

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every trigger, in order of first appearance in the table."""
        seen: dict[str, None] = {}
        for rows in self.table.values():
            for row in rows:
                seen.setdefault(row.trigger)
        return tuple(seen)

    def kind(self, trigger: str) -> TriggerKind:
        return self.kinds.get(trigger, TriggerKind.CALL)

    def new(self) -> _C:
        """A fresh model in the initial state."""
        return self.model()


def declare(
    name: str,
    model: type[_C],
    table: Mapping[Any, tuple[On, ...]],
    *,
    initial: Enum | None = None,
    refusals: Mapping[str, Refusal] | None = None,
    default_refusal: Refusal | None = None,
    kinds: Mapping[str, TriggerKind] | None = None,
    samples: Mapping[str, Sequence[Sample]] | None = None,
    snapshot: Callable[[_C], Hashable] | None = None,
    no_effect: Any = None,
    table_name: str = "",
) -> Definition[_C]:
    """Check ``table``, build it on ``transitions`` and bind it to ``model``; return the definition.

    ``initial`` defaults to the first member of the states' enum. A trigger missing from some
    state is refused there by ``refusals[trigger]``, else by ``default_refusal``. ``kinds`` says who
    fires each trigger (a public call by default). ``samples`` lists, per trigger, the arguments
    the exploration of paths gives it (by default one call without arguments); ``snapshot`` (by
    default every slot but ``last``, with lists, dicts and sets frozen) tells explored models
    apart. The exploration fires triggers on deep copies of the model (``copy.deepcopy``; a model
    class may define ``__deepcopy__``). ``no_effect`` is what a row without an effect hands back.
    Raises :class:`InvalidDefinition` for an unsound table, or for a model class whose instances
    carry a ``__dict__`` (its data would escape the snapshot): every class of a model has
    ``__slots__``.
    """
    if not table:
        raise InvalidDefinition(f"the {name} machine's table is empty")
    start = initial if initial is not None else next(iter(cast(Any, type(next(iter(table))))))
    triggers = {row.trigger for rows in table.values() for row in rows}
    refusing = dict(refusals or {})
    if default_refusal is not None:
        for trigger in sorted(triggers):
            refusing.setdefault(trigger, default_refusal)
    if "definition" in vars(model):
        raise InvalidDefinition(
            f"{model.__name__} already carries the {model.definition.name} machine; "
            "declare each machine on a model class of its own"
        )
    loose = [cls.__name__ for cls in model.__mro__ if "__dict__" in vars(cls)]
    if loose:
        raise InvalidDefinition(
            f"{model.__name__} instances carry a __dict__ (from {loose[0]}): explored copies "
            "and snapshots read slots only; give every class of the model __slots__"
        )
    check_definition(table, start, refusing, model)
    for trigger in {*(kinds or {}), *(samples or {})} - triggers:
        raise InvalidDefinition(f"kinds or samples name {trigger!r}, which no row uses")
    ordered = [(t, s) for t, group in (samples or {}).items() for s in group]
    ordered += [
        (t, Sample(t))
        for t in dict.fromkeys(r.trigger for rows in table.values() for r in rows)
        if t not in (samples or {})
    ]
    sources: dict[str, set[Enum]] = {}
    for source, rows in table.items():
        for row in rows:
            sources.setdefault(row.trigger, set()).add(source)
    definition: Definition[_C] = Definition(
        name=name,
        table=table,
        initial=start,
        model=model,
        refusals=refusing,
        kinds=dict(kinds or {}),
        samples=tuple(ordered),
        snapshot=snapshot if snapshot is not None else _slots_snapshot,
        no_effect=no_effect,
        table_name=table_name or f"{name.upper()}_TABLE",
        module=model.__module__,
        machine=build_machine(name, table, start),
    )
    model.definition = definition
    model._machine = definition.machine
    model._refusals = refusing
    model._sources = {trigger: frozenset(states) for trigger, states in sources.items()}
    model._no_effect = no_effect
    return definition
