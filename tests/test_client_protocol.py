"""The client protocol object without sockets or trio: calls, replies, drops, resumes and time
go in as data; frames, machine moves and outcomes come out. Hypothesis drives interleavings of
all of them against the rules of specs/session.md."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fsm_session.client_protocol import ClientProtocol, Kind, Pending, ReconnectPolicy
from fsm_session.errors import (
    ConnectionLost,
    RemoteProtocolError,
    RequestAborted,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
)
from fsm_session.events import Event, SessionStateChangeEvent, SocketStateChangeEvent
from fsm_session.machine import SESSION_TABLE, SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import (
    Closed,
    ErrorReply,
    Message,
    Opened,
    Resumed,
    SessionEnded,
    TokenAccepted,
    Updated,
    decode_request,
)

S = SessionState
W = WebSocketState
ADA = ParticipantInfo("Ada", external_id="ext-ada")
ADA_P = Participant("p-ada", ADA)
POLICY = ReconnectPolicy(initial_delay=0.05, max_delay=2.0, give_up_after=60.0, max_sends=3)


class Harness:
    """A protocol object, its published events, and a clock of our own."""

    def __init__(self, policy: ReconnectPolicy = POLICY) -> None:
        self.events: list[Event] = []
        self.proto = ClientProtocol(
            token_external_id="ext-ada", on_event=self.events.append, policy=policy
        )
        self.now = 0.0

    def connect(self) -> int:
        serial = self.proto.connecting()
        self.proto.connected(serial, now=self.now)
        return serial

    def send(self, request: Pending) -> dict[str, Any]:
        frame = self.proto.send(request, self.proto.connection, now=self.now)
        assert frame is not None
        decode_request(frame)  # a valid request of the protocol
        loaded: dict[str, Any] = json.loads(frame)
        return loaded

    def reply(self, message: Message, serial: int | None = None) -> bool:
        return self.proto.receive(
            self.proto.connection if serial is None else serial, message, now=self.now
        )

    def opened(self) -> Pending:
        if self.proto.socket.state is W.CLOSED:
            self.connect()
        _, request = self.proto.open(ADA, now=self.now)
        assert request is not None
        frame = self.send(request)
        self.reply(Opened(frame["id"], ADA_P))
        assert self.proto.state is S.OPEN and request.value == ADA_P
        return request

    def state_changes(self) -> list[tuple[S, S, str]]:
        return [
            (e.old, e.new, e.trigger) for e in self.events if isinstance(e, SessionStateChangeEvent)
        ]


# ---------------------------------------------------------------------------- correlation


def test_r4_open_reply_correlates_by_id_and_ids_increase() -> None:
    """R4: open sends one frame whose id the reply repeats; ids strictly increase (P3)."""
    h = Harness()
    h.opened()
    update = h.proto.update("Ada L.", None, now=0)
    assert update is not None
    frame = h.send(update)
    assert frame["type"] == "update" and frame["id"] == 2
    h.reply(Updated(2, Participant("p-ada", ParticipantInfo("Ada L.", "ext-ada"))))
    assert update.done and update.error is None and h.proto.update_request is None
    assert h.state_changes() == [(S.CLOSED, S.OPENING, "open"), (S.OPENING, S.OPEN, "opened")]


WRONG_REPLIES: list[tuple[Kind, Message]] = [
    (Kind.OPEN, Closed(1)),
    (Kind.OPEN, Updated(1, ADA_P)),
    (Kind.OPEN, Resumed(1, ADA_P)),
    (Kind.OPEN, TokenAccepted(1, "ext-ada", None)),
    (Kind.UPDATE, Opened(2, ADA_P)),
    (Kind.UPDATE, Closed(2)),
    (Kind.CLOSE, Opened(2, ADA_P)),
    (Kind.CLOSE, Updated(2, ADA_P)),
]


@pytest.mark.parametrize(("kind", "wrong"), WRONG_REPLIES, ids=lambda v: getattr(v, "TYPE", v))
def test_p4_a_reply_of_the_wrong_kind_fails_its_request_and_leaves_a_legal_state(
    kind: Kind, wrong: Message
) -> None:
    """P4: each request accepts exactly its reply kind; another is a RemoteProtocolError that
    names the rule and the request, and the machine ends where a refusal would put it."""
    h = Harness()
    if kind is Kind.OPEN:
        h.connect()
        _, request = h.proto.open(ADA, now=0)
        assert request is not None
    else:
        h.opened()
        if kind is Kind.UPDATE:
            request = h.proto.update("Ada L.", None, now=0)
        else:
            _, request = h.proto.close(now=0)
        assert request is not None
    h.send(request)
    assert h.reply(wrong) is False
    assert isinstance(request.error, RemoteProtocolError)
    assert request.error.rule == "P4" and request.error.trigger == kind.trigger
    assert kind.trigger in str(request.error) and wrong.TYPE in str(request.error)
    expected = {Kind.OPEN: S.CLOSED, Kind.UPDATE: S.OPEN, Kind.CLOSE: S.CLOSING}[kind]
    assert h.proto.state is expected
    assert h.proto.session.updating is None and h.proto.open_request is None


def test_p4_duplicate_and_unknown_replies_are_protocol_errors_that_change_nothing() -> None:
    """P4: a second reply to an answered request, or a reply to an id never sent, raises
    RemoteProtocolError from receive() and changes nothing."""
    h = Harness()
    h.opened()
    before = (h.proto.state, h.proto.session.participant, len(h.events))
    with pytest.raises(RemoteProtocolError, match="is not waiting") as dup:
        h.reply(Opened(1, ADA_P))
    with pytest.raises(RemoteProtocolError, match="was never sent") as unknown:
        h.reply(Updated(99, ADA_P))
    assert dup.value.rule == unknown.value.rule == "P4"
    assert (h.proto.state, h.proto.session.participant, len(h.events)) == before


def test_p5_an_error_without_id_is_a_protocol_error_naming_its_code() -> None:
    """P5: an error frame with id null is reported, and changes nothing."""
    h = Harness()
    h.opened()
    with pytest.raises(RemoteProtocolError, match="bad_frame") as caught:
        h.reply(ErrorReply(None, "bad_frame", "the frame is not JSON", "P2"))
    assert caught.value.rule == "P5" and h.proto.state is S.OPEN


# ---------------------------------------------------------------------------- generations


def test_r11_close_fails_every_request_at_once_even_those_never_sent() -> None:
    """R11: close() fails queued and in-flight requests with RequestAborted in data; a queued one
    is never put on the wire afterwards, and a late reply to an abandoned one is ignored."""
    h = Harness()
    h.opened()
    sent = h.proto.update("Ada L.", None, now=0)
    assert sent is not None
    frame = h.send(sent)
    token = h.proto.refresh_token("t2", now=0)  # recorded, not yet sent
    assert token is not None
    _, logout = h.proto.close(now=0)
    assert logout is not None
    for request in (sent, token):
        assert isinstance(request.error, RequestAborted) and request.error.rule == "R11"
    assert h.proto.send(token, h.proto.connection, now=0) is None  # never sent after the close
    assert h.reply(Updated(frame["id"], ADA_P)) is False  # the late reply: ignored
    logout_frame = h.send(logout)
    h.reply(Closed(logout_frame["id"]))
    assert h.proto.close_outcome is not None
    h.proto.finish_close(h.proto.close_outcome)
    assert h.proto.state is S.CLOSED


def test_r14_frames_and_drops_of_an_older_connection_do_not_act_on_a_newer_one() -> None:
    """R14: a drop or a reply reported for a connection that is no longer current is ignored."""
    h = Harness()
    old = h.connect()
    _, first = h.proto.open(ADA, now=0)
    assert first is not None
    frame = h.send(first)
    h.proto.dropped(old, ConnectionLost("gone", rule="R14"), now=0)
    assert h.proto.state is S.CLOSED and isinstance(first.error, ConnectionLost)
    h.connect()
    _, second = h.proto.open(ADA, now=0)
    assert second is not None
    second_frame = h.send(second)
    assert h.reply(Opened(frame["id"], ADA_P), serial=old) is False  # stale: ignored
    assert h.proto.dropped(old, ConnectionLost("late", rule="R14"), now=0) is False
    assert h.proto.state is S.OPENING and h.proto.socket.state is W.CONNECTED
    h.reply(Opened(second_frame["id"], ADA_P))
    assert h.proto.state is S.OPEN


def test_finish_close_of_an_older_close_does_not_end_a_newer_one() -> None:
    """Race 1 in data: an older close finishing late never fires `closed` on a newer close."""
    h = Harness()
    h.opened()
    h.proto.close(now=0)
    first = h.proto.close_outcome
    assert first is not None
    h.proto.finish_close(first)
    h.opened()
    h.proto.close(now=0)
    second = h.proto.close_outcome
    h.proto.finish_close(first)  # stale
    assert h.proto.state is S.CLOSING and second is not None and not second.done


# ---------------------------------------------------------------------------- drops and resumes


def test_r14_a_drop_requeues_in_flight_requests_and_the_resume_resends_them() -> None:
    """R14: requests whose connection dropped before their reply are sent again after the
    resume, with new ids on the new connection, in their order."""
    h = Harness()
    h.opened()
    update = h.proto.update("Ada L.", None, now=0)
    assert update is not None
    h.send(update)
    assert h.proto.dropped(h.proto.connection, ConnectionLost("x", rule="R14"), now=1) is True
    assert h.proto.state is S.OPEN and not update.done
    delay = h.proto.reconnect_delay(now=1)
    assert delay == POLICY.initial_delay
    h.connect()
    resume = h.proto.resume(now=1)
    assert resume is not None
    resume_frame = h.send(resume)
    assert resume_frame == {"type": "resume", "id": resume_frame["id"], "participant_id": "p-ada"}
    h.reply(Resumed(resume_frame["id"], ADA_P))
    frames = [json.loads(f) for f in h.proto.resend(h.proto.connection, now=1)]
    assert [f["type"] for f in frames] == ["update"] and frames[0]["id"] > resume_frame["id"]
    h.reply(Updated(frames[0]["id"], ADA_P))
    assert update.done and update.error is None


def test_r14_a_request_whose_resend_keeps_killing_the_connection_fails_with_the_cause() -> None:
    """R14: after max_sends connections ended before its reply, the request fails, naming the
    last cause (a 1009 close here), and the backoff keeps growing meanwhile."""
    h = Harness()
    h.opened()
    update = h.proto.update("Ada L.", None, now=0)
    assert update is not None
    h.send(update)
    delays = []
    for n in range(POLICY.max_sends):
        h.now += 0.01
        poison = ConnectionLost("the connection closed (code 1009)", rule="R14")
        h.proto.dropped(h.proto.connection, poison, now=h.now)
        delay = h.proto.reconnect_delay(now=h.now)
        assert delay is not None
        delays.append(delay)
        if n == POLICY.max_sends - 1:
            break
        h.connect()
        resume = h.proto.resume(now=h.now)
        assert resume is not None
        h.reply(Resumed(h.send(resume)["id"], ADA_P))
        assert len(h.proto.resend(h.proto.connection, now=h.now)) == 1
    assert isinstance(update.error, ConnectionLost)
    assert "1009" in str(update.error) and f"{POLICY.max_sends} times" in str(update.error)
    assert delays == sorted(delays) and delays[-1] > delays[0]  # no tight reconnect loop
    assert h.proto.state is S.OPEN and h.proto.session.updating is None


def test_r14_backoff_starts_afresh_only_after_a_stable_connection() -> None:
    """R14: the reconnect delay grows while connections die young and starts again from the
    initial delay once a connection stayed up max_delay seconds."""
    h = Harness()
    h.opened()
    lost = ConnectionLost("x", rule="R14")
    h.proto.dropped(h.proto.connection, lost, now=0.1)
    first = h.proto.reconnect_delay(now=0.1)
    h.connect()
    resume = h.proto.resume(now=0.2)
    assert resume is not None
    h.reply(Resumed(h.send(resume)["id"], ADA_P))
    h.proto.dropped(h.proto.connection, lost, now=0.3)
    second = h.proto.reconnect_delay(now=0.3)
    assert first is not None and second is not None and second > first
    h.now = 0.4
    h.connect()
    resume = h.proto.resume(now=0.4)
    assert resume is not None
    h.reply(Resumed(h.send(resume)["id"], ADA_P))
    h.proto.dropped(h.proto.connection, lost, now=0.4 + POLICY.max_delay)
    assert h.proto.reconnect_delay(now=10) == POLICY.initial_delay


def test_r14_giving_up_loses_the_session() -> None:
    """R14: past give_up_after the session is lost: CLOSED with a SessionLostEvent."""
    h = Harness(ReconnectPolicy(give_up_after=1.0))
    h.opened()
    h.proto.dropped(h.proto.connection, ConnectionLost("x", rule="R14"), now=0)
    assert h.proto.reconnect_delay(now=0.99) is None
    assert h.proto.reconnect_failed(ConnectionLost("y", rule="R14"), final=False, now=0.99)
    assert h.proto.state is S.CLOSED


def test_r17_ended_switched_loses_the_session() -> None:
    """R17: `ended` switched loses the session; receive() says so to the driver."""
    h = Harness()
    h.opened()
    assert h.reply(SessionEnded("switched")) is True
    assert h.proto.state is S.CLOSED
    assert h.state_changes()[-1] == (S.OPEN, S.CLOSED, "lost")


def test_r14_expiry_fails_late_requests_and_asks_to_drop_the_connection() -> None:
    """R14: a request past its deadline fails with ConnectionLost; one that was on the wire
    makes the connection out of step, so the driver drops it."""
    h = Harness()
    h.opened()
    update = h.proto.update("Ada L.", None, now=0)
    assert update is not None
    h.send(update)
    assert h.proto.next_deadline() == h.proto.request_timeout
    assert h.proto.expire(now=h.proto.request_timeout - 0.001) is False
    assert h.proto.expire(now=h.proto.request_timeout) is True
    assert isinstance(update.error, ConnectionLost) and h.proto.state is S.OPEN


def test_r13_an_open_never_sent_fails_and_the_session_is_closed() -> None:
    """R13: an open the driver could not send (cancelled, connect failed) ends CLOSED."""
    h = Harness()
    _, request = h.proto.open(ADA, now=0)
    assert request is not None
    h.proto.not_sent(request, RequestAborted("cancelled", rule="R11"))
    assert h.proto.state is S.CLOSED and isinstance(request.error, RequestAborted)


# ---------------------------------------------------------------------------- interleavings

LEGAL = {(state, row.dest or state) for state, rows in SESSION_TABLE.items() for row in rows}

# A step is a kind and a small integer that picks its argument. The kinds that make progress
# are listed more often, so that most walks get past OPENING before a drop, close or end.
KINDS = (
    ["open"] * 3 + ["update"] * 2 + ["send"] * 6 + ["reply_right"] * 6
    + ["close", "connect", "resume", "finish_close", "reply_wrong", "reply_error",
       "reply_stale", "drop", "tick", "ended"]
)  # fmt: skip
OPEN_ARGS = [ADA, ADA, None, ParticipantInfo("Bob"), ADA, ADA]
NAMES = ["Ada L.", "Ada", None, " ", "Ada L.", "Ada"]
TICKS = [0.01, 0.5, 3.0, 11.0, 0.01, 0.5]
step = st.tuples(st.sampled_from(KINDS), st.integers(0, 5))

RIGHT: dict[Kind, Any] = {
    Kind.OPEN: lambda rid, info: Opened(rid, Participant("p-ada", info or ParticipantInfo(None))),
    Kind.UPDATE: lambda rid, _: Updated(rid, ADA_P),
    Kind.CLOSE: lambda rid, _: Closed(rid),
    Kind.RESUME: lambda rid, _: Resumed(rid, ADA_P),
    Kind.TOKEN: lambda rid, _: TokenAccepted(rid, "ext-ada", None),
}


@settings(max_examples=300)
@given(st.lists(step, min_size=20, max_size=80))
def test_m1_r11_r14_any_interleaving_keeps_the_rules(steps: list[tuple[str, Any]]) -> None:
    """M1, R11, R13, R14: under any interleaving of calls, right, wrong, stale and error
    replies, drops, resumes and timeouts, every published change is an edge of the table,
    every outcome is resolved at most once and with a SessionError, nothing is sent for a
    generation a close has ended, and the states stay consistent with each other."""
    h = Harness()
    proto = h.proto
    requests: list[Pending] = []
    on_wire: dict[int, Pending] = {}
    for kind, arg in steps:
        h.now += 0.001
        try:
            if kind == "open":
                info = OPEN_ARGS[arg]
                _, request = proto.open(*([] if info is None else [info]), now=h.now)
                if request is not None and request not in requests:
                    requests.append(request)
            elif kind == "update":
                request = proto.update(NAMES[arg], None, now=h.now)
                if request is not None:
                    requests.append(request)
            elif kind == "close":
                _, request = proto.close(now=h.now)
                if request is not None:
                    requests.append(request)
            elif kind == "connect" and proto.socket.state is W.CLOSED:
                h.connect()
            elif kind == "send" and requests:
                if proto.socket.state is W.CLOSED:
                    h.connect()  # as the driver does before it sends
                request = requests[arg % len(requests)]
                generation = proto.generation
                frame = proto.send(request, proto.connection, now=h.now)
                if frame is not None:
                    assert request.generation == generation or request.kind is Kind.RESUME
                    on_wire[json.loads(frame)["id"]] = request
            elif kind.startswith("reply_") and kind != "reply_stale" and on_wire:
                rid = sorted(on_wire)[arg % len(on_wire)]
                request = on_wire.pop(rid)
                if kind == "reply_right":
                    message = RIGHT[request.kind](rid, request.args[0] if request.args else None)
                elif kind == "reply_wrong":
                    message = Closed(rid) if request.kind is not Kind.CLOSE else Opened(rid, ADA_P)
                else:
                    message = ErrorReply(rid, "session_not_open", "no", "R10")
                proto.receive(proto.connection, message, now=h.now)
            elif kind == "reply_stale":
                proto.receive(proto.connection, Closed(arg * 7 + 1), now=h.now)
            elif kind == "drop" and proto.socket.state is W.CONNECTED:
                proto.dropped(proto.connection, ConnectionLost("x", rule="R14"), now=h.now)
                on_wire.clear()
            elif kind == "resume" and proto.socket.state is W.CONNECTED:
                request = proto.resume(now=h.now)
                if request is not None:
                    requests.append(request)
            elif kind == "tick":
                h.now += TICKS[arg]
                proto.expire(now=h.now)
                if proto.reconnecting and proto.reconnect_delay(now=h.now) is None:
                    proto.reconnect_failed(ConnectionLost("x", rule="R14"), final=False, now=h.now)
            elif kind == "finish_close" and proto.close_outcome is not None:
                if proto.socket.state is W.CONNECTED and proto.closing(proto.connection):
                    proto.closed(proto.connection)
                    on_wire.clear()
                proto.finish_close(proto.close_outcome)
            elif kind == "ended":
                reason = "switched" if arg % 2 else "token_expired"
                proto.receive(proto.connection, SessionEnded(reason), now=h.now)
        except (RemoteProtocolError, SessionAlreadyOpen, SessionNotOpen) as refused:
            assert refused.rule is not None
        except SessionError as refused:  # any other refusal names its rule
            assert refused.rule is not None and refused.state is not None
        event(f"reached {proto.state.name}")
        if proto.reconnecting:
            event("reconnecting")
        # Invariants after every step.
        for request in requests:
            assert request.error is None or isinstance(request.error, SessionError)
        state = proto.state
        assert (state is S.OPENING) == (proto.open_request is not None)
        if state is S.CLOSING:
            assert proto.close_outcome is not None
        if state in (S.OPEN, S.GHOST):
            assert proto.session.participant is not None
            assert proto.reconnecting or proto.socket.state is W.CONNECTED
        if state is S.CLOSED:
            assert proto.session.participant is None and proto.update_request is None
            assert proto.open_request is None and not proto.reconnecting
        if proto.update_request is not None:
            assert proto.session.updating is not None
    for change in h.events:
        if isinstance(change, SessionStateChangeEvent):
            assert (change.old, change.new) in LEGAL
        else:
            assert isinstance(change, SocketStateChangeEvent) or change is not None
