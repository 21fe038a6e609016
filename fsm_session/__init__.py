"""fsm_session: a client's session with a real-time conferencing backend, run by an explicit
state machine over trio-websocket.

The names below are the public API; everything else may change without notice.
"""

from fsm_session._version import __version__ as __version__
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
    SessionSwitched,
    TokenError,
    TokenExpired,
    TransitionNotAllowed,
)
from fsm_session.events import (
    Event,
    SessionLostEvent,
    SessionStateChangeEvent,
    SessionSwitchedEvent,
    SocketStateChangeEvent,
)
from fsm_session.machine import SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.service import (
    EventsDropped,
    EventStream,
    ReconnectPolicy,
    ServiceConfig,
    SessionService,
    open_session_service,
)
from fsm_session.transport import TransportConfig

__all__ = [
    "ArgumentTypeError",
    "BackendError",
    "ConnectionFailed",
    "ConnectionLost",
    "Event",
    "EventStream",
    "EventsDropped",
    "ExternalIdMismatch",
    "InvalidParticipantInfo",
    "InvalidToken",
    "LocalProtocolError",
    "Participant",
    "ParticipantInfo",
    "ProtocolError",
    "ReconnectPolicy",
    "RemoteProtocolError",
    "RequestAborted",
    "ServiceConfig",
    "SessionAlreadyOpen",
    "SessionConnectionError",
    "SessionError",
    "SessionLostEvent",
    "SessionNotOpen",
    "SessionService",
    "SessionState",
    "SessionStateChangeEvent",
    "SessionSwitched",
    "SessionSwitchedEvent",
    "SocketStateChangeEvent",
    "TokenError",
    "TokenExpired",
    "TransitionNotAllowed",
    "TransportConfig",
    "WebSocketState",
    "open_session_service",
]
