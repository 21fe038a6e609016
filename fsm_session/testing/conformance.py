"""Check a backend against the written rules, like ``trio.testing.check_two_way_stream``.

:func:`check_backend` is a plain synchronous function. It runs a trio loop in a background thread
(:class:`~fsm_session.testing.portal.TrioPortal`) and drives, against the backend's URL:

1. **probes** with a raw trio-websocket client, for what the client's own guards would hide
   (R2, R3, R5, P1, P4, P8);
2. **the transition paths** of :func:`fsm_session.diagrams.transition_paths`: each path is
   replayed on a real :class:`~fsm_session.service.SessionService`; calls (``open``,
   ``update``, ``close``) are made, replies (``opened``, ``updated``, ``closed``) are the
   backend's answers and are checked, and driver inputs are provoked from outside the service:
   a :class:`~fsm_session.testing.proxy.LoopbackProxy` between the service and the backend holds
   replies (to keep a session OPENING or CLOSING) and cuts connections (``connection_lost``,
   ``lost``); a token signed with another secret gives ``open_failed``, a burst of updates past
   the backend's rate limit ``update_failed``, and a short-lived token that expires while a
   request waits in the proxy gives ``lost`` in OPENING and CLOSING;
3. **exploration**: a Hypothesis ``RuleBasedStateMachine`` whose rules call the service through
   the portal with drawn infos and names, valid and invalid. Hypothesis shrinks a failure to the
   shortest call sequence that shows it.

Every check is tied to a rule ID (:data:`CHECKS`). The kit uses only the service's public API.
Coverage is measured, not assumed: the row the session machine last took
(``session.last_transition``) is read before and after every call, while a call runs, at every
frame the proxy forwards and at every event of ``session.subscribe()``; a state-change event
names its row when one row has its source, trigger and destination. Rows the public API cannot
cause are listed in :data:`NOT_REACHABLE` and reported apart.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import hypothesis
import trio
import trio.lowlevel
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    precondition,
    rule,
)
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    wrap_client_stream,
)

from fsm_session import tokens
from fsm_session.diagrams import Step, TransitionPath, extract, transition_paths
from fsm_session.errors import RequestAborted, SessionConnectionError, SessionError
from fsm_session.events import Event, SessionLostEvent, SessionStateChangeEvent
from fsm_session.machine import MISSING, SessionState, WebSocketState
from fsm_session.models import Participant, ParticipantInfo
from fsm_session.protocol import SUBPROTOCOL
from fsm_session.service import (
    ReconnectPolicy,
    ServiceConfig,
    SessionService,
    open_session_service,
)
from fsm_session.testing import strategies
from fsm_session.testing.portal import TrioPortal
from fsm_session.testing.proxy import Frame, LoopbackProxy
from fsm_session.transport import TransportConfig

__all__ = [
    "CHECKS",
    "NOT_REACHABLE",
    "ConformanceReport",
    "MintToken",
    "RuleResult",
    "RuleViolation",
    "check_backend",
    "conform_command",
    "format_report",
    "token_minter",
]

S = SessionState


class MintToken(Protocol):
    """Mints a valid access token for an external ID (``None``: a token that names nobody)
    that expires ``ttl`` seconds from now."""

    def __call__(self, external_id: str | None, /, *, ttl: float = 3600.0) -> str: ...


def token_minter(secret: str) -> MintToken:
    """A :class:`MintToken` that signs with ``secret`` (HS256, as the backend verifies)."""

    def mint(external_id: str | None, /, *, ttl: float = 3600.0) -> str:
        return tokens.mint(secret, external_id=external_id, ttl=ttl, now=time.time())

    return mint


CHECKS: Final[dict[str, str]] = {
    "P1": "a token signed with another secret is refused at the handshake",
    "P4": "each request gets exactly one reply, in order, carrying its id; no duplicate frames",
    "P8": "close is answered with closed (same id) before the socket closes",
    "R2": "the backend refuses info outside the limits (invalid_participant_info)",
    "R3": "the backend refuses an external ID other than the token's (external_id_mismatch), "
    "even from a client that skips its own guard",
    "R4": "open(info) gives OPEN and the participant as sent, with the token's external ID; "
    "the same external ID always gets the same participant ID",
    "R5": "opening again with the same info returns the same participant",
    "R6": "open() opens a ghost (GHOST, no name, a fresh ID each time) or reopens the "
    "remembered identity",
    "R7": "a ghost given a name by update is OPEN",
    "R8": "is_open() is true exactly in OPEN and GHOST",
    "R9": "is_local_participant(p) is true for the open participant",
    "R10": "update applies the values and never changes the participant ID or external ID",
    "R11": "close() ends CLOSED",
    "R12": "a session opens and closes any number of times",
    "R13": "a refused call changes nothing",
    "R14": "a session whose connection dropped is resumed, same participant (P9)",
    "R17": "opening the same external ID elsewhere ends the first session, same participant ID",
}

NOT_REACHABLE: Final[dict[tuple[str, str], str]] = {}
"""Rows, by ``(state, trigger)``, that no use of the public API and no backend can make the
service take today, with the reason. They are reported apart; if a run covers one anyway, it
counts as covered."""


class RuleViolation(AssertionError):
    """A backend broke ``rule``; ``steps`` are the calls that showed it, in order."""

    def __init__(self, rule: str, message: str, steps: tuple[str, ...] = ()) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message
        self.steps = steps


@dataclass(slots=True)
class RuleResult:
    """One rule's verdict: ``passed`` or broken with the shortest failing sequence found."""

    rule: str
    description: str
    passed: bool = True
    message: str = ""
    steps: tuple[str, ...] = ()
    found_by: str = ""
    """``probe``, ``path`` or ``hypothesis``."""
    seconds: float | None = None
    """Seconds from the start of the run to the first detection."""


