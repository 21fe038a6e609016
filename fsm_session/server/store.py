"""Where the reference server keeps its participants and sessions: the store interface.

The protocol handlers (:mod:`fsm_session.server.handlers`) ask a :class:`SessionStore` for what
they need, and await every answer, so that a store may live in another process:

* :class:`MemoryStore`, the default: the :class:`~fsm_session.server.registry.Registry` of one
  ``serve()`` call, in its memory. Its calls never wait.
* :class:`~fsm_session.server.redis_store.RedisStore` (``redis://HOST:PORT/DB``): participants
  and sessions in Redis, shared by every node that names the same database, so that a session
  outlives the process that opened it (``specs/protocol.md``, "More than one node").

A store that cannot do what is asked (Redis unreachable) raises :class:`StoreUnavailable`: the
request was not carried out, or was with its answer lost, never half done; the handler answers
``store_unavailable`` (P17) and the connection goes on.

:meth:`SessionStore.sessions` lists the live sessions for read-only observers (an inspector).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio

from fsm_session.models import Participant, ParticipantInfo
from fsm_session.server.config import ConfigurationError
from fsm_session.server.registry import Holder, Registry, SessionRecord

__all__ = [
    "STORE_ENV",
    "MemoryStore",
    "RedisURL",
    "SessionStore",
    "SessionView",
    "StoreUnavailable",
    "check_store_url",
    "open_store",
    "store_from_env",
]

STORE_ENV = "FSM_SESSION_STORE"
"""The environment variable that names the store of ``fsm-session serve`` (``memory`` or a
``redis://`` URL)."""


class StoreUnavailable(RuntimeError):
    """The store cannot carry out the operation now (its server is unreachable, or it cannot
    settle who holds a session yet). Nothing was changed; the client may retry (P17)."""


@dataclass(frozen=True, slots=True)
class SessionView:
    """What a read-only observer may see of one session."""

    participant: Participant
    held: bool
    """``True`` while a connection holds it; ``False`` while it waits to be resumed."""
    node: str | None
    """The node holding it (the Redis store), or ``None``."""


class SessionStore(ABC):
    """The operations the handlers need; see the module's docstring.

    Every method may raise :class:`StoreUnavailable`, having changed nothing. A
    :class:`~fsm_session.server.registry.SessionRecord` handed out is the holder's own view of its
    session; only the store changes it.
    """

    resume_grace: float

    @abstractmethod
    async def open(
        self, holder: Holder, info: ParticipantInfo | None, token_external_id: str | None
    ) -> SessionRecord:
        """Open a session for ``holder`` as ``info`` (a ghost for ``None``); another holder of
        the same participant is told ``session_ended("switched")`` (R17, P12)."""

    @abstractmethod
    async def update(self, record: SessionRecord, name: str | None, avatar_url: str | None) -> bool:
        """Change the name and/or avatar URL (``None`` keeps one); ``False`` when the record's
        holder no longer holds the session (it was taken away meanwhile)."""

    @abstractmethod
    async def retoken(self, record: SessionRecord, token_external_id: str | None) -> None:
        """The holder's access token was replaced by one for ``token_external_id``."""

    @abstractmethod
    async def end(self, record: SessionRecord) -> None:
        """Forget the session for good (``close``, token expiry)."""

    @abstractmethod
    async def drop(self, record: SessionRecord) -> None:
        """The holder's connection ended without ``close``: keep the session resumable for
        :attr:`resume_grace` seconds (P9)."""

    @abstractmethod
    async def resume(
        self, holder: Holder, participant_id: str, token_external_id: str | None
    ) -> SessionRecord | None:
        """Give ``holder`` the dropped session of ``participant_id``, or ``None`` (R14)."""

    @abstractmethod
    async def sessions(self) -> list[SessionView]:
        """The sessions that exist now, held or resumable (for read-only observers)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The store's own background work, until cancelled (none for the memory store)."""
        task_status.started()
        await trio.sleep_forever()


class MemoryStore(SessionStore):
    """The embedded store: one :class:`Registry`, in this process, on trio's clock."""

    def __init__(self, *, resume_grace: float, clock: Callable[[], float] = trio.current_time):
        self.resume_grace = resume_grace
        self.registry = Registry(resume_grace=resume_grace)
        self._clock = clock

    async def open(
        self, holder: Holder, info: ParticipantInfo | None, token_external_id: str | None
    ) -> SessionRecord:
        return self.registry.open(holder, info, token_external_id, now=self._clock())

    async def update(self, record: SessionRecord, name: str | None, avatar_url: str | None) -> bool:
        self.registry.update(record, name, avatar_url)
        return True

    async def retoken(self, record: SessionRecord, token_external_id: str | None) -> None:
        self.registry.retoken(record, token_external_id)

    async def end(self, record: SessionRecord) -> None:
        self.registry.end(record)

    async def drop(self, record: SessionRecord) -> None:
        self.registry.drop(record, now=self._clock())

    async def resume(
        self, holder: Holder, participant_id: str, token_external_id: str | None
    ) -> SessionRecord | None:
        return self.registry.resume(holder, participant_id, token_external_id, now=self._clock())

    async def sessions(self) -> list[SessionView]:
        self.registry.purge(self._clock())
        return [
            SessionView(record.participant, record.holder is not None, None)
            for record in self.registry.records()
        ]


def store_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The store named by ``FSM_SESSION_STORE`` in ``environ`` (default: ``os.environ``), or
    ``None`` when it is unset or empty (the memory store)."""
    value = (os.environ if environ is None else environ).get(STORE_ENV, "").strip()
    return value or None


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A Redis store URL read: the server's URL, the key prefix, the node lease in seconds."""

    url: str
    prefix: str = "fsm:"
    lease: float = 3.0


def check_store_url(url: object) -> RedisURL | None:
    """``None`` for the memory store (``None`` or ``"memory"``), else the Redis store's URL read:
    ``redis://HOST:PORT/DB[?prefix=P&lease=SECONDS]``. Raises
    :class:`~fsm_session.server.config.ConfigurationError` for anything else."""
    if url is None or url == "memory":
        return None
    if not isinstance(url, str):
        raise ConfigurationError(
            f"the store is a URL or a SessionStore, not {type(url).__name__}: "
            "use 'memory' or redis://HOST:PORT/DB"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigurationError(
            f"unknown session store {url!r}: use 'memory' or redis://HOST:PORT/DB"
        )
    options = dict(parse_qsl(parts.query))
    prefix = options.pop("prefix", "fsm:")
    try:
        lease = float(options.pop("lease", "3"))
    except ValueError:
        lease = math.nan
    if not 0 < lease < math.inf:
        raise ConfigurationError("the store's lease must be a positive number of seconds")
    if not prefix:
        raise ConfigurationError("the store's key prefix must not be empty")
    plain = urlunsplit(parts._replace(query=urlencode(options)))
    return RedisURL(plain, prefix, lease)


@asynccontextmanager
async def open_store(url: str | None, *, resume_grace: float) -> AsyncIterator[SessionStore]:
    """The store ``url`` names, ready, with its background work running inside the block.

    ``None`` or ``"memory"``: a :class:`MemoryStore`. ``redis://HOST:PORT/DB``: a
    :class:`~fsm_session.server.redis_store.RedisStore` (needs the ``redis`` extra). Raises
    :class:`~fsm_session.server.config.ConfigurationError` for any other URL.
    """
    redis_url = check_store_url(url)
    if redis_url is None:
        yield MemoryStore(resume_grace=resume_grace)
        return
    try:
        from fsm_session.server.redis_store import RedisStore
    except ImportError as exc:  # coredis is an optional dependency.
        raise ConfigurationError(
            "the Redis store needs coredis: pip install 'fsm_session[redis]'"
        ) from exc
    async with RedisStore.connect(redis_url, resume_grace=resume_grace) as store:
        yield store
