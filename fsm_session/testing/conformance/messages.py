"""Messages (P6 to P10) and the session rules a backend enforces on them (R2, R3, R5, R10, R14,
R16), tried on raw connections: what a client that skips its own guards would send."""

from __future__ import annotations

import base64
import json
from typing import Any

from fsm_session.testing.conformance.kit import Kit, info, new_id
from fsm_session.testing.conformance.pacing import paced
from fsm_session.testing.conformance.wire import RawClient
from fsm_session.testing.credentials import foreign_token

__all__ = ["check_messages"]


def _is(reply: dict[str, Any] | None, kind: str, rid: int) -> bool:
    return reply is not None and reply.get("type") == kind and reply.get("id") == rid


def _refused(reply: dict[str, Any] | None, code: str, rid: int) -> bool:
    return _is(reply, "error", rid) and reply is not None and reply.get("code") == code


def _participant(reply: dict[str, Any] | None) -> dict[str, Any]:
    value = (reply or {}).get("participant")
    return value if isinstance(value, dict) else {}


def _info(reply: dict[str, Any] | None) -> dict[str, Any]:
    value = _participant(reply).get("info")
    return value if isinstance(value, dict) else {}


async def _ask(
    client: RawClient, kind: str, **members: object
) -> tuple[int, dict[str, Any] | None]:
    async def send(rid: int) -> None:
        await client.send_text(json.dumps({"type": kind, "id": rid, **members}))

    return await paced(client, send)


async def _refusal(
    kit: Kit, external_id: str, rule: str, what: str, code: str, **members: object
) -> None:
    """One ``open`` the backend must refuse, alone on its connection: a backend that wrongly
    accepts it leaves no session behind to confuse the next check."""
    async with kit.raw(external_id) as client:
        rid, reply = await _ask(client, "open", **members)
        kit.expect(rule, what, _refused(reply, code, rid), reply, client)


async def check_messages(kit: Kit) -> None:
    alice, mallory = new_id("alice"), new_id("mallory")
    await _refusal(
        kit,
        alice,
        "R2",
        "open with a blank name: invalid_participant_info",
        "invalid_participant_info",
        info=info("   "),
    )
    await _refusal(
        kit,
        alice,
        "R2",
        "open with an avatar URL that is not one: invalid_participant_info",
        "invalid_participant_info",
        info=info("A", avatar_url="not a url"),
    )
    await _refusal(
        kit,
        alice,
        "R3",
        "open as another external ID than the token's: external_id_mismatch",
        "external_id_mismatch",
        info=info("Alice", mallory),
    )
    await _refusal(
        kit,
        alice,
        "P6",
        "open with a blank name and another external ID: R2 first",
        "invalid_participant_info",
        info=info(" ", mallory),
    )
    async with kit.raw(None) as client:
        rid, reply = await _ask(client, "open", info=info("Nobody", mallory))
        kit.expect(
            "R3",
            "open with an external ID on a token that names none: external_id_mismatch",
            _refused(reply, "external_id_mismatch", rid),
            reply,
            client,
        )
    async with kit.raw(alice) as client:
        rid, reply = await _ask(client, "update", name="A", avatar_url=None)
        kit.expect(
            "R10",
            "update without a session: session_not_open",
            _refused(reply, "session_not_open", rid),
            reply,
            client,
        )
        kit.expect(
            "P7",
            "update without a session: error naming R10",
            (reply or {}).get("rule") == "R10",
            reply,
            client,
        )
        rid, reply = await _ask(client, "close")
        kit.expect(
            "P8", "close without a session: closed", _is(reply, "closed", rid), reply, client
        )
        sent = info("Alice", None, "https://example.com/a.png")
        rid, reply = await _ask(client, "open", info=sent)
        want = {**sent, "external_id": alice}
        kit.expect(
            "P6",
            "open with external_id null: opened with the token's external ID",
            _is(reply, "opened", rid) and _info(reply) == want,
            reply,
            client,
        )
        first = _participant(reply).get("id")
        if not isinstance(first, str):
            kit.inconclusive.append("P6: no session opened; the checks that need one were not run")
            return
        rid, reply = await _ask(client, "open", info=None)
        kit.expect(
            "R5",
            "open with info null while a named session is open: session_already_open",
            _refused(reply, "session_already_open", rid),
            reply,
            client,
        )
        rid, reply = await _ask(client, "open", info=info("Someone else"))
        kit.expect(
            "R5",
            "open with other info while open: session_already_open",
            _refused(reply, "session_already_open", rid),
            reply,
            client,
        )
        rid, reply = await _ask(client, "resume", participant_id="no-such-participant")
        kit.expect(
            "P9",
            "resume of another participant while holding a session: R5 before R14",
            _refused(reply, "session_already_open", rid),
            reply,
            client,
        )
        rid, reply = await _ask(client, "resume", participant_id=first)
        kit.expect(
            "P9",
            "resume of the participant this connection holds: resumed",
            _is(reply, "resumed", rid) and _participant(reply).get("id") == first,
            reply,
            client,
        )
        rid, reply = await _ask(client, "update", name=" ", avatar_url=None)
        kit.expect(
            "R10",
            "update with a blank name: invalid_participant_info",
            _refused(reply, "invalid_participant_info", rid),
            reply,
            client,
        )
        await _tokens(kit, client, alice, mallory)
    # The connection ended without close: the session waits to be resumed (P9).
    await _resume(kit, alice, mallory, first)


