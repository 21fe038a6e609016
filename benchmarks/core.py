"""What the session core costs, printed beside a hand-written dict machine doing the same work.

Run ``python benchmarks/core.py`` (``--quick``, the default, takes well under a minute) or
``python benchmarks/core.py --full`` (more rounds, longer loops). ``--json [PATH]`` also writes
the figures as JSON, by default under ``benchmarks/results/`` (ignored by git), to compare
commits.

Three machines are measured in the same process, in the same run:

* **ours**: :class:`fsm_session.machine.SessionCore`, whose triggers fire through the one
  ``transitions.Machine`` shared by every session;
* **baseline**: :class:`DictSession` below, a plain ``dict[(state, trigger)] -> rows`` dispatch
  with the same states, the same selectors and guards (calling the same
  ``fsm_session.models`` checks and raising the same errors), the same data updates and the same
  effects. Before anything is timed, a seeded random walk drives both through the same calls and
  stops the run if they ever disagree, so the baseline is known to do the same work;
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
from fsm_session.errors import (
    ArgumentTypeError,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
    TransitionNotAllowed,
)
from fsm_session.machine import MISSING, SESSION_TABLE, Effect, SessionCore, SessionState
from fsm_session.models import (
    Participant,
    ParticipantInfo,
    avatar_url_problem,
    info_problem,
    name_problem,
)

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
# The baseline: the same session machine, written by hand as a dict of rows.
# --------------------------------------------------------------------------------------------

Kwargs = dict[str, Any]
Check = Callable[["DictSession", Kwargs], "str | None"]


class Row(NamedTuple):
    dest: SessionState | None = None
    when: tuple[Callable[[DictSession, Kwargs], bool], ...] = ()
    guards: tuple[tuple[Check, str, type[SessionError]], ...] = ()
    do: tuple[Callable[[DictSession, Kwargs], None], ...] = ()
    effect: Effect = Effect.NOTHING


def b_has_info(core: DictSession, kw: Kwargs) -> bool:
    return kw["info"] is not MISSING


def b_remembers_identity(core: DictSession, kw: Kwargs) -> bool:
    return core.identity is not None


def b_opening_named(core: DictSession, kw: Kwargs) -> bool:
    return core.opening is not None


def b_nothing_to_change(core: DictSession, kw: Kwargs) -> bool:
    return kw["name"] is None and kw["avatar_url"] is None


def b_update_names_ghost(core: DictSession, kw: Kwargs) -> bool:
    return core.updating is not None and core.updating.name is not None


def b_external_id_problem(info: ParticipantInfo, token_external_id: str | None) -> str | None:
    # Rule R3, checked the same way as fsm_session.machine does.
    if info.external_id is None or info.external_id == token_external_id:
        return None
    if token_external_id is None:
        return "the token carries no external ID"
    return "the external ID is not the token's"


def b_info_is_valid(core: DictSession, kw: Kwargs) -> str | None:
    return info_problem(kw["info"])


def b_external_id_matches_token(core: DictSession, kw: Kwargs) -> str | None:
    return b_external_id_problem(kw["info"], core.token_external_id)


def b_remembered_external_id_matches_token(core: DictSession, kw: Kwargs) -> str | None:
    assert core.identity is not None
    return b_external_id_problem(core.identity, core.token_external_id)


def b_info_is_valid_if_given(core: DictSession, kw: Kwargs) -> str | None:
    info = kw["info"]
    return None if info is MISSING else info_problem(info)


def b_same_identity(core: DictSession, kw: Kwargs) -> str | None:
    info = kw["info"]
    current = core.opening if core.state is S.OPENING else core.identity
    if info is MISSING or info == current:
        return None
    if core.state is S.GHOST:
        return "a ghost session is open"
    return "a session is already opening or open with another info"


def b_update_is_valid(core: DictSession, kw: Kwargs) -> str | None:
    name, avatar_url = kw["name"], kw["avatar_url"]
    problem = None if name is None else name_problem(name)
    if problem is None and avatar_url is not None:
        problem = avatar_url_problem(avatar_url)
    return problem


def b_update_in_flight(core: DictSession, kw: Kwargs) -> str | None:
    return None if core.updating is not None else "no update is in flight"


def b_no_update_in_flight(core: DictSession, kw: Kwargs) -> str | None:
    return None if core.updating is None else "another update is in flight"


def b_resumed_named(core: DictSession, kw: Kwargs) -> bool:
    participant = kw["participant"]
    return isinstance(participant, Participant) and participant.info.name is not None


def b_same_participant(core: DictSession, kw: Kwargs) -> str | None:
    participant, current = kw["participant"], core.participant
    if not isinstance(participant, Participant) or current is None or participant.id == current.id:
        return None
    return "another participant was resumed"


def b_reply_is_participant(core: DictSession, kw: Kwargs) -> str | None:
    participant = kw["participant"]
    if isinstance(participant, Participant):
        return None
    return f"expected a Participant, not {type(participant).__name__}"


def b_begin_open(core: DictSession, kw: Kwargs) -> None:
    core.opening = kw["info"]


def b_begin_reopen(core: DictSession, kw: Kwargs) -> None:
    core.opening = core.identity


def b_begin_ghost(core: DictSession, kw: Kwargs) -> None:
    core.opening = None


def b_become_open(core: DictSession, kw: Kwargs) -> None:
    core.participant = kw["participant"]
    core.identity = core.opening
    core.opening = None


def b_become_ghost(core: DictSession, kw: Kwargs) -> None:
    core.participant = kw["participant"]


def b_forget_opening(core: DictSession, kw: Kwargs) -> None:
    core.opening = None


def b_begin_update(core: DictSession, kw: Kwargs) -> None:
    assert core.participant is not None
    current = core.participant.info
    name, avatar_url = kw["name"], kw["avatar_url"]
    core.updating = ParticipantInfo(
        name=current.name if name is None else name,
        external_id=current.external_id,
        avatar_url=current.avatar_url if avatar_url is None else avatar_url,
    )


def b_apply_update(core: DictSession, kw: Kwargs) -> None:
    core.participant = kw["participant"]
    assert core.updating is not None
    if core.updating.name is not None:
        core.identity = core.updating
    core.updating = None


def b_resume(core: DictSession, kw: Kwargs) -> None:
    core.participant = kw["participant"]


def b_resume_named_ghost(core: DictSession, kw: Kwargs) -> None:
    core.participant = kw["participant"]
    assert core.participant is not None
    core.identity = core.participant.info


def b_forget_update(core: DictSession, kw: Kwargs) -> None:
    core.updating = None


def b_forget_session(core: DictSession, kw: Kwargs) -> None:
    core.participant = None
    core.opening = None
    core.updating = None


INFO_OK = (b_info_is_valid, "R2", InvalidParticipantInfo)
EXT_OK = (b_external_id_matches_token, "R3", ExternalIdMismatch)
REMEMBERED_EXT_OK = (b_remembered_external_id_matches_token, "R3", ExternalIdMismatch)
SAME = (b_same_identity, "R5", SessionAlreadyOpen)
INFO_OK_IF_GIVEN = (b_info_is_valid_if_given, "R2", InvalidParticipantInfo)
UPDATE_OK = (b_update_is_valid, "R10", InvalidParticipantInfo)
REPLY_OK = (b_reply_is_participant, "M2", ArgumentTypeError)
IN_FLIGHT = (b_update_in_flight, "M1", TransitionNotAllowed)
NONE_IN_FLIGHT = (b_no_update_in_flight, "M4", TransitionNotAllowed)
SAME_PARTICIPANT = (b_same_participant, "R18", TransitionNotAllowed)

BASELINE_ROWS: dict[tuple[SessionState, str], tuple[Row, ...]] = {
    (S.CLOSED, "open"): (
        Row(S.OPENING, when=(b_has_info,), guards=(INFO_OK, EXT_OK), do=(b_begin_open,),
            effect=Effect.SEND_OPEN),
        Row(S.OPENING, when=(b_remembers_identity,), guards=(REMEMBERED_EXT_OK,),
            do=(b_begin_reopen,), effect=Effect.SEND_OPEN),
        Row(S.OPENING, do=(b_begin_ghost,), effect=Effect.SEND_OPEN),
    ),
    (S.CLOSED, "close"): (Row(),),
    (S.CLOSED, "connection_lost"): (Row(),),
    (S.OPENING, "open"): (Row(guards=(INFO_OK_IF_GIVEN, SAME), effect=Effect.JOIN_OPEN),),
    (S.OPENING, "opened"): (
        Row(S.OPEN, when=(b_opening_named,), guards=(REPLY_OK,), do=(b_become_open,)),
        Row(S.GHOST, guards=(REPLY_OK,), do=(b_become_ghost,)),
    ),
    (S.OPENING, "open_failed"): (Row(S.CLOSED, do=(b_forget_opening,)),),
    (S.OPENING, "close"): (
        Row(S.CLOSING, do=(b_forget_opening,), effect=Effect.SEND_CLOSE),
    ),
    (S.OPENING, "connection_lost"): (Row(S.CLOSED, do=(b_forget_opening,)),),
    (S.OPENING, "lost"): (Row(S.CLOSED, do=(b_forget_opening,)),),
    (S.OPEN, "open"): (Row(guards=(INFO_OK_IF_GIVEN, SAME), effect=Effect.RETURN_PARTICIPANT),),
    (S.OPEN, "update"): (
        Row(when=(b_nothing_to_change,)),
        Row(guards=(NONE_IN_FLIGHT, UPDATE_OK), do=(b_begin_update,), effect=Effect.SEND_UPDATE),
    ),
    (S.OPEN, "updated"): (Row(guards=(IN_FLIGHT, REPLY_OK), do=(b_apply_update,)),),
    (S.OPEN, "update_failed"): (Row(guards=(IN_FLIGHT,), do=(b_forget_update,)),),
    (S.OPEN, "resumed"): (Row(guards=(REPLY_OK, SAME_PARTICIPANT), do=(b_resume,)),),
    (S.OPEN, "close"): (Row(S.CLOSING, do=(b_forget_update,), effect=Effect.SEND_CLOSE),),
    (S.OPEN, "connection_lost"): (Row(),),
    (S.OPEN, "lost"): (Row(S.CLOSED, do=(b_forget_session,)),),
    (S.GHOST, "open"): (Row(guards=(INFO_OK_IF_GIVEN, SAME), effect=Effect.RETURN_PARTICIPANT),),
    (S.GHOST, "update"): (
        Row(when=(b_nothing_to_change,)),
        Row(guards=(NONE_IN_FLIGHT, UPDATE_OK), do=(b_begin_update,), effect=Effect.SEND_UPDATE),
    ),
    (S.GHOST, "updated"): (
        Row(S.OPEN, when=(b_update_names_ghost,), guards=(REPLY_OK,), do=(b_apply_update,)),
        Row(guards=(IN_FLIGHT, REPLY_OK), do=(b_apply_update,)),
    ),
    (S.GHOST, "update_failed"): (Row(guards=(IN_FLIGHT,), do=(b_forget_update,)),),
    (S.GHOST, "resumed"): (
        Row(S.OPEN, when=(b_resumed_named,), guards=(REPLY_OK, SAME_PARTICIPANT),
            do=(b_resume_named_ghost,)),
        Row(guards=(REPLY_OK, SAME_PARTICIPANT), do=(b_resume,)),
    ),
    (S.GHOST, "close"): (Row(S.CLOSING, do=(b_forget_update,), effect=Effect.SEND_CLOSE),),
    (S.GHOST, "connection_lost"): (Row(),),
    (S.GHOST, "lost"): (Row(S.CLOSED, do=(b_forget_session,)),),
    (S.CLOSING, "close"): (Row(effect=Effect.JOIN_CLOSE),),
    (S.CLOSING, "closed"): (Row(S.CLOSED, do=(b_forget_session,)),),
    (S.CLOSING, "connection_lost"): (Row(S.CLOSED, do=(b_forget_session,)),),
    (S.CLOSING, "lost"): (Row(S.CLOSED, do=(b_forget_session,)),),
}  # fmt: skip

BASELINE_REFUSALS: dict[str, tuple[type[TransitionNotAllowed], str]] = {
    "open": (TransitionNotAllowed, "R11"),
    "update": (SessionNotOpen, "R10"),
    "opened": (TransitionNotAllowed, "M1"),
    "open_failed": (TransitionNotAllowed, "M1"),
    "updated": (TransitionNotAllowed, "M1"),
    "update_failed": (TransitionNotAllowed, "M1"),
    "resumed": (TransitionNotAllowed, "M1"),
    "closed": (TransitionNotAllowed, "M1"),
    "lost": (TransitionNotAllowed, "M1"),
}


class DictSession:
    """The baseline session: the same fields as ``SessionCore``, dispatched through a dict."""

    __slots__ = (
        "identity",
        "last",
        "opening",
        "participant",
        "state",
        "token_external_id",
        "updating",
    )

    def __init__(self, token_external_id: str | None = None) -> None:
        self.state = S.CLOSED
        self.last: Row | None = None
        self.token_external_id = token_external_id
        self.identity: ParticipantInfo | None = None
        self.opening: ParticipantInfo | None = None
        self.updating: ParticipantInfo | None = None
        self.participant: Participant | None = None

    def _fire(self, trigger: str, kw: Kwargs) -> Effect:
        rows = BASELINE_ROWS.get((self.state, trigger))
        if rows is None:
            refusal, refused_by = BASELINE_REFUSALS[trigger]
            raise refusal("not allowed here", rule=refused_by, trigger=trigger, state=self.state)
        for row in rows:
            if not all(select(self, kw) for select in row.when):
                continue
            for check, rule, error in row.guards:
                reason = check(self, kw)
                if reason is not None:
                    raise error(reason, rule=rule, trigger=trigger, state=self.state)
            if row.dest is not None:
                self.state = row.dest
            for action in row.do:
                action(self, kw)
            self.last = row
            return row.effect
        raise RuntimeError(f"no row of {self.state.name} applies to {trigger!r}")

    def open(self, info: Any = MISSING) -> Effect:
        return self._fire("open", {"info": info})

    def update(self, name: str | None = None, avatar_url: str | None = None) -> Effect:
        return self._fire("update", {"name": name, "avatar_url": avatar_url})

    def close(self) -> Effect:
        return self._fire("close", {})

    def opened(self, participant: Any) -> Effect:
        return self._fire("opened", {"participant": participant})

    def open_failed(self) -> Effect:
        return self._fire("open_failed", {})

    def updated(self, participant: Any) -> Effect:
        return self._fire("updated", {"participant": participant})

    def update_failed(self) -> Effect:
        return self._fire("update_failed", {})

    def resumed(self, participant: Any) -> Effect:
        return self._fire("resumed", {"participant": participant})

    def closed(self) -> Effect:
        return self._fire("closed", {})

    def connection_lost(self) -> Effect:
        return self._fire("connection_lost", {})

    def lost(self) -> Effect:
        return self._fire("lost", {})


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
    "baseline": DictSession,
    "naive": MachinePerSession,
}


# --------------------------------------------------------------------------------------------
# The baseline does the same work: a seeded random walk must see the same outcomes.
# --------------------------------------------------------------------------------------------


TABLE_TRIGGERS = frozenset(row.trigger for rows in SESSION_TABLE.values() for row in rows)
PARTICIPANT_TRIGGERS = frozenset({"opened", "updated", "resumed"})
NO_ARGUMENT_TRIGGERS = frozenset(
    {"close", "open_failed", "update_failed", "closed", "connection_lost", "lost"}
)
OUT_OF_STEP = "SESSION_TABLE changed? Make BASELINE_ROWS in benchmarks/core.py match it."


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
    try:
        result: object = getattr(core, trigger)(**kwargs)
    except SessionError as exc:
        result = (type(exc).__name__, exc.rule)
    return (
        result,
        core.state,
        core.identity,
        core.opening,
        core.updating,
        core.participant,
    )


def check_same_work(walks: int = 400, steps: int = 40) -> int:
    """Drive ours and the baseline through the same calls; exit if they ever disagree.

    Many short walks from a fresh session rather than one long one: a session that was once
    opened with an info remembers it, and would never again open as a ghost.
    """
    known = PARTICIPANT_TRIGGERS | NO_ARGUMENT_TRIGGERS | {"open", "update"}
    handled = {trigger for _, trigger in BASELINE_ROWS}
    missing = TABLE_TRIGGERS - (known & handled)
    if missing:
        sys.exit(f"the baseline does not know the trigger(s) {sorted(missing)}.\n" + OUT_OF_STEP)
    for walk in range(walks):
        token = TOKEN_EXTERNAL_ID if walk % 3 else None
        ours, baseline = SessionCore(token), DictSession(token)
        for step, (trigger, kwargs) in enumerate(_random_calls(walk, steps)):
            a, b = _outcome(ours, trigger, kwargs), _outcome(baseline, trigger, kwargs)
            if a != b:
                sys.exit(
                    f"the baseline disagrees with SessionCore in walk {walk}, step {step}, "
                    f"{trigger}({kwargs}):\n  ours:     {a}\n  baseline: {b}\n" + OUT_OF_STEP
                )
    naive = MachinePerSession(TOKEN_EXTERNAL_ID)
    if not (cast(Any, naive).open(info=INFO) and naive.opening is INFO):
        sys.exit("the machine-per-session model does not open")
    return walks * steps


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
    checked = check_same_work()

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
    }


def report(env: dict[str, Any], result: dict[str, Any]) -> str:
    out = [
        f"fsm_session core benchmark ({env['mode']}), commit {env['commit'] or '?'}",
        f"Python {env['python']} ({env['implementation']}), transitions {env['transitions']}, "
        f"{env['nproc']} CPU(s): {env['cpu']}, load average at start {env['load_average']}",
        f"baseline checked against ours on {result['checked_steps']:,} random calls: same outcomes",
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
