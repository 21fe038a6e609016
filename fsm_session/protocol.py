"""The wire protocol of ``specs/protocol.md``, sans I/O: messages, encoding and decoding.

Client and server share this module. Frames are JSON text objects, each with a ``type``. Requests
carry an ``id`` that the reply repeats; events pushed by the server carry none. ``encode`` turns a
message into the text of one frame; ``decode_request`` (server side) and ``decode_reply`` (client
side) turn the text of one frame into a message or raise
:class:`~fsm_session.errors.RemoteProtocolError` with the machine-readable ``code`` the error
reply should carry and, when it could be read, the ``request_id`` it should name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, ClassVar, Final, TypeGuard

from fsm_session.errors import (
    BackendError,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    InvalidToken,
    LocalProtocolError,
    RemoteProtocolError,
    SessionAlreadyOpen,
    SessionError,
    SessionNotOpen,
    TokenExpired,
)
from fsm_session.models import Participant, ParticipantInfo

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_REQUEST_ID",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "Close",
    "CloseCode",
    "Closed",
    "ErrorCode",
    "ErrorReply",
    "Message",
    "Open",
    "Opened",
    "RefreshToken",
    "Reply",
    "Request",
    "Resume",
    "Resumed",
    "SessionEnded",
    "TokenAccepted",
    "Update",
    "Updated",
    "decode_reply",
    "decode_request",
    "encode",
    "error_from_reply",
]

PROTOCOL_VERSION: Final = 1
SUBPROTOCOL: Final = f"fsm-session.v{PROTOCOL_VERSION}"
"""The WebSocket subprotocol that names this version; client and server must agree on it."""
MAX_FRAME_BYTES: Final = 64 * 1024
"""The largest frame either side accepts."""
MAX_REQUEST_ID: Final = 2**53 - 1
"""Request IDs are positive integers that a JSON number holds exactly."""


class ErrorCode:
    """The ``code`` of an error reply (``specs/protocol.md``, section Errors)."""

    BAD_FRAME: Final = "bad_frame"
    UNKNOWN_TYPE: Final = "unknown_type"
    BAD_REQUEST: Final = "bad_request"
    BAD_REQUEST_ID: Final = "bad_request_id"
    FRAME_TOO_LARGE: Final = "frame_too_large"
    RATE_LIMITED: Final = "rate_limited"
    INVALID_PARTICIPANT_INFO: Final = "invalid_participant_info"
    EXTERNAL_ID_MISMATCH: Final = "external_id_mismatch"
    SESSION_ALREADY_OPEN: Final = "session_already_open"
    SESSION_NOT_OPEN: Final = "session_not_open"
    UNKNOWN_PARTICIPANT: Final = "unknown_participant"
    INVALID_TOKEN: Final = "invalid_token"
    TOKEN_EXPIRED: Final = "token_expired"
    INTERNAL_ERROR: Final = "internal_error"
    STORE_UNAVAILABLE: Final = "store_unavailable"


class CloseCode:
    """WebSocket close codes this protocol uses."""

    NORMAL: Final = 1000
    GOING_AWAY: Final = 1001
    PROTOCOL_ERROR: Final = 1002
    UNSUPPORTED_DATA: Final = 1003
    INVALID_DATA: Final = 1007
    POLICY_VIOLATION: Final = 1008
    TOO_BIG: Final = 1009
    INTERNAL_ERROR: Final = 1011
    SWITCHED: Final = 4001
    TOKEN_EXPIRED: Final = 4002
    IDLE: Final = 4003


@dataclass(frozen=True, slots=True)
class Message:
    TYPE: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Request(Message):
    id: int


@dataclass(frozen=True, slots=True)
class Reply(Message):
    id: int


# Requests, client to server.


@dataclass(frozen=True, slots=True)
class Open(Request):
    """Open a session as ``info``, or a ghost session when ``info`` is ``None``."""

    TYPE: ClassVar[str] = "open"
    info: ParticipantInfo | None


@dataclass(frozen=True, slots=True)
class Resume(Request):
    """Take up again, on a new connection, the session of ``participant_id`` (rule R14)."""

    TYPE: ClassVar[str] = "resume"
    participant_id: str


@dataclass(frozen=True, slots=True)
class Update(Request):
    """Change the participant's name and/or avatar URL; ``None`` leaves one unchanged."""

    TYPE: ClassVar[str] = "update"
    name: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class Close(Request):
    """Log out: end the session. The client closes the socket after the reply."""

    TYPE: ClassVar[str] = "close"


@dataclass(frozen=True, slots=True, repr=False)
class RefreshToken(Request):
    """Replace the connection's access token (rule R16)."""

    TYPE: ClassVar[str] = "token"
    token: str

    def __repr__(self) -> str:  # A token never appears in a repr (rule R16).
        return f"RefreshToken(id={self.id}, token=<hidden>)"


# Replies and events, server to client.


@dataclass(frozen=True, slots=True)
class Opened(Reply):
    TYPE: ClassVar[str] = "opened"
    participant: Participant


