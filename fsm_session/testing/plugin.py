"""The pytest plugin of the conformance kit (registered through the ``pytest11`` entry point).

Fixtures, all synchronous so that both sync and trio tests may use them (pytest 9 refuses an
async fixture in a sync test):

* ``fsm_session_backend``: a :class:`Backend` (URL, secret, token minter). By default a
  reference server on loopback, port 0, started once per test session on a background trio loop;
  with ``--fsm-session-url URL`` the backend at ``URL`` instead, its secret read from
  ``FSM_SESSION_SECRET``.
* ``fsm_session_url``, ``fsm_session_secret``, ``fsm_session_mint``: its parts.
* ``fsm_session_connect``: ``async with fsm_session_connect("alice") as session:`` a session
  service for the backend, with a fresh token for that external ID, in the test's own trio loop.
* ``fsm_session_memory``: ``async with fsm_session_memory() as backend:`` an in-memory
  backend in the test's own trio loop, no sockets (:mod:`fsm_session.testing.memory`).
* ``fsm_session_service``: a :class:`PortalSession`, a session service on the plugin's
  background loop, for sync tests: ``fsm_session_service.run(session.open, info)``.
* ``fsm_session_check``: ``report = fsm_session_check(examples=5)`` runs
  :func:`~fsm_session.testing.check_backend` against the backend and fails the test, with the
  report, when a rule is broken.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trio

from fsm_session.service import ServiceConfig, SessionService, open_session_service
from fsm_session.testing.credentials import (
    SECRET_ENV,
    ConfigurationError,
    MintToken,
    secret_from_env,
    token_minter,
)
from fsm_session.testing.portal import TrioPortal

if TYPE_CHECKING:  # the kit needs Hypothesis: imported by the fixture that runs it
    from fsm_session.testing.conformance import ConformanceReport
    from fsm_session.testing.memory import MemoryBackend

__all__ = ["Backend", "PortalSession"]

T = TypeVar("T")

URL_OPTION = "--fsm-session-url"
CAFILE_OPTION = "--fsm-session-cafile"


@dataclass(frozen=True, slots=True)
class Backend:
    """A backend under test: where it is and how to mint its tokens."""

    url: str
    secret: str
    mint: MintToken
    external: bool
    """``True`` for a backend given by ``--fsm-session-url``, ``False`` for the loopback one."""
    ssl_context: ssl.SSLContext | None = None
    """Whom to trust for a ``wss://`` URL (``--fsm-session-cafile``)."""


