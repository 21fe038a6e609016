"""Regression tests for the client's concurrency core, each looping its scenario hundreds of
times on one session: a close racing a connect then a new open (stale work must not act on a
newer session), update and close started together (R11), replies of the wrong kind (P4), a reply
that kills the connection every time it is resent (R14), and a backend that floods errors."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from itertools import pairwise
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import WebSocketRequest, serve_websocket

import fsm_session.transport as transport_module
from fsm_session import (
    ConnectionLost,
    Participant,
    ParticipantInfo,
    RemoteProtocolError,
    RequestAborted,
    SessionNotOpen,
    SessionState,
    WebSocketState,
)
from fsm_session.client_protocol import ReconnectPolicy
from fsm_session.events import SessionStateChangeEvent, SocketStateChangeEvent
from fsm_session.machine import SESSION_TABLE
from fsm_session.protocol import SUBPROTOCOL
from fsm_session.service import ServiceConfig, open_session_service
from fsm_session.transport import TransportConfig
from tests.conftest import Mint
from tests.leaks import assert_no_leaks, leak_snapshot

S = SessionState
W = WebSocketState
ADA = ParticipantInfo("Ada", external_id="ext-ada")
QUICK = ServiceConfig(
    transport=TransportConfig(connect_timeout=2.0, close_timeout=0.5),
    request_timeout=3.0,
    logout_timeout=0.5,
)
LEGAL = {(state, row.dest or state) for state, rows in SESSION_TABLE.items() for row in rows}
LOOPS = 200


def assert_legal(events: list[Any]) -> None:
    """Every published session change is an edge of the table, and the changes chain."""
    changes = [e for e in events if isinstance(e, SessionStateChangeEvent)]
    for change in changes:
        assert (change.old, change.new) in LEGAL, change
    for before, after in pairwise(changes):
        assert before.new is after.old, (before, after)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The type of every frame the client puts on the wire, in order."""
    record: list[str] = []
    original = transport_module.Transport.send

    async def send(
        self: transport_module.Transport, serial: int, text: str, reply_by: float = math.inf
    ) -> None:
        record.append(json.loads(text)["type"])
        await original(self, serial, text, reply_by)

    monkeypatch.setattr(transport_module.Transport, "send", send)
    return record


async def test_r11_r14_close_racing_a_connect_never_acts_on_the_next_open(
    server_url: str, mint: Mint
) -> None:
    """Race 1: close() lands at every point of an open in flight (before, during and after the
    connect and the handshake); the next open always succeeds against the healthy backend, and
    nothing of the old open or close moves the new session."""
    before = leak_snapshot()
    async with (
        open_session_service(server_url, access_token=mint("ext-ada"), config=QUICK) as session,
        session.subscribe(max_buffer=100_000) as events,
    ):
        for loop in range(LOOPS):
            async with trio.open_nursery() as nursery:
                outcome: list[object] = []

                async def opener(outcome: list[object]) -> None:
                    try:
                        outcome.append(await session.open(ADA))
                    except RequestAborted as aborted:
                        outcome.append(aborted)

                nursery.start_soon(opener, outcome)
                while session.state is S.CLOSED:  # until the open has begun
                    await trio.lowlevel.checkpoint()
                if loop % 4 == 3:  # while the connect or the reply waits on the network
                    await trio.testing.wait_all_tasks_blocked()
                for _ in range(loop % 25):
                    await trio.lowlevel.checkpoint()
                await session.close()
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED, loop
            assert len(outcome) == 1 and isinstance(outcome[0], Participant | RequestAborted)
            participant = await session.open(ADA)  # a healthy backend: it must work
            assert session.state is S.OPEN and session.participant == participant
            assert session.socket_state is W.CONNECTED
            await session.close()
        assert_legal(events.ready())
    await assert_no_leaks(before)


