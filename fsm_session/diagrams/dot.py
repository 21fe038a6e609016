"""Graphviz DOT, and SVG laid out from it by Graphviz's ``dot``.

The readable view (the default) draws each state as a box that lists its folded self-loops, one
arrow per pair of states and kind of trigger, styled by kind (a public call solid, a backend reply
dashed, a connection event dotted, each in its own colour), and a legend. The full view
(``full=True``) merges the rows between two states into one edge with one label line per row,
every selector and guard named.

Why the ``graphviz`` package for SVG rather than ``transitions``' own diagram extension: the
extension draws a machine it builds itself from its own internals, knows nothing of selectors,
guards, effects and rule IDs, and styles the DOT its own way. The ``graphviz`` package only pipes
our own DOT text through ``dot``, so the DOT, the SVG and the Mermaid come from one graph.

An SVG's layout depends on the Graphviz version and the fonts installed, so :func:`normalise_svg`
drops Graphviz's version comment and stamps the SVG with the SHA-256 of the DOT it was rendered
from; the staleness check compares that stamp, not the bytes.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
from typing import Final, cast

from fsm_session.diagrams.mermaid import ACCENT, FILL, header
from fsm_session.diagrams.model import NO_HIGHLIGHT, GraphvizMissing, Highlight, edge_label
from fsm_session.diagrams.view import KIND_TITLES, Line, kind_marker, view_of
from fsm_session.engine import Edge, Graph

__all__ = [
    "KIND_STYLES",
    "dot_digest",
    "dot_to_svg",
    "normalise_svg",
    "svg_stamp",
    "to_dot",
    "to_svg",
]

KIND_STYLES: Final = {
    "call": ("solid", "#37474f"),
    "reply": ("dashed", "#1565c0"),
    "event": ("dotted", "#c62828"),
}
"""Per kind of trigger, the line style and colour of its arrows and lines."""

_INSTALL_GRAPHVIZ = (
    "Graphviz's `dot` is needed to render SVG: install it (Debian/Ubuntu: "
    "`apt-get install graphviz`; macOS: `brew install graphviz`)"
)
_TABLE: Final = '<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _opening(graph: Graph) -> list[str]:
    return [
        f"// {header(graph)}",
        f"digraph {_dot_id(graph.name)} {{",
        '    graph [rankdir=TB, nodesep=0.5, ranksep=0.7, fontname="Helvetica"];',
        '    node [shape=box, style=rounded, fontname="Helvetica", fontsize=12];',
        '    edge [fontname="Helvetica", fontsize=9];',
        '    "__start__" [shape=point, width=0.15, label=""];',
    ]


def _state_style(state: str, highlight: Highlight) -> list[str]:
    if state == highlight.state:
        return ['style="rounded,filled,bold"', f'fillcolor="{FILL}"', f'color="{ACCENT}"',
                "penwidth=2.5"]  # fmt: skip
    if state in highlight.sources:
        return ['style="rounded,dashed"', f'color="{ACCENT}"', "penwidth=2"]
    return []


def _full(graph: Graph, highlight: Highlight) -> list[str]:
    lines = []
    for state in graph.states:
        style = _state_style(state, highlight)
        lines.append(f"    {_dot_id(state)}{' [' + ', '.join(style) + ']' if style else ''};")
    lines.append(f'    "__start__" -> {_dot_id(graph.initial)};')
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in graph.edges:
        pairs.setdefault((edge.source, edge.dest), []).append(edge)
    order = {state: position for position, state in enumerate(graph.states)}
    for source, dest in sorted(pairs, key=lambda pair: (order[pair[0]], order[pair[1]])):
        # An HTML table, one left-aligned cell per row: Graphviz keeps a table's box clear of
        # the self-loops better than lines broken with <br/>.
        cells, emphasised = [], False
        for edge in pairs[source, dest]:
            text = html.escape(edge_label(edge), quote=False)
            if edge.key in highlight.edges:
                emphasised = True
                text = f'<b><font color="{ACCENT}">{text}</font></b>'
            cells.append(f'<tr><td align="left">{text}</td></tr>')
        attributes = f"label=<{_TABLE}{''.join(cells)}</table>>"
        if emphasised:
            attributes += f', color="{ACCENT}", penwidth=2.5'
        lines.append(f"    {_dot_id(source)} -> {_dot_id(dest)} [{attributes}];")
    return lines


def _cell(line: Line, size: int | None = None) -> str:
    colour = ACCENT if line.emphasised else KIND_STYLES.get(line.kind, KIND_STYLES["call"])[1]
    text = html.escape(line.text, quote=False)
    if line.emphasised:
        text = f"<b>{text}</b>"
    point = f' point-size="{size}"' if size else ""
    return f'<tr><td align="left"><font color="{colour}"{point}>{text}</font></td></tr>'


def _legend() -> list[str]:
    lines = [
        "    subgraph cluster_legend {",
        '        label="legend"; fontsize=10; style="rounded,dashed"; color="#9e9e9e";',
    ]
    for kind, title in KIND_TITLES.items():
        style, colour = KIND_STYLES[kind]
        a, b = _dot_id(f"__legend_{kind}_a"), _dot_id(f"__legend_{kind}_b")
        lines.append(f'        {a} [shape=point, width=0.05, color="{colour}"];')
        lines.append(f'        {b} [shape=point, width=0.05, color="{colour}"];')
        label = html.escape(f"{kind_marker(kind, 'name')}: {title}", quote=False)
        lines.append(
            f'        {a} -> {b} [label=<{label}>, style={style}, color="{colour}",'
            f' fontcolor="{colour}"];'
        )
    notes = (
        "{ID}: the rules its guards enforce",
        "[name]: the selector that picks the next state",
        "/ effect: the I/O asked of the driver",
        "lines inside a state: it stays in that state",
    )
    rows = "".join(f'<tr><td align="left">{html.escape(n, quote=False)}</td></tr>' for n in notes)
    lines.append(
        f'        "__legend_notes" [shape=plaintext, fontsize=9, label=<{_TABLE}{rows}</table>>];'
    )
    lines.append("    }")
    return lines


def _readable(graph: Graph, highlight: Highlight) -> list[str]:
    view = view_of(graph, highlight)
    lines = []
    for state in graph.states:
        rows = f"<tr><td><b>{html.escape(state, quote=False)}</b></td></tr>"
        rows += "".join(_cell(loop, 9) for loop in view.loops[state])
        attributes = [f"label=<{_TABLE}{rows}</table>>", *_state_style(state, highlight)]
        lines.append(f"    {_dot_id(state)} [{', '.join(attributes)}];")
    lines.append(f'    "__start__" -> {_dot_id(graph.initial)};')
    for arrow in view.arrows:
        line_style, colour = KIND_STYLES.get(arrow.kind, KIND_STYLES["call"])
        cells = "".join(_cell(line) for line in arrow.lines)
        emphasis = f'"{ACCENT}", penwidth=2.5' if arrow.emphasised else f'"{colour}"'
        lines.append(
            f"    {_dot_id(arrow.source)} -> {_dot_id(arrow.dest)} "
            f"[label=<{_TABLE}{cells}</table>>, style={line_style}, color={emphasis}];"
        )
    return lines + _legend()


def to_dot(graph: Graph, highlight: Highlight = NO_HIGHLIGHT, *, full: bool = False) -> str:
    """Graphviz DOT of ``graph``: the readable view, or with ``full`` one label line per row."""
    body = _full(graph, highlight) if full else _readable(graph, highlight)
    return "\n".join([*_opening(graph), *body, "}"]) + "\n"


_GRAPHVIZ_VERSION_COMMENT: Final = re.compile(r"<!-- Generated by graphviz version.*?-->\n?", re.S)
_STAMP_PREFIX: Final = "<!-- Rendered by Graphviz from DOT sha256:"
_STAMP: Final = re.compile(re.escape(_STAMP_PREFIX) + r"([0-9a-f]{64}) ")


def dot_digest(dot: str) -> str:
    """The SHA-256 of a DOT text, as the SVG rendered from it is stamped with."""
    return hashlib.sha256(dot.encode("utf-8")).hexdigest()


def normalise_svg(svg: str, dot: str) -> str:
    """Drop what depends on the Graphviz version and stamp the SVG with its DOT's digest."""
    svg = svg.replace("\r\n", "\n")
    svg = _GRAPHVIZ_VERSION_COMMENT.sub("", svg)
    stamp = f"{_STAMP_PREFIX}{dot_digest(dot)} (fsm_session.diagrams) -->\n"
    at = svg.find("<svg")
    svg = stamp + svg if at < 0 else svg[:at] + stamp + svg[at:]
    return svg.rstrip("\n") + "\n"


