"""The conformance kit: it passes the reference server, names the rule each broken one breaks,
and is usable as a function, a pytest plugin and a command.

Sync tests (the kit runs its own trio loop in a thread): pytest 9 refuses async fixtures here.
Each run is seeded; ``HYPOTHESIS_PROFILE=deep`` explores with the deep profile's examples.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest
from hypothesis import settings

from fsm_session.server import serve
from fsm_session.testing import (
    ConformanceReport,
    TrioPortal,
    check_backend,
    format_report,
    token_minter,
)
from fsm_session.testing.plugin import Backend
from tests.broken_backends import BROKEN_RULE, patched

pytest_plugins = ["pytester"]

CLI = [sys.executable, "-m", "fsm_session.cli"]
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = settings().max_examples if DEEP else 5
STEPS = settings().stateful_step_count if DEEP else 8

# The one row no use of the public API can make the service take (see NOT_REACHABLE).


def test_reference_server_passes_with_full_coverage(
    fsm_session_check: Callable[..., ConformanceReport], fsm_session_backend: Backend
) -> None:
    """P1, P4, P8, R2-R14, R17: the reference server passes; every reachable row is taken."""
    report = fsm_session_check(examples=EXAMPLES, steps=STEPS, seed=1)
    assert report.ok, format_report(report)
    if not fsm_session_backend.external:
        assert report.coverage == 1.0, format_report(report)
    assert report.unreachable == {}, format_report(report)
    assert report.examples >= 1


@pytest.mark.parametrize("variant", sorted(BROKEN_RULE))
def test_broken_backend_is_named(variant: str) -> None:
    """Each deliberately broken backend fails on its rule, with a failing sequence."""
    with patched(variant):
        secret = secrets.token_urlsafe(32)
        with TrioPortal() as portal:
            url = portal.run(portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret))
            report = check_backend(
                url, mint_token=token_minter(secret), examples=3, seed=1, token_expiry=False
            )
    rule = BROKEN_RULE[variant]
    assert report.broken == [rule], format_report(report)
    assert report.rules[rule].steps, format_report(report)
    assert f"{rule} broken" in format_report(report)


@contextmanager
def served(secret: str) -> Iterator[str]:
    """``fsm-session serve --port 0`` in a subprocess; its URL."""
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    server = subprocess.Popen(
        [*CLI, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().decode().strip()
        assert url.startswith("ws://"), url
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


THIRD_PARTY_TEST = """
def test_my_backend_conforms(fsm_session_check, fsm_session_backend, fsm_session_url):
    assert fsm_session_backend.external
    assert fsm_session_url == {url!r}
    report = fsm_session_check(examples=2, seed=3, token_expiry=False)
    assert report.ok


def test_a_session_against_my_backend(fsm_session_service):
    from fsm_session import ParticipantInfo

    session = fsm_session_service
    participant = session.run(session.service.open, ParticipantInfo("Third"))
    assert session.service.is_local_participant(participant)
    session.run(session.service.close)
"""


def test_plugin_runs_a_third_party_test_against_an_external_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("FSM_SESSION_SECRET", secret)
    with served(secret) as url:
        pytester.makepyfile(test_third_party=THIRD_PARTY_TEST.format(url=url))
        result = pytester.runpytest("-p", "fsm_session.testing.plugin", "--fsm-session-url", url)
    result.assert_outcomes(passed=2)


def test_plugin_option_needs_the_secret(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FSM_SESSION_SECRET", raising=False)
    pytester.makepyfile("def test_x(fsm_session_url):\n    pass\n")
    result = pytester.runpytest("--fsm-session-url", "ws://127.0.0.1:9/")
    assert "FSM_SESSION_SECRET" in result.stdout.str() + result.stderr.str()
    assert result.ret != 0


def test_conform_command_passes_the_reference_server() -> None:
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    with served(secret) as url:
        done = subprocess.run(
            [*CLI, "conform", url, "--examples", "2", "--seed", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"conformance of {url}: PASS" in done.stdout
    assert "| R3 | passed |" in done.stdout
    assert "(100%)" in done.stdout


def test_conform_command_fails_on_a_broken_rule() -> None:
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    with patched("accepts_mismatched_external_id"), TrioPortal() as portal:
        url = portal.run(portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret))
        done = subprocess.run(
            [*CLI, "conform", url, "--examples", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "| R3 | BROKEN |" in done.stdout
    assert "shortest failing sequence" in done.stdout
