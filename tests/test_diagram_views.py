"""The readable default view of the diagrams: edges styled by kind, self-loops folded into the
state's box, guards shown by rule ID, a legend; the same checks on a user's own machine
(tests/conference.py) as on the session and the socket."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fsm_session.cli import main as cli_main
from fsm_session.diagrams import (
    definition_of,
    diagram_of,
    extract,
    render,
    to_dot,
    to_mermaid,
    to_table,
    view_of,
)
from fsm_session.diagrams.dot import KIND_STYLES
from fsm_session.diagrams.view import KIND_TITLES, kind_marker
from fsm_session.engine import Definition, Graph
from fsm_session.machine import SessionCore
from fsm_session.models import Participant, ParticipantInfo
from tests.conference import CONFERENCE, Conference

ROOT = Path(__file__).resolve().parents[1]


needs_dot = pytest.mark.usefixtures("graphviz")
DEFINITIONS: dict[str, Definition[Any]] = {
    "session": definition_of("session"),
    "socket": definition_of("socket"),
    "conference": CONFERENCE,
}
machines = pytest.mark.parametrize("machine", sorted(DEFINITIONS))
SVG = "{http://www.w3.org/2000/svg}"
_MERMAID_ARROW = re.compile(r"^    (\w+) --> (\w+) : (.+)$")
_MERMAID_LOOP = re.compile(r"^    (\w+) : ⟲ (.+)$")


def graph(machine: str) -> Graph:
    return extract(DEFINITIONS[machine])


@machines
def test_the_view_folds_every_row_into_exactly_one_line(machine: str) -> None:
    g = graph(machine)
    view = view_of(g)
    lines = [line for loops in view.loops.values() for line in loops]
    lines += [line for arrow in view.arrows for line in arrow.lines]
    folded = [edge.key for line in lines for edge in line.edges]
    assert sorted(folded) == sorted(edge.key for edge in g.edges)
    for state, loops in view.loops.items():
        assert all(edge.self_loop and edge.source == state for x in loops for edge in x.edges)
    for arrow in view.arrows:
        assert arrow.source != arrow.dest
        assert all(edge.kind == arrow.kind for line in arrow.lines for edge in line.edges)
    for line in lines:
        # Guards by rule ID, never by name.
        assert not any(edge_guard in line.text for e in line.edges for edge_guard in e.guards)
        for edge in line.edges:
            assert all(rule in line.text for rule in edge.guard_rules)
            assert line.text.startswith(kind_marker(edge.kind, edge.trigger))


@machines
def test_mermaid_by_structure(machine: str) -> None:
    g = graph(machine)
    text = render(DEFINITIONS[machine], "mermaid")
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2" and lines[1].startswith("    %% Generated from")
    view = view_of(g)
    arrows = [m.groups() for m in map(_MERMAID_ARROW.match, lines) if m]
    loops = [m.groups() for m in map(_MERMAID_LOOP.match, lines) if m]
    assert arrows == [(a.source, a.dest, line.text) for a in view.arrows for line in a.lines]
    assert loops == [(state, line.text) for state in g.states for line in view.loops[state]]
    assert all(source != dest for source, dest, _ in arrows), "a self-loop drawn as an arrow"
    assert f"    [*] --> {g.initial}" in lines
    start = lines.index(f"    note right of {g.initial}")
    legend = "\n".join(lines[start : lines.index("    end note")])
    assert all(title in legend for title in KIND_TITLES.values())
    for line in lines[2:]:
        assert ";" not in line and line.count(":") <= 1, line


@machines
def test_dot_styles_arrows_by_kind_and_folds_loops(machine: str) -> None:
    g = graph(machine)
    text = to_dot(g)
    view = view_of(g)
    for state in g.states:
        node = re.search(rf'^    "{state}" \[label=<(.*)>\];$', text, re.M)
        assert node, state
        for loop in view.loops[state]:
            assert loop.text in node.group(1)
        assert not re.search(rf'^    "{state}" -> "{state}"', text, re.M), "a drawn self-loop"
    for arrow in view.arrows:
        style, colour = KIND_STYLES[arrow.kind]
        pattern = (
            rf'^    "{arrow.source}" -> "{arrow.dest}" '
            rf'\[label=<.*>, style={style}, color="{colour}"\];$'
        )
        found = [m.group(0) for m in re.finditer(pattern, text, re.M)]
        assert any(all(line.text in f for line in arrow.lines) for f in found), arrow
    assert "subgraph cluster_legend" in text
    for kind, title in KIND_TITLES.items():
        style, colour = KIND_STYLES[kind]
        assert re.search(rf"{re.escape(title)}>, style={style}, color=\"{colour}\"", text)


@needs_dot
@machines
def test_svg_parsed_shows_states_loops_kinds_and_legend(machine: str) -> None:
    g = graph(machine)
    svg = render(DEFINITIONS[machine], "svg")
    root = ET.fromstring(svg.encode())
    texts = [t.text for t in root.iter(f"{SVG}text")]
    view = view_of(g)
    for state in g.states:
        assert state in texts
        assert all(loop.text in texts for loop in view.loops[state])
    assert "legend" in texts
    assert all(any(t and title in t for t in texts) for title in KIND_TITLES.values())
    dashes = {"solid": None, "dashed": "5,2", "dotted": "1,5"}
    edges = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "edge":
            title = group.find(f"{SVG}title")
            path = group.find(f"{SVG}path")
            assert title is not None and title.text is not None and path is not None
            label = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
            edges.setdefault(title.text.replace("&#45;", "-"), []).append((path, label))
    for arrow in view.arrows:
        style, colour = KIND_STYLES[arrow.kind]
        drawn = edges[f"{arrow.source}->{arrow.dest}"]
        matching = [p for p, label in drawn if arrow.lines[0].text in label]
        assert matching, arrow
        assert matching[0].get("stroke") == colour
        assert matching[0].get("stroke-dasharray") == dashes[style]


@machines
def test_the_table_lists_every_row(machine: str) -> None:
    g = graph(machine)
    table = to_table(g).splitlines()
    assert len(table) == 2 + len(g.edges)


def test_highlight_in_the_readable_view() -> None:
    core = SessionCore()
    core.open(ParticipantInfo("Ada"))
    core.opened(Participant("p1", ParticipantInfo("Ada")))
    mermaid = diagram_of(core, "mermaid")
    assert "OPENING --> OPEN : (last) ← opened [opening_named] {M2}" in mermaid
    assert "class OPEN current" in mermaid and "class OPENING previous" in mermaid
    core.update(name="Grace")
    mermaid = diagram_of(core, "mermaid")
    assert "    OPEN : ⟲ (last) update() {M4 R10} / send_update" in mermaid
    dot = diagram_of(core, "dot")
    assert "<b>update() {M4 R10} / send_update</b>" in dot
    conference = Conference()
    conference.join("lobby")
    assert "class JOINING current" in diagram_of(conference, "mermaid")
    assert "(last) join() {C1} / send_join" in diagram_of(conference, "mermaid")


def test_full_view_names_every_guard_the_readable_view_does_not() -> None:
    g = extract("session")
    full, readable = to_mermaid(g, full=True), to_mermaid(g)
    assert "info_is_valid" in full and "info_is_valid" not in readable
    assert "OPEN --> OPEN" in full and "OPEN --> OPEN" not in readable
    assert to_dot(g, full=True) != to_dot(g)


def test_cli_diagram_full_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["diagram", "--format", "mermaid", "--full"]) == 0
    assert capsys.readouterr().out == render("session", "mermaid", full=True)
    assert cli_main(["diagram", "--machine", "socket", "--format", "dot"]) == 0
    assert capsys.readouterr().out == render("socket", "dot")


@pytest.mark.parametrize("name", ["session", "socket"])
def test_committed_default_svg_is_the_readable_view(name: str) -> None:
    svg = (ROOT / "diagrams" / f"{name}.svg").read_text(encoding="utf-8")
    root = ET.fromstring(svg.encode())
    texts = {t.text for t in root.iter(f"{SVG}text")}
    view = view_of(extract(name))
    assert "legend" in texts
    assert all(line.text in texts for loops in view.loops.values() for line in loops)


def test_the_readme_door_prints_the_diagram_the_readme_shows() -> None:
    """The README's own machine runs, and the Mermaid it shows is what it prints."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("class DoorModel(Core):")
    code = text[text.rindex("```python\n", 0, start) + 10 : text.index("```\n", start)]
    begin = text.index("```mermaid\n", start) + len("```mermaid\n")
    shown = text[begin : text.index("```\n", begin)]
    printed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert shown.startswith("stateDiagram-v2\n") and shown in printed
    assert "D4 open Door.LOCKED" in printed and "lock -> unlock(brass)" in printed


def test_python_m_fsm_session_diagrams_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fsm_session.diagrams", "--root", str(ROOT), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