def svg_stamp(svg: str) -> str | None:
    """The DOT digest an SVG made by :func:`to_svg` is stamped with, or ``None``."""
    match = _STAMP.search(svg)
    return None if match is None else match.group(1)


def dot_to_svg(dot: str) -> str:
    """Lay out ``dot`` with Graphviz's ``dot`` and return the normalised SVG."""
    if shutil.which("dot") is None:
        raise GraphvizMissing(_INSTALL_GRAPHVIZ)
    try:
        import graphviz
    except ImportError as exc:  # pragma: no cover - the `diagrams` and `test` extras have it
        raise GraphvizMissing(
            "the `graphviz` Python package is needed to render SVG: "
            "pip install 'fsm_session[diagrams]'"
        ) from exc
    try:
        svg = graphviz.Source(dot, engine="dot").pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound as exc:  # pragma: no cover - checked with which() above
        raise GraphvizMissing(_INSTALL_GRAPHVIZ) from exc
    return normalise_svg(cast(str, svg), dot)


def to_svg(graph: Graph, highlight: Highlight = NO_HIGHLIGHT, *, full: bool = False) -> str:
    """SVG of :func:`to_dot`'s output, laid out by Graphviz (raises :class:`GraphvizMissing`)."""
    return dot_to_svg(to_dot(graph, highlight, full=full))
