"""Limits (P13, P14) and keepalive (R15): what a backend does with a burst, a ping, silence."""

from __future__ import annotations

import json
from typing import Any

from fsm_session.testing.conformance.kit import Kit, new_id
from fsm_session.testing.conformance.wire import RawClient

__all__ = ["BURSTS", "check_idle", "check_limits"]

BURSTS = (20, 40, 80, 160, 320)
"""Requests sent at once for P14, one burst after the other until one is limited: P14 lets each
backend choose its rate (20 a second on the reference server), so the kit doubles the burst."""


async def check_limits(kit: Kit) -> None:
    async with kit.raw(new_id("rate")) as client:
        kit.expect("R15", "a ping: a pong", await client.ping(), "no pong", client)
        for burst in BURSTS:
            ids = list(range(client.next_id + 1, client.next_id + burst + 1))
            client.next_id = ids[-1]
            for rid in ids:
                await client.send_text(json.dumps({"type": "close", "id": rid}))
            replies = await client.replies(burst, seconds=5.0)
            got = [reply.get("id") for reply in replies]
            what = f"{burst} close requests at once"
            if not kit.expect(
                "P4", f"{what}: one reply each, in order", got == ids, got[:10], client
            ):
                return
            limited = [r for r in replies if r.get("type") == "error"]
            if limited:
                _limited(kit, client, what, replies, limited)
                return
    result = kit.results.get("P14")
    if result is not None:
        kit.tried("P14", f"bursts of {', '.join(map(str, BURSTS))} close requests at once")
        result.skipped = (
            f"no burst of up to {BURSTS[-1]} requests was answered rate_limited: "
            "the backend's rate limit, if any, is higher"
        )
    kit.inconclusive.append(
        f"P14: no burst of up to {BURSTS[-1]} requests at once was answered rate_limited"
    )


def _limited(
    kit: Kit,
    client: RawClient,
    what: str,
    replies: list[dict[str, Any]],
    limited: list[dict[str, Any]],
) -> None:
    codes = sorted({str(r.get("code")) for r in limited})
    kit.expect(
        "P14",
        f"{what}: some answered rate_limited (rule P14), the rest closed",
        all(r.get("code") == "rate_limited" and r.get("rule") == "P14" for r in limited)
        and all(r.get("type") in ("closed", "error") for r in replies),
        f"{len(limited)} refused, codes {codes}",
        client,
    )


async def check_idle(kit: Kit, *, idle_timeout: float | None) -> None:
    """P13, when the backend's idle timeout is known: a silent connection is closed 4003."""
    if idle_timeout is None:
        result = kit.results.get("P13")
        if result is not None:
            result.skipped = "give the backend's idle timeout (--idle-timeout) to wait for it"
        return
    async with kit.raw(new_id("idle")) as client:
        code = await client.until_closed(idle_timeout + 2.0)
        kit.expect(
            "P13",
            f"silence for the idle timeout ({idle_timeout:g} s): close 4003",
            code == 4003,
            f"close code {code}",
            client,
        )
