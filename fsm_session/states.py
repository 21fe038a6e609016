"""The states of the session and socket machines, the effects their rows hand back, ``MISSING``.

Closed enums, so mypy checks every branch. The tables that use them are in
:mod:`fsm_session.machine`.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = ["MISSING", "Effect", "SessionState", "WebSocketState"]


class SessionState(Enum):
    """The states of a session. CLOSED is the initial state (rule R1)."""

    CLOSED = "CLOSED"
    OPENING = "OPENING"
    OPEN = "OPEN"
    GHOST = "GHOST"
    CLOSING = "CLOSING"


class WebSocketState(Enum):
    """The states of the socket beneath a session, published as ``SocketStateChangeEvent``."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class Effect(Enum):
    """The I/O a transition asks of the driver."""

    NOTHING = "nothing"
    """Nothing to send: the call is already satisfied, or the input only changed data."""
    SEND_OPEN = "send_open"
    """Connect if needed, then send an open request for ``core.opening`` (``None``: a ghost)."""
    JOIN_OPEN = "join_open"
    """An open is in flight: wait for its outcome instead of sending another (rule R5)."""
    RETURN_PARTICIPANT = "return_participant"
    """The session is already open as asked: answer with ``core.participant`` (rule R5)."""
    SEND_UPDATE = "send_update"
    """Send an update request that turns the participant into ``core.updating``."""
    SEND_CLOSE = "send_close"
    """Abandon requests in flight, log out and close the socket (rule R11)."""
    JOIN_CLOSE = "join_close"
    """A close is in flight: wait for it to finish (rule R11)."""


class _Missing(Enum):
    MISSING = "MISSING"


MISSING: Final = _Missing.MISSING
"""Stands for an argument that was not given at all, as distinct from ``None``."""
