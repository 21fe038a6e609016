"""The graph model of a declared machine: its states and one :class:`Edge` per row.

Diagrams, tables and paths all read this model, never the table directly. Output built from it
is byte-stable: states come in enum order and edges sorted by (source state in enum order,
trigger, row index). The row index, not the destination or the guards, breaks ties between rows
of one trigger, because their order is their priority (the first row whose selectors hold is
taken), and a sorted table must still read that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsm_session.engine.core import Definition
from fsm_session.engine.rows import On

__all__ = ["Edge", "Graph", "graph_of"]


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of a table, seen as an edge of the state graph."""

    source: str
    """The state whose row this is."""
    dest: str
    """The next state; the source itself for an internal row."""
    trigger: str
    selectors: tuple[str, ...]
    """The names of the ``when`` selectors, which choose between rows of one trigger."""
    guards: tuple[str, ...]
    """The names of the guards, which enforce written rules."""
    actions: tuple[str, ...]
    """The names of the ``do`` actions."""
    effect: str
    """The value of the row's effect; ``""`` when it has none (the machine's "no effect")."""
    rules: tuple[str, ...]
    """The rule IDs the row implements."""
    internal: bool
    """The row's ``dest`` is ``None``: it stays in the same state."""
    index: int
    """The row's position among its source state's rows (its priority within a trigger)."""
    row: On = field(repr=False)
    """The table row itself: ``core.last is edge.row`` after the core took this row."""
    kind: str = "call"
    """Who fires the trigger: ``call``, ``reply`` or ``event`` (see ``TriggerKind``)."""
    guard_rules: tuple[str, ...] = ()
    """The rule IDs the guards enforce, in guard order, each once."""

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the edge: equal-looking rows of two states are two edges."""
        return (self.source, self.index)

    @property
    def self_loop(self) -> bool:
        """The edge starts and ends in one state (an internal row, or one back to its source)."""
        return self.source == self.dest


@dataclass(frozen=True, slots=True)
class Graph:
    """A machine as a graph: its states in enum order, its initial state and its sorted edges."""

    name: str
    table_name: str
    states: tuple[str, ...]
    initial: str
    edges: tuple[Edge, ...]
    module: str = ""
    """The module that declares the table, as the generated files name it."""
    definition: Definition[Any] | None = field(default=None, compare=False, repr=False)

    def edges_of(self, row: On) -> tuple[Edge, ...]:
        """The edges whose row *is* ``row`` (identity: equal rows of two states are distinct)."""
        return tuple(edge for edge in self.edges if edge.row is row)


def _name(thing: object) -> str:
    return str(getattr(thing, "__name__", repr(thing)))


def graph_of(definition: Definition[Any]) -> Graph:
    """Read a declared machine into a :class:`Graph`."""
    edges: list[Edge] = []
    no_effect = definition.no_effect
    for source in definition.states:
        for index, row in enumerate(definition.table.get(source, ())):
            dest = source if row.dest is None else row.dest
            effect = row.effect
            edges.append(
                Edge(
                    source=source.name,
                    dest=dest.name,
                    trigger=row.trigger,
                    selectors=tuple(_name(selector) for selector in row.when),
                    guards=tuple(_name(guard) for guard in row.guards),
                    actions=tuple(_name(action) for action in row.do),
                    effect="" if effect is None or effect is no_effect else str(effect.value),
                    rules=tuple(row.rule.split()),
                    internal=row.dest is None,
                    index=index,
                    row=row,
                    kind=definition.kind(row.trigger).value,
                    guard_rules=tuple(dict.fromkeys(g.rule for g in row.guards)),
                )
            )
    order = {state.name: position for position, state in enumerate(definition.states)}
    edges.sort(key=lambda edge: (order[edge.source], edge.trigger, edge.index))
    return Graph(
        name=definition.name,
        table_name=definition.table_name,
        states=tuple(state.name for state in definition.states),
        initial=definition.initial.name,
        edges=tuple(edges),
        module=definition.module,
        definition=definition,
    )
