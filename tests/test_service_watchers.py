"""A service's watchers (the live inspector's hook): one that raises inside the machine's move
must not leave the session between two states (R1-R11 keep holding); it is logged and
detached. In memory, with no sockets."""

from __future__ import annotations

import logging

import pytest
import trio

from fsm_session import ParticipantInfo, SessionState, open_session_service
from fsm_session.events import Event
from fsm_session.service import SessionService
from fsm_session.testing import memory_backend


class Raising:
    """A watcher that fails on the move to ``state``, and counts what it saw."""

    def __init__(self, state: SessionState | None, at_end: bool = False) -> None:
        self.state = state
        self.at_end = at_end
        self.seen = 0

    def follow(self, service: SessionService) -> None:
        service.watch(self)

    def service_event(self, service: SessionService, event: Event) -> None:
        self.seen += 1
        if service.state is self.state:
            raise RuntimeError("the watcher broke")

    def service_ended(self, service: SessionService) -> None:
        if self.at_end:
            raise RuntimeError("the watcher broke at the end")


async def test_r2_r11_a_watcher_that_raises_is_detached_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, steady = Raising(SessionState.OPENING), Raising(None)
    async with (
        memory_backend() as backend,
        open_session_service(
            backend.url,
            access_token=backend.mint("ada"),
            open_stream=backend.open_stream,
            inspector=broken,
        ) as session,
    ):
        steady.follow(session)
        with trio.fail_after(5):
            participant = await session.open(ParticipantInfo(name="Ada", external_id="ada"))
        assert session.state is SessionState.OPEN
        assert session.is_local_participant(participant)
        seen_before = broken.seen
        await session.update(name="Ada L.")
        await session.close()
        assert session.state is SessionState.CLOSED
    assert broken.seen == seen_before  # told nothing after it failed
    assert steady.seen > broken.seen  # the other watcher saw every move
    failures = [r for r in caplog.records if "watcher failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR


async def test_a_watcher_that_raises_at_the_end_does_not_escape_the_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        memory_backend() as backend,
        open_session_service(
            backend.url,
            access_token=backend.mint("bo"),
            open_stream=backend.open_stream,
            inspector=Raising(None, at_end=True),
        ) as session,
    ):
        await session.open(ParticipantInfo(name="Bo", external_id="bo"))
    assert any("watcher failed" in r.getMessage() for r in caplog.records)
