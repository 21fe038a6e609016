"""Broken backends made from the wire: the real reference server behind a proxy that breaks
exactly one written rule (test-only).

Each mutant is a :class:`~fsm_session.testing.proxy.Mutator` for a
:class:`~fsm_session.testing.proxy.LoopbackProxy` in front of an unpatched reference server, so
it makes the mistakes another implementation could make, seen only on the wire. ``MUTANTS``
maps each name to the rule it breaks; the conformance kit must name that rule.

``python -m tests.mutants [CONFORMANCE.md]`` (``make mutants``) runs the kit against every
mutant and writes the detection matrix into the file, between its markers.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jwt

from fsm_session.server import serve
from fsm_session.server.config import ServerConfig
from fsm_session.testing.credentials import signed_token
from fsm_session.testing.portal import TrioPortal
from fsm_session.testing.proxy import Direction, LoopbackProxy

TEXT, CLOSE, BINARY, PING = 0x1, 0x8, 0x2, 0x9
Out = list[tuple[int, bytes]] | None
IDLE_TIMEOUT = 4.0
"""The reference server's idle timeout behind the mutants, so that P13 can be checked."""


def _json(data: object) -> tuple[int, bytes]:
    return TEXT, json.dumps(data).encode()


@dataclass
class Mutator:
    """Forwards everything unchanged; a mutant overrides one of the hooks."""

    secret: str
    state: dict[int, dict[str, Any]] = field(default_factory=dict)

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        return head

    def message(self, sender: Direction, connection: int, opcode: int, payload: bytes) -> Out:
        if opcode == CLOSE and len(payload) >= 2:
            code = self.close(sender, int.from_bytes(payload[:2], "big"))
            return None if code is None else [(CLOSE, code.to_bytes(2, "big") + payload[2:])]
        if opcode != TEXT:
            return self.other(sender, opcode)
        try:
            data = json.loads(payload)
        except ValueError:
            return self.not_json(sender, payload)
        if not isinstance(data, dict):
            return None
        conn = self.state.setdefault(connection, {})
        hook = self.client if sender == "client" else self.server
        try:
            out = hook(conn, data)
        except (KeyError, TypeError, AttributeError):
            return None  # a message the mutant does not expect (a probe's junk): unchanged
        return None if out is None else [_json(each) for each in out]

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return None

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return None

    def close(self, sender: Direction, code: int) -> int | None:
        return None

    def other(self, sender: Direction, opcode: int) -> Out:
        return None

    def not_json(self, sender: Direction, payload: bytes) -> Out:
        return None

    # Helpers for the upgrade request's token.
    def retoken(self, head: bytes, change: Callable[[str], str | None]) -> bytes:
        match = re.search(rb"(?im)^authorization: bearer (\S+)\r$", head)
        if match is None:
            return head
        new = change(match.group(1).decode())
        if new is None:
            return head
        return head[: match.start(1)] + new.encode() + head[match.end(1) :]

    def verifies(self, token: str) -> bool:
        try:
            jwt.decode(token, self.secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return False
        return True

    def resign(self, token: str, **changes: object) -> str | None:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        return signed_token(self.secret, {**claims, **changes})


# ------------------------------------------------------------------------------ P1 Handshake
class AcceptsForeignSecret(Mutator):
    """P1: a token signed with another secret is accepted."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        if sender != "client":
            return head
        return self.retoken(head, lambda t: None if self.verifies(t) else self.resign(t))


class AcceptsOtherSchemes(Mutator):
    """P1: ``Authorization: Token <jwt>`` is taken as ``Bearer``."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        if sender != "client":
            return head
        return re.sub(rb"(?im)^authorization: token ", b"Authorization: Bearer ", head)


class IgnoresTimeClaimTypes(Mutator):
    """P1: an ``iat`` or ``nbf`` that is not a number is dropped instead of refused."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        if sender != "client":
            return head

        def strip(token: str) -> str | None:
            if not self.verifies(token):
                return None
            claims = jwt.decode(token, options={"verify_signature": False})
            bad = [k for k in ("iat", "nbf") if k in claims and type(claims[k]) not in (int, float)]
            if not bad:
                return None
            return signed_token(self.secret, {k: v for k, v in claims.items() if k not in bad})

        return self.retoken(head, strip)


class AcceptsExpired(Mutator):
    """P1: an expired token is accepted."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        if sender != "client":
            return head

        def renew(token: str) -> str | None:
            if not self.verifies(token):
                return None
            claims = jwt.decode(token, options={"verify_signature": False})
            exp = claims.get("exp")
            if not isinstance(exp, int | float) or exp > time.time():
                return None
            return self.resign(token, exp=int(time.time()) + 3600)

        return self.retoken(head, renew)


class SelectsNoSubprotocol(Mutator):
    """P1: the upgrade is accepted without selecting ``fsm-session.v1``."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        if sender == "server" and head.startswith(b"HTTP/1.1 101"):
            return re.sub(rb"(?im)^sec-websocket-protocol:[^\r]*\r\n", b"", head)
        return head


# ------------------------------------------------------------------------------ P2 Frames
class IgnoresBinary(Mutator):
    """P2: a binary message is ignored instead of closing with 1003."""

    def other(self, sender: Direction, opcode: int) -> Out:
        return [] if sender == "client" and opcode == BINARY else None


class TakesOversize(Mutator):
    """P2: a message over the size limit is not closed with 1009 (it is dropped)."""

    def message(self, sender: Direction, connection: int, opcode: int, payload: bytes) -> Out:
        if sender == "client" and opcode == TEXT and len(payload) > 65536:
            return []
        return super().message(sender, connection, opcode, payload)


class SilentOnNotJson(Mutator):
    """P2: a text message that is not JSON gets no answer."""

    def not_json(self, sender: Direction, payload: bytes) -> Out:
        return [] if sender == "client" else None


class UnknownTypeAsBadRequest(Mutator):
    """P2: an unknown type is answered ``bad_request`` instead of ``unknown_type``."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("code") == "unknown_type":
            return [{**data, "code": "bad_request"}]
        return None


# ------------------------------------------------------------------------------ P3 Request IDs
class ReadsFloatIds(Mutator):
    """P3: ``"id": 7.0`` is read as the id 7."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        rid = data.get("id")
        if isinstance(rid, float) and rid.is_integer() and rid > 0:
            return [{**data, "id": int(rid)}]
        return None


class TakesStaleIds(Mutator):
    """P3: a request whose id does not increase is carried out."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("code") == "bad_request_id" and data.get("id") is not None:
            return [{"type": "closed", "id": data["id"]}]
        return None


# ------------------------------------------------------------------------------ P4 Replies
class DuplicatesReplies(Mutator):
    """P4: every reply is sent twice."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [data, data] if data.get("id") is not None else None


class MisnumbersUpdated(Mutator):
    """P4: an ``updated`` reply carries another request's id."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "updated":
            return [{**data, "id": data["id"] + 1000}]
        return None


class MemberTypesFirst(Mutator):
    """P4: member types are checked before the id is required (a step out of order)."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        rid = data.get("id")
        conn["unreadable"] = not isinstance(rid, int) or isinstance(rid, bool)
        conn["bad_member"] = "name" in data and not isinstance(data["name"], str | None)
        return None

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if (
            data.get("code") == "bad_request_id"
            and conn.get("unreadable")
            and conn.get("bad_member")
        ):
            return [{**data, "code": "bad_request", "rule": "P2"}]
        return None


# ------------------------------------------------------------------------------ P5 Errors
class ErrorsNameNoRule(Mutator):
    """P5: error replies carry ``rule: null``."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [{**data, "rule": None}] if data.get("type") == "error" else None


class ErrorsWithExtraMember(Mutator):
    """P5: error replies carry a member the protocol does not have."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [{**data, "detail": "more"}] if data.get("type") == "error" else None


# ------------------------------------------------------------------------------ P6 to P10
class ForgetsTokenExternalId(Mutator):
    """P6: ``opened`` leaves the external ID null when the client sent null."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "open":
            conn["null_external"] = (data.get("info") or {}).get("external_id") is None
        return None

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "opened" and conn.get("null_external"):
            participant = data["participant"]
            info = {**participant["info"], "external_id": None}
            return [{**data, "participant": {**participant, "info": info}}]
        return None


class IgnoresUpdate(Mutator):
    """P7: ``update`` changes nothing (the values are dropped on the way in)."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "update" and isinstance(data.get("name"), str):
            return [{**data, "name": None, "avatar_url": None}]
        return None


class LeavesCloseUnanswered(Mutator):
    """P8: ``close`` gets no ``closed``."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [] if data.get("type") == "closed" else None


class RefusesResume(Mutator):
    """P9: a dropped session cannot be resumed."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "resume":
            return [{**data, "participant_id": secrets.token_hex(16)}]
        return None


class TokenAcceptedWithoutClaims(Mutator):
    """P10: ``token_accepted`` does not carry the new token's external ID."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "token_accepted":
            return [{**data, "external_id": None}]
        return None


class RefreshKeepsOldExpiry(Mutator):
    """P10: ``token_accepted`` carries the new ``exp``, but the connection keeps the old token
    (and its expiry for P11)."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        match = re.search(rb"(?im)^authorization: bearer (\S+)\r$", head)
        if sender == "client" and match is not None:
            self.state.setdefault(connection, {})["token"] = match.group(1).decode()
        return head

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "token" and self.verifies(data["token"]):
            claims = jwt.decode(data["token"], options={"verify_signature": False})
            conn["exp"] = claims.get("exp")
            return [{**data, "token": conn["token"]}]
        return None

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "token_accepted" and "exp" in conn:
            return [{**data, "expires_at": conn["exp"]}]
        return None


class TokenAcceptedWithBool(Mutator):
    """P10: ``token_accepted`` says ``expires_at: true`` instead of the token's ``exp``."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "token_accepted":
            return [{**data, "expires_at": True}]
        return None


# ------------------------------------------------------------------------------ P11 to P16
class SilentExpiry(Mutator):
    """P11: the session ends on expiry without ``ended`` ``token_expired``."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [] if data.get("reason") == "token_expired" else None


class SilentSwitch(Mutator):
    """P12: the switched connection gets no ``ended`` ``switched``."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [] if data.get("reason") == "switched" else None


class SwitchClosesNormally(Mutator):
    """P12: the switched connection is closed with 1000, not 4001."""

    def close(self, sender: Direction, code: int) -> int | None:
        return 1000 if sender == "server" and code == 4001 else None


class IdleClosesNormally(Mutator):
    """P13: an idle connection is closed with 1000, not 4003."""

    def close(self, sender: Direction, code: int) -> int | None:
        return 1000 if sender == "server" and code == 4003 else None


class LimitsAsBadRequest(Mutator):
    """P14: requests over the rate are answered ``bad_request`` (P2), not ``rate_limited``.

    (A backend that never limits is not broken as far as the kit can tell: P14 lets each backend
    choose its rate, and the kit reports P14 "not run" when no burst it sends is limited.)"""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("code") == "rate_limited":
            return [{**data, "code": "bad_request", "rule": "P2"}]
        return None


class FramingClosesWithPolicy(Mutator):
    """P15: a framing error closes with 1008 instead of 1002."""

    def close(self, sender: Direction, code: int) -> int | None:
        return 1008 if sender == "server" and code == 1002 else None


class LeaksToken(Mutator):
    """P16: error messages quote the connection's access token."""

    def head(self, sender: Direction, connection: int, head: bytes) -> bytes:
        match = re.search(rb"(?im)^authorization: bearer (\S+)\r$", head)
        if sender == "client" and match is not None:
            self.state.setdefault(connection, {})["token"] = match.group(1).decode()
        return head

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "error" and "token" in conn:
            return [{**data, "message": f"{data['message']} (token {conn['token']})"}]
        return None


# ------------------------------------------------------------------------------ R rules
class AcceptsBlankName(Mutator):
    """R2: a blank name is accepted (replaced on the way in)."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        info = data.get("info")
        if data.get("type") == "open" and isinstance(info, dict):
            name = info.get("name")
            if isinstance(name, str) and not name.strip():
                return [{**data, "info": {**info, "name": "Blank"}}]
        return None


class AcceptsMismatchedExternalId(Mutator):
    """R3: an external ID other than the token's is accepted (the token's is used)."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        info = data.get("info")
        if data.get("type") == "open" and isinstance(info, dict) and info.get("external_id"):
            return [{**data, "info": {**info, "external_id": None}}]
        return None


