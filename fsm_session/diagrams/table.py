"""The Markdown transition table: one line per row, the one ``specs/session.md`` embeds."""

from __future__ import annotations

from fsm_session.diagrams.model import NO_HIGHLIGHT, Highlight
from fsm_session.engine import Graph

__all__ = ["to_table"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_table(graph: Graph, highlight: Highlight = NO_HIGHLIGHT, *, full: bool = True) -> str:
    """A Markdown table, one line per row; ``=`` is an internal row's next state.

    A table always lists every row (``full`` is accepted so every renderer takes it).
    """
    del full
    lines = [
        "| state | trigger | selectors / guards | next state | effect | rules |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for edge in graph.edges:
        state = f"**{edge.source}**" if edge.source == highlight.state else edge.source
        trigger = f"`{edge.trigger}`"
        if edge.key in highlight.edges:
            trigger = f"**{trigger} (last)**"
        conditions = []
        if edge.selectors:
            conditions.append(f"`[{', '.join(edge.selectors)}]`")
        if edge.guards:
            conditions.append(f"`{{{', '.join(edge.guards)}}}`")
        dest = "=" if edge.internal else edge.dest
        effect = f"`{edge.effect}`" if edge.effect else ""
        cells = (state, trigger, " ".join(conditions), dest, effect, ", ".join(edge.rules))
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
