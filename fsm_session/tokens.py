"""Access tokens: HS256 JWTs whose claims name the external ID a session may use (rule R3).

The client reads a token's claims without verifying it (it has no secret); the backend verifies
and mints them with the shared secret. PyJWT does the signing and the decoding. Nothing here reads
the clock: callers pass ``now`` (seconds since the epoch), so the core stays free of time.
Tokens never appear in an error message or a repr (rule R16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jwt

from fsm_session.errors import InvalidToken, TokenExpired

__all__ = [
    "ALGORITHM",
    "EXTERNAL_ID_CLAIM",
    "TokenClaims",
    "mint",
    "read_claims",
    "refresh_times",
    "verify",
]

ALGORITHM = "HS256"
EXTERNAL_ID_CLAIM = "external_id"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a token says: whose it is and when it was issued and expires (epoch seconds)."""

    external_id: str | None
    issued_at: float | None
    expires_at: float | None


# The claims that hold a time (RFC 7519, section 4.1): each must be a finite JSON number.
_TIME_CLAIMS = ("exp", "nbf", "iat")


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # An int too large for a float.
        return False


def _claims(payload: dict[str, object]) -> TokenClaims:
    external_id = payload.get(EXTERNAL_ID_CLAIM)
    issued_at = payload.get("iat")
    expires_at = payload.get("exp")
    if external_id is not None and not isinstance(external_id, str):
        raise InvalidToken(f"the {EXTERNAL_ID_CLAIM!r} claim must be a string", rule="R3")
    if external_id == "":  # P1: names nobody, yet is not absent; refused rather than guessed
        raise InvalidToken(f"the {EXTERNAL_ID_CLAIM!r} claim must not be empty", rule="R3")
    for name in _TIME_CLAIMS:
        value = payload.get(name)
        if value is not None and not _is_finite_number(value):
            # NaN compares false with every time, and 1e309 reads as infinity: either would
            # make a token that never expires (or is never too early).
            raise InvalidToken(f"the {name!r} claim must be a finite number", rule="R16")
    return TokenClaims(
        external_id=external_id,
        issued_at=None if issued_at is None else float(issued_at),  # type: ignore[arg-type]
        expires_at=None if expires_at is None else float(expires_at),  # type: ignore[arg-type]
    )


def read_claims(token: str) -> TokenClaims:
    """Read a token's claims without checking its signature (the client has no secret).

    Raises :class:`InvalidToken` when the token is not a JWT at all.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"an access token must be a str, not {type(token).__name__}")
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidToken(
            f"the access token is not a readable JWT ({type(exc).__name__})"
        ) from None
    return _claims(payload)


def verify(token: str, secret: str, *, now: float, leeway: float = 0.0) -> TokenClaims:
    """Verify an HS256 token signed with ``secret`` and not expired at ``now``.

    Raises :class:`InvalidToken` for a malformed, unsigned or wrongly signed token, one without
    an expiry, one whose ``exp``, ``nbf`` or ``iat`` is not a finite number, or one not valid
    before a time (``nbf``) still ahead of ``now``; :class:`TokenExpired` for one whose expiry
    has passed.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"an access token must be a str, not {type(token).__name__}")
    try:
        # The times are checked below against the caller's clock, not PyJWT's.
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["exp"],
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the access token was refused ({type(exc).__name__})") from None
    claims = _claims(payload)
    if claims.expires_at is None:  # PyJWT required it; never trust that alone.
        raise InvalidToken("the access token has no expiry", rule="R16")
    not_before = payload.get("nbf")
    if isinstance(not_before, int | float) and not_before > now + leeway:
        raise InvalidToken("the access token is not valid yet", rule="R16")
    if claims.expires_at <= now - leeway:
        raise TokenExpired("the access token has expired", rule="R16")
    return claims


def mint(secret: str, *, external_id: str | None, ttl: float, now: float) -> str:
    """Mint an HS256 token for ``external_id`` that expires ``ttl`` seconds after ``now``."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    payload: dict[str, object] = {"iat": int(now), "exp": int(now + ttl)}
    if external_id is not None:
        payload[EXTERNAL_ID_CLAIM] = external_id
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def refresh_times(claims: TokenClaims) -> tuple[float, float, float] | None:
    """When to ask for a fresh token: at 1/2 and 3/4 of its lifetime, and at expiry (rule R16).

    ``None`` when the token does not say when it was issued and when it expires.
    """
    if claims.issued_at is None or claims.expires_at is None:
        return None
    start, end = claims.issued_at, claims.expires_at
    life = max(end - start, 0.0)
    return (start + life / 2, start + life * 3 / 4, end)
