"""The wire codec (``fsm_session/protocol.py``) against ``specs/protocol.md`` and its JSON Schema.

Every message round-trips; every frame ``encode`` writes validates against the schema; every
malformed frame gets the error code the spec documents; and no input at all makes the decoders
raise anything but ``RemoteProtocolError``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError

from fsm_session.errors import LocalProtocolError, RemoteProtocolError
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import (
    MAX_FRAME_BYTES,
    MAX_REQUEST_ID,
    REPLIES,
    REQUESTS,
    SUBPROTOCOL,
    Close,
    CloseCode,
    Closed,
    ErrorCode,
    ErrorReply,
    Message,
    Open,
    Opened,
    RefreshToken,
    Request,
    Resume,
    Resumed,
    SessionEnded,
    TokenAccepted,
    Update,
    Updated,
    decode_reply,
    decode_request,
    encode,
)
from tests.frames import schema, validate_client_frame, validate_server_frame, validator

SPEC = Path(__file__).resolve().parent.parent / "specs" / "protocol.md"
ERROR_CODES = sorted(v for k, v in vars(ErrorCode).items() if k.isupper())
CLOSE_CODES = sorted(v for k, v in vars(CloseCode).items() if k.isupper())

ALICE = ParticipantInfo("Alice", "alice", "https://example.com/a.png")
GHOST = ParticipantInfo(None)
PID = "9f1c0a4be7d2431a8e0b5c6d7e8f9012"

SAMPLE_REQUESTS: list[Request] = [
    Open(1, ALICE),
    Open(2, ParticipantInfo("Bob")),
    Open(3, None),
    Resume(4, PID),
    Update(5, "Alice B.", None),
    Update(6, None, "https://example.org/b.png"),
    Update(7, None, None),
    Close(8),
    RefreshToken(9, "eyJhbGciOiJIUzI1NiJ9.e30.sig"),
    Close(MAX_REQUEST_ID),
    Open(10, ParticipantInfo("Zoë 🎧", "ünïcode", None)),
]
SAMPLE_REPLIES: list[Message] = [
    Opened(1, Participant(PID, ALICE)),
    Opened(3, Participant(PID, GHOST)),
    Resumed(4, Participant(PID, ALICE)),
    Updated(5, Participant(PID, ParticipantInfo("Alice B.", "alice"))),
    Closed(8),
    TokenAccepted(9, "alice", 1700007200.0),
    TokenAccepted(9, None, None),
    ErrorReply(2, ErrorCode.EXTERNAL_ID_MISMATCH, "the external ID differs", "R3"),
    ErrorReply(None, ErrorCode.BAD_FRAME, "the frame is not JSON", "P2"),
    ErrorReply(7, ErrorCode.INTERNAL_ERROR, "failed", None),
    SessionEnded("switched"),
    SessionEnded("token_expired"),
]


# ---------------------------------------------------------------------------------------------
# Round trips and the schema.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("message", SAMPLE_REQUESTS, ids=repr)
def test_p2_every_request_round_trips_and_validates(message: Request) -> None:
    text = encode(message)
    frame = validate_client_frame(text)
    assert frame["type"] == message.TYPE and frame["id"] == message.id
    assert decode_request(text) == message
    with pytest.raises(ValidationError):
        validate_server_frame(text)


@pytest.mark.parametrize("message", SAMPLE_REPLIES, ids=repr)
def test_p2_every_reply_round_trips_and_validates(message: Message) -> None:
    text = encode(message)
    assert validate_server_frame(text)["type"] == message.TYPE
    assert decode_reply(text) == message
    with pytest.raises(ValidationError):
        validate_client_frame(text)


def test_every_message_class_has_samples() -> None:
    assert {type(m) for m in SAMPLE_REQUESTS} == set(REQUESTS.values())
    assert {type(m) for m in SAMPLE_REPLIES} == set(REPLIES.values())


def test_the_schema_is_valid_draft_2020_12() -> None:
    whole = schema()
    assert whole["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(whole)


def _frame_types(definition: str) -> set[str]:
    defs = schema()["$defs"]
    refs = [option["$ref"].rsplit("/", 1)[1] for option in defs[definition]["oneOf"]]
    return {defs[name]["properties"]["type"]["const"] for name in refs}


def test_the_schema_has_one_frame_definition_per_message_type() -> None:
    assert _frame_types("clientFrame") == set(REQUESTS)
    assert _frame_types("serverFrame") == set(REPLIES)


def test_the_schema_is_strict() -> None:
    defs = schema()["$defs"]
    # Frames are closed; a token's claims are not (P1: other claims are ignored).
    objects = [d for name, d in defs.items() if d.get("type") == "object" and name != "tokenClaims"]
    assert objects and all(d["additionalProperties"] is False for d in objects)
    assert defs["tokenClaims"].get("additionalProperties", True) is True
    for message in (*SAMPLE_REQUESTS, *SAMPLE_REPLIES):
        frame = json.loads(encode(message))
        frame["extra"] = 1
        definition = "clientFrame" if isinstance(message, Request) else "serverFrame"
        with pytest.raises(ValidationError):
            validator(definition).validate(frame)


def test_the_schema_lists_exactly_the_error_codes() -> None:
    assert sorted(schema()["$defs"]["errorCode"]["enum"]) == ERROR_CODES


def test_the_whole_schema_takes_both_directions() -> None:
    whole = Draft202012Validator(schema())
    for message in (*SAMPLE_REQUESTS, *SAMPLE_REPLIES):
        whole.validate(json.loads(encode(message)))


# ---------------------------------------------------------------------------------------------
# The written spec.
# ---------------------------------------------------------------------------------------------


def test_the_spec_defines_every_rule_once() -> None:
    text = SPEC.read_text(encoding="utf-8")
    # A rule is defined where a line starts with it: "**P2 Frames.**" or "### P6 `open`".
    defined = re.findall(r"^(?:\*\*|### )(P\d+) ", text, flags=re.MULTILINE)
    ids = list(defined)
    assert ids == [f"P{n}" for n in range(1, 18)]


def test_the_spec_lists_every_error_code_and_close_code() -> None:
    text = SPEC.read_text(encoding="utf-8")
    for code in ERROR_CODES:
        assert f"| `{code}` |" in text, code
    for close_code in CLOSE_CODES:
        assert f"| {close_code} |" in text, close_code
    assert SUBPROTOCOL in text and str(MAX_FRAME_BYTES) in text


def test_the_spec_examples_validate() -> None:
    """Every one-line JSON frame in the spec's examples is valid."""
    text = SPEC.read_text(encoding="utf-8")
    frames = re.findall(r'^(?:[→←] |\S.*?  [→←] )?(\{"type":.*\})\s*$', text, flags=re.MULTILINE)
    assert len(frames) >= 20
    for line in frames:
        if "..." in line:
            continue  # Shortened on purpose.
        frame = json.loads(line)
        kind = frame["type"]
        check = validate_client_frame if kind in REQUESTS else validate_server_frame
        check(line)


