"""The Redis store: participants and sessions shared by every node that names one database.

Each ``serve()`` call with ``store="redis://HOST:PORT/DB"`` is a *node* with a random ID. What
lives in Redis, and the scripts that change it atomically, are in
:mod:`fsm_session.server.redis_scripts`. This module holds what one node adds:

* the connections of this node that hold a session (``conn`` IDs), so that a login elsewhere can
  end one (R17): the script that opens a session publishes ``switched <conn> <pid>`` on the
  holding node's channel, and the node's subscriber tells that connection (P12);
* a lease: every ``lease / 3`` seconds the node extends its entry in ``nodes`` and releases the
  sessions of nodes whose lease lapsed (killed, or cut off from Redis), which then stay resumable
  on any node for the grace period;
* the releases that failed while Redis was unreachable, tried again at each lease tick.

Every call to Redis has a short timeout and no automatic retry (a retried script could run
twice); a failure raises :class:`~fsm_session.server.store.StoreUnavailable` (P17). Needs the
``redis`` extra (``coredis``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import coredis
import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from fsm_session.models import Participant, ParticipantInfo
from fsm_session.server import redis_scripts as lua
from fsm_session.server.registry import Holder, SessionRecord, random_participant_id
from fsm_session.server.store import RedisURL, SessionStore, SessionView, StoreUnavailable

__all__ = ["RedisStore"]

logger = logging.getLogger("fsm_session.server")

DEFAULT_LEASE = 3.0
"""Seconds a node's lease lasts; it is extended every third of that."""
CALL_TIMEOUT = 1.0
"""Seconds one call to Redis may take before the store counts Redis unavailable."""


@dataclass(eq=False, slots=True)
class RedisRecord(SessionRecord):
    """A session as one holder of this node sees it, with the ``conn`` ID it holds it under."""

    conn: str = ""


def _tx(token_external_id: str | None) -> str:
    return "" if token_external_id is None else "=" + token_external_id


def _info_json(info: ParticipantInfo) -> str:
    return json.dumps(
        {"name": info.name, "external_id": info.external_id, "avatar_url": info.avatar_url}
    )


def _info(text: str) -> ParticipantInfo:
    data = json.loads(text)
    return ParticipantInfo(
        name=data["name"], external_id=data["external_id"], avatar_url=data["avatar_url"]
    )


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
        # Releases (drops) that failed while Redis was unreachable: tried again each tick.
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
        conn = secrets.token_hex(8)
        pid, local_conn = await self._call(
            "OPEN",
            external_id or "",
            random_participant_id(),
            _info_json(wanted),
            _tx(token_external_id),
            self.node,
            conn,
        )
        if local_conn:
            self._switched(local_conn, pid)
        record = RedisRecord(Participant(pid, wanted), external_id, token_external_id, holder)
        record.conn = conn
        self._holders[conn] = (holder, record)
        return record

    async def update(self, record: SessionRecord, name: str | None, avatar_url: str | None) -> bool:
        current = record.participant.info
        info = ParticipantInfo(
            name=current.name if name is None else name,
            external_id=current.external_id,
            avatar_url=current.avatar_url if avatar_url is None else avatar_url,
        )
        if not await self._set(record, "info", _info_json(info)):
            return False
        record.participant = Participant(record.participant.id, info)
        return True

    async def retoken(self, record: SessionRecord, token_external_id: str | None) -> None:
        if await self._set(record, "tx", _tx(token_external_id)):
            record.token_external_id = token_external_id

    async def end(self, record: SessionRecord) -> None:
        conn = _conn(record)
        await self._call("END", record.participant.id, self.node, conn)
        self._forget(record)

    async def drop(self, record: SessionRecord) -> None:
        conn = _conn(record)
        self._forget(record)
        try:
            await self._call("DROP", record.participant.id, self.node, conn, self._grace_ms)
        except StoreUnavailable:
            self._unreleased[conn] = record  # type: ignore[assignment]
            raise

    async def resume(
        self, holder: Holder, participant_id: str, token_external_id: str | None
    ) -> SessionRecord | None:
        conn = secrets.token_hex(8)
        stale = ""
        for _ in range(2):
            answer = await self._call(
                "RESUME", participant_id, _tx(token_external_id), self.node, conn, stale
            )
            if answer[0] == "ok":
                break
            if answer[0] == "busy":
                raise StoreUnavailable(
                    "the session is held on another node that may have just failed; its lease "
                    "has not lapsed yet"
                )
            if answer[0] == "held" and answer[1] not in self._holders:
                stale = answer[1]  # Held by a connection of ours that is gone: take it over.
                self._unreleased.pop(stale, None)
                continue
            return None
        else:
            return None
        info = _info(answer[1])
        record = RedisRecord(
            Participant(participant_id, info), info.external_id, token_external_id, holder
        )
        record.conn = conn
        self._holders[conn] = (holder, record)
        return record

    async def sessions(self) -> list[SessionView]:
        views = []
        try:
            async for key in self._client.scan_iter(match=f"{self.prefix}s:*", count=500):
                fields = await self._client.hmget(key, ["info", "node"])
                if fields[0] is None:
                    continue  # Gone since the scan saw it.
                pid = key[len(self.prefix) + 2 :]
                node = fields[1] or None
                views.append(
                    SessionView(Participant(pid, _info(fields[0])), node is not None, node)
                )
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
            for conn, record in list(self._unreleased.items()):
                pid = record.participant.id
                await self._call("DROP", pid, self.node, conn, self._grace_ms)
                del self._unreleased[conn]
        except StoreUnavailable as exc:
            logger.warning("node %s: cannot reach the session store: %s", self.node, exc)

    async def _listen(self) -> None:
        channel = f"{self.prefix}node:{self.node}"
        while True:
            try:
                async with self._client.pubsub(
                    channels=[channel], ignore_subscribe_messages=True
                ) as pubsub:
                    self.subscribed.set()
                    async for message in pubsub:
                        self._on_message(message["data"])
            except* anyio.ClosedResourceError:
                # coredis 6.9 raises this from its cleanup when the subscriber is cancelled,
                # in place of the cancellation: the checkpoint below delivers that again.
                pass
            except* (RedisError, OSError, TimeoutError) as group:
                logger.warning("node %s: lost its channel: %s", self.node, group.exceptions[0])
            await trio.sleep(0.1)

    def _on_message(self, data: Any) -> None:
        kind, _, rest = str(data).partition(" ")
        conn, _, pid = rest.partition(" ")
        if kind == "switched":  # Anything else on our channel is not ours to act on.
            self._switched(conn, pid)

    def _switched(self, conn: str, pid: str) -> None:
        entry = self._holders.get(conn)
        if entry is not None and entry[1].participant.id == pid:
            del self._holders[conn]
            entry[0].session_ended("switched")

    # ----------------------------------------------------------------------------------------

    def _forget(self, record: SessionRecord) -> None:
        entry = self._holders.get(_conn(record))
        if entry is not None and entry[1] is record:
            del self._holders[_conn(record)]

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


def _conn(record: SessionRecord) -> str:
    if not isinstance(record, RedisRecord):
        raise TypeError("the Redis store was handed a record it did not make")
    return record.conn
