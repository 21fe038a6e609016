"""``fsm-session conform`` as a user meets it, through the real command (a subprocess): exit 0
conformant, 1 a rule broken, 2 usage or setup, 3 the backend cannot be checked; one or two lines
and never a traceback for 2 and 3; ``wss://`` with ``--cafile``; the pytest plugin's setup
problems reported once, before any test."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from fsm_session.server import serve
from fsm_session.testing import (
    CHECKS,
    ConformanceReport,
    TrioPortal,
    check_backend,
    format_report,
    token_minter,
)
from fsm_session.testing.conformance import RuleResult
from fsm_session.testing.conformance.probes import (
    SECTION_SECONDS,
    BackendUncheckable,
    probes_seconds,
)
from fsm_session.testing.conformance.runner import _probes_within
from fsm_session.testing.conformance.wire import _HEAD_LIMIT, Target, _body
from fsm_session.testing.wsframes import OP_TEXT, build_frame

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


# --------------------------------------------------------------------------------------------
# A backend that is not to be trusted: what it sends never gives a traceback.
# --------------------------------------------------------------------------------------------

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def hostile_backend(answer: Callable[[bytes], bytes]) -> Iterator[str]:
    """A TCP server on loopback that reads an upgrade request and sends ``answer(key)``, then
    closes the connection; its ``ws://`` URL."""

    async def handle(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            head += chunk
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(answer(key))
        await stream.aclose()

    with TrioPortal() as portal:
        listeners = portal.run(partial(trio.open_tcp_listeners, 0, host="127.0.0.1"))
        portal.run(portal.nursery.start, partial(trio.serve_listeners, handle, listeners))
        yield f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"


def upgraded_then(frame: bytes) -> Callable[[bytes], bytes]:
    def answer(key: bytes) -> bytes:
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
            b"Sec-WebSocket-Protocol: fsm-session.v1\r\n\r\n" + frame
        )

    return answer


def probes_only(url: str) -> ConformanceReport:
    return check_backend(
        url,
        mint_token=token_minter(secrets.token_urlsafe(32)),
        paths=False,
        explore=False,
        token_expiry=False,
    )


def test_a_refusal_announcing_a_terabyte_body_is_read_within_the_head_limit() -> None:
    """P1, P2: a 401 whose Content-Length is 2^40 is a refused token (exit 3), not a
    MemoryError: the kit reads at most its head limit of a body."""
    refusal = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 1099511627776\r\n\r\n{}"
    for url in hostile_backend(lambda key: refusal):
        said = short_error(conform(url, "--examples", "0"), 3)
        assert "refused the kit's token (401" in said


def test_a_frame_over_the_size_limit_is_a_broken_rule_not_a_traceback() -> None:
    """P2: a backend announcing a 2^40-byte frame breaks P2; the kit stops reading it. (The
    probes only: the replays against such a backend take 20 s to give up, which says nothing
    more.)"""
    frame = bytes([0x81, 127]) + (1 << 40).to_bytes(8, "big")
    for url in hostile_backend(upgraded_then(frame)):
        report = probes_only(url)
        assert "P2" in report.broken
        assert "over the protocol's size limit (P2)" in report.rules["P2"].message
        assert "| P2 | BROKEN |" in format_report(report)


def test_a_message_over_the_size_limit_in_fragments_is_a_broken_rule() -> None:
    """P2: fragments that join into more than 65536 bytes break P2, each frame being small."""
    part = b"x" * 60000
    fragments = build_frame(part, opcode=OP_TEXT, fin=False) + build_frame(part, opcode=0, fin=True)
    for url in hostile_backend(upgraded_then(fragments)):
        report = probes_only(url)
        assert "fragments joined" in report.rules["P2"].message


def test_a_report_path_that_cannot_be_written_exits_2_before_the_run(tmp_path: Path) -> None:
    """The --json path is tried before the run: one line and exit 2, nothing checked."""
    missing = tmp_path / "no-such-dir" / "report.json"
    said = short_error(conform(f"ws://127.0.0.1:{free_port()}/", "--json", str(missing)), 2)
    assert "cannot write the report to --json" in said
    assert not missing.parent.exists()


