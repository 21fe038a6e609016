"""Diagrams, tables and transition paths generated from the machine tables (issue 5)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter, deque
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from fsm_session import diagrams
from fsm_session.diagrams import (
    DiagramError,
    Graph,
    GraphvizMissing,
    diagram_command,
    diagram_of,
    edge_label,
    expected_artefacts,
    extract,
    format_path,
    graph_from_table,
    paths_command,
    regenerate,
    render,
    replay,
    resolve_highlight,
    stale_artefacts,
    to_dot,
    to_mermaid,
    to_table,
    transition_paths,
    update_spec,
)
from fsm_session.machine import (
    SESSION_MACHINE,
    SESSION_TABLE,
    SOCKET_MACHINE,
    SOCKET_TABLE,
    Effect,
    On,
    SessionCore,
    SessionState,
    SocketCore,
    WebSocketState,
)
from fsm_session.models import Participant, ParticipantInfo

ROOT = Path(__file__).resolve().parents[1]
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.usefixtures("graphviz")  # tests/conftest.py: fails under CI=true

MACHINES: dict[str, tuple[Any, type[Enum], Any, type[SessionCore | SocketCore]]] = {
    "session": (SESSION_TABLE, SessionState, SESSION_MACHINE, SessionCore),
    "socket": (SOCKET_TABLE, WebSocketState, SOCKET_MACHINE, SocketCore),
}
machines = pytest.mark.parametrize("machine", sorted(MACHINES))


def _name(thing: object) -> str:
    return str(getattr(thing, "__name__", thing))


# --------------------------------------------------------------------------------------------
# The graph model against the tables and against the transitions Machine.
# --------------------------------------------------------------------------------------------


@machines
def test_graph_matches_the_table(machine: str) -> None:
    table, states, _, _ = MACHINES[machine]
    graph = extract(machine)
    assert graph.states == tuple(state.name for state in states)
    assert graph.initial == "CLOSED"
    rows = [(state, index, row) for state in states for index, row in enumerate(table[state])]
    assert len(graph.edges) == len(rows)
    edges = {edge.key: edge for edge in graph.edges}
    assert len(edges) == len(rows), "two edges share a key"
    for state, index, row in rows:
        edge = edges[state.name, index]
        assert edge.row is row
        assert edge.source == state.name
        assert edge.trigger == row.trigger
        assert edge.internal is (row.dest is None)
        assert edge.dest == (state if row.dest is None else row.dest).name
        assert edge.selectors == tuple(_name(f) for f in row.when)
        assert edge.guards == tuple(g.__name__ for g in row.guards)
        assert edge.actions == tuple(_name(f) for f in row.do)
        assert edge.effect == ("" if row.effect in (None, Effect.NOTHING) else row.effect.value)
        assert edge.rules == tuple(row.rule.split())
        assert all(rule for rule in edge.rules), f"{edge} names no rule"


@machines
def test_graph_matches_the_transitions_machine(machine: str) -> None:
    """What the shared ``transitions.Machine`` really holds is what the diagrams draw."""
    built = MACHINES[machine][2]
    graph = extract(machine)
    assert list(built.states) == list(graph.states)
    assert built.initial == graph.initial
    held = 0
    for trigger, event in built.events.items():
        for source, transitions in event.transitions.items():
            edges = sorted(
                (e for e in graph.edges if e.source == source and e.trigger == trigger),
                key=lambda e: e.index,
            )
            assert len(transitions) == len(edges), (trigger, source)
            for transition, edge in zip(transitions, edges, strict=True):
                held += 1
                assert transition.row is edge.row
                assert transition.dest == (None if edge.internal else edge.dest)
                assert [_name(c.func) for c in transition.conditions] == [
                    *edge.selectors,
                    *edge.guards,
                ]
                assert all(c.target for c in transition.conditions)
                assert [_name(a) for a in transition.after] == list(edge.actions)
    assert held == len(graph.edges)


@machines
def test_edges_are_sorted_by_source_trigger_and_priority(machine: str) -> None:
    graph = extract(machine)
    keys = [(graph.states.index(e.source), e.trigger, e.index) for e in graph.edges]
    assert keys == sorted(keys)


def test_equal_rows_of_two_states_stay_two_edges() -> None:
    """OPEN's and GHOST's ``close`` rows read alike, yet are two rows (they compare by identity)."""
    graph = extract("session")
    closes = [e for e in graph.edges if e.trigger == "close" and e.source in ("OPEN", "GHOST")]
    assert len(closes) == 2
    assert closes[0].row != closes[1].row
    assert (closes[0].row.trigger, closes[0].row.dest) == (
        closes[1].row.trigger,
        closes[1].row.dest,
    )
    assert graph.edges_of(closes[0].row) == (closes[0],)


def test_edge_label_notation() -> None:
    edges = {(e.source, e.trigger, e.index): e for e in extract("session").edges}
    assert edge_label(edges["CLOSED", "open", 0]) == (
        "open [has_info] {info_is_valid, external_id_matches_token} / send_open"
    )
    assert edge_label(edges["CLOSED", "open", 2]) == "open / send_open"
    assert edge_label(edges["CLOSED", "connection_lost", 4]) == "connection_lost"


# --------------------------------------------------------------------------------------------
# Renderers.
# --------------------------------------------------------------------------------------------

_MERMAID_EDGE = re.compile(r"^    (\S+) --> (\S+) : (.+)$")


def _mermaid_edges(text: str) -> Counter[tuple[str, str, str]]:
    return Counter(match.groups() for match in map(_MERMAID_EDGE.match, text.splitlines()) if match)


@machines
def test_mermaid_has_every_state_and_edge(machine: str) -> None:
    graph = extract(machine)
    text = to_mermaid(graph, full=True)
    assert text.startswith("stateDiagram-v2\n")
    lines = [line for line in text.splitlines() if not line.strip().startswith("%%")]
    body = [line.strip() for line in lines[1:]]
    assert f"[*] --> {graph.initial}" in body
    for state in graph.states:
        assert state in body, f"{state} is not declared"
    expected = Counter((e.source, e.dest, edge_label(e)) for e in graph.edges)
    assert _mermaid_edges(text) == expected
    # Every other line is a declaration or the start arrow: nothing unparsed is left over.
    assert len(body) == len(graph.states) + 1 + len(graph.edges)
    for line in body:
        # A Mermaid transition label may hold no ':' past the separator and no ';'.
        assert ";" not in line and line.count(":") <= 1, line


@machines
def test_dot_has_every_state_and_row(machine: str) -> None:
    graph = extract(machine)
    text = to_dot(graph, full=True)
    for state in graph.states:
        assert re.search(rf'^    "{state}"[ ;]', text, re.M), state
    for edge in graph.edges:
        assert f">{edge_label(edge)}<" in text
        assert f'"{edge.source}" -> "{edge.dest}"' in text


@needs_dot
@machines
def test_dot_lays_out_to_an_svg_showing_every_state_and_row(machine: str) -> None:
    import graphviz

    graph = extract(machine)
    svg = graphviz.Source(to_dot(graph, full=True)).pipe(format="svg", encoding="utf-8")
    ET.fromstring(svg.encode())  # well-formed XML
    for state in graph.states:
        assert f">{state}<" in svg, state
    for edge in graph.edges:
        assert f">{edge_label(edge)}<" in svg, edge_label(edge)


@needs_dot
def test_svg_is_stamped_and_carries_no_graphviz_version() -> None:
    graph = extract("session")
    svg = render("session", "svg")
    assert "Generated by graphviz version" not in svg
    assert diagrams.svg_stamp(svg) == diagrams.dot_digest(to_dot(graph))
    ET.fromstring(svg.encode())
    assert svg.endswith("</svg>\n")


def test_normalise_svg_drops_the_version_comment() -> None:
    raw = (
        '<?xml version="1.0"?>\r\n<!-- Generated by graphviz version 9.9.9 (20990101.0000)\r\n'
        " -->\r\n<!-- Title: x Pages: 1 -->\r\n<svg><text>A</text></svg>\r\n\r\n"
    )
    svg = diagrams.normalise_svg(raw, "digraph {}")
    assert "graphviz version" not in svg and "\r" not in svg
    assert diagrams.svg_stamp(svg) == diagrams.dot_digest("digraph {}")
    assert svg.index("Rendered by Graphviz") < svg.index("<svg>")
    assert diagrams.normalise_svg(svg.replace(_stamp_line(svg), ""), "digraph {}") == svg


def _stamp_line(svg: str) -> str:
    return next(line + "\n" for line in svg.splitlines() if "Rendered by Graphviz" in line)


def test_svg_without_graphviz_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagrams.dot.shutil, "which", lambda name: None)
    with pytest.raises(GraphvizMissing, match="apt-get install graphviz"):
        render("session", "svg")


@machines
def test_table_has_one_line_per_row(machine: str) -> None:
    graph = extract(machine)
    lines = to_table(graph).splitlines()
    assert lines[0].startswith("| state | trigger | selectors / guards | next state |")
    assert len(lines) == 2 + len(graph.edges)
    for line, edge in zip(lines[2:], graph.edges, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == edge.source and cells[1] == f"`{edge.trigger}`"
        assert cells[3] == ("=" if edge.internal else edge.dest)
        assert cells[5] == ", ".join(edge.rules)


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "table", "svg"])
@machines
def test_output_is_deterministic(machine: str, fmt: str, request: pytest.FixtureRequest) -> None:
    if fmt == "svg":
        request.getfixturevalue("graphviz")  # fails under CI=true, skips elsewhere, without dot
    assert render(machine, fmt) == render(machine, fmt)
    assert extract(machine) == extract(machine)
    text = render(machine, fmt)
    assert str(ROOT) not in text and "/work/" not in text


def test_unknown_machine_format_or_state_is_refused() -> None:
    with pytest.raises(DiagramError, match="unknown machine"):
        render("elevator", "dot")
    with pytest.raises(DiagramError, match="unknown format"):
        render("session", "png")
    with pytest.raises(DiagramError, match="expected one of CLOSED, OPENING, OPEN, GHOST"):
        render("session", "dot", highlight_state="OPENED")


# --------------------------------------------------------------------------------------------
# Live highlighting.
# --------------------------------------------------------------------------------------------


def _open_session() -> SessionCore:
    core = SessionCore()
    core.open(info=ParticipantInfo(name="Ada"))
    core.opened(participant=Participant(id="p1", info=ParticipantInfo(name="Ada")))
    return core


def test_highlight_marks_the_current_state_and_the_last_row() -> None:
    core = _open_session()
    last = core.last
    assert last is not None and core.state is SessionState.OPEN
    mermaid = diagram_of(core, "mermaid", full=True)
    assert "    class OPEN current" in mermaid
    assert "    class OPENING previous" in mermaid
    assert "OPENING --> OPEN : (last) opened [opening_named] {reply_is_participant}" in mermaid
    assert mermaid.count("(last)") == 1
    dot = diagram_of(core, "dot", full=True)
    assert re.search(r'^    "OPEN" \[style="rounded,filled,bold"', dot, re.M)
    assert re.search(r'^    "OPENING" \[style="rounded,dashed"', dot, re.M)
    assert re.search(r'^    "OPENING" -> "OPEN" \[.*<b>.*opened.*</b>.*penwidth', dot, re.M)
    table = diagram_of(core, "table")
    assert "| **OPEN** |" in table
    assert "**`opened` (last)**" in table
    # The picture without highlighting does not have any of it.
    assert "current" not in render("session", "mermaid") and "(last)" not in to_table(
        extract("session")
    )


def test_highlight_of_an_internal_row_and_of_the_socket() -> None:
    core = _open_session()
    core.update(name="Grace")
    mermaid = diagram_of(core, "mermaid", full=True)
    assert "class OPEN current" in mermaid and "previous" not in mermaid
    assert "OPEN --> OPEN : (last) update {no_update_in_flight" in mermaid
    socket = SocketCore()
    socket.connect()
    assert "class CONNECTING current" in diagram_of(socket, "mermaid")
    assert "CLOSED --> CONNECTING : (last) connect()" in diagram_of(socket, "mermaid")


def test_highlight_of_a_fresh_core_fills_the_initial_state_only() -> None:
    text = diagram_of(SessionCore(), "mermaid")
    assert "class CLOSED current" in text and "(last)" not in text


def test_highlight_by_name_any_case_and_by_member() -> None:
    graph = extract("session")
    assert resolve_highlight(graph, "ghost").state == "GHOST"
    assert resolve_highlight(graph, SessionState.GHOST).state == "GHOST"
    with pytest.raises(DiagramError, match="not a row"):
        resolve_highlight(graph, "OPEN", On("nowhere"))


def test_highlight_of_a_row_object_shared_by_two_states() -> None:
    shared = On("ping")
    table = {state: (shared, On("lost", SessionState.CLOSED)) for state in SessionState}
    table[SessionState.CLOSED] = (shared, On("go", SessionState.OPEN))
    graph = graph_from_table("toy", table, SessionState.CLOSED)
    both = resolve_highlight(graph, None, shared)
    assert len(both.edges) == len(SessionState)
    assert resolve_highlight(graph, "GHOST", shared).edges == {("GHOST", 0)}
    assert resolve_highlight(graph, None, shared, last_source="OPEN").edges == {("OPEN", 0)}


@needs_dot
def test_highlighted_svg_shows_the_state() -> None:
    svg = diagram_of(_open_session(), "svg")
    assert "#ffe082" in svg and ">OPEN<" in svg


# --------------------------------------------------------------------------------------------
# Transition paths.
# --------------------------------------------------------------------------------------------


@machines
def test_paths_cover_every_row(machine: str) -> None:
    graph = extract(machine)
    paths = transition_paths(machine)
    assert [path.target.key for path in paths] == [edge.key for edge in graph.edges]
    assert {id(path.target.row) for path in paths} == {id(edge.row) for edge in graph.edges}


@machines
def test_paths_replay_legally_on_a_fresh_pure_core(machine: str) -> None:
    _, _, _, core_type = MACHINES[machine]
    for path in transition_paths(machine):
        core = core_type()
        assert path.steps and path.steps[-1].edge == path.target
        for step in path.steps:
            assert core.state.name == step.edge.source, format_path(path)
            getattr(core, step.trigger)(**step.kwargs)
            assert core.last is step.row, format_path(path)
        assert core.last is path.target.row
        assert core.state.name == path.target.dest
        replayed = replay(path)
        assert replayed.last is path.target.row


def _state_distances(graph: Graph) -> dict[str, int]:
    distance = {graph.initial: 0}
    queue = deque([graph.initial])
    while queue:
        here = queue.popleft()
        for edge in graph.edges:
            if edge.source == here and edge.dest not in distance:
                distance[edge.dest] = distance[here] + 1
                queue.append(edge.dest)
    return distance


@machines
def test_paths_are_shortest(machine: str) -> None:
    graph = extract(machine)
    distance = _state_distances(graph)
    for path in transition_paths(machine):
        # No path is shorter than reaching its row's state, then taking the row.
        assert len(path.steps) >= distance[path.target.source] + 1
        if machine == "socket":  # no data: the state graph alone decides
            assert len(path.steps) == distance[path.target.source] + 1


def test_data_dependent_rows_get_the_inputs_they_need() -> None:
    paths = {
        (p.target.source, p.target.trigger, p.target.index): p for p in transition_paths("session")
    }
    assert format_path(paths["CLOSED", "open", 0]) == "open(info)"
    assert format_path(paths["CLOSED", "open", 2]) == "open()"
    # Reopening with the remembered identity needs an earlier open with info that succeeded.
    reopen = paths["CLOSED", "open", 1]
    assert reopen.target.selectors == ("remembers_identity",)
    assert format_path(reopen).startswith("open(info) -> opened -> ")
    assert format_path(reopen).endswith(" -> open()")
    assert len(reopen.steps) == 4
    assert reopen.steps[-1].kwargs == {}
    # A reply needs its request in flight.
    assert (
        format_path(paths["GHOST", "updated", 3]) == "open() -> opened -> update(name) -> updated"
    )
    assert format_path(paths["GHOST", "updated", 4]) == (
        "open() -> opened -> update(avatar_url) -> updated"
    )
    opened = paths["OPENING", "opened", 1].steps[-1]
    assert isinstance(opened.kwargs["participant"], Participant)


def test_replay_reports_a_step_that_takes_another_row() -> None:
    path = next(p for p in transition_paths("session") if str(p) == "open(info) -> opened")
    other = next(p for p in transition_paths("session") if str(p) == "open() -> opened")
    broken = diagrams.TransitionPath("session", path.target, (other.steps[0], path.steps[1]))
    with pytest.raises(diagrams.PathError, match="took"):
        replay(broken)


def test_paths_command_prints_one_line_per_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert paths_command("session") == 0
    out = capsys.readouterr().out.splitlines()
    graph = extract("session")
    assert out[0].startswith("# session machine:")
    assert f"cover {len(graph.edges)} of {len(graph.edges)} transitions" in out[0]
    assert len(out) == 1 + len(graph.edges)
    for line, path in zip(out[1:], transition_paths("session"), strict=True):
        shown, _, comment = line.partition("  # ")
        assert shown.rstrip() == format_path(path)
        assert comment.startswith(f"{path.target.source} --{edge_label(path.target)}--> ")
    assert any(line.startswith("open(info) -> close -> closed ") for line in out)
    assert paths_command("socket") == 0
    assert paths_command("elevator") == 2
    assert "unknown machine" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# CLI functions.
# --------------------------------------------------------------------------------------------


def test_diagram_command_to_stdout_and_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert diagram_command("socket", "mermaid", None, None) == 0
    assert capsys.readouterr().out == render("socket", "mermaid")
    target = tmp_path / "x.dot"
    assert diagram_command("session", "dot", "open", str(target)) == 0
    assert target.read_text() == render("session", "dot", highlight_state="OPEN")
    assert capsys.readouterr().out == ""


def test_diagram_command_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert diagram_command("session", "dot", "OPENED", None) == 2
    err = capsys.readouterr().err
    assert "unknown state 'OPENED'" in err and "CLOSING" in err
    assert diagram_command("session", "gif", None, None) == 2
    assert diagram_command("elevator", "dot", None, None) == 2
    assert diagram_command("session", "dot", None, str(tmp_path / "missing" / "x.dot")) == 1
    monkeypatch.setattr(diagrams.dot.shutil, "which", lambda name: None)
    assert diagram_command("session", "svg", None, None) == 1
    assert "apt-get install graphviz" in capsys.readouterr().err


@needs_dot
def test_diagram_command_writes_an_svg_with_every_state_and_row(tmp_path: Path) -> None:
    target = tmp_path / "x.svg"
    assert diagram_command("session", "svg", None, str(target), full=True) == 0
    svg = target.read_text()
    graph = extract("session")
    assert all(f">{state}<" in svg for state in graph.states)
    assert all(f">{edge_label(edge)}<" in svg for edge in graph.edges)


# --------------------------------------------------------------------------------------------
# Committed artefacts.
# --------------------------------------------------------------------------------------------

STALE = "the generated diagrams or spec tables are stale; run `make diagrams`:\n"


def test_committed_diagrams_and_spec_tables_are_fresh() -> None:
    problems = stale_artefacts(ROOT)
    assert not problems, STALE + "\n".join(problems)


def test_committed_artefacts_exist() -> None:
    for name in ("session", "socket"):
        for suffix in (".mmd", ".dot", ".svg", "-full.mmd", "-full.dot", "-full.svg", "-table.md"):
            assert (ROOT / "diagrams" / f"{name}{suffix}").is_file(), STALE + name + suffix


@machines
def test_committed_svg_is_well_formed_and_shows_every_state_and_row(machine: str) -> None:
    svg = (ROOT / "diagrams" / f"{machine}-full.svg").read_text(encoding="utf-8")
    ET.fromstring(svg.encode())
    graph = extract(machine)
    assert all(f">{state}<" in svg for state in graph.states), STALE
    assert all(f">{edge_label(edge)}<" in svg for edge in graph.edges), STALE
    assert "Generated by graphviz version" not in svg


def test_the_spec_embeds_the_generated_tables() -> None:
    spec = (ROOT / "specs" / "session.md").read_text(encoding="utf-8")
    if "<!-- transition-table:begin -->" not in spec:
        pytest.skip("specs/session.md has no transition-table markers yet")
    assert to_table(extract("session")) in spec, STALE
    assert update_spec(spec) == spec, STALE


def _changed_session_table() -> dict[SessionState, tuple[On, ...]]:
    table = dict(SESSION_TABLE)
    rows = list(table[SessionState.OPEN])
    index = next(i for i, row in enumerate(rows) if row.trigger == "close")
    rows[index] = dataclasses.replace(rows[index], dest=SessionState.CLOSED)  # skip CLOSING
    table[SessionState.OPEN] = tuple(rows)
    return table


def test_changing_one_transition_makes_the_staleness_check_fail() -> None:
    changed = graph_from_table("session", _changed_session_table(), SessionState.CLOSED)
    assert changed != extract("session")
    problems = stale_artefacts(ROOT, {"session": changed, "socket": extract("socket")})
    stale = "\n".join(problems)
    for name in (
        "session.mmd",
        "session.dot",
        "session-table.md",
        "session.svg",
        "session-full.svg",
    ):
        assert f"diagrams/{name} is stale" in stale
    assert "socket" not in stale
    if "<!-- transition-table:begin -->" in (ROOT / "specs" / "session.md").read_text():
        assert "specs/session.md" in stale


SPEC = """# A spec

