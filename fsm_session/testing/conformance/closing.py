"""Closing by the backend (P11, P12, R17): the session ended, ``ended`` sent, then the code."""

from __future__ import annotations

from typing import Any

import trio

from fsm_session.testing.conformance.kit import Kit, info, new_id

__all__ = ["EXPIRY_TTL", "check_expiry", "check_switch"]

EXPIRY_TTL = 2.0
"""Seconds the P11 probe's token lives (its ``exp`` is a whole second: 1 to 2 s from now)."""


def _ended(messages: list[str], reason: str) -> bool:
    return any(f'"reason":"{reason}"' in text.replace(" ", "") for text in messages)


async def check_switch(kit: Kit) -> None:
    """P12 and R17: the same external ID opened on a second connection."""
    external_id = new_id("switch")
    async with kit.raw(external_id) as first, kit.raw(external_id) as second:
        opened: dict[str, Any] | None = await first.reply(
            await first.request("open", info=info("A"))
        )
        again = await second.reply(await second.request("open", info=info("A again")))
        code = await first.until_closed()
        before = (opened or {}).get("participant") or {}
        after = (again or {}).get("participant") or {}
        kit.expect(
            "R17",
            "the same external ID opened on another connection: the same participant ID there",
            isinstance(before, dict)
            and isinstance(after, dict)
            and before.get("id") is not None
            and before.get("id") == after.get("id"),
            [opened, again],
            second,
        )
        kit.expect(
            "P12",
            "the first connection: ended switched, then close 4001",
            _ended(first.received, "switched") and code == 4001,
            f"messages {first.received[-2:]}, close code {code}",
            first,
        )
        await second.reply(await second.request("close"))


async def check_expiry(kit: Kit) -> None:
    """P11 and P10's refresh, side by side: both wait for a short token's expiry."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_refreshed, kit)
        await _expires(kit)


async def _refreshed(kit: Kit) -> None:
    """P10: a token replaced before it expires no longer ends the connection (its ``exp`` is the
    new token's)."""
    external_id = new_id("refresh")
    async with kit.raw(token=kit.token(external_id, ttl=EXPIRY_TTL)) as client:
        await client.reply(await client.request("open", info=info("Refreshed")))
        rid = await client.request("token", token=kit.token(external_id))
        accepted = await client.reply(rid)
        if (accepted or {}).get("type") != "token_accepted":
            kit.inconclusive.append(f"P10: the refresh before expiry was answered {accepted}")
            return
        # Pings meanwhile, so that a short idle timeout (P13: pings count) does not close it.
        deadline = trio.current_time() + kit.target.seconds(EXPIRY_TTL + 2.0)
        code = None
        while code is None and not client.hung_up and trio.current_time() < deadline:
            code = await client.until_closed(0.5)
            if code is None:
                await client.ping(0.5)
        kit.expect(
            "P10",
            "a short token replaced by a long one: the connection outlives the short one",
            code is None and not client.hung_up,
            f"messages {client.received[-2:]}, close code {code}",
            client,
        )
        await client.reply(await client.request("close"))


async def _expires(kit: Kit) -> None:
    """P11: a connection whose token expires, holding a session, is ended and closed 4002."""
    external_id = new_id("expiry")
    token = kit.token(external_id, ttl=EXPIRY_TTL)
    async with kit.raw(token=token) as client:
        await client.reply(await client.request("open", info=info("Expiring")))
        code = await client.until_closed(EXPIRY_TTL + 2.0)
        kit.expect(
            "P11",
            "a token that expires while the session is open: ended token_expired, then close 4002",
            _ended(client.received, "token_expired") and code == 4002,
            f"messages {client.received[-2:]}, close code {code}",
            client,
        )