Row = tuple[str, int]


@dataclass(slots=True)
class ConformanceReport:
    """What :func:`check_backend` found."""

    url: str
    rules: dict[str, RuleResult]
    covered: set[Row] = field(default_factory=set)
    """The rows (``(state, index)``) of the session machine that a real service took."""
    rows: tuple[Row, ...] = ()
    """Every row of the session machine."""
    row_labels: dict[Row, str] = field(default_factory=dict)
    unreachable: dict[Row, str] = field(default_factory=dict)
    """Rows of :data:`NOT_REACHABLE` that the run did not cover, with the reason."""
    paths_replayed: int = 0
    examples: int = 0
    seconds: float = 0.0
    inconclusive: list[str] = field(default_factory=list)
    """Things the run could not decide (a rate-limited call, a race it lost)."""

    @property
    def ok(self) -> bool:
        return all(result.passed for result in self.rules.values())

    @property
    def broken(self) -> list[str]:
        return [rule for rule, result in self.rules.items() if not result.passed]

    @property
    def reachable(self) -> tuple[Row, ...]:
        """The rows the public API and the backend can make the service take."""
        return tuple(row for row in self.rows if row not in self.unreachable)

    @property
    def coverage(self) -> float:
        """Covered rows among the reachable ones (1.0 is every one of them)."""
        reachable = self.reachable
        if not reachable:
            return 1.0
        return len(self.covered & set(reachable)) / len(reachable)

    @property
    def uncovered(self) -> list[str]:
        """Labels of the reachable rows that the run did not cover."""
        return [self.row_labels[row] for row in self.reachable if row not in self.covered]


# --------------------------------------------------------------------------------------------
# A watched session service: reads its public state, frames and events, checks the rules.
# --------------------------------------------------------------------------------------------

_REPLY_TRIGGERS: Final = frozenset(
    {"opened", "updated", "closed", "open_failed", "update_failed", "resumed"}
)
_SEND_EFFECTS: Final = frozenset({"send_open", "send_update", "send_close"})
_CODES_INCONCLUSIVE: Final = frozenset({"rate_limited"})


