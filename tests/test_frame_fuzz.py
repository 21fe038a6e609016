"""Hypothesis below JSON: WebSocket frames of every shape against the reference server (P2, P15).

Frames are drawn with every opcode, FIN and RSV bits, masked or not, payload lengths written in
each of the three length forms (minimal or not), fragmented messages, and control frames of every
size, UTF-8 valid or not. A small model of RFC 6455 and ``specs/protocol.md`` (P2, P15) says
what the server must answer: one reply per whole text message and one pong per ping, in order,
until the first error, then a close frame with that error's code (1002, 1003, 1007, 1009), or,
when nothing was wrong, the echo of the client's own close. The test checks exactly that, that the
close frame arrived before the TCP connection closed, that the server logged no error, and that
a well-behaved client is served afterwards.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trio
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from fsm_session.protocol import CloseCode
from fsm_session.testing.wsframes import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, mask
from tests.frames import validate_server_frame
from tests.test_server import connect, info, start, token
from tests.wire import frames_until_hangup, send_ignoring_hangup, upgraded

LIMIT = 1024  # The server's message limit in these tests, so that "over it" is cheap.
EXAMPLES = int(os.environ.get("FRAME_FUZZ_EXAMPLES", "60"))
CONTROL = (8, 9, 10)
DATA = (0, 1, 2)


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    length_form: str = "minimal"  # or "16", "64": the payload length in a longer form

    def encode(self) -> bytes:
        size = len(self.payload)
        head = bytearray([(0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode])
        bit = 0x80 if self.masked else 0
        form = self.length_form
        if form == "minimal":
            form = "7" if size < 126 else "16" if size < 1 << 16 else "64"
        if form == "7":
            head.append(bit | size)
        elif form == "16":
            head.append(bit | 126)
            head += size.to_bytes(2, "big")
        else:
            head.append(bit | 127)
            head += size.to_bytes(8, "big")
        if not self.masked:
            return bytes(head) + self.payload
        key = os.urandom(4)
        return bytes(head) + key + mask(self.payload, key)


# ---------------------------------------------------------------------------------------------
# The model: what the server must send back.
# ---------------------------------------------------------------------------------------------


@dataclass
class Expected:
    """The frames the server must send before its close (``"text"`` or a pong's payload), and
    the close codes it may end with (several only where two errors meet in one frame)."""

    answers: list[str | bytes]
    close: frozenset[int | None]


def _minimal(frame: Frame) -> bool:
    size = len(frame.payload)
    form = frame.length_form
    return form == "minimal" or (form == "16" and 126 <= size < 1 << 16) or size >= 1 << 16


_SENDABLE_CLOSE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})


def expect(frames: list[Frame]) -> Expected:
    answers: list[str | bytes] = []
    message: int | None = None  # The opcode of the message under way.
    size = 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    for frame in frames:
        op = frame.opcode
        # The header: wsproto refuses each of these with 1002 before reading the payload.
        if op not in DATA + CONTROL or (
            op in CONTROL and (not frame.fin or len(frame.payload) > 125)
        ):
            return Expected(answers, frozenset({CloseCode.PROTOCOL_ERROR}))
        if not _minimal(frame) or frame.rsv or not frame.masked:
            return Expected(answers, frozenset({CloseCode.PROTOCOL_ERROR}))
        if op in CONTROL:
            if op == OP_PING:
                answers.append(frame.payload)
            elif op == OP_CLOSE:
                return Expected(answers, frozenset({_close_reply(frame.payload)}))
            continue
        if (op == 0) == (message is None):  # A continuation with no message, or a new one.
            return Expected(answers, frozenset({CloseCode.PROTOCOL_ERROR}))
        if message is None:
            message, size = op, 0
            decoder.reset()
        codes: set[int] = set()
        if message == OP_TEXT:
            try:
                text = decoder.decode(frame.payload, final=frame.fin)
            except UnicodeDecodeError:
                codes.add(CloseCode.INVALID_DATA)
                text = frame.payload.decode("utf-8", "replace")
            size += len(text)
        else:
            size += len(frame.payload)
        if size > LIMIT:
            codes.add(CloseCode.TOO_BIG)
        if codes:
            return Expected(answers, frozenset(codes))
        if frame.fin:
            if message != OP_TEXT:
                return Expected(answers, frozenset({CloseCode.UNSUPPORTED_DATA}))
            answers.append("text")
            message = None
    # Nothing broke: the test ends with a close of its own, 1000, which the server echoes.
    return Expected(answers, frozenset({1000}))


def _close_reply(payload: bytes) -> int | None:
    """The server's answer to a client's close frame: the echo of its code, or an error."""
    if not payload:
        return None  # An empty close is answered with an empty close.
    if len(payload) == 1:
        return CloseCode.PROTOCOL_ERROR
    code = int.from_bytes(payload[:2], "big")
    if not (code in _SENDABLE_CLOSE or 3000 <= code <= 4999):
        return CloseCode.PROTOCOL_ERROR
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return CloseCode.INVALID_DATA
    return code


# ---------------------------------------------------------------------------------------------
# Strategies.
# ---------------------------------------------------------------------------------------------

REQUEST = json.dumps({"type": "update", "id": 1, "name": "n", "avatar_url": None}).encode()
payloads = st.one_of(
    st.just(REQUEST),
    st.just(b'{"type":"close","id":7}'),
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"\xff", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]),
    st.sampled_from([125, 126, 200, LIMIT // 2 + 1, LIMIT + 1]).map(lambda n: b"x" * n),
)
close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.tuples(
        st.sampled_from(
            [0, 999, 1000, 1001, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 3000, 4999, 5000]
        ),
        st.sampled_from([b"", b"bye", b"\xff"]),
    ).map(lambda t: t[0].to_bytes(2, "big") + t[1]),
)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    opcode = draw(st.sampled_from(DATA + CONTROL) | st.integers(0, 15))
    payload = draw(close_payloads if opcode == OP_CLOSE else payloads)
    if opcode in CONTROL and draw(st.booleans()):
        payload = payload[:125]
    odd = draw(st.integers(0, 9)) == 0  # Now and then, break the header itself.
    return Frame(
        opcode=opcode,
        payload=payload,
        fin=draw(st.booleans()) if opcode in DATA or odd else True,
        rsv=draw(st.integers(1, 7)) if odd and draw(st.booleans()) else 0,
        masked=not (odd and draw(st.booleans())),
        length_form=draw(st.sampled_from(["16", "64"])) if odd else "minimal",
    )


@st.composite
def conversations(draw: st.DrawFn) -> list[Frame]:
    """Frames, with some whole text messages split into fragments among them."""
    result: list[Frame] = []
    for frame in draw(st.lists(frames(), min_size=1, max_size=6)):
        if frame.opcode == OP_TEXT and frame.fin and draw(st.integers(0, 3)) == 0:
            pieces = draw(st.integers(2, 4))
            step = max(1, math.ceil(len(frame.payload) / pieces))
            chunks = [frame.payload[i : i + step] for i in range(0, len(frame.payload), step)]
            chunks = chunks or [b""]
            for i, chunk in enumerate(chunks):
                result.append(Frame(OP_TEXT if i == 0 else 0, chunk, fin=i == len(chunks) - 1))
                if i == 0 and draw(st.booleans()):
                    result.append(Frame(OP_PING, b"between"))  # Control frames may interleave.
        else:
            result.append(frame)
    return result


# ---------------------------------------------------------------------------------------------
# The test.
# ---------------------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(conversation=conversations())
async def test_p15_every_frame_sequence_gets_its_answers_and_its_close_code(
    conversation: list[Frame],
) -> None:
    """P15, P2: the server answers what it must, closes with the code the spec gives the first
    error, sends that close frame before the TCP close, and serves the next client."""
    expected = expect(conversation)
    async with trio.open_nursery() as nursery:
        url = await start(
            nursery,
            max_frame_bytes=LIMIT,
            max_requests_per_second=math.inf,
            max_bytes_per_second=math.inf,
            max_frames_per_second=math.inf,
        )
        async with upgraded(url, token("alice"), local="127.0.0.2") as stream:
            data = b"".join(frame.encode() for frame in conversation)
            if expected.close == {1000}:
                data += Frame(OP_CLOSE, (1000).to_bytes(2, "big")).encode()
            await send_ignoring_hangup(stream, data)
            received, orderly = await frames_until_hangup(stream)
        answers: list[str | bytes] = []
        for frame in received[:-1]:
            if frame.opcode == OP_TEXT:
                validate_server_frame(frame.payload.decode("utf-8"))
                answers.append("text")
            else:
                assert frame.opcode == OP_PONG, frame
                answers.append(frame.payload)
        assert answers == expected.answers, (conversation, received)
        assert received and received[-1].opcode == OP_CLOSE, (conversation, received)
        assert received[-1].close_code in expected.close, (conversation, received[-1])
        assert orderly
        async with connect(url, token("bob")) as good:
            await good.opened(info("Bob", "bob"))
        nursery.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    errors = [
        r
        for r in caplog.records
        if r.name.startswith("fsm_session.server") and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]


def test_the_model_covers_every_close_code() -> None:
    """The strategies are not vacuous: the model expects each close code in some example."""
    # A search per code rather than one fixed batch of draws: the draws depend on every module
    # loaded (Hypothesis takes constants from the project's source), so a fixed batch can miss
    # a code when unrelated modules change.
    search = settings(
        max_examples=5000, derandomize=True, database=None, deadline=None, phases=[Phase.generate]
    )
    for code in (1000, 1002, 1003, 1007, 1009, None):
        find(conversations(), lambda c, code=code: code in expect(c).close, settings=search)
