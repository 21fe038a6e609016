"""The proxy's faults (``fsm_session.testing.proxy``) and the leak helpers of ``tests/leaks.py``,
checked against the real
reference server with a raw trio-websocket client and with a real ``SessionService``.

Each test takes a ``leak_snapshot()`` once the server runs and ends with ``assert_no_leaks``:
the proxy, the clients and the server's per-connection work must all be gone.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from fsm_session import ParticipantInfo, SessionError, SessionState, WebSocketState
from fsm_session.events import SocketStateChangeEvent
from fsm_session.protocol import SUBPROTOCOL
from fsm_session.service import ServiceConfig, SessionService, open_session_service
from fsm_session.testing.proxy import (
    GARBAGE_JSON,
    INVALID_UTF8,
    TO_CLIENT,
    TO_SERVER,
    Capture,
    Corrupt,
    Delay,
    Direction,
    Drop,
    Frame,
    Inject,
    LoopbackProxy,
    Stall,
    Truncate,
    open_proxy,
)
from fsm_session.testing.wsframes import (
    HANDSHAKE,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_TEXT,
    build_frame,
    parse_frame,
)
from fsm_session.transport import TransportConfig
from tests.conftest import Mint
from tests.leaks import assert_no_leaks, fd_count, leak_snapshot, live_tasks, open_silent_peer

ADA = ParticipantInfo("Ada", external_id="ext-ada")
OPEN = json.dumps({"type": "open", "id": 1, "info": None})
CLOSE = json.dumps({"type": "close", "id": 2})


@asynccontextmanager
async def raw_client(url: str, token: str) -> AsyncIterator[WebSocketConnection]:
    """A bare trio-websocket client. Its socket is closed on the way out: trio-websocket
    leaves it to the garbage collector after a dropped peer, and after a frame wsproto refuses
    (invalid UTF-8) its reader waits for bytes the server will never send."""
    headers = [(b"authorization", f"Bearer {token}".encode())]
    stream = None
    try:
        with trio.fail_after(5):
            async with open_websocket_url(
                url, subprotocols=[SUBPROTOCOL], extra_headers=headers, disconnect_timeout=1
            ) as ws:
                stream = ws._stream
                try:
                    yield ws
                finally:
                    if ws.closed is not None:
                        await trio.aclose_forcefully(stream)
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def service(url: str, token: str, **config: Any) -> AsyncIterator[SessionService]:
    with trio.fail_after(10):
        cfg = ServiceConfig(**config) if config else None
        async with open_session_service(url, access_token=token, config=cfg) as session:
            yield session


async def reply(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(3):
        frame = json.loads(await ws.get_message())
    assert isinstance(frame, dict)
    return frame


async def expect_closed(ws: WebSocketConnection) -> int | None:
    """The close code the client saw when its connection ended (1006: no close frame)."""
    with trio.fail_after(3), pytest.raises(ConnectionClosed) as caught:
        await ws.get_message()
    reason = caught.value.reason
    return None if reason is None else reason.code


@pytest.fixture
async def proxy(nursery: trio.Nursery, server_url: str) -> LoopbackProxy:
    started = LoopbackProxy(server_url)
    await started.start(nursery)
    return started


async def test_transparent_raw_open_close(proxy: LoopbackProxy, mint: Mint) -> None:
    """Nothing armed: an open/close cycle passes, and every frame is counted by type."""
    before = leak_snapshot()
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        opened = await reply(ws)
        assert opened["type"] == "opened" and opened["id"] == 1
        await ws.send_message(CLOSE)
        assert (await reply(ws))["type"] == "closed"
    await assert_no_leaks(before)
    assert proxy.connections == 1 and proxy.live == 0
    for direction in (TO_SERVER, TO_CLIENT):
        assert proxy.count(direction, HANDSHAKE) == 1
    assert proxy.count(TO_SERVER, "open") == proxy.count(TO_SERVER, "close") == 1
    assert proxy.count(TO_CLIENT, "opened") == proxy.count(TO_CLIENT, "closed") == 1
    assert proxy.count(TO_SERVER, "<close>") == 1  # the client's close handshake


async def test_transparent_service_cycle(proxy: LoopbackProxy, mint: Mint) -> None:
    """A real SessionService opens, updates and closes through the proxy as if direct."""
    before = leak_snapshot()
    async with service(proxy.url, mint("ext-ada")) as session:
        participant = await session.open(ADA)
        renamed = await session.update(name="Ada L.")
        assert renamed.id == participant.id and renamed.info.name == "Ada L."
        await session.close()
        assert session.state is SessionState.CLOSED
    await assert_no_leaks(before)
    sent = [label for _, direction, label in proxy.log if direction == TO_SERVER]
    got = [label for _, direction, label in proxy.log if direction == TO_CLIENT]
    assert sent[:4] == [HANDSHAKE, "open", "update", "close"]
    assert got[:4] == [HANDSHAKE, "opened", "updated", "closed"]


REQUEST = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
KEY = b"\x01\x02\x03\x04"


async def scripted_upstream(nursery: trio.Nursery, answer: bytes) -> tuple[int, list[bytes]]:
    """A backend that reads the upgrade request and one frame, answers ``answer`` and hangs up;
    its port, and what each of its connections received."""
    received: list[bytes] = []

    async def upstream(stream: trio.SocketStream) -> None:
        data = b""
        async with stream:
            with trio.fail_after(3):
                for _ in range(1000):
                    data += await stream.receive_some(65536)
                    if data.startswith(REQUEST) and parse_frame(data[len(REQUEST) :]):
                        break
            received.append(data)
            with contextlib.suppress(trio.BrokenResourceError):  # a truncate cuts it short
                await stream.send_all(answer)

    listeners = await nursery.start(trio.serve_tcp, upstream, 0)
    return listeners[0].socket.getsockname()[1], received


async def exchange(proxy: LoopbackProxy, sent: bytes) -> bytes:
    """Send the upgrade request and ``sent`` through ``proxy``; all that comes back."""
    with trio.fail_after(5):
        client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with client:
            await client.send_all(REQUEST + sent)
            data = b""
            for _ in range(1000):
                chunk = await client.receive_some(65536)
                if not chunk:
                    return data
                data += chunk
    raise AssertionError("no EOF")


async def test_bytes_unchanged_and_faults_exact_on_the_wire(nursery: trio.Nursery) -> None:
    """Byte level, against a scripted upstream: frames of every length form pass unchanged;
    Corrupt re-frames with the client's mask key; Truncate forwards exactly ``keep`` bytes."""
    to_client = [
        build_frame('{"type": "opened"}'),
        build_frame("x" * 300),  # 16-bit length
        build_frame("y" * 70_000),  # 64-bit length
        build_frame(b"\x03\xe8", opcode=OP_CLOSE),
    ]
    port, received = await scripted_upstream(nursery, RESPONSE + b"".join(to_client))
    before = leak_snapshot()
    sent_frame = build_frame('{"type": "open"}', mask_key=KEY)

    async with open_proxy(f"ws://127.0.0.1:{port}/") as proxy:
        assert await exchange(proxy, sent_frame) == RESPONSE + b"".join(to_client)
        assert received[-1] == REQUEST + sent_frame
        assert proxy.count(TO_CLIENT, "opened") == 1 and proxy.count(TO_CLIENT, "<text>") == 2

        proxy.arm(Corrupt(b"garbage"), TO_SERVER, "open")
        proxy.arm(Truncate(keep=len(to_client[1]) - 7), TO_CLIENT, nth=2)
        got = await exchange(proxy, sent_frame)
        assert got == RESPONSE + to_client[0] + to_client[1][:-7]
        assert received[-1] == REQUEST + build_frame(b"garbage", mask_key=KEY)
    await assert_no_leaks(before)


