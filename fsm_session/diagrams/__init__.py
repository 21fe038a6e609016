"""State diagrams, transition tables and transition paths, generated from declared machines.

Nothing here is drawn by hand, and nothing is specific to the session: any machine declared
with :func:`fsm_session.engine.declare` can be drawn. The pipeline is extract, then render:

* :mod:`~fsm_session.diagrams.model` reads a machine into an :class:`~fsm_session.engine.Graph`
  (:func:`extract`) and resolves what to highlight;
* :mod:`~fsm_session.diagrams.view` folds the graph into the readable view the default diagrams
  draw: edges styled by kind (public call, backend reply, connection event), self-loops folded
  into the state's box, guards shown by rule ID, and a legend;
* renderers, all from the same graph: Mermaid (:func:`to_mermaid`), Graphviz DOT (:func:`to_dot`),
  SVG (:func:`to_svg`, needs Graphviz's ``dot``) and a Markdown table (:func:`to_table`); each
  takes ``full=True`` for the every-guard view, one label per row;
* :func:`render` and :func:`diagram_of` are the one entry point (a live inspector calls
  ``render("session", "svg", highlight_state="OPEN")``);
* :func:`transition_paths` finds, by firing the real machine's triggers, a shortest path to
  every row; :func:`replay` checks one;
* :mod:`~fsm_session.diagrams.artefacts` keeps ``diagrams/`` and the docs' generated sections
  fresh (``python -m fsm_session.diagrams``, ``make diagrams``; ``--check`` only reports).
"""

from fsm_session.diagrams.artefacts import (
    ARTEFACT_DIR,
    DOC_FILES,
    SPEC_FILE,
    expected_artefacts,
    regenerate,
    stale_artefacts,
    update_spec,
)
from fsm_session.diagrams.commands import diagram_command, main, paths_command
from fsm_session.diagrams.dot import (
    dot_digest,
    dot_to_svg,
    normalise_svg,
    svg_stamp,
    to_dot,
    to_svg,
)
from fsm_session.diagrams.mermaid import to_mermaid
from fsm_session.diagrams.model import (
    MACHINES,
    NO_HIGHLIGHT,
    DiagramError,
    GraphvizMissing,
    Highlight,
    definition_of,
    edge_label,
    extract,
    graph_from_table,
    resolve_highlight,
)
from fsm_session.diagrams.paths import new_core, replay, transition_paths
from fsm_session.diagrams.render import FORMATS, diagram_of, render
from fsm_session.diagrams.table import to_table
from fsm_session.diagrams.view import View, view_of
from fsm_session.engine import Edge, Graph, PathError, Step, TransitionPath, format_path

__all__ = [
    "ARTEFACT_DIR",
    "DOC_FILES",
    "FORMATS",
    "MACHINES",
    "NO_HIGHLIGHT",
    "SPEC_FILE",
    "DiagramError",
    "Edge",
    "Graph",
    "GraphvizMissing",
    "Highlight",
    "PathError",
    "Step",
    "TransitionPath",
    "View",
    "definition_of",
    "diagram_command",
    "diagram_of",
    "dot_digest",
    "dot_to_svg",
    "edge_label",
    "expected_artefacts",
    "extract",
    "format_path",
    "graph_from_table",
    "main",
    "new_core",
    "normalise_svg",
    "paths_command",
    "regenerate",
    "render",
    "replay",
    "resolve_highlight",
    "stale_artefacts",
    "svg_stamp",
    "to_dot",
    "to_mermaid",
    "to_svg",
    "to_table",
    "transition_paths",
    "update_spec",
    "view_of",
]