class _World:
    """What one run has learned and found, shared by every client it creates."""

    def __init__(self, url: str, mint: MintToken, config: ServiceConfig) -> None:
        self.url = url
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
        self.note()
        if frame.sender == "client" or frame.type is None:
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
                await trio.lowlevel.checkpoint()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                try:
                    return await call()
                finally:
                    running = False
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
            self._pending = RuleViolation(rule, message, tuple(self.steps))

    def check(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            raise pending

    def fail(self, rule: str, message: str) -> None:
        if rule in self.world.skip:
            return
        raise RuleViolation(rule, message, tuple(self.steps))

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


@dataclass
class _Hosted:
    client: _Client
    stop: trio.Event
    done: trio.Event


async def _host(
    world: _World,
    token: str,
    external_id: str | None,
    steps: list[str],
    config: ServiceConfig,
    task_status: trio.TaskStatus[_Hosted],
) -> None:
    done = trio.Event()
    proxy = LoopbackProxy(world.url)
    try:
        async with trio.open_nursery() as inner:
            url = await proxy.start(inner)
            try:
                async with open_session_service(url, access_token=token, config=config) as service:
                    client = _Client(world, service, proxy, external_id, steps)
                    await inner.start(client.watch_events)
                    hosted = _Hosted(client, trio.Event(), done)
                    task_status.started(hosted)
                    await hosted.stop.wait()
                    proxy.release("client")
                    proxy.release("server")
            except SessionError:
                pass  # a backend misbehaving on the way out; its rules were checked already
            finally:
                inner.cancel_scope.cancel()
    finally:
        proxy.close()  # whatever a cancelled handler could not close itself
        done.set()


async def _start_client(
    world: _World,
    nursery: trio.Nursery,
    steps: list[str],
    *,
    external_id: str | None,
    token: str | None = None,
    config: ServiceConfig | None = None,
) -> _Hosted:
    token = world.mint(external_id) if token is None else token
    config = world.config if config is None else config
    if "P8" in world.skip:  # the logout is known not to be answered: do not wait for it
        config = replace(config, logout_timeout=min(config.logout_timeout, 0.01))
    hosted: _Hosted = await nursery.start(_host, world, token, external_id, steps, config)
    return hosted


async def _stop(hosted: _Hosted) -> None:
    hosted.stop.set()
    await hosted.done.wait()


async def _until(predicate: Callable[[], bool], seconds: float = 2.0) -> bool:
    with trio.move_on_after(seconds):
        while not predicate():
            await trio.lowlevel.checkpoint()
        return True
    return False


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


# --------------------------------------------------------------------------------------------
# Phase 1: raw probes.
# --------------------------------------------------------------------------------------------


class _Raw:
    """A raw protocol client: what a client that skips its own guards would send."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, kind: str, **members: object) -> int:
        self.next_id += 1
        await self.ws.send_message(json.dumps({"type": kind, "id": self.next_id, **members}))
        return self.next_id

    async def receive(self, seconds: float = 0.5) -> dict[str, Any] | None:
        with trio.move_on_after(seconds):
            try:
                frame: dict[str, Any] = json.loads(await self.ws.get_message())
            except ConnectionClosed:
                return None
            return frame
        return None


def _info(name: str | None, external_id: str | None = None) -> dict[str, object]:
    return {"name": name, "external_id": external_id, "avatar_url": None}


async def _probes(world: _World, record: Callable[[RuleViolation, str], None]) -> None:
    url = world.url

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def raw(external_id: str | None, body: Callable[[_Raw], Awaitable[None]]) -> None:
        await raw_with_token(world.mint(external_id), body)

    async def raw_with_token(token: str, body: Callable[[_Raw], Awaitable[None]]) -> None:
        headers = [(b"authorization", f"Bearer {token}".encode())]
        # trio-websocket leaves a client socket open after a dropped peer: own the stream.
        stream = await trio.open_tcp_stream(host, port)
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"{host}:{port}",
                    parts.path or "/",
                    subprotocols=[SUBPROTOCOL],
                    extra_headers=headers,
                )
                try:
                    await body(_Raw(ws))
                finally:
                    with trio.move_on_after(0.5) as scope:
                        scope.shield = True
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    def violation(rule: str, message: str, steps: list[str]) -> None:
        record(RuleViolation(rule, message, tuple(steps)), "probe")

    alice, mallory = _new_id("alice"), _new_id("mallory")

    async def r3(client: _Raw) -> None:
        await client.send("open", info=_info("Alice", mallory))
        reply = await client.receive()
        steps = [f"raw: token for {alice!r}", f"send open as external ID {mallory!r}"]
        if reply is None or reply.get("type") != "error":
            violation("R3", f"the backend answered {reply!r}", steps)
        elif reply.get("code") != "external_id_mismatch":
            violation("R3", f"refused with {reply.get('code')!r}", steps)

    async def r3_none(client: _Raw) -> None:
        await client.send("open", info=_info("Nobody", mallory))
        reply = await client.receive()
        steps = ["raw: token that names no external ID", f"send open as {mallory!r}"]
        if reply is None or reply.get("code") != "external_id_mismatch":
            violation("R3", f"the backend answered {reply!r}", steps)

    async def r2(client: _Raw) -> None:
        await client.send("open", info=_info("   "))
        reply = await client.receive()
        if reply is None or reply.get("code") != "invalid_participant_info":
            violation("R2", f"a blank name was answered {reply!r}", ["raw: send open name='   '"])

    async def ordered(client: _Raw) -> None:
        steps = ["raw: send open, open (same info), update, close without waiting"]
        ids = [
            await client.send("open", info=_info("Olga")),
            await client.send("open", info=_info("Olga")),
            await client.send("update", name="Olga B.", avatar_url=None),
            await client.send("close"),
        ]
        replies: list[dict[str, Any]] = []
        for _ in ids:
            reply = await client.receive()
            if reply is None:
                break
            if reply.get("id") is not None:  # events ("ended") may come between replies
                replies.append(reply)
        got = [r.get("id") for r in replies]
        if got != ids[: len(got)]:
            violation("P4", f"replies carried ids {got}, expected {ids}", steps)
            return
        types = [r.get("type") for r in replies]
        if len(types) < 3:
            violation("P4", f"only {len(types)} replies to {len(ids)} requests: {types}", steps)
            return
        if len(types) == 3 or types[3] != "closed":
            answer = "no reply" if len(types) == 3 else repr(replies[3])
            violation("P8", f"close was answered with {answer}", steps)
        first = replies[0].get("participant") or {}
        again = replies[1].get("participant")
        if types[:2] != ["opened", "opened"] or not isinstance(again, dict):
            violation("R5", f"opening twice with the same info gave {types[:2]}", steps)
        elif again.get("id") != first.get("id"):
            violation("R5", "opening again with the same info gave another participant", steps)
        if len(types) == 4:
            extra = await client.receive(seconds=0.1)
            if extra is not None and extra.get("id") is not None:
                violation("P4", f"an extra frame after the last reply: {extra!r}", steps)

    for who, probe in ((alice, r3), (None, r3_none), (None, r2), (_new_id("olga"), ordered)):
        try:
            await raw(who, probe)
        except (ConnectionClosed, ConnectionRejected, OSError) as exc:
            world.inconclusive.append(f"probe {probe.__name__}: {exc!r}")

    # P1: a token signed with another secret.
    bad = tokens.mint(secrets.token_urlsafe(32), external_id=None, ttl=3600.0, now=time.time())

    async def accepted(client: _Raw) -> None:
        violation("P1", "a token signed with another secret was accepted", ["raw: connect"])

    try:
        await raw_with_token(bad, accepted)
    except* ConnectionRejected as group:
        status = getattr(group.exceptions[0], "status_code", None)
        if status != 401:
            violation("P1", f"rejected with {status}, not 401", ["raw: connect"])


# --------------------------------------------------------------------------------------------
# Phase 2: the transition paths, and the scenarios that need two connections or a clock.
# --------------------------------------------------------------------------------------------


def _by_scenario(path: TransitionPath) -> bool:
    """Rows a scenario takes rather than a replay: ``lost`` while a request is in flight
    (the backend ends the session then), and a ghost resumed with a name (named by an update
    whose reply the drop lost)."""
    target = path.target
    if target.trigger == "lost" and target.source in ("OPENING", "CLOSING"):
        return True
    return target.trigger == "resumed" and target.source == "GHOST" and target.dest == "OPEN"


def _loses(path: TransitionPath) -> bool:
    """The path needs ``lost`` while OPEN or GHOST: a service that does not reconnect."""
    return any(
        step.trigger == "lost" and step.edge.source in ("OPEN", "GHOST") for step in path.steps
    )


async def _follow(client: _Client, seconds: float = 3.0) -> None:
    """After a cut: note each row the service takes until it is settled again (resumed and
    connected, or CLOSED); R14 when a reconnecting service lost its session."""
    service = client.service
    was_open = service.is_open()
    participant = service.participant
    last = service.last_transition
    changed = False
    with trio.move_on_after(seconds):
        while True:
            if service.last_transition is not last:
                last, changed = service.last_transition, True
                client.note()
            settled = service.state is S.CLOSED or (
                service.is_open() and service.socket_state is WebSocketState.CONNECTED
            )
            # Reconnected is not yet resumed: wait for the `resumed` row itself.
            resumed = last is not None and last.trigger == "resumed"
            if changed and settled and (service.state is S.CLOSED or resumed):
                break
            await trio.lowlevel.checkpoint()
    client.note()
    reconnects = service.config.reconnect.give_up_after > 0
    if was_open and reconnects and participant is not None:
        if not service.is_open():
            client.fail("R14", "the session was not resumed after its connection dropped")
        elif service.participant is None or service.participant.id != participant.id:
            client.fail("R14", f"resumed as {service.participant!r}, not {participant!r}")


async def _replay(world: _World, path: TransitionPath, steps: list[str]) -> None:
    bad_token = any(step.trigger == "open_failed" for step in path.steps)
    external_id = _new_id("path")
    async with trio.open_nursery() as nursery:
        token = (
            tokens.mint(
                secrets.token_urlsafe(32), external_id=external_id, ttl=3600, now=time.time()
            )
            if bad_token
            else None
        )
        config = world.lose_config if _loses(path) else world.config
        hosted = await _start_client(
            world, nursery, steps, external_id=external_id, token=token, config=config
        )
        client = hosted.client
        client.faulted = bad_token
        service, proxy = client.service, client.proxy
        running = 0
        cut = False

        async def background(run: Callable[[], Awaitable[None]]) -> None:
            nonlocal running
            try:
                await run()
            finally:
                running -= 1

        def idle() -> bool:
            return running == 0

        async def settle() -> None:
            proxy.release("server")
            await _until(lambda: running == 0, seconds=5.0)

        async with trio.open_nursery() as calls:
            for i, step in enumerate(path.steps):
                following = path.steps[i + 1] if i + 1 < len(path.steps) else None
                trigger = step.trigger
                steps.append(step.label)
                if trigger in _REPLY_TRIGGERS and not (trigger == "resumed" and not cut):
                    await settle()  # the backend's answer to the call before; checked by it
                    continue
                if trigger in ("connection_lost", "lost", "resumed"):
                    if proxy.live == 0:
                        continue  # nothing to lose: covered by the scenarios instead
                    await _until(lambda: service.socket_state is WebSocketState.CONNECTED)
                    client.faulted = cut = True
                    proxy.cut()
                    await _follow(client)
                    await settle()
                    continue
                answered = following is None or following.trigger in _REPLY_TRIGGERS
                sends = step.edge.effect in _SEND_EFFECTS
                if sends and not answered:
                    proxy.hold("server")  # keep the session in flight for the next step
                before_frames, before_row = len(client.sent), service.last_transition
                running += 1
                calls.start_soon(
                    background,
                    _call_for(
                        client,
                        step,
                        burst=following is not None and following.trigger == "update_failed",
                    ),
                )
                await _until(partial(_moved, service, before_row, idle))
                if answered:
                    await settle()
                elif sends:
                    await _until(partial(_sent_more, client, before_frames, idle))
            await settle()
        await _stop(hosted)


def _moved(service: SessionService, before: object, done: Callable[[], bool]) -> bool:
    return service.last_transition is not before or done()


def _sent_more(client: _Client, before: int, done: Callable[[], bool]) -> bool:
    return len(client.sent) > before or done()


def _call_for(client: _Client, step: Step, *, burst: bool) -> Callable[[], Awaitable[None]]:
    kwargs = dict(step.kwargs)
    if step.trigger == "open":
        info = kwargs.get("info", MISSING)
        given = info if isinstance(info, ParticipantInfo) else None
        return lambda: client.open(given, note=False)
    if step.trigger == "update":
        name = kwargs.get("name")
        avatar = kwargs.get("avatar_url")
        name = name if isinstance(name, str) else None
        avatar = avatar if isinstance(avatar, str) else None
        if burst:

            async def many() -> None:
                # update_failed needs a backend refusal of a valid update: past its rate limit.
                client.bursting = True
                try:
                    for n in range(60):
                        last = client.service.last_transition
                        if last is not None and last.trigger == "update_failed":
                            return
                        if client.service.state is S.GHOST:  # a name would promote it (R7)
                            url = f"https://example.com/{n}.png"
                            await client.update(avatar_url=url, note=False)
                        else:
                            await client.update(name=f"{name or 'Burst'} {n}", note=False)
                finally:
                    client.bursting = False

            return many
        return lambda: client.update(name=name, avatar_url=avatar, note=False)
    return lambda: client.close(note=False)


async def _switch_scenario(world: _World, steps: list[str]) -> None:
    """R17 and R4: the same external ID opened on a second connection."""
    external_id = _new_id("switch")
    async with trio.open_nursery() as nursery:
        first = await _start_client(world, nursery, steps, external_id=external_id)
        second = await _start_client(world, nursery, steps, external_id=external_id)
        steps.append(f"A: open(ParticipantInfo(name='A')) with a token for {external_id!r}")
        await first.client.open(ParticipantInfo("A"), note=False)
        participant = first.client.service.participant
        steps.append("B: open(ParticipantInfo(name='A')) with a token for the same external ID")
        await second.client.open(ParticipantInfo("A"), note=False)
        if participant is not None and first.client.service.participant is not None:
            first.client.faulted = True
            ended = await _until(lambda: first.client.service.state is S.CLOSED)
            if not ended:
                second.client.fail("R17", "the first session was not ended")
        steps.append("B: close()")
        await second.client.close(note=False)
        steps.append("A: open(ParticipantInfo(name='A')) again")
        first.client.faulted = False
        await first.client.open(ParticipantInfo("A"), note=False)
        await first.client.close(note=False)
        await _stop(first)
        await _stop(second)


async def _repeat_scenario(world: _World, steps: list[str]) -> None:
    """R12: open and close several times, named and ghost."""
    async with trio.open_nursery() as nursery:
        hosted = await _start_client(world, nursery, steps, external_id=_new_id("again"))
        for n in range(3):
            for info in (ParticipantInfo(f"Again {n}"), None):
                await hosted.client.open(info)
                if not hosted.client.service.is_open():
                    hosted.client.fail("R12", f"open number {n + 1} did not open")
                await hosted.client.close()
        await _stop(hosted)


def _state_of(client: _Client) -> SessionState:
    return client.service.state  # read afresh: awaits in between move it


async def _named_while_down_scenario(world: _World, steps: list[str]) -> None:
    """R7, R14: a ghost's ``update(name)`` reaches the backend, the drop loses its reply, and
    the resumed participant has the name: the ghost is resumed OPEN."""
    async with trio.open_nursery() as nursery:
        hosted = await _start_client(world, nursery, steps, external_id=_new_id("named"))
        client, proxy = hosted.client, hosted.client.proxy
        steps.append("open()")
        await client.open(note=False)
        if client.service.state is S.GHOST:
            steps.append("update(name='Named') while the connection drops before its reply")
            client.faulted = True
            proxy.hold("server")
            seen = len(proxy.frames)
            nursery.start_soon(partial(client.update, name="Named", note=False))
            await _until(lambda: any(f.type == "updated" for f in proxy.frames[seen:]), seconds=2.0)
            proxy.cut()
            proxy.release("server")
            await _follow(client)
            if _state_of(client) not in (S.OPEN, S.CLOSED):
                client.fail("R7", "a ghost named before a drop was resumed without its name")
        await _stop(hosted)


_EXPIRY_TTL: Final = 1.5


async def _expiry_scenario(world: _World, steps: list[str]) -> None:
    """``lost`` in OPENING and in CLOSING: the backend ends the session (token expiry, P11)
    while the client's ``open``, or its ``close``, waits in the proxy."""
    config = replace(world.config, logout_timeout=_EXPIRY_TTL + 2.0)
    with trio.move_on_after(_EXPIRY_TTL + 3.0):
        async with trio.open_nursery() as nursery:
            opening_id, closing_id = _new_id("expire"), _new_id("expire")
            opening = await _start_client(
                world,
                nursery,
                steps,
                external_id=opening_id,
                token=world.mint(opening_id, ttl=_EXPIRY_TTL),
                config=config,
            )
            closing = await _start_client(
                world,
                nursery,
                steps,
                external_id=closing_id,
                token=world.mint(closing_id, ttl=_EXPIRY_TTL),
                config=config,
            )
            await closing.client.open(ParticipantInfo("Closing"), note=False)
            for hosted in (opening, closing):
                hosted.client.faulted = True
                hosted.client.proxy.hold("client")
            nursery.start_soon(partial(opening.client.open, ParticipantInfo("Opening"), note=False))
            nursery.start_soon(partial(closing.client.close, note=False))
            await _until(
                lambda: (
                    opening.client.service.state is S.CLOSED
                    and closing.client.service.state is S.CLOSED
                ),
                seconds=_EXPIRY_TTL + 2.5,
            )
            for hosted in (opening, closing):
                await _stop(hosted)


# --------------------------------------------------------------------------------------------
# Phase 3: Hypothesis exploration.
# --------------------------------------------------------------------------------------------


def _machine(portal: TrioPortal, world: _World) -> type[RuleBasedStateMachine]:
    class Conformance(RuleBasedStateMachine):
        """Random calls on one session service, each checked against the rules."""

        def __init__(self) -> None:
            super().__init__()
            self.steps: list[str] = []
            self.external_id = _new_id("hyp")
            self.hosted: _Hosted | None = portal.run(self._start)

        async def _start(self) -> _Hosted:
            return await _start_client(
                world, portal.nursery, self.steps, external_id=self.external_id
            )

        @property
        def client(self) -> _Client:
            assert self.hosted is not None
            return self.hosted.client

        @rule(info=strategies.participant_infos() | strategies.invalid_participant_infos())
        def open_info(self, info: ParticipantInfo) -> None:
            portal.run(self.client.open, info)

        @rule()
        def open_bare(self) -> None:
            portal.run(self.client.open)

        @rule(
            name=st.none() | strategies.names() | strategies.invalid_names(),
            avatar_url=st.none() | strategies.avatar_urls() | strategies.invalid_avatar_urls(),
        )
        def update(self, name: str | None, avatar_url: str | None) -> None:
            portal.run(lambda: self.client.update(name, avatar_url))

        @rule()
        def close(self) -> None:
            portal.run(self.client.close)

        @precondition(lambda self: self.client.service.state is S.OPEN)
        @rule()
        def reopen_elsewhere(self) -> None:
            """R4/R17: the same external ID on a new connection gets the same participant."""
            self.steps.append("close(); open the same identity on a new connection")
            portal.run(self._reopen_elsewhere)

        async def _reopen_elsewhere(self) -> None:
            identity = self.client.service.identity
            await self.client.close(note=False)
            other = await _start_client(
                world, portal.nursery, self.steps, external_id=self.external_id
            )
            try:
                await other.client.open(identity, note=False)
                await other.client.close(note=False)
            finally:
                await _stop(other)

        @invariant()
        def flags(self) -> None:
            self.client.check()
            self.client.check_flags()

        def teardown(self) -> None:
            if self.hosted is not None:
                portal.run(_stop, self.hosted)
                self.hosted = None

    return Conformance


# --------------------------------------------------------------------------------------------
# The entry point.
# --------------------------------------------------------------------------------------------


def check_backend(
    url: str,
    *,
    mint_token: MintToken,
    examples: int = 15,
    steps: int = 8,
    seed: int | None = 0,
    paths: bool = True,
    explore: bool = True,
    token_expiry: bool = True,
    timeout: float = 30.0,
) -> ConformanceReport:
    """Check the backend at ``url`` against the rules of :data:`CHECKS`; return the report.

    ``mint_token(external_id, ttl=...)`` mints a valid access token for the backend (``None``:
    a token naming no external ID; see :func:`token_minter`). ``examples`` Hypothesis examples
    of at most ``steps`` calls each (``explore=False`` skips them; ``paths=False`` skips the
    transition paths and scenarios); ``seed`` fixes the drawn calls (``None``: a fresh random
    run). ``token_expiry=False`` skips the one scenario that waits for a short-lived token to
    expire (about 1.5 s; it covers ``lost`` in OPENING and CLOSING). Synchronous: call it from
    plain code or a sync test, never from inside a running trio loop (it runs its own in a
    background thread). Raises nothing for a broken rule: it is in the report.
    """
    started = time.monotonic()
    graph = extract("session")
    config = ServiceConfig(
        transport=TransportConfig(connect_timeout=5.0, send_timeout=5.0, close_timeout=0.5),
        reconnect=ReconnectPolicy(
            initial_delay=0.01, max_delay=0.2, attempt_timeout=1.0, give_up_after=2.0
        ),
        request_timeout=2.0,
        logout_timeout=0.25,
    )
    world = _World(url, mint_token, config)
    results = {rule: RuleResult(rule, text) for rule, text in CHECKS.items()}

    def record(violation: RuleViolation, found_by: str) -> None:
        result = results.setdefault(violation.rule, RuleResult(violation.rule, ""))
        if result.passed or (
            found_by == result.found_by and len(violation.steps) < len(result.steps)
        ):
            if result.passed:
                result.seconds = time.monotonic() - started
            result.passed = False
            result.message = violation.message
            result.steps = violation.steps
            result.found_by = found_by
        world.skip = frozenset(r for r, res in results.items() if not res.passed)

    report = ConformanceReport(
        url=url,
        rules=results,
        rows=tuple(edge.key for edge in graph.edges),
        row_labels={
            edge.key: f"{edge.source} --{edge.trigger}--> {edge.dest} (row {edge.index})"
            for edge in graph.edges
        },
    )
    with TrioPortal(timeout=timeout) as portal:
        portal.run(_probes, world, record)
        if paths:
            scenarios: list[Callable[[_World, list[str]], Awaitable[None]]] = [
                _switch_scenario,
                _repeat_scenario,
                _named_while_down_scenario,
            ]
            for scenario in scenarios:
                _run_one(portal, _bind(scenario, world), record)
            for path in transition_paths("session"):
                if _by_scenario(path) or (path.target.source, path.target.trigger) in (
                    NOT_REACHABLE
                ):
                    continue
                _run_one(portal, _bind_path(path, world), record)
                report.paths_replayed += 1
            if token_expiry:  # last: it waits for a token to expire
                _run_one(portal, _bind(_expiry_scenario, world), record)
        if explore and examples > 0:
            report.examples = _explore(portal, world, record, examples, steps, seed)
    report.covered = set(world.covered)
    report.unreachable = {
        edge.key: NOT_REACHABLE[(edge.source, edge.trigger)]
        for edge in graph.edges
        if (edge.source, edge.trigger) in NOT_REACHABLE and edge.key not in world.covered
    }
    report.inconclusive = world.inconclusive
    report.seconds = time.monotonic() - started
    return report


def _bind(
    scenario: Callable[[_World, list[str]], Awaitable[None]], world: _World
) -> Callable[[list[str]], Awaitable[None]]:
    return lambda steps: scenario(world, steps)


def _bind_path(path: TransitionPath, world: _World) -> Callable[[list[str]], Awaitable[None]]:
    return lambda steps: _replay(world, path, steps)


def _explore(
    portal: TrioPortal,
    world: _World,
    record: Callable[[RuleViolation, str], None],
    examples: int,
    steps: int,
    seed: int | None,
) -> int:
    """Run the Hypothesis machine; the number of examples it ran."""
    counter = [0]
    base = _machine(portal, world)

    class Conformance(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            counter[0] += 1
            super().__init__()

    run_settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        database=None,
        report_multiple_bugs=False,
        print_blob=False,
    )
    test = get_state_machine_test(Conformance, settings=run_settings)
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    try:
        test()
    except RuleViolation as found:
        record(found, "hypothesis")
    except Flaky as exc:
        world.inconclusive.append(f"hypothesis: flaky failure: {exc!r}")
    return counter[0]


def _run_one(
    portal: TrioPortal,
    body: Callable[[list[str]], Awaitable[None]],
    record: Callable[[RuleViolation, str], None],
) -> None:
    steps: list[str] = []
    try:
        portal.run(body, steps)
    except RuleViolation as violation:
        record(violation, "path")
    except BaseExceptionGroup as group:
        found = _violations(group)
        if not found:
            raise
        for each in found:
            record(each, "path")


def _violations(group: BaseException) -> list[RuleViolation]:
    if isinstance(group, RuleViolation):
        return [group]
    if isinstance(group, BaseExceptionGroup):
        return [v for e in group.exceptions for v in _violations(e)]
    return []


# --------------------------------------------------------------------------------------------
# Printing.
# --------------------------------------------------------------------------------------------


def _lines(report: ConformanceReport) -> Iterator[str]:
    yield f"conformance of {report.url}: {'PASS' if report.ok else 'FAIL'}"
    yield ""
    yield "| rule | verdict | found by | after (s) | check |"
    yield "| --- | --- | --- | --- | --- |"
    for rule_id, result in report.rules.items():
        verdict = "passed" if result.passed else "BROKEN"
        after = "" if result.seconds is None else f"{result.seconds:.2f}"
        yield f"| {rule_id} | {verdict} | {result.found_by} | {after} | {result.description} |"
    yield ""
    reachable = report.reachable
    covered = len(report.covered & set(reachable))
    yield (
        f"transition coverage: {covered}/{len(reachable)} rows reachable through the public API"
        f" ({report.coverage:.0%}); {len(report.covered)}/{len(report.rows)} rows of the"
        f" session machine; {report.paths_replayed} paths replayed,"
        f" {report.examples} Hypothesis examples, {report.seconds:.1f} s"
    )
    for label in report.uncovered:
        yield f"  not covered: {label}"
    for row, reason in report.unreachable.items():
        yield f"  not reachable through the public API: {report.row_labels[row]}: {reason}"
    for rule_id in report.broken:
        result = report.rules[rule_id]
        yield ""
        yield f"{rule_id} broken: {result.message}"
        yield "  shortest failing sequence:"
        for n, step in enumerate(result.steps, 1):
            yield f"    {n}. {step}"
    for note in report.inconclusive[:10]:
        yield f"inconclusive: {note}"


def format_report(report: ConformanceReport) -> str:
    """The report as text: a per-rule table, coverage, and each broken rule's sequence."""
    return "\n".join(_lines(report)) + "\n"


def conform_command(url: str, examples: int = 15, seed: int | None = 0) -> int:
    """``fsm-session conform URL``: mint tokens with ``FSM_SESSION_SECRET``, check ``url``,
    print the report; 0 when every rule passed, 1 when one is broken, 2 without a secret."""
    from fsm_session.server.config import ConfigurationError, secret_from_env

    try:
        secret = secret_from_env()
    except ConfigurationError as exc:
        print(f"fsm-session conform: {exc}", file=sys.stderr)
        return 2
    report = check_backend(url, mint_token=token_minter(secret), examples=examples, seed=seed)
    sys.stdout.write(format_report(report))
    return 0 if report.ok else 1
