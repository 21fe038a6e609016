"""Check a backend against the written rules, like ``trio.testing.check_two_way_stream``.

:func:`check_backend` is a plain synchronous function. It runs a trio loop in a background thread
(:class:`~fsm_session.testing.portal.TrioPortal`) and drives, against the backend's URL:

1. **probes** on raw connections (:mod:`.wire`, the kit's own WebSocket client), one module per
   section of ``specs/protocol.md``: :mod:`.connecting` (P1), :mod:`.framing` (P2 to P5, P15),
   :mod:`.messages` (P6 to P10 with R2, R3, R5, R10, R14, R16), :mod:`.closing` (P11, P12, R17),
   :mod:`.limits` (P13, P14, R15); every message the backend sends is held against the written
   protocol (:mod:`.frames`) and P16; each report row says what was tried and what was seen;
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

from fsm_session.testing.conformance.command import conform_command
from fsm_session.testing.conformance.probes import BackendUncheckable
from fsm_session.testing.conformance.report import (
    CHECKS,
    NOT_REACHABLE,
    ConformanceReport,
    RuleResult,
    RuleViolation,
    format_report,
)
from fsm_session.testing.conformance.runner import check_backend
from fsm_session.testing.credentials import MintToken, token_minter

__all__ = [
    "CHECKS",
    "NOT_REACHABLE",
    "BackendUncheckable",
    "ConformanceReport",
    "MintToken",
    "RuleResult",
    "RuleViolation",
    "check_backend",
    "conform_command",
    "format_report",
    "token_minter",
]
