"""What the inspector draws, taken from the project's renderer: the one place it reaches it.

The page shows the session machine's SVG as :mod:`fsm_session.diagrams` renders it, and the
rows of its table (trigger, source, destination, rule IDs). Should the renderer move, only this
module changes.
"""

from __future__ import annotations

import functools
from typing import Any

from fsm_session.diagrams import extract, render
from fsm_session.machine import On

__all__ = ["MACHINE", "row_rule", "session_rows", "session_svg"]

MACHINE = "session"
"""The machine the page draws."""


@functools.cache
def session_svg() -> str:
    """The session machine as SVG, no state highlighted (the page highlights it itself).

    Rendered once per process by Graphviz (raises ``GraphvizMissing`` without ``dot``).
    """
    return render(MACHINE, "svg")


@functools.cache
def session_rows() -> tuple[dict[str, Any], ...]:
    """The rows of the session table: trigger, source, destination and rule IDs."""
    return tuple(
        {
            "trigger": edge.trigger,
            "source": edge.source,
            "dest": edge.dest,
            "rules": list(edge.rules),
        }
        for edge in extract(MACHINE).edges
    )


def row_rule(row: On | None) -> str:
    """The rule IDs a row of the table implements (``""`` for none or no row)."""
    return "" if row is None else row.rule
