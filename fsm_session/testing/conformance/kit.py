"""What every probe shares: the target, its tokens, raw connections, and the report rows.

A probe states what it tries and what it expects (:meth:`Kit.expect`); the row of that rule
gathers every attempt and the first thing seen that broke the rule, with the frames exchanged.
Every text message the backend sends on a raw connection is held against the written protocol
(:func:`fsm_session.testing.conformance.frames.problem_of`), and against P16: no token in it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fsm_session.testing.conformance.frames import problem_of
from fsm_session.testing.conformance.report import RuleResult, RuleViolation
from fsm_session.testing.conformance.wire import RawClient, Target, raw_client
from fsm_session.testing.credentials import MintToken

__all__ = ["Kit", "info", "new_id"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def info(
    name: str | None, external_id: str | None = None, avatar_url: str | None = None
) -> dict[str, object]:
    """Participant info as the wire writes it, every member present (P2)."""
    return {"name": name, "external_id": external_id, "avatar_url": avatar_url}


class Kit:
    """One run's probes: ``async with kit.raw("alice") as client:`` and ``kit.expect(...)``."""

    def __init__(
        self,
        target: Target,
        mint: MintToken,
        results: dict[str, RuleResult],
        record: Callable[[RuleViolation, str], None],
        secret: str | None = None,
    ) -> None:
        self.target = target
        self.secret = secret
        """The backend's token secret, when the kit has it: tokens with chosen claims (P1)."""
        self.mint = mint
        self.results = results
        self._record = record
        self.tokens: set[str] = set()
        """Every token the kit sent: none may come back (P16)."""
        self.inconclusive: list[str] = []
        self._current: RawClient | None = None

    def tried(self, rule: str, what: str) -> None:
        result = self.results.get(rule)
        if result is not None and what not in result.tried:
            result.tried.append(what)

    def expect(
        self, rule: str, what: str, ok: bool, seen: object, client: RawClient | None = None
    ) -> bool:
        """Note that ``what`` was tried for ``rule``; a violation when not ``ok``."""
        self.tried(rule, what)
        text = seen if isinstance(seen, str) else json.dumps(seen)
        if ok:
            return True
        frames = () if client is None else tuple(client.transcript()[-12:])
        violation = RuleViolation(rule, f"{what}: {text[:300]}", (what,), frames)
        self._record(violation, "probe")
        return False

    def token(self, external_id: str | None, *, ttl: float = 3600.0) -> str:
        token = self.mint(external_id, ttl=ttl)
        self.tokens.add(token)
        return token

    def hold(self, text: str) -> None:
        """Hold a text message from the backend against the protocol and against P16."""
        found = problem_of(text)
        if found is not None:
            rule, problem = found
            self._record(RuleViolation(rule, problem, (f"received {text[:300]}",)), "probe")
        self.check_secret(text, "a message")

    def check_secret(self, text: str, where: str) -> None:
        self.tried("P16", "every message, close reason and rejection body searched for a token")
        for token in self.tokens:
            if token and token in text:
                problem = f"{where} from the backend carries an access token: {text[:120]}..."
                self._record(RuleViolation("P16", problem, (problem,)), "probe")
                return

    @asynccontextmanager
    async def raw(
        self, external_id: str | None = None, *, token: str | None = None
    ) -> AsyncIterator[RawClient]:
        """A raw connection with a token for ``external_id`` (or ``token``)."""
        token = self.token(external_id) if token is None else token
        async with raw_client(self.target, token, on_text=self.hold) as client:
            try:
                yield client
            finally:
                if client.stray:
                    self.expect(
                        "P4",
                        "every message with an id answers a request, once",
                        False,
                        client.stray[:3],
                        client,
                    )
                if client.close_reason:
                    self.check_secret(client.close_reason, "a close reason")
