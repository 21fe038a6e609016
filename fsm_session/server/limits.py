"""What one client may cost the reference server, counted before the server spends it.

Two kinds of budget, both without I/O and without a clock of their own (the caller passes
``now``):

- :class:`Bucket`: a token bucket. Each connection has one for the bytes it sends and one for the
  frames; the driver charges them as bytes arrive, before anything is decoded, and stops reading
  from a connection whose bucket is empty until it has refilled (TCP backpressure does the rest).
- :class:`Admission`: the connection slots, per peer address and in all. A TCP connection that
  has not finished its WebSocket handshake holds a *pending* slot: few of them per address, and
  when all of them are taken, a newcomer takes the slot of the oldest pending connection of the
  address that holds the most. So a flood of silent connections from one address never keeps a
  client from another address out. An accepted WebSocket holds an *open* slot, also capped per
  address and in all.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

__all__ = ["Admission", "Bucket", "PendingSlot"]


class Bucket:
    """A token bucket: ``rate`` units a second, holding at most ``capacity``.

    :meth:`charge` takes units even when there are not enough (the bytes have arrived: they are
    paid for), so the level can go below zero; :meth:`ready_at` says when it is back above zero.
    A ``rate`` of ``math.inf`` makes a bucket that is never empty.
    """

    __slots__ = ("_at", "_level", "capacity", "rate")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if not rate > 0 or not capacity > 0:
            raise ValueError("a bucket needs a positive rate and capacity")
        self.rate = rate
        self.capacity = capacity
        self._level = capacity
        self._at = now

    def level(self, now: float) -> float:
        """The units available at ``now`` (negative while in debt)."""
        if now > self._at:
            self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
            self._at = now
        return self._level

    def charge(self, units: float, now: float) -> None:
        self._level = self.level(now) - units

    def take(self, now: float) -> bool:
        """Take one unit if there is one; ``False`` (and nothing taken) if not."""
        if self.level(now) < 1:
            return False
        self._level -= 1
        return True

    def ready_at(self, now: float) -> float:
        """When the bucket may be drawn on again: ``now`` while its level is above zero; once
        spent, when it has refilled an eighth of its capacity (at least one unit), so that a
        client over its budget is woken up a few times a second rather than once a unit."""
        level = self.level(now)
        if level > 0:
            return now
        want = max(1.0, self.capacity / 8) if self.capacity != math.inf else 1.0
        return now + (want - level) / self.rate


class PendingSlot:
    """One connection waiting for its handshake; ``evict`` ends the wait (it was pushed out)."""

    __slots__ = ("evict", "evicted", "peer")

    def __init__(self, peer: str, evict: Callable[[], None]) -> None:
        self.peer = peer
        self.evict = evict
        self.evicted = False


class Admission:
    """The pending and open connection slots of one server, per peer address and in all."""

    __slots__ = (
        "_open",
        "_pending",
        "max_open",
        "max_open_per_peer",
        "max_pending",
        "max_pending_per_peer",
        "open_count",
        "pending_count",
    )

    def __init__(
        self, *, max_open: int, max_open_per_peer: int, max_pending: int, max_pending_per_peer: int
    ) -> None:
        self.max_open = max_open
        self.max_open_per_peer = max_open_per_peer
        self.max_pending = max_pending
        self.max_pending_per_peer = max_pending_per_peer
        self._pending: dict[str, deque[PendingSlot]] = {}
        self._open: dict[str, int] = {}
        self.pending_count = 0
        self.open_count = 0

    def pending_of(self, peer: str) -> int:
        slots = self._pending.get(peer)
        return 0 if slots is None else len(slots)

    def open_of(self, peer: str) -> int:
        return self._open.get(peer, 0)

    def admit(self, peer: str, evict: Callable[[], None]) -> PendingSlot | None:
        """A pending slot for a new TCP connection from ``peer``, or ``None``: hang up unread.

        ``None`` when ``peer`` already holds its share of pending slots. When every pending
        slot is taken, the oldest pending connection of the address holding the most is
        evicted (its ``evict`` is called) to make room.
        """
        slots = self._pending.get(peer)
        if slots is not None and len(slots) >= self.max_pending_per_peer:
            return None
        if self.pending_count >= self.max_pending:
            heaviest = max(self._pending.values(), key=len)
            if slots is not None and len(heaviest) <= len(slots):
                return None  # Nobody holds more than this peer: it waits its turn.
            oldest = heaviest.popleft()
            self._forget_pending(oldest.peer, heaviest)
            oldest.evicted = True
            oldest.evict()
        slot = PendingSlot(peer, evict)
        self._pending.setdefault(peer, deque()).append(slot)
        self.pending_count += 1
        return slot

    def leave_pending(self, slot: PendingSlot) -> None:
        """The handshake is over, one way or the other (idempotent)."""
        if slot.evicted:
            return
        slot.evicted = True
        slots = self._pending.get(slot.peer)
        if slots is not None:
            slots.remove(slot)
            self._forget_pending(slot.peer, slots)

    def _forget_pending(self, peer: str, slots: deque[PendingSlot]) -> None:
        self.pending_count -= 1
        if not slots:
            del self._pending[peer]

    def open_refusal(self, peer: str) -> str | None:
        """Why ``peer`` may not open another WebSocket now, or ``None`` when it may."""
        if self.open_count >= self.max_open:
            return "the server is at its connection limit; try again later"
        if self._open.get(peer, 0) >= self.max_open_per_peer:
            return "this address is at its connection limit; try again later"
        return None

    def enter_open(self, peer: str) -> None:
        self._open[peer] = self._open.get(peer, 0) + 1
        self.open_count += 1

    def leave_open(self, peer: str) -> None:
        left = self._open[peer] - 1
        if left:
            self._open[peer] = left
        else:
            del self._open[peer]
        self.open_count -= 1
