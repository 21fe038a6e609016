"""``fsm-session serve`` as a process: a clean stop on SIGINT and SIGTERM, one line when it
cannot start.

Each test runs the real command in a child process and talks to it over loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from fsm_session.protocol import CloseCode
from tests.processes import first_line
from tests.test_server import SECRET, TIMEOUT, connect, info, token

CLI = [sys.executable, "-m", "fsm_session.cli"]
ENV = {**os.environ, "FSM_SESSION_SECRET": SECRET}


class Server:
    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        received = bytearray()
        with trio.fail_after(20):
            while chunk := await self.process.stderr.receive_some():
                received += chunk
        return received.decode()


@asynccontextmanager
async def running() -> AsyncIterator[Server]:
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--port", "0"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield Server(process, await first_line(process))
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(20):
            await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_closes_every_connection_with_1001_and_exits_0(signum: int) -> None:
    async with running() as server:
        async with (
            connect(server.url, token("alice")) as alice,
            connect(server.url, token("bob")) as bob,
        ):
            await alice.opened(info("Alice", "alice"))
            server.process.send_signal(signum)
            assert await alice.closed_with() == CloseCode.GOING_AWAY
            assert await bob.closed_with() == CloseCode.GOING_AWAY
        with trio.fail_after(20):
            assert await server.process.wait() == 0
        stderr = await server.stderr()
        assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
        last = stderr.strip().splitlines()[-1]
        assert last == f"fsm-session serve: stopped by {signal.Signals(signum).name}", stderr


async def test_after_a_signal_it_accepts_no_new_connection() -> None:
    async with running() as server:
        async with connect(server.url, token("alice")) as alice:
            server.process.send_signal(signal.SIGTERM)
            assert await alice.closed_with() == CloseCode.GOING_AWAY
        with trio.fail_after(20):
            assert await server.process.wait() == 0
        host, port = server.url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
        with pytest.raises(OSError), trio.fail_after(TIMEOUT):
            await trio.open_tcp_stream(host, int(port))


def run(*options: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "serve", *options], env=env, capture_output=True, text=True, timeout=30
    )


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("--port", str(port))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"fsm-session serve: cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    "options",
    [["--port", "abc"], ["--port", "70000"], ["--no-such-option"], ["--host", "no.such.host."]],
    ids=["not-a-number", "out-of-range", "unknown", "unknown-host"],
)
def test_a_bad_option_is_one_line_and_exit_2(options: list[str]) -> None:
    done = run(*options)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("fsm-session"), done.stderr


def test_a_missing_secret_is_one_line_and_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FSM_SESSION_SECRET"}
    done = run("--port", "0", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "FSM_SESSION_SECRET" in done.stderr
