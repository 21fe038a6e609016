"""``fsm-session conform``: the report for people and CI, and exit codes a script can act on.

0: the backend kept every rule. 1: a rule is broken (the report says which). 2: usage or setup
(a URL that is not ``ws://`` or ``wss://``, no secret, a CA file that cannot be read). 3: the
backend cannot be checked (unreachable, or it refuses the kit's tokens), or could not be checked
fully (a probe stopped early: the report names the rules not run). Every failure but 1 is
one or two lines on stderr, never a traceback.
"""

from __future__ import annotations

import json
import ssl
import sys
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from fsm_session.testing.conformance.probes import BackendUncheckable
from fsm_session.testing.conformance.report import ConformanceReport, format_report
from fsm_session.testing.conformance.runner import check_backend
from fsm_session.testing.credentials import (
    SECRET_ENV,
    ConfigurationError,
    secret_from_env,
    token_minter,
)

__all__ = ["EXIT_BROKEN", "EXIT_OK", "EXIT_UNCHECKABLE", "EXIT_USAGE", "conform_command"]

EXIT_OK, EXIT_BROKEN, EXIT_USAGE, EXIT_UNCHECKABLE = 0, 1, 2, 3

_PROG = "fsm-session conform"


class UsageProblem(Exception):
    """A problem of the command's input or setup (exit 2)."""


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a backend, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return f"{url!r} is not a ws:// or wss:// URL with a host (e.g. ws://127.0.0.1:8765/)"
    return None


def client_tls(url: str, cafile: str | None) -> ssl.SSLContext | None:
    """The context that trusts ``cafile`` for a ``wss://`` URL (the system's CAs without one)."""
    if cafile is None:
        return None
    if urlsplit(url).scheme != "wss":
        raise UsageProblem("--cafile is for wss:// URLs only")
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageProblem(f"cannot use {cafile!r} as a CA file: {exc}") from None


def check_writable(path: str) -> None:
    """Raise :class:`UsageProblem` unless the report can be written at ``path``: the file is
    opened for appending when it exists, else created and removed, before the run."""
    target = Path(path)
    try:
        if target.exists():
            with target.open("a"):
                pass
        else:
            with target.open("x"):
                pass
            target.unlink()
    except OSError as exc:
        raise UsageProblem(f"cannot write the report to --json {path}: {exc}") from None


def report_json(report: ConformanceReport) -> dict[str, object]:
    """The report as JSON for CI: the verdict, every rule's row, the coverage."""
    return {
        "url": report.url,
        "ok": report.ok,
        "verdict": report.verdict,
        "not_run": report.not_run,
        "broken": report.broken,
        "rules": {rule: asdict(result) for rule, result in report.rules.items()},
        "coverage": report.coverage,
        "uncovered": report.uncovered,
        "paths_replayed": report.paths_replayed,
        "examples": report.examples,
        "seconds": report.seconds,
        "inconclusive": report.inconclusive,
    }


def conform_command(
    url: str,
    examples: int = 15,
    seed: int | None = 0,
    *,
    time_factor: float = 1.0,
    json_path: str | None = None,
    cafile: str | None = None,
    idle_timeout: float | None = None,
) -> int:
    """``fsm-session conform URL``: mint tokens with ``FSM_SESSION_SECRET``, check ``url``,
    print the report; the exit code (see the module's docstring)."""
    try:
        problem = url_problem(url)
        if problem is not None:
            raise UsageProblem(problem)
        if examples < 0:
            raise UsageProblem(f"--examples must be 0 or more, not {examples}")
        if time_factor <= 0:
            raise UsageProblem(f"--timeout must be a positive factor, not {time_factor:g}")
        context = client_tls(url, cafile)
        if json_path is not None:
            check_writable(json_path)
        try:
            secret = secret_from_env()
        except ConfigurationError as exc:
            raise UsageProblem(str(exc)) from None
    except UsageProblem as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = check_backend(
            url,
            mint_token=token_minter(secret),
            examples=examples,
            seed=seed,
            secret=secret,
            ssl_context=context,
            time_factor=time_factor,
            idle_timeout=idle_timeout,
        )
    except BackendUncheckable as exc:
        print(f"{_PROG}: cannot check the backend: {exc}", file=sys.stderr)
        if exc.token_refused:
            print(f"{_PROG}: does {SECRET_ENV} match the backend's?", file=sys.stderr)
        return EXIT_UNCHECKABLE
    sys.stdout.write(format_report(report))
    if json_path is not None:
        try:
            Path(json_path).write_text(json.dumps(report_json(report), indent=2) + "\n")
        except OSError as exc:
            print(f"{_PROG}: cannot write the report to --json {json_path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if report.broken:
        return EXIT_BROKEN
    if not report.complete:
        what = ", ".join(report.not_run) or f"{len(report.inconclusive)} inconclusive checks"
        print(f"{_PROG}: could not check all rules (not run: {what})", file=sys.stderr)
        return EXIT_UNCHECKABLE
    return EXIT_OK
