"""Verified access tokens, remembered so that a token seen again skips the signature check.

Checking an HS256 signature with PyJWT costs about 26 µs, paid at every handshake and every
``token`` request (P1, P10). A client that reconnects, or opens many connections, presents the
same token again and again; this small LRU cache maps a token string that verified once to its
claims. The expiry is still checked against the caller's clock on every use, so a cached token
expires exactly when an uncached one would (same exception, same message). Only tokens that
verified are kept: a forged token cannot get in, so nobody can fill the cache with junk, and its
size is bounded anyway.
"""

from __future__ import annotations

from collections import OrderedDict

from fsm_session.errors import TokenExpired
from fsm_session.tokens import TokenClaims, verify

__all__ = ["DEFAULT_SIZE", "VerifiedTokens"]

DEFAULT_SIZE = 4096
"""Tokens remembered at most; the least recently used one is forgotten first."""


class VerifiedTokens:
    """:func:`fsm_session.tokens.verify` for one secret, with an LRU cache of its successes."""

    __slots__ = ("_cache", "_secret", "maxsize")

    def __init__(self, secret: str, maxsize: int = DEFAULT_SIZE) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must not be negative")
        self._secret = secret
        self.maxsize = maxsize
        self._cache: OrderedDict[str, TokenClaims] = OrderedDict()

    def __repr__(self) -> str:
        # Never the tokens nor the secret (R16, P16).
        return f"<VerifiedTokens {len(self._cache)}/{self.maxsize}>"

    def __len__(self) -> int:
        return len(self._cache)

    def verify(self, token: str, *, now: float) -> TokenClaims:
        """The claims of ``token``, as :func:`~fsm_session.tokens.verify` would return them.

        Raises what it raises: ``InvalidToken``, or ``TokenExpired`` once the expiry has passed
        ``now``, whether the token was cached or not.
        """
        cache = self._cache
        claims = cache.get(token) if isinstance(token, str) else None
        if claims is None:
            claims = verify(token, self._secret, now=now)
            if self.maxsize:
                cache[token] = claims
                if len(cache) > self.maxsize:
                    cache.popitem(last=False)
            return claims
        cache.move_to_end(token)
        # verify() refuses tokens without exp, so every cached claim has one.
        assert claims.expires_at is not None
        if claims.expires_at <= now:
            del cache[token]  # It will never verify again.
            raise TokenExpired("the access token has expired", rule="R16")
        return claims
