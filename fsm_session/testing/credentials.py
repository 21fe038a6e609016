"""Tokens for a backend under test: the project's one token minter and secret handling.

The conformance kit, its pytest plugin and its command mint every access token here, signed with
the secret the backend shares (``FSM_SESSION_SECRET``), and make the tokens a backend must refuse
(another secret) here too.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from fsm_session import tokens
from fsm_session.server.config import SECRET_ENV, ConfigurationError, secret_from_env

__all__ = [
    "SECRET_ENV",
    "ConfigurationError",
    "MintToken",
    "foreign_token",
    "secret_from_env",
    "token_minter",
]


class MintToken(Protocol):
    """Mints a valid access token for an external ID (``None``: a token that names nobody)
    that expires ``ttl`` seconds from now."""

    def __call__(self, external_id: str | None, /, *, ttl: float = 3600.0) -> str: ...


def token_minter(secret: str) -> MintToken:
    """A :class:`MintToken` that signs with ``secret`` (HS256, as the backend verifies)."""

    def mint(external_id: str | None, /, *, ttl: float = 3600.0) -> str:
        return tokens.mint(secret, external_id=external_id, ttl=ttl, now=time.time())

    return mint


def foreign_token(external_id: str | None = None, *, ttl: float = 3600.0) -> str:
    """A well-formed token signed with a fresh random secret: every backend must refuse it."""
    return tokens.mint(secrets.token_urlsafe(32), external_id=external_id, ttl=ttl, now=time.time())
