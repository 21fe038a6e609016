"""The pure session and socket machines, rule by rule (specs/session.md), and a Hypothesis model.

Nothing here does I/O: backend replies and connection loss are triggers fed in by the test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fsm_session import machine as m
from fsm_session.errors import (
    ArgumentTypeError,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
    TransitionNotAllowed,
)
from fsm_session.machine import (
    MISSING,
    Effect,
    InvalidDefinition,
    On,
    SessionCore,
    SessionState,
    SocketCore,
    WebSocketState,
    check_definition,
)
from fsm_session.models import Participant, ParticipantInfo

S = SessionState
ADA = ParticipantInfo("Ada", external_id="ext-ada")
ADA_P = Participant("p-ada", ADA)
GHOST_P = Participant("g-1", ParticipantInfo(None))


def snapshot(core: SessionCore) -> tuple[object, ...]:
    return (
        core.state,
        core.identity,
        core.opening,
        core.updating,
        core.participant,
        core.token_external_id,
    )


def opened_core(info: ParticipantInfo = ADA, participant: Participant = ADA_P) -> SessionCore:
    core = SessionCore(token_external_id="ext-ada")
    assert core.open(info) is Effect.SEND_OPEN
    core.opened(participant)
    return core


def ghost_core() -> SessionCore:
    core = SessionCore(token_external_id="ext-ada")
    assert core.open() is Effect.SEND_OPEN
    core.opened(GHOST_P)
    return core


def test_r1_initial_state_is_closed() -> None:
    """R1: a new session is CLOSED, has no participant and has asked for nothing."""
    core = SessionCore()
    assert core.state is S.CLOSED
    assert core.participant is None and core.identity is None and core.last is None
    assert SocketCore().state is WebSocketState.CLOSED


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (None, "expected a ParticipantInfo, not NoneType"),
        ("Ada", "expected a ParticipantInfo, not str"),
        (ParticipantInfo(None), "name must be a str"),
        (ParticipantInfo(""), "blank"),
        (ParticipantInfo(" \t\u3000"), "blank"),
        (ParticipantInfo("x" * 257), "257 characters"),
        (ParticipantInfo("a\ud800b"), "lone surrogate"),
        (ParticipantInfo("Ada", avatar_url="ftp://x.org/a.png"), "http or https"),
        (ParticipantInfo("Ada", avatar_url="/relative.png"), "http or https"),
        (ParticipantInfo("Ada", avatar_url="https://"), "http or https"),
        (ParticipantInfo("Ada", avatar_url="https://x.org/a b.png"), "spaces"),
        (ParticipantInfo("Ada", avatar_url="https://x.org/" + "a" * 2040), "2048"),
        (ParticipantInfo("Ada", external_id=""), "must not be empty"),
        (ParticipantInfo("Ada", external_id="é" * 513), "1026 UTF-8 bytes"),
    ],
)
def test_r2_invalid_info_is_refused(info: Any, fragment: str) -> None:
    """R2: each breach raises InvalidParticipantInfo naming the reason, rule, trigger, state."""
    core = SessionCore(token_external_id=None)
    before = snapshot(core)
    with pytest.raises(InvalidParticipantInfo) as caught:
        core.open(info)
    error = caught.value
    assert isinstance(error, ValueError)
    assert fragment in error.reason
    assert (error.rule, error.trigger, error.state) == ("R2", "open", S.CLOSED)
    assert "rule R2" in str(error) and "'open'" in str(error) and "CLOSED" in str(error)
    assert snapshot(core) == before  # R13


@pytest.mark.parametrize(
    "info",
    [
        ParticipantInfo("A"),
        ParticipantInfo("x" * 256),
        ParticipantInfo(" Ada "),
        ParticipantInfo("Ada", avatar_url="http://example.org/a.png"),
        ParticipantInfo("Ada", avatar_url="https://example.org/" + "a" * 2028),
        ParticipantInfo("Ada", external_id="é" * 512),
    ],
)
def test_r2_limits_are_inclusive(info: ParticipantInfo) -> None:
    """R2: values at the limits are accepted."""
    core = SessionCore(token_external_id=info.external_id)
    assert core.open(info) is Effect.SEND_OPEN
    assert core.state is S.OPENING and core.opening == info


@pytest.mark.parametrize(
    ("token_external_id", "info_external_id"),
    [("ext-ada", "ext-bob"), (None, "ext-ada")],
)
def test_r3_external_id_must_match_token(
    token_external_id: str | None, info_external_id: str
) -> None:
    """R3: a differing external ID, or one the token does not carry, is refused."""
    core = SessionCore(token_external_id=token_external_id)
    before = snapshot(core)
    with pytest.raises(ExternalIdMismatch) as caught:
        core.open(ParticipantInfo("Ada", external_id=info_external_id))
    assert (caught.value.rule, caught.value.state) == ("R3", S.CLOSED)
    assert snapshot(core) == before


def test_r3_no_external_id_in_info_is_allowed() -> None:
    """R3: an info without external ID opens whatever the token carries."""
    core = SessionCore(token_external_id="ext-ada")
    assert core.open(ParticipantInfo("Ada")) is Effect.SEND_OPEN


def test_r4_open_ends_open_and_remembers_identity() -> None:
    """R4: open(info) goes OPENING then OPEN; the info becomes the remembered identity."""
    core = SessionCore(token_external_id="ext-ada")
    assert core.open(ADA) is Effect.SEND_OPEN
    assert core.state is S.OPENING and core.identity is None
    assert core.opened(ADA_P) is Effect.NOTHING
    assert core.state is S.OPEN
    assert core.participant == ADA_P and core.identity == ADA


def test_r5_open_while_opening_joins_or_refuses() -> None:
    """R5: the same info (or none) joins the open in flight; other info is refused."""
    core = SessionCore(token_external_id="ext-ada")
    core.open(ADA)
    assert core.open(ADA) is Effect.JOIN_OPEN
    assert core.open() is Effect.JOIN_OPEN
    before = snapshot(core)
    with pytest.raises(SessionAlreadyOpen) as caught:
        core.open(ParticipantInfo("Bob"))
    assert isinstance(caught.value, TransitionNotAllowed)
    assert (caught.value.rule, caught.value.state) == ("R5", S.OPENING)
    assert snapshot(core) == before


def test_r5_open_while_open_returns_participant_or_refuses() -> None:
    """R5: in OPEN, the same info (or none) asks for nothing; other info is refused."""
    core = opened_core()
    assert core.open(ADA) is Effect.RETURN_PARTICIPANT
    assert core.open() is Effect.RETURN_PARTICIPANT
    with pytest.raises(SessionAlreadyOpen):
        core.open(ParticipantInfo("Ada", external_id="ext-ada", avatar_url="https://a.org/x"))
    assert core.state is S.OPEN


def test_r5_open_with_info_in_ghost_is_refused() -> None:
    """R5: a ghost answers open() with itself and refuses open(info)."""
    core = ghost_core()
    assert core.open() is Effect.RETURN_PARTICIPANT
    with pytest.raises(SessionAlreadyOpen) as caught:
        core.open(ADA)
    assert caught.value.state is S.GHOST and "update(name=...)" in caught.value.reason


def test_r6_reopen_uses_remembered_identity() -> None:
    """R6: a bare open() after a close reopens with the remembered identity."""
    core = opened_core()
    core.close()
    core.closed()
    assert core.open() is Effect.SEND_OPEN
    assert core.opening == ADA
    core.opened(ADA_P)
    assert core.state is S.OPEN


def test_r6_reopen_checks_external_id_again() -> None:
    """R6 with R3: a remembered external ID that the current token no longer carries is refused."""
    core = opened_core()
    core.close()
    core.closed()
    core.token_external_id = "ext-other"
    with pytest.raises(ExternalIdMismatch):
        core.open()
    assert core.state is S.CLOSED


def test_r6_bare_open_without_identity_is_a_ghost() -> None:
    """R6: with nothing remembered, open() opens a ghost session."""
    core = SessionCore()
    assert core.open() is Effect.SEND_OPEN
    assert core.opening is None
    core.opened(GHOST_P)
    assert core.state is S.GHOST and core.participant == GHOST_P and core.identity is None


def test_r7_named_ghost_becomes_open_and_remembered() -> None:
    """R7: update(name=...) in GHOST promotes to OPEN once the backend accepts it."""
    core = ghost_core()
    assert core.update(name="Ada") is Effect.SEND_UPDATE
    assert core.state is S.GHOST  # not before the backend accepts
    core.updated(Participant("g-1", ParticipantInfo("Ada")))
    assert core.state is S.OPEN
    assert core.identity == ParticipantInfo("Ada")


def test_r7_ghost_avatar_update_stays_ghost_and_closed_ghost_is_not_remembered() -> None:
    """R7: an avatar-only update keeps GHOST; a closed ghost leaves no identity."""
    core = ghost_core()
    core.update(avatar_url="https://a.org/x.png")
    core.updated(Participant("g-1", ParticipantInfo(None, avatar_url="https://a.org/x.png")))
    assert core.state is S.GHOST and core.identity is None
    core.close()
    core.closed()
    assert core.identity is None
    core.open()
    assert core.opening is None  # a ghost again


@pytest.mark.parametrize("state", list(SessionState))
def test_r8_is_open_exactly_in_open_and_ghost(state: SessionState) -> None:
    """R8: is_open() is true exactly in OPEN and GHOST."""
    core = SessionCore()
    core.state = state
    assert core.is_open() is (state in (S.OPEN, S.GHOST))


def test_r9_is_local_participant() -> None:
    """R9: true exactly when open and the ID is ours; a non-Participant is a TypeError."""
    core = SessionCore(token_external_id="ext-ada")
    assert core.is_local_participant(ADA_P) is False
    core.open(ADA)
    assert core.is_local_participant(ADA_P) is False  # OPENING is not open
    core.opened(ADA_P)
    assert core.is_local_participant(ADA_P) is True
    assert core.is_local_participant(Participant("p-ada", ParticipantInfo("Other"))) is True
    assert core.is_local_participant(Participant("p-bob", ADA)) is False
    for wrong in (None, "p-ada", ADA):
        with pytest.raises(ArgumentTypeError) as caught:
            core.is_local_participant(wrong)  # type: ignore[arg-type]
        assert isinstance(caught.value, TypeError) and caught.value.rule == "R9"
    core.close()
    assert core.is_local_participant(ADA_P) is False  # CLOSING is not open


def test_r10_update_in_open() -> None:
    """R10: None leaves a value unchanged; the external ID never changes; identity follows."""
    core = opened_core()
    assert core.update(name="Ada L.") is Effect.SEND_UPDATE
    assert core.updating == ParticipantInfo("Ada L.", external_id="ext-ada")
    core.updated(Participant("p-ada", core.updating))
    assert core.identity == ParticipantInfo("Ada L.", external_id="ext-ada")
    assert core.update(avatar_url="https://a.org/y.png") is Effect.SEND_UPDATE
    assert core.updating == ParticipantInfo(
        "Ada L.", external_id="ext-ada", avatar_url="https://a.org/y.png"
    )


def test_r10_update_with_nothing_sends_nothing() -> None:
    """R10: update() with both values None changes nothing and sends nothing."""
    core = opened_core()
    before = snapshot(core)
    assert core.update() is Effect.NOTHING
    assert snapshot(core) == before


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "  "}, "blank"),
        ({"name": 42}, "must be a str"),
        ({"name": "x" * 300}, "300 characters"),
        ({"avatar_url": "javascript:alert(1)"}, "http or https"),
        ({"avatar_url": 7}, "must be a str"),
    ],
)
def test_r10_update_values_obey_r2(kwargs: Mapping[str, Any], fragment: str) -> None:
    """R10: given values obey R2; a breach changes nothing."""
    core = opened_core()
    before = snapshot(core)
    with pytest.raises(InvalidParticipantInfo) as caught:
        core.update(**kwargs)
    assert fragment in caught.value.reason
    assert (caught.value.rule, caught.value.state) == ("R10", S.OPEN)
    assert snapshot(core) == before


@pytest.mark.parametrize("state", [S.CLOSED, S.OPENING, S.CLOSING])
def test_r10_update_outside_open_is_session_not_open(state: SessionState) -> None:
    """R10: update() anywhere but OPEN and GHOST raises SessionNotOpen."""
    core = SessionCore()
    core.state = state
    with pytest.raises(SessionNotOpen) as caught:
        core.update(name="Ada")
    assert (caught.value.rule, caught.value.trigger, caught.value.state) == ("R10", "update", state)
    assert core.state is state


@pytest.mark.parametrize("make", [opened_core, ghost_core])
def test_r11_close_goes_through_closing(make: Any) -> None:
    """R11: close() from OPEN or GHOST asks to log out, CLOSING joins, closed ends in CLOSED."""
    core = make()
    assert core.close() is Effect.SEND_CLOSE
    assert core.state is S.CLOSING
    assert core.close() is Effect.JOIN_CLOSE
    assert core.closed() is Effect.NOTHING
    assert core.state is S.CLOSED and core.participant is None


def test_r11_close_while_opening_and_when_closed() -> None:
    """R11: close() while OPENING abandons the open; close() from CLOSED does nothing."""
    core = SessionCore()
    assert core.close() is Effect.NOTHING and core.state is S.CLOSED
    core.open(ParticipantInfo("Ada"))
    assert core.close() is Effect.SEND_CLOSE
    assert core.state is S.CLOSING and core.opening is None
    with pytest.raises(TransitionNotAllowed) as caught:
        core.opened(ADA_P)  # a late reply is refused (M1)
    assert caught.value.rule == "M1"
    with pytest.raises(TransitionNotAllowed) as caught:
        core.open(ParticipantInfo("Ada"))
    assert (caught.value.rule, caught.value.state) == ("R11", S.CLOSING)
    core.closed()
    assert core.state is S.CLOSED


def test_r11_close_abandons_the_update_in_flight() -> None:
    """R11: closing drops the update in flight; its late reply is refused (M1)."""
    core = opened_core()
    core.update(name="Ada L.")
    core.close()
    assert core.updating is None
    with pytest.raises(TransitionNotAllowed) as caught:
        core.updated(Participant("p-ada", ParticipantInfo("Ada L.", "ext-ada")))
    assert caught.value.rule == "M1" and core.state is S.CLOSING


def test_r12_open_and_close_any_number_of_times() -> None:
    """R12: cycles repeat without limit and leave nothing behind."""
    core = SessionCore(token_external_id="ext-ada")
    for _ in range(200):
        core.open(ADA)
        core.opened(ADA_P)
        core.close()
        core.closed()
    assert core.state is S.CLOSED and core.identity == ADA
    assert (core.opening, core.updating, core.participant) == (None, None, None)


def test_r13_backend_refusals() -> None:
    """R13: a refused open ends in CLOSED; a refused update keeps the state."""
    core = SessionCore()
    core.open(ParticipantInfo("Ada"))
    core.open_failed()
    assert core.state is S.CLOSED and core.identity is None and core.opening is None
    core = opened_core()
    core.update(name="Bob")
    core.update_failed()
    assert core.state is S.OPEN and core.updating is None and core.identity == ADA


def test_r14_connection_loss() -> None:
    """R14: a loss keeps OPEN and GHOST, fails OPENING, completes CLOSING; lost ends it all."""
    core = opened_core()
    core.connection_lost()
    assert core.state is S.OPEN and core.participant == ADA_P
    core = ghost_core()
    core.connection_lost()
    assert core.state is S.GHOST
    core = SessionCore()
    core.open()
    core.connection_lost()
    assert core.state is S.CLOSED
    core = opened_core()
    core.close()
    core.connection_lost()
    assert core.state is S.CLOSED
    for make in (opened_core, ghost_core):
        core = make()
        core.lost()
        assert core.state is S.CLOSED and core.participant is None


def test_r14_r18_resumed_keeps_the_same_participant() -> None:
    """R14, R18: a resume keeps the state and the participant; another participant is refused."""
    core = opened_core()
    core.connection_lost()
    assert core.resumed(Participant("p-ada", ADA)) is Effect.NOTHING
    assert core.state is S.OPEN and core.identity == ADA
    before = snapshot(core)
    with pytest.raises(TransitionNotAllowed) as caught:
        core.resumed(Participant("p-other", ADA))
    assert caught.value.rule == "R18" and snapshot(core) == before
    ghost = ghost_core()
    ghost.resumed(Participant("g-1", ParticipantInfo(None)))
    assert ghost.state is S.GHOST
    ghost.resumed(Participant("g-1", ParticipantInfo("Named later")))
    assert ghost.state is S.OPEN and ghost.identity == ParticipantInfo("Named later")
    with pytest.raises(TransitionNotAllowed) as refused:
        SessionCore().resumed(ADA_P)
    assert refused.value.rule == "M1"


def test_m1_replies_outside_their_states_are_refused() -> None:
    """M1: a reply the state does not expect is refused and changes nothing."""
    core = SessionCore()
    for trigger, kwargs in [
        ("opened", {"participant": ADA_P}),
        ("open_failed", {}),
        ("updated", {"participant": ADA_P}),
        ("update_failed", {}),
        ("closed", {}),
    ]:
        with pytest.raises(TransitionNotAllowed) as caught:
            getattr(core, trigger)(**kwargs)
        assert (caught.value.rule, caught.value.trigger, caught.value.state) == (
            "M1",
            trigger,
            S.CLOSED,
        )
        assert core.state is S.CLOSED


def test_m2_reply_must_carry_a_participant() -> None:
    """M2: opened() with something other than a Participant is refused."""
    core = SessionCore()
    core.open(ParticipantInfo("Ada"))
    with pytest.raises(ArgumentTypeError) as caught:
        core.opened("p-1")  # type: ignore[arg-type]
    assert caught.value.rule == "M2" and core.state is S.OPENING


def test_m4_one_update_in_flight() -> None:
    """M4: a second update while one waits for its reply is refused and changes nothing."""
    core = opened_core()
    core.update(name="Ada L.")
    before = snapshot(core)
    with pytest.raises(TransitionNotAllowed) as caught:
        core.update(name="Ada M.")
    assert (caught.value.rule, caught.value.state) == ("M4", S.OPEN)
    assert snapshot(core) == before
    assert core.update() is Effect.NOTHING  # nothing to change is still fine


def test_m3_definitions_are_checked() -> None:
    """M3: unreachable states, dead ends, shadowed rows and missing refusals are caught."""
    good = dict(m.SESSION_TABLE)
    check_definition(good, S.CLOSED, m.SESSION_REFUSALS, SessionCore)
    broken: list[tuple[dict[Any, tuple[On, ...]], Mapping[str, m.Refusal], str]] = [
        (
            {**good, S.GHOST: tuple(dataclasses.replace(row, dest=None) for row in good[S.GHOST])},
            m.SESSION_REFUSALS,
            r"CLOSED is unreachable from: \['GHOST'\]",
        ),
        ({k: v for k, v in good.items() if k is not S.CLOSING}, m.SESSION_REFUSALS, "CLOSING"),
        (
            {**good, S.OPEN: (On("close"), *good[S.OPEN])},
            m.SESSION_REFUSALS,
            "follows one that always applies",
        ),
        (good, {k: v for k, v in m.SESSION_REFUSALS.items() if k != "update"}, "no refusal"),
        (
            {**good, S.CLOSED: (*good[S.CLOSED], On("frob", S.OPEN))},
            m.SESSION_REFUSALS,
            "no handler",
        ),
    ]
    for table, refusals, fragment in broken:
        with pytest.raises(InvalidDefinition, match=fragment):
            check_definition(table, S.CLOSED, refusals, SessionCore)


def test_m3_unreachable_state_is_caught() -> None:
    """M3: a state no row leads to is reported."""
    table = {
        state: tuple(row for row in rows if row.dest is not S.GHOST)
        for state, rows in m.SESSION_TABLE.items()
    }
    with pytest.raises(InvalidDefinition, match="unreachable from CLOSED"):
        check_definition(table, S.CLOSED, m.SESSION_REFUSALS, SessionCore)


def test_s1_socket_moves() -> None:
    """S1: exactly the six legal moves; anything else is refused and changes nothing."""
    W = WebSocketState
    legal = {
        (W.CLOSED, "connect"): W.CONNECTING,
        (W.CONNECTING, "connected"): W.CONNECTED,
        (W.CONNECTING, "connect_failed"): W.CLOSED,
        (W.CONNECTED, "close"): W.CLOSING,
        (W.CONNECTED, "dropped"): W.CLOSED,
        (W.CLOSING, "closed"): W.CLOSED,
        (W.CLOSING, "dropped"): W.CLOSED,
    }
    triggers = {trigger for _, trigger in legal}
    for state in W:
        for trigger in sorted(triggers):
            core = SocketCore()
            core.state = state
            if (state, trigger) in legal:
                getattr(core, trigger)()
                assert core.state is legal[(state, trigger)]
            else:
                with pytest.raises(TransitionNotAllowed) as caught:
                    getattr(core, trigger)()
                assert (caught.value.rule, caught.value.state) == ("S1", state)
                assert core.state is state


def test_cores_are_small_and_share_one_machine() -> None:
    """The per-session object holds only its data; the machine is shared (design)."""
    a, b = SessionCore(), SessionCore()
    assert not hasattr(a, "__dict__")
    assert type(a)._machine is type(b)._machine is m.SESSION_MACHINE
    assert m.SESSION_MACHINE.models == []


# ---------------------------------------------------------------------------------------------
# Hypothesis: arbitrary sequences checked against an independent model of the rules.
# ---------------------------------------------------------------------------------------------

GOOD_URLS = ["https://example.org/a.png", "http://cdn.example.com/x?y=1"]
BAD_URLS = ["ftp://example.org/a.png", "not a url", "https://", "/a.png", ""]
TOKEN_IDS = [None, "ext-ada", "ext-bob"]

names = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["Ada", "Bob", " ", "", "x" * 257, "a\ud800"]),
)
urls = st.one_of(st.none(), st.sampled_from(GOOD_URLS + BAD_URLS))
external_ids = st.one_of(st.none(), st.sampled_from(["ext-ada", "ext-bob", ""]))
infos = st.builds(ParticipantInfo, name=names, external_id=external_ids, avatar_url=urls)
open_args = st.one_of(st.just(MISSING), st.none(), infos)


def model_name_ok(name: object) -> bool:
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        return False
    return "\ud800" not in name and all(not 0xD800 <= ord(c) <= 0xDFFF for c in name)


def model_info_ok(info: object) -> bool:
    if not isinstance(info, ParticipantInfo) or not model_name_ok(info.name):
        return False
    if info.avatar_url is not None and info.avatar_url not in GOOD_URLS:
        return False
    return info.external_id is None or info.external_id != ""


class Oracle:
    """The rules of specs/session.md written plainly, independent of the machine's table."""

    def __init__(self, token: str | None) -> None:
        self.state = "CLOSED"
        self.token = token
        self.identity: ParticipantInfo | None = None
        self.opening: ParticipantInfo | None = None
        self.participant: Participant | None = None
        self.updating: ParticipantInfo | None = None

    def open(self, info: Any) -> Effect | type[SessionError]:
        if self.state == "CLOSED":
            target = info if info is not MISSING else self.identity
            if info is not MISSING and not model_info_ok(info):
                return InvalidParticipantInfo
            if target is not None and target.external_id not in (None, self.token):
                return ExternalIdMismatch
            self.opening, self.state = target, "OPENING"
            return Effect.SEND_OPEN
        if self.state == "CLOSING":
            return TransitionNotAllowed
        if info is not MISSING and not model_info_ok(info):
            return InvalidParticipantInfo
        current = {"OPENING": self.opening, "OPEN": self.identity, "GHOST": None}[self.state]
        if info is not MISSING and info != current:
            return SessionAlreadyOpen
        return Effect.JOIN_OPEN if self.state == "OPENING" else Effect.RETURN_PARTICIPANT

    def update(self, name: Any, avatar: Any) -> Effect | type[SessionError]:
        if self.state not in ("OPEN", "GHOST"):
            return SessionNotOpen
        if name is None and avatar is None:
            return Effect.NOTHING
        if self.updating is not None:
            return TransitionNotAllowed
        if name is not None and not model_name_ok(name):
            return InvalidParticipantInfo
        if avatar is not None and avatar not in GOOD_URLS:
            return InvalidParticipantInfo
        assert self.participant is not None
        old = self.participant.info
        self.updating = ParticipantInfo(
            old.name if name is None else name, old.external_id, avatar or old.avatar_url
        )
        return Effect.SEND_UPDATE

    def reply(self, trigger: str, participant: Participant | None) -> Effect | type[SessionError]:
        if trigger == "opened" and self.state == "OPENING":
            self.participant = participant
            if self.opening is not None:
                self.identity, self.state = self.opening, "OPEN"
            else:
                self.state = "GHOST"
            self.opening = None
        elif trigger == "open_failed" and self.state == "OPENING":
            self.state, self.opening = "CLOSED", None
        elif trigger == "updated" and self.state in ("OPEN", "GHOST") and self.updating:
            self.participant = participant
            if self.updating.name is not None:
                self.identity, self.state = self.updating, "OPEN"
            self.updating = None
        elif trigger == "update_failed" and self.state in ("OPEN", "GHOST") and self.updating:
            self.updating = None
        elif trigger == "resumed" and self.state in ("OPEN", "GHOST") and participant:
            assert self.participant is not None
            if participant.id != self.participant.id:
                return TransitionNotAllowed  # R18: never another participant
            self.participant = participant
            if self.state == "GHOST" and participant.info.name is not None:
                self.identity, self.state = participant.info, "OPEN"
        elif trigger == "closed" and self.state == "CLOSING":
            self.state, self.participant = "CLOSED", None
        else:
            return TransitionNotAllowed
        return Effect.NOTHING

    def close(self) -> Effect:
        if self.state == "CLOSED":
            return Effect.NOTHING
        if self.state == "CLOSING":
            return Effect.JOIN_CLOSE
        self.state, self.opening, self.updating = "CLOSING", None, None
        return Effect.SEND_CLOSE

    def connection_lost(self) -> None:
        if self.state in ("OPENING", "CLOSING"):
            self.state, self.opening, self.updating, self.participant = "CLOSED", None, None, None

    def lost(self) -> Effect | type[SessionError]:
        if self.state == "CLOSED":
            return TransitionNotAllowed  # M1: nothing to lose
        self.state, self.opening, self.updating, self.participant = "CLOSED", None, None, None
        return Effect.NOTHING