Text before.

<!-- transition-table:begin -->
whatever was here
<!-- transition-table:end -->

Between.

<!-- socket-table:begin --><!-- socket-table:end -->

After.
"""


def test_update_spec_replaces_only_between_the_markers() -> None:
    text = update_spec(SPEC)
    assert "whatever was here" not in text
    assert to_table(extract("session")) in text and to_table(extract("socket")) in text
    assert text.startswith("# A spec\n\nText before.\n\n<!-- transition-table:begin -->\n\n|")
    assert text.endswith("|\n\n<!-- socket-table:end -->\n\nAfter.\n")
    assert update_spec(text) == text
    assert update_spec("no markers\n") == "no markers\n"
    only_begin = "<!-- transition-table:begin -->\n"
    assert update_spec(only_begin) == only_begin


def _fake_svg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render SVG without Graphviz: the regeneration logic does not depend on the layout."""

    def fake(
        graph: Graph, highlight: diagrams.Highlight = diagrams.NO_HIGHLIGHT, *, full: bool = False
    ) -> str:
        names = "".join(f"<text>{state}</text>" for state in graph.states)
        return diagrams.normalise_svg(f"<svg>{names}</svg>\n", to_dot(graph, highlight, full=full))

    monkeypatch.setattr(diagrams.dot, "to_svg", fake)


