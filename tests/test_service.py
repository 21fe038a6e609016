"""The session service end to end: rules R1-R13 against the real reference server on loopback.

Every frame the client sends or receives in these tests is validated against
specs/protocol.schema.json.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import WebSocketRequest, serve_websocket

import fsm_session.transport as transport_module
from fsm_session import (
    ArgumentTypeError,
    ConnectionFailed,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    InvalidToken,
    Participant,
    ParticipantInfo,
    RequestAborted,
    SessionAlreadyOpen,
    SessionNotOpen,
    SessionState,
    TokenExpired,
    WebSocketState,
    tokens,
)
from fsm_session.events import (
    SessionLostEvent,
    SessionStateChangeEvent,
    SessionSwitchedEvent,
    SocketStateChangeEvent,
)
from fsm_session.protocol import SUBPROTOCOL
from fsm_session.service import ServiceConfig, SessionService, open_session_service
from fsm_session.transport import TransportConfig
from tests.conftest import Mint, open_fds
from tests.frames import validate_client_frame, validate_server_frame

S = SessionState
W = WebSocketState
ADA = ParticipantInfo("Ada", external_id="ext-ada")


class Frames:
    """Every frame the client sent and received, each validated against the schema."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    def sent_types(self) -> list[str]:
        return [frame["type"] for frame in self.sent]


@pytest.fixture(autouse=True)
def frames(monkeypatch: pytest.MonkeyPatch) -> Frames:
    record = Frames()
    original_send = transport_module.Transport.send
    original_decode = transport_module.decode_reply

    async def send(
        self: transport_module.Transport, serial: int, text: str, reply_by: float = math.inf
    ) -> None:
        validate_client_frame(text)
        record.sent.append(json.loads(text))
        await original_send(self, serial, text, reply_by)

    def decode(text: str | bytes) -> Any:
        assert isinstance(text, str)
        validate_server_frame(text)
        record.received.append(json.loads(text))
        return original_decode(text)

    monkeypatch.setattr(transport_module.Transport, "send", send)
    monkeypatch.setattr(transport_module, "decode_reply", decode)
    return record


@asynccontextmanager
async def service(url: str, token: str, **config: Any) -> AsyncIterator[SessionService]:
    cfg = ServiceConfig(**config) if config else None
    with trio.fail_after(10):
        async with open_session_service(url, access_token=token, config=cfg) as session:
            yield session


def state_events(events: list[Any]) -> list[tuple[str, str, str]]:
    return [
        (e.old.name, e.new.name, e.trigger)
        for e in events
        if isinstance(e, SessionStateChangeEvent)
    ]


def socket_events(events: list[Any]) -> list[str]:
    return [e.state.name for e in events if isinstance(e, SocketStateChangeEvent)]


async def test_r1_nothing_on_the_network_before_open(frames: Frames, mint: Mint) -> None:
    """R1: entering and leaving the service before any open makes no connection."""
    accepted = 0

    async def count(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, count, 0)
        port = listeners[0].socket.getsockname()[1]
        async with service(f"ws://127.0.0.1:{port}/", mint("ext-ada")) as session:
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
            assert not session.is_open() and session.participant is None
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert accepted == 0 and frames.sent == []


async def test_r4_open_publishes_states_and_socket_events_in_order(
    server_url: str, mint: Mint, frames: Frames
) -> None:
    """R4 and S1: open goes CLOSED -> OPENING -> OPEN; socket CONNECTING then CONNECTED, once."""
    async with service(server_url, mint("ext-ada")) as session, session.subscribe() as events:
        participant = await session.open(ADA)
        assert session.state is S.OPEN and session.socket_state is W.CONNECTED
        assert participant.info.name == "Ada" and participant.info.external_id == "ext-ada"
        assert session.participant == participant
        await session.close()
        seen = events.ready()
    assert state_events(seen) == [
        ("CLOSED", "OPENING", "open"),
        ("OPENING", "OPEN", "opened"),
        ("OPEN", "CLOSING", "close"),
        ("CLOSING", "CLOSED", "closed"),
    ]
    assert socket_events(seen) == ["CONNECTING", "CONNECTED", "CLOSING", "CLOSED"]
    # The socket opened before the session did, and closed after it began closing.
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("SocketStateChangeEvent") > 0
    assert frames.sent_types() == ["open", "close"]
    assert [f["type"] for f in frames.received] == ["opened", "closed"]


