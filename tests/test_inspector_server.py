"""The inspector of the reference server (``serve --inspect``) and of the demo
(``demo --inspect``): every change of a session on the server, named by its protocol rule."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial

import pytest
import trio

from fsm_session import ParticipantInfo, ServiceConfig, open_session_service, tokens
from fsm_session.cli import main
from fsm_session.demo import run_demo
from fsm_session.inspector import Board, ServerObserver, open_inspector
from fsm_session.inspector.board import SessionView
from fsm_session.server import serve
from fsm_session.testing.proxy import LoopbackProxy
from tests.test_inspector import _get


async def _until(board: Board, holds: Callable[[], bool]) -> None:
    """Wait, on the board's own updates, until ``holds()`` (no polling, no sleep)."""
    changed = trio.Event()

    def wake() -> None:
        changed.set()

    watcher = board.watch(wake)
    try:
        with trio.fail_after(10):
            while not holds():
                await changed.wait()
                changed = trio.Event()
    finally:
        board.unwatch(watcher)


def _moves(view: SessionView) -> list[tuple[str, str, str, str]]:
    return [(t.trigger, t.rule, t.source, t.dest) for t in view.transitions]


async def test_the_server_shows_each_change_of_a_session_by_its_rule(
    nursery: trio.Nursery, secret: str, mint: Callable[..., str]
) -> None:
    board = Board()
    observer = ServerObserver(board, node="server A")
    url = await nursery.start(partial(serve, "127.0.0.1", 0, secret=secret, observer=observer))
    proxy = LoopbackProxy(url)
    through_proxy = await proxy.start(nursery)
    async with open_session_service(through_proxy, access_token=mint(None)) as session:
        ghost = await session.open()
        view = board.sessions[ghost.id]
        assert (view.state, view.ghost, view.connected, view.node) == (
            "GHOST",
            True,
            True,
            "server A",
        )
        await session.update(name="Guest 7")
        assert (view.state, view.name, view.ghost) == ("OPEN", "Guest 7", False)
        proxy.cut()  # the connection drops: the session waits, in grace, to be resumed
        await _until(board, lambda: view.grace)
        assert (view.state, view.connected) == ("OPEN", False)
        await _until(board, lambda: view.connected)  # the client reconnects and resumes
        assert not view.grace
        # An update is sent once the client has its resume confirmed (R14): then close.
        await session.update(name="Guest 8")
        await session.close()
    assert board.sessions == {}
    assert _moves(view) == [
        ("open", "P6", "CLOSED", "GHOST"),
        ("update", "P7", "GHOST", "OPEN"),
        ("dropped", "P9", "OPEN", "OPEN"),
        ("resume", "P9", "OPEN", "OPEN"),
        ("update", "P7", "OPEN", "OPEN"),
        ("close", "P8", "OPEN", "CLOSED"),
    ]
    proxy.close()


async def test_a_switched_session_is_shown_taken_over(
    nursery: trio.Nursery, secret: str, mint: Callable[..., str]
) -> None:
    board = Board()
    url = await nursery.start(
        partial(serve, "127.0.0.1", 0, secret=secret, observer=ServerObserver(board, "A"))
    )
    ada = ParticipantInfo(name="Ada", external_id="ada")
    config = ServiceConfig()
    async with (
        open_session_service(url, access_token=mint("ada"), config=config) as first,
        open_session_service(url, access_token=mint("ada"), config=config) as second,
    ):
        participant = await first.open(ada)
        await second.open(ada)  # the same external ID elsewhere takes the session (P12)
        view = board.sessions[participant.id]
        assert _moves(view)[-2:] == [
            ("switched", "P12", "OPEN", "OPEN"),
            ("open", "P6", "OPEN", "OPEN"),
        ]
        assert view.connected


