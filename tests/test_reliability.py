"""Reliability under faults (rules R14-R18): drops at every step, a restarted server, bad frames
from the server, cancellation at every scheduling point, and 100 tasks at once on one session.

Every test checks for leaks afterwards: no file descriptor and no task left, no subscriber left.
The faults come from the project's loopback proxy (``fsm_session.testing.proxy``), between the
service and the real reference server.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing

from fsm_session import (
    Participant,
    ParticipantInfo,
    RequestAborted,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
    SessionState,
    WebSocketState,
)
from fsm_session.events import SessionLostEvent, SessionStateChangeEvent, SocketStateChangeEvent
from fsm_session.machine import SESSION_TABLE
from fsm_session.server import serve
from fsm_session.service import ServiceConfig, SessionService, open_session_service
from fsm_session.testing.proxy import TO_CLIENT, TO_SERVER, Drop, Inject, LoopbackProxy
from fsm_session.testing.wsframes import HANDSHAKE
from fsm_session.transport import TransportConfig
from tests.conftest import Mint
from tests.leaks import assert_no_leaks, leak_snapshot

S = SessionState
W = WebSocketState
ADA = ParticipantInfo("Ada", external_id="ext-ada")
QUICK = ServiceConfig(
    transport=TransportConfig(connect_timeout=1.0, close_timeout=0.5),
    request_timeout=3.0,
    logout_timeout=0.5,
)


@asynccontextmanager
async def proxied(server_url: str) -> AsyncIterator[LoopbackProxy]:
    async with trio.open_nursery() as nursery:
        proxy = LoopbackProxy(server_url)
        await proxy.start(nursery)
        yield proxy
        proxy.cut()
        nursery.cancel_scope.cancel()


def assert_legal(events: list[Any]) -> None:
    """Every published state change is an edge of the table, and they chain (R18: no repeats)."""
    changes = [e for e in events if isinstance(e, SessionStateChangeEvent)]
    for change in changes:
        rows = SESSION_TABLE[change.old]
        assert any(r.trigger == change.trigger and r.dest is change.new for r in rows), change
    for before, after in pairwise(changes):
        assert before.new is after.old, (before, after)
    sockets = [e for e in events if isinstance(e, SocketStateChangeEvent)]
    for before, after in pairwise(sockets):
        assert before.state is after.previous, (before, after)


async def reconnected(events: Any, seen: list[Any]) -> None:
    """Read events (into ``seen``) until the socket went down and came back CONNECTED."""
    down = False
    while True:
        event = await events.receive()
        seen.append(event)
        if isinstance(event, SocketStateChangeEvent):
            down = down or event.state is W.CLOSED
            if down and event.state is W.CONNECTED:
                return


OPEN_STEPS = [
    pytest.param(TO_SERVER, HANDSHAKE, False, id="upgrade-request"),
    pytest.param(TO_CLIENT, HANDSHAKE, False, id="upgrade-response"),
    pytest.param(TO_SERVER, "open", False, id="before-open"),
    pytest.param(TO_SERVER, "open", True, id="after-open"),
    pytest.param(TO_CLIENT, "opened", False, id="before-opened"),
    pytest.param(TO_CLIENT, "opened", True, id="after-opened"),
]


@pytest.mark.parametrize(("direction", "kind", "after"), OPEN_STEPS)
async def test_r14_drop_at_every_step_of_open(
    server_url: str, mint: Mint, direction: Any, kind: str, after: bool
) -> None:
    """R14: a drop before the reply fails the open (CLOSED, socket CLOSED); a drop after it
    keeps the session OPEN, reconnects and resumes the same participant."""
    before = leak_snapshot()
    async with proxied(server_url) as proxy:
        proxy.arm(Drop(after=after), direction, kind, connection=0)
        async with (
            open_session_service(proxy.url, access_token=mint("ext-ada"), config=QUICK) as session,
            session.subscribe() as events,
        ):
            with trio.fail_after(10):
                try:
                    participant: Participant | None = await session.open(ADA)
                except SessionError:
                    participant = None
                if participant is None:
                    assert session.state is S.CLOSED and session.socket_state is W.CLOSED
                    again = await session.open(ADA)  # the next open works
                    assert session.state is S.OPEN and again.info.name == "Ada"
                else:
                    assert kind == "opened" and after
                    seen: list[Any] = []
                    await reconnected(events, seen)
                    assert session.state is S.OPEN and session.participant == participant
                    assert proxy.connections == 2
            assert_legal(events.ready())
        assert session.subscriber_count == 0
    await assert_no_leaks(before)


UPDATE_STEPS = [
    pytest.param(TO_SERVER, "update", False, id="before-update"),
    pytest.param(TO_SERVER, "update", True, id="after-update"),
    pytest.param(TO_CLIENT, "updated", False, id="before-updated"),
    pytest.param(TO_CLIENT, "updated", True, id="after-updated"),
]


@pytest.mark.parametrize(("direction", "kind", "after"), UPDATE_STEPS)
async def test_r14_r18_drop_at_every_step_of_update(
    server_url: str, mint: Mint, direction: Any, kind: str, after: bool
) -> None:
    """R14, R18: an update whose connection drops is answered after the resume; the session
    stays OPEN, the same participant, with the new name, and no state change is published."""
    before = leak_snapshot()
    async with proxied(server_url) as proxy:
        proxy.arm(Drop(after=after), direction, kind, connection=0)
        async with open_session_service(
            proxy.url, access_token=mint("ext-ada"), config=QUICK
        ) as session:
            me = await session.open(ADA)
            async with session.subscribe() as events:
                seen: list[Any] = []
                with trio.fail_after(10):
                    renamed = await session.update(name="Ada L.")
                    await reconnected(events, seen)
                assert renamed.id == me.id and renamed.info.name == "Ada L."
                assert session.state is S.OPEN and session.participant is not None
                assert session.participant.id == me.id
                seen += events.ready()
            assert not [e for e in seen if isinstance(e, SessionStateChangeEvent)]
            assert_legal(seen)
            await session.close()
            again = await session.open()
            assert again.id == me.id and again.info.name == "Ada L."
    await assert_no_leaks(before)


CLOSE_STEPS = [
    pytest.param(TO_SERVER, "close", False, id="before-close"),
    pytest.param(TO_SERVER, "close", True, id="after-close"),
    pytest.param(TO_CLIENT, "closed", False, id="before-closed"),
    pytest.param(TO_CLIENT, "closed", True, id="after-closed"),
    pytest.param(TO_SERVER, "<close>", False, id="before-close-frame"),
    pytest.param(TO_CLIENT, "<close>", False, id="before-close-frame-reply"),
]


@pytest.mark.parametrize(("direction", "kind", "after"), CLOSE_STEPS)
async def test_r11_drop_at_every_step_of_close(
    server_url: str, mint: Mint, direction: Any, kind: str, after: bool
) -> None:
    """R11: whatever drops during a close, close() returns, CLOSED, socket CLOSED, in time."""
    before = leak_snapshot()
    async with proxied(server_url) as proxy:
        proxy.arm(Drop(after=after), direction, kind, connection=0)
        async with (
            open_session_service(proxy.url, access_token=mint("ext-ada"), config=QUICK) as session,
            session.subscribe() as events,
        ):
            await session.open(ADA)
            with trio.fail_after(5):
                await session.close()
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
            assert_legal(events.ready())
            await session.open()  # R12: and again
            assert session.state is S.OPEN
    await assert_no_leaks(before)


async def test_r14_server_restarted_on_the_same_port(secret: str, mint: Mint) -> None:
    """R14: a restarted server no longer knows the session: the resume is refused, the session
    is lost (CLOSED, SessionLostEvent), and opening again works on the new server."""
    before = leak_snapshot()
    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()

        async def run_first(task_status: Any) -> None:
            with first:
                await serve("127.0.0.1", 0, secret=secret, task_status=task_status)

        url: str = await nursery.start(run_first)
        port = urlsplit(url).port
        async with (
            open_session_service(url, access_token=mint("ext-ada"), config=QUICK) as session,
            session.subscribe() as events,
        ):
            me = await session.open(ADA)
            events.ready()
            first.cancel()  # the server goes away with the session open
            await nursery.start(partial(serve, "127.0.0.1", port, secret=secret))
            lost = None
            with trio.fail_after(10):
                async for event in events:
                    if isinstance(event, SessionLostEvent):
                        lost = event
                        break
            assert lost is not None and lost.reason == "reconnect_failed"
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
            again = await session.open()  # the remembered identity, on the new server
            assert session.state is S.OPEN and again.info == me.info
        nursery.cancel_scope.cancel()
    await assert_no_leaks(before)


GARBAGE = [
    pytest.param('{"type": "opened", "id": 1, "participant": {oops', id="not-json"),
    pytest.param('{"type": "no-such-type"}', id="unknown-type"),
    pytest.param('{"type": "opened", "id": "x"}', id="bad-id"),
    pytest.param("x" * (70 * 1024), id="oversized"),
    pytest.param(b"\x00\x01binary", id="binary"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_r14_garbage_from_the_server_is_a_remote_error_and_the_session_resumes(
    server_url: str, mint: Mint, garbage: str | bytes
) -> None:
    """R14, P2: a bad frame from the server ends that connection as a remote protocol error;
    the session stays OPEN and resumes on a new connection; the state never lies."""
    before = leak_snapshot()
    async with proxied(server_url) as proxy:
        proxy.arm(Inject(garbage), TO_CLIENT, "opened", connection=0)
        async with (
            open_session_service(proxy.url, access_token=mint("ext-ada"), config=QUICK) as session,
            session.subscribe() as events,
        ):
            me = await session.open(ADA)
            with trio.fail_after(10):
                while proxy.connections < 2 or session.socket_state is not W.CONNECTED:
                    await events.receive()
            assert session.state is S.OPEN and session.participant == me
            seen = events.ready()
            assert_legal(seen)
            renamed = await session.update(name="After")
            assert renamed.id == me.id
    await assert_no_leaks(before)


async def _settle(session: SessionService) -> None:
    """Let every flight of the session finish."""
    async with session.subscribe() as events:
        with trio.fail_after(10):
            while session.state in (S.OPENING, S.CLOSING):
                await events.receive()


CALLS: dict[str, Callable[[SessionService], Awaitable[object]]] = {
    "open": lambda s: s.open(ADA),
    "reopen": lambda s: s.open(),
    "update": lambda s: s.update(name="Ada L."),
    "close": lambda s: s.close(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_cancellation_at_every_scheduling_point(
    server_url: str, mint: Mint, call: str
) -> None:
    """A public call cancelled after 0, 1, 2, ... scheduling points leaves a truthful state: the
    session settles in a legal state that matches its socket, and the next calls work."""
    before = leak_snapshot()
    async with open_session_service(
        server_url, access_token=mint("ext-ada"), config=QUICK
    ) as session:
        for ticks in range(0, 40):
            if call in ("update", "close"):
                await session.open(ADA)
            elif call == "reopen":
                await session.open(ADA)
                await session.close()
            async with session.subscribe() as events:
                scope = trio.CancelScope()
                async with trio.open_nursery() as nursery:

                    async def run(scope: trio.CancelScope) -> None:
                        with scope:
                            await CALLS[call](session)

                    nursery.start_soon(run, scope)
                    for _ in range(ticks):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()
                await _settle(session)
                assert_legal(events.ready())
            if session.state in (S.OPEN, S.GHOST):
                assert session.socket_state is W.CONNECTED and session.participant is not None
            else:
                assert session.state is S.CLOSED and session.participant is None
            await session.close()
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
    await assert_no_leaks(before)


async def test_a_hundred_tasks_on_one_session(server_url: str, mint: Mint) -> None:
    """100 tasks calling open, update and close at random on one session: every call gets an
    answer the rules allow, every published change is an edge of the table, and the session
    ends in a state that matches its socket."""
    rng = random.Random(20261123)
    before = leak_snapshot()
    answers: dict[str, int] = {}
    async with (
        open_session_service(server_url, access_token=mint("ext-ada"), config=QUICK) as session,
        session.subscribe(max_buffer=100_000) as events,
    ):

        async def worker(seed: int) -> None:
            local = random.Random(seed)
            for _ in range(5):
                kind = local.choice(["open", "open", "update", "close", "other"])
                try:
                    if kind == "open":
                        result: object = await session.open(ADA)
                        assert isinstance(result, Participant)
                    elif kind == "other":
                        await session.open(ParticipantInfo("Bob"))
                    elif kind == "update":
                        result = await session.update(name=f"Ada {local.randrange(5)}")
                        assert isinstance(result, Participant)
                    else:
                        await session.close()
                    outcome = "ok"
                except SessionAlreadyOpen:
                    # R5: another identity, or Ada's own once an update renamed her.
                    assert kind in ("other", "open")
                    outcome = "SessionAlreadyOpen"
                except SessionNotOpen:
                    assert kind == "update"
                    outcome = "SessionNotOpen"
                except RequestAborted:
                    assert kind in ("open", "update", "other")
                    outcome = "RequestAborted"
                answers[f"{kind}:{outcome}"] = answers.get(f"{kind}:{outcome}", 0) + 1
                await trio.sleep(local.random() / 100)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(worker, rng.randrange(2**32))
            await _settle(session)
        assert sum(answers.values()) == 500
        assert_legal(events.ready())
        if session.is_open():
            assert session.socket_state is W.CONNECTED
        else:
            assert session.state is S.CLOSED
    await assert_no_leaks(before)