BAD_OPENS: list[tuple[Any, type[Exception]]] = [
    (None, InvalidParticipantInfo),
    ("Ada", InvalidParticipantInfo),
    (ParticipantInfo(""), InvalidParticipantInfo),
    (ParticipantInfo("   "), InvalidParticipantInfo),
    (ParticipantInfo("x" * 257), InvalidParticipantInfo),
    (ParticipantInfo("Ada", avatar_url="file:///etc/passwd"), InvalidParticipantInfo),
    (ParticipantInfo("Ada", external_id="ext-bob"), ExternalIdMismatch),
]


@pytest.mark.parametrize(("bad", "error"), BAD_OPENS)
async def test_r2_r3_r13_bad_open_is_refused_before_the_network(
    server_url: str, mint: Mint, frames: Frames, bad: Any, error: type[Exception]
) -> None:
    """R2, R3, R13: bad info raises the typed error; state unchanged; no socket, no frame."""
    async with service(server_url, mint("ext-ada")) as session, session.subscribe() as events:
        with pytest.raises(error) as caught:
            await session.open(bad)
        assert caught.value.state is S.CLOSED  # type: ignore[attr-defined]
        assert session.state is S.CLOSED and session.socket_state is W.CLOSED
        assert events.ready() == []
    assert frames.sent == []


async def test_r5_concurrent_opens_join_one_request(
    server_url: str, mint: Mint, frames: Frames
) -> None:
    """R5: several opens with the same info share one request and one participant."""
    results: list[Participant] = []
    async with service(server_url, mint("ext-ada")) as session:

        async def one() -> None:
            results.append(await session.open(ADA))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
        assert len(results) == 5 and len({p.id for p in results}) == 1
        assert await session.open() == results[0]  # no argument: the current participant
        assert await session.open(ADA) == results[0]
        with pytest.raises(SessionAlreadyOpen) as caught:
            await session.open(ParticipantInfo("Bob"))
        assert caught.value.state is S.OPEN and session.state is S.OPEN
    assert frames.sent_types().count("open") == 1


