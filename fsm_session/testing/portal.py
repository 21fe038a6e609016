"""A trio loop in a background thread, for synchronous callers (Hypothesis stateful tests).

Hypothesis has no async rules, so each rule calls :meth:`TrioPortal.run`, which runs a coroutine
function on the persistent loop with ``trio.from_thread.run`` and waits for its result. Everything
started on the loop (servers, session services) lives in :attr:`TrioPortal.nursery` until
:meth:`TrioPortal.stop` cancels it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import trio

__all__ = ["TrioPortal"]

T = TypeVar("T")


class TrioPortal:
    """``with TrioPortal() as portal: portal.run(async_fn, *args)``.

    Each call is bounded by ``timeout`` seconds (``trio.TooSlowError`` past it), so a backend that
    never answers cannot hang the caller. Must not be used from inside a trio loop's own thread.
    """

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> TrioPortal:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def nursery(self) -> trio.Nursery:
        """The loop's nursery: tasks started here run until :meth:`stop`."""
        if self._nursery is None:
            raise RuntimeError("the portal is not running")
        return self._nursery

    def start(self) -> None:
        ready = threading.Event()

        def main() -> None:
            try:
                trio.run(self._main, ready)
            except BaseException as exc:
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=main, name="fsm-session-portal", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error is not None:
            raise RuntimeError("the portal's trio loop failed to start") from self._error

    async def _main(self, ready: threading.Event) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            ready.set()
            await trio.sleep_forever()

    def run(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """``await fn(*args)`` on the loop, within ``timeout`` seconds; its result or error."""
        if self._token is None:
            raise RuntimeError("the portal is not running")

        async def bounded() -> T:
            with trio.fail_after(self.timeout):
                return await fn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def stop(self) -> None:
        """Cancel everything on the loop and wait for the thread to end."""
        if self._token is not None and self._nursery is not None:
            nursery = self._nursery
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(nursery.cancel_scope.cancel, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._token = None
        self._nursery = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("the portal's trio loop failed") from error
