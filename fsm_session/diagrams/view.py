"""The readable view of a graph: what the default diagrams draw.

The full view draws every row with every selector and guard; on the session machine that stacks
seven labels on one self-loop. The readable view folds the graph instead:

* rows of one state, trigger and next state become one line (their effects listed once);
* a guard is shown by the rule it enforces (``{R2 R3}``), not by its name;
* a selector is shown only where it decides the next state (rows of one trigger from one state
  that go to different states);
* self-loops are folded into the state's box as lines, not drawn as arrows;
* arrows between two states are grouped by who fires them (:class:`~fsm_session.engine.TriggerKind`)
  so each arrow can be styled by kind: a public call ``open()``, a backend reply ``← opened``, a
  connection event ``↯ lost``.

SVG, Mermaid and DOT draw this same :class:`View`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from fsm_session.diagrams.model import NO_HIGHLIGHT, Highlight
from fsm_session.engine import Edge, Graph

__all__ = ["KIND_TITLES", "Arrow", "Line", "View", "kind_marker", "view_of"]

KIND_TITLES: Final[Mapping[str, str]] = {
    "call": "public call",
    "reply": "backend reply",
    "event": "connection event",
}
"""How the legend names each kind of trigger."""


def kind_marker(kind: str, trigger: str) -> str:
    """A trigger written as its kind reads: ``open()``, ``← opened``, ``↯ lost``."""
    if kind == "reply":
        return f"← {trigger}"
    if kind == "event":
        return f"↯ {trigger}"
    return f"{trigger}()"


@dataclass(frozen=True, slots=True)
class Line:
    """One folded line: one trigger from one state to one next state."""

    text: str
    kind: str
    emphasised: bool
    """The row taken last is among the rows this line folds."""
    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class Arrow:
    """An arrow between two different states, for one kind of trigger."""

    source: str
    dest: str
    kind: str
    lines: tuple[Line, ...]

    @property
    def emphasised(self) -> bool:
        return any(line.emphasised for line in self.lines)


@dataclass(frozen=True, slots=True)
class View:
    graph: Graph
    loops: Mapping[str, tuple[Line, ...]]
    """Per state (every state a key), its folded self-loops in edge order."""
    arrows: tuple[Arrow, ...]
    """In order of (source, dest, kind) as the graph lists states and kinds."""
    highlight: Highlight


def _line(edges: list[Edge], show_selectors: bool, highlight: Highlight) -> Line:
    first = edges[0]
    parts = [kind_marker(first.kind, first.trigger)]
    if show_selectors:
        selectors = dict.fromkeys(s for edge in edges for s in edge.selectors)
        if selectors:
            parts.append(f"[{', '.join(selectors)}]")
    rules = dict.fromkeys(rule for edge in edges for rule in edge.guard_rules)
    if rules:
        parts.append(f"{{{' '.join(rules)}}}")
    effects = dict.fromkeys(edge.effect for edge in edges if edge.effect)
    if effects:
        parts.append(f"/ {' | '.join(effects)}")
    emphasised = any(edge.key in highlight.edges for edge in edges)
    return Line(" ".join(parts), first.kind, emphasised, tuple(edges))


def view_of(graph: Graph, highlight: Highlight = NO_HIGHLIGHT) -> View:
    """Fold ``graph`` into its readable :class:`View`."""
    groups: dict[tuple[str, str, str], list[Edge]] = {}
    dests: dict[tuple[str, str], set[str]] = {}
    for edge in graph.edges:
        groups.setdefault((edge.source, edge.trigger, edge.dest), []).append(edge)
        dests.setdefault((edge.source, edge.trigger), set()).add(edge.dest)
    loops: dict[str, list[Line]] = {state: [] for state in graph.states}
    arrows: dict[tuple[str, str, str], list[Line]] = {}
    for (source, trigger, dest), edges in groups.items():
        line = _line(edges, len(dests[source, trigger]) > 1, highlight)
        if source == dest:
            loops[source].append(line)
        else:
            arrows.setdefault((source, dest, line.kind), []).append(line)
    order = {state: position for position, state in enumerate(graph.states)}
    kinds = {kind: position for position, kind in enumerate(KIND_TITLES)}
    ordered = sorted(arrows, key=lambda k: (order[k[0]], order[k[1]], kinds.get(k[2], 9)))
    return View(
        graph=graph,
        loops={state: tuple(lines) for state, lines in loops.items()},
        arrows=tuple(Arrow(s, d, k, tuple(arrows[s, d, k])) for s, d, k in ordered),
        highlight=highlight,
    )