async def test_r5_different_info_while_opening_is_refused(mint: Mint) -> None:
    """R5: while an open is in flight, other info is refused at once and the open stays."""
    async with (
        silent_backend(lambda frame: None) as url,  # the open stays in flight
        service(url, mint("ext-ada"), logout_timeout=0.2) as session,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(session.open, ADA)
        await trio.testing.wait_all_tasks_blocked()
        assert session.state is S.OPENING
        with pytest.raises(SessionAlreadyOpen) as caught:
            await session.open(ParticipantInfo("Bob"))
        assert caught.value.state is S.OPENING and session.state is S.OPENING
        nursery.cancel_scope.cancel()


async def test_r6_reopen_keeps_participant_id(server_url: str, mint: Mint) -> None:
    """R6: open() after close reopens with the remembered identity and the same ID."""
    async with service(server_url, mint("ext-ada")) as session:
        first = await session.open(ADA)
        await session.close()
        again = await session.open()
        assert session.state is S.OPEN
        assert again.id == first.id and again.info.name == "Ada"


async def test_r6_r7_ghost_then_named(server_url: str, mint: Mint, frames: Frames) -> None:
    """R6, R7: a bare open with nothing remembered is a ghost; naming it makes it OPEN."""
    async with service(server_url, mint()) as session:
        ghost = await session.open()
        assert session.state is S.GHOST and ghost.is_ghost and session.is_open()
        named = await session.update(name="Guest")
        assert session.state is S.OPEN and named.id == ghost.id and named.info.name == "Guest"
        await session.close()
        again = await session.open()
        assert session.state is S.OPEN and again.info.name == "Guest"
    assert frames.sent[0] == {"type": "open", "id": 1, "info": None}


async def test_r7_unnamed_ghost_is_not_remembered(server_url: str, mint: Mint) -> None:
    """R7: closing a ghost leaves nothing to reopen with: the next open() is a new ghost."""
    async with service(server_url, mint()) as session:
        first = await session.open()
        await session.close()
        second = await session.open()
        assert session.state is S.GHOST and second.id != first.id


async def test_r8_r9_queries(server_url: str, mint: Mint) -> None:
    """R8, R9: is_open and is_local_participant through the whole cycle."""
    async with service(server_url, mint("ext-ada")) as session:
        other = Participant("someone", ParticipantInfo("Bob"))
        assert not session.is_open()
        me = await session.open(ADA)
        assert session.is_open() and session.is_local_participant(me)
        assert not session.is_local_participant(other)
        with pytest.raises(ArgumentTypeError) as caught:
            session.is_local_participant(me.id)  # type: ignore[arg-type]
        assert caught.value.state is S.OPEN and session.state is S.OPEN
        await session.close()
        assert not session.is_open() and not session.is_local_participant(me)


async def test_r10_update(server_url: str, mint: Mint, frames: Frames) -> None:
    """R10: None leaves a value; nothing to change sends nothing; bad values change nothing."""
    async with service(server_url, mint("ext-ada")) as session:
        with pytest.raises(SessionNotOpen) as not_open:
            await session.update(name="Ada")
        assert not_open.value.state is S.CLOSED
        await session.open(ADA)
        unchanged = await session.update()
        assert unchanged == session.participant
        moved = await session.update(avatar_url="https://example.org/a.png")
        assert moved.info == ParticipantInfo(
            "Ada", external_id="ext-ada", avatar_url="https://example.org/a.png"
        )
        renamed = await session.update(name="Ada L.")
        assert renamed.info.avatar_url == "https://example.org/a.png"
        assert renamed.info.external_id == "ext-ada"
        for bad in ({"name": " "}, {"name": 3}, {"avatar_url": "nope"}):
            with pytest.raises(InvalidParticipantInfo) as caught:
                await session.update(**bad)
            assert caught.value.state is S.OPEN and session.participant == renamed
        await session.close()
        again = await session.open()
        assert again.info.name == "Ada L."  # the update became the remembered identity
    assert frames.sent_types() == ["open", "update", "update", "close", "open", "close"]


async def test_r10_concurrent_updates_go_one_at_a_time(server_url: str, mint: Mint) -> None:
    """R10 with M4: updates made at once are all answered, in the order they were made."""
    async with service(server_url, mint("ext-ada")) as session:
        await session.open(ADA)
        names = [f"Ada {i}" for i in range(6)]
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(partial(session.update, name=name))
                await trio.lowlevel.checkpoint()
        assert session.participant is not None and session.participant.info.name in names
        assert session.state is S.OPEN


async def test_r11_close_cancels_session_work(server_url: str, mint: Mint) -> None:
    """R11: tasks tied to the session are cancelled by close(); close from CLOSED does nothing."""
    cancelled = trio.Event()

    async def work() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with service(server_url, mint("ext-ada")) as session:
        await session.close()  # CLOSED: nothing
        with pytest.raises(SessionNotOpen):
            session.start_soon(work)
        await session.open(ADA)
        session.start_soon(work)
        await trio.testing.wait_all_tasks_blocked()
        await session.close()
        with trio.fail_after(1):
            await cancelled.wait()
        assert session.state is S.CLOSED and session.socket_state is W.CLOSED


@asynccontextmanager
async def silent_backend(
    answer: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> AsyncIterator[str]:
    """A WebSocket peer that answers each request with ``answer(frame)`` (None: silence)."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            while True:
                frame = json.loads(await ws.get_message())
                reply = answer(frame)
                if reply is not None:
                    await ws.send_message(json.dumps(reply))
        except Exception:
            return

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, handler, "127.0.0.1", 0, None))
        yield f"ws://127.0.0.1:{server.port}/"
        nursery.cancel_scope.cancel()


def opened_reply(frame: dict[str, Any]) -> dict[str, Any] | None:
    if frame["type"] == "open":
        info = frame["info"] or {"name": None, "external_id": None, "avatar_url": None}
        return {"type": "opened", "id": frame["id"], "participant": {"id": "p1", "info": info}}
    return None  # never answers update or close


async def test_r11_close_ends_closed_when_backend_never_answers(mint: Mint) -> None:
    """R11: close() ends CLOSED within the logout timeout although the logout is never answered;
    an update in flight fails with RequestAborted."""
    async with (
        silent_backend(opened_reply) as url,
        service(url, mint("ext-ada"), logout_timeout=0.3) as session,
    ):
        await session.open(ADA)
        failures: list[BaseException] = []

        async def update() -> None:
            try:
                await session.update(name="Ada L.")
            except RequestAborted as error:
                failures.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(update)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(3):
                await session.close()
        assert session.state is S.CLOSED and session.socket_state is W.CLOSED
        assert len(failures) == 1 and failures[0].rule == "R11"  # type: ignore[attr-defined]


async def test_r11_close_while_opening_aborts_the_open(mint: Mint) -> None:
    """R11: close() during OPENING abandons the open with RequestAborted and ends CLOSED."""
    async with (
        silent_backend(lambda frame: None) as url,
        service(url, mint("ext-ada"), logout_timeout=0.2) as session,
    ):
        errors: list[BaseException] = []

        async def opener() -> None:
            try:
                await session.open(ADA)
            except RequestAborted as error:
                errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(opener)
            await trio.testing.wait_all_tasks_blocked()
            assert session.state is S.OPENING
            with trio.fail_after(3):
                await session.close()
        assert session.state is S.CLOSED and len(errors) == 1


async def test_r12_many_cycles(server_url: str, mint: Mint) -> None:
    """R12: open and close many times; the same participant each time; nothing accumulates."""
    async with service(server_url, mint("ext-ada")) as session:
        ids = set()
        for _ in range(15):
            ids.add((await session.open(ADA)).id)
            await session.close()
        assert len(ids) == 1 and session.state is S.CLOSED


async def test_r13_refused_calls_send_nothing(server_url: str, mint: Mint, frames: Frames) -> None:
    """R13: every refused call leaves the state unchanged and sends nothing."""
    async with service(server_url, mint("ext-ada")) as session:
        await session.open(ADA)
        before = list(frames.sent)
        for call in (
            lambda: session.open(ParticipantInfo("Bob")),
            lambda: session.update(name=""),
            lambda: session.update(avatar_url="ftp://x/y"),
            lambda: session.open(None),
        ):
            with pytest.raises(Exception) as caught:
                await call()
            assert caught.value.state is S.OPEN  # type: ignore[attr-defined]
            assert session.state is S.OPEN
        assert frames.sent == before


async def test_bad_tokens(server_url: str, mint: Mint, secret: str) -> None:
    """P1: a garbage token fails at once; an expired one is refused by the backend at connect."""
    with pytest.raises(InvalidToken):
        async with open_session_service(server_url, access_token="garbage"):
            pass  # pragma: no cover
    fds = open_fds()
    expired = mint("ext-ada", ttl=1)
    await trio.sleep(1.1)
    async with service(server_url, expired) as session:
        with pytest.raises(TokenExpired) as caught:
            await session.open(ADA)
        assert (caught.value.trigger, caught.value.state) == ("open", S.OPENING)
        assert "trigger 'open', state OPENING" in str(caught.value)
        assert session.state is S.CLOSED and session.socket_state is W.CLOSED
    from fsm_session.tokens import mint as raw_mint

    wrong = raw_mint("another-secret-of-enough-length-!!", external_id=None, ttl=60, now=0 + 1e10)
    async with service(server_url, wrong) as session:
        with pytest.raises(InvalidToken):
            await session.open()
        assert session.state is S.CLOSED
    assert open_fds() <= fds, "a refused handshake left a file descriptor open"


async def test_connection_refused_and_silent_peer(mint: Mint) -> None:
    """P1: no listener, or a peer that never answers the upgrade: ConnectionFailed in time."""
    fds = open_fds()
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    async with service(f"ws://127.0.0.1:{port}/", mint()) as session:
        with pytest.raises(ConnectionFailed) as refused:
            await session.open()
        assert (refused.value.trigger, refused.value.state) == ("open", S.OPENING)
        assert session.state is S.CLOSED and session.socket_state is W.CLOSED

    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, mute, 0)
        port = listeners[0].socket.getsockname()[1]
        config = {"transport": TransportConfig(connect_timeout=0.3)}
        async with service(f"ws://127.0.0.1:{port}/", mint(), **config) as session:
            with trio.fail_after(2):
                with pytest.raises(ConnectionFailed, match="no WebSocket handshake"):
                    await session.open()
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
        nursery.cancel_scope.cancel()
    assert open_fds() <= fds


async def test_r17_switched_session_is_closed_and_published(server_url: str, mint: Mint) -> None:
    """R17: opening the same external ID elsewhere ends the first session with an event."""
    async with service(server_url, mint("ext-ada")) as first, first.subscribe() as events:
        await first.open(ADA)
        async with service(server_url, mint("ext-ada")) as second:
            await second.open(ADA)
            seen = []
            with trio.fail_after(3):
                async for event in events:
                    seen.append(event)
                    if isinstance(event, SessionLostEvent):
                        break
            assert first.state is S.CLOSED
            assert any(isinstance(e, SessionSwitchedEvent) for e in seen)
            assert any(isinstance(e, SessionLostEvent) and e.reason == "switched" for e in seen)
            assert second.state is S.OPEN


async def test_cancelled_open_leaves_a_truthful_state(
    server_url: str, mint: Mint, frames: Frames
) -> None:
    """Cancelled before its frame left, the open fails (CLOSED, nothing sent); cancelled after,
    only the wait is cancelled and the session still ends OPEN."""
    async with service(server_url, mint("ext-ada")) as session, session.subscribe() as events:
        with trio.move_on_after(0):
            await session.open(ADA)
        assert session.state is S.CLOSED
        assert session.socket_state is WebSocketState.CLOSED
        assert frames.sent_types() == []

        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def opener() -> None:
                with scope:
                    await session.open(ADA)

            nursery.start_soon(opener)
            async for event in events:  # cancel the caller as soon as it is connected
                if isinstance(event, SocketStateChangeEvent) and event.state is W.CONNECTED:
                    scope.cancel()
                    break
        assert scope.cancelled_caught
        assert frames.sent_types() == ["open"]
        with trio.fail_after(3):
            async for event in events:
                if isinstance(event, SessionStateChangeEvent) and event.old is S.OPENING:
                    break
        assert session.state is S.OPEN


async def test_leaving_the_block_closes_and_ends_streams(server_url: str, mint: Mint) -> None:
    """Leaving open_session_service closes the session and ends every event stream."""
    fds = open_fds()
    seen: list[Any] = []
    ended = trio.Event()

    async def listen(session: SessionService, task_status: Any) -> None:
        async with session.subscribe() as events:
            task_status.started()
            async for event in events:
                seen.append(event)
        ended.set()

    async with trio.open_nursery() as nursery:
        async with service(server_url, mint("ext-ada")) as session:
            await nursery.start(listen, session)
            await session.open(ADA)
            assert session.subscriber_count == 1
        with trio.fail_after(2):
            await ended.wait()
    assert session.state is S.CLOSED and session.socket_state is W.CLOSED
    assert session.subscriber_count == 0
    assert state_events(seen)[-1] == ("CLOSING", "CLOSED", "closed")
    assert socket_events(seen)[-1] == "CLOSED"
    await trio.sleep(0.05)
    assert open_fds() <= fds


async def test_repr_never_shows_the_token(server_url: str, mint: Mint) -> None:
    """R16: the token appears in no repr."""
    token = mint("ext-ada")
    async with service(server_url, token) as session:
        await session.open(ADA)
        assert token not in repr(session) and "OPEN" in repr(session)


async def test_live_diagram_marks_the_current_state(server_url: str, mint: Mint) -> None:
    """Issue 5: a running session draws its machine with its state and last move marked."""
    async with service(server_url, mint("ext-ada")) as session:
        assert "class CLOSED current" in session.diagram()
        await session.open(ADA)
        drawing = session.diagram("mermaid")
        assert "class OPEN current" in drawing and "class OPENING previous" in drawing


async def test_r14_a_session_the_backend_cannot_resume_is_lost(mint: Mint) -> None:
    """R14: after a drop the client reconnects; a backend that no longer knows the participant
    refuses the resume, and the session ends CLOSED with a SessionLostEvent."""
    connections = 0

    async def drop_then_forget(request: WebSocketRequest) -> None:
        nonlocal connections
        connections += 1
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        frame = json.loads(await ws.get_message())
        if frame["type"] == "open":
            await ws.send_message(json.dumps(opened_reply(frame)))
            await trio.sleep(0.05)
            await ws._stream.aclose()  # a drop, not a close handshake
            return
        refusal = {"type": "error", "id": frame["id"], "code": "unknown_participant"}
        await ws.send_message(json.dumps({**refusal, "message": "who?", "rule": "R14"}))
        await trio.sleep_forever()

    fds = open_fds()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve_websocket, drop_then_forget, "127.0.0.1", 0, None)
        )
        url = f"ws://127.0.0.1:{server.port}/"
        async with service(url, mint("ext-ada")) as session, session.subscribe() as events:
            await session.open(ADA)
            events.ready()  # what the open published
            seen = []
            with trio.fail_after(5):
                async for event in events:
                    seen.append(event)
                    if isinstance(event, SessionLostEvent):
                        break
            assert session.state is S.CLOSED and session.socket_state is W.CLOSED
            assert connections == 2
            assert socket_events(seen) == ["CLOSED", "CONNECTING", "CONNECTED", "CLOSED"]
            assert state_events(seen) == [("OPEN", "CLOSED", "lost")]
            assert seen[-1].reason == "reconnect_failed"
        nursery.cancel_scope.cancel()
    assert open_fds() <= fds


async def test_r16_token_expiry_ends_the_session(server_url: str, mint: Mint) -> None:
    """R16: when the token expires the backend ends the session; the client says so and closes."""
    token = mint("ext-ada", ttl=2)
    async with service(server_url, token) as session, session.subscribe() as events:
        await session.open(ADA)
        lost = None
        with trio.fail_after(5):
            async for event in events:
                if isinstance(event, SessionLostEvent):
                    lost = event
                    break
        assert lost is not None and lost.reason == "token_expired"
        assert isinstance(lost.error, TokenExpired) and token not in str(lost.error)
        assert session.state is S.CLOSED


def virtual_wall() -> Callable[[], float]:
    """Seconds since the epoch that move with trio's (mock) clock, for token schedules."""
    offset = time.time() - trio.current_time()
    return lambda: offset + trio.current_time()


async def test_r16_token_refreshed_at_half_life_and_sent_to_backend(
    server_url: str, secret: str, autojump_clock: trio.testing.MockClock
) -> None:
    """R16: the callback is asked at 1/2 of the token's life; the backend takes the new token,
    so the session outlives the first token's expiry."""
    wall = virtual_wall()
    calls: list[tuple[bool, float]] = []

    async def refresh(is_expired: bool) -> str:
        calls.append((is_expired, wall() - start))
        return tokens.mint(secret, external_id="ext-ada", ttl=100, now=wall())

    start = wall()
    first = tokens.mint(secret, external_id="ext-ada", ttl=100, now=start)
    config = ServiceConfig(wall_clock=wall)
    async with open_session_service(
        server_url, access_token=first, refresh_token=refresh, config=config
    ) as session:
        await session.open(ADA)
        await trio.sleep(130)  # past the first token's expiry
        assert session.state is S.OPEN
        assert [flag for flag, _ in calls] == [False, False]  # 1/2 of each token's life
        assert calls[0][1] == pytest.approx(50, abs=1)
        await session.update(name="Ada L.")  # the connection works with the new token


async def test_r16_refresh_failing_closes_at_expiry_without_leaking_the_token(
    server_url: str,
    secret: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R16: a callback that fails is asked at 1/2, 3/4 and expiry; then the session closes with
    TokenExpired published, and the token appears in no log line."""
    wall = virtual_wall()
    flags: list[bool] = []

    async def refresh(is_expired: bool) -> str:
        flags.append(is_expired)
        raise RuntimeError(f"no token today, but here is the old one: {token}")

    token = tokens.mint(secret, external_id="ext-ada", ttl=100, now=wall())
    config = ServiceConfig(wall_clock=wall)
    async with (
        open_session_service(
            server_url, access_token=token, refresh_token=refresh, config=config
        ) as session,
        session.subscribe() as events,
    ):
        await session.open(ADA)
        lost = None
        with trio.fail_after(200):
            async for event in events:
                if isinstance(event, SessionLostEvent):
                    lost = event
                    break
        assert lost is not None and lost.reason == "token_expired"
        assert isinstance(lost.error, TokenExpired)
        assert session.state is S.CLOSED
        await trio.sleep(1)
        assert flags[:2] == [False, False]
    assert token not in caplog.text


class StallingProxy:
    """A loopback TCP proxy to ``port`` that can stop passing one connection's server bytes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self.stalled: set[int] = set()
        self._never = trio.Event()

    async def handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        upstream = await trio.open_tcp_stream("127.0.0.1", self.port)
        async with client, upstream, trio.open_nursery() as nursery:

            async def pump(src: trio.SocketStream, dst: trio.SocketStream, held: bool) -> None:
                try:
                    while data := await src.receive_some(65536):
                        if held and number in self.stalled:
                            await self._never.wait()
                        await dst.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, upstream, False)
            nursery.start_soon(pump, upstream, client, True)


async def test_r15_missed_pong_is_a_loss_and_r14_the_session_resumes(
    server_url: str, mint: Mint, autojump_clock: trio.testing.MockClock
) -> None:
    """R15: a pong that never comes is a connection loss. R14, R18: the client reconnects and
    resumes the same participant; the session never leaves OPEN and publishes no state change."""
    port = int(server_url.rsplit(":", 1)[1].strip("/"))
    proxy = StallingProxy(port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, proxy.handle, 0)
        url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
        async with (
            open_session_service(url, access_token=mint("ext-ada")) as session,
            session.subscribe() as events,
        ):
            me = await session.open(ADA)
            events.ready()
            proxy.stalled.add(1)  # from now on no pong reaches the client
            await trio.sleep(30 + 10 + 5)  # keepalive interval, pong timeout, reconnect
            seen = events.ready()
            assert socket_events(seen) == ["CLOSED", "CONNECTING", "CONNECTED"]
            assert state_events(seen) == []  # R18: nothing but the socket moved
            assert session.state is S.OPEN and session.participant == me
            assert proxy.connections == 2
            renamed = await session.update(name="Ada L.")
            assert renamed.id == me.id
        nursery.cancel_scope.cancel()


async def test_r14_requests_made_while_reconnecting_wait_for_it(
    server_url: str, mint: Mint, autojump_clock: trio.testing.MockClock
) -> None:
    """R14: an update made while the socket is down is sent once the session is resumed."""
    port = int(server_url.rsplit(":", 1)[1].strip("/"))
    proxy = StallingProxy(port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, proxy.handle, 0)
        url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
        async with open_session_service(url, access_token=mint("ext-ada")) as session:
            me = await session.open(ADA)
            proxy.stalled.add(1)
            await trio.sleep(30 + 10 + 0.01)  # the pong is missed: reconnecting now
            assert session.socket_state is not W.CONNECTED
            renamed = await session.update(name="During")
            assert renamed.id == me.id and renamed.info.name == "During"
            assert session.state is S.OPEN and session.socket_state is W.CONNECTED
        nursery.cancel_scope.cancel()
