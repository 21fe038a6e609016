"""The API as a type checker and a waiting caller meet it: overloads that make misuse a mypy
error, and ``wait_for`` bounded by the caller's cancel scope."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from fsm_session import (
    ArgumentTypeError,
    ParticipantInfo,
    SessionState,
    WebSocketState,
    open_session_service,
)
from tests.conftest import Mint

ROOT = Path(__file__).resolve().parent.parent
ADA = ParticipantInfo("Ada", external_id="ext-ada")

MISUSE = textwrap.dedent(
    """\
    from fsm_session import Participant, ParticipantInfo, SessionService


    async def use(session: SessionService, someone: Participant) -> None:
        await session.open()
        await session.open(ParticipantInfo("Ada"))
        await session.open(None)  # error: None is not "no argument" (R2)
        await session.open("Ada")  # error: a name is not a ParticipantInfo
        await session.update(name=5)  # error: a name is a string
        session.is_local_participant("p1")  # error: a Participant, not its ID (R9)
        session.is_local_participant(someone)
        await session.wait_for("OPEN")  # error: a state, not its name
        await session.close(True)  # error: close takes nothing
    """
)


def test_mypy_strict_rejects_each_misuse_and_accepts_each_use(tmp_path: Path) -> None:
    """R2, R9: `mypy --strict` on a user's file flags exactly the lines that misuse the API."""
    user = tmp_path / "user.py"
    user.write_text(MISUSE, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    flagged = {int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line}
    wrong = {n for n, line in enumerate(MISUSE.splitlines(), 1) if "# error" in line}
    assert flagged == wrong, result.stdout


async def test_wait_for_a_state_a_socket_state_or_a_predicate(server_url: str, mint: Mint) -> None:
    """wait_for returns at once when the target holds, else when it comes to hold."""
    async with open_session_service(server_url, access_token=mint("ext-ada")) as session:
        assert await session.wait_for(SessionState.CLOSED) is SessionState.CLOSED
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.open, ADA)
            assert await session.wait_for(WebSocketState.CONNECTED) is SessionState.OPENING
            assert await session.wait_for(lambda s: s.participant is not None) is (
                SessionState.OPEN
            )
        with trio.move_on_after(0.05) as scope:  # bounded by the caller's scope only
            await session.wait_for(SessionState.GHOST)
        assert scope.cancelled_caught and session.state is SessionState.OPEN
        with pytest.raises(ArgumentTypeError):
            await session.wait_for("OPEN")  # type: ignore[arg-type]
