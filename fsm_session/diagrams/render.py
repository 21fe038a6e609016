"""One entry point for every format: :func:`render`, and :func:`diagram_of` for a running core."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Final

from fsm_session.diagrams import dot
from fsm_session.diagrams.mermaid import to_mermaid
from fsm_session.diagrams.model import DiagramError, Highlight, extract, resolve_highlight
from fsm_session.diagrams.table import to_table
from fsm_session.engine import Core, Definition, Graph, On

__all__ = ["FORMATS", "diagram_of", "render"]

FORMATS: Final = ("mermaid", "dot", "svg", "table")
"""The formats :func:`render` produces."""


def _svg(graph: Graph, highlight: Highlight, *, full: bool = False) -> str:
    return dot.to_svg(graph, highlight, full=full)  # looked up per call, so tests can stand in


_RENDERERS: Final[Mapping[str, Callable[..., str]]] = {
    "mermaid": to_mermaid,
    "dot": dot.to_dot,
    "svg": _svg,
    "table": to_table,
}


def render(
    machine: str | Definition[Any] | Graph,
    fmt: str,
    highlight_state: str | Enum | None = None,
    last: On | None = None,
    *,
    last_source: str | Enum | None = None,
    full: bool = False,
) -> str:
    """Draw ``machine`` (a name in ``MACHINES``, a declared machine, or a graph) in ``fmt``.

    ``highlight_state`` (a state name, any case, or member) is filled; ``last``, a row of the
    table, is emphasised with its source state. The readable view by default; ``full`` names
    every selector and guard of every row. Raises :class:`DiagramError` for an unknown machine,
    format or state, and ``GraphvizMissing`` for SVG without Graphviz.
    """
    graph = extract(machine)
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise DiagramError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return renderer(graph, resolve_highlight(graph, highlight_state, last, last_source), full=full)


def diagram_of(core: Core, fmt: str, *, full: bool = False) -> str:
    """Draw the machine of a running ``core``: its state filled, the row it took last emphasised.

    What ``SessionService.diagram(fmt)`` returns; reads the core and changes nothing.
    """
    return render(type(core).definition, fmt, highlight_state=core.state, last=core.last, full=full)
