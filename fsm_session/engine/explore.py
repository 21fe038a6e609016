"""Transition paths, found by exploring the real machine.

For every row of a declared machine, :func:`transition_paths` finds a shortest sequence of
triggers from the initial state whose last step takes that row, in the spirit of
``xstate/graph``'s shortest paths. Nothing re-models the machine: the breadth-first search fires
the real model's triggers on copies of it, with the argument samples the machine declared
(:class:`~fsm_session.engine.rows.Sample`), and tells configurations apart by the machine's
snapshot, not only by state: whether a row is taken may depend on the arguments and on the data
(the session reopens with a remembered identity only after a named open). Each step carries the
keyword arguments that made its row be taken, so :func:`replay` on a fresh model takes exactly
the intended rows. Among paths of equal length, the sample declared first wins.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fsm_session.engine.checks import InvalidDefinition
from fsm_session.engine.core import Core, Definition
from fsm_session.engine.graph import Edge, Graph, graph_of
from fsm_session.engine.rows import On

__all__ = ["PathError", "Step", "TransitionPath", "format_path", "replay", "transition_paths"]


DEFAULT_LIMIT = 100_000
"""How many distinct configurations :func:`transition_paths` explores at most."""


class PathError(AssertionError):
    """Replaying a transition path did not take the row the path says it takes."""


@dataclass(frozen=True, slots=True)
class Step:
    """Call ``getattr(model, trigger)(**kwargs)``; the model then takes ``edge.row``."""

    trigger: str
    label: str
    """How the step prints: the trigger, with the arguments that choose the row in brackets."""
    kwargs: Mapping[str, object] = field(hash=False)
    edge: Edge

    @property
    def row(self) -> On:
        return self.edge.row


@dataclass(frozen=True, slots=True)
class TransitionPath:
    """A shortest sequence of steps from the initial state whose last step takes ``target``."""

    machine: str
    target: Edge
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return format_path(self)


def format_path(path: TransitionPath) -> str:
    """One line: ``open(info) -> opened -> close -> closed``."""
    return " -> ".join(step.label for step in path.steps)


def _refusal_errors(definition: Definition[Any]) -> tuple[type[Exception], ...]:
    errors = {refusal.error for refusal in definition.refusals.values()}
    for rows in definition.table.values():
        errors.update(guard.error for row in rows for guard in row.guards)
    return tuple(errors)


def replay(path: TransitionPath, model: Core) -> Core:
    """Fire every step of ``path`` on ``model`` and return it.

    Raises :class:`PathError` when a step starts from another state, is refused, or takes another
    row than it names; any other error goes through.
    """
    definition = type(model).definition
    refused = _refusal_errors(definition)
    for number, step in enumerate(path.steps, 1):
        if model.state.name != step.edge.source:
            raise PathError(
                f"step {number} ({step.label}) starts from {step.edge.source}, "
                f"but the model is {model.state.name}"
            )
        try:
            getattr(model, step.trigger)(**step.kwargs)
        except refused as exc:
            raise PathError(f"step {number} ({step.label}) was refused: {exc}") from exc
        if model.last is not step.edge.row:
            raise PathError(f"step {number} ({step.label}) took {model.last!r}")
    return model


def _snapshot(definition: Definition[Any], model: Core) -> Hashable:
    snapshot = definition.snapshot(model)
    try:
        hash(snapshot)
    except TypeError as exc:
        raise InvalidDefinition(
            f"the {definition.name} machine's snapshot of {model!r} is not hashable ({exc}); "
            "declare snapshot= to say what tells its models apart"
        ) from exc
    return snapshot


def _explore(
    graph: Graph, definition: Definition[Any], limit: int
) -> dict[tuple[str, int], TransitionPath]:
    by_row = {(edge.source, id(edge.row)): edge for edge in graph.edges}
    refused = _refusal_errors(definition)
    # Explored models are deep copies, so no two share a list, a set or a dict; the table's rows
    # (which ``last`` names) are kept as they are. A model class may define ``__deepcopy__``.
    rows = {id(row): row for rows in definition.table.values() for row in rows}
    start = definition.new()
    found: dict[tuple[str, int], TransitionPath] = {}
    seen = {_snapshot(definition, start)}
    queue: deque[tuple[Any, tuple[Step, ...]]] = deque([(start, ())])
    while queue and len(found) < len(graph.edges):
        here, steps = queue.popleft()
        for trigger, sample in definition.samples:
            if sample.when is not None and not sample.when(here):
                continue
            kwargs = MappingProxyType(sample.kwargs(here))
            model = copy.deepcopy(here, dict(rows))
            source = model.state.name
            try:
                getattr(model, trigger)(**kwargs)
            except refused:
                continue  # refused: no row taken, nothing changed
            edge = by_row[source, id(model.last)]
            step = Step(trigger, sample.label, kwargs, edge)
            if edge.key not in found:
                found[edge.key] = TransitionPath(graph.name, edge, (*steps, step))
            snapshot = _snapshot(definition, model)
            if snapshot not in seen and len(seen) < limit:
                seen.add(snapshot)
                queue.append((model, (*steps, step)))
    return found


def transition_paths(
    machine: Definition[Any] | Graph, *, limit: int = DEFAULT_LIMIT
) -> list[TransitionPath]:
    """For each row reachable from the initial state, in edge order, a shortest path (fewest
    steps) whose last step takes it. Together they cover every reachable row.

    The search stops when every row has a path, or after ``limit`` distinct configurations (a
    machine whose data can grow without end, such as a counter, has no end of them); a row it
    did not reach then has no path in the result.
    """
    graph = machine if isinstance(machine, Graph) else graph_of(machine)
    definition = graph.definition
    if definition is None:
        raise ValueError(f"the {graph.name} graph was not read from a declared machine")
    found = _explore(graph, definition, limit)
    return [found[edge.key] for edge in graph.edges if edge.key in found]
