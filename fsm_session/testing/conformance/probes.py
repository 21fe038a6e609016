"""The raw probes, section by section of ``specs/protocol.md``, and the check before them all.

Before anything else the kit makes sure the backend can be checked at all (:func:`preflight`):
reached, and accepting a token the kit minted. Then each section's probes run in turn
(connecting, frames, messages, closing, limits); the one that waits for a token to expire (P11)
runs beside them. A probe that cannot finish (the backend hung up, a wait ran out) is noted as
inconclusive; a rule it saw broken is in the report already.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

import trio

from fsm_session.testing.conformance.closing import check_expiry, check_switch
from fsm_session.testing.conformance.connecting import check_connecting
from fsm_session.testing.conformance.framing import check_frames
from fsm_session.testing.conformance.kit import Kit
from fsm_session.testing.conformance.limits import check_idle, check_limits
from fsm_session.testing.conformance.messages import check_messages
from fsm_session.testing.conformance.report import RuleResult, RuleViolation
from fsm_session.testing.conformance.wire import (
    BackendOverrun,
    HandshakeRefused,
    Target,
    handshake,
)
from fsm_session.testing.credentials import MintToken

__all__ = ["SECTION_SECONDS", "BackendUncheckable", "preflight", "probes_seconds", "run_probes"]

SECTION_RULES: Final[dict[str, tuple[str, ...]]] = {
    "check_connecting": ("P1",),
    "check_frames": ("P2", "P3", "P4", "P5", "P15"),
    "check_messages": ("P6", "P7", "P8", "P9", "P10", "R2", "R3", "R5", "R10", "R14", "R16"),
    "check_switch": ("P12", "R17"),
    "check_limits": ("P14", "R15"),
    "check_idle": ("P13",),
    "check_expiry": ("P11",),
}
"""The rules each section's probes check: when a section stops early, its rows are not run."""

SECTION_SECONDS: Final = 30.0
"""The most one section's probes may take on loopback (scaled by the target's factor)."""
_IDLE_MARGIN: Final = 2.0 + 10.0
"""P13 waits the idle timeout plus 2 s for the close; 10 s more for its handshake and close."""


def probes_seconds(idle_timeout: float | None) -> float:
    """The most :func:`run_probes` may take on loopback, before the target's factor: the
    sections in turn, or the idle wait beside them when it is longer."""
    return max(len(_SECTIONS) * SECTION_SECONDS, (idle_timeout or 0.0) + _IDLE_MARGIN) + 5.0


class BackendUncheckable(Exception):
    """The backend cannot be checked: unreachable, or it refuses the kit's tokens."""

    def __init__(self, message: str, *, token_refused: bool = False) -> None:
        super().__init__(message)
        self.token_refused = token_refused


async def preflight(target: Target, mint: MintToken) -> None:
    """Raise :class:`BackendUncheckable` unless a valid token opens a WebSocket at ``target``."""
    try:
        with trio.fail_after(target.seconds(5.0)):
            answer, stream = await handshake(target, token=mint(None))
    except trio.TooSlowError:
        raise BackendUncheckable(f"{target.url} did not answer the upgrade in time") from None
    except (OSError, trio.BrokenResourceError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BackendUncheckable(f"cannot reach {target.url}: {reason}") from None
    await trio.aclose_forcefully(stream)
    if answer.status in (401, 403):
        raise BackendUncheckable(
            f"{target.url} refused the kit's token ({answer.status} "
            f"{answer.body.decode('utf-8', 'replace')[:100]})",
            token_refused=True,
        )
    if answer.status != 101:
        raise BackendUncheckable(f"{target.url} answered the upgrade {answer.status}, not 101")


async def run_probes(
    target: Target,
    mint: MintToken,
    results: dict[str, RuleResult],
    record: Callable[[RuleViolation, str], None],
    secret: str | None,
    idle_timeout: float | None,
    expiry: bool,
) -> list[str]:
    """Run every section's probes; the notes of what could not be decided."""
    kit = Kit(target, mint, results, record, secret)
    idle_seconds = SECTION_SECONDS + (idle_timeout or 0.0) + _IDLE_MARGIN
    async with trio.open_nursery() as nursery:
        # The two probes that wait for the backend's clock run beside the others.
        nursery.start_soon(
            _guarded, kit, partial(check_idle, idle_timeout=idle_timeout), idle_seconds
        )
        if expiry:
            nursery.start_soon(_guarded, kit, check_expiry)
        for section in _SECTIONS:
            await _guarded(kit, section)
    return kit.inconclusive


_SECTIONS: Final[tuple[Callable[[Kit], Awaitable[None]], ...]] = (
    check_connecting,
    check_frames,
    check_messages,
    check_switch,
    check_limits,
)


async def _guarded(
    kit: Kit, section: Callable[[Kit], Awaitable[None]], seconds: float = SECTION_SECONDS
) -> None:
    name = getattr(section, "__name__", None) or getattr(section, "func", section).__name__
    tried_before = {rule: list(result.tried) for rule, result in kit.results.items()}
    started = time.monotonic()
    try:
        with trio.fail_after(kit.target.seconds(seconds)):
            await section(kit)
    except BackendOverrun as exc:
        kit.expect("P2", f"probe {name}: every message within the size limit", False, str(exc))
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, HandshakeRefused) as exc:
        kit.inconclusive.append(
            f"probe {name} stopped after {time.monotonic() - started:.1f} s: {exc!r}"
        )
        _not_run(kit, name, tried_before, exc)


def _not_run(kit: Kit, name: str, tried_before: dict[str, list[str]], exc: BaseException) -> None:
    """Mark the rows of section ``name`` that are not broken as not run, saying what of them
    was tried before the section stopped."""
    for rule in SECTION_RULES.get(name, ()):
        result = kit.results.get(rule)
        if result is None or not result.passed or result.skipped:
            continue
        done = [what for what in result.tried if what not in tried_before.get(rule, [])]
        partly = f" after trying only: {'; '.join(done)}" if done else ""
        result.not_run = f"probe {name} stopped early ({type(exc).__name__}){partly}"