@dataclass(frozen=True, slots=True)
class Resumed(Reply):
    TYPE: ClassVar[str] = "resumed"
    participant: Participant


@dataclass(frozen=True, slots=True)
class Updated(Reply):
    TYPE: ClassVar[str] = "updated"
    participant: Participant


@dataclass(frozen=True, slots=True)
class Closed(Reply):
    TYPE: ClassVar[str] = "closed"


@dataclass(frozen=True, slots=True)
class TokenAccepted(Reply):
    TYPE: ClassVar[str] = "token_accepted"
    external_id: str | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ErrorReply(Message):
    """A refused request (``id`` set) or a frame that could not be read (``id`` ``None``)."""

    TYPE: ClassVar[str] = "error"
    id: int | None
    code: str
    message: str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class SessionEnded(Message):
    """The server ended the session on its own: ``switched`` (R17) or ``token_expired`` (R16)."""

    TYPE: ClassVar[str] = "ended"
    reason: str


REQUESTS: Final[dict[str, type[Message]]] = {
    cls.TYPE: cls for cls in (Open, Resume, Update, Close, RefreshToken)
}
REPLIES: Final[dict[str, type[Message]]] = {
    cls.TYPE: cls
    for cls in (Opened, Resumed, Updated, Closed, TokenAccepted, ErrorReply, SessionEnded)
}
_FIELDS: Final[dict[type[Message], tuple[str, ...]]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (*REQUESTS.values(), *REPLIES.values())
}


# Encoding.


def _info_json(info: ParticipantInfo) -> dict[str, Any]:
    return {"name": info.name, "external_id": info.external_id, "avatar_url": info.avatar_url}


def _value_json(value: object) -> object:
    if isinstance(value, ParticipantInfo):
        return _info_json(value)
    if isinstance(value, Participant):
        return {"id": value.id, "info": _info_json(value.info)}
    return value


def encode(message: Message) -> str:
    """The text of the one frame that carries ``message``."""
    names = _FIELDS.get(type(message))
    if names is None:
        raise LocalProtocolError(f"{type(message).__name__} is not a message of the protocol")
    frame: dict[str, object] = {"type": message.TYPE}
    for name in names:
        frame[name] = _value_json(getattr(message, name))
    try:
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode {message.TYPE!r}: {exc}") from None
    # A WebSocket text frame is UTF-8: a lone surrogate could not be sent, and the peer refuses
    # frames over the limit (P2). Both are our mistakes, caught before anything is written.
    size = _utf8_size(text)
    if size is None:
        raise LocalProtocolError(f"cannot encode {message.TYPE!r}: a string holds a lone surrogate")
    if size > MAX_FRAME_BYTES:
        raise LocalProtocolError(
            f"cannot encode {message.TYPE!r}: {size} bytes exceed the {MAX_FRAME_BYTES}-byte limit"
        )
    return text


# Decoding.


