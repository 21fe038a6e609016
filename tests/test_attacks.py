"""The reference server under attack: every resource bounded before it is spent.

Hostile clients connect from 127.0.0.2 and up; the well-behaved client from 127.0.0.1. Each test
ends by serving the well-behaved client. The floods are small here; ``benchmarks/attack.py``
runs them at full size and measures what they cost the well-behaved client.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from fsm_session.protocol import SUBPROTOCOL, CloseCode, ErrorCode
from fsm_session.server import ServerConfig
from fsm_session.server.limits import Admission, Bucket
from fsm_session.server.websocket import Budget, ServerWebSocket, WebSocketClosed
from fsm_session.testing.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
)
from tests.test_server import connect, info, rejection, start, token
from tests.wire import (
    frames_until_hangup,
    masked,
    open_stream,
    parse_all,
    send_ignoring_hangup,
    unmasked,
    upgraded,
)

TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Hostile clients are expected: none of them makes the server log an error."""
    yield
    errors = [
        r
        for r in caplog.records
        if r.name.startswith("fsm_session.server") and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]


async def served(url: str) -> None:
    """A well-behaved client (127.0.0.1) opens a session and closes it."""
    async with connect(url, token("carol")) as client:
        assert (await client.opened(info("Carol", "carol")))["id"]
        assert (await client.close_session())["type"] == "closed"


# ---------------------------------------------------------------------------------------------
# Every protocol error ends with its close code, sent before the TCP connection closes.
# ---------------------------------------------------------------------------------------------

