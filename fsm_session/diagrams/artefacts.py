"""The committed diagrams in ``diagrams/`` and the generated sections of the docs.

``python -m fsm_session.diagrams`` (``make diagrams``) writes, per machine, the readable view
(``session.mmd``, ``.dot``, ``.svg``), the full view (``session-full.*``) and the Markdown table
(``session-table.md``), and refreshes the sections between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` markers of the spec and the README. Output is byte-stable: nothing embeds a
timestamp, a version or a path. An SVG is checked by the DOT digest it is stamped with, so a clean
tree regenerates to no change whatever Graphviz is installed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Final

from fsm_session.diagrams import dot
from fsm_session.diagrams.mermaid import to_mermaid
from fsm_session.diagrams.model import MACHINES, extract
from fsm_session.diagrams.table import to_table
from fsm_session.engine import Graph

__all__ = [
    "ARTEFACT_DIR",
    "DOC_FILES",
    "SPEC_FILE",
    "expected_artefacts",
    "regenerate",
    "stale_artefacts",
    "update_spec",
]

ARTEFACT_DIR: Final = "diagrams"
"""Where the generated diagrams are committed, relative to the project root."""
SPEC_FILE: Final = "specs/session.md"
"""The written spec whose marked sections hold the generated transition tables."""
README_FILE: Final = "README.md"
DOC_FILES: Final = (SPEC_FILE, README_FILE)
"""Documents whose marked sections are generated: the spec's tables, the README's diagram."""
_SPEC_MARKERS: Final = {
    "session": (("transition-table", "table"), ("session-diagram", "mermaid")),
    "socket": (("socket-table", "table"),),
}
_VIEWS: Final = (("", False), ("-full", True))
"""File name suffix and ``full`` flag of each committed view."""


def _section(graph: Graph, kind: str) -> str:
    if kind == "mermaid":
        return "```mermaid\n" + to_mermaid(graph) + "```\n"
    return to_table(graph)


def _graphs(graphs: Mapping[str, Graph] | None) -> Mapping[str, Graph]:
    return graphs if graphs is not None else {name: extract(name) for name in MACHINES}


def _table_file(graph: Graph) -> str:
    where = f" in `{graph.module}`" if graph.module else ""
    return (
        f"# The {graph.name} machine\n\n"
        f"Generated from `{graph.table_name}`{where} by `make diagrams`; do"
        " not edit.\nA trigger with several rows takes the first whose selectors (`[...]`) hold;"
        " its guards\n(`{...}`) then enforce their rules. A next state of `=` stays in the same"
        " state.\n\n" + to_table(graph)
    )


def expected_artefacts(graphs: Mapping[str, Graph] | None = None) -> dict[str, str]:
    """The text artefacts (not the SVGs) by path relative to the project root."""
    files: dict[str, str] = {}
    for name, graph in _graphs(graphs).items():
        for suffix, full in _VIEWS:
            files[f"{ARTEFACT_DIR}/{name}{suffix}.mmd"] = to_mermaid(graph, full=full)
            files[f"{ARTEFACT_DIR}/{name}{suffix}.dot"] = dot.to_dot(graph, full=full)
        files[f"{ARTEFACT_DIR}/{name}-table.md"] = _table_file(graph)
    return files


def update_spec(text: str, graphs: Mapping[str, Graph] | None = None) -> str:
    """``text`` with the generated sections between each pair of markers present in it.

    The markers are ``<!-- transition-table:begin -->`` / ``<!-- transition-table:end -->`` for
    the session's table, ``<!-- session-diagram:... -->`` for its Mermaid diagram and
    ``<!-- socket-table:... -->`` for the socket's table; a pair that is absent (or out of
    order) leaves the text as it is.
    """
    for name, graph in _graphs(graphs).items():
        for marker, kind in _SPEC_MARKERS.get(name, ()):
            begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
            start = text.find(begin)
            stop = text.find(end, start + len(begin)) if start >= 0 else -1
            if start < 0 or stop < 0:
                continue
            body = _section(graph, kind)
            text = text[: start + len(begin)] + "\n\n" + body + "\n" + text[stop:]
    return text


def _svg_problem(svg: str | None, graph: Graph, full: bool) -> str | None:
    if svg is None:
        return "missing"
    if dot.svg_stamp(svg) != dot.dot_digest(dot.to_dot(graph, full=full)):
        return "rendered from another DOT"
    absent = [state for state in graph.states if f">{state}<" not in svg]
    if absent:
        return f"does not show {', '.join(absent)}"
    return None


def _read(path: pathlib.Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def stale_artefacts(
    root: str | pathlib.Path, graphs: Mapping[str, Graph] | None = None
) -> list[str]:
    """What under ``root`` is not what :func:`regenerate` would write, one line each.

    An SVG is checked by its DOT stamp and state names, not byte for byte, since its layout
    depends on the Graphviz version; so this needs no Graphviz.
    """
    root, graphs = pathlib.Path(root), _graphs(graphs)
    problems = [
        f"{name} is stale"
        for name, text in expected_artefacts(graphs).items()
        if _read(root / name) != text
    ]
    for name, graph in graphs.items():
        for suffix, full in _VIEWS:
            path = f"{ARTEFACT_DIR}/{name}{suffix}.svg"
            problem = _svg_problem(_read(root / path), graph, full)
            if problem is not None:
                problems.append(f"{path} is stale: {problem}")
    for doc in DOC_FILES:
        text = _read(root / doc)
        if text is not None and update_spec(text, graphs) != text:
            problems.append(f"the generated sections of {doc} are stale")
    return problems


def _write(path: pathlib.Path, text: str) -> bool:
    if _read(path) == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return True


def regenerate(
    root: str | pathlib.Path,
    graphs: Mapping[str, Graph] | None = None,
    *,
    force_svg: bool = False,
) -> list[str]:
    """Write the artefacts under ``root`` and refresh the docs' sections; return what changed.

    Files already up to date are not touched, so running it twice changes nothing. An SVG is
    re-rendered only when stale (or with ``force_svg``): that needs Graphviz, and raises
    ``GraphvizMissing`` after the text files are written.
    """
    root, graphs = pathlib.Path(root), _graphs(graphs)
    written = [
        name for name, text in expected_artefacts(graphs).items() if _write(root / name, text)
    ]
    for doc in DOC_FILES:
        text = _read(root / doc)
        if text is not None and _write(root / doc, update_spec(text, graphs)):
            written.append(doc)
    for name, graph in graphs.items():
        for suffix, full in _VIEWS:
            path = f"{ARTEFACT_DIR}/{name}{suffix}.svg"
            stale = force_svg or _svg_problem(_read(root / path), graph, full) is not None
            if stale and _write(root / path, dot.to_svg(graph, full=full)):
                written.append(path)
    return written
