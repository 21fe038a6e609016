"""Give memory back to the operating system after a spike of connections.

Each connection allocates buffers (socket reads, wsproto's frame buffer, the message being
reassembled) through the C allocator. When thousands of connections come and go, glibc's
``free`` keeps most of that memory in its arenas for reuse instead of returning it, and the
process's RSS stays near its peak for good. ``malloc_trim(0)`` returns the free pages; it is
cheap (about a millisecond after a spike of 2,000 connections), but not free, so it runs only
once the number of connections has fallen well below its peak.

On a C library without ``malloc_trim`` (musl, macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import trio

__all__ = ["MemoryTrimmer", "malloc_trim"]

logger = logging.getLogger("fsm_session.server")


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def malloc_trim() -> bool:
    """Return the C heap's free memory to the system; ``False`` where that is not possible."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class MemoryTrimmer:
    """Trims the heap when the connections have fallen by ``spike`` or more from their peak.

    The server calls :meth:`note` with its connection count as connections arrive (one
    comparison), and runs :meth:`run`, which looks every ``interval`` seconds.
    """

    __slots__ = ("_count", "interval", "peak", "spike", "trims")

    def __init__(
        self, count: Callable[[], int], *, interval: float = 2.0, spike: int = 256
    ) -> None:
        self._count = count
        self.interval = interval
        self.spike = spike
        self.peak = 0
        self.trims = 0

    def note(self, connections: int) -> None:
        if connections > self.peak:
            self.peak = connections

    async def run(self) -> None:
        if _MALLOC_TRIM is None:
            return
        while True:
            await trio.sleep(self.interval)
            now = self._count()
            if self.peak - now >= self.spike:
                malloc_trim()
                self.trims += 1
                logger.debug("connections fell from %d to %d: heap trimmed", self.peak, now)
                self.peak = now
