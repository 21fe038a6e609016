"""Watching a server's sessions, read-only: what ``serve(observer=...)`` tells an observer.

:class:`ObservedStore` stands in front of the server's store. Every operation goes to the store
unchanged; one that succeeds is then told to the observer as a change (``opened``,
``updated``, ``closed``, ``switched``, ``dropped``, ``resumed``). What this node cannot see
happen (a grace that runs out, a session opened, moved or closed on another node of a shared
store) the observer learns from :meth:`ObservedStore.watch`, which lists the store's sessions
every ``interval`` seconds. The observer is called synchronously and must not raise; it can
change nothing (it gets records and views, not the store).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Protocol

import trio

from fsm_session.models import ParticipantInfo
from fsm_session.server.registry import Holder, SessionRecord
from fsm_session.server.store import SessionStore, SessionView, StoreUnavailable

__all__ = ["ObservedStore", "Observer"]

log = logging.getLogger("fsm_session.server")


class Observer(Protocol):
    """Told of the sessions of a server (the live inspector of ``fsm-session serve --inspect``).

    ``session_changed``: a change this node made, with the session's record. ``sessions_seen``:
    every session the store holds now, on any node (``node`` is ``None`` for this node's own);
    sessions in ``skip`` changed while the list was being read, so it may be stale for them.
    """

    def session_changed(self, change: str, record: SessionRecord) -> None: ...

    def sessions_seen(self, views: Sequence[SessionView], skip: Collection[str]) -> None: ...


class ObservedStore(SessionStore):
    """``store``, with each change told to ``observer``; see the module's docstring."""

    def __init__(self, store: SessionStore, observer: Observer, interval: float = 1.0) -> None:
        self.store = store
        self.observer = observer
        self.interval = interval
        self.resume_grace = store.resume_grace
        self._live: dict[str, SessionRecord] = {}
        # Those of _live whose last change here was a drop: held by no connection.
        self._released: set[str] = set()
        self._touched: set[str] = set()

    def _tell(self, change: str, record: SessionRecord) -> None:
        pid = record.participant.id
        self._touched.add(pid)
        if change == "dropped":
            self._released.add(pid)
        else:
            self._released.discard(pid)
        if change in ("closed", "switched"):
            if self._live.get(pid) is record:
                del self._live[pid]
        else:
            self._live[pid] = record
        try:
            self.observer.session_changed(change, record)
        except Exception:  # An observer's failure must not fail the client's request.
            log.exception("the session observer failed")

    async def open(
        self, holder: Holder, info: ParticipantInfo | None, token_external_id: str | None
    ) -> SessionRecord:
        record = await self.store.open(holder, info, token_external_id)
        if record.holder is None:
            return record  # Switched before its open returned: the login that won is told.
        pid = record.participant.id
        previous = self._live.get(pid)
        if previous is not None and previous is not record and pid not in self._released:
            self._tell("switched", previous)  # the same participant, logged in again (P12)
        self._tell("opened", record)
        return record

    async def update(self, record: SessionRecord, name: str | None, avatar_url: str | None) -> bool:
        done = await self.store.update(record, name, avatar_url)
        if done:
            self._tell("updated", record)
        return done

    async def retoken(self, record: SessionRecord, token_external_id: str | None) -> None:
        await self.store.retoken(record, token_external_id)

    async def end(self, record: SessionRecord) -> None:
        await self.store.end(record)
        self._tell("closed", record)

    async def drop(self, record: SessionRecord) -> None:
        held = record.holder is not None  # Not when switched: the session is another's now.
        await self.store.drop(record)
        if held:
            self._tell("dropped", record)

    async def resume(
        self, holder: Holder, participant_id: str, token_external_id: str | None
    ) -> SessionRecord | None:
        record = await self.store.resume(holder, participant_id, token_external_id)
        if record is not None and record.holder is not None:
            self._tell("resumed", record)
        return record

    async def sessions(self) -> list[SessionView]:
        return await self.store.sessions()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The store's own background work and :meth:`watch`, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.store.run)
            nursery.start_soon(self.watch)
            task_status.started()

    async def watch(self) -> None:
        """List the store's sessions for the observer every ``interval`` seconds, until
        cancelled; a store that cannot answer now is asked again next time."""
        while True:
            self._touched = set()
            own = getattr(self.store, "node", None)
            try:
                views = [
                    replace(view, node=None) if own is not None and view.node == own else view
                    for view in await self.store.sessions()
                ]
            except StoreUnavailable as error:
                log.debug("the observer's list of sessions: %s", error)
            except Exception:  # Watching must never take the server down.
                log.exception("the observer's list of sessions failed")
            else:
                known = {view.participant.id for view in views}
                for pid in [pid for pid in self._live if pid not in known]:
                    if pid not in self._touched:
                        del self._live[pid]  # ended where this node could not see it
                        self._released.discard(pid)
                try:
                    self.observer.sessions_seen(views, frozenset(self._touched))
                except Exception:
                    log.exception("the session observer failed")
            await trio.sleep(self.interval)
