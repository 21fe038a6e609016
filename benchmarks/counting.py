"""Counting what one operation costs in trio machinery: tasks, cancel scopes, function calls.

Used by ``wire.py`` after its timed rounds, never during them: the counters slow every call.

* **tasks spawned**: a ``trio.abc.Instrument`` whose ``task_spawned`` hook counts;
* **cancel scopes entered**: ``trio.CancelScope.__enter__`` wrapped by a counting function for
  the duration of the count (nurseries, ``move_on_after`` and ``fail_after`` all enter one);
* **function calls**: a ``sys.setprofile`` hook counting ``call`` events (Python frames started
  or resumed: a coroutine counts each time it resumes, as ``cProfile`` counts it) and
  ``c_call`` events (builtins), in a second pass so the scope counter is not counted.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import trio


@dataclass
class Counts:
    """What ``n`` operations cost, per operation."""

    tasks: float = 0.0
    scopes: float = 0.0
    python_calls: float = 0.0
    builtin_calls: float = 0.0

    def cell(self) -> str:
        return (
            f"{self.tasks:.1f} tasks, {self.scopes:.1f} cancel scopes, "
            f"{self.python_calls:,.0f} Python + {self.builtin_calls:,.0f} builtin calls"
        )


class _SpawnCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1


async def count(operation: Callable[[], Awaitable[Any]], n: int) -> Counts:
    """Run ``operation`` ``n`` times twice (once per kind of counter); costs per operation."""
    spawns = _SpawnCounter()
    entered = 0
    original = trio.CancelScope.__enter__

    def counting_enter(self: trio.CancelScope) -> trio.CancelScope:
        nonlocal entered
        entered += 1
        return original(self)

    trio.lowlevel.add_instrument(spawns)
    trio.CancelScope.__enter__ = counting_enter  # type: ignore[method-assign]
    try:
        for _ in range(n):
            await operation()
    finally:
        trio.CancelScope.__enter__ = original  # type: ignore[method-assign]
        trio.lowlevel.remove_instrument(spawns)

    calls = {"call": 0, "c_call": 0}

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event in calls:
            calls[event] += 1

    sys.setprofile(profile)
    try:
        for _ in range(n):
            await operation()
    finally:
        sys.setprofile(None)
    return Counts(
        tasks=spawns.spawned / n,
        scopes=entered / n,
        python_calls=calls["call"] / n,
        builtin_calls=calls["c_call"] / n,
    )
