"""Requests sent at a backend's own pace: P14 lets a backend choose its rate limit, so a probe
whose request is answered ``rate_limited`` pauses and tries again (a few times) with a fresh ``id``
rather than calling the backend broken."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from fsm_session.testing.conformance.wire import RawClient

__all__ = ["TRIES", "is_rate_limited", "paced"]

TRIES: Final = 4
"""Times a request is sent before its ``rate_limited`` answer is taken as the answer."""
PAUSE: Final = 1.0
"""Seconds (scaled by the target's factor) between tries: a bucket refills at its rate a second."""


def is_rate_limited(reply: dict[str, Any] | None) -> bool:
    return (
        reply is not None and reply.get("type") == "error" and reply.get("code") == "rate_limited"
    )


async def paced(
    client: RawClient, send: Callable[[int], Awaitable[None]], rid: int | None = None
) -> tuple[int, dict[str, Any] | None]:
    """``send(rid)`` and the reply to ``rid`` (the next ``id`` when not given); after a
    ``rate_limited`` reply, a pause and again with the next ``id`` (P3: the old one is used up)."""
    current = client.next_id + 1 if rid is None else rid
    reply: dict[str, Any] | None = None
    for attempt in range(TRIES):
        if attempt:
            await trio.sleep(client.target.seconds(PAUSE))
            current = max(client.next_id, current) + 1
        client.next_id = max(client.next_id, current)
        await send(current)
        reply = await client.reply(current)
        if not is_rate_limited(reply):
            break
    return current, reply