# ---------------------------------------------------------------------------------------------
# Malformed frames get the documented codes.
# ---------------------------------------------------------------------------------------------

_TOO_LARGE_ASCII = '{"type":"close","id":1,"x":"' + "x" * MAX_FRAME_BYTES + '"}'
_TOO_LARGE_UTF8 = '{"type":"close","id":1,"x":"' + "é" * 33_000 + '"}'


@pytest.mark.parametrize(
    ("frame", "code", "rid"),
    [
        (b'{"type":"close","id":1}', ErrorCode.BAD_FRAME, None),
        ("", ErrorCode.BAD_FRAME, None),
        ("{", ErrorCode.BAD_FRAME, None),
        ("null", ErrorCode.BAD_FRAME, None),
        ("[]", ErrorCode.BAD_FRAME, None),
        ('{"id":1}', ErrorCode.BAD_FRAME, None),
        ('{"type":null,"id":1}', ErrorCode.BAD_FRAME, None),
        ('{"type":"close","id":NaN}', ErrorCode.BAD_FRAME, None),
        ('{"type":"close","id":Infinity}', ErrorCode.BAD_FRAME, None),
        ("[" * 30_000, ErrorCode.BAD_FRAME, None),
        (_TOO_LARGE_ASCII, ErrorCode.FRAME_TOO_LARGE, None),
        (_TOO_LARGE_UTF8, ErrorCode.FRAME_TOO_LARGE, None),
        ('{"type":"hello","id":3}', ErrorCode.UNKNOWN_TYPE, 3),
        ('{"type":"closed","id":3}', ErrorCode.UNKNOWN_TYPE, 3),
        ('{"type":"hello","id":"x"}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"type":"close"}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type":"close","id":null}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type":"close","id":0}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type":"close","id":9007199254740992}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type":"close","id":2.0}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type":"close","id":false}', ErrorCode.BAD_REQUEST_ID, None),
        ('{"type":"open","id":3,"info":"Alice"}', ErrorCode.BAD_REQUEST, 3),
        ('{"type":"open","id":3,"info":{"name":["A"]}}', ErrorCode.BAD_REQUEST, 3),
        ('{"type":"open","id":3,"info":{"name":"A","external_id":1}}', ErrorCode.BAD_REQUEST, 3),
        ('{"type":"update","id":3,"name":true,"avatar_url":null}', ErrorCode.BAD_REQUEST, 3),
        ('{"type":"resume","id":3,"participant_id":7}', ErrorCode.BAD_REQUEST, 3),
        ('{"type":"token","id":3}', ErrorCode.BAD_REQUEST, 3),
    ],
)
def test_p2_p3_decode_request_refuses_malformed_frames(
    frame: str | bytes, code: str, rid: int | None
) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_request(frame)
    error = caught.value
    assert (error.code, error.request_id) == (code, rid)
    assert error.rule == ("P3" if code == ErrorCode.BAD_REQUEST_ID else "P2")