class NewParticipantIds(Mutator):
    """R4: every ``opened`` names a new participant ID."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "opened" and data["participant"]["info"].get("name"):
            return [{**data, "participant": {**data["participant"], "id": secrets.token_hex(16)}}]
        return None


class RefusesSameOpenTwice(Mutator):
    """R5: opening again with the same info is refused."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "opened":
            conn["opened"] = conn.get("opened", 0) + 1
            if conn["opened"] > 1:
                message = "a session is already open"
                return [
                    {
                        "type": "error",
                        "id": data["id"],
                        "code": "session_already_open",
                        "message": message,
                        "rule": "R5",
                    }
                ]
        if data.get("type") == "closed":
            conn["opened"] = 0
        return None


class UpdateChangesExternalId(Mutator):
    """R10: ``updated`` shows another external ID."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "updated":
            participant = data["participant"]
            info = {**participant["info"], "external_id": "changed"}
            return [{**data, "participant": {**participant, "info": info}}]
        return None


class ResumesAnyone(Mutator):
    """R14: a resume of a participant that does not exist is answered ``resumed``."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "resume":
            conn["resume"] = data.get("participant_id")
        return None

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("code") == "unknown_participant":
            info = {"name": "Someone", "external_id": None, "avatar_url": None}
            participant = {"id": conn.get("resume"), "info": info}
            return [{"type": "resumed", "id": data["id"], "participant": participant}]
        return None


