"""Mermaid ``stateDiagram-v2``: needs no binary, and GitHub renders it inside Markdown.

The readable view (the default) folds self-loops into the state's box as description lines and
writes each trigger as its kind reads (``open()``, ``← opened``, ``↯ lost``, since Mermaid's state
diagrams cannot style one edge apart from another), with a legend note. The full view
(``full=True``) draws one edge per row, labelled ``trigger [selectors] {guards} / effect``.
"""

from __future__ import annotations

from typing import Final

from fsm_session.diagrams.model import NO_HIGHLIGHT, DiagramError, Highlight, edge_label
from fsm_session.diagrams.view import KIND_TITLES, kind_marker, view_of
from fsm_session.engine import Graph

__all__ = ["ACCENT", "FILL", "header", "to_mermaid"]

FILL: Final = "#ffe082"
"""The current state's fill, in every rendering."""
ACCENT: Final = "#d84315"
"""The colour of the row taken last and of its source state."""


def header(graph: Graph) -> str:
    """Where a generated file comes from, without a path, a version or a time."""
    where = f" ({graph.module})" if graph.module else ""
    return f"Generated from {graph.table_name}{where} by fsm_session.diagrams; do not edit."


def _safe(text: str) -> str:
    # A Mermaid label runs from ':' to the end of the line and may hold no ':' or ';'; a '%%'
    # would start a comment. Rule IDs and trigger names are identifiers, so this never fires
    # for a well-named machine.
    if any(bad in text for bad in (":", ";", "\n", "%%", "#")):
        raise DiagramError(f"cannot write {text!r} as a Mermaid label")
    return text


def _highlight(graph: Graph, highlight: Highlight) -> list[str]:
    lines = []
    if highlight.state is not None:
        lines.append(f"    classDef current fill:{FILL},stroke:{ACCENT},stroke-width:3px")
        lines.append(f"    class {highlight.state} current")
    previous = sorted(highlight.sources - {highlight.state}, key=graph.states.index)
    if previous:
        lines.append(f"    classDef previous stroke:{ACCENT},stroke-width:2px")
        lines.append(f"    class {','.join(previous)} previous")
    return lines


def _legend(graph: Graph) -> list[str]:
    # One line each: a ';' would end a Mermaid statement.
    kinds = [
        f"        {kind_marker(kind, 'name')} is a {title}" for kind, title in KIND_TITLES.items()
    ]
    return [
        f"    note right of {graph.initial}",
        "        Legend",
        *kinds,
        "        {ID} the rules its guards enforce",
        "        [name] the selector that picks the next state",
        "        / effect the I/O asked of the driver",
        "        lines inside a state stay in that state",
        "    end note",
    ]


def to_mermaid(graph: Graph, highlight: Highlight = NO_HIGHLIGHT, *, full: bool = False) -> str:
    """Mermaid text of ``graph``; ``(last)`` marks the row taken last."""
    lines = ["stateDiagram-v2", f"    %% {header(graph)}"]
    lines += [f"    {state}" for state in graph.states]
    lines.append(f"    [*] --> {graph.initial}")
    if full:
        for edge in graph.edges:
            label = edge_label(edge)
            if edge.key in highlight.edges:
                label = f"(last) {label}"
            lines.append(f"    {edge.source} --> {edge.dest} : {_safe(label)}")
    else:
        view = view_of(graph, highlight)
        for state in graph.states:
            for loop in view.loops[state]:
                text = f"(last) {loop.text}" if loop.emphasised else loop.text
                lines.append(f"    {state} : {_safe('⟲ ' + text)}")
        for arrow in view.arrows:
            for line in arrow.lines:
                text = f"(last) {line.text}" if line.emphasised else line.text
                lines.append(f"    {arrow.source} --> {arrow.dest} : {_safe(text)}")
        lines += _legend(graph)
    lines += _highlight(graph, highlight)
    return "\n".join(lines) + "\n"
