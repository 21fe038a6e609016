"""A small, generic engine for explicit state machines built on ``transitions``.

Declare a table of :class:`On` rows (one key per state of an ``Enum``) with :func:`declare`: it is
checked (:func:`check_definition`), built once on a shared ``transitions.Machine`` and bound to a
model class derived from :class:`Core`. The same definition gives the graph model
(:func:`graph_of`), the diagrams (:mod:`fsm_session.diagrams`) and shortest transition paths
found by firing the real machine (:func:`transition_paths`). The engine imports no trio and reads
no clock.
"""

from fsm_session.engine.checks import InvalidDefinition, check_definition
from fsm_session.engine.core import Core, Definition, declare
from fsm_session.engine.explore import (
    PathError,
    Step,
    TransitionPath,
    format_path,
    replay,
    transition_paths,
)
from fsm_session.engine.graph import Edge, Graph, graph_of
from fsm_session.engine.rows import (
    Action,
    Guard,
    On,
    Refusal,
    Sample,
    Selector,
    TriggerKind,
    guard,
)

__all__ = [
    "Action",
    "Core",
    "Definition",
    "Edge",
    "Graph",
    "Guard",
    "InvalidDefinition",
    "On",
    "PathError",
    "Refusal",
    "Sample",
    "Selector",
    "Step",
    "TransitionPath",
    "TriggerKind",
    "check_definition",
    "declare",
    "format_path",
    "graph_of",
    "guard",
    "replay",
    "transition_paths",
]
