"""Shared fixtures: a real reference server on loopback, real signed tokens."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import trio
from hypothesis import settings

from fsm_session import tokens
from fsm_session.server import serve
from tests.redis_server import RedisServer

settings.register_profile("default", deadline=None)
settings.register_profile("deep", deadline=None, max_examples=2000, stateful_step_count=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

Mint = Callable[..., str]


@pytest.fixture
def secret() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def mint(secret: str) -> Mint:
    def mint_(external_id: str | None = None, ttl: float = 3600.0) -> str:
        return tokens.mint(secret, external_id=external_id, ttl=ttl, now=time.time())

    return mint_


@pytest.fixture
async def server_url(nursery: trio.Nursery, secret: str) -> str:
    url: str = await nursery.start(partial(serve, "127.0.0.1", 0, secret=secret))
    return url


def open_fds() -> set[str]:
    """The file descriptors this process holds (a leak check)."""
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the whole run (tests share no keys: each takes a prefix)."""
    server = RedisServer()
    server.start()
    yield server
    server.close()
