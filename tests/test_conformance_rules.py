"""The conformance kit's rule coverage: what it tries for P1, P10, P14 and P15, and that a
conformant backend with other limits than the reference server's is not called broken.

Sync tests (the kit runs its own trio loop in a thread), probes only (no paths, no exploration):
each runs the kit's raw probes against a real reference server on loopback.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import pytest

from fsm_session.server import serve
from fsm_session.server.config import ServerConfig
from fsm_session.testing import (
    ConformanceReport,
    TrioPortal,
    check_backend,
    format_report,
    token_minter,
)
from tests.mutants import mutant_backend


@contextmanager
def _server(secret: str, config: ServerConfig) -> Iterator[str]:
    with TrioPortal() as portal:
        yield portal.run(
            portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret, config=config)
        )


def _probe(url: str, secret: str, *, expiry: bool = False) -> ConformanceReport:
    return check_backend(
        url, mint_token=token_minter(secret), paths=False, explore=False,
        token_expiry=expiry, secret=secret,
    )  # fmt: skip


@pytest.mark.parametrize("rate", [8, 100])
def test_p14_a_backend_with_its_own_rate_limit_passes(rate: float) -> None:
    """P14 lets a backend choose its rate: a low one (the other probes pause and try again when
    answered rate_limited) and a high one (the bursts grow until one is limited) both pass."""
    secret = secrets.token_urlsafe(32)
    with _server(secret, ServerConfig(max_requests_per_second=rate)) as url:
        report = _probe(url, secret)
    text = format_report(report)
    assert report.ok and not report.broken, text
    p14 = report.rules["P14"]
    assert p14.passed and not p14.skipped, text
    assert any("rate_limited" in what for what in p14.tried), text


def test_p14_no_limit_within_the_bursts_is_not_run_not_broken() -> None:
    """P14: a backend that limits none of the kit's bursts is "not run", named in the report."""
    secret = secrets.token_urlsafe(32)
    with _server(secret, ServerConfig(max_requests_per_second=math.inf)) as url:
        report = _probe(url, secret)
    text = format_report(report)
    # Nothing broken, but not everything checked: the run is INCOMPLETE, not a PASS.
    assert not report.broken and not report.ok and not report.complete, text
    assert report.rules["P14"].skipped, text
    assert any(note.startswith("P14:") for note in report.inconclusive), text
    assert "| P14 | not run |" in text


def test_p14_rate_limited_under_another_code_is_broken() -> None:
    """P14: requests over the rate answered bad_request instead of rate_limited."""
    secret = secrets.token_urlsafe(32)
    with mutant_backend("limits_as_bad_request", secret) as url:
        report = _probe(url, secret)
    assert "P14" in report.broken, format_report(report)


@pytest.mark.parametrize(
    ("mutant", "expiry"), [("refresh_keeps_old_expiry", True), ("token_accepted_with_bool", False)]
)
def test_p10_the_new_tokens_exp_is_checked(mutant: str, expiry: bool) -> None:
    """P10: token_accepted must carry the new token's exp (a number, not true), and the new exp
    must be the one P11 ends the connection by."""
    secret = secrets.token_urlsafe(32)
    with mutant_backend(mutant, secret) as url:
        report = _probe(url, secret, expiry=expiry)
    assert "P10" in report.broken, format_report(report)


def test_p10_p11_the_reference_server_passes_the_refresh_before_expiry() -> None:
    """P10 and P11 with the expiry probes: the refreshed connection outlives its first token."""
    secret = secrets.token_urlsafe(32)
    with _server(secret, ServerConfig()) as url:
        report = _probe(url, secret, expiry=True)
    text = format_report(report)
    assert report.ok, text
    assert any("outlives the short one" in what for what in report.rules["P10"].tried), text
    assert report.rules["P11"].tried, text


def test_p1_the_reference_server_refuses_every_listed_token() -> None:
    """P1: the cases the spec lists (another algorithm, exp 1e400, nbf ahead, time claims of
    the wrong type, two Authorization headers, another scheme) are tried and refused."""
    secret = secrets.token_urlsafe(32)
    with _server(secret, ServerConfig()) as url:
        report = _probe(url, secret)
    text = format_report(report)
    assert report.ok, text
    tried = " ".join(report.rules["P1"].tried)
    for case in ("HS512", "1e400", "nbf is still ahead", "iat is true", "nbf is an object",
                 "exp is an array", "two Authorization headers", "another scheme"):  # fmt: skip
        assert case in tried, (case, text)


@pytest.mark.parametrize("mutant", ["accepts_other_schemes", "ignores_time_claim_types"])
def test_p1_a_backend_taking_a_listed_token_is_broken(mutant: str) -> None:
    secret = secrets.token_urlsafe(32)
    with mutant_backend(mutant, secret) as url:
        report = _probe(url, secret)
    assert "P1" in report.broken, format_report(report)


def test_p15_every_framing_error_of_the_table_is_tried() -> None:
    """P15: RSV1, an unknown opcode, a stray continuation, a text frame inside a fragmented
    message, a fragmented or oversized ping and bad close frames each close 1002."""
    secret = secrets.token_urlsafe(32)
    with _server(secret, ServerConfig()) as url:
        report = _probe(url, secret)
    text = format_report(report)
    assert report.ok, text
    tried = " ".join(report.rules["P15"].tried)
    for case in ("RSV1", "unknown opcode", "continuation frame with no message", "text frame while",
                 "fragmented ping", "ping of 126 bytes", "one byte", "code 1005"):  # fmt: skip
        assert case in tried, (case, text)


def test_p15_a_backend_closing_framing_errors_with_1008_is_broken() -> None:
    secret = secrets.token_urlsafe(32)
    with mutant_backend("framing_closes_with_policy", secret) as url:
        report = _probe(url, secret)
    assert "P15" in report.broken, format_report(report)
