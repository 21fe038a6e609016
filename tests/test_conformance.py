"""The conformance kit: it passes the reference server, names the rule each broken one breaks,
and is usable as a function, a pytest plugin and a command.

Sync tests (the kit runs its own trio loop in a thread): pytest 9 refuses async fixtures here.
Each run is seeded; ``HYPOTHESIS_PROFILE=deep`` explores with the deep profile's examples.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
from hypothesis import settings

from fsm_session.server import serve
from fsm_session.server.config import ServerConfig
from fsm_session.testing import (
    CHECKS,
    ConformanceReport,
    TrioPortal,
    check_backend,
    format_report,
    token_minter,
)
from tests.mutants import MUTANTS, SAMPLE, mutant_backend

pytest_plugins = ["pytester"]

CLI = [sys.executable, "-m", "fsm_session.cli"]
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = settings().max_examples if DEEP else 5
STEPS = settings().stateful_step_count if DEEP else 8
IDLE = 3.0
"""The reference server's idle timeout in the full run, so that P13 is exercised too."""


def test_reference_server_passes_every_row_with_full_coverage() -> None:
    """P1-P16 and the wire-observable R rules: the reference server passes, every report row is
    exercised (none "not run"), every reachable row of the session machine is taken."""
    secret = secrets.token_urlsafe(32)
    with TrioPortal() as portal:
        config = ServerConfig(idle_timeout=IDLE)
        url = portal.run(
            portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret, config=config)
        )
        report = check_backend(
            url,
            mint_token=token_minter(secret),
            examples=EXAMPLES,
            steps=STEPS,
            seed=1,
            secret=secret,
            idle_timeout=IDLE,
        )
    text = format_report(report)
    assert report.ok, text
    assert report.coverage == 1.0 and report.unreachable == {}, text
    assert report.examples >= 1
    assert set(report.rules) == set(CHECKS)
    for rule, result in report.rules.items():
        assert result.tried and not result.skipped, (rule, text)
    assert "| not run |" not in text


def test_plugin_check_passes_the_loopback_server(
    fsm_session_check: Callable[..., ConformanceReport],
) -> None:
    """The plugin's fixture runs the same kit; without the idle timeout P13 is "not run"."""
    report = fsm_session_check(examples=1, seed=1, token_expiry=False)
    assert report.ok and report.rules["P13"].skipped


def test_every_rule_has_a_mutant() -> None:
    """Every P rule and every wire-observable R rule of the report is broken by a mutant."""
    broken = {rule for rule, _ in MUTANTS.values()}
    wire_rules = {rule for rule in CHECKS if rule.startswith("P")} | {
        "R2", "R3", "R4", "R5", "R10", "R14", "R15", "R16", "R17",
    }  # fmt: skip
    assert wire_rules <= broken, sorted(wire_rules - broken)
    assert len(MUTANTS) >= 25


@pytest.mark.parametrize("name", SAMPLE)
def test_mutant_is_named_by_its_rule(name: str) -> None:
    """A fast sample of the mutants (``make mutants`` runs them all): each fails on its rule,
    with what was sent and seen."""
    rule = MUTANTS[name][0]
    secret = secrets.token_urlsafe(32)
    with mutant_backend(name, secret) as url:
        # Probes only: the sample's rules are all seen on the wire (make mutants runs it all).
        report = check_backend(
            url, mint_token=token_minter(secret), paths=False, explore=False,
            token_expiry=False, secret=secret,
        )  # fmt: skip
    text = format_report(report)
    assert rule in report.broken, text
    assert report.rules[rule].steps, text
    assert f"{rule} broken" in text


@contextmanager
def served(secret: str, *options: str) -> Iterator[str]:
    """``fsm-session serve --port 0`` in a subprocess; its URL."""
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    server = subprocess.Popen(
        [*CLI, "serve", "--port", "0", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
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


@pytest.mark.parametrize("secret", [None, "short"])
def test_plugin_option_needs_the_secret(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    """The plugin reads the secret as ``fsm-session conform`` does: missing or too short is one
    usage error, before any test."""
    if secret is None:
        monkeypatch.delenv("FSM_SESSION_SECRET", raising=False)
    else:
        monkeypatch.setenv("FSM_SESSION_SECRET", secret)
    pytester.makepyfile("def test_x(fsm_session_url):\n    pass\n")
    result = pytester.runpytest("--fsm-session-url", "ws://127.0.0.1:9/")
    output = result.stdout.str() + result.stderr.str()
    assert output.count("FSM_SESSION_SECRET") == 1, output
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_conform_command_passes_the_reference_server() -> None:
    """Every row exercised (P13 too: ``serve --idle-timeout``), 100% coverage, exit 0."""
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    with served(secret, "--idle-timeout", "3") as url:
        done = subprocess.run(
            [*CLI, "conform", url, "--examples", "2", "--seed", "1", "--idle-timeout", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"conformance of {url}: PASS" in done.stdout
    assert "| R3 | passed |" in done.stdout and "| P13 | passed |" in done.stdout
    assert "(100%)" in done.stdout and "not run" not in done.stdout


def test_conform_command_fails_on_a_broken_rule(tmp_path: Path) -> None:
    """Exit 1 for a broken rule (R3, from a mutant), with the table and the failing sequence."""
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    report = tmp_path / "report.json"
    with mutant_backend("accepts_mismatched_external_id", secret) as url:
        done = subprocess.run(
            [*CLI, "conform", url, "--examples", "0", "--json", str(report)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "| R3 | BROKEN |" in done.stdout
    assert "shortest failing sequence" in done.stdout
    written = json.loads(report.read_text())
    assert written["ok"] is False and "R3" in written["broken"]
    assert written["rules"]["R3"]["tried"]
