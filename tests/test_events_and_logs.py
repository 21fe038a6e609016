"""What a person reads: events with one naming and a short str(), and one DEBUG record per
transition on fsm_session.session (socket moves on fsm_session.socket), transitions' own quiet."""

from __future__ import annotations

import logging

import pytest

from fsm_session import (
    ParticipantInfo,
    SessionLostEvent,
    SessionState,
    SessionStateChangeEvent,
    SessionSwitched,
    SessionSwitchedEvent,
    SocketStateChangeEvent,
    WebSocketState,
    open_session_service,
)
from tests.conftest import Mint

S = SessionState
W = WebSocketState
ADA = ParticipantInfo("Ada", external_id="ext-ada")


def test_s1_events_share_one_naming_and_read_as_one_line() -> None:
    """S1: every change event has old, new, trigger and session; str() is one short line."""
    session = SessionStateChangeEvent(S.CLOSED, S.OPENING, "open", "3f2a")
    socket = SocketStateChangeEvent(W.CLOSED, W.CONNECTING, "connect", "3f2a")
    assert str(session) == "session 3f2a: CLOSED -> OPENING on open"
    assert str(socket) == "session 3f2a socket: CLOSED -> CONNECTING on connect"
    assert (socket.state, socket.previous) == (socket.new, socket.old)  # the SDK's names
    lost = SessionLostEvent("switched", SessionSwitched("taken over"), "3f2a")
    assert str(lost) == "session 3f2a: lost (switched): taken over"
    assert str(SessionSwitchedEvent("p1", "3f2a")) == "session 3f2a: switched (participant p1)"


async def test_every_transition_is_logged_once_with_its_session_states_trigger_and_rule(
    server_url: str, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    """Each row taken is one DEBUG record on fsm_session.session naming the short session ID,
    the states, the trigger and the rules; each socket move one on fsm_session.socket; nothing
    from transitions' own logger."""
    caplog.set_level(logging.DEBUG)
    async with (
        open_session_service(server_url, access_token=mint("ext-ada")) as session,
        session.subscribe() as events,
    ):
        await session.open(ADA)
        await session.update(name="Ada L.")
        await session.close()
        published = events.ready()
    session_records = [r.getMessage() for r in caplog.records if r.name == "fsm_session.session"]
    socket_records = [r.getMessage() for r in caplog.records if r.name == "fsm_session.socket"]
    changes = [e for e in published if isinstance(e, SessionStateChangeEvent)]
    short = changes[0].session
    expected = [
        f"session {short}: CLOSED -> OPENING on open (R2 R3 R4)",
        f"session {short}: OPENING -> OPEN on opened (R4)",
        f"session {short}: OPEN -> OPEN on update (R10)",
        f"session {short}: OPEN -> OPEN on updated (R10)",
        f"session {short}: OPEN -> CLOSING on close (R11)",
        f"session {short}: CLOSING -> CLOSED on closed (R11)",
        f"session {short}: CLOSED -> CLOSED on close (R11)",  # leaving the block
    ]
    assert session_records == expected
    moves = [e for e in published if isinstance(e, SocketStateChangeEvent)]
    assert socket_records == [f"{e} (S1)" for e in moves] and len(moves) == 4
    assert not [r for r in caplog.records if r.name.startswith("transitions")]