class Renamer:
    """A mutator that renames every ``opened`` the server sends to ``closed``."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        return head

    def message(
        self, sender: Direction, connection: int, opcode: int, payload: bytes
    ) -> list[tuple[int, bytes]] | None:
        if sender != TO_CLIENT or opcode != OP_TEXT:
            return None
        return [(OP_TEXT, payload.replace(b"opened", b"closed"))]


async def test_messages_whole_to_observers_and_mutators_frames_to_faults(
    nursery: trio.Nursery,
) -> None:
    """One proxy, two views: a fragmented message reaches ``on_frame`` and the mutator whole,
    while the counts (and so the faults) see each frame on the wire."""
    fragments = build_frame('{"type": ', fin=False) + build_frame(
        '"opened"}', opcode=OP_CONTINUATION
    )
    port, _ = await scripted_upstream(nursery, RESPONSE + fragments)
    before = leak_snapshot()
    seen: list[Frame] = []
    async with open_proxy(f"ws://127.0.0.1:{port}/", on_frame=seen.append) as proxy:
        got = await exchange(proxy, build_frame('{"type": "open"}', mask_key=KEY))
        assert got == RESPONSE + fragments
        assert [(f.sender, f.connection, f.type) for f in seen] == [
            (TO_SERVER, 0, "open"),
            (TO_CLIENT, 0, "opened"),
        ]
        assert proxy.frames == seen
        assert proxy.count(TO_CLIENT, "<text>") == proxy.count(TO_CLIENT, "<continuation>") == 1
        assert proxy.count(TO_CLIENT, "opened") == 0
    async with open_proxy(f"ws://127.0.0.1:{port}/", mutator=Renamer()) as proxy:
        got = await exchange(proxy, build_frame('{"type": "open"}', mask_key=KEY))
        assert got == RESPONSE + build_frame('{"type": "closed"}')
    await assert_no_leaks(before)


@pytest.mark.parametrize(("after", "reset"), [(False, False), (True, False), (True, True)])
async def test_drop_at_opened_raw(
    proxy: LoopbackProxy, mint: Mint, after: bool, reset: bool
) -> None:
    """Drop: the client sees the connection end without a close handshake (1006), having
    received the reply only when the drop came after forwarding it."""
    before = leak_snapshot()
    armed = proxy.arm(Drop(after=after, reset=reset), TO_CLIENT, "opened")
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        if after:
            assert (await reply(ws))["type"] == "opened"
        assert await expect_closed(ws) == 1006
    assert armed.fired.is_set() and armed.hits == 1
    await assert_no_leaks(before)


async def test_drop_after_opened_service_sees_connection_loss(
    proxy: LoopbackProxy, mint: Mint
) -> None:
    """A drop while OPEN reaches the service: its socket goes CLOSED (what follows, a reconnect
    or a lost session, is the service's business and is not asserted here)."""
    before = leak_snapshot()
    proxy.arm(Drop(after=True), TO_CLIENT, "opened", connection=0)
    async with service(proxy.url, mint("ext-ada")) as session, session.subscribe() as events:
        await session.open(ADA)
        with trio.fail_after(3):
            async for event in events:
                if isinstance(event, SocketStateChangeEvent) and (
                    event.state is WebSocketState.CLOSED
                ):
                    break
    await assert_no_leaks(before)


@pytest.mark.parametrize(
    ("direction", "kind", "after"),
    [
        (TO_SERVER, HANDSHAKE, False),
        (TO_CLIENT, HANDSHAKE, False),
        (TO_CLIENT, HANDSHAKE, True),
        (TO_SERVER, "open", False),
        (TO_SERVER, "open", True),
        (TO_CLIENT, "opened", False),
    ],
)
async def test_drop_at_each_step_of_open_fails_the_open(
    proxy: LoopbackProxy, mint: Mint, direction: Any, kind: str, after: bool
) -> None:
    """A drop at any step before the reply arrives fails open() with a SessionError and
    leaves the session CLOSED, with nothing leaked. (A drop during the handshake is noticed
    only by the connect timeout: trio-websocket 0.12.2 ignores an EOF before the 101.)"""
    before = leak_snapshot()
    armed = proxy.arm(Drop(after=after), direction, kind)
    config = {"transport": TransportConfig(connect_timeout=0.5)}
    async with service(proxy.url, mint("ext-ada"), **config) as session:
        with trio.fail_after(5), pytest.raises(SessionError):
            await session.open(ADA)
        assert session.state is SessionState.CLOSED
        assert session.socket_state is WebSocketState.CLOSED
    assert armed.fired.is_set()
    await assert_no_leaks(before)


async def test_corrupt_opened_raw(proxy: LoopbackProxy, mint: Mint) -> None:
    """Corrupt: garbage JSON arrives as a well-formed text frame; invalid UTF-8 in a text
    frame makes the client's reader fail the connection (1007)."""
    before = leak_snapshot()
    proxy.arm(Corrupt(), TO_CLIENT, "opened", connection=0)
    proxy.arm(Corrupt(INVALID_UTF8), TO_CLIENT, "opened", connection=1)
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        with trio.fail_after(3):
            assert await ws.get_message() == GARBAGE_JSON.decode()
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        assert await expect_closed(ws) == 1007
    await assert_no_leaks(before)


async def test_corrupt_request_is_masked_so_the_server_reads_it(
    proxy: LoopbackProxy, mint: Mint
) -> None:
    """Corrupt toward the server re-masks the frame: the server reads it and answers
    bad_frame (P2), proving the frame itself was well formed."""
    before = leak_snapshot()
    proxy.arm(Corrupt(b"{not json"), TO_SERVER, "open")
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        answer = await reply(ws)
        assert answer["type"] == "error" and answer["code"] == "bad_frame"
        await ws.send_message(OPEN)  # the connection goes on
        assert (await reply(ws))["type"] == "opened"
    await assert_no_leaks(before)


async def test_corrupt_opened_reaches_the_service_reader(proxy: LoopbackProxy, mint: Mint) -> None:
    """The service's reader sees the bad frame: it closes the connection with 1002 (seen on
    the wire by the proxy), the open fails, and the session is CLOSED."""
    before = leak_snapshot()
    proxy.arm(Corrupt(), TO_CLIENT, "opened")
    closes = Capture()
    proxy.arm(closes, TO_SERVER, "<close>", times=None)
    async with service(proxy.url, mint("ext-ada")) as session:
        with trio.fail_after(5), pytest.raises(SessionError):
            await session.open(ADA)
        assert session.state is SessionState.CLOSED
    assert [frame.close_code for frame in closes.frames] == [1002]
    await assert_no_leaks(before)


async def test_stall_then_release(proxy: LoopbackProxy, mint: Mint) -> None:
    """Stall holds the reply until release(); the other direction keeps flowing."""
    before = leak_snapshot()
    stall = proxy.arm(Stall(), TO_CLIENT, "opened")
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        with trio.fail_after(3):
            await stall.fired.wait()
        assert proxy.stalled == 1
        with trio.move_on_after(0.2) as waited:
            await ws.get_message()
        assert waited.cancelled_caught  # nothing came through
        await ws.send_message(CLOSE)  # toward the server, not stalled
        with trio.fail_after(3):
            await proxy.wait_for(TO_SERVER, "close")
        proxy.release()
        assert (await reply(ws))["type"] == "opened"
        assert proxy.stalled == 0
        assert (await reply(ws))["type"] == "closed"
    await assert_no_leaks(before)


async def test_delay(proxy: LoopbackProxy, mint: Mint) -> None:
    """Delay holds the matched frame for at least the given time."""
    before = leak_snapshot()
    proxy.arm(Delay(0.3), TO_CLIENT, "opened")
    async with raw_client(proxy.url, mint()) as ws:
        start = trio.current_time()
        await ws.send_message(OPEN)
        assert (await reply(ws))["type"] == "opened"
        assert trio.current_time() - start >= 0.3
    await assert_no_leaks(before)


async def test_truncate_opened_raw(proxy: LoopbackProxy, mint: Mint) -> None:
    """Truncate: half a frame, then the connection ends; the client never gets the reply."""
    before = leak_snapshot()
    armed = proxy.arm(Truncate(), TO_CLIENT, "opened")
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        assert await expect_closed(ws) == 1006
    assert armed.hits == 1
    await assert_no_leaks(before)


async def test_inject_unknown_type_and_oversized(proxy: LoopbackProxy, mint: Mint) -> None:
    """Inject: an extra frame after the matched one, or at once on every live connection."""
    before = leak_snapshot()
    proxy.arm(Inject('{"type": "surprise"}'), TO_CLIENT, "opened")
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        assert (await reply(ws))["type"] == "opened"
        assert (await reply(ws))["type"] == "surprise"
        big = json.dumps({"type": "ended", "pad": "z" * 70_000})
        assert await proxy.inject(big) == 1
        with trio.fail_after(3):
            assert await ws.get_message() == big
        await ws.send_message(CLOSE)
        assert (await reply(ws))["type"] == "closed"
    await assert_no_leaks(before)


async def test_inject_oversized_reaches_the_service(proxy: LoopbackProxy, mint: Mint) -> None:
    """A frame over the protocol's limit makes the service's connection end (1009 on the
    wire toward the server); the socket goes CLOSED."""
    before = leak_snapshot()
    closes = Capture()
    proxy.arm(closes, TO_SERVER, "<close>", connection=0, times=None)
    proxy.arm(Inject(json.dumps({"type": "ended", "pad": "z" * 70_000})), TO_CLIENT, "opened")
    async with service(proxy.url, mint("ext-ada")) as session, session.subscribe() as events:
        await session.open(ADA)
        with trio.fail_after(3):
            async for event in events:
                if isinstance(event, SocketStateChangeEvent) and (
                    event.state is WebSocketState.CLOSED
                ):
                    break
    assert [frame.close_code for frame in closes.frames] == [1009]
    await assert_no_leaks(before)


async def test_cut_and_matching_by_connection_and_nth(proxy: LoopbackProxy, mint: Mint) -> None:
    """cut() ends every live connection; nth and connection pick which frame a fault hits."""
    before = leak_snapshot()
    second = proxy.arm(Drop(), TO_CLIENT, nth=2, connection=1)
    async with raw_client(proxy.url, mint()) as one, raw_client(proxy.url, mint()) as two:
        await one.send_message(OPEN)
        await two.send_message(OPEN)
        assert (await reply(one))["type"] == "opened"
        assert (await reply(two))["type"] == "opened"  # frame 1 on connection 2
        assert proxy.live == 2
        await one.send_message(CLOSE)
        assert (await reply(one))["type"] == "closed"  # frame 2, but on connection 1
        await two.send_message(CLOSE)
        assert await expect_closed(two) == 1006
        assert second.hits == 1
        async with raw_client(proxy.url, mint()) as three:
            with trio.fail_after(3):
                await proxy.wait_connections(3)
            assert proxy.cut() == 2
            await expect_closed(three)
            await expect_closed(one)
    assert proxy.live == 0
    await assert_no_leaks(before)


async def test_silent_peer_connect_times_out(mint: Mint) -> None:
    """A peer that accepts TCP and never answers the upgrade: the service's own connect
    timeout fires (trio-websocket's would not)."""
    before = leak_snapshot()
    async with open_silent_peer() as peer:
        config = {"transport": TransportConfig(connect_timeout=0.3)}
        async with service(peer.url, mint(), **config) as session:
            with trio.fail_after(2), pytest.raises(SessionError):
                await session.open()
            assert session.state is SessionState.CLOSED
        assert peer.accepted == 1 and peer.received > 0
    await assert_no_leaks(before)


async def test_leak_helpers_find_a_socket_and_a_task(nursery: trio.Nursery) -> None:
    """assert_no_leaks names a socket left open and a task left running, then passes once
    both are gone."""
    before = leak_snapshot()
    count = fd_count()
    leaked = socket.socket()
    with pytest.raises(AssertionError, match=r"socket:\["):
        await assert_no_leaks(before, settle=0.05)
    with pytest.raises(AssertionError, match="more than before"):
        await assert_no_leaks(count, settle=0.05)
    leaked.close()

    async def lingering() -> None:
        await trio.sleep_forever()

    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await lingering()

    nursery.start_soon(run, name="lingering-task")
    await trio.testing.wait_all_tasks_blocked()
    assert any(task.name == "lingering-task" for task in live_tasks())
    with pytest.raises(AssertionError, match="lingering-task"):
        await assert_no_leaks(before, settle=0.05)
    scope.cancel()
    await assert_no_leaks(before)
    await assert_no_leaks(count)


async def test_invalid_utf8_reaches_the_service(proxy: LoopbackProxy, mint: Mint) -> None:
    """Invalid UTF-8 in the reply: the service's reader sees the connection fail (1007), the
    open fails and the session is CLOSED, nothing leaked."""
    before = leak_snapshot()
    proxy.arm(Corrupt(INVALID_UTF8), TO_CLIENT, "opened")
    async with service(proxy.url, mint("ext-ada")) as session:
        with trio.fail_after(5), pytest.raises(SessionError, match="1007"):
            await session.open(ADA)
        assert session.state is SessionState.CLOSED
        assert session.socket_state is WebSocketState.CLOSED
    await assert_no_leaks(before)


async def test_invalid_utf8_toward_the_server_ends_only_that_connection(
    proxy: LoopbackProxy, mint: Mint
) -> None:
    """Invalid UTF-8 in a request: the server ends that connection; the next one is served."""
    before = leak_snapshot()
    proxy.arm(Corrupt(INVALID_UTF8), TO_SERVER, "open")
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        await expect_closed(ws)
    async with raw_client(proxy.url, mint()) as ws:
        await ws.send_message(OPEN)
        assert (await reply(ws))["type"] == "opened"
    await assert_no_leaks(before)


@pytest.mark.parametrize(
    "fault",
    [
        Corrupt(b"HTTP/1.1 500 Nope\r\nContent-Length: 0\r\n\r\n"),
        Truncate(),
        Delay(2.0),
        Stall(),
    ],
    ids=["corrupt", "truncate", "delay", "stall"],
)
async def test_handshake_response_faults_fail_the_open_in_time(
    proxy: LoopbackProxy, mint: Mint, fault: Any
) -> None:
    """A bad, cut, late or withheld upgrade response: open() fails within the service's
    connect timeout, the session is CLOSED, nothing leaked."""
    before = leak_snapshot()
    armed = proxy.arm(fault, TO_CLIENT, HANDSHAKE)
    config = {"transport": TransportConfig(connect_timeout=0.5)}
    async with service(proxy.url, mint("ext-ada"), **config) as session:
        with trio.fail_after(3), pytest.raises(SessionError):
            await session.open(ADA)
        assert session.state is SessionState.CLOSED
        assert session.socket_state is WebSocketState.CLOSED
    assert armed.fired.is_set()
    proxy.cut()  # a delayed or stalled response still holds its connection in the proxy
    await assert_no_leaks(before)
