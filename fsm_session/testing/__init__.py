"""The conformance kit: check any backend against ``specs/session.md`` and ``specs/protocol.md``.

* :func:`check_backend`: drive real :class:`~fsm_session.service.SessionService` objects (and a
  raw WebSocket client, for what the client's own guards would hide) against a backend URL and
  return a :class:`ConformanceReport`: per rule, passed or broken with the shortest failing call
  sequence, and which rows of the session machine were covered.
* :mod:`fsm_session.testing.strategies`: Hypothesis strategies for participant infos (valid and
  invalid), tokens and call sequences.
* :class:`LoopbackProxy`: the project's one WebSocket proxy, which the kit puts between a
  service and the backend to watch frames, hold replies and cut connections, and which injects
  faults and rewrites messages for tests (:mod:`fsm_session.testing.proxy`).
* :func:`memory_backend`: the reference server in the test's own trio run, reached through
  memory, with faults on demand (:mod:`fsm_session.testing.memory`); needs no Hypothesis.
* :mod:`fsm_session.testing.plugin`: pytest fixtures (a loopback reference server, a token
  minter, a session service, the conformance check) and the ``--fsm-session-url`` option.

Needs Hypothesis (``pip install 'fsm_session[testing]'``). Names are imported on first use, so
that the pytest plugin, which pytest loads in every run, costs nothing until a fixture is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsm_session.testing.conformance import (
        CHECKS,
        NOT_REACHABLE,
        ConformanceReport,
        RuleResult,
        RuleViolation,
        check_backend,
        conform_command,
        format_report,
    )
    from fsm_session.testing.credentials import MintToken, token_minter
    from fsm_session.testing.memory import MemoryBackend, memory_backend
    from fsm_session.testing.portal import TrioPortal
    from fsm_session.testing.proxy import Frame, LoopbackProxy

__all__ = [
    "CHECKS",
    "NOT_REACHABLE",
    "ConformanceReport",
    "Frame",
    "LoopbackProxy",
    "MemoryBackend",
    "MintToken",
    "RuleResult",
    "RuleViolation",
    "TrioPortal",
    "check_backend",
    "conform_command",
    "format_report",
    "memory_backend",
    "token_minter",
]

_HOMES = {
    "TrioPortal": "portal",
    "MintToken": "credentials",
    "token_minter": "credentials",
    "Frame": "proxy",
    "LoopbackProxy": "proxy",
    "MemoryBackend": "memory",
    "memory_backend": "memory",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_HOMES.get(name, 'conformance')}")
    return getattr(module, name)
