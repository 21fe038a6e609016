"""Connecting (P1): the upgrade, its subprotocol, and every kind of token the backend refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import trio

from fsm_session.protocol import SUBPROTOCOL
from fsm_session.testing.conformance.kit import Kit, new_id
from fsm_session.testing.conformance.wire import Handshake, handshake
from fsm_session.testing.credentials import foreign_token, signed_token

__all__ = ["check_connecting"]


def _unsigned(claims: dict[str, object]) -> str:
    """A JWT with ``alg: none`` and no signature."""
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}."


def _signed_text(secret: str, payload: str, *, bits: int = 256) -> str:
    """An HS256 (or HS384, HS512) JWT whose payload is ``payload`` as written (``1e400`` stays
    ``1e400``), signed by hand: a JWT library warns about the secret's length for HS512."""
    header = base64.urlsafe_b64encode(f'{{"alg":"HS{bits}","typ":"JWT"}}'.encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=")
    digest = getattr(hashlib, f"sha{bits}")
    mac = hmac.new(secret.encode(), header + b"." + body, digest).digest()
    return (
        f"{header.decode()}.{body.decode()}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    )


async def _ask(
    kit: Kit,
    token: str | None,
    *,
    subprotocol: bool = True,
    extra: tuple[tuple[str, str], ...] = (),
) -> Handshake:
    with trio.fail_after(kit.target.seconds(5.0)):
        answer, stream = await handshake(
            kit.target,
            token=token,
            subprotocols=(SUBPROTOCOL,) if subprotocol else (),
            extra=extra,
        )
    await trio.aclose_forcefully(stream)
    body = answer.body.decode("utf-8", "replace")
    kit.check_secret(body, "a handshake rejection")
    return answer


def _refusal(answer: Handshake) -> tuple[int, object]:
    try:
        code = json.loads(answer.body).get("code")
    except (ValueError, AttributeError):
        code = None
    return answer.status, code


async def check_connecting(kit: Kit) -> None:
    """P1, each row of its table, in the table's order of checks."""
    external_id = new_id("p1")
    good = kit.token(external_id)
    answer = await _ask(kit, good)
    kit.expect(
        "P1",
        "a valid token offering fsm-session.v1: 101 with the subprotocol selected",
        answer.status == 101 and answer.headers.get("sec-websocket-protocol") == SUBPROTOCOL,
        f"{answer.status}, Sec-WebSocket-Protocol: {answer.headers.get('sec-websocket-protocol')}",
    )
    answer = await _ask(kit, good, subprotocol=False)
    kit.expect(
        "P1",
        "no subprotocol offered: 400 bad_request",
        _refusal(answer) == (400, "bad_request"),
        _refusal(answer),
    )
    for what, token, extra in (
        ("two Authorization headers", good, (("Authorization", f"Bearer {good}"),)),
        ("another scheme (Token)", None, (("Authorization", f"Token {good}"),)),
    ):
        answer = await _ask(kit, token, extra=extra)
        kit.expect(
            "P1",
            f"{what}: 401 invalid_token",
            _refusal(answer) == (401, "invalid_token"),
            _refusal(answer),
        )
    now = int(time.time())
    cases: list[tuple[str, str | None, tuple[int, str]]] = [
        ("no Authorization header", None, (401, "invalid_token")),
        ("a token that is not a JWT", "not-a-jwt", (401, "invalid_token")),
        ("a token signed with another secret", foreign_token(external_id), (401, "invalid_token")),
    ]
    secret = kit.secret
    if secret is None:
        kit.inconclusive.append("P1: claim types and expiry not tried (the kit has no secret)")
    else:
        cases += [
            (
                "an unsigned token (alg none)",
                _unsigned({"exp": now + 3600}),
                (401, "invalid_token"),
            ),
            ("a token without exp", signed_token(secret, {"iat": now}), (401, "invalid_token")),
            (
                "a token whose exp is a string",
                signed_token(secret, {"exp": str(now + 3600)}),
                (401, "invalid_token"),
            ),
            (
                "a token whose external_id is a number",
                signed_token(secret, {"exp": now + 3600, "external_id": 42}),
                (401, "invalid_token"),
            ),
            (
                "a token whose external_id is empty",
                signed_token(secret, {"exp": now + 3600, "external_id": ""}),
                (401, "invalid_token"),
            ),
            (
                "a token signed with HS512",
                _signed_text(secret, json.dumps({"exp": now + 3600}), bits=512),
                (401, "invalid_token"),
            ),
            (
                "a token whose exp is 1e400 (not finite)",
                _signed_text(secret, '{"exp":1e400}'),
                (401, "invalid_token"),
            ),
            (
                "a token whose nbf is still ahead",
                signed_token(secret, {"exp": now + 3600, "nbf": now + 1800}),
                (401, "invalid_token"),
            ),
        ]
        for claim in ("exp", "iat", "nbf"):
            for name, value in (("true", True), ("an array", [now]), ("an object", {"t": now})):
                claims: dict[str, object] = {"exp": now + 3600, claim: value}
                cases.append(
                    (
                        f"a token whose {claim} is {name}",
                        signed_token(secret, claims),
                        (401, "invalid_token"),
                    )
                )
        cases += [
            (
                "an expired token",
                signed_token(secret, {"iat": now - 7200, "exp": now - 3600}),
                (401, "token_expired"),
            ),
        ]
    for what, token, expected in cases:
        if token is not None:
            kit.tokens.add(token)
        answer = await _ask(kit, token)
        seen = _refusal(answer)
        kit.expect("P1", f"{what}: {expected[0]} {expected[1]}", seen == expected, seen)
        if answer.status == 401:
            kit.expect(
                "P1",
                "a 401 carries WWW-Authenticate: Bearer error=...",
                answer.headers.get("www-authenticate", "").startswith("Bearer"),
                answer.headers.get("www-authenticate", "(none)"),
            )
