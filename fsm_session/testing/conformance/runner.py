"""The entry point: :func:`check_backend` runs probes, paths, scenarios and exploration."""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import trio

from fsm_session.diagrams import TransitionPath, extract, transition_paths
from fsm_session.errors import SessionError
from fsm_session.machine import SessionState
from fsm_session.service import (
    ReconnectPolicy,
    ServiceConfig,
)
from fsm_session.testing.conformance.coverage import _by_scenario, _replay
from fsm_session.testing.conformance.exploration import _explore
from fsm_session.testing.conformance.probes import (
    BackendUncheckable,
    preflight,
    probes_seconds,
    run_probes,
)
from fsm_session.testing.conformance.report import (
    CHECKS,
    NOT_REACHABLE,
    ConformanceReport,
    RuleResult,
    RuleViolation,
)
from fsm_session.testing.conformance.session import (
    _expiry_scenario,
    _named_while_down_scenario,
    _repeat_scenario,
    _switch_scenario,
)
from fsm_session.testing.conformance.wire import Target
from fsm_session.testing.conformance.world import _World
from fsm_session.testing.credentials import MintToken
from fsm_session.testing.portal import TrioPortal
from fsm_session.transport import TransportConfig

S = SessionState


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
    secret: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    time_factor: float = 1.0,
    idle_timeout: float | None = None,
    probes: bool = True,
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

    ``secret`` (the backend's token secret) lets the kit mint tokens with chosen claims for P1;
    ``ssl_context`` says whom to trust for a ``wss://`` URL; ``time_factor`` scales every wait
    (and ``timeout``) for a backend farther away than loopback; ``idle_timeout`` is the backend's
    idle timeout in seconds, to check P13 (not checked without it); ``probes=False`` skips the
    raw probes. Raises :class:`BackendUncheckable` when the backend cannot be reached or
    refuses a valid token, before anything else is tried, or when it leaves the kit waiting
    past every bound (the probes' bound grows with ``idle_timeout``). A probe section that
    stops early leaves its rules "not run" (:attr:`RuleResult.not_run`): such a report is
    INCOMPLETE, not ``ok``.
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
    if time_factor != 1.0:
        config = replace(
            config,
            transport=replace(
                config.transport,
                connect_timeout=5.0 * time_factor,
                send_timeout=5.0 * time_factor,
                close_timeout=0.5 * time_factor,
            ),
            reconnect=replace(
                config.reconnect, attempt_timeout=time_factor, give_up_after=2.0 * time_factor
            ),
            request_timeout=2.0 * time_factor,
            logout_timeout=0.25 * time_factor,
        )
    target = Target(url, ssl_context, time_factor)
    replay_seconds = 15.0 * time_factor
    world = _World(url, mint_token, config, target)
    notes = (world.inconclusive, replay_seconds)
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
            result.frames = violation.frames
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
    try:
        with TrioPortal(timeout=timeout * time_factor) as portal:
            portal.run(preflight, target, mint_token)
            if probes:
                world.inconclusive += _probes_within(
                    portal,
                    max(timeout, probes_seconds(idle_timeout)) * time_factor,
                    run_probes,
                    target,
                    mint_token,
                    results,
                    record,
                    secret,
                    idle_timeout,
                    token_expiry,
                )
            if paths:
                scenarios: list[Callable[[_World, list[str]], Awaitable[None]]] = [
                    _switch_scenario,
                    _repeat_scenario,
                    _named_while_down_scenario,
                ]
                for scenario in scenarios:
                    _run_one(portal, _bind(scenario, world), record, *notes)
                for path in transition_paths("session"):
                    if _by_scenario(path) or (path.target.source, path.target.trigger) in (
                        NOT_REACHABLE
                    ):
                        continue
                    _run_one(
                        portal, _bind_path(path, world), record, world.inconclusive, replay_seconds
                    )
                    report.paths_replayed += 1
                if token_expiry:  # last: it waits for a token to expire
                    _run_one(
                        portal,
                        _bind(_expiry_scenario, world),
                        record,
                        world.inconclusive,
                        replay_seconds,
                    )
            if explore and examples > 0:
                report.examples = _explore(portal, world, record, examples, steps, seed)
    except trio.TooSlowError:
        # A call of the kit that the backend left waiting past every bound of its own.
        seconds = timeout * time_factor
        raise BackendUncheckable(f"the backend did not answer within {seconds:g} s") from None
    report.covered = set(world.covered)
    report.unreachable = {
        edge.key: NOT_REACHABLE[(edge.source, edge.trigger)]
        for edge in graph.edges
        if (edge.source, edge.trigger) in NOT_REACHABLE and edge.key not in world.covered
    }
    report.inconclusive = world.inconclusive
    service = (
        f"{report.paths_replayed} transition paths, scenarios and {report.examples} "
        "Hypothesis examples on real SessionService objects"
    )
    for result in results.values():
        if not result.tried and not result.not_run and (paths or report.examples):
            result.tried.append(service)
    report.seconds = time.monotonic() - started
    return report


def _probes_within(
    portal: TrioPortal, seconds: float, fn: Callable[..., Awaitable[list[str]]], *args: object
) -> list[str]:
    """``portal.run(fn, *args)`` within ``seconds`` (the probes' own bound, which the idle
    probe sizes); a backend that does not answer in that time cannot be checked."""
    before, portal.timeout = portal.timeout, seconds
    try:
        return portal.run(fn, *args)
    except trio.TooSlowError:
        raise BackendUncheckable(f"the backend did not answer within {seconds:g} s") from None
    finally:
        portal.timeout = before


def _bind(
    scenario: Callable[[_World, list[str]], Awaitable[None]], world: _World
) -> Callable[[list[str]], Awaitable[None]]:
    return lambda steps: scenario(world, steps)


def _bind_path(path: TransitionPath, world: _World) -> Callable[[list[str]], Awaitable[None]]:
    return lambda steps: _replay(world, path, steps)


def _run_one(
    portal: TrioPortal,
    body: Callable[[list[str]], Awaitable[None]],
    record: Callable[[RuleViolation, str], None],
    notes: list[str],
    seconds: float,
) -> None:
    steps: list[str] = []

    async def bounded(steps: list[str]) -> None:
        with trio.fail_after(seconds):
            await body(steps)

    try:
        portal.run(bounded, steps)
    except RuleViolation as violation:
        record(violation, "path")
    except (trio.TooSlowError, SessionError) as exc:
        # A backend that broke a rule can leave a replay stuck or a service refusing: what
        # it broke is found by the probes; the replay is noted, not fatal to the run.
        notes.append(f"a replay stopped ({exc!r}) after: {'; '.join(steps[-4:])}")
    except BaseExceptionGroup as group:
        found = _violations(group)
        if not found:
            if group.subgroup((trio.TooSlowError, SessionError)) is not None:
                notes.append(f"a replay stopped ({group!r}) after: {'; '.join(steps[-4:])}")
                return
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
