"""Deliberately broken backends for the conformance kit's own tests (test-only).

Each is the reference server with one handler replaced, patched into ``fsm_session.server.app``
for the life of one test only (``patched(variant)``); nothing here is reachable from the normal
server. Each breaks exactly one rule, named in ``BROKEN_RULE``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import (
    Close,
    CloseCode,
    ErrorCode,
    Message,
    Open,
    Resume,
    SessionEnded,
    Update,
    Updated,
)
from fsm_session.server import app, connection
from fsm_session.server.handlers import ConnectionState, _error
from fsm_session.server.websocket import WebSocketClosed


class AcceptsMismatchedExternalId(ConnectionState):
    """R3: opens as whatever external ID the client claims."""

    async def on_open(self, request: Open) -> Message:
        info = request.info
        if info is not None and info.external_id is not None:
            self.claims = replace(self.claims, external_id=info.external_id)
        return await super().on_open(request)


class ForgetsParticipantIds(ConnectionState):
    """R4: a known external ID gets a new participant ID at every new session."""

    async def on_open(self, request: Open) -> Message:
        if self.session is None:
            # test-only: forget which ID each external ID had
            self.store.registry._ids.clear()  # type: ignore[attr-defined]
        return await super().on_open(request)


class IgnoresClose(ConnectionState):
    """P8: never answers ``close``."""

    async def on_close(self, request: Close) -> Any:
        await super().on_close(request)
        return None


class HangsUpOnClose(ConnectionState):
    """P8: closes the socket on ``close`` without sending the ``closed`` reply."""

    async def on_close(self, request: Close) -> Any:
        await super().on_close(request)
        self._end(CloseCode.NORMAL, "bye")
        return None


class UpdateChangesExternalId(ConnectionState):
    """R10: an update rewrites the external ID."""

    async def on_update(self, request: Update) -> Message:
        reply = await super().on_update(request)
        if isinstance(reply, Updated) and self.session is not None:
            old = self.session.participant
            info = ParticipantInfo(old.info.name, f"changed-{request.id}", old.info.avatar_url)
            self.session.participant = Participant(old.id, info)
            return Updated(request.id, self.session.participant)
        return reply


class LosesSessionOnDrop(ConnectionState):
    """R14: a dropped connection's session is forgotten; ``resume`` finds nothing."""

    async def on_resume(self, request: Resume) -> Message:
        if self.session is None:
            return _error(request.id, ErrorCode.UNKNOWN_PARTICIPANT, "forgotten", "R14")
        return await super().on_resume(request)


class _DuplicatingConnection(connection.Connection):
    """P4: every reply is sent twice."""

    async def _send(self, message: Message) -> None:
        await super()._send(message)
        if getattr(message, "id", None) is not None:
            await super()._send(message)


class _DuplicatingEvents(connection.Connection):
    """P4: every event (``ended``) is sent twice."""

    async def _send(self, message: Message) -> None:
        await super()._send(message)
        if isinstance(message, SessionEnded):
            await super()._send(message)


class _ReorderingConnection(connection.Connection):
    """P4: a slow ``updated`` reply is sent when ready, so a later request's reply overtakes it
    (a backend that answers requests concurrently)."""

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._late = nursery
            await super().run()

    async def _send(self, message: Message) -> None:
        if isinstance(message, Updated):

            async def late() -> None:
                await trio.sleep(0.01)
                with contextlib.suppress(ConnectionClosed, WebSocketClosed):
                    await super(_ReorderingConnection, self)._send(message)
                    await self.ws._flush()  # outside the loop that flushes replies

            self._late.start_soon(late)
            return
        await super()._send(message)


STATES: dict[str, type[ConnectionState]] = {
    "accepts_mismatched_external_id": AcceptsMismatchedExternalId,
    "new_participant_id": ForgetsParticipantIds,
    "ignores_close": IgnoresClose,
    "hangs_up_without_closed": HangsUpOnClose,
    "update_changes_external_id": UpdateChangesExternalId,
    "loses_session_on_drop": LosesSessionOnDrop,
}
CONNECTIONS: dict[str, type[connection.Connection]] = {
    "duplicates_replies": _DuplicatingConnection,
    "duplicates_events": _DuplicatingEvents,
    "answers_out_of_order": _ReorderingConnection,
}
BROKEN_RULE: dict[str, str] = {
    "accepts_mismatched_external_id": "R3",
    "new_participant_id": "R4",
    "ignores_close": "P8",
    "hangs_up_without_closed": "P8",
    "update_changes_external_id": "R10",
    "loses_session_on_drop": "R14",
    "duplicates_replies": "P4",
    "duplicates_events": "P4",
    "answers_out_of_order": "P4",
}


@contextmanager
def patched(variant: str) -> Iterator[None]:
    """The reference server, broken as ``variant`` says, while the block runs."""
    with pytest.MonkeyPatch.context() as mp:
        if variant in CONNECTIONS:
            mp.setattr(app, "Connection", CONNECTIONS[variant])
        else:
            mp.setattr(connection, "ConnectionState", STATES[variant])
        yield