async def test_the_demo_shows_its_sessions_live() -> None:
    lines: list[str] = []
    async with open_inspector(node="demo") as inspector:
        watcher = inspector.board.watch(lambda: None)
        await run_demo(lines.append, inspector=inspector)
        updates = watcher.take()
        assert inspector.board.sessions == {}  # both services ended
    assert updates is not None
    moves = [
        (update["transition"]["source"], update["transition"]["dest"])
        for update in updates
        if update["type"] == "session" and update["transition"] is not None
    ]
    cycle = [("CLOSED", "OPENING"), ("OPENING", "OPEN"), ("OPEN", "CLOSING"), ("CLOSING", "CLOSED")]
    ghost = [("CLOSED", "OPENING"), ("OPENING", "GHOST"), ("GHOST", "OPEN")]
    assert moves == cycle + cycle + ghost + cycle[2:]
    assert [update["type"] for update in updates].count("removed") == 2
    assert lines[-1].strip().startswith("Done")


def test_demo_inspect_prints_the_inspector_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--inspect"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"inspector: http://127\.0\.0\.1:\d+/", out[0]), out[0]
    assert out[-1].startswith("Done")
    assert main(["demo", "--pace", "-1"]) == 2
    for pace in ("inf", "nan"):  # a pace that would never end, or compare
        assert main(["demo", "--pace", pace]) == 2
        assert "--pace must be zero or a positive, finite number" in capsys.readouterr().err


async def test_serve_inspect_serves_the_page_on_a_second_port() -> None:
    env = {**os.environ, "FSM_SESSION_SECRET": secrets.token_urlsafe(32)}
    env.pop("FSM_SESSION_INSPECTOR_TOKEN", None)
    command = [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0", "--inspect"]
    process = await trio.lowlevel.open_process(command, env=env, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        data = b""
        with trio.fail_after(20):
            while data.count(b"\n") < 2:
                chunk = await process.stdout.receive_some()
                assert chunk, "serve exited before printing its addresses"
                data += chunk
        ws, page = data.decode().splitlines()[:2]
        assert ws.startswith("ws://127.0.0.1:")
        match = re.fullmatch(r"inspector: http://127\.0\.0\.1:(\d+)/", page)
        assert match is not None, page
        status, _, body = await _get(int(match.group(1)), "/snapshot.json")
        assert status == 200 and b'"sessions":[]' in body
        # A session opened on the server shows, with the node as clients reach it (P6).
        token = tokens.mint(env["FSM_SESSION_SECRET"], external_id="ada", ttl=60, now=time.time())
        async with open_session_service(ws, access_token=token) as session:
            participant = await session.open(ParticipantInfo(name="Ada", external_id="ada"))
            _, _, body = await _get(int(match.group(1)), "/snapshot.json")
            (shown,) = json.loads(body)["sessions"]
            assert (shown["participant"], shown["state"], shown["connected"]) == (
                participant.id,
                "OPEN",
                True,
            )
            assert shown["node"] == "server " + ws.split("//")[1].rstrip("/")
    finally:
        process.kill()
        with trio.fail_after(20):
            await process.wait()
    # Beyond loopback, no token: it does not start.
    result = await trio.run_process(
        [*command, "--inspect-host", "0.0.0.0"], env=env, capture_stderr=True, check=False
    )
    assert result.returncode == 2
    assert b"not loopback: give it an access token" in result.stderr


async def test_serve_inspect_on_a_busy_port_names_the_inspector_s_address() -> None:
    env = {**os.environ, "FSM_SESSION_SECRET": secrets.token_urlsafe(32)}
    env.pop("FSM_SESSION_INSPECTOR_TOKEN", None)
    busy = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    try:
        port = busy.socket.getsockname()[1]
        command = [sys.executable, "-m", "fsm_session.cli", "serve", "--port", "0", "--inspect"]
        with trio.fail_after(20):
            result = await trio.run_process(
                [*command, "--inspect-port", str(port)],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    finally:
        await busy.aclose()
    assert result.returncode == 2
    assert result.stdout == b""  # no address printed for a server that does not run
    line = result.stderr.decode().splitlines()[-1]  # after the server's own log lines
    assert line.startswith(
        f"fsm-session serve: cannot listen on 127.0.0.1:{port} (--inspect-host/--inspect-port): "
    ), line
