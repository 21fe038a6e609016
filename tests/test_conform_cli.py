"""``fsm-session conform`` as a user meets it, through the real command (a subprocess): exit 0
conformant, 1 a rule broken, 2 usage or setup, 3 the backend cannot be checked; one or two lines
and never a traceback for 2 and 3; ``wss://`` with ``--cafile``; the pytest plugin's setup
problems reported once, before any test."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trustme

from fsm_session.server import serve
from fsm_session.testing import TrioPortal

pytest_plugins = ["pytester"]

CLI = [sys.executable, "-m", "fsm_session.cli"]


def conform(
    *args: str, secret: str | None = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FSM_SESSION_SECRET"}
    if secret is not None:
        env["FSM_SESSION_SECRET"] = secret or secrets.token_urlsafe(32)
    return subprocess.run(
        [*CLI, "conform", *args], env=env, capture_output=True, text=True, timeout=60
    )


def short_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, done.stderr
    return done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("args", "secret", "says"),
    [
        (["not-a-url"], "", "not a ws:// or wss:// URL"),
        (["http://127.0.0.1:9/"], "", "not a ws:// or wss:// URL"),
        (["ws://127.0.0.1:9/", "--examples", "-1"], "", "must be 0 or more"),
        (["ws://127.0.0.1:9/", "--timeout", "0"], "", "positive"),
        (["ws://127.0.0.1:9/"], None, "FSM_SESSION_SECRET"),
        (["ws://127.0.0.1:9/", "--cafile", "/nonexistent.pem"], "", "wss:// URLs only"),
        (["wss://127.0.0.1:9/", "--cafile", "/nonexistent.pem"], "", "cannot use"),
    ],
)
def test_usage_and_setup_problems_exit_2(args: list[str], secret: str | None, says: str) -> None:
    assert says in short_error(conform(*args, secret=secret), 2)


def test_without_the_testing_extra_the_hint_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "from fsm_session.cli import main\n"
        "sys.exit(main(['conform', 'ws://127.0.0.1:9/']))"
    )
    env = {**os.environ, "FSM_SESSION_SECRET": secrets.token_urlsafe(32)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "pip install 'fsm_session[testing]'" in short_error(done, 2)


def test_an_unreachable_backend_exits_3() -> None:
    said = short_error(conform(f"ws://127.0.0.1:{free_port()}/"), 3)
    assert "cannot reach" in said


@pytest.fixture
def reference() -> Iterator[tuple[str, str]]:
    secret = secrets.token_urlsafe(32)
    with TrioPortal() as portal:
        url = portal.run(portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret))
        yield url, secret


def test_a_token_the_backend_refuses_exits_3_and_asks_about_the_secret(
    reference: tuple[str, str],
) -> None:
    url, _ = reference
    said = short_error(conform(url, secret=secrets.token_urlsafe(32)), 3)
    assert "does FSM_SESSION_SECRET match the backend's?" in said


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_reference(ca: trustme.CA) -> Iterator[tuple[str, str]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    secret = secrets.token_urlsafe(32)
    with TrioPortal() as portal:
        url = portal.run(
            portal.nursery.start,
            partial(serve, "127.0.0.1", 0, secret=secret, ssl_context=context),
        )
        yield url, secret


def test_conform_checks_a_wss_backend_with_a_cafile(
    tls_reference: tuple[str, str], ca: trustme.CA, tmp_path: Path
) -> None:
    """P1 over TLS: exit 0 and the JSON report; without the CA the backend cannot be checked."""
    url, secret = tls_reference
    assert url.startswith("wss://")
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    out = tmp_path / "report.json"
    done = conform(url, "--cafile", str(pem), "--examples", "0", "--json", str(out), secret=secret)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"conformance of {url}: PASS" in done.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["coverage"] == 1.0
    assert "cannot reach" in short_error(conform(url, "--examples", "0", secret=secret), 3)


PLUGIN_TEST = """
def test_one(fsm_session_url):
    pass


def test_two(fsm_session_url):
    pass
"""


def test_plugin_reports_a_wrong_secret_once_before_any_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, reference: tuple[str, str]
) -> None:
    url, _ = reference
    monkeypatch.setenv("FSM_SESSION_SECRET", secrets.token_urlsafe(32))
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest_subprocess("--fsm-session-url", url)
    output = result.stdout.str() + result.stderr.str()
    assert output.count("does FSM_SESSION_SECRET match the backend's?") == 1, output
    assert result.ret != 0 and "test_one" not in result.stdout.str()


def test_plugin_checks_a_wss_backend_with_its_cafile_option(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tls_reference: tuple[str, str],
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    url, secret = tls_reference
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("FSM_SESSION_SECRET", secret)
    pytester.makepyfile(
        "def test_conforms(fsm_session_check):\n"
        "    report = fsm_session_check(examples=0, paths=False, token_expiry=False)\n"
        "    assert report.rules['P1'].tried\n"
    )
    result = pytester.runpytest_subprocess(
        "--fsm-session-url", url, "--fsm-session-cafile", str(pem)
    )
    result.assert_outcomes(passed=1)
