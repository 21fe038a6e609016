"""The report: one row per rule (what was tried, what was seen), coverage, and its text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from fsm_session.machine import SessionState

S = SessionState

CHECKS: Final[dict[str, str]] = {
    "P1": "a token signed with another secret is refused at the handshake",
    "P4": "each request gets exactly one reply, in order, carrying its id; no duplicate frames",
    "P8": "close is answered with closed (same id) before the socket closes",
    "R2": "the backend refuses info outside the limits (invalid_participant_info)",
    "R3": "the backend refuses an external ID other than the token's (external_id_mismatch), "
    "even from a client that skips its own guard",
    "R4": "open(info) gives OPEN and the participant as sent, with the token's external ID; "
    "the same external ID always gets the same participant ID",
    "R5": "opening again with the same info returns the same participant",
    "R6": "open() opens a ghost (GHOST, no name, a fresh ID each time) or reopens the "
    "remembered identity",
    "R7": "a ghost given a name by update is OPEN",
    "R8": "is_open() is true exactly in OPEN and GHOST",
    "R9": "is_local_participant(p) is true for the open participant",
    "R10": "update applies the values and never changes the participant ID or external ID",
    "R11": "close() ends CLOSED",
    "R12": "a session opens and closes any number of times",
    "R13": "a refused call changes nothing",
    "R14": "a session whose connection dropped is resumed, same participant (P9)",
    "R17": "opening the same external ID elsewhere ends the first session, same participant ID",
}

NOT_REACHABLE: Final[dict[tuple[str, str], str]] = {}
"""Rows, by ``(state, trigger)``, that no use of the public API and no backend can make the
service take today, with the reason. They are reported apart; if a run covers one anyway, it
counts as covered."""


class RuleViolation(AssertionError):
    """A backend broke ``rule``; ``steps`` are the calls that showed it, in order."""

    def __init__(self, rule: str, message: str, steps: tuple[str, ...] = ()) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message
        self.steps = steps


@dataclass(slots=True)
class RuleResult:
    """One rule's verdict: ``passed`` or broken with the shortest failing sequence found."""

    rule: str
    description: str
    passed: bool = True
    message: str = ""
    steps: tuple[str, ...] = ()
    found_by: str = ""
    """``probe``, ``path`` or ``hypothesis``."""
    seconds: float | None = None
    """Seconds from the start of the run to the first detection."""


Row = tuple[str, int]


@dataclass(slots=True)
class ConformanceReport:
    """What :func:`check_backend` found."""

    url: str
    rules: dict[str, RuleResult]
    covered: set[Row] = field(default_factory=set)
    """The rows (``(state, index)``) of the session machine that a real service took."""
    rows: tuple[Row, ...] = ()
    """Every row of the session machine."""
    row_labels: dict[Row, str] = field(default_factory=dict)
    unreachable: dict[Row, str] = field(default_factory=dict)
    """Rows of :data:`NOT_REACHABLE` that the run did not cover, with the reason."""
    paths_replayed: int = 0
    examples: int = 0
    seconds: float = 0.0
    inconclusive: list[str] = field(default_factory=list)
    """Things the run could not decide (a rate-limited call, a race it lost)."""

    @property
    def ok(self) -> bool:
        return all(result.passed for result in self.rules.values())

    @property
    def broken(self) -> list[str]:
        return [rule for rule, result in self.rules.items() if not result.passed]

    @property
    def reachable(self) -> tuple[Row, ...]:
        """The rows the public API and the backend can make the service take."""
        return tuple(row for row in self.rows if row not in self.unreachable)

    @property
    def coverage(self) -> float:
        """Covered rows among the reachable ones (1.0 is every one of them)."""
        reachable = self.reachable
        if not reachable:
            return 1.0
        return len(self.covered & set(reachable)) / len(reachable)

    @property
    def uncovered(self) -> list[str]:
        """Labels of the reachable rows that the run did not cover."""
        return [self.row_labels[row] for row in self.reachable if row not in self.covered]


# --------------------------------------------------------------------------------------------


def _lines(report: ConformanceReport) -> Iterator[str]:
    yield f"conformance of {report.url}: {'PASS' if report.ok else 'FAIL'}"
    yield ""
    yield "| rule | verdict | found by | after (s) | check |"
    yield "| --- | --- | --- | --- | --- |"
    for rule_id, result in report.rules.items():
        verdict = "passed" if result.passed else "BROKEN"
        after = "" if result.seconds is None else f"{result.seconds:.2f}"
        yield f"| {rule_id} | {verdict} | {result.found_by} | {after} | {result.description} |"
    yield ""
    reachable = report.reachable
    covered = len(report.covered & set(reachable))
    yield (
        f"transition coverage: {covered}/{len(reachable)} rows reachable through the public API"
        f" ({report.coverage:.0%}); {len(report.covered)}/{len(report.rows)} rows of the"
        f" session machine; {report.paths_replayed} paths replayed,"
        f" {report.examples} Hypothesis examples, {report.seconds:.1f} s"
    )
    for label in report.uncovered:
        yield f"  not covered: {label}"
    for row, reason in report.unreachable.items():
        yield f"  not reachable through the public API: {report.row_labels[row]}: {reason}"
    for rule_id in report.broken:
        result = report.rules[rule_id]
        yield ""
        yield f"{rule_id} broken: {result.message}"
        yield "  shortest failing sequence:"
        for n, step in enumerate(result.steps, 1):
            yield f"    {n}. {step}"
    for note in report.inconclusive[:10]:
        yield f"inconclusive: {note}"


def format_report(report: ConformanceReport) -> str:
    """The report as text: a per-rule table, coverage, and each broken rule's sequence."""
    return "\n".join(_lines(report)) + "\n"