def _token_exp(token: str) -> object:
    """The ``exp`` claim of a token the kit minted (its payload read, not verified)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims.get("exp") if isinstance(claims, dict) else None


def _same_number(seen: object, want: object) -> bool:
    """``seen`` is the number ``want`` (a JSON number: ``true`` is not one)."""
    numbers = (int, float)
    return (
        isinstance(seen, numbers)
        and not isinstance(seen, bool)
        and isinstance(want, numbers)
        and not isinstance(want, bool)
        and seen == want
    )


async def _tokens(kit: Kit, client: RawClient, alice: str, mallory: str) -> None:
    """P10 and R16 on a connection holding ``alice``'s session."""
    token = kit.token(alice)
    rid, reply = await _ask(client, "token", token=token)
    kit.expect(
        "P10",
        "token with a valid token: token_accepted with its external_id and its exp",
        _is(reply, "token_accepted", rid)
        and (reply or {}).get("external_id") == alice
        and _same_number((reply or {}).get("expires_at"), _token_exp(token)),
        reply,
        client,
    )
    bad = foreign_token(alice)
    kit.tokens.add(bad)
    rid, reply = await _ask(client, "token", token=bad)
    kit.expect(
        "R16",
        "token signed with another secret: invalid_token",
        _refused(reply, "invalid_token", rid),
        reply,
        client,
    )
    rid, reply = await _ask(client, "token", token="not-a-jwt")
    kit.expect(
        "R16",
        "token that is not a JWT: invalid_token",
        _refused(reply, "invalid_token", rid),
        reply,
        client,
    )
    rid, reply = await _ask(client, "token", token=kit.token(mallory))
    kit.expect(
        "P10",
        "token for another external ID while a session is open: external_id_mismatch",
        _refused(reply, "external_id_mismatch", rid),
        reply,
        client,
    )


async def _resume(kit: Kit, alice: str, mallory: str, participant_id: str) -> None:
    async with kit.raw(mallory) as client:
        rid, reply = await _ask(client, "resume", participant_id=participant_id)
        kit.expect(
            "R14",
            "resume of another external ID's session: unknown_participant",
            _refused(reply, "unknown_participant", rid),
            reply,
            client,
        )
        rid, reply = await _ask(client, "resume", participant_id=new_id("nobody"))
        kit.expect(
            "R14",
            "resume of a participant that never was: unknown_participant",
            _refused(reply, "unknown_participant", rid),
            reply,
            client,
        )
    async with kit.raw(alice) as client:
        rid, reply = await _ask(client, "resume", participant_id=participant_id)
        kit.expect(
            "P9",
            "resume after the connection ended without close: resumed, the same participant",
            _is(reply, "resumed", rid) and _participant(reply).get("id") == participant_id,
            reply,
            client,
        )
        rid, reply = await _ask(client, "close")
    async with kit.raw(alice) as client:
        rid, reply = await _ask(client, "resume", participant_id=participant_id)
        kit.expect(
            "P8",
            "resume after close: unknown_participant (close forgets the session)",
            _refused(reply, "unknown_participant", rid),
            reply,
            client,
        )
        sent = info("Alice Again", alice)
        rid, reply = await _ask(client, "open", info=sent)
        kit.expect(
            "P6",
            "the same external ID opened again with other info: the same "
            "participant ID, the new info",
            _is(reply, "opened", rid)
            and _participant(reply).get("id") == participant_id
            and _info(reply).get("name") == "Alice Again",
            reply,
            client,
        )
        await _ask(client, "close")
