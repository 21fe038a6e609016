"""The fsm-session command: serve, token, demo (run as real processes where it matters)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import trio

from fsm_session import tokens
from fsm_session.cli import main
from fsm_session.demo import run_demo
from fsm_session.models import ParticipantInfo
from fsm_session.service import open_session_service
from tests.processes import first_line

CLI = [sys.executable, "-m", "fsm_session.cli"]


def test_token_prints_only_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FSM_SESSION_SECRET", "cli-secret-of-enough-length-for-hs256")
    assert main(["token", "--external-id", "ext-ada", "--ttl", "60"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    claims = tokens.verify(out.strip(), "cli-secret-of-enough-length-for-hs256", now=time.time())
    assert claims.external_id == "ext-ada"


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["token"]])
def test_commands_refuse_to_run_without_a_secret(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FSM_SESSION_SECRET"}
    done = subprocess.run([*CLI, *command], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert "FSM_SESSION_SECRET" in done.stderr


async def test_serve_prints_its_url_first_and_serves() -> None:
    """`fsm-session serve --port 0` prints its ws:// URL as the first line and serves clients."""
    secret = "serve-secret-of-enough-length-for-hs256"
    env = {**os.environ, "FSM_SESSION_SECRET": secret}
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        url = await first_line(process)
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/")
        token = tokens.mint(secret, external_id="ext-ada", ttl=60, now=time.time())
        with trio.fail_after(10):
            async with open_session_service(url, access_token=token) as session:
                participant = await session.open(ParticipantInfo("Ada", external_id="ext-ada"))
                assert participant.info.external_id == "ext-ada"
    finally:
        process.terminate()
        with trio.fail_after(10):
            await process.wait()


async def test_demo_walks_the_workflow() -> None:
    """The demo runs end to end on an embedded server and tells what happened."""
    lines: list[str] = []
    with trio.fail_after(20):
        await run_demo(lines.append)
    text = "\n".join(lines)
    for expected in (
        "socket: CLOSED -> CONNECTING on connect",
        ": OPENING -> OPEN on opened",
        "refused: ExternalIdMismatch",
        "refused: SessionNotOpen",
        ": OPENING -> GHOST on opened",
        ": GHOST -> OPEN on updated",
        "same participant ID as before: True",
    ):
        assert expected in text
