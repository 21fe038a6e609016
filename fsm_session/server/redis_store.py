"""The Redis store: participants and sessions shared by every node that names one database.

Each ``serve()`` call with ``store="redis://HOST:PORT/DB"`` is a *node* with a random ID. What
lives in Redis, and the scripts that change it atomically, are in
:mod:`fsm_session.server.redis_scripts`. This module holds what one node adds:

* the connections of this node that hold a session (``conn`` IDs), so that a login elsewhere can
  end one (R17): the script that opens a session publishes ``switched <conn> <pid>`` on the
  holding node's channel, and the node's subscriber tells that connection (P12). A connection
  is registered *before* its open or resume script is sent, as pending: a ``switched`` that
  arrives before the script's reply is kept and told once the reply is in;
* a lease: every ``lease / 3`` seconds the node extends its entry in ``nodes`` and releases the
  sessions of nodes whose lease lapsed (killed, or cut off from Redis), which then stay resumable
  on any node for the grace period;
* the releases not known to be done, tried again at each lease tick: a drop that failed or was
  cancelled, and an open or resume whose reply never came (the script may have run).

Every call to Redis has a short timeout and no automatic retry (a retried script could run
twice); a failure raises :class:`~fsm_session.server.store.StoreUnavailable` (P17). Needs the
``redis`` extra (``coredis``).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import coredis
import trio
from coredis.exceptions import RedisError, ResponseError
from coredis.retry import NoRetryPolicy

from fsm_session.models import Participant, ParticipantInfo
from fsm_session.server import redis_scripts as lua
from fsm_session.server.registry import Holder, SessionRecord, random_participant_id
from fsm_session.server.store import RedisURL, SessionStore, SessionView, StoreUnavailable

__all__ = ["RedisStore"]

logger = logging.getLogger("fsm_session.server")

DEFAULT_LEASE = 3.0
"""Seconds a node's lease lasts; it is extended every third of that."""
RESUBSCRIBE_FIRST, RESUBSCRIBE_LAST = 0.1, 2.0
"""Seconds between attempts to get a lost channel back: doubling from the first to the last."""
CALL_TIMEOUT = 1.0
"""Seconds one call to Redis may take before the store counts Redis unavailable."""


@dataclass(eq=False, slots=True)
class RedisRecord(SessionRecord):
    """A session as one holder of this node sees it, with the ``conn`` ID it holds it under."""

    conn: str = ""