def test_p2_the_size_limit_is_in_utf8_bytes() -> None:
    head = '{"type":"close","id":1,"x":"'
    fits = head + "é" * ((MAX_FRAME_BYTES - len(head) - 2) // 2) + '"}'
    assert len(fits.encode()) <= MAX_FRAME_BYTES < len(_TOO_LARGE_UTF8.encode())
    assert len(_TOO_LARGE_UTF8) < MAX_FRAME_BYTES  # Characters alone would let it through.
    assert decode_request(fits) == Close(1)


def test_p2_unknown_members_are_ignored_and_missing_nullables_read_as_null() -> None:
    assert decode_request('{"type":"close","id":1,"future":true}') == Close(1)
    assert decode_request('{"type":"open","id":1}') == Open(1, None)
    assert decode_request('{"type":"update","id":1}') == Update(1, None, None)
    assert decode_request('{"type":"open","id":1,"info":{"name":"A"}}') == Open(
        1, ParticipantInfo("A")
    )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type":"open","id":1,"info":null}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"opened","id":1}', ErrorCode.BAD_REQUEST),
        ('{"type":"opened","id":1,"participant":{"id":"p","info":[]}}', ErrorCode.BAD_REQUEST),
        ('{"type":"opened","id":1,"participant":{"id":5,"info":{}}}', ErrorCode.BAD_REQUEST),
        ('{"type":"opened","id":0,"participant":{"id":"p","info":{}}}', ErrorCode.BAD_REQUEST_ID),
        ('{"type":"closed"}', ErrorCode.BAD_REQUEST_ID),
        ('{"type":"error","id":"7","code":"x","message":"m"}', ErrorCode.BAD_REQUEST_ID),
        ('{"type":"error","id":null,"message":"m"}', ErrorCode.BAD_REQUEST),
        ('{"type":"error","id":null,"code":"x","message":"m","rule":3}', ErrorCode.BAD_REQUEST),
        ('{"type":"ended"}', ErrorCode.BAD_REQUEST),
        ('{"type":"token_accepted","id":1,"expires_at":"soon"}', ErrorCode.BAD_REQUEST),
        ('{"type":"token_accepted","id":1,"expires_at":true}', ErrorCode.BAD_REQUEST),
        ('{"type":"token_accepted","id":1,"expires_at":1e400}', ErrorCode.BAD_REQUEST),
        ('{"type":"token_accepted","id":1,"expires_at":1' + "0" * 400 + "}", ErrorCode.BAD_REQUEST),
        ('{"type":"token_accepted","id":1,"expires_at":NaN}', ErrorCode.BAD_FRAME),
    ],
)
def test_p2_decode_reply_refuses_malformed_frames(frame: str, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_reply(frame)
    assert caught.value.code == code


def test_encode_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Message())
    with pytest.raises(LocalProtocolError, match="surrogate"):
        encode(Update(1, "\ud800", None))
    with pytest.raises(LocalProtocolError, match="limit"):
        encode(RefreshToken(1, "x" * MAX_FRAME_BYTES))
    with pytest.raises(LocalProtocolError):
        encode(TokenAccepted(1, None, float("nan")))


def test_p16_a_token_request_hides_its_token() -> None:
    secret_token = "eyJhbGciOiJIUzI1NiJ9.e30.signature"
    assert "signature" not in repr(RefreshToken(3, secret_token))
    assert "signature" not in str(RefreshToken(3, secret_token))


