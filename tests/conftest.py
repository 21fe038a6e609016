"""Shared fixtures: a real reference server on loopback, real signed tokens."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import trio
from hypothesis import settings

from fsm_session.server import serve
from fsm_session.testing.credentials import token_minter
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
    return token_minter(secret)


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


@pytest.fixture
def graphviz() -> None:
    """Graphviz's ``dot``: a test needing it fails under CI=true and skips elsewhere, with the
    command that installs it (use it as ``@pytest.mark.usefixtures("graphviz")``)."""
    if shutil.which("dot") is None:
        message = "Graphviz's `dot` is not installed: apt-get install graphviz"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
