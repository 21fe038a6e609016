"""Check frames against the wire protocol's JSON Schema, ``specs/protocol.schema.json``.

Tests call these on every frame they send or receive, so a frame that breaks ``specs/protocol.md``
fails the test that saw it, whichever side produced it::

    frame = validate_server_frame(await ws.get_message())
    assert frame["type"] == "opened"

Each returns the decoded JSON object and raises ``jsonschema.ValidationError`` (or
``json.JSONDecodeError``, ``TypeError`` for a binary frame) when the frame is not valid.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

__all__ = [
    "SCHEMA_PATH",
    "schema",
    "validate_client_frame",
    "validate_handshake_rejection",
    "validate_server_frame",
    "validator",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "specs" / "protocol.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The protocol's schema, loaded once."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def validator(definition: str) -> Draft202012Validator:
    """A validator for one of the schema's ``$defs`` (``clientFrame``, ``serverFrame``, ...)."""
    whole = schema()
    if definition not in whole["$defs"]:
        raise KeyError(f"the schema defines no {definition!r}")
    # The same document with another root, so every "#/$defs/..." reference still resolves.
    rooted = {key: value for key, value in whole.items() if key not in ("oneOf", "$id")}
    rooted["$ref"] = f"#/$defs/{definition}"
    return Draft202012Validator(rooted)


def _validate(definition: str, text: str | bytes) -> dict[str, Any]:
    if not isinstance(text, str):
        raise TypeError(f"protocol frames are JSON text, not {type(text).__name__}")
    frame = json.loads(text, parse_constant=_refuse_constant)
    validator(definition).validate(frame)
    assert isinstance(frame, dict)
    return frame


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def validate_client_frame(text: str | bytes) -> dict[str, Any]:
    """The frame a client sent, checked against ``$defs/clientFrame``."""
    return _validate("clientFrame", text)


def validate_server_frame(text: str | bytes) -> dict[str, Any]:
    """The frame a server sent, checked against ``$defs/serverFrame``."""
    return _validate("serverFrame", text)


def validate_handshake_rejection(body: bytes | None) -> dict[str, Any]:
    """The body of a rejected upgrade (P1), checked against ``$defs/handshakeRejection``."""
    if body is None:
        raise ValueError("the rejection has no body")
    return _validate("handshakeRejection", body.decode("utf-8"))
