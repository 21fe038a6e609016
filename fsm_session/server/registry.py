"""What the reference server remembers: participant IDs, and the sessions that exist.

One registry lives as long as one :func:`~fsm_session.server.serve` call, in memory:

* the same external ID always gets the same participant ID (rule R4 of ``specs/session.md``);
  a participant without one (a ghost, or a named participant whose token names nobody) gets a
  fresh random ID at each open;
* at most one session exists per participant ID. Opening a participant whose session is held by
  another connection moves the session here and tells the other holder it was switched (R17);
* a session whose connection ended without ``close`` is kept, held by nobody, for
  ``resume_grace`` seconds; ``resume`` takes it up again (P9).

Nothing here does I/O or reads a clock: callers pass ``now``, a monotonic time in seconds.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fsm_session.models import Participant, ParticipantInfo

__all__ = ["Holder", "Observer", "Registry", "SessionRecord", "random_participant_id"]


class Holder(Protocol):
    """The connection that holds a session; told when another connection takes it away."""

    def session_ended(self, reason: str) -> None:
        """The session this holder held has ended for ``reason`` (``"switched"``)."""


class Observer(Protocol):
    """Told of every change of the sessions, synchronously (the live inspector). Must not raise.

    ``change`` is ``opened``, ``updated``, ``closed``, ``switched`` (taken by another
    connection), ``dropped`` (waits to be resumed), ``resumed`` or ``expired``.
    """

    def session_changed(self, change: str, record: SessionRecord) -> None: ...


def random_participant_id() -> str:
    """A fresh participant ID nobody can guess (resuming a ghost needs only its ID)."""
    return secrets.token_hex(16)


@dataclass(eq=False, slots=True)
class SessionRecord:
    """One session the server knows."""

    participant: Participant
    external_id: str | None
    """The participant's external ID, which never changes; ``None`` for anonymous participants."""
    token_external_id: str | None
    """The external ID of the holder's access token: only a token with the same one may resume
    the session (P9)."""
    holder: Holder | None
    """The connection holding the session, or ``None`` while it waits to be resumed."""
    dropped_at: float | None = None
    """When its connection ended without ``close`` (monotonic seconds), or ``None``."""


class Registry:
    """The participants and sessions of one server; see the module's docstring."""

    def __init__(
        self,
        *,
        resume_grace: float,
        new_id: Callable[[], str] = random_participant_id,
        observer: Observer | None = None,
    ) -> None:
        self.resume_grace = resume_grace
        self.observer = observer
        self._new_id = new_id
        self._ids: dict[str, str] = {}
        self._sessions: dict[str, SessionRecord] = {}
        # Dropped sessions in the order they dropped, which is also the order they expire in,
        # since every one has the same grace: purging only ever looks at the front.
        self._dropped: dict[str, SessionRecord] = {}

    def __len__(self) -> int:
        """The number of sessions, held or waiting to be resumed (expired ones may linger until
        the next call that purges)."""
        return len(self._sessions)

    def participant_id(self, external_id: str | None) -> str:
        """The participant ID of ``external_id``: the same one every time; a fresh one for
        ``None``."""
        if external_id is None:
            return self._new_id()
        pid = self._ids.get(external_id)
        if pid is None:
            pid = self._ids[external_id] = self._new_id()
        return pid

    def get(self, participant_id: str) -> SessionRecord | None:
        """The session of ``participant_id``, held or resumable, if there is one."""
        return self._sessions.get(participant_id)

    def open(
        self,
        holder: Holder,
        info: ParticipantInfo | None,
        token_external_id: str | None,
        *,
        now: float,
    ) -> SessionRecord:
        """Open a session for ``holder``: as ``info``, or a ghost when ``info`` is ``None``.

        The participant's external ID is ``info.external_id``, or the token's when that is
        ``None``; a ghost has none. When another connection holds this participant's session,
        it is told ``session_ended("switched")`` and loses it (R17); a session waiting to be
        resumed is replaced. The caller has checked ``info`` (R2, R3).
        """
        self.purge(now)
        if info is None:
            external_id = None
            participant_info = ParticipantInfo(name=None)
        else:
            external_id = info.external_id if info.external_id is not None else token_external_id
            participant_info = ParticipantInfo(
                name=info.name, external_id=external_id, avatar_url=info.avatar_url
            )
        pid = self.participant_id(external_id)
        previous = self._sessions.pop(pid, None)
        if previous is not None:
            self._dropped.pop(pid, None)
            if previous.holder is not None and previous.holder is not holder:
                previous.holder.session_ended("switched")
            previous.holder = None
            self._tell("switched", previous)
        record = SessionRecord(
            participant=Participant(id=pid, info=participant_info),
            external_id=external_id,
            token_external_id=token_external_id,
            holder=holder,
        )
        self._sessions[pid] = record
        self._tell("opened", record)
        return record

    def update(self, record: SessionRecord, name: str | None, avatar_url: str | None) -> None:
        """Change the participant's name and/or avatar URL (``None`` leaves one as it is).

        The participant ID and the external ID never change; a ghost given a name becomes a
        named participant (R7). The caller has checked the values (R10).
        """
        current = record.participant.info
        record.participant = Participant(
            id=record.participant.id,
            info=ParticipantInfo(
                name=current.name if name is None else name,
                external_id=current.external_id,
                avatar_url=current.avatar_url if avatar_url is None else avatar_url,
            ),
        )
        self._tell("updated", record)

    def retoken(self, record: SessionRecord, token_external_id: str | None) -> None:
        """The holder's access token was replaced by one for ``token_external_id``."""
        record.token_external_id = token_external_id

    def end(self, record: SessionRecord) -> None:
        """Forget the session for good (``close``, expiry of its token): it is not resumable."""
        pid = record.participant.id
        if self._sessions.get(pid) is record:
            del self._sessions[pid]
            self._dropped.pop(pid, None)
            self._tell("closed", record)
        record.holder = None

    def drop(self, record: SessionRecord, *, now: float) -> None:
        """The holder's connection ended without ``close``: keep the session resumable."""
        pid = record.participant.id
        if self._sessions.get(pid) is not record:
            return  # Already ended or replaced.
        record.holder = None
        record.dropped_at = now
        self._dropped.pop(pid, None)
        self._dropped[pid] = record
        self._tell("dropped", record)
        self.purge(now)

    def resume(
        self,
        holder: Holder,
        participant_id: str,
        token_external_id: str | None,
        *,
        now: float,
    ) -> SessionRecord | None:
        """Give ``holder`` the dropped session of ``participant_id``, or ``None``.

        ``None`` when there is no such session, when it is still held, when its grace has
        passed, or when it was held under a token for another external ID than
        ``token_external_id``: a token for one external ID never acts on another's session.
        """
        self.purge(now)
        record = self._sessions.get(participant_id)
        if (
            record is None
            or record.holder is not None
            or record.token_external_id != token_external_id
        ):
            return None
        del self._dropped[participant_id]
        record.holder = holder
        record.dropped_at = None
        self._tell("resumed", record)
        return record

    def purge(self, now: float) -> None:
        """Forget the dropped sessions whose grace has passed."""
        while self._dropped:
            pid, record = next(iter(self._dropped.items()))
            assert record.dropped_at is not None
            if record.dropped_at + self.resume_grace > now:
                break
            del self._dropped[pid]
            del self._sessions[pid]
            self._tell("expired", record)

    def _tell(self, change: str, record: SessionRecord) -> None:
        if self.observer is not None:
            self.observer.session_changed(change, record)