class SessionRules(RuleBasedStateMachine):
    """Drives a pure SessionCore and the Oracle with the same inputs; they must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.core: SessionCore | None = None
        self.oracle: Oracle | None = None
        self.next_id = 0

    @precondition(lambda self: self.core is None)
    @rule(token=st.sampled_from(TOKEN_IDS))
    def start(self, token: str | None) -> None:
        self.core, self.oracle = SessionCore(token_external_id=token), Oracle(token)

    def check(self, call: Any, expected: Effect | type[SessionError]) -> None:
        assert self.core is not None
        before = snapshot(self.core)
        try:
            got: Effect | type[SessionError] = call()
        except SessionError as error:
            got = type(error)
            assert error.state is before[0] and error.trigger is not None and error.rule
            assert snapshot(self.core) == before  # R13: a refusal changes nothing
        if isinstance(expected, type) and expected is TransitionNotAllowed:
            assert isinstance(got, type) and issubclass(got, TransitionNotAllowed), got
        else:
            assert got == expected, (got, expected)

    def participant(self, ghost: bool) -> Participant:
        self.next_id += 1
        assert self.core is not None
        if self.core.state is S.OPENING and self.core.opening is not None and not ghost:
            return Participant(f"p{self.next_id}", self.core.opening)
        return Participant(f"p{self.next_id}", ParticipantInfo(None))

    @precondition(lambda self: self.core is not None)
    @rule(info=open_args)
    def open(self, info: Any) -> None:
        assert self.core and self.oracle
        self.check(lambda: self.core.open(info), self.oracle.open(info))  # type: ignore[union-attr]

    @precondition(lambda self: self.core is not None)
    @rule(name=st.one_of(st.none(), names, st.just(5)), avatar=urls)
    def update(self, name: Any, avatar: Any) -> None:
        assert self.core and self.oracle
        self.check(lambda: self.core.update(name, avatar), self.oracle.update(name, avatar))  # type: ignore[union-attr]

    @precondition(lambda self: self.core is not None)
    @rule()
    def close(self) -> None:
        assert self.core and self.oracle
        self.check(self.core.close, self.oracle.close())

    @precondition(lambda self: self.core is not None)
    @rule(
        trigger=st.sampled_from(
            ["opened", "open_failed", "updated", "update_failed", "closed", "resumed"]
        ),
        ghost=st.booleans(),
        same=st.booleans(),
    )
    def backend_reply(self, trigger: str, ghost: bool, same: bool) -> None:
        assert self.core and self.oracle
        core = self.core
        if trigger == "resumed":
            current = core.participant
            pid = current.id if current is not None and same else "someone-else"
            who = Participant(pid, ParticipantInfo(None if ghost else "Named"))
            expected = self.oracle.reply(trigger, who)
            self.check(lambda: core.resumed(participant=who), expected)
        elif trigger in ("opened", "updated"):
            if trigger == "updated" and core.updating is not None:
                who = Participant("same", core.updating)
            else:
                who = self.participant(ghost)
            expected = self.oracle.reply(trigger, who)
            self.check(lambda: getattr(core, trigger)(participant=who), expected)
        else:
            self.check(getattr(core, trigger), self.oracle.reply(trigger, None))

    @precondition(lambda self: self.core is not None)
    @rule()
    def connection_lost(self) -> None:
        assert self.core and self.oracle
        self.oracle.connection_lost()
        self.check(self.core.connection_lost, Effect.NOTHING)

    @precondition(lambda self: self.core is not None)
    @rule()
    def lost(self) -> None:
        assert self.core and self.oracle
        self.check(self.core.lost, self.oracle.lost())

    @invariant()
    def agrees_with_oracle(self) -> None:
        if self.core is None or self.oracle is None:
            return
        assert self.core.state in SessionState
        assert self.core.state.name == self.oracle.state
        assert self.core.is_open() is (self.oracle.state in ("OPEN", "GHOST"))  # R8
        assert self.core.identity == self.oracle.identity
        assert self.core.participant == self.oracle.participant
        if self.oracle.state == "CLOSED":
            assert self.core.participant is None

    @invariant()
    def closed_is_reachable(self) -> None:
        """From every state a close (and its reply) or a loss reaches CLOSED."""
        if self.core is None:
            return
        probe = SessionCore(self.core.token_external_id)
        for slot in ("state", "identity", "opening", "updating", "participant"):
            setattr(probe, slot, getattr(self.core, slot))
        probe.close()
        if probe.state is S.CLOSING:
            probe.closed()
        assert probe.state is S.CLOSED


SessionRules.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSessionRules = SessionRules.TestCase


def _script(core: SessionCore) -> list[tuple[object, ...]]:
    trace: list[tuple[object, ...]] = []
    calls: list[tuple[str, dict[str, Any]]] = [
        ("open", {"info": ADA}),
        ("open", {"info": ADA}),
        ("opened", {"participant": ADA_P}),
        ("update", {"name": "Ada L.", "avatar_url": None}),
        ("updated", {"participant": Participant("p-ada", ParticipantInfo("Ada L.", "ext-ada"))}),
        ("update", {"name": " ", "avatar_url": None}),
        ("connection_lost", {}),
        ("resumed", {"participant": ADA_P}),
        ("close", {}),
        ("closed", {}),
        ("open", {"info": MISSING}),
        ("lost", {}),
    ]
    for trigger, kwargs in calls:
        try:
            outcome: object = getattr(core, trigger)(**kwargs)
        except SessionError as error:
            outcome = (type(error), error.rule)
        trace.append((trigger, outcome, core.state, core.last, core.identity, core.participant))
    return trace


def test_short_path_and_transitions_own_path_agree(caplog: pytest.LogCaptureFixture) -> None:
    """The machine's short path through transitions takes the same rows as transitions' own
    code, which runs whenever someone listens to its log."""
    fast = _script(SessionCore(token_external_id="ext-ada"))
    with caplog.at_level("DEBUG", logger="transitions.core"):
        slow = _script(SessionCore(token_external_id="ext-ada"))
    assert any("Initiating transition" in message for message in caplog.messages)
    assert fast == slow
