"""``fsm-session conform``: the report for people and CI, and exit codes a script can act on."""

from __future__ import annotations

import sys

from fsm_session.machine import SessionState
from fsm_session.testing.conformance.report import format_report
from fsm_session.testing.conformance.runner import check_backend
from fsm_session.testing.credentials import token_minter

S = SessionState


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
