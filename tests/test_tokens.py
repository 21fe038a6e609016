"""Access tokens: minting, verifying and reading claims (rules R3 and R16)."""

from __future__ import annotations

import time

import jwt
import pytest

from fsm_session import tokens
from fsm_session.errors import InvalidToken, TokenExpired

SECRET = "test-secret-of-enough-length-for-hs256"
NOW = 1_800_000_000.0


def test_mint_and_verify_round_trip() -> None:
    token = tokens.mint(SECRET, external_id="ext-ada", ttl=60, now=NOW)
    claims = tokens.verify(token, SECRET, now=NOW + 59)
    assert claims == tokens.TokenClaims("ext-ada", NOW, NOW + 60)
    assert tokens.read_claims(token) == claims


def test_r16_expired_token_is_refused() -> None:
    """R16: a token past its expiry is refused with TokenExpired, and never quoted."""
    token = tokens.mint(SECRET, external_id=None, ttl=10, now=NOW)
    with pytest.raises(TokenExpired) as caught:
        tokens.verify(token, SECRET, now=NOW + 10)
    assert token not in str(caught.value) and caught.value.rule == "R16"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        jwt.encode({"exp": NOW + 60}, "another-secret-of-enough-length-32", algorithm="HS256"),
        jwt.encode({"exp": NOW + 60}, None, algorithm="none"),  # unsigned
        jwt.encode({"external_id": "x"}, SECRET, algorithm="HS256"),  # no expiry
        jwt.encode({"exp": NOW + 60, "external_id": 5}, SECRET, algorithm="HS256"),
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(token, SECRET, now=NOW)
    assert token not in str(caught.value)


def test_read_claims_refuses_garbage_without_quoting_it() -> None:
    with pytest.raises(InvalidToken) as caught:
        tokens.read_claims("secret-garbage")
    assert "secret-garbage" not in str(caught.value)
    with pytest.raises(InvalidToken):
        tokens.read_claims(42)  # type: ignore[arg-type]


def test_r16_refresh_times_are_half_three_quarters_and_expiry() -> None:
    """R16: refresh at 1/2 and 3/4 of the lifetime, and at expiry."""
    claims = tokens.TokenClaims("x", issued_at=1000.0, expires_at=1400.0)
    assert tokens.refresh_times(claims) == (1200.0, 1300.0, 1400.0)
    assert tokens.refresh_times(tokens.TokenClaims("x", None, 1400.0)) is None


def test_mint_refuses_non_positive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        tokens.mint(SECRET, external_id=None, ttl=0, now=NOW)


def test_p1_an_empty_or_non_string_external_id_claim_is_an_invalid_token() -> None:
    """P1: ``external_id`` is a non-empty string when present."""
    for value in ("", 42, ["a"]):
        token = jwt.encode({"exp": NOW + 60, "external_id": value}, SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken):
            tokens.verify(token, SECRET, now=NOW)
    for exp in ("1700003600", True, 1e400):
        token = jwt.encode({"exp": exp}, SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken):
            tokens.verify(token, SECRET, now=NOW)


def test_p1_the_schema_of_the_claims_agrees_with_verify() -> None:
    """P1: ``$defs/tokenClaims`` of the schema refuses what ``verify`` refuses, and no more."""
    from jsonschema import Draft202012Validator

    from tests.frames import schema

    claims = Draft202012Validator({**schema()["$defs"]["tokenClaims"]})
    for payload, valid in (
        ({"exp": NOW + 60}, True),
        ({"exp": NOW + 60, "external_id": "ada", "iat": NOW}, True),
        ({"exp": NOW + 60, "external_id": None}, True),
        ({"exp": str(NOW + 60)}, False),
        ({"exp": NOW + 60, "external_id": ""}, False),
        ({"exp": NOW + 60, "external_id": 42}, False),
        ({"iat": NOW}, False),
    ):
        assert claims.is_valid(payload) is valid, payload
        token = jwt.encode(payload, SECRET, algorithm="HS256")
        if valid:
            tokens.verify(token, SECRET, now=NOW)
        else:
            with pytest.raises(InvalidToken):
                tokens.verify(token, SECRET, now=NOW)


def test_p1_the_kits_tokens_valid_crafted_and_foreign() -> None:
    """P1: the kit's one minter signs what the backend verifies; ``signed_token`` holds exactly
    the claims it is given (a token without ``exp`` is refused); ``foreign_token`` is refused."""
    from fsm_session.testing.credentials import foreign_token, signed_token, token_minter

    now = time.time()
    valid = token_minter(SECRET)("ext-ada", ttl=60)
    assert tokens.verify(valid, SECRET, now=now).external_id == "ext-ada"
    assert tokens.read_claims(token_minter(SECRET)()).external_id is None
    crafted = signed_token(SECRET, {"exp": NOW + 60, "external_id": "ada"})
    assert jwt.decode(crafted, options={"verify_signature": False}) == {
        "exp": NOW + 60,
        "external_id": "ada",
    }
    assert tokens.verify(crafted, SECRET, now=NOW).expires_at == NOW + 60
    with pytest.raises(InvalidToken):
        tokens.verify(signed_token(SECRET, {"external_id": "ada"}), SECRET, now=NOW)
    with pytest.raises(InvalidToken):
        tokens.verify(foreign_token("ext-ada"), SECRET, now=now)
    hs512 = signed_token("k" * 64, {"exp": NOW + 60}, algorithm="HS512")
    assert jwt.get_unverified_header(hs512)["alg"] == "HS512"
