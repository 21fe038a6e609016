"""Logs: a whole session at DEBUG, client and reference server in one process, and not one
record, of any logger (ours or a dependency's), holds an access token or the server's secret."""

from __future__ import annotations

import logging
import re
import time
import traceback
from pathlib import Path

import pytest

from fsm_session import (
    InvalidToken,
    ParticipantInfo,
    SessionConnectionError,
    open_session_service,
    tokens,
)
from tests.conftest import Mint

ANOTHER_SECRET = "a-secret-the-server-does-not-know-0123456789"
WINDOW = 8  # Characters of a secret or signature that no record may hold.


def everything_in(record: logging.LogRecord) -> str:
    """All a handler could print of ``record``: its message, arguments, extras, traceback."""
    parts = [record.getMessage(), repr(record.args), repr(vars(record))]
    if record.exc_info and record.exc_info[1] is not None:
        parts.extend(traceback.format_exception(record.exc_info[1]))
    return "\n".join(parts)


async def test_no_token_or_secret_in_any_log_record(
    caplog: pytest.LogCaptureFixture, server_url: str, secret: str, mint: Mint
) -> None:
    caplog.set_level(logging.DEBUG)  # The root logger: every logger, at its most talkative.
    token = mint("ada-42")
    refused = tokens.mint(ANOTHER_SECRET, external_id="ada-42", ttl=60, now=time.time())

    # A token the server refuses: the refusal is logged on both sides, the token is not.
    async with open_session_service(server_url, access_token=refused) as session:
        with pytest.raises((InvalidToken, SessionConnectionError)):
            await session.open(ParticipantInfo(name="Ada", external_id="ada-42"))

    async with open_session_service(server_url, access_token=token) as session:
        await session.open(ParticipantInfo(name="Ada", external_id="ada-42"))
        await session.update(name="Ada L.", avatar_url=None)
        await session.close()
        await session.open()
        await session.close()

    names = {record.name for record in caplog.records}
    assert "fsm_session.server" in names, names  # The check saw the server's records...
    assert any(name.startswith("trio-websocket") for name in names), names  # ...and a library's.
    # A token is only as secret as its signature (its header and claims are plain base64), so
    # any stretch of a signature or of the secret long enough to matter counts, not only the
    # whole of it.
    forbidden = {
        "the server's secret": secret,
        "the access token's signature": token.rsplit(".", 1)[1],
        "the refused token's signature": refused.rsplit(".", 1)[1],
    }
    pieces = {
        value[start : start + WINDOW]: what
        for what, value in forbidden.items()
        for start in range(len(value) - WINDOW + 1)
    }
    for record in caplog.records:
        text = everything_in(record)
        for piece, what in pieces.items():
            assert piece not in text, f"{record.name} logged {what}: {record.getMessage()!r}"


def test_every_logger_of_the_package_is_documented_in_the_readme() -> None:
    """Each ``getLogger("fsm_session...")`` of the code has a row in the README's Logs table."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    logs = readme[readme.index("## Logs") :]
    documented = set(re.findall(r"^\| `(fsm_session[\w.]*)` \|", logs, re.MULTILINE))
    used = {
        name
        for path in (root / "fsm_session").rglob("*.py")
        for name in re.findall(r"getLogger\(\s*[\"'](fsm_session[\w.]*)[\"']", path.read_text())
    }
    assert used, "the package logs under fsm_session"
    assert used <= documented, f"not in the README's Logs table: {sorted(used - documented)}"
