"""Token times are finite numbers: ``exp``, ``nbf`` and ``iat`` (R16, P1, P10).

A JSON number such as ``NaN``, ``Infinity`` or ``1e309`` (which reads as infinity) signed with the
right secret would otherwise make a token that never expires. Each is ``invalid_token``, at the
handshake and in a ``token`` request alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import trio

from fsm_session import tokens
from fsm_session.errors import InvalidToken
from fsm_session.protocol import ErrorCode
from tests.test_server import SECRET, connect, rejection, start, token

NOW = 1_800_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(payload_json: str, secret: str = SECRET) -> str:
    """An HS256 token whose payload is exactly ``payload_json`` (which ``json.dumps`` of a
    dict cannot always write: ``1e309``), signed with ``secret``."""
    head = _b64(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64(payload_json.encode("utf-8"))
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


NOT_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", NOT_FINITE)
def test_r16_a_time_claim_that_is_not_finite_is_invalid(claim: str, value: str) -> None:
    """R16: a signed token with a time that is not a finite number is refused."""
    times = {"exp": str(int(NOW) + 60), "iat": str(int(NOW))}
    times[claim] = value
    payload = "{" + ", ".join(f'"{name}": {text}' for name, text in times.items()) + "}"
    token_text = signed(payload)
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(token_text, SECRET, now=NOW)
    assert claim in str(caught.value) and "finite" in str(caught.value)
    assert caught.value.rule == "R16"
    with pytest.raises(InvalidToken):
        tokens.read_claims(token_text)  # The client reads the same claims the same way.


@pytest.mark.parametrize("value", ['"2100000000"', "true", "[1]", "{}"])
def test_r16_a_time_claim_that_is_not_a_number_is_invalid(value: str) -> None:
    payload = f'{{"exp": {int(NOW) + 60}, "nbf": {value}}}'
    with pytest.raises(InvalidToken, match="'nbf'"):
        tokens.verify(signed(payload), SECRET, now=NOW)


def test_r16_a_huge_integer_time_is_refused_not_overflowing() -> None:
    payload = f'{{"exp": {10**400}}}'
    with pytest.raises(InvalidToken, match="finite"):
        tokens.verify(signed(payload), SECRET, now=NOW)


def test_r16_nbf_is_checked_against_the_caller_s_clock() -> None:
    """``nbf`` ahead of ``now`` is not valid yet; the clock is the caller's, not PyJWT's."""
    payload = f'{{"exp": {int(NOW) + 60}, "nbf": {int(NOW) + 10}}}'
    with pytest.raises(InvalidToken, match="not valid yet"):
        tokens.verify(signed(payload), SECRET, now=NOW)
    claims = tokens.verify(signed(payload), SECRET, now=NOW + 10)
    assert claims.expires_at == NOW + 60


def test_r16_finite_times_still_verify() -> None:
    payload = f'{{"exp": {NOW + 60.5}, "iat": {NOW}, "nbf": {NOW - 1}}}'
    claims = tokens.verify(signed(payload), SECRET, now=NOW)
    assert claims == tokens.TokenClaims(None, NOW, NOW + 60.5)


@pytest.mark.parametrize("value", NOT_FINITE)
async def test_p1_a_token_that_never_expires_is_rejected_at_the_handshake(
    nursery: trio.Nursery, value: str
) -> None:
    url = await start(nursery)
    forever = signed(f'{{"exp": {value}, "external_id": "alice"}}')
    assert await rejection(url, forever) == (401, ErrorCode.INVALID_TOKEN)


async def test_p10_a_token_that_never_expires_is_refused_in_a_token_request(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery)
    async with connect(url, token("alice")) as client:
        forever = signed(f'{{"exp": 1e309, "iat": {int(time.time())}, "external_id": "alice"}}')
        reply = await client.refresh(forever)
        assert (reply["code"], reply["rule"]) == (ErrorCode.INVALID_TOKEN, "R16")
        # The connection keeps its old token and goes on.
        assert (await client.request("close"))["type"] == "closed"
