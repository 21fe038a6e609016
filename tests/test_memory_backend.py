"""The in-memory backend of fsm_session.testing: the reference server and the service in one trio
run, no sockets, trio's clock only, and faults on demand."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from fsm_session import (
    ConnectionFailed,
    ConnectionLost,
    InvalidToken,
    ParticipantInfo,
    ReconnectPolicy,
    RequestAborted,
    ServiceConfig,
    SessionLostEvent,
    SessionService,
    SessionState,
    SocketStateChangeEvent,
    WebSocketState,
)
from fsm_session.errors import BackendError
from fsm_session.protocol import ErrorCode
from fsm_session.server import ServerConfig
from fsm_session.testing.memory import MemoryBackend, memory_backend

ADA = ParticipantInfo(name="Ada", external_id="ada")


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may open a socket: any attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the in-memory backend opened a socket")

    monkeypatch.setattr(trio.socket, "socket", refuse)
    monkeypatch.setattr(trio, "open_tcp_stream", refuse)


async def _socket_states(session: SessionService, into: list[str]) -> None:
    async with session.subscribe() as events:
        async for event in events:
            if isinstance(event, SocketStateChangeEvent):
                into.append(event.new.name)
            elif isinstance(event, SessionLostEvent):
                into.append(f"lost:{event.reason}")


async def test_open_update_close_without_a_socket(autojump_clock: trio.abc.Clock) -> None:
    async with memory_backend() as backend, backend.session_service("ada") as session:
        participant = await session.open(ADA)
        assert session.state is SessionState.OPEN
        assert backend.connections == 1
        updated = await session.update(name="Ada L.")
        assert updated.id == participant.id
        assert updated.info.name == "Ada L."
        await session.close()
        assert session.state is SessionState.CLOSED
        await trio.testing.wait_all_tasks_blocked()
        assert backend.connections == 0


async def test_a_drop_is_survived_by_resuming_the_session(autojump_clock: trio.abc.Clock) -> None:
    """R14 and P9 through the memory backend: the same participant, no session lost."""
    seen: list[str] = []
    async with (
        memory_backend() as backend,
        backend.session_service("ada") as session,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_socket_states, session, seen)
        await trio.testing.wait_all_tasks_blocked()
        participant = await session.open(ADA)
        assert backend.drop() == 1
        updated = await session.update(name="Ada L.")
        assert updated.id == participant.id
        assert session.state is SessionState.OPEN
        nursery.cancel_scope.cancel()
    assert seen[:5] == ["CONNECTING", "CONNECTED", "CLOSED", "CONNECTING", "CONNECTED"]
    assert not any(item.startswith("lost:") for item in seen)


async def test_an_unreachable_backend_fails_the_open_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_backend() as backend, backend.session_service("ada") as session:
        with backend.unreachable(), pytest.raises(ConnectionFailed):
            await session.open(ADA)
        assert session.state is SessionState.CLOSED
        await session.open(ADA)  # Reachable again.
        assert session.is_open()


async def test_a_backend_unreachable_past_the_give_up_time_loses_the_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = ServiceConfig(reconnect=ReconnectPolicy(give_up_after=5.0))
    seen: list[str] = []
    async with (
        memory_backend() as backend,
        backend.session_service("ada", config=config) as s,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_socket_states, s, seen)
        await s.open(ADA)
        start = trio.current_time()
        with backend.unreachable():
            backend.drop()
            await s.wait_for(SessionState.CLOSED)
        # Given up once the next attempt would start past give_up_after (R14).
        assert 5.0 - 2.0 <= trio.current_time() - start <= 5.0
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert "lost:reconnect_failed" in seen


async def test_a_delayed_reply_arrives_late_on_trios_clock(autojump_clock: trio.abc.Clock) -> None:
    async with memory_backend() as backend, backend.session_service("ada") as session:
        await session.open(ADA)
        start = trio.current_time()
        with backend.delay_replies(3.0):
            await session.update(name="Ada L.")
        assert trio.current_time() - start == pytest.approx(3.0, abs=0.01)


async def test_a_reply_later_than_the_request_timeout_is_a_lost_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Each resend meets the same delay: after ``max_sends`` the update fails, the session is
    kept (R9: a failed update changes nothing)."""
    config = ServiceConfig(request_timeout=2.0)
    async with memory_backend() as backend, backend.session_service("ada", config=config) as s:
        await s.open(ADA)
        with backend.delay_replies(30.0), pytest.raises((ConnectionLost, RequestAborted)):
            await s.update(name="Ada L.")
        assert s.identity == ADA


