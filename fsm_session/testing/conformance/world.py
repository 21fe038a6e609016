"""A watched session service behind its own proxy: every call checked against the rules."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Final

import trio
import trio.lowlevel

from fsm_session.diagrams import extract
from fsm_session.errors import RequestAborted, SessionConnectionError, SessionError
from fsm_session.events import Event, SessionLostEvent, SessionStateChangeEvent
from fsm_session.machine import SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.service import (
    ServiceConfig,
    SessionService,
)
from fsm_session.testing.conformance.frames import problem_of
from fsm_session.testing.conformance.report import Row, RuleViolation
from fsm_session.testing.conformance.wire import Target
from fsm_session.testing.credentials import MintToken
from fsm_session.testing.proxy import Frame, LoopbackProxy

S = SessionState

# --------------------------------------------------------------------------------------------

_REPLY_TRIGGERS: Final = frozenset(
    {"opened", "updated", "closed", "open_failed", "update_failed", "resumed"}
)
_SEND_EFFECTS: Final = frozenset({"send_open", "send_update", "send_close"})
_CODES_INCONCLUSIVE: Final = frozenset({"rate_limited"})


class _World:
    """What one run has learned and found, shared by every client it creates."""

    def __init__(
        self, url: str, mint: MintToken, config: ServiceConfig, target: Target | None = None
    ) -> None:
        self.url = url
        self.target = Target(url) if target is None else target
        self.pulse = Pulse()
        self.mint = mint
        self.config = config
        self.ids: dict[str, str] = {}
        """Participant ID by external ID, as the backend first assigned it (R4)."""
        self.ghost_ids: set[str] = set()
        self.covered: set[Row] = set()
        graph = extract("session")
        self.row_keys: dict[int, Row] = {id(edge.row): edge.key for edge in graph.edges}
        moves: dict[tuple[str, str, str], list[Row]] = {}
        for edge in graph.edges:
            moves.setdefault((edge.source, edge.trigger, edge.dest), []).append(edge.key)
        self.moves = moves
        """Rows by ``(source, trigger, dest)``: an event names a row when there is one."""
        self.lose_config = replace(config, reconnect=replace(config.reconnect, give_up_after=0.0))
        """For the rows of ``lost`` while OPEN or GHOST: a service that does not reconnect."""
        self.inconclusive: list[str] = []
        self.skip: frozenset[str] = frozenset()
        """Rules already found broken: later phases look for other ones."""


class _Client:
    """A session service behind its own proxy; ``await client.open(...)`` calls and checks."""

    def __init__(
        self,
        world: _World,
        service: SessionService,
        proxy: LoopbackProxy,
        external_id: str | None,
        steps: list[str],
    ) -> None:
        self.world = world
        self.service = service
        self.proxy = proxy
        self.external_id = external_id
        self.steps = steps
        self.faulted = False
        """We broke something on purpose (a cut, a bad token): relax the reply checks."""
        self.bursting = False
        self._replied: dict[int, dict[int, str]] = {}
        self._ended: dict[int, int] = {}
        self._pending: RuleViolation | None = None
        self._last_change: SessionStateChangeEvent | None = None
        proxy.on_frame = self._on_frame

    # ---------------------------------------------------------------- observing

    def note(self) -> None:
        """Count the row the machine last took (``session.last_transition``) as covered."""
        key = self.world.row_keys.get(id(self.service.last_transition))
        if key is not None:
            self.world.covered.add(key)

    @property
    def sent(self) -> list[Frame]:
        """The client's text frames, every connection, as the proxy forwarded them."""
        return [f for f in self.proxy.frames if f.sender == "client" and f.text is not None]

    def _on_frame(self, frame: Frame) -> None:
        self.world.pulse.fire()
        self.note()
        if frame.sender == "client" or frame.text is None:
            return
        found = problem_of(frame.text)
        if found is not None:  # every frame the backend sends, held against the protocol
            self._defer(*found)
        if frame.type is None:
            return
        conn = frame.connection
        if frame.type == "ended":
            self._ended[conn] = self._ended.get(conn, 0) + 1
            if self._ended[conn] > 1:
                self._defer("P4", "the backend sent 'ended' twice on one connection")
            return
        rid = frame.id
        if rid is None:
            return
        sent_ids = [
            f.id for f in self.proxy.frames if f.sender == "client" and f.connection == conn
        ]
        replied = self._replied.setdefault(conn, {})
        if rid not in sent_ids:
            self._defer("P4", f"a {frame.type!r} reply to id {rid}, which was never sent")
        elif rid in replied:
            self._defer("P4", f"request {rid} answered twice ({replied[rid]!r}, {frame.type!r})")
        elif replied and rid < max(replied):
            self._defer("P4", f"the reply to request {rid} came after the reply to a later one")
        replied[rid] = frame.type

    async def watch_events(self, task_status: trio.TaskStatus[None]) -> None:
        async with self.service.subscribe() as events:
            task_status.started()
            async for event in events:
                self._on_event(event)

    def _on_event(self, event: Event) -> None:
        self.world.pulse.fire()
        self.note()
        if isinstance(event, SessionStateChangeEvent):
            self._last_change = event
            keys = self.world.moves.get((event.old.name, event.trigger, event.new.name), [])
            if len(keys) == 1:
                self.world.covered.update(keys)
        elif isinstance(event, SessionLostEvent) and event.reason == "connection_lost":
            # R14: on a loss while OPEN or GHOST the service takes the internal row
            # `connection_lost`, then `lost`; the events show the second, which implies the first.
            change = self._last_change
            if change is not None and change.trigger == "lost" and change.new is S.CLOSED:
                lost = self.world.moves.get((change.old.name, "connection_lost", change.old.name))
                if lost and len(lost) == 1:
                    self.world.covered.update(lost)

    async def _watched(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``await call()``, reading ``last_transition`` before, while it runs, and after."""
        self.note()
        service = self.service
        before = service.last_transition
        running = True

        async def watch() -> None:
            while running:
                if service.last_transition is not before:
                    self.note()
                    return
                await self.world.pulse.wait()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                try:
                    return await call()
                finally:
                    running = False
                    self.world.pulse.fire()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # the call's own error, as the caller expects it
                raise group.exceptions[0] from None
            raise
        finally:
            self.note()

    # ---------------------------------------------------------------- verdicts

    def _defer(self, rule: str, message: str) -> None:
        """A violation seen by the proxy: raised by the call that is running (``check``)."""
        if rule not in self.world.skip and self._pending is None:
            self._pending = RuleViolation(rule, message, tuple(self.steps), self.frames())

    def check(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            raise pending

    def fail(self, rule: str, message: str) -> None:
        if rule in self.world.skip:
            return
        raise RuleViolation(rule, message, tuple(self.steps), self.frames())

    def frames(self, last: int = 8) -> tuple[str, ...]:
        """The last text frames through this client's proxy, for a report."""
        texts = [f for f in self.proxy.frames if f.text is not None][-last:]
        return tuple(
            f"{'->' if f.sender == 'client' else '<-'} (connection {f.connection}) "
            f"{(f.text or '')[:200]}"
            for f in texts
        )

    def check_flags(self) -> None:
        service = self.service
        if service.is_open() != (service.state in (S.OPEN, S.GHOST)):
            self.fail("R8", f"is_open() is {service.is_open()} in {service.state.name}")
        participant = service.participant
        if (
            service.is_open()
            and participant is not None
            and not service.is_local_participant(participant)
        ):
            self.fail("R9", "is_local_participant(session.participant) is false")

    def _backend_refused(self, error: SessionError, sent_before: int, rule: str) -> bool:
        """True when ``error`` was a refusal of the client (nothing sent): the caller checks
        R13. A backend refusal of a valid call is a violation of ``rule``, except codes that
        say nothing about the rules (rate limiting), which are noted as inconclusive."""
        if isinstance(error, RequestAborted | SessionConnectionError):
            return False  # aborted by a close or a dropped socket: not a refusal
        if len(self.sent) == sent_before:
            return True
        if self.faulted:
            return False
        if error.code in _CODES_INCONCLUSIVE:
            if not self.bursting:
                self.world.inconclusive.append(f"{self.steps[-1]}: {error.code}")
            return False
        self.fail(rule, f"the backend refused a valid {self.steps[-1]}: {error!r}")
        return False

    # ---------------------------------------------------------------- calls

    async def open(self, info: ParticipantInfo | None = None, *, note: bool = True) -> None:
        service = self.service
        if note:
            self.steps.append("open()" if info is None else f"open({info!r})")
        before_state, before_participant = service.state, service.participant
        identity = service.identity
        sent_before = len(self.sent)
        try:
            participant: Participant = await self._watched(
                service.open if info is None else lambda: service.open(info)
            )
        except SessionError as error:
            self.check()
            refused = self._backend_refused(error, sent_before, "R4" if info else "R6")
            if refused and (service.state, service.participant) != (
                before_state,
                before_participant,
            ):
                self.fail("R13", f"a refused open changed the state: {error!r}")
            self.check_flags()
            return
        self.check()
        if before_state is S.CLOSED:
            if info is not None:
                self._check_named(participant, info, "R4")
            elif identity is not None:
                self._check_named(participant, identity, "R6")
            else:
                if service.state is not S.GHOST or participant.info.name is not None:
                    self.fail("R6", f"open() gave {service.state.name} and {participant!r}")
                if participant.id in self.world.ghost_ids:
                    self.fail("R6", f"a ghost got the ID {participant.id} again")
                self.world.ghost_ids.add(participant.id)
        elif before_participant is not None and participant != before_participant:
            self.fail("R5", f"opening again gave {participant!r}, not {before_participant!r}")
        self.check_flags()

    def _check_named(self, participant: Participant, info: ParticipantInfo, rule: str) -> None:
        if self.service.state is not S.OPEN:
            self.fail(rule, f"the open ended {self.service.state.name}, not OPEN")
        expected_external = info.external_id if info.external_id is not None else self.external_id
        got = participant.info
        if (got.name, got.avatar_url) != (info.name, info.avatar_url):
            self.fail(rule, f"opened as {got!r}, not {info!r}")
        if got.external_id != expected_external:
            self.fail(rule, f"the external ID is {got.external_id!r}, not {expected_external!r}")
        if expected_external is not None:
            known = self.world.ids.setdefault(expected_external, participant.id)
            if known != participant.id:
                self.fail(
                    "R4",
                    f"external ID {expected_external!r} got participant ID {participant.id}, "
                    f"earlier {known}",
                )

    async def update(
        self, name: str | None = None, avatar_url: str | None = None, *, note: bool = True
    ) -> None:
        service = self.service
        if note:
            self.steps.append(f"update(name={name!r}, avatar_url={avatar_url!r})")
        before_state, before = service.state, service.participant
        sent_before = len(self.sent)
        try:
            participant: Participant = await self._watched(
                lambda: service.update(name=name, avatar_url=avatar_url)
            )
        except SessionError as error:
            self.check()
            refused = self._backend_refused(error, sent_before, "R10")
            if refused and (service.state, service.participant) != (before_state, before):
                self.fail("R13", f"a refused update changed the state: {error!r}")
            self.check_flags()
            return
        self.check()
        assert before is not None
        if participant.id != before.id:
            self.fail("R10", f"update changed the participant ID {before.id} to {participant.id}")
        if participant.info.external_id != before.info.external_id:
            self.fail(
                "R10",
                f"update changed the external ID {before.info.external_id!r} to "
                f"{participant.info.external_id!r}",
            )
        want_name = before.info.name if name is None else name
        want_avatar = before.info.avatar_url if avatar_url is None else avatar_url
        if (participant.info.name, participant.info.avatar_url) != (want_name, want_avatar):
            self.fail("R10", f"update gave {participant.info!r}")
        if before_state is S.GHOST and name is not None and service.state is not S.OPEN:
            self.fail("R7", f"a ghost given a name is {service.state.name}, not OPEN")
        self.check_flags()

    async def close(self, *, note: bool = True) -> None:
        service = self.service
        if note:
            self.steps.append("close()")
        connected = service.socket_state is WebSocketState.CONNECTED
        frames_before = len(self.proxy.frames)
        await self._watched(service.close)
        self.check()
        if service.state is not S.CLOSED:
            self.fail("R11", f"close() ended {service.state.name}")
        self.check_flags()
        if connected and not self.faulted:
            frames = self.proxy.frames[frames_before:]
            for frame in frames:
                if frame.sender == "client" and frame.type == "close":
                    answered = any(
                        f.sender == "server"
                        and f.connection == frame.connection
                        and f.type == "closed"
                        and f.id == frame.id
                        for f in frames
                    )
                    if not answered:
                        self.fail("P8", f"close (id {frame.id}) was not answered with 'closed'")


class Pulse:
    """Fired whenever something the kit waits on may have changed: a frame through a proxy, an
    event of a service, a call that ended. Waits re-check their condition at each pulse rather
    than spinning on ``checkpoint()``.

    Some rows are announced by nothing the public API shows (a ``close`` joining the one in
    progress, a request's own timeout: no frame, no event), so a wait also re-checks after
    :data:`RECHECK` seconds without a pulse."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        with trio.move_on_after(RECHECK):
            await self._event.wait()


RECHECK: Final = 0.02


async def _until(world: _World, predicate: Callable[[], bool], seconds: float = 2.0) -> bool:
    """Wait for ``predicate()`` (re-checked at each pulse), at most ``seconds`` (scaled)."""
    with trio.move_on_after(world.target.seconds(seconds)):
        while not predicate():
            await world.pulse.wait()
        return True
    return False


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"
