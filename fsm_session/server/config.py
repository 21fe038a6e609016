"""How the reference server is set up: its limits and timeouts, and where its secret comes from."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from fsm_session.protocol import MAX_FRAME_BYTES

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_ENV",
    "ConfigurationError",
    "ServerConfig",
    "check_secret",
    "secret_from_env",
]

SECRET_ENV = "FSM_SESSION_SECRET"
"""The environment variable that holds the secret the server verifies access tokens with."""
MIN_SECRET_BYTES = 32
"""RFC 7518 (section 3.2) requires an HS256 key of at least 256 bits."""


class ConfigurationError(RuntimeError):
    """The server cannot start as configured (for example, it has no secret)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The limits and timeouts of one :func:`~fsm_session.server.serve` call.

    Every duration is in seconds. Constructing one with a value out of range raises
    ``ValueError``, so a bad configuration fails before the server binds.
    """

    max_frame_bytes: int = MAX_FRAME_BYTES
    """The largest text message accepted, in UTF-8 bytes, however many WebSocket frames carry
    it; a larger one closes with 1009 (P2). At most :data:`~fsm_session.protocol.MAX_FRAME_BYTES`,
    the limit of the protocol itself."""
    max_connections: int = 1024
    """Accepted WebSockets served at once; beyond it the handshake gets 503 (P1)."""
    max_connections_per_peer: int = 256
    """Accepted WebSockets from one IP address at once; beyond it the handshake gets 503 (P1)."""
    max_pending: int = 256
    """TCP connections whose WebSocket handshake is not done yet. When all are taken, a new one
    takes the place of the oldest of the address that holds the most, which is closed."""
    max_pending_per_peer: int = 16
    """Handshakes under way from one IP address at once; a TCP connection beyond them is closed
    at once, unread."""
    handshake_timeout: float = 5.0
    """How long a new TCP connection has to complete its WebSocket handshake (P1)."""
    idle_timeout: float = 120.0
    """A connection that sends nothing at all for this long, not even a ping, is closed
    with 4003 (P13)."""
    resume_grace: float = 60.0
    """How long a session whose connection ended without ``close`` stays resumable (P9)."""
    max_requests_per_second: float = 20.0
    """Text messages a connection may send per second, on average, with bursts of as many; the
    rest are refused with ``rate_limited`` (P14). ``math.inf`` turns the limit off."""
    max_frames_per_second: float | None = None
    """WebSocket frames of any kind (fragments and pings included) the server reads from one
    connection per second, with bursts of as many; past it the server reads nothing more from
    that connection until the budget refills. ``None``: twice ``max_requests_per_second``."""
    max_bytes_per_second: float = 32768.0
    """Bytes the server reads from one connection per second, charged before anything is
    decoded, with bursts of twice ``max_frame_bytes``; past it the server reads nothing more from
    that connection until the budget refills. ``math.inf`` turns it off."""
    send_timeout: float = 10.0
    """How long one frame may take to leave; a client that reads nothing for this long is
    disconnected without a close frame."""
    close_timeout: float = 2.0
    """How long the server waits for the client's reply to its close frame."""
    drain_timeout: float = 2.0
    """When the server stops: how long it waits for its connections to answer their 1001."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be between 1 and {MAX_FRAME_BYTES}")
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1")
        for field in fields(self):
            if field.name in _COUNTS or field.name == "max_frame_bytes":
                continue
            value = getattr(self, field.name)
            if value is None and field.name == "max_frames_per_second":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{field.name} must be a number")
            if math.isnan(value) or value <= 0:
                raise ValueError(f"{field.name} must be positive")

    @property
    def frames_per_second(self) -> float:
        """The frame budget's rate: ``max_frames_per_second``, or twice the request rate."""
        if self.max_frames_per_second is not None:
            return self.max_frames_per_second
        return 2 * self.max_requests_per_second

    @property
    def byte_burst(self) -> int:
        """What the byte budget holds when full: two messages of the largest size."""
        return 2 * self.max_frame_bytes


_COUNTS = ("max_connections", "max_connections_per_peer", "max_pending", "max_pending_per_peer")


def secret_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The token secret from ``FSM_SESSION_SECRET`` in ``environ`` (default: ``os.environ``).

    The default is ``None`` rather than ``os.environ`` itself so that the signature, and so
    ``help()``, never shows the environment, which holds the secret.

    Raises :class:`ConfigurationError` when the variable is missing or empty (a server without a
    secret could verify no token at all), or shorter than :data:`MIN_SECRET_BYTES`.
    """
    secret = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not secret.strip():
        raise ConfigurationError(
            f"{SECRET_ENV} is not set: export a secret shared with the token minter"
        )
    return check_secret(secret, source=SECRET_ENV)


def check_secret(secret: object, *, source: str = "the secret") -> str:
    """``secret`` if it can sign HS256 tokens; else :class:`ConfigurationError` saying why.

    The message never contains the secret.
    """
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigurationError(f"{source} is empty: the server needs a secret to verify tokens")
    size = len(secret.encode("utf-8", "surrogatepass"))
    if size < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{source} has {size} bytes; HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes"
        )
    return secret
