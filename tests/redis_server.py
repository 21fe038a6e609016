"""A real ``redis-server`` for the tests: a child process on a free loopback port, in a temporary
directory, persisting nothing, stopped by its PID. Never a system service.

A test that needs it calls :func:`redis_binary`: under ``CI=true`` a missing binary fails the
test; locally it skips with the command that installs it.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

INSTALL = "apt-get install redis-server"


def redis_binary() -> str:
    """The path of ``redis-server``; fails (CI) or skips (locally) the test when it is missing."""
    path = shutil.which("redis-server")
    if path is None:
        message = f"redis-server is not installed: {INSTALL}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` child; :meth:`stop` and :meth:`start` again keep its port."""

    def __init__(self) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="fsm-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str | None = None, **options: str) -> str:
        """A store URL on this server, with a fresh key prefix unless one is given, so that
        tests sharing the server share no keys."""
        query = {"prefix": prefix or f"t{secrets.token_hex(4)}:", **options}
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return f"redis://127.0.0.1:{self.port}/0?{tail}"

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", self._dir.name, "--save", "", "--appendonly", "no"]
        argv += ["--daemonize", "no", "--loglevel", "notice"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE)
        self.process = process
        assert process.stdout is not None
        # Ready when it says so: read its log, under a deadline, rather than poll the port.
        deadline = time.monotonic() + 10
        seen = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"Ready to accept connections" not in seen:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    self.stop()
                    raise RuntimeError("redis-server did not start within 10 s")
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    self.stop()
                    raise RuntimeError(f"redis-server exited at start: {seen[-500:]!r}")
                seen += chunk

    def stop(self) -> None:
        """Stop the child by its PID and wait for it."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