# ---------------------------------------------------------------------------------------------
# Properties.
# ---------------------------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_opt_text = st.none() | _text
_ids = st.integers(1, MAX_REQUEST_ID)
_infos = st.builds(ParticipantInfo, _opt_text, _opt_text, _opt_text)
# The schema wants a participant ID to be non-empty; servers never assign an empty one.
_participants = st.builds(Participant, _text.filter(bool), _infos)

_requests = st.one_of(
    st.builds(Open, _ids, st.none() | _infos),
    st.builds(Resume, _ids, _text),
    st.builds(Update, _ids, _opt_text, _opt_text),
    st.builds(Close, _ids),
    st.builds(RefreshToken, _ids, _text.filter(bool)),
)
_replies = st.one_of(
    st.builds(Opened, _ids, _participants),
    st.builds(Resumed, _ids, _participants),
    st.builds(Updated, _ids, _participants),
    st.builds(Closed, _ids),
    st.builds(
        TokenAccepted,
        _ids,
        _opt_text,
        st.none() | st.floats(allow_nan=False, allow_infinity=False),
    ),
    st.builds(
        ErrorReply,
        st.none() | _ids,
        st.sampled_from(ERROR_CODES),
        _text,
        st.none() | st.from_regex(r"\A[RP][0-9]{1,3}\Z"),
    ),
    st.builds(SessionEnded, st.sampled_from(["switched", "token_expired"])),
)


@given(_requests)
def test_property_requests_round_trip_and_validate(message: Request) -> None:
    text = encode(message)
    validate_client_frame(text)
    assert decode_request(text) == message


@given(_replies)
def test_property_replies_round_trip_and_validate(message: Message) -> None:
    text = encode(message)
    validate_server_frame(text)
    assert decode_reply(text) == message


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_member_names = st.sampled_from(
    ["id", "info", "name", "external_id", "avatar_url", "participant_id", "token", "participant",
     "code", "message", "rule", "reason", "expires_at"]
)  # fmt: skip
_odd_ids = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from([*REQUESTS, *REPLIES, "", "other"]) | st.text(max_size=8)},
    optional={"id": _odd_ids | _ids},
).flatmap(
    lambda base: st.dictionaries(_member_names, _json, max_size=5).map(lambda m: {**m, **base})
)


def _decodes_or_refuses(text: str | bytes) -> None:
    for decode in (decode_request, decode_reply):
        try:
            message = decode(text)
        except RemoteProtocolError as error:
            assert isinstance(error.code, str) and error.rule in ("P2", "P3")
            assert error.request_id is None or 1 <= error.request_id <= MAX_REQUEST_ID
        else:
            assert isinstance(message, Message)


# The number of examples comes from the Hypothesis profile (tests/conftest.py).
_settings = settings(suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(st.text() | st.binary())
def test_property_any_text_decodes_or_is_refused(text: str | bytes) -> None:
    _decodes_or_refuses(text)


@_settings
@given(_json)
def test_property_any_json_decodes_or_is_refused(value: Any) -> None:
    _decodes_or_refuses(json.dumps(value))


@_settings
@given(_frame_like)
def test_property_frame_like_objects_decode_or_are_refused(frame: dict[str, Any]) -> None:
    """Objects shaped like frames reach deep into the decoders; still only refusals."""
    text = json.dumps(frame)  # May hold NaN or Infinity (odd ids): refused as not JSON.
    _decodes_or_refuses(text)


# ---------------------------------------------------------------------------------------------
# P2's decisions where RFC 8259 leaves a choice.
# ---------------------------------------------------------------------------------------------


def test_p2_p3_a_huge_integer_id_is_a_number_not_unreadable_json() -> None:
    """P2: an integer of any length is JSON; P3: one of 5,000 digits is not a readable id."""
    for digits in ("1" * 5000, "-" + "9" * 30, "12345678901234567890"):
        with pytest.raises(RemoteProtocolError) as caught:
            decode_request('{"type":"close","id":' + digits + "}")
        assert caught.value.code == ErrorCode.BAD_REQUEST_ID
        assert caught.value.request_id is None
    assert decode_request('{"type":"close","id":9007199254740991}') == Close(9007199254740991)


def test_p2_a_byte_order_mark_is_not_json_and_the_last_duplicate_key_counts() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_request('\ufeff{"type":"close","id":1}')
    assert caught.value.code == ErrorCode.BAD_FRAME
    assert decode_request('{"type":"close","id":2,"id":3}') == Close(3)
    assert decode_request('{"type":"close","type":"open","id":1,"info":null}') == Open(1, None)
