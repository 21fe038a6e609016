"""``fsm-session demo``: the SDK's typical workflow against an embedded reference server.

It prints a transcript of each call, what it returned or raised, and every event the session
published on the way: socket states and session state changes. With an inspector
(``fsm-session demo --inspect``) the sessions also show live in a browser; ``pace`` waits that
many seconds after each call so that a person can follow them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import trio

from fsm_session.errors import SessionError
from fsm_session.events import Event
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.server import serve
from fsm_session.service import (
    EventStream,
    ServiceWatcher,
    SessionService,
    open_session_service,
)
from fsm_session.tokens import mint

__all__ = ["main", "run_demo"]

T = TypeVar("T")
Print = Callable[[str], None]


def _describe(event: Event) -> str:
    return str(event)


def _who(participant: Participant) -> str:
    info = participant.info
    name = "ghost (no name)" if info.name is None else repr(info.name)
    extra = f", external ID {info.external_id!r}" if info.external_id else ""
    return f"Participant {participant.id} {name}{extra}"


class _Transcript:
    def __init__(
        self, out: Print, session: SessionService, events: EventStream, pace: float = 0.0
    ) -> None:
        self.out = out
        self.session = session
        self.events = events
        self.pace = pace

    def flush(self) -> None:
        for event in self.events.ready():
            self.out(f"      event: {_describe(event)}")

    async def call(self, label: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        self.out(f"  > {label}")
        try:
            result = await fn()
            if self.pace:
                await trio.sleep(self.pace)  # for a person watching the inspector, not for sync
        except SessionError as error:
            self.flush()
            self.out(f"    refused: {type(error).__name__}: {error}")
            self.out(f"    state is still {self.session.state.name}")
            return None
        self.flush()
        shown = _who(result) if isinstance(result, Participant) else repr(result)
        self.out(f"    returned {shown}; state {self.session.state.name}")
        return result

    def query(self, label: str, value: object) -> None:
        self.out(f"  > {label} -> {value!r}")


async def run_demo(
    out: Print = print, *, inspector: ServiceWatcher | None = None, pace: float = 0.0
) -> None:
    """Run the whole demo; raises if anything does not go as the rules say.

    Its sessions are shown by ``inspector`` if given; ``pace`` seconds pass after each call.
    """
    secret = secrets.token_urlsafe(32)
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(partial(serve, "127.0.0.1", 0, secret=secret))
        out(f"Embedded reference server on {url}")
        now = time.time()
        ada_token = mint(secret, external_id="ada-42", ttl=3600, now=now)
        guest_token = mint(secret, external_id=None, ttl=3600, now=now)

        out("\n1. Ada's session, from CLOSED to OPEN and back")
        async with (
            open_session_service(url, access_token=ada_token, inspector=inspector) as session,
            session.subscribe() as events,
        ):
            t = _Transcript(out, session, events, pace)
            t.query("session.state", session.state.name)
            t.query("session.is_open()", session.is_open())
            ada = ParticipantInfo("Ada Lovelace", external_id="ada-42")
            participant = await t.call(f"await session.open({ada!r})", lambda: session.open(ada))
            assert participant is not None and session.is_open()
            t.query("session.is_open()", session.is_open())
            t.query(
                "session.is_local_participant(participant)",
                session.is_local_participant(participant),
            )
            stranger = Participant("someone-else", ParticipantInfo("Bob"))
            t.query("session.is_local_participant(<Bob>)", session.is_local_participant(stranger))
            await t.call(
                "await session.update(name='Ada L.', avatar_url='https://example.org/ada.png')",
                lambda: session.update(name="Ada L.", avatar_url="https://example.org/ada.png"),
            )
            await t.call(
                "await session.open(ParticipantInfo('Bob'))  # another identity",
                lambda: session.open(ParticipantInfo("Bob")),
            )
            await t.call("await session.close()", session.close)
            t.query("session.is_open()", session.is_open())

            out("\n2. Reopen with the remembered identity")
            again = await t.call("await session.open()", session.open)
            assert again is not None and again.id == participant.id, "same external ID, same ID"
            out(f"    same participant ID as before: {again.id == participant.id}")
            await t.call("await session.close()", session.close)

            out("\n3. Refused calls change nothing and send nothing")
            await t.call(
                "await session.update(name='Ada')  # while CLOSED",
                lambda: session.update(name="Ada"),
            )
            mallory = ParticipantInfo("Mallory", external_id="someone-else")
            await t.call(f"await session.open({mallory!r})", lambda: session.open(mallory))
            await t.call(
                "await session.open(ParticipantInfo('   '))",
                lambda: session.open(ParticipantInfo("   ")),
            )
            assert session.state.name == "CLOSED"

        out("\n4. A ghost session, then named")
        async with (
            open_session_service(url, access_token=guest_token, inspector=inspector) as session,
            session.subscribe() as events,
        ):
            t = _Transcript(out, session, events, pace)
            ghost = await t.call(
                "await session.open()  # nothing remembered: a ghost", session.open
            )
            assert ghost is not None and ghost.is_ghost and session.state.name == "GHOST"
            await t.call(
                "await session.update(name='Guest 7')", lambda: session.update(name="Guest 7")
            )
            assert session.state.name == "OPEN"
            await t.call("await session.close()", session.close)
        nursery.cancel_scope.cancel()
    out("\nDone: every call answered as specs/session.md says.")


async def run_inspected_demo(out: Print = print, *, pace: float = 0.0) -> None:
    """The demo, shown live by an inspector on a loopback port; prints its address first."""
    from fsm_session.inspector import open_inspector

    async with open_inspector(node="demo") as inspector:
        out(f"inspector: {inspector.url}")
        if pace:
            await trio.sleep(pace)  # time to open the page before the first call
        await run_demo(out, inspector=inspector, pace=pace)


def main(*, inspect: bool = False, pace: float = 0.0) -> int:
    if inspect:
        trio.run(partial(run_inspected_demo, partial(print, flush=True), pace=pace))
    else:
        trio.run(partial(run_demo, pace=pace))
    return 0
