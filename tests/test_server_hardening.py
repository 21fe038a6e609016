"""The reference server against hostile and careless clients (issue 4, item 4).

Limits with clear error replies (P2 frame size, R2 names, P14 rate), a token for one external ID
never acting on another's session (R3, P9, P10), hostile clients (bytes that are no HTTP upgrade,
half-open handshakes, idle connections up to the cap, byte-at-a-time frames) never stopping the
server from serving well-behaved clients, and a Hypothesis search, over frames built from
``specs/protocol.schema.json`` and mutations of them, for a frame that crashes it.

Every test ends by serving a well-behaved client. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    Request,
    TextMessage,
)

from fsm_session.protocol import SUBPROTOCOL, CloseCode, ErrorCode
from tests.frames import schema, validate_server_frame
from tests.test_server import (
    TIMEOUT,
    connect,
    info,
    rejection,
    resume_when_dropped,
    start,
    token,
)

# ---------------------------------------------------------------------------------------------
# Helpers: a raw WebSocket client that can send frames in pieces, and raw TCP.
# ---------------------------------------------------------------------------------------------


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
async def url(nursery: trio.Nursery) -> str:
    return await start(nursery)


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
    """A well-behaved client opens a session and closes it."""
    async with connect(url, token("carol")) as client:
        assert (await client.opened(info("Carol", "carol")))["id"]
        assert (await client.close_session())["type"] == "closed"


class Closed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class RawWS:
    """A WebSocket client on wsproto that writes the bytes of its frames exactly as told."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, access_token: str) -> AsyncIterator[RawWS]:
        host, port = host_port(url)
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            raw = cls(stream)
            request = Request(
                host=f"{host}:{port}",
                target="/",
                subprotocols=[SUBPROTOCOL],
                extra_headers=[(b"authorization", f"Bearer {access_token}".encode())],
            )
            await stream.send_all(raw.ws.send(request))
            event = await raw.next_event()
            assert isinstance(event, AcceptConnection), event
            yield raw

    def frame(self, text: str, *, fragments: int = 1) -> bytes:
        """The bytes of one text message, split into ``fragments`` frames."""
        size = max(1, math.ceil(len(text) / fragments))
        parts = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        return b"".join(
            self.ws.send(Message(data=part, message_finished=i == len(parts) - 1))
            for i, part in enumerate(parts)
        )

    async def send_slowly(self, data: bytes, pause: float) -> None:
        """Send ``data`` one byte at a time."""
        for i in range(len(data)):
            await self.stream.send_all(data[i : i + 1])
            await trio.sleep(pause)

    async def next_event(self) -> Event:
        with trio.fail_after(TIMEOUT):
            while not self.pending:
                data = await self.stream.receive_some()
                self.ws.receive_data(data or None)
                self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def receive(self) -> dict[str, Any]:
        """The next reply, checked against the schema; raise :class:`Closed` on a close."""
        text = ""
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                raise Closed(event.code)
            if isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
                continue
            assert isinstance(event, TextMessage), event
            text += event.data
            if event.message_finished:
                return validate_server_frame(text)


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    received = bytearray()
    with trio.fail_after(TIMEOUT):
        try:
            while chunk := await stream.receive_some():
                received += chunk
        except trio.BrokenResourceError:
            pass  # Reset by the server: hung up too.
    return bytes(received)


async def send_ignoring_hangup(stream: trio.SocketStream, data: bytes) -> None:
    """Send ``data``; the server may hang up before it has read it all."""
    try:
        with trio.fail_after(TIMEOUT):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


# ---------------------------------------------------------------------------------------------
# Limits: frame size (P2), names (R2), rate (P14). Each refusal is clear and local.
# ---------------------------------------------------------------------------------------------


async def test_p2_a_frame_over_the_limit_closes_1009_and_others_go_on(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, max_frame_bytes=1024)
    async with connect(url, token("bob")) as other:
        await other.opened(info("Bob", "bob"))
        async with connect(url, token("alice")) as client:
            await client.send_raw(json.dumps({"type": "close", "id": 1, "x": "x" * 1024}))
            assert await client.closed_with() == CloseCode.TOO_BIG
        assert (await other.update(name="Bob B."))["type"] == "updated"
    await served(url)


