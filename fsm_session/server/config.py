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
    """The largest text frame accepted, in UTF-8 bytes; a larger one closes with 1009 (P2).
    At most :data:`~fsm_session.protocol.MAX_FRAME_BYTES`, the limit of the protocol itself."""
    max_connections: int = 1024
    """Connections served at once, handshakes included; beyond it the handshake gets 503 (P1)."""
    handshake_timeout: float = 10.0
    """How long a new TCP connection has to complete its WebSocket handshake (P1)."""
    idle_timeout: float = 120.0
    """A connection that sends nothing at all for this long, not even a ping, is closed
    with 4003 (P13)."""
    resume_grace: float = 60.0
    """How long a session whose connection ended without ``close`` stays resumable (P9)."""
    max_requests_per_second: float = 20.0
    """Frames a connection may send per second, on average, with bursts of as many; the rest
    are refused with ``rate_limited`` (P14). ``math.inf`` turns the limit off."""
    close_timeout: float = 2.0
    """How long the server waits for the client's reply to its close frame."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be between 1 and {MAX_FRAME_BYTES}")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        for field in fields(self):
            if field.name in ("max_frame_bytes", "max_connections"):
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{field.name} must be a number of seconds")
            if math.isnan(value) or value <= 0:
                raise ValueError(f"{field.name} must be positive")


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
