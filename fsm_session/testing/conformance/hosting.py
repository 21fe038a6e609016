"""Hosting a watched service for one scenario: its proxy, its nursery, its clean stop."""

from __future__ import annotations

from dataclasses import dataclass, replace

import trio
import trio.lowlevel

from fsm_session.errors import SessionError
from fsm_session.service import (
    ServiceConfig,
    open_session_service,
)
from fsm_session.testing.conformance.world import _Client, _World
from fsm_session.testing.proxy import LoopbackProxy


@dataclass
class _Hosted:
    client: _Client
    stop: trio.Event
    done: trio.Event


async def _host(
    world: _World,
    token: str,
    external_id: str | None,
    steps: list[str],
    config: ServiceConfig,
    task_status: trio.TaskStatus[_Hosted],
) -> None:
    done = trio.Event()
    proxy = LoopbackProxy(world.url, ssl_context=world.target.tls)
    try:
        async with trio.open_nursery() as inner:
            url = await proxy.start(inner)
            try:
                async with open_session_service(url, access_token=token, config=config) as service:
                    client = _Client(world, service, proxy, external_id, steps)
                    await inner.start(client.watch_events)
                    hosted = _Hosted(client, trio.Event(), done)
                    task_status.started(hosted)
                    await hosted.stop.wait()
                    proxy.release("client")
                    proxy.release("server")
            except SessionError:
                pass  # a backend misbehaving on the way out; its rules were checked already
            finally:
                inner.cancel_scope.cancel()
    finally:
        proxy.close()  # whatever a cancelled handler could not close itself
        done.set()


async def _start_client(
    world: _World,
    nursery: trio.Nursery,
    steps: list[str],
    *,
    external_id: str | None,
    token: str | None = None,
    config: ServiceConfig | None = None,
) -> _Hosted:
    token = world.mint(external_id) if token is None else token
    config = world.config if config is None else config
    if "P8" in world.skip:  # the logout is known not to be answered: do not wait for it
        config = replace(config, logout_timeout=min(config.logout_timeout, 0.01))
    hosted: _Hosted = await nursery.start(_host, world, token, external_id, steps, config)
    return hosted


async def _stop(hosted: _Hosted) -> None:
    hosted.stop.set()
    await hosted.done.wait()
