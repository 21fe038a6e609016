"""Limits (P13, P14) and keepalive (R15): what a backend does with a burst, a ping, silence."""

from __future__ import annotations

import json

from fsm_session.testing.conformance.kit import Kit, new_id

__all__ = ["BURST", "check_idle", "check_limits"]

BURST = 60
"""Requests sent at once for P14: three times the reference server's rate of 20 a second."""


async def check_limits(kit: Kit) -> None:
    async with kit.raw(new_id("rate")) as client:
        kit.expect("R15", "a ping: a pong", await client.ping(), "no pong", client)
        ids = list(range(1, BURST + 1))
        for rid in ids:
            await client.send_text(json.dumps({"type": "close", "id": rid}))
        replies = await client.replies(BURST, seconds=5.0)
        got = [reply.get("id") for reply in replies]
        what = f"{BURST} close requests at once"
        if not kit.expect("P4", f"{what}: one reply each, in order", got == ids, got[:10], client):
            return
        limited = [r for r in replies if r.get("type") == "error"]
        kit.expect(
            "P14",
            f"{what}: some answered rate_limited (rule P14), the rest closed",
            bool(limited)
            and all(r.get("code") == "rate_limited" and r.get("rule") == "P14" for r in limited)
            and all(r.get("type") in ("closed", "error") for r in replies),
            f"{len(limited)} refused, codes {sorted({str(r.get('code')) for r in limited})}",
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