class NoPong(Mutator):
    """R15: pings are not answered."""

    def other(self, sender: Direction, opcode: int) -> Out:
        return [] if sender == "client" and opcode == PING else None


class TakesForeignRefresh(Mutator):
    """R16: a ``token`` request with a foreign token is accepted."""

    def client(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        token = data.get("token")
        if data.get("type") == "token" and isinstance(token, str) and not self.verifies(token):
            new = self.resign(token)
            return None if new is None else [{**data, "token": new}]
        return None


class SwitchGivesNewId(Mutator):
    """R17: the participant opened on another connection gets another participant ID."""

    def server(self, conn: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]] | None:
        if data.get("type") == "opened" and data["participant"]["info"].get("name") == "A again":
            return [{**data, "participant": {**data["participant"], "id": secrets.token_hex(16)}}]
        return None


MUTANTS: dict[str, tuple[str, type[Mutator]]] = {
    "accepts_foreign_secret": ("P1", AcceptsForeignSecret),
    "accepts_expired_token": ("P1", AcceptsExpired),
    "accepts_other_schemes": ("P1", AcceptsOtherSchemes),
    "ignores_time_claim_types": ("P1", IgnoresTimeClaimTypes),
    "selects_no_subprotocol": ("P1", SelectsNoSubprotocol),
    "ignores_binary": ("P2", IgnoresBinary),
    "takes_oversize": ("P2", TakesOversize),
    "silent_on_not_json": ("P2", SilentOnNotJson),
    "unknown_type_as_bad_request": ("P2", UnknownTypeAsBadRequest),
    "reads_float_ids": ("P3", ReadsFloatIds),
    "takes_stale_ids": ("P3", TakesStaleIds),
    "duplicates_replies": ("P4", DuplicatesReplies),
    "misnumbers_updated": ("P4", MisnumbersUpdated),
    "member_types_first": ("P4", MemberTypesFirst),
    "errors_name_no_rule": ("P5", ErrorsNameNoRule),
    "errors_with_extra_member": ("P5", ErrorsWithExtraMember),
    "forgets_token_external_id": ("P6", ForgetsTokenExternalId),
    "ignores_update": ("P7", IgnoresUpdate),
    "leaves_close_unanswered": ("P8", LeavesCloseUnanswered),
    "refuses_resume": ("P9", RefusesResume),
    "token_accepted_without_claims": ("P10", TokenAcceptedWithoutClaims),
    "refresh_keeps_old_expiry": ("P10", RefreshKeepsOldExpiry),
    "token_accepted_with_bool": ("P10", TokenAcceptedWithBool),
    "silent_expiry": ("P11", SilentExpiry),
    "silent_switch": ("P12", SilentSwitch),
    "switch_closes_normally": ("P12", SwitchClosesNormally),
    "idle_closes_normally": ("P13", IdleClosesNormally),
    "limits_as_bad_request": ("P14", LimitsAsBadRequest),
    "framing_closes_with_policy": ("P15", FramingClosesWithPolicy),
    "leaks_token": ("P16", LeaksToken),
    "accepts_blank_name": ("R2", AcceptsBlankName),
    "accepts_mismatched_external_id": ("R3", AcceptsMismatchedExternalId),
    "new_participant_ids": ("R4", NewParticipantIds),
    "refuses_same_open_twice": ("R5", RefusesSameOpenTwice),
    "update_changes_external_id": ("R10", UpdateChangesExternalId),
    "resumes_anyone": ("R14", ResumesAnyone),
    "no_pong": ("R15", NoPong),
    "takes_foreign_refresh": ("R16", TakesForeignRefresh),
    "switch_gives_new_id": ("R17", SwitchGivesNewId),
}
"""Every mutant: the rule it breaks and its mutator."""

