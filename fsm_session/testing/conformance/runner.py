"""The entry point: :func:`check_backend` runs probes, paths, scenarios and exploration."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fsm_session.diagrams import TransitionPath, extract, transition_paths
from fsm_session.machine import SessionState
from fsm_session.service import (
    ReconnectPolicy,
    ServiceConfig,
)
from fsm_session.testing.conformance.coverage import _by_scenario, _replay
from fsm_session.testing.conformance.exploration import _explore
from fsm_session.testing.conformance.probes import _probes
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
