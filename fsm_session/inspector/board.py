"""The inspector's board: the live sessions, each with a bounded ring of its recent transitions,
and the feeds of the browsers watching it.

Plain data, no I/O and no clock: the client's services and the server's connections report to
it, and each watcher (one browser's feed) takes what changed. A watcher's memory is bounded: it
keeps at most ``limit`` updates; one that falls further behind (a slow or stalled browser) drops
them all and is sent a fresh snapshot when it reads again. Publishing never waits for a watcher.

A snapshot is bounded too: it lists at most ``snapshot_limit`` sessions, without their rings of
transitions (the page asks for one session's transitions when it shows that session).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Board", "SessionView", "Transition", "Watcher"]

RING = 50
"""Transitions kept per session by default."""
WATCHER_LIMIT = 256
"""Updates a watcher may fall behind by before it is resynchronised with a snapshot."""
SNAPSHOT_LIMIT = 1000
"""Sessions one snapshot lists at most (the rest arrive as they change)."""

Update = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Transition:
    """One move of a session's machine: ``source -> dest`` on ``trigger``, by ``rule``."""

    seq: int
    trigger: str
    rule: str
    source: str
    dest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "trigger": self.trigger,
            "rule": self.rule,
            "source": self.source,
            "dest": self.dest,
        }


@dataclass(slots=True)
class SessionView:
    """What the page shows of one session. Holds no token, secret or address of anyone."""

    key: str
    node: str
    state: str = "CLOSED"
    participant: str | None = None
    external_id: str | None = None
    name: str | None = None
    ghost: bool = False
    connected: bool = False
    grace: bool = False
    """The session's connection ended and it waits to be resumed (server side)."""
    transitions: deque[Transition] = field(default_factory=deque)

    def to_json(self, *, with_transitions: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "node": self.node,
            "state": self.state,
            "participant": self.participant,
            "external_id": self.external_id,
            "name": self.name,
            "ghost": self.ghost,
            "connected": self.connected,
            "grace": self.grace,
        }
        if with_transitions:
            data["transitions"] = [t.to_json() for t in self.transitions]
        return data


class Watcher:
    """One feed of the board's updates (a browser's event stream), bounded in memory."""

    __slots__ = ("_wake", "limit", "pending", "resync")

    def __init__(self, limit: int, wake: Callable[[], None]) -> None:
        self.limit = limit
        self.pending: deque[Update] = deque()
        self.resync = False
        """More than ``limit`` updates were missed: the next read is a snapshot."""
        self._wake = wake

    def offer(self, update: Update) -> None:
        if not self.resync:
            if len(self.pending) >= self.limit:
                self.pending.clear()  # coalesce: a snapshot replaces what was missed
                self.resync = True
            else:
                self.pending.append(update)
        self._wake()

    def take(self) -> list[Update] | None:
        """The updates since the last take, or ``None`` when a snapshot must be sent instead."""
        if self.resync:
            self.resync = False
            return None
        updates = list(self.pending)
        self.pending.clear()
        return updates


class Board:
    """The sessions of one inspector and the watchers of their changes."""

    def __init__(
        self,
        *,
        ring: int = RING,
        watcher_limit: int = WATCHER_LIMIT,
        snapshot_limit: int = SNAPSHOT_LIMIT,
        rows: Iterable[dict[str, Any]] = (),
    ) -> None:
        if ring < 1 or watcher_limit < 1 or snapshot_limit < 1:
            raise ValueError("ring, watcher_limit and snapshot_limit must be at least 1")
        self.ring = ring
        self.watcher_limit = watcher_limit
        self.snapshot_limit = snapshot_limit
        self.rows = tuple(rows)
        self.sessions: dict[str, SessionView] = {}
        self.watchers: list[Watcher] = []
        self._seq = 0
        self.version = 0
        """Counts the board's changes: an encoded snapshot holds while it stays the same."""

    def _publish(self, update: Update) -> None:
        self.version += 1
        for watcher in self.watchers:
            watcher.offer(update)

    def update(self, key: str, node: str, **fields: Any) -> SessionView:
        """Create or change the view of session ``key`` (fields of :class:`SessionView`)."""
        view = self.sessions.get(key)
        if view is None:
            view = self.sessions[key] = SessionView(key, node, transitions=deque(maxlen=self.ring))
        for name, value in fields.items():
            if name in ("key", "node", "transitions") or not hasattr(view, name):
                raise ValueError(f"a session view has no field {name!r} to set")
            setattr(view, name, value)
        self._publish({"type": "session", "session": view.to_json(), "transition": None})
        return view

    def transition(self, key: str, trigger: str, rule: str, source: str, dest: str) -> None:
        """Record that session ``key`` moved ``source -> dest`` on ``trigger`` (by ``rule``)."""
        view = self.sessions.get(key)
        if view is None:
            raise KeyError(f"no session {key!r} on the board")
        self._seq += 1
        move = Transition(self._seq, trigger, rule, source, dest)
        view.transitions.append(move)
        view.state = dest
        self._publish({"type": "session", "session": view.to_json(), "transition": move.to_json()})

    def remove(self, key: str) -> None:
        """Forget session ``key`` (it ended); nothing happens when it is not on the board."""
        if self.sessions.pop(key, None) is not None:
            self._publish({"type": "removed", "key": key})

    def snapshot(self) -> Update:
        """What the page shows at once: the table's rows and up to ``snapshot_limit`` sessions
        (``total`` counts them all), without their transitions (see :meth:`session`)."""
        views = itertools.islice(self.sessions.values(), self.snapshot_limit)
        return {
            "type": "snapshot",
            "rows": list(self.rows),
            "sessions": [view.to_json() for view in views],
            "total": len(self.sessions),
        }

    def session(self, key: str) -> Update | None:
        """Session ``key`` with its recent transitions, or ``None`` when it is not on the board."""
        view = self.sessions.get(key)
        return None if view is None else view.to_json(with_transitions=True)

    def watch(self, wake: Callable[[], None]) -> Watcher:
        """A new feed of this board's updates; ``wake()`` is called when one arrives."""
        watcher = Watcher(self.watcher_limit, wake)
        self.watchers.append(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self.watchers:
            self.watchers.remove(watcher)