class PortalSession:
    """A session service living on the plugin's background trio loop, for sync tests."""

    def __init__(self, portal: TrioPortal, service: SessionService) -> None:
        self.portal = portal
        self.service = service

    def run(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """``await fn(*args)`` on the service's loop: ``session.run(session.service.open)``."""
        return self.portal.run(fn, *args)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fsm-session", "fsm_session conformance kit")
    group.addoption(
        URL_OPTION,
        dest="fsm_session_url",
        default=None,
        metavar="URL",
        help="run the fsm_session fixtures and conformance checks against the backend at URL "
        f"(ws://host:port/) instead of a loopback reference server; needs {SECRET_ENV}",
    )
    group.addoption(
        CAFILE_OPTION,
        dest="fsm_session_cafile",
        default=None,
        metavar="PEM",
        help=f"trust this CA for a wss:// {URL_OPTION} (default: the system's CAs)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """With ``--fsm-session-url``: check once, before any test, that the kit can be used and
    the backend accepts its tokens, so that a setup problem is one message, not one per test."""
    url: str | None = config.getoption("fsm_session_url", None)
    if not url or hasattr(config, "workerinput"):
        return
    secret = _secret()
    try:
        from fsm_session.testing.conformance.command import client_tls, url_problem
        from fsm_session.testing.conformance.probes import BackendUncheckable, preflight
        from fsm_session.testing.conformance.wire import Target
    except ModuleNotFoundError as exc:
        raise pytest.UsageError(
            f"the fsm_session kit needs {exc.name}: pip install 'fsm_session[testing]'"
        ) from None
    problem = url_problem(url)
    if problem is not None:
        raise pytest.UsageError(f"{URL_OPTION}: {problem}")
    context = client_tls(url, config.getoption("fsm_session_cafile", None))
    try:
        trio.run(preflight, Target(url, context), token_minter(secret))
    except BackendUncheckable as exc:
        hint = f"; does {SECRET_ENV} match the backend's?" if exc.token_refused else ""
        raise pytest.UsageError(f"cannot check the backend: {exc}{hint}") from None


@pytest.fixture(scope="session")
def fsm_session_portal() -> Iterator[TrioPortal]:
    """The plugin's background trio loop (one per test session)."""
    with TrioPortal() as portal:
        yield portal


@pytest.fixture(scope="session")
def fsm_session_backend(request: pytest.FixtureRequest, fsm_session_portal: TrioPortal) -> Backend:
    """The backend under test: ``--fsm-session-url`` or a loopback reference server."""
    url: str | None = request.config.getoption("fsm_session_url")
    if url:
        secret = _secret()
        cafile = request.config.getoption("fsm_session_cafile")
        context = None if cafile is None else ssl.create_default_context(cafile=cafile)
        return Backend(url, secret, token_minter(secret), external=True, ssl_context=context)
    from fsm_session.server import serve

    secret = secrets.token_urlsafe(32)
    started: str = fsm_session_portal.run(
        fsm_session_portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret)
    )
    return Backend(started, secret, token_minter(secret), external=False)


def _secret() -> str:
    """The backend's secret for ``--fsm-session-url``, read as the command line reads it."""
    try:
        return secret_from_env()
    except ConfigurationError as exc:
        raise pytest.UsageError(f"{URL_OPTION} needs the backend's secret: {exc}") from None


@pytest.fixture
def fsm_session_url(fsm_session_backend: Backend) -> str:
    return fsm_session_backend.url


@pytest.fixture
def fsm_session_secret(fsm_session_backend: Backend) -> str:
    return fsm_session_backend.secret


@pytest.fixture
def fsm_session_mint(fsm_session_backend: Backend) -> MintToken:
    """``fsm_session_mint("alice", ttl=60)``: a valid token for the backend."""
    return fsm_session_backend.mint


@pytest.fixture
def fsm_session_connect(
    fsm_session_backend: Backend,
) -> Callable[..., AbstractAsyncContextManager[SessionService]]:
    """``async with fsm_session_connect("alice") as session:`` in a trio test."""

    @asynccontextmanager
    async def connect(
        external_id: str | None = None, *, config: ServiceConfig | None = None
    ) -> AsyncIterator[SessionService]:
        token = fsm_session_backend.mint(external_id)
        async with open_session_service(
            fsm_session_backend.url,
            access_token=token,
            config=config,
            ssl_context=fsm_session_backend.ssl_context,
        ) as session:
            yield session

    return connect


@pytest.fixture
def fsm_session_memory() -> Callable[..., AbstractAsyncContextManager[MemoryBackend]]:
    """``async with fsm_session_memory() as backend:`` in a trio test: the reference server in
    the test's own trio run, reached through memory (:mod:`fsm_session.testing.memory`)."""
    from fsm_session.testing.memory import memory_backend

    return memory_backend


@pytest.fixture
def fsm_session_service(
    fsm_session_backend: Backend, fsm_session_portal: TrioPortal
) -> Iterator[PortalSession]:
    """A CLOSED session service for the backend (token for a fresh external ID), on the
    plugin's loop; it is closed after the test."""
    token = fsm_session_backend.mint(f"plugin-{secrets.token_hex(6)}")
    hosted: dict[str, Any] = {}

    async def host(task_status: trio.TaskStatus[None]) -> None:
        stop, done = trio.Event(), trio.Event()
        hosted.update(stop=stop, done=done)
        try:
            async with open_session_service(
                fsm_session_backend.url,
                access_token=token,
                ssl_context=fsm_session_backend.ssl_context,
            ) as service:
                hosted["service"] = service
                task_status.started()
                await stop.wait()
        finally:
            done.set()

    fsm_session_portal.run(fsm_session_portal.nursery.start, host)
    try:
        yield PortalSession(fsm_session_portal, hosted["service"])
    finally:

        async def finish() -> None:
            hosted["stop"].set()
            await hosted["done"].wait()

        fsm_session_portal.run(finish)


@pytest.fixture
def fsm_session_check(
    fsm_session_backend: Backend,
) -> Callable[..., ConformanceReport]:
    """``fsm_session_check(examples=5, seed=0, fail=True)``: check the backend; a broken rule
    fails the test with the report (``fail=False`` returns it instead)."""

    def check(*, fail: bool = True, **kwargs: Any) -> ConformanceReport:
        from fsm_session.testing.conformance import check_backend, format_report

        kwargs.setdefault("secret", fsm_session_backend.secret)
        kwargs.setdefault("ssl_context", fsm_session_backend.ssl_context)
        report = check_backend(
            fsm_session_backend.url, mint_token=fsm_session_backend.mint, **kwargs
        )
        if fail and not report.ok:
            pytest.fail(format_report(report), pytrace=False)
        return report

    return check
