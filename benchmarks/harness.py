"""What the wire benchmarks share: plans, server processes, tokens, /proc readings, machine facts.

Every server of ``wire.py``, ``profile_cycle.py`` and ``profile_memory.py`` runs in a child
process (``wire.py --serve ...``) that prints its URL as its first stdout line; the client side
reads its own and the server's resident set and CPU time from ``/proc``. Loopback only.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fsm_session.models import ParticipantInfo  # noqa: E402

SECRET = "wire-benchmark-secret-" + "x" * 32  # Loopback only; at least 32 bytes (HS256).
HOST = "127.0.0.1"
PAGE = os.sysconf("SC_PAGE_SIZE")
KIB = 1024
WIRE = str(Path(__file__).resolve().parent / "wire.py")


@dataclass(frozen=True)
class Plan:
    """How much ``wire.py`` measures: ``--quick`` (``make bench``) or ``--full``."""

    name: str
    cycles: int  # per kind, over all rounds
    updates: int  # per kind, over all rounds
    rounds: int
    counted: int  # operations per counting pass
    scale: int
    batch: int
    churn_cycles: int  # ours
    churn_sessions: int  # concurrent, each cycling
    churn_floor_cycles: int  # the bare client


QUICK = Plan("quick", 600, 3_000, 20, 50, 1_000, 250, 3_000, 50, 3_000)
FULL = Plan("full", 3_000, 20_000, 40, 200, 10_000, 500, 100_000, 100, 20_000)

OURS_REF = "ours, reference server"
OURS_BARE = "ours, bare server"
BARE = "bare client, bare server"
NAMES = ("Bench User A", "Bench User B")  # each differs from the other and from info_for's

Op = Callable[[], Awaitable[Any]]
"""One timed operation: a cycle, an update."""


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


class Server:
    """A server in a child process; its first stdout line is its URL."""

    def __init__(self, args: list[str], log: Path | None = None) -> None:
        env = dict(os.environ, FSM_SESSION_SECRET=SECRET, PYTHONUNBUFFERED="1")
        self._log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=ROOT,
            preexec_fn=raise_nofile,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("ws://"):
            self.stop()
            raise RuntimeError(f"server {args} did not print its URL (got {line!r})")
        self.url = line
        self.port = port_of(line)

    @classmethod
    def reference(cls, max_connections: int = 1024, extra: tuple[str, ...] = ()) -> Server:
        """The reference server (``wire.py --serve ours``: ``serve()`` with the CLI's logging)."""
        return cls([WIRE, "--serve", "ours", "--max-connections", str(max_connections), *extra])

    @classmethod
    def bare(cls, extra: tuple[str, ...] = ()) -> Server:
        """The bare JSON server of ``benchmarks/bare.py``."""
        return cls([WIRE, "--serve", "bare", *extra])

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]


def token_for(external_id: str) -> str:
    from fsm_session.tokens import mint

    return mint(SECRET, external_id=external_id, ttl=24 * 3600, now=time.time())


def info_for(external_id: str) -> ParticipantInfo:
    return ParticipantInfo(name="Bench User", external_id=external_id, avatar_url=None)


def ws_headers(token: str) -> list[tuple[bytes, bytes]]:
    """The upgrade header our client sends, for the bare client to send too."""
    return [(b"authorization", f"Bearer {token}".encode())]


def git_commit() -> str:
    """The short commit of the checkout, with ``+dirty`` when it has changes."""
    try:
        run = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=10)
        commit = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip() or "nogit"
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    return commit + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average": load,
        "trio": version("trio"),
        "trio-websocket": version("trio-websocket"),
        "wsproto": version("wsproto"),
        "transitions": version("transitions"),
        "commit": git_commit(),
    }
