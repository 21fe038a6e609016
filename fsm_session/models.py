"""Value types: who a participant is, and the limits a participant's info must keep (rule R2).

The limits are checked in one place, :func:`info_problem`, which the state machine's guards and
the reference server both call, so the client and the backend can never disagree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "MAX_AVATAR_URL_CHARS",
    "MAX_EXTERNAL_ID_BYTES",
    "MAX_NAME_CHARS",
    "Participant",
    "ParticipantInfo",
    "avatar_url_problem",
    "external_id_problem",
    "info_problem",
    "name_problem",
]

MAX_NAME_CHARS = 256
MAX_AVATAR_URL_CHARS = 2048
MAX_EXTERNAL_ID_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """Who a participant says they are.

    Constructing one checks nothing: ``open()`` and ``update()`` check it against rule R2 and
    raise :class:`~fsm_session.errors.InvalidParticipantInfo` with the reason. A ghost
    participant's info has ``name=None``.
    """

    name: str | None
    external_id: str | None = None
    avatar_url: str | None = None

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"]
        if self.external_id is not None:
            parts.append(f"external_id={self.external_id!r}")
        if self.avatar_url is not None:
            parts.append(f"avatar_url={self.avatar_url!r}")
        return f"ParticipantInfo({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant as the backend knows it: the ID it assigned, and the info."""

    id: str
    info: ParticipantInfo

    @property
    def is_ghost(self) -> bool:
        """True for a temporary participant opened without a name (rule R6)."""
        return self.info.name is None


def _not_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a participant's name, or ``None`` when it can (rule R2)."""
    if not isinstance(name, str):
        return f"the name must be a str, not {type(name).__name__}"
    if not name.strip():
        return "the name must not be blank"
    if len(name) > MAX_NAME_CHARS:
        return f"the name has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed"
    if _not_utf8(name):
        return "the name is not valid Unicode text (it holds a lone surrogate)"
    return None


def avatar_url_problem(url: object) -> str | None:
    """Why ``url`` cannot be an avatar URL, or ``None`` when it can (rule R2)."""
    if not isinstance(url, str):
        return f"the avatar URL must be a str, not {type(url).__name__}"
    if len(url) > MAX_AVATAR_URL_CHARS:
        return (
            f"the avatar URL has {len(url)} characters; at most {MAX_AVATAR_URL_CHARS} are allowed"
        )
    if _not_utf8(url) or any(c.isspace() or ord(c) < 0x20 for c in url):
        return "the avatar URL must not contain spaces, control characters or lone surrogates"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"the avatar URL does not parse: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return "the avatar URL must be an absolute http or https URL"
    return None


def external_id_problem(external_id: object) -> str | None:
    """Why ``external_id`` cannot be an external ID, or ``None`` when it can (rule R2)."""
    if not isinstance(external_id, str):
        return f"the external ID must be a str, not {type(external_id).__name__}"
    if not external_id:
        return "the external ID must not be empty"
    try:
        size = len(external_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "the external ID is not valid Unicode text (it holds a lone surrogate)"
    if size > MAX_EXTERNAL_ID_BYTES:
        return (
            f"the external ID has {size} UTF-8 bytes; at most {MAX_EXTERNAL_ID_BYTES} are allowed"
        )
    return None


def info_problem(info: object) -> str | None:
    """Why ``info`` cannot open a session, or ``None`` when it can (rule R2)."""
    if not isinstance(info, ParticipantInfo):
        return f"expected a ParticipantInfo, not {type(info).__name__}"
    problem = name_problem(info.name)
    if problem is None and info.avatar_url is not None:
        problem = avatar_url_problem(info.avatar_url)
    if problem is None and info.external_id is not None:
        problem = external_id_problem(info.external_id)
    return problem