async def test_a_refused_request_gets_the_backends_error_and_changes_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_backend() as backend, backend.session_service("ada") as session:
        await session.open(ADA)
        backend.refuse_next("update", code=ErrorCode.RATE_LIMITED, message="slow down")
        with pytest.raises(BackendError) as caught:
            await session.update(name="Ada L.")
        assert caught.value.code == ErrorCode.RATE_LIMITED
        assert session.identity == ADA
        updated = await session.update(name="Ada L.")  # Only the next one was refused.
        assert updated.info.name == "Ada L."


async def test_refusals_count_down(autojump_clock: trio.abc.Clock) -> None:
    async with memory_backend() as backend, backend.session_service("ada") as session:
        backend.refuse_next("open", code=ErrorCode.INTERNAL_ERROR, times=2)
        for _ in range(2):
            with pytest.raises(BackendError):
                await session.open(ADA)
            assert session.state is SessionState.CLOSED
        await session.open(ADA)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (("hello",), {}, "not a request type"),
        (("update",), {"code": "nope"}, "not an error code"),
        (("update",), {"times": 0}, "times must be"),
        (("update",), {"times": True}, "times must be"),
    ],
)
async def test_bad_fault_arguments_are_refused(
    args: tuple[str], kwargs: dict[str, object], words: str
) -> None:
    async with memory_backend() as backend:
        with pytest.raises(ValueError, match=words):
            backend.refuse_next(*args, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="seconds"), backend.delay_replies(-1.0):
            pass


async def test_a_token_the_backend_does_not_accept_is_refused_through_the_relay() -> None:
    from fsm_session.service import open_session_service
    from fsm_session.tokens import mint

    async with memory_backend() as backend:
        stranger = mint("x" * 40, external_id="ada", ttl=60, now=__import__("time").time())
        async with open_session_service(
            backend.url, access_token=stranger, open_stream=backend.open_stream
        ) as session:
            with pytest.raises(InvalidToken):
                await session.open(ADA)


async def test_the_servers_config_reaches_the_server(autojump_clock: trio.abc.Clock) -> None:
    """A resume grace of one second (P9): a service away for three cannot resume, and loses
    its session; with the default grace the same outage is survived."""
    for grace, survives in ((1.0, False), (None, True)):
        config = None if grace is None else ServerConfig(resume_grace=grace)
        seen: list[str] = []
        async with (
            memory_backend(config=config) as backend,
            backend.session_service("ada") as session,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_socket_states, session, seen)
            await session.open(ADA)
            with backend.unreachable():
                backend.drop()
                await trio.sleep(3.0)
            await trio.sleep(10.0)
            await trio.testing.wait_all_tasks_blocked()
            assert session.is_open() is survives
            assert ("lost:reconnect_failed" in seen) is not survives
            nursery.cancel_scope.cancel()


async def _scenario() -> list[tuple[float, str]]:
    """One run of opens, drops, delays and refusals: what happened, and when."""
    trace: list[tuple[float, str]] = []
    async with memory_backend() as backend, backend.session_service("ada") as session:
        start = trio.current_time()

        def note(what: str) -> None:
            trace.append((round(trio.current_time() - start, 6), what))

        await session.open(ADA)
        note(session.state.name)
        backend.drop()
        with backend.delay_replies(0.5):
            await session.update(name="B")
        note(f"{session.state.name} {session.socket_state.name}")
        backend.refuse_next("update")
        with pytest.raises(BackendError):
            await session.update(name="C")
        note("refused")
        await session.close()
        note(session.state.name)
    return trace


def test_runs_are_deterministic_under_the_autojump_clock() -> None:
    traces = [trio.run(_scenario, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in "ab"]
    assert traces[0] == traces[1]
    assert traces[0][0] == (0.0, "OPEN")
    assert traces[0][1][1] == f"OPEN {WebSocketState.CONNECTED.name}"
    assert traces[0][1][0] >= 0.5


async def test_the_pytest_fixture_gives_the_same_backend(
    fsm_session_memory: object, autojump_clock: trio.abc.Clock
) -> None:
    assert fsm_session_memory is memory_backend
    async with memory_backend() as backend:
        assert isinstance(backend, MemoryBackend)
        assert "MemoryBackend" in repr(backend)
