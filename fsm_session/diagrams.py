"""State diagrams, transition tables and transition paths, generated from the machine tables.

Nothing here is drawn by hand. :func:`graph_from_table` reads a table of
:mod:`fsm_session.machine` (``SESSION_TABLE``, ``SOCKET_TABLE``) into one small model, a
:class:`Graph` of states and :class:`Edge` rows, and every output is rendered from that model:

* Mermaid ``stateDiagram-v2`` (:func:`to_mermaid`), which needs no binary and which GitHub renders
  inside Markdown: one edge per row, labelled ``trigger [selectors] {guards} / effect``;
* Graphviz DOT (:func:`to_dot`): the rows between the same two states are merged into one edge
  with one label line per row, because Graphviz stacks parallel self-loops into an unreadable
  knot (OPEN and GHOST have six internal rows each);
* SVG (:func:`to_svg`), the DOT laid out by Graphviz's ``dot``;
* a Markdown transition table (:func:`to_table`), the one that ``specs/session.md`` embeds.

In every form a selector, which picks between rows of one trigger, is written ``[name]``; a guard,
which enforces a written rule and raises when it is broken, ``{name}``; the I/O the driver must do,
``/ effect``; and an internal row (``dest=None``) is a self-loop, ``=`` in the table.

Why the ``graphviz`` package for SVG rather than ``transitions``' own diagram extension: the
extension's ``GraphMachine`` draws a machine it builds itself (one per model) from its own
internals, so the picture would come from another model than the Mermaid and the table, it knows
nothing of our selectors, guards, effects and rule IDs, and its DOT carries styling of its own
choosing. The ``graphviz`` package is only a thin, well-kept binding that pipes our own DOT text
through ``dot``; so the DOT, the SVG, the Mermaid and the table all come from one :class:`Graph`,
and the DOT is byte-for-byte ours.

Output is byte-stable: states come in enum order; edges sorted by (source state in enum order,
trigger, row index). The row index, not the destination or guards, breaks ties between rows of one
trigger, because their order is their priority (the first row whose selectors hold is taken), and
a sorted table must still read that way. Nothing embeds a timestamp, a version or a path. The SVG is
the one exception that we cannot fully pin: its layout depends on the Graphviz version and the
fonts installed. So :func:`normalise_svg` drops Graphviz's version comment and stamps the SVG with
the SHA-256 of the DOT it was rendered from; the staleness check compares that stamp (and that the
SVG names every state), and :func:`regenerate` re-renders an SVG only when its stamp is stale. A
clean tree regenerates to no change whatever Graphviz is installed.

Live highlighting (:func:`render`, :func:`diagram_of`) fills a running core's current state and
emphasises the row it took last (``core.last``) and that row's source state.

Transition paths (:func:`transition_paths`) are, for every row of a table, a shortest sequence of
triggers from the initial state whose last step takes that row, in the spirit of
``xstate/graph``'s shortest paths. The breadth-first search runs over the pure core's
configurations, not only its states: whether a row is taken depends on the arguments and on the
session's data (reopening with a remembered identity needs an earlier named open; ``updated``
needs an update in flight). Each step carries the keyword arguments that make its row be taken,
so replaying a path on a fresh :class:`~fsm_session.machine.SessionCore` or
:class:`~fsm_session.machine.SocketCore` (:func:`replay`) takes exactly the intended rows.

``python -m fsm_session.diagrams`` (``make diagrams``) regenerates the committed files in
``diagrams/`` and the tables between the ``<!-- transition-table:begin -->`` /
``<!-- transition-table:end -->`` (and ``socket-table``) markers of ``specs/session.md``;
``--check`` only reports what is stale.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import pathlib
import re
import shutil
import sys
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final, Generic, TypeVar, cast

from fsm_session.errors import SessionError
from fsm_session.machine import (
    SESSION_TABLE,
    SOCKET_TABLE,
    Effect,
    On,
    SessionCore,
    SessionState,
    SocketCore,
    WebSocketState,
)
from fsm_session.models import Participant, ParticipantInfo

__all__ = [
    "ARTEFACT_DIR",
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
]

MACHINES: Final = ("session", "socket")
"""The machines that can be drawn, by name."""
FORMATS: Final = ("mermaid", "dot", "svg", "table")
"""The formats :func:`render` produces."""
ARTEFACT_DIR: Final = "diagrams"
"""Where the generated diagrams are committed, relative to the project root."""
SPEC_FILE: Final = "specs/session.md"
"""The written spec whose marked sections hold the generated transition tables."""

_INSTALL_GRAPHVIZ = (
    "Graphviz's `dot` is needed to render SVG: install it (Debian/Ubuntu: "
    "`apt-get install graphviz`; macOS: `brew install graphviz`)"
)


class DiagramError(ValueError):
    """An unknown machine, format or state name was asked for."""


class GraphvizMissing(RuntimeError):
    """SVG was asked for but Graphviz's ``dot`` (or the ``graphviz`` package) is missing."""