async def test_p2_a_frame_in_many_fragments_is_limited_as_a_whole(nursery: trio.Nursery) -> None:
    url = await start(nursery, max_frame_bytes=1024)
    async with RawWS.connect(url, token("alice")) as raw:
        # Fragments of 16 characters: each small, the message over the limit.
        text = json.dumps({"type": "close", "id": 1, "x": "x" * 1100})
        await send_ignoring_hangup(raw.stream, raw.frame(text, fragments=len(text) // 16))
        with pytest.raises(Closed) as caught:
            await raw.receive()
        assert caught.value.code == CloseCode.TOO_BIG
    async with RawWS.connect(url, token("alice")) as raw:
        # Under the limit, fragments are read as one frame.
        text = json.dumps({"type": "open", "id": 1, "info": None})
        await raw.stream.send_all(raw.frame(text, fragments=7))
        assert (await raw.receive())["type"] == "opened"
    await served(url)


async def test_p2_text_that_is_not_utf8_ends_only_that_connection(url: str) -> None:
    async with RawWS.connect(url, token("alice")) as raw:
        # A masked text frame whose payload is not UTF-8: FIN + text, mask bit + length 2.
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\xff\xfe"))
        await raw.stream.send_all(b"\x81\x82" + mask + payload)
        with pytest.raises(Closed) as caught:
            await raw.receive()
        # wsproto ends the connection on its own: trio-websocket hangs up without a close frame
        # (1006) where RFC 6455 asks for 1007; either way only this connection ends.
        assert caught.value.code in (1006, 1007)
    await served(url)


@pytest.mark.parametrize("length", [257, 4096, 60_000])
async def test_r2_a_name_over_256_characters_is_refused_clearly(url: str, length: int) -> None:
    async with connect(url, token("alice")) as client:
        reply = await client.open(info("n" * length, "alice"))
        assert (reply["code"], reply["rule"]) == (ErrorCode.INVALID_PARTICIPANT_INFO, "R2")
        assert "256" in reply["message"]
        reply = await client.update(name="n" * length)
        assert reply["code"] == ErrorCode.SESSION_NOT_OPEN  # Nothing was opened.
        await client.opened(info("n" * 256, "alice"))
        reply = await client.update(name="n" * length)
        assert (reply["code"], reply["rule"]) == (ErrorCode.INVALID_PARTICIPANT_INFO, "R10")
    await served(url)


async def test_p14_a_flooding_client_is_refused_and_slows_no_one_else(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, max_requests_per_second=10, max_frames_per_second=1000)
    async with connect(url, token("bob")) as other, connect(url, token("alice")) as client:
        await other.opened(info("Bob", "bob"))
        for rid in range(1, 101):
            await client.send({"type": "close", "id": rid})
        replies = [await client.receive() for _ in range(100)]
        assert [r["id"] for r in replies] == list(range(1, 101))
        limited = [r for r in replies if r["type"] == "error"]
        assert len(limited) >= 50
        for reply in limited:
            assert (reply["code"], reply["rule"]) == (ErrorCode.RATE_LIMITED, "P14")
            assert "10 requests a second" in reply["message"]
        # The limit is per connection: Bob, sending at his own pace, is not refused.
        for n in range(5):
            assert (await other.update(name=f"Bob {n}"))["type"] == "updated"
    await served(url)


# ---------------------------------------------------------------------------------------------
# R3, P9, P10: a token for one external ID never acts on another's session.
# ---------------------------------------------------------------------------------------------


async def test_r3_open_as_another_external_id_is_refused(url: str) -> None:
    async with connect(url, token("bob")) as bob:
        bob_participant = await bob.opened(info("Bob", "bob"))
        async with connect(url, token("alice")) as mallory:
            reply = await mallory.open(info("Bob", "bob"))
            assert (reply["code"], reply["rule"]) == (ErrorCode.EXTERNAL_ID_MISMATCH, "R3")
            async with connect(url, token()) as anonymous:  # A token naming nobody.
                reply = await anonymous.open(info("Bob", "bob"))
                assert (reply["code"], reply["rule"]) == (ErrorCode.EXTERNAL_ID_MISMATCH, "R3")
                # Without an external ID in the info, each gets a participant of its own.
                mine = await mallory.opened(info("Bob"))
                theirs = await anonymous.opened(info("Bob"))
                assert len({mine["id"], theirs["id"], bob_participant["id"]}) == 3
        # Bob was never switched.
        reply = await bob.update(avatar_url="https://example.com/b.png")
        assert reply["participant"]["id"] == bob_participant["id"]
        assert reply["participant"]["info"]["name"] == "Bob"


async def test_r10_update_and_p8_close_act_only_on_the_connection_s_own_session(
    url: str,
) -> None:
    async with connect(url, token("bob")) as bob, connect(url, token("alice")) as alice:
        bob_participant = await bob.opened(info("Bob", "bob"))
        reply = await alice.update(name="Mallory")
        assert reply["code"] == ErrorCode.SESSION_NOT_OPEN
        assert (await alice.close_session())["type"] == "closed"
        alice_participant = await alice.opened(info("Alice", "alice"))
        reply = await alice.update(name="Mallory")
        assert reply["participant"]["id"] == alice_participant["id"]
        assert (await alice.close_session())["type"] == "closed"
        reply = await bob.update(avatar_url="https://example.com/b.png")
        assert reply["participant"]["id"] == bob_participant["id"]
        assert reply["participant"]["info"]["name"] == "Bob"


@pytest.mark.parametrize("named", [True, False], ids=["named", "ghost"])
async def test_p9_a_dropped_session_is_resumed_only_with_its_own_external_id(
    url: str, named: bool
) -> None:
    async with connect(url, token("bob")) as bob:
        participant = await bob.opened(info("Bob", "bob") if named else None)
        await bob.drop()
    pid = participant["id"]
    for other in (token("alice"), token()):
        async with connect(url, other) as mallory:
            with trio.fail_after(TIMEOUT):
                reply = await mallory.resume(pid)
            assert (reply["code"], reply["rule"]) == (ErrorCode.UNKNOWN_PARTICIPANT, "R14")
    async with connect(url, token("bob")) as bob:
        reply = await resume_when_dropped(bob, pid)
        assert reply["participant"]["id"] == pid


async def test_p10_a_token_for_another_external_id_cannot_take_a_session(url: str) -> None:
    async with connect(url, token("bob")) as bob:
        participant = await bob.opened(info("Bob", "bob"))
        for other in (token("alice"), token()):
            reply = await bob.refresh(other)
            assert (reply["code"], reply["rule"]) == (ErrorCode.EXTERNAL_ID_MISMATCH, "R3")
        # The refused token was not taken: after a drop, only a token for Bob resumes.
        await bob.drop()
    async with connect(url, token("alice")) as mallory:
        reply = await mallory.resume(participant["id"])
        assert (reply["code"], reply["rule"]) == (ErrorCode.UNKNOWN_PARTICIPANT, "R14")
    async with connect(url, token("bob")) as bob:
        reply = await resume_when_dropped(bob, participant["id"])
        assert reply["participant"]["id"] == participant["id"]


# ---------------------------------------------------------------------------------------------
# Hostile clients: none of them stops the server from serving the next well-behaved one.
# ---------------------------------------------------------------------------------------------

GARBAGE = [
    random.Random(1).randbytes(64),
    random.Random(2).randbytes(4096),
    b"\x00" * 1000,
    b"\r\n" * 2000,
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 100_000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # An HTTP request that is no upgrade.
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # A TLS ClientHello's start.
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
async def test_p1_bytes_that_are_no_upgrade_are_turned_away(
    nursery: trio.Nursery, garbage: bytes
) -> None:
    # Bytes without a line end leave the request unfinished: the handshake timeout ends those.
    url = await start(nursery, handshake_timeout=0.5)
    host, port = host_port(url)
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await send_ignoring_hangup(stream, garbage)
        response = await read_until_eof(stream)
    # Nothing, or an HTTP error; never an upgrade.
    assert response == b"" or response.startswith(b"HTTP/1.1 4"), response[:100]
    await served(url)


async def test_p1_a_half_open_handshake_is_dropped_after_the_timeout(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, handshake_timeout=0.3)
    host, port = host_port(url)
    partial_request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    async with AsyncExitStack() as stack:
        streams = []
        for n in range(20):
            with trio.fail_after(TIMEOUT):
                # From other addresses than the well-behaved client's (127.0.0.1).
                stream = await trio.open_tcp_stream(
                    host, port, local_address=f"127.0.0.{2 + n % 2}"
                )
            stack.push_async_callback(stream.aclose)
            await send_ignoring_hangup(stream, partial_request)
            streams.append(stream)
        await served(url)  # While they hang.
        for stream in streams:
            assert await read_until_eof(stream) == b""
    await served(url)


async def test_p1_a_handshake_sent_a_byte_at_a_time_must_still_come_in_time(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, handshake_timeout=0.3)
    host, port = host_port(url)
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
    async with stream:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" * 10

        async def trickle() -> None:
            try:
                for i in range(len(request)):
                    await stream.send_all(request[i : i + 1])
                    await trio.sleep(0.01)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as inner:
            inner.start_soon(trickle)
            assert await read_until_eof(stream) == b""
            inner.cancel_scope.cancel()
    await served(url)


async def test_p1_idle_connections_up_to_the_cap_then_503_then_served_again(
    nursery: trio.Nursery,
) -> None:
    cap = 150
    url = await start(nursery, max_connections=cap, handshake_timeout=30.0)
    host, port = host_port(url)
    async with AsyncExitStack() as everyone:
        # 50 that connect and never say a word: they wait for their handshake and hold no
        # connection slot (only a pending one, of which 127.0.0.2 has a few).
        for _ in range(50):
            with trio.fail_after(TIMEOUT):
                stream = await trio.open_tcp_stream(host, port, local_address="127.0.0.2")
            everyone.push_async_callback(stream.aclose)
        # 150 idle WebSockets, each in a stack of its own so that some can leave.
        idle: list[AsyncExitStack] = []
        for _ in range(cap):
            one = AsyncExitStack()
            await one.enter_async_context(connect(url, token()))
            everyone.push_async_callback(one.aclose)
            idle.append(one)
        assert await rejection(url, token("carol")) == (503, ErrorCode.RATE_LIMITED)
        for one in reversed(idle[-10:]):  # Innermost first: they nest.
            await one.aclose()
        # Served again once the server has seen them go.
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    await served(url)
                    break
                except ConnectionRejected as exc:
                    assert exc.status_code == 503
                    await trio.sleep(0.01)
    await served(url)


async def test_p13_a_frame_sent_a_byte_at_a_time_delays_no_one_else(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, idle_timeout=0.5)
    async with RawWS.connect(url, token("alice")) as slow, connect(url, token("bob")) as other:
        text = json.dumps({"type": "open", "id": 1, "info": info("Alice", "alice")})
        data = slow.frame(text)

        async def meanwhile() -> None:
            await other.opened(info("Bob", "bob"))
            for n in range(10):
                assert (await other.update(name=f"Bob {n}"))["type"] == "updated"

        async with trio.open_nursery() as inner:
            inner.start_soon(slow.send_slowly, data, 0.002)
            inner.start_soon(meanwhile)
        # Each byte came well within the idle timeout (P13): the frame is answered.
        assert (await slow.receive())["type"] == "opened"
    await served(url)


# ---------------------------------------------------------------------------------------------
# Hypothesis: frames from the schema, and mutations of them, never crash the server.
# ---------------------------------------------------------------------------------------------


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that match ``node``, for the keywords ``specs/protocol.schema.json`` uses."""
    if "$ref" in node:
        return from_schema(schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]])
    if "const" in node:
        return st.just(node["const"])
    if "oneOf" in node:
        return st.one_of([from_schema(option) for option in node["oneOf"]])
    kinds = node.get("type")
    if isinstance(kinds, list):
        return st.one_of([from_schema({**node, "type": kind}) for kind in kinds])
    if kinds == "null":
        return st.none()
    if kinds == "integer":
        return st.integers(node.get("minimum"), node.get("maximum"))
    if kinds == "string":
        return st.text(min_size=node.get("minLength", 0), max_size=40)
    if kinds == "object":
        properties = {name: from_schema(sub) for name, sub in node["properties"].items()}
        return st.fixed_dictionaries(properties)
    raise AssertionError(f"no strategy for {node}")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
ODD_TEXT = st.sampled_from(
    [
        "\ufeff",  # Byte order mark.
        "\u202e",  # Right-to-left override.
        "\x00",
        "\u2028",
        "e\u0301" * 50,  # Combining accents.
        "\U0001f600" * 30,
        "\uffff",
        "\U0010ffff",
        " \t\n",
        "",
    ]
)
HUGE_NUMBERS = st.sampled_from(
    [0, -1, 2**53, 2**53 - 1, 2**63, 2**64 + 1, -(2**63), 10**400, 1.5, 1e308, -0.0]
)


@st.composite
def mutated(draw: st.DrawFn, frame: dict[str, Any]) -> str:
    """``frame`` broken in one to three ways, as the text of one frame."""
    frame = dict(frame)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(
            st.sampled_from(
                ["drop", "extra", "wrong_type", "huge", "odd_text", "deep", "type", "duplicate"]
            )
        )
        key = draw(st.sampled_from(sorted(frame) or ["id"]))
        if how == "drop":
            frame.pop(key, None)
        elif how == "extra":
            frame[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        elif how == "wrong_type":
            frame[key] = draw(JSON_VALUES)
        elif how == "huge":
            frame[key] = draw(HUGE_NUMBERS)
        elif how == "odd_text":
            frame[key] = draw(ODD_TEXT) + draw(st.text(max_size=10)) + draw(ODD_TEXT)
        elif how == "type":
            frame["type"] = draw(st.sampled_from(["opened", "OPEN", "open ", "", "__class__"]))
        elif how == "deep":
            depth = draw(st.sampled_from([30, 500, 5000, 20_000]))
            frame[key] = f"\0DEEP{depth}\0"
        else:
            frame[key + "\0DUP"] = draw(JSON_VALUES)
    text = json.dumps(frame)
    # Splice in what json.dumps cannot make: nesting deeper than its recursion, duplicate keys.
    for depth in (30, 500, 5000, 20_000):
        text = text.replace(f'"\\u0000DEEP{depth}\\u0000"', "[" * depth + "]" * depth)
    return text.replace("\\u0000DUP", "")


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    how = draw(st.sampled_from(["truncate", "append", "nan", "insert", "twice", "array"]))
    if how == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "append":
        return text + draw(st.sampled_from(["}", ",", " x", "\x00", "{}"]))
    if how == "nan":
        return text.replace("1", draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"])))
    if how == "insert":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(ODD_TEXT | st.text(max_size=5)) + text[at:]
    if how == "twice":
        return text + text
    return f"[{text}]"


@st.composite
def client_frames(draw: st.DrawFn) -> str:
    frame = draw(from_schema(schema()["$defs"]["clientFrame"]))
    kind = draw(st.sampled_from(["valid", "mutated", "text", "anything"]))
    if kind == "valid":
        return json.dumps(frame)
    if kind == "mutated":
        return draw(mutated(frame))
    if kind == "text":
        return draw(text_mutation(json.dumps(frame)))
    return draw(st.text(max_size=50) | JSON_VALUES.map(json.dumps))


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames=st.lists(client_frames(), min_size=1, max_size=6))
async def test_p2_p5_no_frame_crashes_the_server(frames: list[str]) -> None:
    async with trio.open_nursery() as nursery:
        url = await start(nursery, max_requests_per_second=math.inf)
        async with connect(url, token("alice")) as client:
            for text in frames:
                await client.send_raw(text)
                try:
                    reply = await client.receive()  # Checked against the schema.
                except ConnectionClosed as exc:
                    # Only a frame over the limit may end the connection (P2).
                    assert exc.reason is not None
                    assert exc.reason.code == CloseCode.TOO_BIG, (exc.reason, text[:200])
                    assert len(text.encode()) > 65536
                    break
                assert reply["type"] != "error" or reply["code"] != ErrorCode.INTERNAL_ERROR
        # A fresh, well-formed client is still served.
        async with connect(url, token("bob")) as fresh:
            await fresh.opened(info("Bob", "bob"))
        nursery.cancel_scope.cancel()


def test_the_mutations_reach_every_kind_of_refusal() -> None:
    """The strategies are not vacuous: mutated frames get each kind of P2/P3 error."""
    from fsm_session.errors import RemoteProtocolError
    from fsm_session.protocol import decode_request

    seen: set[str] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(text=client_frames())
    def collect(text: str) -> None:
        try:
            decode_request(text)
            seen.add("ok")
        except RemoteProtocolError as exc:
            seen.add(exc.code)

    collect()
    assert {"ok", ErrorCode.BAD_FRAME, ErrorCode.BAD_REQUEST} <= seen, seen
