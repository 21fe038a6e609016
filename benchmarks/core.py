"""What the session core costs, printed beside the same machine written as plain if/else.

Run ``python benchmarks/core.py`` (``--quick``, the default, takes well under a minute) or
``python benchmarks/core.py --full`` (more rounds, longer loops). ``--json [PATH]`` also writes
the figures as JSON, by default under ``benchmarks/results/`` (ignored by git), to compare
commits.

Three machines are measured in the same process, in the same run:

* **ours**: :class:`fsm_session.machine.SessionCore`, whose triggers fire through the one
  ``transitions.Machine`` shared by every session;
* **baseline**: :class:`PlainSession` of ``benchmarks/plain_session.py``, the same machine
  written by hand as plain if/else on the state: no table, no rows, no dispatch. It calls the
  same ``fsm_session.models`` checks, raises the same errors (class, rule, reason, trigger,
  state), makes the same data updates and returns the same effects. Before anything is timed,
  seeded random walks drive both through the same calls and stop the run if they ever disagree,
  or if the walks leave a row of ``SESSION_TABLE`` untried, so the baseline is known to do the
  same work;
* **naive** (for context only): one ``transitions.Machine`` per session, built from the same
  table, the design ``fsm_session.machine`` avoids.

Memory is measured with ``tracemalloc`` in this process and, as a second figure, as the growth
of the resident set (``/proc/self/statm``) in a fresh child process, divided by the number of
sessions. Times use ``time.perf_counter_ns``; each figure is the median of several rounds, and
the rounds of ours and of the baseline alternate so that drift hits both. Times include the
loop that makes the calls (the same loop for both). The cyclic garbage collector runs to
completion before each round. It stays on while triggers are timed, as in an application; while
sessions are created it is paused (as ``timeit`` does), because with it on every figure grows
with the number of live objects, ours and the baseline's alike: that is CPython visiting what
it tracks, not the machine. One row shows creation with the collector on.

This script asserts nothing about time: it prints, and the reader judges.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple, cast

from transitions import Machine

import fsm_session
from fsm_session.errors import SessionError
from fsm_session.machine import MISSING, SESSION_TABLE, SessionCore, SessionState
from fsm_session.models import Participant, ParticipantInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_session import PlainSession

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
KIB = 1024
US = "\u00b5s"  # micro sign, spelled out so the source stays ASCII

TOKEN_EXTERNAL_ID = "user-42"
INFO = ParticipantInfo(name="Alice", external_id=TOKEN_EXTERNAL_ID)
PARTICIPANT = Participant(id="p-1", info=INFO)
RENAMED = Participant(id="p-1", info=ParticipantInfo(name="Bob", external_id=TOKEN_EXTERNAL_ID))

S = SessionState

# --------------------------------------------------------------------------------------------
# For context: one transitions.Machine per session, as a naive design would build it.
# --------------------------------------------------------------------------------------------


class MachinePerSession:
    """A session that owns its own ``transitions.Machine``, built from the same table."""

    def __init__(self, token_external_id: str | None = None) -> None:
        self.token_external_id = token_external_id
        self.identity: ParticipantInfo | None = None
        self.opening: ParticipantInfo | None = None
        self.updating: ParticipantInfo | None = None
        self.participant: Participant | None = None
        self.machine = Machine(
            model=self,
            states=SessionState,
            initial=S.CLOSED,
            send_event=True,
            auto_transitions=False,
        )
        for source, rows in SESSION_TABLE.items():
            for row in rows:
                self.machine.add_transition(
                    row.trigger,
                    source,
                    row.dest,
                    conditions=[*row.when, *row.guards],
                    after=list(row.do),
                )


Factory = Callable[[str | None], Any]
IMPLS: dict[str, Factory] = {
    "ours": SessionCore,
    "baseline": PlainSession,
    "naive": MachinePerSession,
}


# --------------------------------------------------------------------------------------------
# The baseline does the same work: a seeded random walk must see the same outcomes.
# --------------------------------------------------------------------------------------------


TABLE_TRIGGERS = frozenset(row.trigger for rows in SESSION_TABLE.values() for row in rows)
TABLE_ROWS = sum(len(rows) for rows in SESSION_TABLE.values())
PARTICIPANT_TRIGGERS = frozenset({"opened", "updated", "resumed"})
OUT_OF_STEP = "SESSION_TABLE changed? Make PlainSession in benchmarks/plain_session.py match it."
Kwargs = dict[str, Any]


def _random_calls(seed: int, steps: int) -> list[tuple[str, Kwargs]]:
    rng = random.Random(seed)
    infos: list[Any] = [
        INFO,
        ParticipantInfo(name="Carol"),
        ParticipantInfo(name="Eve", external_id="someone-else"),
        ParticipantInfo(name="   "),
        ParticipantInfo(name="Dan", avatar_url="https://example.com/d.png"),
        ParticipantInfo(name="Dan", avatar_url="not a url"),
        None,
        MISSING,
    ]
    names = [None, "Bob", "  ", "x" * 300]
    urls = [None, "https://example.com/b.png", "ftp://example.com/b.png"]
    replies: list[Any] = [
        PARTICIPANT,
        RENAMED,
        Participant(id="g-1", info=ParticipantInfo(name=None)),
        "not a participant",
    ]
    # Every trigger of the table, the busy ones more often.
    weights = {"open": 3, "update": 2, "opened": 2, "updated": 2, "closed": 2}
    triggers = [t for t in sorted(TABLE_TRIGGERS) for _ in range(weights.get(t, 1))]
    calls: list[tuple[str, Kwargs]] = []
    for _ in range(steps):
        trigger = rng.choice(triggers)
        kwargs: Kwargs = {}
        if trigger == "open":
            info = rng.choice(infos)
            if info is not MISSING:
                kwargs["info"] = info
        elif trigger == "update":
            kwargs = {"name": rng.choice(names), "avatar_url": rng.choice(urls)}
        elif trigger in PARTICIPANT_TRIGGERS:
            kwargs = {"participant": rng.choice(replies)}
        calls.append((trigger, kwargs))
    return calls


def _outcome(core: Any, trigger: str, kwargs: Kwargs) -> tuple[object, ...]:
    """What a call did: its effect, or its error with every attribute, then state and data."""
    try:
        result: object = getattr(core, trigger)(**kwargs)
    except SessionError as exc:
        result = (type(exc).__name__, exc.rule, exc.trigger, exc.state, str(exc))
    return (
        result,
        core.state,
        core.identity,
        core.opening,
        core.updating,
        core.participant,
    )


def check_same_work(walks: int = 1000, steps: int = 40) -> tuple[int, int]:
    """Drive ours and the baseline through the same calls; exit if they ever disagree.

    Many short walks from a fresh session rather than one long one: a session that was once
    opened with an info remembers it, and would never again open as a ghost. The run also stops
    if the walks leave a row of ``SESSION_TABLE`` untried, so every branch of the baseline is
    compared with the row it stands for. Returns the number of calls and of rows tried.
    """
    missing = sorted(t for t in TABLE_TRIGGERS if not callable(getattr(PlainSession, t, None)))
    if missing:
        sys.exit(f"the baseline does not know the trigger(s) {missing}.\n" + OUT_OF_STEP)
    tried: set[int] = set()
    for walk in range(walks):
        token = TOKEN_EXTERNAL_ID if walk % 3 else None
        ours, baseline = SessionCore(token), PlainSession(token)
        for step, (trigger, kwargs) in enumerate(_random_calls(walk, steps)):
            ours.last = None
            a, b = _outcome(ours, trigger, kwargs), _outcome(baseline, trigger, kwargs)
            if a != b:
                sys.exit(
                    f"the baseline disagrees with SessionCore in walk {walk}, step {step}, "
                    f"{trigger}({kwargs}):\n  ours:     {a}\n  baseline: {b}\n" + OUT_OF_STEP
                )
            if ours.last is not None:
                tried.add(id(ours.last))
    untried = [
        f"{state.name} {row.trigger}"
        for state, rows in SESSION_TABLE.items()
        for row in rows
        if id(row) not in tried
    ]
    if untried:
        sys.exit(f"the random walks never took these rows: {untried}; widen _random_calls")
    naive = MachinePerSession(TOKEN_EXTERNAL_ID)
    if not (cast(Any, naive).open(info=INFO) and naive.opening is INFO):
        sys.exit("the machine-per-session model does not open")
    return walks * steps, len(tried)


# --------------------------------------------------------------------------------------------
# Memory.
# --------------------------------------------------------------------------------------------


def make_sessions(impl: str, kind: str, n: int, into: list[Any]) -> None:
    """Fill ``into`` with ``n`` sessions; ``kind`` is ``fresh`` or ``opened``.

    An opened session went through ``open(info)`` and ``opened(participant)``, and holds its own
    ``ParticipantInfo`` and ``Participant`` (built here, so they are counted), as a real one does.
    """
    factory = IMPLS[impl]
    if kind == "fresh":
        for i in range(n):
            into[i] = factory(TOKEN_EXTERNAL_ID)
    elif kind == "opened":
        for i in range(n):
            info = ParticipantInfo(name=f"user {i}", external_id=TOKEN_EXTERNAL_ID)
            core = factory(TOKEN_EXTERNAL_ID)
            cast(Any, core).open(info=info)
            cast(Any, core).opened(participant=Participant(id=f"p-{i:09d}", info=info))
            into[i] = core
    elif kind == "data":  # only what an opened session holds that is not the session
        for i in range(n):
            info = ParticipantInfo(name=f"user {i}", external_id=TOKEN_EXTERNAL_ID)
            into[i] = Participant(id=f"p-{i:09d}", info=info)
    else:
        raise ValueError(kind)


def traced_bytes(impl: str, kind: str, n: int) -> float:
    """Bytes per session that tracemalloc sees allocated and still alive."""
    sessions: list[Any] = [None] * n
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    make_sessions(impl, kind, n, sessions)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del sessions
    gc.collect()
    return (after - before) / n


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_probe(impl: str, kind: str, n: int) -> None:
    """Run in a fresh child: print the resident-set growth per session, in bytes."""
    sessions: list[Any] = [None] * n
    gc.collect()
    before = _resident_bytes()
    make_sessions(impl, kind, n, sessions)
    gc.collect()
    print((_resident_bytes() - before) / n)


def rss_bytes(impl: str, kind: str, n: int) -> float | None:
    if not Path("/proc/self/statm").exists():
        return None
    out = subprocess.run(
        [sys.executable, __file__, "--rss-probe", impl, kind, str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout)


# --------------------------------------------------------------------------------------------
# Time.
# --------------------------------------------------------------------------------------------


def alternate(
    rounds: int, measure: Callable[[str], float], impls: Iterable[str]
) -> dict[str, float]:
    """Median over ``rounds`` of ``measure(impl)``, taking the implementations in turn."""
    names = list(impls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            gc.collect()
            samples[name].append(measure(name))
    return {name: statistics.median(values) for name, values in samples.items()}


def creation_us(impl: str, n: int, collector: bool = False) -> float:
    """Build ``n`` sessions, with the cyclic collector paused (as ``timeit`` does) or not."""
    factory = IMPLS[impl]
    token = TOKEN_EXTERNAL_ID
    gc.collect()
    if not collector:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        sessions = [factory(token) for _ in range(n)]
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    del sessions
    return elapsed / n / 1000


def open_us(impl: str, n: int) -> float:
    """``open(info)`` from CLOSED, once on each of ``n`` fresh sessions (two guards)."""
    factory = IMPLS[impl]
    sessions = [factory(TOKEN_EXTERNAL_ID) for _ in range(n)]
    info = INFO
    gc.collect()
    start = time.perf_counter_ns()
    for core in sessions:
        core.open(info)
    return (time.perf_counter_ns() - start) / n / 1000


def _opened(impl: str) -> Any:
    core = IMPLS[impl](TOKEN_EXTERNAL_ID)
    core.open(INFO)
    core.opened(PARTICIPANT)
    return core


def update_us(impl: str, n: int) -> float:
    """``update(name=...)`` in OPEN, once on each of ``n`` open sessions (two guards)."""
    sessions = [_opened(impl) for _ in range(n)]
    gc.collect()
    start = time.perf_counter_ns()
    for core in sessions:
        core.update(name="Bob")
    return (time.perf_counter_ns() - start) / n / 1000


def cycle_us(impl: str, n: int) -> float:
    """open -> opened -> update -> updated -> close -> closed, ``n`` times on one session."""
    core = IMPLS[impl](TOKEN_EXTERNAL_ID)
    info, participant, renamed = INFO, PARTICIPANT, RENAMED
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        core.open(info)
        core.opened(participant)
        core.update(name="Bob")
        core.updated(renamed)
        core.close()
        core.closed()
    return (time.perf_counter_ns() - start) / n / 1000


# --------------------------------------------------------------------------------------------
# Running and reporting.
# --------------------------------------------------------------------------------------------


class Settings(NamedTuple):
    memory_n: int
    creation: dict[int, int]  # sessions per round -> rounds
    trigger_n: int
    cycle_n: int
    rounds: int
    naive_n: int
    naive_rounds: int


QUICK = Settings(
    memory_n=100_000,
    creation={1_000: 51, 10_000: 21, 100_000: 9},
    trigger_n=20_000,
    cycle_n=4_000,
    rounds=5,
    naive_n=1_000,
    naive_rounds=3,
)
FULL = Settings(
    memory_n=100_000,
    creation={1_000: 201, 10_000: 61, 100_000: 21},
    trigger_n=100_000,
    cycle_n=20_000,
    rounds=15,
    naive_n=1_000,
    naive_rounds=7,
)


class Figure(NamedTuple):
    name: str
    unit: str
    ours: float | None
    baseline: float | None
    target: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def git_commit() -> str | None:
    """The commit measured, marked ``+dirty`` when the package differs from it."""
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--", ":/fsm_session"):
        commit += "+dirty"
    return commit or None


def environment(mode: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "commit": git_commit(),
        "package": str(Path(fsm_session.__file__).parent),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "transitions": version("transitions"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    """Other work on the machine skews every time figure: the 1, 5 and 15 minute load."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B":
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(width) if col == 0 else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def verdict(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "MISS")