SAMPLE = (
    "accepts_mismatched_external_id",
    "duplicates_replies",
    "errors_with_extra_member",
    "leaks_token",
)
"""The fast sample ``make test`` runs; ``make mutants`` runs them all."""


@contextmanager
def mutant_backend(name: str, secret: str, *, idle_timeout: float | None = None) -> Iterator[str]:
    """The reference server behind the mutant ``name``'s proxy; the proxy's URL."""
    _, kind = MUTANTS[name]
    config = ServerConfig() if idle_timeout is None else ServerConfig(idle_timeout=idle_timeout)
    with TrioPortal() as portal:
        url = portal.run(
            portal.nursery.start, partial(serve, "127.0.0.1", 0, secret=secret, config=config)
        )
        proxy = LoopbackProxy(url, mutator=kind(secret))
        yield portal.run(proxy.start, portal.nursery)


def _matrix(rows: list[tuple[str, str, list[str], float]]) -> str:
    lines = [
        "| mutant | breaks | named by the kit | seconds |",
        "| --- | --- | --- | --- |",
    ]
    for name, rule, named, seconds in rows:
        shown = ", ".join(f"**{r}**" if r == rule else r for r in named) or "(none: MISSED)"
        lines.append(f"| `{name}` | {rule} | {shown} | {seconds:.1f} |")
    caught = sum(rule in named for _, rule, named, _ in rows)
    lines += ["", f"{caught} of {len(rows)} mutants named by their rule."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from fsm_session.testing import check_backend, token_minter

    rows: list[tuple[str, str, list[str], float]] = []
    for name, (rule, _) in MUTANTS.items():
        secret = secrets.token_urlsafe(32)
        started = time.monotonic()
        with mutant_backend(name, secret, idle_timeout=IDLE_TIMEOUT) as url:
            report = check_backend(
                url,
                mint_token=token_minter(secret),
                examples=3,
                seed=1,
                secret=secret,
                idle_timeout=IDLE_TIMEOUT,
            )
        rows.append((name, rule, report.broken, time.monotonic() - started))
        print(f"{name}: {rule} -> {report.broken} ({rows[-1][3]:.1f} s)", flush=True)
    matrix = _matrix(rows)
    if argv:
        path = Path(argv[0])
        text = path.read_text(encoding="utf-8")
        begin, end = "<!-- mutation-matrix:begin -->", "<!-- mutation-matrix:end -->"
        if begin in text:
            head, rest = text.split(begin, 1)
            text = f"{head}{begin}\n\n{matrix}\n\n{end}{rest.split(end, 1)[1]}"
        else:
            text = f"{text.rstrip()}\n\n{begin}\n\n{matrix}\n\n{end}\n"
        path.write_text(text, encoding="utf-8")
    else:
        print(matrix)
    return 0 if all(rule in named for _, rule, named, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