def test_the_probes_bound_grows_with_the_idle_timeout() -> None:
    """P13: the probes' bound is sized to the idle wait (idle timeout + 2 s) plus a margin, so
    a long ``--idle-timeout`` is waited for rather than cut at a fixed 30 s."""
    for idle in (28.0, 120.0):
        assert probes_seconds(idle) >= idle + 2.0 + 10.0
    assert probes_seconds(None) >= 5 * SECTION_SECONDS


def test_probes_past_their_bound_make_the_backend_uncheckable() -> None:
    """A backend that leaves the probes waiting past their bound cannot be checked: a one-line
    reason (exit 3 in the command), not a TooSlowError."""

    async def silent() -> list[str]:
        await trio.sleep_forever()
        return []

    with TrioPortal() as portal, pytest.raises(BackendUncheckable, match="did not answer within"):
        _probes_within(portal, 0.05, silent)
    assert portal.timeout == TrioPortal().timeout


def test_sections_that_stop_early_leave_their_rows_not_run() -> None:
    """P2, P6: a backend that takes the first upgrade and refuses every later one (503) stops
    the probe sections early; their rows say "not run", never "passed", and the run does not
    pass."""
    upgraded = upgraded_then(b"")
    answers = iter([upgraded])

    def answer(key: bytes) -> bytes:
        first = next(answers, None)
        if first is not None:
            return first(key)
        return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"

    for url in hostile_backend(answer):
        report = probes_only(url)
        assert not report.ok and report.verdict == "FAIL"
        for rule in ("P2", "P6", "R15"):
            result = report.rules[rule]
            assert result.passed and result.verdict == "not run", (rule, result)
            assert "stopped early (HandshakeRefused)" in result.not_run
            assert rule in report.not_run
        text = format_report(report)
        assert "| P6 | not run |" in text and "not run (the run does not pass): " in text


def test_a_run_with_anything_inconclusive_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No rule broken but something not decided: INCOMPLETE, exit 3 with one line."""
    from fsm_session.testing.conformance import command

    def undecided(url: str, **options: object) -> ConformanceReport:
        rules = {rule: RuleResult(rule, text) for rule, text in CHECKS.items()}
        rules["P9"].not_run = "probe check_messages stopped early (TooSlowError)"
        return ConformanceReport(url=url, rules=rules, inconclusive=["probe stopped"])

    monkeypatch.setenv("FSM_SESSION_SECRET", secrets.token_urlsafe(32))
    monkeypatch.setattr(command, "check_backend", undecided)
    assert command.conform_command("ws://127.0.0.1:9/") == 3
    out, err = capsys.readouterr()
    assert "conformance of ws://127.0.0.1:9/: INCOMPLETE" in out
    assert err.strip() == "fsm-session conform: could not check all rules (not run: P9)"


@pytest.mark.parametrize("factor", [1.0, 3.0])
def test_a_refusal_body_is_awaited_for_a_time_scaled_by_timeout(factor: float) -> None:
    """P1: the wait for a refusal's body is scaled by --timeout, and at most the head limit of
    it is read whatever the Content-Length says (virtual time, autojump clock)."""

    async def main() -> tuple[float, int]:
        ours, theirs = trio.testing.memory_stream_pair()
        await theirs.send_all(b"x" * 20000)
        started = trio.current_time()
        body = await _body(ours, {"content-length": str(1 << 40)}, Target("ws://h/", None, factor))
        assert len(body) == _HEAD_LIMIT
        started = trio.current_time()
        body = await _body(ours, {"content-length": "5000"}, Target("ws://h/", None, factor))
        return trio.current_time() - started, len(body)

    waited, length = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert waited == pytest.approx(factor) and length == 20000 - _HEAD_LIMIT