def _utf8_size(text: str) -> int | None:
    """The size of ``text`` in UTF-8, or ``None`` when it holds a lone surrogate."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _fail(code: str, reason: str, request_id: int | None = None) -> RemoteProtocolError:
    # Request IDs are rule P3 of specs/protocol.md; everything else a frame can get wrong is P2.
    rule = "P3" if code == ErrorCode.BAD_REQUEST_ID else "P2"
    error = RemoteProtocolError(reason, rule=rule, code=code)
    error.request_id = request_id
    return error


def _is_id(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 < value <= MAX_REQUEST_ID


def _opt_str(frame: dict[str, Any], key: str, rid: int | None) -> str | None:
    value = frame.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(ErrorCode.BAD_REQUEST, f"{key!r} must be a string or null", rid)
    return value


def _str(frame: dict[str, Any], key: str, rid: int | None) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise _fail(ErrorCode.BAD_REQUEST, f"{key!r} must be a string", rid)
    return value


def _info(value: object, rid: int | None) -> ParticipantInfo:
    if not isinstance(value, dict):
        raise _fail(ErrorCode.BAD_REQUEST, "'info' must be an object", rid)
    return ParticipantInfo(
        name=_opt_str(value, "name", rid),
        external_id=_opt_str(value, "external_id", rid),
        avatar_url=_opt_str(value, "avatar_url", rid),
    )


def _participant(frame: dict[str, Any], rid: int | None) -> Participant:
    value = frame.get("participant")
    if not isinstance(value, dict):
        raise _fail(ErrorCode.BAD_REQUEST, "'participant' must be an object", rid)
    return Participant(id=_str(value, "id", rid), info=_info(value.get("info"), rid))


def _number(frame: dict[str, Any], key: str, rid: int | None) -> float | None:
    value = frame.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(ErrorCode.BAD_REQUEST, f"{key!r} must be a number or null", rid)
    try:
        number = float(value)
    except OverflowError:  # An integer literal too large for a float.
        number = math.inf
    if not math.isfinite(number):  # 1e400 parses as infinity.
        raise _fail(ErrorCode.BAD_REQUEST, f"{key!r} must be a finite number", rid)
    return number


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_LONGEST_INT: Final = 19
"""Digits of the longest integer literal read as an ``int`` (2^63 has 19)."""


def _parse_int(literal: str) -> int | float:
    # An integer of any length is JSON (specs/protocol.md, P2). Python refuses to convert one of
    # more than 4,300 digits, and no ID or time needs more than 19: a longer one is read as a
    # float (infinity when huge), which no `id` and no finite time accepts.
    if len(literal) - literal.startswith("-") > _LONGEST_INT:
        return float(literal)
    return int(literal)


def _load(text: str | bytes) -> tuple[dict[str, Any], str]:
    if not isinstance(text, str):
        raise _fail(ErrorCode.BAD_FRAME, "frames must be text, not binary")
    # A character is at least one UTF-8 byte and at most four: count bytes only when it matters.
    if len(text) > MAX_FRAME_BYTES or (
        4 * len(text) > MAX_FRAME_BYTES and (_utf8_size(text) or 0) > MAX_FRAME_BYTES
    ):
        raise _fail(ErrorCode.FRAME_TOO_LARGE, f"frames are limited to {MAX_FRAME_BYTES} bytes")
    try:
        # NaN and Infinity are not JSON, though Python's parser takes them by default.
        frame = json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int)
    except (ValueError, RecursionError):
        raise _fail(ErrorCode.BAD_FRAME, "the frame is not JSON") from None
    if not isinstance(frame, dict):
        raise _fail(ErrorCode.BAD_FRAME, "the frame is not a JSON object")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise _fail(ErrorCode.BAD_FRAME, "the frame has no 'type' string")
    return frame, kind


def decode_request(text: str | bytes) -> Request:
    """Decode a frame a client sent. Raises ``RemoteProtocolError`` with ``code``/``request_id``."""
    frame, kind = _load(text)
    raw_id = frame.get("id")
    rid = raw_id if _is_id(raw_id) else None
    cls = REQUESTS.get(kind)
    if cls is None:
        raise _fail(ErrorCode.UNKNOWN_TYPE, f"unknown request type {kind[:64]!r}", rid)
    if rid is None:
        raise _fail(ErrorCode.BAD_REQUEST_ID, "'id' must be an integer from 1 to 2**53-1")
    if cls is Open:
        info = frame.get("info")
        return Open(rid, None if info is None else _info(info, rid))
    if cls is Update:
        return Update(rid, _opt_str(frame, "name", rid), _opt_str(frame, "avatar_url", rid))
    if cls is Resume:
        return Resume(rid, _str(frame, "participant_id", rid))
    if cls is RefreshToken:
        return RefreshToken(rid, _str(frame, "token", rid))
    return Close(rid)


def decode_reply(text: str | bytes) -> Message:
    """Decode a frame a server sent: a reply, an error reply or an event."""
    frame, kind = _load(text)
    cls = REPLIES.get(kind)
    if cls is None:
        raise _fail(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")
    raw_id = frame.get("id")
    if cls is SessionEnded:
        return SessionEnded(_str(frame, "reason", None))
    if cls is ErrorReply:
        if raw_id is not None and not _is_id(raw_id):
            raise _fail(ErrorCode.BAD_REQUEST_ID, "an error's 'id' must be a request ID or null")
        return ErrorReply(
            raw_id,
            _str(frame, "code", raw_id),
            _str(frame, "message", raw_id),
            _opt_str(frame, "rule", raw_id),
        )
    if not _is_id(raw_id):
        raise _fail(ErrorCode.BAD_REQUEST_ID, "a reply's 'id' must be an integer from 1 to 2**53-1")
    if cls is Closed:
        return Closed(raw_id)
    if cls is TokenAccepted:
        return TokenAccepted(
            raw_id, _opt_str(frame, "external_id", raw_id), _number(frame, "expires_at", raw_id)
        )
    return cls(raw_id, _participant(frame, raw_id))  # type: ignore[call-arg]


_REPLY_ERRORS: Final[dict[str, type[SessionError]]] = {
    ErrorCode.INVALID_PARTICIPANT_INFO: InvalidParticipantInfo,
    ErrorCode.EXTERNAL_ID_MISMATCH: ExternalIdMismatch,
    ErrorCode.SESSION_ALREADY_OPEN: SessionAlreadyOpen,
    ErrorCode.SESSION_NOT_OPEN: SessionNotOpen,
    ErrorCode.INVALID_TOKEN: InvalidToken,
    ErrorCode.TOKEN_EXPIRED: TokenExpired,
}


def error_from_reply(reply: ErrorReply, *, trigger: str, state: Enum) -> SessionError:
    """The typed error an error reply stands for, naming the call and the state it was made in."""
    cls = _REPLY_ERRORS.get(reply.code, BackendError)
    return cls(
        f"the backend refused: {reply.message}",
        rule=reply.rule,
        trigger=trigger,
        state=state,
        code=reply.code,
    )