class RedisStore(SessionStore):
    """Sessions in Redis; see the module's docstring. Make one with :meth:`connect`."""

    def __init__(
        self,
        client: coredis.Redis[str],
        *,
        resume_grace: float,
        prefix: str = "fsm:",
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self.resume_grace = resume_grace
        self.prefix = prefix
        self.lease = lease
        self.node = secrets.token_hex(8)
        self._client = client
        self._grace_ms = str(max(1, round(resume_grace * 1000)))
        self._scripts = {
            name: client.register_script(getattr(lua, name))
            for name in ("OPEN", "SET_FIELD", "END", "DROP", "RESUME", "HEARTBEAT", "LEAVE")
        }
        # The connections of this node holding a session, by conn ID.
        self._holders: dict[str, tuple[Holder, RedisRecord]] = {}
        # Those of them whose open or resume has not returned yet, with the participant IDs
        # they were told ``switched`` for meanwhile.
        self._pending: dict[str, set[str]] = {}
        # Releases not known to be done: tried again each tick (a participant ID of "" is
        # read from the record's external ID, in the script).
        self._unreleased: dict[str, RedisRecord] = {}
        self.subscribed = trio.Event()

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: RedisURL, *, resume_grace: float) -> AsyncIterator[RedisStore]:
        """A store on ``url`` (see :func:`~fsm_session.server.store.check_store_url`), connected
        inside the block; on the way out the node leaves, releasing whatever it still holds."""
        client: coredis.Redis[str] = coredis.Redis.from_url(
            url.url,
            decode_responses=True,
            stream_timeout=CALL_TIMEOUT,
            connect_timeout=CALL_TIMEOUT,
            retry_policy=NoRetryPolicy(),
        )
        async with client:
            store = cls(client, resume_grace=resume_grace, prefix=url.prefix, lease=url.lease)
            try:
                yield store
            finally:
                # Unreachable: its lease lapses and another node releases what it held.
                with (
                    trio.CancelScope(shield=True),
                    trio.move_on_after(CALL_TIMEOUT),
                    contextlib.suppress(StoreUnavailable),
                ):
                    await store._call("LEAVE", store.node, store._grace_ms)

    # ----------------------------------------------------------------------------------------
    # The store's operations.
    # ----------------------------------------------------------------------------------------

    async def open(
        self, holder: Holder, info: ParticipantInfo | None, token_external_id: str | None
    ) -> SessionRecord:
        if info is None:
            external_id = None
            wanted = ParticipantInfo(name=None)
        else:
            external_id = info.external_id if info.external_id is not None else token_external_id
            wanted = ParticipantInfo(info.name, external_id, info.avatar_url)
        new_pid = random_participant_id()
        # With an external ID, the participant ID is the one Redis knows (read by the DROP
        # of a failed open from the external ID): "" until the reply says.
        record = RedisRecord(
            Participant("" if external_id else new_pid, wanted),
            external_id,
            token_external_id,
            holder,
        )
        conn = record.conn = secrets.token_hex(8)
        self._begin(record)
        try:
            pid, local_conn = await self._call(
                "OPEN",
                external_id or "",
                new_pid,
                lua.info_json(wanted),
                lua.tx_field(token_external_id),
                self.node,
                conn,
            )
        except BaseException:
            self._abandon(record)
            raise
        if local_conn:
            self._switched(local_conn, pid)
        record.participant = Participant(pid, wanted)
        self._settle(record)
        return record

    async def update(self, record: SessionRecord, name: str | None, avatar_url: str | None) -> bool:
        current = record.participant.info
        info = ParticipantInfo(
            name=current.name if name is None else name,
            external_id=current.external_id,
            avatar_url=current.avatar_url if avatar_url is None else avatar_url,
        )
        if not await self._set(record, "info", lua.info_json(info)):
            return False
        record.participant = Participant(record.participant.id, info)
        return True

    async def retoken(self, record: SessionRecord, token_external_id: str | None) -> None:
        if await self._set(record, "tx", lua.tx_field(token_external_id)):
            record.token_external_id = token_external_id

    async def end(self, record: SessionRecord) -> None:
        conn = _conn(record)
        await self._call("END", record.participant.id, self.node, conn)
        self._forget(record)

    async def drop(self, record: SessionRecord) -> None:
        own = _own(record)
        if own.holder is None:
            return  # Dropped or ended already, or switched: it holds nothing.
        self._forget(own)
        # Queued first: a drop that fails, or is cancelled by its connection's deadline, is
        # made by the next tick.
        self._unreleased[own.conn] = own
        await self._release(own)

    async def resume(
        self, holder: Holder, participant_id: str, token_external_id: str | None
    ) -> SessionRecord | None:
        record = RedisRecord(
            Participant(participant_id, ParticipantInfo(name=None)), None, token_external_id, holder
        )
        conn = record.conn = secrets.token_hex(8)
        self._begin(record)
        try:
            info = await self._resume(participant_id, token_external_id, conn)
        except BaseException:
            self._abandon(record)
            raise
        if info is None:
            self._abandon(record, released=True)
            return None
        record.participant = Participant(participant_id, info)
        record.external_id = info.external_id
        self._settle(record)
        return record

    async def _resume(
        self, participant_id: str, token_external_id: str | None, conn: str
    ) -> ParticipantInfo | None:
        stale = ""
        for _ in range(2):
            answer = await self._call(
                "RESUME", participant_id, lua.tx_field(token_external_id), self.node, conn, stale
            )
            if answer[0] == "ok":
                return lua.read_info(answer[1])
            if answer[0] == "busy":
                raise StoreUnavailable(
                    "the session is held on another node that may have just failed; its lease "
                    "has not lapsed yet"
                )
            # Held by a connection of this node that is gone (none whose open or resume is in
            # flight: those are in _holders too): take it over.
            if answer[0] == "held" and answer[1] not in self._holders:
                stale = answer[1]
                self._unreleased.pop(stale, None)
                continue
            return None
        return None

    async def sessions(self) -> list[SessionView]:
        views = []
        try:
            async for key in self._client.scan_iter(match=f"{self.prefix}s:*", count=500):
                try:
                    fields = await self._client.hmget(key, ["info", "node"])
                    if fields[0] is None:
                        continue  # Gone since the scan saw it.
                    info = lua.read_info(fields[0])
                except (ResponseError, ValueError, KeyError, TypeError) as exc:
                    # Nothing from Redis is trusted: one bad key must not hide the others.
                    logger.warning("skipping %s: not a session record (%s)", key, f"{exc!r}")
                    continue
                pid = key[len(self.prefix) + 2 :]
                node = fields[1] or None
                views.append(SessionView(Participant(pid, info), node is not None, node))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        return views

    # ----------------------------------------------------------------------------------------
    # The node's background work.
    # ----------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the lease and listen on the node's channel until cancelled. Reports started
        once subscribed, or after a second when Redis cannot be reached (it keeps trying)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen)
            await self._tick()
            with trio.move_on_after(CALL_TIMEOUT):
                await self.subscribed.wait()
            task_status.started()
            while True:
                await trio.sleep(self.lease / 3)
                await self._tick()

    async def _tick(self) -> None:
        try:
            await self._call("HEARTBEAT", self.node, str(round(self.lease * 1000)), self._grace_ms)
            for record in list(self._unreleased.values()):
                await self._release(record)
        except StoreUnavailable as exc:
            logger.warning("node %s: cannot reach the session store: %s", self.node, f"{exc}")

    async def _listen(self) -> None:
        channel = f"{self.prefix}node:{self.node}"
        delay, lost = RESUBSCRIBE_FIRST, False
        while True:
            try:
                # No retry policy of coredis's own: a lost channel comes back through this
                # loop, which then catches up on what it may have missed.
                async with self._client.pubsub(
                    channels=[channel], ignore_subscribe_messages=True, retry_policy=None
                ) as pubsub:
                    if self.subscribed.is_set():
                        await self._catch_up()
                    self.subscribed.set()
                    delay, lost = RESUBSCRIBE_FIRST, False
                    async for message in pubsub:
                        self._on_message(message["data"])
            except* anyio.ClosedResourceError:
                # coredis 6.9 raises this from its cleanup when the subscriber is cancelled,
                # in place of the cancellation: the checkpoint below delivers that again.
                pass
            except* (RedisError, OSError, TimeoutError) as group:
                if not lost:  # Once per outage, not once per attempt.
                    why = f"{group.exceptions[0]}"  # Text: no record keeps the exception alive.
                    logger.warning("node %s: lost its channel: %s", self.node, why)
                lost = True
            await trio.sleep(delay)
            delay = min(RESUBSCRIBE_LAST, 2 * delay)

    async def _catch_up(self) -> None:
        """After the channel was lost: end the connections whose session another node has
        taken meanwhile (the ``switched`` published then reached nobody)."""
        held = [
            (conn, record.participant.id)
            for conn, (_, record) in self._holders.items()
            if conn not in self._pending
        ]
        async with self._client.pipeline(transaction=False) as pipe:  # One round trip.
            asked = [pipe.hmget(f"{self.prefix}s:{pid}", ["node", "conn"]) for _, pid in held]
        for (conn, pid), request in zip(held, asked, strict=True):
            node, holder = await request
            if node and (node, holder) != (self.node, conn):
                self._switched(conn, pid)

    def _on_message(self, data: Any) -> None:
        kind, _, rest = str(data).partition(" ")
        conn, _, pid = rest.partition(" ")
        if kind == "switched":  # Anything else on our channel is not ours to act on.
            self._switched(conn, pid)

    def _switched(self, conn: str, pid: str) -> None:
        pending = self._pending.get(conn)
        if pending is not None:
            pending.add(pid)  # Told once its open or resume returns (see _settle).
            return
        entry = self._holders.get(conn)
        if entry is not None and entry[1].participant.id == pid:
            del self._holders[conn]
            entry[1].holder = None
            entry[0].session_ended("switched")

    # ----------------------------------------------------------------------------------------

    def _begin(self, record: RedisRecord) -> None:
        """Register a connection whose open or resume is about to be sent, as pending."""
        self._holders[record.conn] = (_holder(record), record)
        self._pending[record.conn] = set()

    def _settle(self, record: RedisRecord) -> None:
        """Its open or resume returned: it holds the session, unless switched meanwhile."""
        if record.participant.id in self._pending.pop(record.conn):
            self._switched(record.conn, record.participant.id)

    def _abandon(self, record: RedisRecord, *, released: bool = False) -> None:
        """Its open or resume failed: forget the connection. Unless ``released`` (the script
        answered, holding nothing), the script may have run with its reply lost: release
        what it may hold at the next tick (a DROP of another connection changes nothing)."""
        self._pending.pop(record.conn, None)
        self._forget(record)
        record.holder = None
        if not released:
            self._unreleased[record.conn] = record

    async def _release(self, record: RedisRecord) -> None:
        pid, ext = record.participant.id, record.external_id or ""
        await self._call("DROP", pid, self.node, record.conn, self._grace_ms, ext)
        self._unreleased.pop(record.conn, None)

    def _forget(self, record: SessionRecord) -> None:
        entry = self._holders.get(_conn(record))
        if entry is not None and entry[1] is record:
            del self._holders[_conn(record)]
        record.holder = None

    async def _set(self, record: SessionRecord, field: str, value: str) -> bool:
        done = await self._call(
            "SET_FIELD", record.participant.id, self.node, _conn(record), field, value
        )
        return bool(done)

    async def _call(self, script: str, *args: str) -> Any:
        try:
            with trio.fail_after(2 * CALL_TIMEOUT):
                return await self._scripts[script](args=[self.prefix, *args])
        except (RedisError, OSError, TimeoutError, trio.TooSlowError) as exc:
            raise StoreUnavailable(f"Redis: {exc or type(exc).__name__}") from exc


def _holder(record: RedisRecord) -> Holder:
    if record.holder is None:
        raise TypeError("a session record without its holder")
    return record.holder


def _own(record: SessionRecord) -> RedisRecord:
    if not isinstance(record, RedisRecord):
        raise TypeError("the Redis store was handed a record it did not make")
    return record


def _conn(record: SessionRecord) -> str:
    return _own(record).conn