async def test_r11_update_and_close_together_never_send_the_update_after_the_logout(
    server_url: str, mint: Mint, sent: list[str]
) -> None:
    """Race 2 (R11): update() and close() started together, in both orders. The update is
    either refused before anything is sent (SessionNotOpen from the machine, in CLOSING) or
    fails with RequestAborted; no update frame ever follows the logout, and the caller never
    sees the backend's answer to an update sent after the close."""
    answers: dict[str, int] = {}
    async with open_session_service(
        server_url, access_token=mint("ext-ada"), config=QUICK
    ) as session:
        for loop in range(LOOPS):
            await session.open(ADA)
            del sent[:]
            result: list[object] = []

            async def update(result: list[object], name: str) -> None:
                try:
                    result.append(await session.update(name=name))
                except (RequestAborted, SessionNotOpen) as error:
                    result.append(error)

            async with trio.open_nursery() as nursery:
                if loop % 2:
                    nursery.start_soon(update, result, f"Ada {loop}")
                    nursery.start_soon(session.close)
                else:
                    nursery.start_soon(session.close)
                    nursery.start_soon(update, result, f"Ada {loop}")
            (answer,) = result
            if isinstance(answer, SessionNotOpen):
                assert answer.trigger == "update" and answer.state is S.CLOSING
                assert "backend" not in str(answer) and "update" not in sent
            else:
                assert isinstance(answer, RequestAborted) and answer.rule == "R11"
            assert sent[-1:] == ["close"] and sent.count("update") <= 1, sent
            assert session.state is S.CLOSED
            answers[type(answer).__name__] = answers.get(type(answer).__name__, 0) + 1
    assert sum(answers.values()) == LOOPS


# ---------------------------------------------------------------------------- scripted backends

Answer = Callable[[dict[str, Any]], list[str]]


