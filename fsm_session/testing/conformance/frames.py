"""Frames (P2 to P5): every message the backend sends, held against the written protocol.

:func:`problem_of` restates ``specs/protocol.md`` for one server message: one JSON object, of a
type a backend sends, with exactly the members the schema lists, of the right JSON types (read
by the project's strict codec), an ``error``'s ``code`` one of the table's with the rule the table
gives it. When ``jsonschema`` is installed and the spec's ``protocol.schema.json`` is at hand (a
source checkout), the message is validated against ``$defs/serverFrame`` too.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

from fsm_session.errors import RemoteProtocolError
from fsm_session.protocol import decode_reply

__all__ = ["ERROR_RULES", "MEMBERS", "problem_of"]

MEMBERS: Final[dict[str, frozenset[str]]] = {
    "opened": frozenset({"type", "id", "participant"}),
    "updated": frozenset({"type", "id", "participant"}),
    "resumed": frozenset({"type", "id", "participant"}),
    "closed": frozenset({"type", "id"}),
    "token_accepted": frozenset({"type", "id", "external_id", "expires_at"}),
    "error": frozenset({"type", "id", "code", "message", "rule"}),
    "ended": frozenset({"type", "reason"}),
}
"""The members of each message a backend sends (P2: every one, no other)."""

ERROR_RULES: Final[dict[str, frozenset[str]]] = {
    "bad_frame": frozenset({"P2"}),
    "unknown_type": frozenset({"P2"}),
    "bad_request": frozenset({"P2"}),
    "bad_request_id": frozenset({"P3"}),
    "frame_too_large": frozenset({"P2"}),
    "rate_limited": frozenset({"P14"}),
    "invalid_participant_info": frozenset({"R2", "R10"}),
    "external_id_mismatch": frozenset({"R3"}),
    "session_already_open": frozenset({"R5"}),
    "session_not_open": frozenset({"R10"}),
    "unknown_participant": frozenset({"R14"}),
    "invalid_token": frozenset({"R16"}),
    "token_expired": frozenset({"R16"}),
    "internal_error": frozenset({"P5"}),
}
"""The table of error codes: the rule each code names."""

_ENDED_REASONS: Final = {"switched": "P12", "token_expired": "P11"}
_SCHEMA: Final = Path(__file__).resolve().parents[3] / "specs" / "protocol.schema.json"


def _rule_for(kind: object) -> str:
    if kind == "error":
        return "P5"
    return "P2"


def problem_of(text: str) -> tuple[str, str] | None:
    """``(rule, what is wrong)`` when ``text`` is not a message a backend may send, else None."""
    try:
        frame = json.loads(text)
    except ValueError:
        return "P2", f"a message that is not JSON: {text[:120]!r}"
    if not isinstance(frame, dict):
        return "P2", f"a message that is not a JSON object: {text[:120]!r}"
    kind = frame.get("type")
    members = MEMBERS.get(kind) if isinstance(kind, str) else None
    if members is None:
        return "P2", f"a message of a type no backend sends: {kind!r}"
    rule = _rule_for(kind)
    if set(frame) != members:
        extra, missing = sorted(set(frame) - members), sorted(members - set(frame))
        return rule, f"a {kind!r} message with members {extra} too many, {missing} missing"
    try:
        decode_reply(text)
    except RemoteProtocolError as exc:
        return rule, f"a {kind!r} message the protocol does not allow: {exc.reason}"
    participant = frame.get("participant")
    if isinstance(participant, dict) and (
        set(participant) != {"id", "info"}
        or set(participant.get("info") or {}) != {"name", "external_id", "avatar_url"}
    ):
        return "P2", f"a participant without exactly its members: {participant!r}"
    if kind == "error":
        code, cited = frame.get("code"), frame.get("rule")
        allowed = ERROR_RULES.get(code) if isinstance(code, str) else None
        if allowed is not None and cited not in allowed:
            return "P5", f"an error {code!r} naming rule {cited!r}, not {sorted(allowed)}"
    if kind == "ended" and frame.get("reason") not in _ENDED_REASONS:
        return "P2", f"'ended' with a reason the protocol does not have: {frame.get('reason')!r}"
    problem = _schema_problem(frame)
    if problem is not None:
        return rule, f"a {kind!r} message the schema refuses: {problem}"
    return None


def _schema_problem(frame: dict[str, Any]) -> str | None:
    validator = _validator()
    if validator is None:
        return None
    error = next(iter(validator.iter_errors(frame)), None)
    return None if error is None else str(error.message)[:200]


@cache
def _validator() -> Any:
    try:
        from jsonschema import Draft202012Validator
    except ImportError:
        return None
    if not _SCHEMA.is_file():
        return None
    schema = json.loads(_SCHEMA.read_text(encoding="utf-8"))
    # The same document with another root, so every "#/$defs/..." reference still resolves.
    rooted = {key: value for key, value in schema.items() if key not in ("oneOf", "$id")}
    rooted["$ref"] = "#/$defs/serverFrame"
    return Draft202012Validator(rooted)
