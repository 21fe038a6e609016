"""Session rules that need two connections or a clock: R7, R12, R14, R17, and ``lost``."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Final

import trio
import trio.lowlevel

from fsm_session.machine import SessionState
from fsm_session.models import ParticipantInfo
from fsm_session.testing.conformance.coverage import _follow
from fsm_session.testing.conformance.hosting import _start_client, _stop
from fsm_session.testing.conformance.world import _Client, _new_id, _until, _World

S = SessionState


async def _switch_scenario(world: _World, steps: list[str]) -> None:
    """R17 and R4: the same external ID opened on a second connection."""
    external_id = _new_id("switch")
    async with trio.open_nursery() as nursery:
        first = await _start_client(world, nursery, steps, external_id=external_id)
        second = await _start_client(world, nursery, steps, external_id=external_id)
        steps.append(f"A: open(ParticipantInfo(name='A')) with a token for {external_id!r}")
        await first.client.open(ParticipantInfo("A"), note=False)
        participant = first.client.service.participant
        steps.append("B: open(ParticipantInfo(name='A')) with a token for the same external ID")
        await second.client.open(ParticipantInfo("A"), note=False)
        if participant is not None and first.client.service.participant is not None:
            first.client.faulted = True
            ended = await _until(world, lambda: first.client.service.state is S.CLOSED)
            if not ended:
                second.client.fail("R17", "the first session was not ended")
        steps.append("B: close()")
        await second.client.close(note=False)
        steps.append("A: open(ParticipantInfo(name='A')) again")
        first.client.faulted = False
        await first.client.open(ParticipantInfo("A"), note=False)
        await first.client.close(note=False)
        await _stop(first)
        await _stop(second)


async def _repeat_scenario(world: _World, steps: list[str]) -> None:
    """R12: open and close several times, named and ghost."""
    async with trio.open_nursery() as nursery:
        hosted = await _start_client(world, nursery, steps, external_id=_new_id("again"))
        for n in range(3):
            for info in (ParticipantInfo(f"Again {n}"), None):
                await hosted.client.open(info)
                if not hosted.client.service.is_open():
                    hosted.client.fail("R12", f"open number {n + 1} did not open")
                await hosted.client.close()
        await _stop(hosted)


def _state_of(client: _Client) -> SessionState:
    return client.service.state  # read afresh: awaits in between move it


async def _named_while_down_scenario(world: _World, steps: list[str]) -> None:
    """R7, R14: a ghost's ``update(name)`` reaches the backend, the drop loses its reply, and
    the resumed participant has the name: the ghost is resumed OPEN."""
    async with trio.open_nursery() as nursery:
        hosted = await _start_client(world, nursery, steps, external_id=_new_id("named"))
        client, proxy = hosted.client, hosted.client.proxy
        steps.append("open()")
        await client.open(note=False)
        if client.service.state is S.GHOST:
            steps.append("update(name='Named') while the connection drops before its reply")
            client.faulted = True
            proxy.hold("server")
            seen = len(proxy.frames)
            nursery.start_soon(partial(client.update, name="Named", note=False))
            if not await _until(
                world, lambda: any(f.type == "updated" for f in proxy.frames[seen:]), seconds=2.0
            ):
                world.inconclusive.append(
                    "named-while-down scenario: the update's reply never came; R7 not checked"
                )
            proxy.cut()
            proxy.release("server")
            await _follow(client)
            if _state_of(client) not in (S.OPEN, S.CLOSED):
                client.fail("R7", "a ghost named before a drop was resumed without its name")
        await _stop(hosted)


_EXPIRY_TTL: Final = 1.5


async def _expiry_scenario(world: _World, steps: list[str]) -> None:
    """``lost`` in OPENING and in CLOSING: the backend ends the session (token expiry, P11)
    while the client's ``open``, or its ``close``, waits in the proxy."""
    config = replace(world.config, logout_timeout=_EXPIRY_TTL + 2.0)
    with trio.move_on_after(world.target.seconds(_EXPIRY_TTL + 3.0)) as scope:
        async with trio.open_nursery() as nursery:
            opening_id, closing_id = _new_id("expire"), _new_id("expire")
            opening = await _start_client(
                world,
                nursery,
                steps,
                external_id=opening_id,
                token=world.mint(opening_id, ttl=_EXPIRY_TTL),
                config=config,
            )
            closing = await _start_client(
                world,
                nursery,
                steps,
                external_id=closing_id,
                token=world.mint(closing_id, ttl=_EXPIRY_TTL),
                config=config,
            )
            await closing.client.open(ParticipantInfo("Closing"), note=False)
            for hosted in (opening, closing):
                hosted.client.faulted = True
                hosted.client.proxy.hold("client")
            nursery.start_soon(partial(opening.client.open, ParticipantInfo("Opening"), note=False))
            nursery.start_soon(partial(closing.client.close, note=False))
            ended = await _until(
                world,
                lambda: (
                    opening.client.service.state is S.CLOSED
                    and closing.client.service.state is S.CLOSED
                ),
                seconds=_EXPIRY_TTL + 2.5,
            )
            if not ended:
                world.inconclusive.append(
                    "expiry scenario: the sessions were not CLOSED in time after their token "
                    "expired; lost in OPENING and CLOSING not covered"
                )
            for hosted in (opening, closing):
                await _stop(hosted)
    if scope.cancelled_caught:
        world.inconclusive.append("expiry scenario: ran out of time; its rows may be uncovered")


# --------------------------------------------------------------------------------------------
# Phase 3: Hypothesis exploration.
# --------------------------------------------------------------------------------------------
