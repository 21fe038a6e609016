"""The client's side of P17: ``store_unavailable`` while resuming is transient, not a loss."""

from __future__ import annotations

import trio
import trio.testing

from fsm_session import ParticipantInfo, SessionLostEvent, SessionService, SessionState
from fsm_session.protocol import ErrorCode
from fsm_session.testing.memory import memory_backend

ADA = ParticipantInfo(name="Ada", external_id="ada")


async def _losses(session: SessionService, into: list[str]) -> None:
    async with session.subscribe() as events:
        async for event in events:
            if isinstance(event, SessionLostEvent):
                into.append(event.reason)


async def test_p17_a_resume_refused_store_unavailable_is_tried_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    lost: list[str] = []
    async with (
        memory_backend() as backend,
        backend.session_service("ada") as session,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_losses, session, lost)
        participant = await session.open(ADA)
        backend.refuse_next("resume", code=ErrorCode.STORE_UNAVAILABLE, times=3)
        backend.drop()
        updated = await session.update(name="Ada L.")  # After three refusals, then a resume.
        assert updated.id == participant.id
        assert session.state is SessionState.OPEN
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert lost == []


async def test_r14_other_refusals_of_a_resume_stay_final(autojump_clock: trio.abc.Clock) -> None:
    """The control: the same refusals with ``unknown_participant`` lose the session."""
    lost: list[str] = []
    async with (
        memory_backend() as backend,
        backend.session_service("ada") as session,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_losses, session, lost)
        await session.open(ADA)
        backend.refuse_next("resume", code=ErrorCode.UNKNOWN_PARTICIPANT, times=3)
        backend.drop()
        await session.wait_for(SessionState.CLOSED)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert lost == ["reconnect_failed"]