def run(settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    figures: list[Figure] = []
    pair = ("ours", "baseline")

    say("checking that the baseline does the same work ...")
    checked, rows_tried = check_same_work()

    say("memory ...")
    n = settings.memory_n
    data = traced_bytes("baseline", "data", n)
    fresh_rss: float | None = None
    for kind in ("fresh", "opened"):
        traced = {impl: traced_bytes(impl, kind, n) for impl in pair}
        resident = {impl: rss_bytes(impl, kind, n) for impl in pair}
        if kind == "fresh":
            fresh_rss = resident["ours"]
        label = "fresh session" if kind == "fresh" else "opened session, with its participant"
        figures.append(
            Figure(
                f"memory, {label} (tracemalloc)",
                "B",
                traced["ours"],
                traced["baseline"],
                "< 1,024 B",
                traced["ours"] < KIB,
            )
        )
        rss_ours = resident["ours"]
        figures.append(
            Figure(
                f"memory, {label} (RSS growth)",
                "B",
                rss_ours,
                resident["baseline"],
                "< 1,024 B",
                None if rss_ours is None else rss_ours < KIB,
            )
        )

    say("creation ...")
    per_n: dict[str, dict[int, float]] = {impl: {} for impl in pair}
    for count, rounds in settings.creation.items():
        medians = alternate(rounds, partial(creation_us, n=count), pair)
        for impl in pair:
            per_n[impl][count] = medians[impl]
        figures.append(
            Figure(
                f"creation, N = {count:,}, collector paused",
                US,
                medians["ours"],
                medians["baseline"],
                f"< 10 {US}",
                medians["ours"] < 10,
            )
        )
    spread = {impl: max(v.values()) / min(v.values()) for impl, v in per_n.items()}
    figures.append(
        Figure(
            "creation, max/min over N (linear: flat)",
            "x",
            spread["ours"],
            spread["baseline"],
            "< 1.5",
            spread["ours"] < 1.5,
        )
    )
    largest, rounds = max(settings.creation.items())
    with_gc = alternate(rounds, lambda impl: creation_us(impl, largest, collector=True), pair)
    figures.append(
        Figure(
            f"creation, N = {largest:,}, collector on",
            US,
            with_gc["ours"],
            with_gc["baseline"],
            f"< 10 {US}",
            with_gc["ours"] < 10,
        )
    )

    say("triggers ...")
    rounds, tn = settings.rounds, settings.trigger_n
    opens = alternate(rounds, lambda impl: open_us(impl, tn), pair)
    figures.append(
        Figure(
            "open(info) from CLOSED, two guards",
            US,
            opens["ours"],
            opens["baseline"],
            f"< 10 {US}",
            opens["ours"] < 10,
        )
    )
    updates = alternate(rounds, lambda impl: update_us(impl, tn), pair)
    figures.append(
        Figure(
            "update(name=...) in OPEN, two guards",
            US,
            updates["ours"],
            updates["baseline"],
            f"< 10 {US}",
            updates["ours"] < 10,
        )
    )
    cycles = alternate(rounds, lambda impl: cycle_us(impl, settings.cycle_n), pair)
    figures.append(Figure("full cycle, 6 triggers", US, cycles["ours"], cycles["baseline"]))
    figures.append(
        Figure(
            "full cycle, per trigger",
            US,
            cycles["ours"] / 6,
            cycles["baseline"] / 6,
            f"< 10 {US}",
            cycles["ours"] / 6 < 10,
        )
    )

    say("one transitions.Machine per session, for context ...")
    nn = settings.naive_n
    naive_pair = ("naive", "ours")
    naive_traced = {impl: traced_bytes(impl, "fresh", nn) for impl in naive_pair}
    # The resident set grows in whole pages and arenas: 1,000 of our sessions fit in memory the
    # process already has, so ours is the figure measured above over memory_n sessions.
    naive_rss = rss_bytes("naive", "fresh", nn)
    naive_create = alternate(settings.naive_rounds, lambda impl: creation_us(impl, nn), naive_pair)
    context = [
        Figure(
            "memory per session (tracemalloc)",
            "B",
            naive_traced["naive"],
            naive_traced["ours"],
        ),
        Figure(f"memory per session (RSS growth; ours at N = {n:,})", "B", naive_rss, fresh_rss),
        Figure(
            "creation per session (collector paused)",
            US,
            naive_create["naive"],
            naive_create["ours"],
        ),
    ]

    return {
        "figures": figures,
        "context": context,
        "context_n": nn,
        "participant_data_bytes": data,
        "checked_steps": checked,
        "rows_tried": rows_tried,
    }


def report(env: dict[str, Any], result: dict[str, Any]) -> str:
    out = [
        f"fsm_session core benchmark ({env['mode']}), commit {env['commit'] or '?'}",
        f"Python {env['python']} ({env['implementation']}), transitions {env['transitions']}, "
        f"{env['nproc']} CPU(s): {env['cpu']}, load average at start {env['load_average']}",
        f"baseline (plain if/else) checked against ours on {result['checked_steps']:,} random "
        f"calls taking all {result['rows_tried']} rows of the table: same outcomes",
        "",
    ]
    if not Path(env["package"]).is_relative_to(HERE.parent):
        out.insert(1, f"fsm_session loaded from {env['package']}, not from this checkout")
    rows = [
        (
            f"{f.name} [{f.unit}]",
            _fmt(f.ours, f.unit),
            _fmt(f.baseline, f.unit),
            _fmt(f.ratio, "x"),
            f.target,
            verdict(f.passed),
        )
        for f in result["figures"]
    ]
    out.append(table(("measure", "ours", "baseline", "ours/base", "target", "result"), rows))
    out.append("")
    out.append(
        f"An opened session's own ParticipantInfo and Participant (same in both) account for "
        f"{result['participant_data_bytes']:,.0f} B of its figure."
    )
    out.append("")
    out.append(
        f"For context: one transitions.Machine per session (N = {result['context_n']:,}), "
        f"the design fsm_session.machine avoids"
    )
    context = [
        (f"{f.name} [{f.unit}]", _fmt(f.ours, f.unit), _fmt(f.baseline, f.unit), _fmt(f.ratio, "x"))
        for f in result["context"]
    ]
    out.append(table(("measure", "machine each", "ours", "each/ours"), context))
    return "\n".join(out)


def as_json(env: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    def figure(f: Figure) -> dict[str, Any]:
        return {
            "name": f.name,
            "unit": "us" if f.unit == US else f.unit,
            "ours": f.ours,
            "baseline": f.baseline,
            "ratio": f.ratio,
            "target": f.target.replace(US, "us"),
            "result": verdict(f.passed) or None,
        }

    return {
        "environment": env,
        "figures": [figure(f) for f in result["figures"]],
        "machine_per_session": {
            "n": result["context_n"],
            "figures": [
                {"name": f.name, "unit": "us" if f.unit == US else f.unit, "machine_each": f.ours}
                | {"ours": f.baseline, "ratio": f.ratio}
                for f in result["context"]
            ],
        },
        "participant_data_bytes": result["participant_data_bytes"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a short run (the default)")
    mode.add_argument("--full", action="store_true", help="more rounds and longer loops")
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write the figures as JSON (default path: benchmarks/results/)",
    )
    parser.add_argument("--rss-probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.rss_probe:
        impl, kind, count = args.rss_probe
        rss_probe(impl, kind, int(count))
        return

    mode_name = "full" if args.full else "quick"
    env = environment(mode_name)
    started = time.perf_counter()
    result = run(FULL if args.full else QUICK, lambda text: print(text, file=sys.stderr))
    print(report(env, result))
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    if args.json is not None:
        path = Path(args.json) if args.json else default_json_path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(as_json(env, result), indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)


def default_json_path(env: dict[str, Any]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS / f"core-{env['commit'] or 'nocommit'}-{env['mode']}-{stamp}.json"


if __name__ == "__main__":
    main()
