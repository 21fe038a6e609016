"""Raw probes: what a client that skips its own guards would send."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import trio
import trio.lowlevel
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    wrap_client_stream,
)

from fsm_session import tokens
from fsm_session.machine import SessionState
from fsm_session.protocol import SUBPROTOCOL
from fsm_session.testing.conformance.report import RuleViolation
from fsm_session.testing.conformance.world import _new_id, _World

S = SessionState

# --------------------------------------------------------------------------------------------
# Phase 1: raw probes.
# --------------------------------------------------------------------------------------------


class _Raw:
    """A raw protocol client: what a client that skips its own guards would send."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, kind: str, **members: object) -> int:
        self.next_id += 1
        await self.ws.send_message(json.dumps({"type": kind, "id": self.next_id, **members}))
        return self.next_id

    async def receive(self, seconds: float = 0.5) -> dict[str, Any] | None:
        with trio.move_on_after(seconds):
            try:
                frame: dict[str, Any] = json.loads(await self.ws.get_message())
            except ConnectionClosed:
                return None
            return frame
        return None


def _info(name: str | None, external_id: str | None = None) -> dict[str, object]:
    return {"name": name, "external_id": external_id, "avatar_url": None}


async def _probes(world: _World, record: Callable[[RuleViolation, str], None]) -> None:
    url = world.url

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def raw(external_id: str | None, body: Callable[[_Raw], Awaitable[None]]) -> None:
        await raw_with_token(world.mint(external_id), body)

    async def raw_with_token(token: str, body: Callable[[_Raw], Awaitable[None]]) -> None:
        headers = [(b"authorization", f"Bearer {token}".encode())]
        # trio-websocket leaves a client socket open after a dropped peer: own the stream.
        stream = await trio.open_tcp_stream(host, port)
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"{host}:{port}",
                    parts.path or "/",
                    subprotocols=[SUBPROTOCOL],
                    extra_headers=headers,
                )
                try:
                    await body(_Raw(ws))
                finally:
                    with trio.move_on_after(0.5) as scope:
                        scope.shield = True
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    def violation(rule: str, message: str, steps: list[str]) -> None:
        record(RuleViolation(rule, message, tuple(steps)), "probe")

    alice, mallory = _new_id("alice"), _new_id("mallory")

    async def r3(client: _Raw) -> None:
        await client.send("open", info=_info("Alice", mallory))
        reply = await client.receive()
        steps = [f"raw: token for {alice!r}", f"send open as external ID {mallory!r}"]
        if reply is None or reply.get("type") != "error":
            violation("R3", f"the backend answered {reply!r}", steps)
        elif reply.get("code") != "external_id_mismatch":
            violation("R3", f"refused with {reply.get('code')!r}", steps)

    async def r3_none(client: _Raw) -> None:
        await client.send("open", info=_info("Nobody", mallory))
        reply = await client.receive()
        steps = ["raw: token that names no external ID", f"send open as {mallory!r}"]
        if reply is None or reply.get("code") != "external_id_mismatch":
            violation("R3", f"the backend answered {reply!r}", steps)

    async def r2(client: _Raw) -> None:
        await client.send("open", info=_info("   "))
        reply = await client.receive()
        if reply is None or reply.get("code") != "invalid_participant_info":
            violation("R2", f"a blank name was answered {reply!r}", ["raw: send open name='   '"])

    async def ordered(client: _Raw) -> None:
        steps = ["raw: send open, open (same info), update, close without waiting"]
        ids = [
            await client.send("open", info=_info("Olga")),
            await client.send("open", info=_info("Olga")),
            await client.send("update", name="Olga B.", avatar_url=None),
            await client.send("close"),
        ]
        replies: list[dict[str, Any]] = []
        for _ in ids:
            reply = await client.receive()
            if reply is None:
                break
            if reply.get("id") is not None:  # events ("ended") may come between replies
                replies.append(reply)
        got = [r.get("id") for r in replies]
        if got != ids[: len(got)]:
            violation("P4", f"replies carried ids {got}, expected {ids}", steps)
            return
        types = [r.get("type") for r in replies]
        if len(types) < 3:
            violation("P4", f"only {len(types)} replies to {len(ids)} requests: {types}", steps)
            return
        if len(types) == 3 or types[3] != "closed":
            answer = "no reply" if len(types) == 3 else repr(replies[3])
            violation("P8", f"close was answered with {answer}", steps)
        first = replies[0].get("participant") or {}
        again = replies[1].get("participant")
        if types[:2] != ["opened", "opened"] or not isinstance(again, dict):
            violation("R5", f"opening twice with the same info gave {types[:2]}", steps)
        elif again.get("id") != first.get("id"):
            violation("R5", "opening again with the same info gave another participant", steps)
        if len(types) == 4:
            extra = await client.receive(seconds=0.1)
            if extra is not None and extra.get("id") is not None:
                violation("P4", f"an extra frame after the last reply: {extra!r}", steps)

    for who, probe in ((alice, r3), (None, r3_none), (None, r2), (_new_id("olga"), ordered)):
        try:
            await raw(who, probe)
        except (ConnectionClosed, ConnectionRejected, OSError) as exc:
            world.inconclusive.append(f"probe {probe.__name__}: {exc!r}")

    # P1: a token signed with another secret.
    bad = tokens.mint(secrets.token_urlsafe(32), external_id=None, ttl=3600.0, now=time.time())

    async def accepted(client: _Raw) -> None:
        violation("P1", "a token signed with another secret was accepted", ["raw: connect"])

    try:
        await raw_with_token(bad, accepted)
    except* ConnectionRejected as group:
        status = getattr(group.exceptions[0], "status_code", None)
        if status != 401:
            violation("P1", f"rejected with {status}, not 401", ["raw: connect"])


# --------------------------------------------------------------------------------------------
# Phase 2: the transition paths, and the scenarios that need two connections or a clock.
# --------------------------------------------------------------------------------------------
