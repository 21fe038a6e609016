"""The command-line entry points: ``fsm-session diagram``, ``fsm-session paths`` and
``python -m fsm_session.diagrams`` (``make diagrams``)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from fsm_session.diagrams.artefacts import regenerate, stale_artefacts
from fsm_session.diagrams.model import DiagramError, GraphvizMissing, edge_label, extract
from fsm_session.diagrams.paths import transition_paths
from fsm_session.diagrams.render import render
from fsm_session.engine import format_path

__all__ = ["diagram_command", "main", "paths_command"]


def _error(command: str, message: object) -> None:
    print(f"fsm-session {command}: error: {message}", file=sys.stderr)


def diagram_command(
    machine: str, fmt: str, highlight: str | None, output: str | None, *, full: bool = False
) -> int:
    """``fsm-session diagram``: draw ``machine`` in ``fmt`` to ``output`` or standard output.

    The readable view, or with ``full`` every selector and guard of every row. Returns 0, 2 for
    an unknown machine, format or ``--highlight`` state, or 1 when Graphviz is missing for SVG
    or the file cannot be written.
    """
    try:
        text = render(machine, fmt, highlight_state=highlight, full=full)
    except DiagramError as exc:
        _error("diagram", exc)
        return 2
    except GraphvizMissing as exc:
        _error("diagram", exc)
        return 1
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        pathlib.Path(output).write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        _error("diagram", f"cannot write {output}: {exc}")
        return 1
    return 0


def paths_command(machine: str) -> int:
    """``fsm-session paths``: print one shortest path per transition of ``machine``.

    Each line is the path, then a comment naming the row it ends with. Returns 0 when the paths
    cover every transition, 1 when some row is unreachable, 2 for an unknown machine.
    """
    try:
        graph = extract(machine)
    except DiagramError as exc:
        _error("paths", exc)
        return 2
    paths = transition_paths(machine)
    print(
        f"# {graph.name} machine: {len(paths)} shortest paths from {graph.initial} cover "
        f"{len(paths)} of {len(graph.edges)} transitions"
    )
    width = max((len(format_path(path)) for path in paths), default=0)
    for path in paths:
        edge = path.target
        print(
            f"{format_path(path):<{width}}  # {edge.source} --{edge_label(edge)}--> {edge.dest}"
            f" ({', '.join(edge.rules)})"
        )
    return 0 if len(paths) == len(graph.edges) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fsm_session.diagrams``: regenerate the committed diagrams and spec tables."""
    parser = argparse.ArgumentParser(
        prog="python -m fsm_session.diagrams",
        description="Regenerate diagrams/ and the transition tables of specs/session.md.",
    )
    parser.add_argument(
        "--root", default=".", help="the project root, holding pyproject.toml (default: .)"
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if anything is stale"
    )
    parser.add_argument(
        "--force-svg", action="store_true", help="re-render the SVGs even when they are current"
    )
    args = parser.parse_args(argv)
    root = pathlib.Path(args.root)
    if not (root / "pyproject.toml").is_file():
        _error("diagrams", f"{root} is not the project root (it has no pyproject.toml)")
        return 2
    if args.check:
        problems = stale_artefacts(root)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `make diagrams` to regenerate them", file=sys.stderr)
        return 1 if problems else 0
    try:
        written = regenerate(root, force_svg=args.force_svg)
    except GraphvizMissing as exc:
        _error("diagrams", exc)
        return 1
    for name in written:
        print(f"wrote {name}")
    return 0
