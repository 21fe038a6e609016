"""What a session publishes, in order, to each subscriber of ``session.subscribe()``.

Every event names its ``session`` by a short ID (the same in the ``fsm_session.session`` log),
and its ``str()`` is one line a person can read::

    session 3f2a: CLOSED -> OPENING on open
    session 3f2a socket: CLOSED -> CONNECTING on connect
    session 3f2a: lost (switched): the same external ID opened a session elsewhere
"""

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
class SessionStateChangeEvent:
    """The session moved from ``old`` to ``new`` on ``trigger``."""

    old: SessionState
    new: SessionState
    trigger: str
    session: str = ""

    def __str__(self) -> str:
        return f"session {self.session}: {self.old.name} -> {self.new.name} on {self.trigger}"


@dataclass(frozen=True, slots=True)
class SocketStateChangeEvent:
    """The socket beneath the session moved from ``old`` to ``new`` on ``trigger`` (S1)."""

    old: WebSocketState
    new: WebSocketState
    trigger: str
    session: str = ""

    @property
    def state(self) -> WebSocketState:
        """The state the socket is in now (the SDK's name; the same as ``new``)."""
        return self.new

    @property
    def previous(self) -> WebSocketState:
        """The state the socket left (the same as ``old``)."""
        return self.old

    def __str__(self) -> str:
        return (
            f"session {self.session} socket: {self.old.name} -> {self.new.name} on {self.trigger}"
        )


@dataclass(frozen=True, slots=True)
class SessionLostEvent:
    """The session ended without ``close()``: ``reason`` says why, ``error`` what was raised."""

    reason: str
    error: SessionError | None = None
    session: str = ""

    def __str__(self) -> str:
        why = f": {self.error.reason}" if self.error is not None else ""
        return f"session {self.session}: lost ({self.reason}){why}"


@dataclass(frozen=True, slots=True)
class SessionSwitchedEvent:
    """The same external ID opened a session on another connection, which took it over (R17)."""

    participant_id: str | None
    session: str = ""

    def __str__(self) -> str:
        return f"session {self.session}: switched (participant {self.participant_id})"


Event = SocketStateChangeEvent | SessionStateChangeEvent | SessionLostEvent | SessionSwitchedEvent
