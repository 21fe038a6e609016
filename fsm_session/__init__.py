"""fsm_session: a client's session with a real-time conferencing backend, run by an explicit
state machine over trio-websocket.

The names below are the public API; everything else may change without notice.
"""

from fsm_session.errors import (
    ArgumentTypeError,
    BackendError,
    ConnectionFailed,
    ConnectionLost,
    ExternalIdMismatch,
    InvalidParticipantInfo,
    InvalidToken,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RequestAborted,
    SessionAlreadyOpen,
    SessionConnectionError,
    SessionError,
    SessionNotOpen,
    TokenError,
    TokenExpired,
    TransitionNotAllowed,
)
from fsm_session.machine import SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo

__all__ = [
    "ArgumentTypeError",
    "BackendError",
    "ConnectionFailed",
    "ConnectionLost",
    "ExternalIdMismatch",
    "InvalidParticipantInfo",
    "InvalidToken",
    "LocalProtocolError",
    "Participant",
    "ParticipantInfo",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestAborted",
    "SessionAlreadyOpen",
    "SessionConnectionError",
    "SessionError",
    "SessionNotOpen",
    "SessionState",
    "TokenError",
    "TokenExpired",
    "TransitionNotAllowed",
    "WebSocketState",
]
