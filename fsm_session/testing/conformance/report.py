"""The report: one row per rule (what was tried, what was seen), coverage, and its text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from fsm_session.machine import SessionState

S = SessionState

CHECKS: Final[dict[str, str]] = {
    "P1": "the upgrade: subprotocol selected; no, bad or foreign token, wrong claim types, "
    "expired token and no subprotocol refused with the status and code of the table",
    "P2": "text JSON objects only: binary closes 1003, over the size limit (all fragments) "
    "1009, not JSON, BOM, unknown type, wrong member types answered and the connection served",
    "P3": "request ids: readable ids, strictly increasing, used up by refused frames",
    "P4": "one reply per request, in order, carrying its id; the order of the checks",
    "P5": "error replies: id, code, message and the rule the table gives the code",
    "P6": "open: the participant as sent with the token's external ID; the order of its checks",
    "P7": "update: values applied, null unchanged, session_not_open without a session",
    "P8": "close is answered with closed (same id), also without a session",
    "P9": "resume: a dropped session is taken up, same participant; others are unknown",
    "P10": "token: a valid token is accepted with its claims; a foreign one refused (R16)",
    "P11": "an expired token ends the connection: ended token_expired, then close 4002",
    "P12": "the same external ID opened elsewhere: ended switched, then close 4001",
    "P13": "a silent connection is closed with 4003 after the idle timeout",
    "P14": "a burst over the rate is answered rate_limited (rule P14) in order, with its ids",
    "P15": "framing errors close with the RFC 6455 code, the close frame before the TCP close",
    "P16": "no access token in any message, close reason or handshake rejection",
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
    "R15": "the backend answers a ping with a pong, and pings keep a connection open",
    "R16": "the backend refuses an invalid or expired token sent with token (R16 codes)",
    "R17": "opening the same external ID elsewhere ends the first session, same participant ID",
}

NOT_REACHABLE: Final[dict[tuple[str, str], str]] = {}
"""Rows, by ``(state, trigger)``, that no use of the public API and no backend can make the
service take today, with the reason. They are reported apart; if a run covers one anyway, it
counts as covered."""


class RuleViolation(AssertionError):
    """A backend broke ``rule``; ``steps`` are the calls that showed it, in order."""

    def __init__(
        self,
        rule: str,
        message: str,
        steps: tuple[str, ...] = (),
        frames: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message
        self.steps = steps
        self.frames = frames
        """The last frames exchanged before it was seen, each starting with ``->`` when sent
        and ``<-`` when received."""


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
    frames: tuple[str, ...] = ()
    """The last frames exchanged when the failure was seen."""
    tried: list[str] = field(default_factory=list)
    """What the run tried against this rule (probes; paths and exploration are counted apart)."""
    skipped: str = ""
    """Why the rule was not exercised (an option not given), or empty."""
    not_run: str = ""
    """Why the run could not check the rule (its probe stopped early), or empty: a run with
    such a row does not pass."""

    @property
    def seen(self) -> str:
        if not self.passed:
            return self.message
        if self.not_run:
            return f"not run: {self.not_run}"
        return f"not run: {self.skipped}" if self.skipped else "as written"

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "BROKEN"
        return "not run" if self.skipped or self.not_run else "passed"


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
        """No rule broken and nothing left undecided (see :attr:`complete`)."""
        return not self.broken and self.complete

    @property
    def complete(self) -> bool:
        """Every rule checked as far as the options allow: no probe stopped early, no row
        left not run, nothing inconclusive."""
        return not self.inconclusive and not self.not_run

    @property
    def not_run(self) -> list[str]:
        """The rules the run could not check (their probe stopped early)."""
        return [rule for rule, result in self.rules.items() if result.passed and result.not_run]

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL`` (a rule broken) or ``INCOMPLETE`` (some rule not checked)."""
        if self.broken:
            return "FAIL"
        return "PASS" if self.complete else "INCOMPLETE"

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
    yield f"conformance of {report.url}: {report.verdict}"
    yield ""
    yield "| rule | verdict | found by | after (s) | tried | seen |"
    yield "| --- | --- | --- | --- | --- | --- |"
    for rule_id, result in report.rules.items():
        verdict = result.verdict
        after = "" if result.seconds is None else f"{result.seconds:.2f}"
        tried = "; ".join(result.tried) if result.tried else result.description
        seen = result.seen.replace("|", "/")
        yield (
            f"| {rule_id} | {verdict} | {result.found_by} | {after} | {tried.replace('|', '/')}"
            f" | {seen} |"
        )
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
        if result.frames:
            yield "  frames exchanged (last ones):"
            for frame in result.frames:
                yield f"    {frame}"
    if report.not_run:
        yield ""
        yield f"not run (the run does not pass): {', '.join(report.not_run)}"
    for note in report.inconclusive[:10]:
        yield f"inconclusive: {note}"


def format_report(report: ConformanceReport) -> str:
    """The report as text: a per-rule table, coverage, and each broken rule's sequence."""
    return "\n".join(_lines(report)) + "\n"