class PathError(AssertionError):
    """Replaying a transition path did not take the row the path says it takes."""


# --------------------------------------------------------------------------------------------
# The graph model.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of a table, seen as an edge of the state graph."""

    source: str
    """The state whose row this is."""
    dest: str
    """The next state; the source itself for an internal row."""
    trigger: str
    selectors: tuple[str, ...]
    """The names of the ``when`` selectors, which choose between rows of one trigger."""
    guards: tuple[str, ...]
    """The names of the guards, which enforce written rules."""
    actions: tuple[str, ...]
    """The names of the ``do`` actions."""
    effect: str
    """The :class:`~fsm_session.machine.Effect` value the row asks of the driver."""
    rules: tuple[str, ...]
    """The rule IDs the row implements."""
    internal: bool
    """The row's ``dest`` is ``None``: it stays in the same state."""
    index: int
    """The row's position among its source state's rows (its priority within a trigger)."""
    row: On = field(repr=False)
    """The table row itself: ``core.last is edge.row`` after the core took this row."""

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the edge: rows are tuples and equal rows of two states compare equal."""
        return (self.source, self.index)


@dataclass(frozen=True, slots=True)
class Graph:
    """A machine as a graph: its states in enum order, its initial state and its sorted edges."""

    name: str
    table_name: str
    states: tuple[str, ...]
    initial: str
    edges: tuple[Edge, ...]

    def edges_of(self, row: On) -> tuple[Edge, ...]:
        """The edges whose row *is* ``row`` (identity: equal rows of two states are distinct)."""
        return tuple(edge for edge in self.edges if edge.row is row)


_E = TypeVar("_E", bound=Enum)


def _name(thing: object) -> str:
    return str(getattr(thing, "__name__", repr(thing)))


def graph_from_table(
    name: str, table: Mapping[_E, Sequence[On]], initial: _E, *, table_name: str = ""
) -> Graph:
    """Read ``table`` (one key per state of ``initial``'s enum) into a :class:`Graph`."""
    order = {state: position for position, state in enumerate(type(initial))}
    edges: list[tuple[tuple[int, str, int], Edge]] = []
    for source in type(initial):
        for index, row in enumerate(table.get(source, ())):
            dest = source if row.dest is None else row.dest
            edge = Edge(
                source=source.name,
                dest=dest.name,
                trigger=row.trigger,
                selectors=tuple(_name(selector) for selector in row.when),
                guards=tuple(_name(guard) for guard in row.guards),
                actions=tuple(_name(action) for action in row.do),
                effect=str((row.effect or Effect.NOTHING).value),
                rules=tuple(row.rule.split()),
                internal=row.dest is None,
                index=index,
                row=row,
            )
            edges.append(((order[source], row.trigger, index), edge))
    edges.sort(key=lambda pair: pair[0])
    return Graph(
        name=name,
        table_name=table_name or f"{name.upper()}_TABLE",
        states=tuple(state.name for state in type(initial)),
        initial=initial.name,
        edges=tuple(edge for _, edge in edges),
    )


def _check_machine(machine: str) -> str:
    if machine not in MACHINES:
        raise DiagramError(f"unknown machine {machine!r}; expected one of {', '.join(MACHINES)}")
    return machine


def extract(machine: str) -> Graph:
    """The graph of the ``"session"`` or ``"socket"`` machine, read from its table."""
    if _check_machine(machine) == "session":
        return graph_from_table("session", SESSION_TABLE, SessionState.CLOSED)
    return graph_from_table("socket", SOCKET_TABLE, WebSocketState.CLOSED)


def edge_label(edge: Edge) -> str:
    """``trigger [selectors] {guards} / effect``, leaving out the parts the row does not have."""
    parts = [edge.trigger]
    if edge.selectors:
        parts.append(f"[{', '.join(edge.selectors)}]")
    if edge.guards:
        parts.append(f"{{{', '.join(edge.guards)}}}")
    if edge.effect != Effect.NOTHING.value:
        parts.append(f"/ {edge.effect}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Highlighting.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Highlight:
    """What to emphasise: the current state, and the edges of the row taken last."""

    state: str | None = None
    edges: frozenset[tuple[str, int]] = frozenset()

    @property
    def sources(self) -> frozenset[str]:
        """The source states of the emphasised edges."""
        return frozenset(source for source, _ in self.edges)


NO_HIGHLIGHT: Final = Highlight()


def _state_name(graph: Graph, state: str | Enum) -> str:
    name = state.name if isinstance(state, Enum) else state.strip().upper()
    if name not in graph.states:
        raise DiagramError(
            f"unknown state {state if isinstance(state, str) else name!r} for the {graph.name} "
            f"machine; expected one of {', '.join(graph.states)}"
        )
    return name


def resolve_highlight(
    graph: Graph,
    state: str | Enum | None = None,
    last: On | None = None,
    last_source: str | Enum | None = None,
) -> Highlight:
    """Turn a state (name or member) and the row taken last into a :class:`Highlight`.

    ``last`` is found by identity. Should one row object sit in two states, ``last_source`` (or
    else the current state, which is the row's destination) picks the edge.
    """
    current = None if state is None else _state_name(graph, state)
    if last is None:
        return Highlight(current)
    candidates = graph.edges_of(last)
    if not candidates:
        raise DiagramError(f"{last!r} is not a row of the {graph.name} machine")
    if last_source is not None:
        source = _state_name(graph, last_source)
        candidates = tuple(edge for edge in candidates if edge.source == source)
    elif current is not None and len(candidates) > 1:
        candidates = tuple(edge for edge in candidates if edge.dest == current) or candidates
    return Highlight(current, frozenset(edge.key for edge in candidates))


# --------------------------------------------------------------------------------------------
# Renderers.
# --------------------------------------------------------------------------------------------

_FILL: Final = "#ffe082"
_ACCENT: Final = "#d84315"


def _mermaid_safe(text: str) -> str:
    # A Mermaid transition label runs from ':' to the end of the line and may hold no ':' or
    # ';'; a '%%' would start a comment. Our names are identifiers, so this never fires.
    if any(bad in text for bad in (":", ";", "\n", "%%", "#")):
        raise DiagramError(f"cannot write {text!r} as a Mermaid label")
    return text


def to_mermaid(graph: Graph, highlight: Highlight = NO_HIGHLIGHT) -> str:
    """Mermaid ``stateDiagram-v2``: one edge per row; ``(last)`` marks the row taken last."""
    lines = [
        "stateDiagram-v2",
        f"    %% Generated from {graph.table_name} (fsm_session/machine.py) by `make diagrams`;"
        " do not edit.",
    ]
    lines += [f"    {state}" for state in graph.states]
    lines.append(f"    [*] --> {graph.initial}")
    for edge in graph.edges:
        label = edge_label(edge)
        if edge.key in highlight.edges:
            label = f"(last) {label}"
        lines.append(f"    {edge.source} --> {edge.dest} : {_mermaid_safe(label)}")
    if highlight.state is not None:
        lines.append(f"    classDef current fill:{_FILL},stroke:{_ACCENT},stroke-width:3px")
        lines.append(f"    class {highlight.state} current")
    previous = sorted(highlight.sources - {highlight.state}, key=graph.states.index)
    if previous:
        lines.append(f"    classDef previous stroke:{_ACCENT},stroke-width:2px")
        lines.append(f"    class {','.join(previous)} previous")
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph, highlight: Highlight = NO_HIGHLIGHT) -> str:
    """Graphviz DOT: one edge per pair of states, one label line per row (in edge order)."""
    lines = [
        f"// Generated from {graph.table_name} (fsm_session/machine.py) by `make diagrams`;"
        " do not edit.",
        f"digraph {_dot_id(graph.name)} {{",
        '    graph [rankdir=TB, nodesep=0.5, ranksep=0.7, fontname="Helvetica"];',
        '    node [shape=box, style=rounded, fontname="Helvetica", fontsize=12];',
        '    edge [fontname="Helvetica", fontsize=9];',
        '    "__start__" [shape=point, width=0.15, label=""];',
    ]
    for state in graph.states:
        if state == highlight.state:
            attributes = (
                f' [style="rounded,filled,bold", fillcolor="{_FILL}", color="{_ACCENT}",'
                " penwidth=2.5]"
            )
        elif state in highlight.sources:
            attributes = f' [style="rounded,dashed", color="{_ACCENT}", penwidth=2]'
        else:
            attributes = ""
        lines.append(f"    {_dot_id(state)}{attributes};")
    lines.append(f'    "__start__" -> {_dot_id(graph.initial)};')
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in graph.edges:
        pairs.setdefault((edge.source, edge.dest), []).append(edge)
    order = {state: position for position, state in enumerate(graph.states)}
    for source, dest in sorted(pairs, key=lambda pair: (order[pair[0]], order[pair[1]])):
        # An HTML table, one left-aligned cell per row: Graphviz keeps a table's box clear of
        # the self-loops better than lines broken with <br/>.
        cells = []
        emphasised = False
        for edge in pairs[source, dest]:
            text = html.escape(edge_label(edge), quote=False)
            if edge.key in highlight.edges:
                emphasised = True
                text = f'<b><font color="{_ACCENT}">{text}</font></b>'
            cells.append(f'<tr><td align="left">{text}</td></tr>')
        attributes = (
            f'label=<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
            f"{''.join(cells)}</table>>"
        )
        if emphasised:
            attributes += f', color="{_ACCENT}", penwidth=2.5'
        lines.append(f"    {_dot_id(source)} -> {_dot_id(dest)} [{attributes}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


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


def to_svg(graph: Graph, highlight: Highlight = NO_HIGHLIGHT) -> str:
    """SVG of :func:`to_dot`'s output, laid out by Graphviz (raises :class:`GraphvizMissing`)."""
    return dot_to_svg(to_dot(graph, highlight))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_table(graph: Graph, highlight: Highlight = NO_HIGHLIGHT) -> str:
    """A Markdown table, one line per row; ``=`` is an internal row's next state."""
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
        effect = "" if edge.effect == Effect.NOTHING.value else f"`{edge.effect}`"
        cells = (state, trigger, " ".join(conditions), dest, effect, ", ".join(edge.rules))
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


_RENDERERS: Final[Mapping[str, Callable[[Graph, Highlight], str]]] = {
    "mermaid": to_mermaid,
    "dot": to_dot,
    "svg": to_svg,
    "table": to_table,
}


def render(
    machine: str | Graph,
    fmt: str,
    highlight_state: str | Enum | None = None,
    last: On | None = None,
    *,
    last_source: str | Enum | None = None,
) -> str:
    """Draw ``machine`` (a name in :data:`MACHINES`, or a :class:`Graph`) in ``fmt``.

    ``highlight_state`` (a state name, any case, or member) is filled; ``last``, a row of the
    table, is emphasised with its source state. Raises :class:`DiagramError` for an unknown
    machine, format or state, and :class:`GraphvizMissing` for SVG without Graphviz.
    """
    graph = machine if isinstance(machine, Graph) else extract(machine)
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise DiagramError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return renderer(graph, resolve_highlight(graph, highlight_state, last, last_source))


def diagram_of(core: SessionCore | SocketCore, fmt: str) -> str:
    """Draw the machine of a running ``core``: its state filled, the row it took last emphasised.

    What ``SessionService.diagram(fmt)`` returns; reads the core and changes nothing.
    """
    machine = "session" if isinstance(core, SessionCore) else "socket"
    return render(machine, fmt, highlight_state=core.state, last=core.last)


# --------------------------------------------------------------------------------------------
# Transition paths.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """Call ``getattr(core, trigger)(**kwargs)``; the core then takes ``edge.row``."""

    trigger: str
    label: str
    """How the step prints: the trigger, with the arguments that choose the row in brackets."""
    kwargs: Mapping[str, object] = field(hash=False)
    edge: Edge

    @property
    def row(self) -> On:
        return self.edge.row


@dataclass(frozen=True, slots=True)
class TransitionPath:
    """A shortest sequence of steps from the initial state whose last step takes ``target``."""

    machine: str
    target: Edge
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return format_path(self)


def format_path(path: TransitionPath) -> str:
    """One line: ``open(info) -> opened -> close -> closed``."""
    return " -> ".join(step.label for step in path.steps)


_C = TypeVar("_C", SessionCore, SocketCore)


@dataclass(frozen=True, slots=True)
class _Input(Generic[_C]):
    """One input the search may try: a trigger and the arguments to give it."""

    trigger: str
    label: str
    kwargs: Callable[[_C], dict[str, object]]
    enabled: Callable[[_C], bool]


@dataclass(frozen=True, slots=True)
class _Search(Generic[_C]):
    new_core: Callable[[], _C]
    snapshot: Callable[[_C], Hashable]
    inputs: tuple[_Input[_C], ...]


def _no_kwargs(_core: object) -> dict[str, object]:
    return {}


def _always(_core: object) -> bool:
    return True


# Example data for the session's inputs. A fixed participant ID keeps the set of configurations
# finite, so the search ends.
_INFO: Final = ParticipantInfo(name="Ada")
_NEW_NAME: Final = "Grace"
_AVATAR_URL: Final = "https://example.com/avatar.png"
_PARTICIPANT_ID: Final = "participant-1"
_GHOST_INFO: Final = ParticipantInfo(name=None)


def _opened_reply(core: SessionCore) -> dict[str, object]:
    info = _GHOST_INFO if core.opening is None else core.opening
    return {"participant": Participant(id=_PARTICIPANT_ID, info=info)}


def _updated_reply(core: SessionCore) -> dict[str, object]:
    assert core.participant is not None and core.updating is not None  # see _update_in_flight
    return {"participant": Participant(id=core.participant.id, info=core.updating)}


def _resumed_reply(core: SessionCore) -> dict[str, object]:
    assert core.participant is not None  # see _session_open
    return {"participant": core.participant}


def _resumed_named_reply(core: SessionCore) -> dict[str, object]:
    assert core.participant is not None  # see _session_open
    return {"participant": Participant(id=core.participant.id, info=ParticipantInfo(_NEW_NAME))}


def _session_open(core: SessionCore) -> bool:
    return core.is_open() and core.participant is not None


def _open_in_flight(core: SessionCore) -> bool:
    return core.state is SessionState.OPENING


def _update_in_flight(core: SessionCore) -> bool:
    return core.updating is not None and core.participant is not None


def _close_in_flight(core: SessionCore) -> bool:
    return core.state is SessionState.CLOSING


def _session_snapshot(core: SessionCore) -> Hashable:
    return (core.state, core.identity, core.opening, core.updating, core.participant)


def _socket_snapshot(core: SocketCore) -> Hashable:
    return core.state


# The inputs in the order they are tried: among paths of equal length, the earlier input wins.
# Backend replies are offered only while their request is in flight, as a backend would send
# them; the public calls and connection losses may come at any time.
_SESSION_SEARCH: Final[_Search[SessionCore]] = _Search(
    new_core=SessionCore,
    snapshot=_session_snapshot,
    inputs=(
        _Input("open", "open(info)", lambda core: {"info": _INFO}, _always),
        _Input("open", "open()", _no_kwargs, _always),
        _Input("opened", "opened", _opened_reply, _open_in_flight),
        _Input("open_failed", "open_failed", _no_kwargs, _open_in_flight),
        _Input("update", "update()", _no_kwargs, _always),
        _Input("update", "update(name)", lambda core: {"name": _NEW_NAME}, _always),
        _Input("update", "update(avatar_url)", lambda core: {"avatar_url": _AVATAR_URL}, _always),
        _Input("updated", "updated", _updated_reply, _update_in_flight),
        _Input("update_failed", "update_failed", _no_kwargs, _update_in_flight),
        _Input("resumed", "resumed", _resumed_reply, _session_open),
        _Input("resumed", "resumed(named)", _resumed_named_reply, _session_open),
        _Input("close", "close", _no_kwargs, _always),
        _Input("closed", "closed", _no_kwargs, _close_in_flight),
        _Input("connection_lost", "connection_lost", _no_kwargs, _always),
        _Input("lost", "lost", _no_kwargs, _always),
    ),
)

_SOCKET_SEARCH: Final[_Search[SocketCore]] = _Search(
    new_core=SocketCore,
    snapshot=_socket_snapshot,
    inputs=tuple(
        _Input(trigger, trigger, _no_kwargs, _always)
        for trigger in ("connect", "connected", "connect_failed", "close", "dropped", "closed")
    ),
)


def new_core(machine: str) -> SessionCore | SocketCore:
    """A fresh pure core of ``machine``, as :func:`transition_paths` starts from."""
    if _check_machine(machine) == "session":
        return _SESSION_SEARCH.new_core()
    return _SOCKET_SEARCH.new_core()


def _fire(core: SessionCore | SocketCore, trigger: str, kwargs: Mapping[str, object]) -> None:
    getattr(core, trigger)(**kwargs)


def replay(
    path: TransitionPath, core: SessionCore | SocketCore | None = None
) -> SessionCore | SocketCore:
    """Fire every step of ``path`` on ``core`` (a fresh one by default) and return the core.

    Raises :class:`PathError` when a step starts from another state, is refused, or takes another
    row than it names; any other error goes through.
    """
    if core is None:
        core = new_core(path.machine)
    for number, step in enumerate(path.steps, 1):
        if core.state.name != step.edge.source:
            raise PathError(
                f"step {number} ({step.label}) starts from {step.edge.source}, "
                f"but the core is {core.state.name}"
            )
        try:
            _fire(core, step.trigger, step.kwargs)
        except SessionError as exc:
            raise PathError(f"step {number} ({step.label}) was refused: {exc}") from exc
        if core.last is not step.edge.row:
            raise PathError(f"step {number} ({step.label}) took {core.last!r}")
    return core


def _search(graph: Graph, search: _Search[_C]) -> dict[tuple[str, int], TransitionPath]:
    by_row = {(edge.source, id(edge.row)): edge for edge in graph.edges}

    def rebuild(prefix: tuple[Step, ...]) -> _C:
        core = search.new_core()
        for done in prefix:
            _fire(core, done.trigger, done.kwargs)
        return core

    found: dict[tuple[str, int], TransitionPath] = {}
    seen = {search.snapshot(search.new_core())}
    queue: deque[tuple[Step, ...]] = deque([()])
    while queue and len(found) < len(graph.edges):
        steps: tuple[Step, ...] = queue.popleft()
        here = rebuild(steps)
        for entry in search.inputs:
            if not entry.enabled(here):
                continue
            kwargs = MappingProxyType(entry.kwargs(here))
            core = rebuild(steps)
            source = core.state.name
            try:
                _fire(core, entry.trigger, kwargs)
            except SessionError:
                continue  # refused: no row taken, nothing changed
            assert core.last is not None
            edge = by_row[source, id(core.last)]
            step = Step(entry.trigger, entry.label, kwargs, edge)
            if edge.key not in found:
                found[edge.key] = TransitionPath(graph.name, edge, (*steps, step))
            snapshot = search.snapshot(core)
            if snapshot not in seen:
                seen.add(snapshot)
                queue.append((*steps, step))
    return found


def transition_paths(machine: str) -> list[TransitionPath]:
    """For each row of ``machine``'s table reachable from the initial state, in edge order, a
    shortest path (fewest steps) whose last step takes it. Together they cover every row."""
    graph = extract(machine)
    if machine == "session":
        found = _search(graph, _SESSION_SEARCH)
    else:
        found = _search(graph, _SOCKET_SEARCH)
    return [found[edge.key] for edge in graph.edges if edge.key in found]


# --------------------------------------------------------------------------------------------
# Committed artefacts and the spec's tables.
# --------------------------------------------------------------------------------------------

_SPEC_MARKERS: Final = {
    "session": (("transition-table", "table"), ("session-diagram", "mermaid")),
    "socket": (("socket-table", "table"),),
}
README_FILE: Final = "README.md"
DOC_FILES: Final = (SPEC_FILE, README_FILE)
"""Documents whose marked sections are generated: the spec's tables, the README's diagram."""


def _section(graph: Graph, kind: str) -> str:
    if kind == "mermaid":
        return "```mermaid\n" + to_mermaid(graph) + "```\n"
    return to_table(graph)


def _graphs(graphs: Mapping[str, Graph] | None) -> Mapping[str, Graph]:
    return graphs if graphs is not None else {name: extract(name) for name in MACHINES}


def _table_file(graph: Graph) -> str:
    return (
        f"# The {graph.name} machine\n\n"
        f"Generated from `{graph.table_name}` in `fsm_session/machine.py` by `make diagrams`; do"
        " not edit.\nA trigger with several rows takes the first whose selectors (`[...]`) hold;"
        " its guards\n(`{...}`) then enforce their rules. A next state of `=` stays in the same"
        " state.\n\n" + to_table(graph)
    )


def expected_artefacts(graphs: Mapping[str, Graph] | None = None) -> dict[str, str]:
    """The text artefacts (not the SVG) by path relative to the project root."""
    files: dict[str, str] = {}
    for name, graph in _graphs(graphs).items():
        files[f"{ARTEFACT_DIR}/{name}.mmd"] = to_mermaid(graph)
        files[f"{ARTEFACT_DIR}/{name}.dot"] = to_dot(graph)
        files[f"{ARTEFACT_DIR}/{name}-table.md"] = _table_file(graph)
    return files


def update_spec(text: str, graphs: Mapping[str, Graph] | None = None) -> str:
    """``text`` with the generated tables between each pair of markers present in it.

    The markers are ``<!-- transition-table:begin -->`` / ``<!-- transition-table:end -->`` for
    the session machine and ``<!-- socket-table:... -->`` for the socket's; a pair that is absent
    (or out of order) leaves the text as it is.
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


def _svg_problem(svg: str | None, graph: Graph) -> str | None:
    if svg is None:
        return "missing"
    if svg_stamp(svg) != dot_digest(to_dot(graph)):
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
        problem = _svg_problem(_read(root / ARTEFACT_DIR / f"{name}.svg"), graph)
        if problem is not None:
            problems.append(f"{ARTEFACT_DIR}/{name}.svg is stale: {problem}")
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
    """Write the artefacts under ``root`` and refresh the spec's tables; return what changed.

    Files already up to date are not touched, so running it twice changes nothing. An SVG is
    re-rendered only when stale (or with ``force_svg``): that needs Graphviz, and raises
    :class:`GraphvizMissing` after the text files are written.
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
        path = root / ARTEFACT_DIR / f"{name}.svg"
        stale = force_svg or _svg_problem(_read(path), graph) is not None
        if stale and _write(path, to_svg(graph)):
            written.append(f"{ARTEFACT_DIR}/{name}.svg")
    return written


# --------------------------------------------------------------------------------------------
# Command-line entry points.
# --------------------------------------------------------------------------------------------


def _error(command: str, message: object) -> None:
    print(f"fsm-session {command}: error: {message}", file=sys.stderr)


def diagram_command(machine: str, fmt: str, highlight: str | None, output: str | None) -> int:
    """``fsm-session diagram``: draw ``machine`` in ``fmt`` to ``output`` or standard output.

    Returns 0, 2 for an unknown machine, format or ``--highlight`` state, or 1 when Graphviz is
    missing for SVG or the file cannot be written.
    """
    try:
        text = render(machine, fmt, highlight_state=highlight)
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


if __name__ == "__main__":
    sys.exit(main())