def test_regeneration_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAVE_DOT:
        _fake_svg(monkeypatch)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "session.md").write_text(SPEC)
    first = regenerate(tmp_path)
    assert set(first) == {*expected_artefacts(), "specs/session.md"} | {
        "diagrams/session.svg",
        "diagrams/socket.svg",
        "diagrams/session-full.svg",
        "diagrams/socket-full.svg",
    }
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert regenerate(tmp_path) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == snapshot
    assert stale_artefacts(tmp_path) == []
    # A changed table is caught, and regenerating fixes it.
    changed = {
        "session": graph_from_table("session", _changed_session_table(), SessionState.CLOSED),
        "socket": extract("socket"),
    }
    assert len(stale_artefacts(tmp_path, changed)) == 8
    assert len(regenerate(tmp_path, changed)) == 8
    assert stale_artefacts(tmp_path, changed) == []


def test_regeneration_without_a_spec_writes_only_diagrams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_svg(monkeypatch)
    written = regenerate(tmp_path)
    assert not (tmp_path / "specs").exists()
    assert all(name.startswith("diagrams/") for name in written)


def test_main_checks_and_refuses_a_wrong_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert diagrams.main(["--root", str(ROOT), "--check"]) == 0, STALE + capsys.readouterr().err
    assert diagrams.main(["--root", str(tmp_path)]) == 2
    assert "no pyproject.toml" in capsys.readouterr().err
    (tmp_path / "pyproject.toml").write_text("")
    assert diagrams.main(["--root", str(tmp_path), "--check"]) == 1
    assert "run `make diagrams`" in capsys.readouterr().err
