"""What a session publishes, in order, to each subscriber of ``session.subscribe()``."""

from __future__ import annotations

from dataclasses import dataclass

from fsm_session.errors import SessionError
from fsm_session.machine import SessionState, WebSocketState

__all__ = [
    "Event",
    "SessionLostEvent",
    "SessionStateChangeEvent",
    "SessionSwitchedEvent",
    "SocketStateChangeEvent",
]


@dataclass(frozen=True, slots=True)
class SocketStateChangeEvent:
    """The socket beneath the session moved to ``state`` from ``previous`` (rule S1)."""

    state: WebSocketState
    previous: WebSocketState


@dataclass(frozen=True, slots=True)
class SessionStateChangeEvent:
    """The session moved from ``old`` to ``new`` on ``trigger``."""

    old: SessionState
    new: SessionState
    trigger: str


@dataclass(frozen=True, slots=True)
class SessionLostEvent:
    """The session ended without ``close()``: ``reason`` says why, ``error`` what was raised."""

    reason: str
    error: SessionError | None = None


@dataclass(frozen=True, slots=True)
class SessionSwitchedEvent:
    """The same external ID opened a session on another connection, which took it over (R17)."""

    participant_id: str | None


Event = SocketStateChangeEvent | SessionStateChangeEvent | SessionLostEvent | SessionSwitchedEvent