@asynccontextmanager
async def scripted_backend(answer: Answer, counter: list[int]) -> AsyncIterator[str]:
    """A WebSocket peer that answers each request with the frames ``answer(request)`` gives;
    ``counter[0]`` counts its connections."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        counter[0] += 1
        try:
            while True:
                frame = json.loads(await ws.get_message())
                for reply in answer(frame):
                    await ws.send_message(reply)
        except Exception:
            return

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, handler, "127.0.0.1", 0, None))
        yield f"ws://127.0.0.1:{server.port}/"
        nursery.cancel_scope.cancel()


PARTICIPANT = {"id": "p1", "info": {"name": "Ada", "external_id": "ext-ada", "avatar_url": None}}


def reply(frame: dict[str, Any], kind: str) -> str:
    body: dict[str, Any] = {"type": kind, "id": frame["id"]}
    if kind in ("opened", "updated", "resumed"):
        body["participant"] = PARTICIPANT
    return json.dumps(body)


def honest(frame: dict[str, Any]) -> list[str]:
    kinds = {"open": "opened", "update": "updated", "close": "closed", "resume": "resumed"}
    return [reply(frame, kinds[frame["type"]])]


@pytest.mark.parametrize("wrong", ["closed", "updated", "resumed"])
async def test_p4_open_answered_with_the_wrong_kind_is_a_typed_error(
    mint: Mint, wrong: str
) -> None:
    """P4: `open` answered with another reply kind raises RemoteProtocolError naming the rule
    and the request; the session is CLOSED and nothing else escapes the service."""
    counter = [0]

    def answer(frame: dict[str, Any]) -> list[str]:
        return [reply(frame, wrong)] if frame["type"] == "open" else honest(frame)

    async with (
        scripted_backend(answer, counter) as url,
        open_session_service(url, access_token=mint("ext-ada"), config=QUICK) as session,
    ):
        for _ in range(3):
            with pytest.raises(RemoteProtocolError) as caught:
                await session.open(ADA)
            assert caught.value.rule == "P4" and caught.value.trigger == "open"
            assert wrong in str(caught.value)
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED


async def test_p4_update_answered_with_opened_is_a_typed_error_and_the_session_stays_open(
    mint: Mint,
) -> None:
    """P4: `update` answered with `opened` fails that update only; the session stays OPEN with
    the participant it had, and the next update works."""
    counter, bad = [0], [True]

    def answer(frame: dict[str, Any]) -> list[str]:
        if frame["type"] == "update" and bad[0]:
            bad[0] = False
            return [reply(frame, "opened")]
        return honest(frame)

    async with (
        scripted_backend(answer, counter) as url,
        open_session_service(url, access_token=mint("ext-ada"), config=QUICK) as session,
    ):
        participant = await session.open(ADA)
        with pytest.raises(RemoteProtocolError) as caught:
            await session.update(name="Ada L.")
        assert caught.value.rule == "P4" and caught.value.trigger == "update"
        assert session.state is S.OPEN and session.participant == participant
        await session.update(name="Ada")
        assert session.state is S.OPEN


async def test_r14_a_reply_that_kills_the_connection_fails_the_request_after_bounded_tries(
    mint: Mint,
) -> None:
    """R14: a backend whose reply to an update closes the connection (a frame over the client's
    limit: 1009) gets the update at most max_sends times; then the update fails with
    ConnectionLost naming the 1009, and the session resumes and goes on."""
    counter = [0]
    huge = "x" * 70_000

    def answer(frame: dict[str, Any]) -> list[str]:
        if frame["type"] == "update" and frame["name"] == "poison":
            return [json.dumps({"type": "updated", "id": frame["id"], "pad": huge})]
        return honest(frame)

    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.2, max_sends=3)
    config = ServiceConfig(
        transport=TransportConfig(connect_timeout=2.0, close_timeout=0.5),
        reconnect=policy,
        request_timeout=10.0,
        logout_timeout=0.5,
    )
    async with (
        scripted_backend(answer, counter) as url,
        open_session_service(url, access_token=mint("ext-ada"), config=config) as session,
        session.subscribe() as events,
    ):
        await session.open(ADA)
        with trio.fail_after(8), pytest.raises(ConnectionLost) as caught:
            await session.update(name="poison")
        assert "1009" in str(caught.value) and "3 times" in str(caught.value)
        assert counter[0] <= 1 + policy.max_sends
        with trio.fail_after(5):
            while session.socket_state is not W.CONNECTED:
                await events.receive()
            await session.update(name="Ada")  # the session goes on
        assert session.state is S.OPEN


async def test_p5_a_backend_flooding_errors_is_logged_a_few_times_with_a_count(
    mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    """P5: `error` frames with no id are protocol errors of the backend, logged at most a few
    times a second; the rest are counted, and the session is unharmed."""
    counter = [0]
    flood = json.dumps({"type": "error", "id": None, "code": "bad_frame", "message": "x"})

    def answer(frame: dict[str, Any]) -> list[str]:
        if frame["type"] == "update":
            return [flood] * 2000 + honest(frame)
        return honest(frame)

    caplog.set_level(logging.WARNING, logger="fsm_session")
    async with (
        scripted_backend(answer, counter) as url,
        open_session_service(url, access_token=mint("ext-ada"), config=QUICK) as session,
    ):
        await session.open(ADA)
        await session.update(name="Ada L.")
        assert session.state is S.OPEN
    records = [r for r in caplog.records if r.name.startswith("fsm_session")]
    assert 1 <= len(records) <= 12, len(records)


async def test_open_cancelled_while_connecting_leaves_no_socket_behind(
    server_url: str, mint: Mint
) -> None:
    """A caller cancelled at each point of the connect leaves the socket CLOSED (never
    CONNECTING) and the session CLOSED; nothing leaks."""
    before = leak_snapshot()
    async with (
        open_session_service(server_url, access_token=mint("ext-ada"), config=QUICK) as session,
        session.subscribe(max_buffer=100_000) as events,
    ):
        for loop in range(LOOPS):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_soon(n: int = loop % 20) -> None:
                        for _ in range(n):
                            await trio.lowlevel.checkpoint()
                        scope.cancel()

                    nursery.start_soon(cancel_soon)
                    await session.open(ADA)
            assert session.socket_state in (W.CLOSED, W.CONNECTED)
            assert (session.state is S.CLOSED) == (session.socket_state is W.CLOSED) or (
                session.state is S.OPENING
            )
            await session.close()
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
        socket_moves = [e.state for e in events.ready() if isinstance(e, SocketStateChangeEvent)]
        assert socket_moves.count(W.CONNECTING) >= 1
    await assert_no_leaks(before)
