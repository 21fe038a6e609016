"""Test helpers: a peer that never answers, and checks that find the file descriptors and trio
tasks a test left behind.

Leak checks::

    before = leak_snapshot()              # file descriptors and trio tasks alive now
    ...                                   # the test
    await assert_no_leaks(before)         # waits up to ``settle`` for them to go, then fails

The proxy these tests put faults in is the project's one, :mod:`fsm_session.testing.proxy`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
import trio.lowlevel
import trio.testing

__all__ = [
    "LeakSnapshot",
    "SilentPeer",
    "assert_no_leaks",
    "fd_count",
    "fd_targets",
    "leak_snapshot",
    "live_tasks",
    "open_silent_peer",
]

_MAX_UNITS = 10_000_000  # bounds every loop; far above what a test sends
_CHUNK = 65536


# --- a peer that never answers ------------------------------------------------------------------


class SilentPeer:
    """A TCP listener on 127.0.0.1 that accepts connections, reads what comes, answers nothing
    (so an upgrade never completes), and closes them when cancelled."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self.received = 0
        """Bytes received over all connections."""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @classmethod
    async def serve(
        cls,
        *,
        max_connections: int = 10_000,
        task_status: trio.TaskStatus[SilentPeer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        peer = cls()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        try:
            peer.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(peer)
                for _ in range(max_connections):
                    stream = await listeners[0].accept()
                    peer.accepted += 1
                    nursery.start_soon(peer._listen, stream)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _listen(self, stream: trio.SocketStream) -> None:
        try:
            for _ in range(_MAX_UNITS):
                data = await stream.receive_some(_CHUNK)
                if not data:
                    break
                self.received += len(data)
            await trio.sleep_forever()  # after EOF too: never answer, never close first
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_silent_peer() -> AsyncIterator[SilentPeer]:
    async with trio.open_nursery() as nursery:
        peer: SilentPeer = await nursery.start(
            lambda task_status: SilentPeer.serve(task_status=task_status)
        )
        try:
            yield peer
        finally:
            nursery.cancel_scope.cancel()


# --- leak checks --------------------------------------------------------------------------------


def fd_targets() -> dict[int, str]:
    """This process's open file descriptors and what each points at (``socket:[...]``...)."""
    targets = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor listdir itself used, closed by now
    return targets


def fd_count() -> int:
    """How many file descriptors this process holds."""
    return len(fd_targets())


def live_tasks() -> set[trio.lowlevel.Task]:
    """Every task of the current trio run: the root task and all its descendants."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    found: set[trio.lowlevel.Task] = set()
    stack = [root]
    for _ in range(_MAX_UNITS):
        if not stack:
            break
        task = stack.pop()
        found.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


@dataclass(frozen=True)
class LeakSnapshot:
    """What was open before a test: file descriptors (with targets) and trio tasks."""

    fds: dict[int, str]
    tasks: frozenset[trio.lowlevel.Task]


def leak_snapshot() -> LeakSnapshot:
    """Take it before the code under test runs (inside a trio run)."""
    return LeakSnapshot(fd_targets(), frozenset(live_tasks()))


async def assert_no_leaks(
    before: LeakSnapshot | int | Collection[str] | Collection[int],
    *,
    settle: float = 1.0,
    step: float = 0.01,
) -> None:
    """Fail unless every file descriptor (and, given a ``LeakSnapshot``, every trio task)
    opened since ``before`` is gone. It waits up to ``settle`` seconds (in ``step``
    sleeps, at most ``settle / step`` of them) for closers to finish first.

    ``before`` is a ``LeakSnapshot``, an ``fd_count()``, or a set of descriptors (names from
    ``os.listdir("/proc/self/fd")`` as ``tests.conftest.open_fds`` returns, or ints). It runs
    no garbage collection: a socket only the collector would close is a leak.
    """
    problems: list[str] = []
    for _ in range(max(1, int(settle / step)) + 1):
        await trio.testing.wait_all_tasks_blocked(cushion=0)
        problems = _leaks(before)
        if not problems:
            return
        await trio.sleep(step)
    raise AssertionError("leaked: " + "; ".join(problems))


def _leaks(before: LeakSnapshot | int | Collection[str] | Collection[int]) -> list[str]:
    now = fd_targets()
    problems = []
    if isinstance(before, int):
        if len(now) > before:
            problems.append(f"{len(now) - before} file descriptor(s) more than before")
        return problems
    if isinstance(before, LeakSnapshot):
        old_fds: dict[int, str | None] = dict(before.fds)
    else:
        old_fds = {int(fd): None for fd in before}
    new = {
        fd: target
        for fd, target in now.items()
        if fd not in old_fds or (old_fds[fd] is not None and old_fds[fd] != target)
    }
    if new:
        listed = ", ".join(f"{fd} -> {target}" for fd, target in sorted(new.items()))
        problems.append(f"file descriptor(s) {listed}")
    if isinstance(before, LeakSnapshot):
        current = trio.lowlevel.current_task()
        extra = [t for t in live_tasks() - before.tasks if t is not current]
        if extra:
            problems.append("task(s) " + ", ".join(sorted(t.name for t in extra)))
    return problems