OPEN = json.dumps({"type": "open", "id": 1, "info": None})
BROKEN = {
    "invalid-utf8": (masked(b"\xff\xfe", opcode=OP_TEXT), CloseCode.INVALID_DATA),
    "invalid-utf8-split": (
        masked(b'{"a":"\xe2\x82', opcode=OP_TEXT, fin=False)
        + masked(b"\x28", opcode=OP_CONTINUATION),
        CloseCode.INVALID_DATA,
    ),
    "unmasked": (unmasked(OPEN, opcode=OP_TEXT), CloseCode.PROTOCOL_ERROR),
    "rsv1": (masked(OPEN, opcode=OP_TEXT, rsv=4), CloseCode.PROTOCOL_ERROR),
    "rsv3": (masked(OPEN, opcode=OP_TEXT, rsv=1), CloseCode.PROTOCOL_ERROR),
    "orphan-continuation": (masked(OPEN, opcode=OP_CONTINUATION), CloseCode.PROTOCOL_ERROR),
    "ping-200-bytes": (masked(b"p" * 200, opcode=OP_PING), CloseCode.PROTOCOL_ERROR),
    "fragmented-ping": (masked(b"p", opcode=OP_PING, fin=False), CloseCode.PROTOCOL_ERROR),
    "opcode-3": (masked(b"x", opcode=3), CloseCode.PROTOCOL_ERROR),
    "opcode-11": (masked(b"x", opcode=11), CloseCode.PROTOCOL_ERROR),
    "text-inside-a-message": (
        masked("[", opcode=OP_TEXT, fin=False) + masked("]", opcode=OP_TEXT),
        CloseCode.PROTOCOL_ERROR,
    ),
    "close-of-one-byte": (masked(b"\x03", opcode=OP_CLOSE), CloseCode.PROTOCOL_ERROR),
    "close-code-1005": (masked(b"\x03\xed", opcode=OP_CLOSE), CloseCode.PROTOCOL_ERROR),
    "close-reason-not-utf8": (masked(b"\x03\xe8\xff", opcode=OP_CLOSE), CloseCode.INVALID_DATA),
    "binary": (masked(b"\x00\x01", opcode=OP_BINARY), CloseCode.UNSUPPORTED_DATA),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
async def test_p2_a_broken_frame_closes_with_its_code_before_the_tcp_close(
    nursery: trio.Nursery, name: str
) -> None:
    """P2: each framing error gets the close frame of RFC 6455 (1002, 1007), or P2's (1003),
    and the close frame arrives before the server closes the TCP connection."""
    data, expected = BROKEN[name]
    url = await start(nursery)
    async with upgraded(url, token(), local="127.0.0.2") as stream:
        await send_ignoring_hangup(stream, data)
        frames, orderly = await frames_until_hangup(stream)
    assert [frame.opcode for frame in frames] == [OP_CLOSE], frames
    assert frames[0].close_code == expected
    assert orderly
    await served(url)


async def test_p2_a_fragmented_message_over_the_limit_always_gets_1009(
    nursery: trio.Nursery,
) -> None:
    """P2: the limit is on the reassembled message. The server lingers after its 1009, reading
    what is still in flight, so the close frame is never lost to a reset."""
    url = await start(nursery, max_frame_bytes=1024)
    text = json.dumps({"type": "close", "id": 1, "x": "x" * 60_000}).encode()
    pieces = [text[i : i + 16] for i in range(0, len(text), 16)]
    message = b"".join(
        masked(piece, opcode=OP_TEXT if i == 0 else OP_CONTINUATION, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    for _ in range(20):
        async with (
            upgraded(url, token(), local="127.0.0.2") as stream,
            trio.open_nursery() as inner,
        ):
            inner.start_soon(send_ignoring_hangup, stream, message)
            frames, orderly = await frames_until_hangup(stream)
        assert [(f.opcode, f.close_code) for f in frames] == [(OP_CLOSE, CloseCode.TOO_BIG)]
        assert orderly
    await served(url)


async def test_p2_pings_are_answered_and_pongs_ignored(nursery: trio.Nursery) -> None:
    url = await start(nursery)
    async with upgraded(url, token()) as stream:
        await stream.send_all(masked(b"", opcode=OP_PONG) + masked(b"hello", opcode=OP_PING))
        await stream.send_all(masked(b"", opcode=OP_CLOSE))
        frames, orderly = await frames_until_hangup(stream)
    assert [(f.opcode, f.payload) for f in frames] == [(OP_PONG, b"hello"), (OP_CLOSE, b"")]
    assert orderly


# ---------------------------------------------------------------------------------------------
# Slots: handshakes under way are capped per address; a newcomer pushes out the heaviest.
# ---------------------------------------------------------------------------------------------


async def test_p1_silent_connections_beyond_an_address_s_share_are_closed_unread(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, max_pending_per_peer=4, handshake_timeout=60.0)
    async with AsyncExitStack() as stack:
        streams = []
        for _ in range(10):
            stream = await open_stream(url, "127.0.0.2")
            stack.push_async_callback(stream.aclose)
            streams.append(stream)
        await served(url)  # Meanwhile, from 127.0.0.1.
        # The fifth and later were hung up at once, long before the 60 s handshake timeout.
        for stream in streams[4:]:
            with trio.fail_after(TIMEOUT):
                assert await stream.receive_some() == b""
    await served(url)


async def test_p1_when_every_handshake_slot_is_taken_a_newcomer_pushes_out_the_heaviest(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, max_pending=6, max_pending_per_peer=6, handshake_timeout=60.0)
    async with AsyncExitStack() as stack:
        streams = []
        for n in range(6):
            # Four from 127.0.0.2, two from 127.0.0.3: all six slots.
            stream = await open_stream(url, "127.0.0.2" if n < 4 else "127.0.0.3")
            stack.push_async_callback(stream.aclose)
            streams.append(stream)
        await served(url)  # 127.0.0.1 takes the slot of 127.0.0.2's oldest.
        with trio.fail_after(TIMEOUT):
            assert await streams[0].receive_some() == b""
        # All six taken again (127.0.0.1 has left): 127.0.0.2 still holds the most.
        newcomer = await open_stream(url, "127.0.0.4")
        stack.push_async_callback(newcomer.aclose)
        await served(url)
        with trio.fail_after(TIMEOUT):
            assert await streams[1].receive_some() == b""


def test_p1_admission_keeps_every_address_to_its_share() -> None:
    evicted: list[str] = []
    admission = Admission(max_open=3, max_open_per_peer=2, max_pending=4, max_pending_per_peer=3)
    slots = [admission.admit("a", lambda n=n: evicted.append(f"a{n}")) for n in range(4)]
    assert slots[3] is None and admission.pending_count == 3
    b = admission.admit("b", lambda: evicted.append("b"))
    assert b is not None and admission.pending_count == 4
    c = admission.admit("c", lambda: evicted.append("c"))  # Full: a's oldest goes.
    assert c is not None and evicted == ["a0"] and admission.pending_of("a") == 2
    assert admission.admit("b", lambda: evicted.append("b2")) is not None  # a1 goes.
    assert evicted == ["a0", "a1"]
    # Now a, b and c... a holds 1, b 2, c 1: a newcomer from b holds as much as the most.
    assert admission.admit("b", lambda: None) is None
    for slot in (slots[0], slots[1], slots[2], b, c):
        assert slot is not None
        admission.leave_pending(slot)
    assert admission.pending_count == 1  # b's second.
    assert admission.open_refusal("a") is None
    admission.enter_open("a")
    admission.enter_open("a")
    assert admission.open_refusal("a") is not None and admission.open_refusal("b") is None
    admission.enter_open("b")
    assert admission.open_refusal("c") is not None  # Three in all.
    admission.leave_open("a")
    assert admission.open_refusal("c") is None and admission.open_of("a") == 1


async def test_p1_websockets_beyond_an_address_s_share_get_503(nursery: trio.Nursery) -> None:
    url = await start(nursery, max_connections_per_peer=3)
    async with AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(upgraded(url, token(), local="127.0.0.2"))
        async with upgraded(url, token()):  # 127.0.0.1 has its own share.
            pass
        stream = await open_stream(url, "127.0.0.2")
        async with stream:
            await _raw_upgrade(stream, url)
            response = await _read_all(stream)
        assert response.startswith(b"HTTP/1.1 503 "), response[:100]
        assert ErrorCode.RATE_LIMITED.encode() in response
    await served(url)


async def _raw_upgrade(stream: trio.SocketStream, url: str) -> None:
    ws = WSConnection(ConnectionType.CLIENT)
    request = Request(
        host="127.0.0.1",
        target="/",
        subprotocols=[SUBPROTOCOL],
        extra_headers=[(b"authorization", f"Bearer {token()}".encode())],
    )
    await stream.send_all(ws.send(request))


async def _read_all(stream: trio.SocketStream) -> bytes:
    received = bytearray()
    with trio.fail_after(TIMEOUT):
        while chunk := await stream.receive_some():
            received += chunk
    return bytes(received)


async def test_p1_503_for_an_address_at_its_share_still_serves_other_addresses(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, max_connections_per_peer=2)
    async with connect(url, token()), connect(url, token()):
        assert await rejection(url, token()) == (503, ErrorCode.RATE_LIMITED)
        async with upgraded(url, token(), local="127.0.0.2"):
            pass
    await served(url)


# ---------------------------------------------------------------------------------------------
# Budgets: bytes and frames are charged before they are decoded; a spent budget stops reading.
# ---------------------------------------------------------------------------------------------


def test_a_bucket_refills_at_its_rate_and_holds_at_most_its_capacity() -> None:
    bucket = Bucket(rate=10, capacity=20, now=0.0)
    assert bucket.level(0.0) == 20
    bucket.charge(25, 0.0)  # Bytes that arrived are paid for, into debt.
    assert bucket.level(0.0) == -5
    # Spent: it may be drawn on again once it holds an eighth of its capacity (2.5 units).
    assert bucket.ready_at(0.0) == pytest.approx(0.75)
    assert bucket.level(100.0) == 20  # Never more than its capacity.
    assert [bucket.take(100.0) for _ in range(21)].count(True) == 20


async def _server_and_client(
    budget: Budget, *, max_message_bytes: int = 65536
) -> tuple[ServerWebSocket, trio.testing.MemoryReceiveStream, WSConnection, trio.abc.Stream]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server = ServerWebSocket(
        server_stream,  # type: ignore[arg-type]
        max_message_bytes=max_message_bytes,
        send_timeout=10,
        budget=budget,
    )
    client = WSConnection(ConnectionType.CLIENT)
    await client_stream.send_all(
        client.send(Request(host="x", target="/", subprotocols=[SUBPROTOCOL]))
    )
    request = await server.read_request()
    assert request is not None
    await server.accept(SUBPROTOCOL)
    client.receive_data(await client_stream.receive_some())
    assert any(isinstance(event, AcceptConnection) for event in client.events())
    return server, server_stream, client, client_stream  # type: ignore[return-value]


async def test_p14_the_byte_budget_is_charged_before_decoding_and_paces_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """P14: a client that sends 20 KB against a budget of 1,000 bytes a second (burst 2,000)
    gets its messages read no faster than the budget: the last one about 18 s later."""
    start_at = trio.current_time()
    budget = Budget(bytes=Bucket(1000, 2000, start_at), frames=Bucket(1000, 1000, start_at))
    server, _, client, client_stream = await _server_and_client(budget)
    payload = "x" * 990
    await client_stream.send_all(b"".join(client.send(TextMessage(payload)) for _ in range(20)))
    times = []
    for _ in range(20):
        assert await server.receive() == payload
        times.append(trio.current_time() - start_at)
    assert times[0] < 1
    assert 17 <= times[-1] <= 21, times
    # Never ahead of the budget: by time t, at most 2,000 + 1,000 t bytes were read.
    for n, at in enumerate(times, 1):
        assert n * 996 <= 2000 + 1000 * at + 512, (n, at)


async def test_p14_the_frame_budget_paces_tiny_frames_and_pings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """P14: thousands of tiny frames in one read are parsed no faster than the frame budget."""
    start_at = trio.current_time()
    budget = Budget(bytes=Bucket(1e9, 1e9, start_at), frames=Bucket(10, 10, start_at))
    server, _, client, client_stream = await _server_and_client(budget)
    await client_stream.send_all(
        b"".join(masked(b"", opcode=OP_PING) + client.send(TextMessage("a")) for _ in range(50))
    )
    for _ in range(50):
        assert await server.receive() == "a"
    # 100 frames at 10 a second with a burst of 10: about 9 s.
    assert 8.5 <= trio.current_time() - start_at <= 10.5


async def test_p2_a_message_over_the_limit_is_refused_before_it_is_all_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start_at = trio.current_time()
    budget = Budget(bytes=Bucket(1e9, 1e9, start_at), frames=Bucket(1e9, 1e9, start_at))
    server, _, client, client_stream = await _server_and_client(budget, max_message_bytes=100)
    await client_stream.send_all(client.send(TextMessage("x" * 60, message_finished=False)))
    await client_stream.send_all(client.send(TextMessage("x" * 60, message_finished=False)))
    with pytest.raises(WebSocketClosed) as caught:
        await server.receive()
    assert caught.value.code == CloseCode.TOO_BIG


# ---------------------------------------------------------------------------------------------
# Stopping: 1001 to every client, within the drain time; pending handshakes are just closed.
# ---------------------------------------------------------------------------------------------


async def test_p15_a_stopping_server_closes_every_connection_with_1001() -> None:
    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[str]) -> None:
            with server_scope:
                await start_in(task_status)

        async def start_in(task_status: trio.TaskStatus[str]) -> None:
            async with trio.open_nursery() as inner:
                url = await start(inner, drain_timeout=0.5)
                task_status.started(url)

        url = await nursery.start(run_server)
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(connect(url, token())) for _ in range(3)]
            # One that will not answer the close frame: the drain time bounds the wait for it.
            deaf = await stack.enter_async_context(upgraded(url, token(), local="127.0.0.2"))
            silent = await open_stream(url, "127.0.0.3")  # Still in its handshake.
            stack.push_async_callback(silent.aclose)
            await clients[0].opened(info("Alice"))
            with trio.fail_after(TIMEOUT):
                server_scope.cancel()
                for client in clients:
                    assert await client.closed_with() == CloseCode.GOING_AWAY
                frames = parse_all(await _read_all(deaf))  # Unanswered: 0.5 s of drain.
                assert [(f.opcode, f.close_code) for f in frames] == [
                    (OP_CLOSE, CloseCode.GOING_AWAY)
                ]
                assert await silent.receive_some() == b""


# ---------------------------------------------------------------------------------------------
# Memory after a spike: the heap is trimmed once the connections have fallen from their peak.
# ---------------------------------------------------------------------------------------------


async def test_the_heap_is_trimmed_once_a_spike_of_connections_has_passed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from fsm_session.server.memory import MemoryTrimmer, malloc_trim

    if not malloc_trim():
        pytest.skip("this C library has no malloc_trim")
    connections = [0]
    trimmer = MemoryTrimmer(lambda: connections[0], interval=1.0, spike=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trimmer.run)
        for n in range(1, 2001):
            trimmer.note(n)
        connections[0] = 2000
        await trio.sleep(1.5)
        assert trimmer.trims == 0  # Still at the peak.
        connections[0] = 1950
        await trio.sleep(1)
        assert trimmer.trims == 0  # Fallen by less than a spike.
        connections[0] = 10
        await trio.sleep(1)
        assert (trimmer.trims, trimmer.peak) == (1, 10)
        await trio.sleep(5)
        assert trimmer.trims == 1  # Nothing new to give back.
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_connections_per_peer": 0},
        {"max_pending": 0},
        {"max_pending_per_peer": 1.5},
        {"max_bytes_per_second": 0},
        {"max_frames_per_second": -1.0},
        {"max_frames_per_second": math.nan},
        {"send_timeout": 0},
        {"drain_timeout": math.nan},
    ],
)
def test_p14_a_limit_out_of_range_is_refused_before_the_server_binds(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ServerConfig(**bad)  # type: ignore[arg-type]


def test_p14_the_frame_budget_follows_the_rate_unless_set() -> None:
    assert ServerConfig().frames_per_second == 40
    assert ServerConfig(max_requests_per_second=5).frames_per_second == 10
    assert ServerConfig(max_requests_per_second=math.inf).frames_per_second == math.inf
    assert ServerConfig(max_frames_per_second=7).frames_per_second == 7


async def test_p1_with_the_defaults_a_flood_of_silent_connections_keeps_no_one_out(
    nursery: trio.Nursery,
) -> None:
    """P1: 100 silent connections from one address and 300 more from 30 others (more than the
    256 pending slots): the well-behaved client from 127.0.0.1 is served at once, every time."""
    url = await start(nursery)
    async with AsyncExitStack() as stack:
        for n in range(400):
            source = "127.0.0.2" if n < 100 else f"127.0.0.{3 + n % 30}"
            stream = await open_stream(url, source)
            stack.push_async_callback(stream.aclose)
        for _ in range(5):
            await served(url)
