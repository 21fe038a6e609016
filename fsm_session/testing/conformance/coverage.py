"""Transition coverage: the shortest path to every row of the session machine, replayed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import trio
import trio.lowlevel

from fsm_session.diagrams import Step, TransitionPath
from fsm_session.machine import MISSING, SessionState, WebSocketState
from fsm_session.models import ParticipantInfo
from fsm_session.service import (
    SessionService,
)
from fsm_session.testing.conformance.hosting import _start_client, _stop
from fsm_session.testing.conformance.world import (
    _REPLY_TRIGGERS,
    _SEND_EFFECTS,
    _Client,
    _new_id,
    _until,
    _World,
)
from fsm_session.testing.credentials import foreign_token

S = SessionState


def _by_scenario(path: TransitionPath) -> bool:
    """Rows a scenario takes rather than a replay: ``lost`` while a request is in flight
    (the backend ends the session then), and a ghost resumed with a name (named by an update
    whose reply the drop lost)."""
    target = path.target
    if target.trigger == "lost" and target.source in ("OPENING", "CLOSING"):
        return True
    return target.trigger == "resumed" and target.source == "GHOST" and target.dest == "OPEN"


def _loses(path: TransitionPath) -> bool:
    """The path needs ``lost`` while OPEN or GHOST: a service that does not reconnect."""
    return any(
        step.trigger == "lost" and step.edge.source in ("OPEN", "GHOST") for step in path.steps
    )


async def _follow(client: _Client, seconds: float = 3.0) -> None:
    """After a cut: note each row the service takes until it is settled again (resumed and
    connected, or CLOSED); R14 when a reconnecting service lost its session."""
    service = client.service
    was_open = service.is_open()
    participant = service.participant
    last = service.last_transition
    changed = False
    with trio.move_on_after(client.world.target.seconds(seconds)):
        while True:
            if service.last_transition is not last:
                last, changed = service.last_transition, True
                client.note()
            settled = service.state is S.CLOSED or (
                service.is_open() and service.socket_state is WebSocketState.CONNECTED
            )
            # Reconnected is not yet resumed: wait for the `resumed` row itself.
            resumed = last is not None and last.trigger == "resumed"
            if changed and settled and (service.state is S.CLOSED or resumed):
                break
            await client.world.pulse.wait()
    client.note()
    reconnects = service.config.reconnect.give_up_after > 0
    if was_open and reconnects and participant is not None:
        if not service.is_open():
            client.fail("R14", "the session was not resumed after its connection dropped")
        elif service.participant is None or service.participant.id != participant.id:
            client.fail("R14", f"resumed as {service.participant!r}, not {participant!r}")


async def _replay(world: _World, path: TransitionPath, steps: list[str]) -> None:
    bad_token = any(step.trigger == "open_failed" for step in path.steps)
    external_id = _new_id("path")
    async with trio.open_nursery() as nursery:
        token = foreign_token(external_id) if bad_token else None
        config = world.lose_config if _loses(path) else world.config
        hosted = await _start_client(
            world, nursery, steps, external_id=external_id, token=token, config=config
        )
        client = hosted.client
        client.faulted = bad_token
        service, proxy = client.service, client.proxy
        running = 0
        cut = False

        async def background(run: Callable[[], Awaitable[None]]) -> None:
            nonlocal running
            try:
                await run()
            finally:
                running -= 1
                world.pulse.fire()

        def idle() -> bool:
            return running == 0

        async def settle() -> None:
            proxy.release("server")
            await _until(world, lambda: running == 0, seconds=5.0)

        async with trio.open_nursery() as calls:
            for i, step in enumerate(path.steps):
                following = path.steps[i + 1] if i + 1 < len(path.steps) else None
                trigger = step.trigger
                steps.append(step.label)
                if trigger in _REPLY_TRIGGERS and not (trigger == "resumed" and not cut):
                    await settle()  # the backend's answer to the call before; checked by it
                    continue
                if trigger in ("connection_lost", "lost", "resumed"):
                    if proxy.live == 0:
                        continue  # nothing to lose: covered by the scenarios instead
                    await _until(world, lambda: service.socket_state is WebSocketState.CONNECTED)
                    client.faulted = cut = True
                    proxy.cut()
                    await _follow(client)
                    await settle()
                    continue
                answered = following is None or following.trigger in _REPLY_TRIGGERS
                sends = step.edge.effect in _SEND_EFFECTS
                if sends and not answered:
                    proxy.hold("server")  # keep the session in flight for the next step
                before_frames, before_row = len(client.sent), service.last_transition
                running += 1
                calls.start_soon(
                    background,
                    _call_for(
                        client,
                        step,
                        burst=following is not None and following.trigger == "update_failed",
                    ),
                )
                await _until(world, partial(_moved, service, before_row, idle))
                if answered:
                    await settle()
                elif sends:
                    await _until(world, partial(_sent_more, client, before_frames, idle))
            await settle()
        await _stop(hosted)


def _moved(service: SessionService, before: object, done: Callable[[], bool]) -> bool:
    return service.last_transition is not before or done()


def _sent_more(client: _Client, before: int, done: Callable[[], bool]) -> bool:
    return len(client.sent) > before or done()


def _call_for(client: _Client, step: Step, *, burst: bool) -> Callable[[], Awaitable[None]]:
    kwargs = dict(step.kwargs)
    if step.trigger == "open":
        info = kwargs.get("info", MISSING)
        given = info if isinstance(info, ParticipantInfo) else None
        return lambda: client.open(given, note=False)
    if step.trigger == "update":
        name = kwargs.get("name")
        avatar = kwargs.get("avatar_url")
        name = name if isinstance(name, str) else None
        avatar = avatar if isinstance(avatar, str) else None
        if burst:

            async def many() -> None:
                # update_failed needs a backend refusal of a valid update: past its rate limit.
                client.bursting = True
                try:
                    for n in range(60):
                        last = client.service.last_transition
                        if last is not None and last.trigger == "update_failed":
                            return
                        if client.service.state is S.GHOST:  # a name would promote it (R7)
                            url = f"https://example.com/{n}.png"
                            await client.update(avatar_url=url, note=False)
                        else:
                            await client.update(name=f"{name or 'Burst'} {n}", note=False)
                finally:
                    client.bursting = False

            return many
        return lambda: client.update(name=name, avatar_url=avatar, note=False)
    return lambda: client.close(note=False)
