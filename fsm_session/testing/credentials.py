"""Tokens for a backend under test: the project's one token minter and secret handling.

The conformance kit, its pytest plugin and its command mint every access token here, signed with
the secret the backend shares (``FSM_SESSION_SECRET``, read by :func:`secret_from_env`, the one
reader of it for the command line, the plugin and the kit), and make the tokens a backend must
refuse here too: another secret (:func:`foreign_token`) or claims crafted by hand
(:func:`signed_token`). Every token is signed by :func:`fsm_session.tokens.mint` or, for crafted
claims, with the same algorithm.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Protocol

import jwt

from fsm_session import tokens
from fsm_session.server.config import SECRET_ENV, ConfigurationError, secret_from_env

__all__ = [
    "SECRET_ENV",
    "ConfigurationError",
    "MintToken",
    "foreign_token",
    "secret_from_env",
    "signed_token",
    "token_minter",
]


class MintToken(Protocol):
    """Mints a valid access token for an external ID (``None``: a token that names nobody)
    that expires ``ttl`` seconds from now."""

    def __call__(self, external_id: str | None = None, /, *, ttl: float = 3600.0) -> str: ...


def token_minter(secret: str) -> MintToken:
    """A :class:`MintToken` that signs with ``secret`` (HS256, as the backend verifies)."""

    def mint(external_id: str | None = None, /, *, ttl: float = 3600.0) -> str:
        return tokens.mint(secret, external_id=external_id, ttl=ttl, now=time.time())

    return mint


def foreign_token(external_id: str | None = None, *, ttl: float = 3600.0) -> str:
    """A well-formed token signed with a fresh random secret: every backend must refuse it."""
    return tokens.mint(secrets.token_urlsafe(32), external_id=external_id, ttl=ttl, now=time.time())


def signed_token(secret: str, claims: Mapping[str, object], *, algorithm: str | None = None) -> str:
    """A token holding exactly ``claims``, signed with ``secret`` (HS256 unless ``algorithm``
    says otherwise): for the deliberately bad tokens a backend must refuse (no ``exp``, a
    string ``exp``, an empty ``external_id``...). Valid tokens come from :func:`token_minter`."""
    return jwt.encode(dict(claims), secret, algorithm=algorithm or tokens.ALGORITHM)
