"""The machines that can be drawn, the graph each is read into, and what to highlight on it.

Every rendering starts here: :func:`extract` reads a declared machine (by name, or any
:class:`~fsm_session.engine.Definition`) into an :class:`~fsm_session.engine.Graph`, and
:func:`resolve_highlight` turns a state and the row taken last into a :class:`Highlight`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from fsm_session.engine import Definition, Edge, Graph, On, TriggerKind, graph_of
from fsm_session.machine import SESSION_DEFINITION, SOCKET_DEFINITION

__all__ = [
    "MACHINES",
    "NO_HIGHLIGHT",
    "DiagramError",
    "GraphvizMissing",
    "Highlight",
    "definition_of",
    "edge_label",
    "extract",
    "graph_from_table",
    "resolve_highlight",
]

MACHINES: Final = ("session", "socket")
"""The project's machines that can be drawn by name."""
_DEFINITIONS: Final[Mapping[str, Definition[Any]]] = {
    "session": SESSION_DEFINITION,
    "socket": SOCKET_DEFINITION,
}


class DiagramError(ValueError):
    """An unknown machine, format or state name was asked for."""


class GraphvizMissing(RuntimeError):
    """SVG was asked for but Graphviz's ``dot`` (or the ``graphviz`` package) is missing."""


def definition_of(machine: str | Definition[Any]) -> Definition[Any]:
    """The declared machine named ``machine`` (one of :data:`MACHINES`), or ``machine`` itself."""
    if isinstance(machine, Definition):
        return machine
    try:
        return _DEFINITIONS[machine]
    except KeyError:
        raise DiagramError(
            f"unknown machine {machine!r}; expected one of {', '.join(MACHINES)}"
        ) from None


def extract(machine: str | Definition[Any] | Graph) -> Graph:
    """The graph of a machine: a name in :data:`MACHINES`, a declared machine, or a graph."""
    if isinstance(machine, Graph):
        return machine
    return graph_of(definition_of(machine))


def graph_from_table(
    name: str,
    table: Mapping[Any, Sequence[On]],
    initial: Enum,
    *,
    table_name: str = "",
    kinds: Mapping[str, TriggerKind] | None = None,
    no_effect: object = None,
) -> Graph:
    """Read a bare table (no model, not built) into a :class:`Graph`, for drawing only.

    A graph read this way has no definition, so no transition paths.
    """
    stand_in: Definition[Any] = Definition(
        name=name,
        table={state: tuple(rows) for state, rows in table.items()},
        initial=initial,
        model=object,
        refusals={},
        kinds=dict(kinds or {}),
        samples=(),
        snapshot=repr,
        no_effect=no_effect,
        table_name=table_name or f"{name.upper()}_TABLE",
        module="",
        machine=None,  # type: ignore[arg-type]
    )
    graph = graph_of(stand_in)
    return Graph(
        name=graph.name,
        table_name=graph.table_name,
        states=graph.states,
        initial=graph.initial,
        edges=graph.edges,
        module=graph.module,
    )


def edge_label(edge: Edge) -> str:
    """``trigger [selectors] {guards} / effect``, leaving out the parts the row does not have."""
    parts = [edge.trigger]
    if edge.selectors:
        parts.append(f"[{', '.join(edge.selectors)}]")
    if edge.guards:
        parts.append(f"{{{', '.join(edge.guards)}}}")
    if edge.effect:
        parts.append(f"/ {edge.effect}")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Highlight:
    """What to emphasise: the current state, and the edges of the row taken last."""

    state: str | None = None
    edges: frozenset[tuple[str, int]] = frozenset()

    @property
    def sources(self) -> frozenset[str]:
        """The source states of the emphasised edges."""
        return frozenset(source for source, _ in self.edges)


NO_HIGHLIGHT: Final = Highlight()


def _state_name(graph: Graph, state: str | Enum) -> str:
    name = state.name if isinstance(state, Enum) else state.strip().upper()
    if name not in graph.states:
        raise DiagramError(
            f"unknown state {state if isinstance(state, str) else name!r} for the {graph.name} "
            f"machine; expected one of {', '.join(graph.states)}"
        )
    return name


def resolve_highlight(
    graph: Graph,
    state: str | Enum | None = None,
    last: On | None = None,
    last_source: str | Enum | None = None,
) -> Highlight:
    """Turn a state (name or member) and the row taken last into a :class:`Highlight`.

    ``last`` is found by identity. Should one row object sit in two states, ``last_source`` (or
    else the current state, which is the row's destination) picks the edge.
    """
    current = None if state is None else _state_name(graph, state)
    if last is None:
        return Highlight(current)
    candidates = graph.edges_of(last)
    if not candidates:
        raise DiagramError(f"{last!r} is not a row of the {graph.name} machine")
    if last_source is not None:
        source = _state_name(graph, last_source)
        candidates = tuple(edge for edge in candidates if edge.source == source)
    elif current is not None and len(candidates) > 1:
        candidates = tuple(edge for edge in candidates if edge.dest == current) or candidates
    return Highlight(current, frozenset(edge.key for edge in candidates))
