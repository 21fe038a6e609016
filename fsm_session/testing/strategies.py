"""Hypothesis strategies for the inputs of a session: participant infos, tokens, call sequences.

``valid_*`` strategies draw values that rule R2 accepts; ``invalid_*`` draw values it refuses
(blank or oversized names, text with lone surrogates, relative or non-http avatar URLs, empty or
oversized external IDs). The limits come from :mod:`fsm_session.models`, the one place that
defines them, so a drawn value is valid exactly when ``info_problem`` says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from hypothesis import strategies as st

from fsm_session import tokens
from fsm_session.models import (
    MAX_AVATAR_URL_CHARS,
    MAX_EXTERNAL_ID_BYTES,
    MAX_NAME_CHARS,
    ParticipantInfo,
)

__all__ = [
    "Call",
    "TokenCase",
    "avatar_urls",
    "call_sequences",
    "calls",
    "external_ids",
    "invalid_avatar_urls",
    "invalid_external_ids",
    "invalid_names",
    "invalid_participant_infos",
    "names",
    "participant_infos",
    "token_cases",
]

# Any Unicode text but lone surrogates (category Cs), which R2 refuses.
_TEXT = st.characters(exclude_categories=["Cs"])
_HOSTS = st.sampled_from(["example.com", "cdn.example.org", "127.0.0.1", "xn--bcher-kva.example"])
_PATH_CHARS = st.characters(
    min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='#?%[]@\\^`{|}"<>'
)


def names() -> st.SearchStrategy[str]:
    """Names R2 accepts: any Unicode text that is not blank, up to 256 characters."""
    return st.one_of(
        st.text(_TEXT, min_size=1, max_size=40),
        st.text(_TEXT, min_size=MAX_NAME_CHARS - 2, max_size=MAX_NAME_CHARS),
    ).filter(lambda name: bool(name.strip()))


def invalid_names() -> st.SearchStrategy[str]:
    """Names R2 refuses: blank, oversized, or holding a lone surrogate."""
    blank = st.text(st.sampled_from(" \t\n\r\u00a0\u2003\u3000"), max_size=5)
    oversized = st.text(_TEXT, min_size=MAX_NAME_CHARS + 1, max_size=MAX_NAME_CHARS + 40).filter(
        lambda name: bool(name.strip())
    )
    surrogate = st.builds(lambda a, b: f"{a}\ud800{b}", st.text(_TEXT, max_size=5), st.text(_TEXT))
    return st.one_of(blank, oversized, surrogate)


def avatar_urls() -> st.SearchStrategy[str]:
    """Absolute http(s) URLs with a host, without spaces or control characters."""
    return st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https"]),
        _HOSTS,
        st.text(_PATH_CHARS, max_size=30),
    )


def invalid_avatar_urls() -> st.SearchStrategy[str]:
    """Avatar URLs R2 refuses: relative, another scheme, no host, spaces, control characters,
    or longer than 2048 characters."""
    return st.one_of(
        st.sampled_from(
            [
                "",
                "avatar.png",
                "/avatar.png",
                "ftp://example.com/a.png",
                "javascript:alert(1)",
                "https://",
                "http:///a.png",
                "https://example.com/a b.png",
                "https://example.com/\x07.png",
                "https://exa\nmple.com/a.png",
            ]
        ),
        st.integers(min_value=1, max_value=50).map(
            lambda extra: "https://example.com/" + "a" * (MAX_AVATAR_URL_CHARS + extra - 20)
        ),
    )


def external_ids() -> st.SearchStrategy[str]:
    """External IDs R2 accepts: non-empty text of at most 1024 UTF-8 bytes."""
    return st.text(_TEXT, min_size=1, max_size=30).filter(
        lambda text: len(text.encode("utf-8")) <= MAX_EXTERNAL_ID_BYTES
    )


def invalid_external_ids() -> st.SearchStrategy[str]:
    """External IDs R2 refuses: empty, over 1024 UTF-8 bytes, or holding a lone surrogate."""
    return st.one_of(
        st.just(""),
        st.integers(min_value=1, max_value=20).map(
            lambda n: "é" * (MAX_EXTERNAL_ID_BYTES // 2 + n)
        ),
        st.builds(lambda a: f"id-{a}\udfff", st.text(_TEXT, max_size=5)),
    )


def participant_infos(
    external_id: st.SearchStrategy[str | None] | None = None,
) -> st.SearchStrategy[ParticipantInfo]:
    """Infos R2 accepts. ``external_id`` draws the external ID (default: always ``None``, which
    takes the token's, so the info also passes R3 with any token)."""
    return st.builds(
        ParticipantInfo,
        name=names(),
        external_id=st.none() if external_id is None else external_id,
        avatar_url=st.none() | avatar_urls(),
    )


def invalid_participant_infos() -> st.SearchStrategy[ParticipantInfo]:
    """Infos R2 refuses: at least one of the name, avatar URL or external ID is out of limits
    (a ghost's ``name=None`` included: ``open(info)`` needs a name)."""
    return st.one_of(
        st.builds(
            ParticipantInfo,
            name=invalid_names() | st.none(),
            external_id=st.none(),
            avatar_url=st.none() | avatar_urls(),
        ),
        st.builds(
            ParticipantInfo, name=names(), external_id=st.none(), avatar_url=invalid_avatar_urls()
        ),
        st.builds(
            ParticipantInfo, name=names(), external_id=invalid_external_ids(), avatar_url=st.none()
        ),
    )


@dataclass(frozen=True, slots=True)
class Call:
    """One public call of a session service: ``open``, ``update`` or ``close``."""

    method: Literal["open", "update", "close"]
    info: ParticipantInfo | None = None
    """For ``open``: the info, or ``None`` for a bare ``open()``."""
    name: str | None = None
    avatar_url: str | None = None

    def __str__(self) -> str:
        if self.method == "open":
            return "open()" if self.info is None else f"open({self.info!r})"
        if self.method == "update":
            return f"update(name={self.name!r}, avatar_url={self.avatar_url!r})"
        return "close()"


def calls(*, invalid: bool = True) -> st.SearchStrategy[Call]:
    """One call; with ``invalid``, some draw values R2 refuses."""
    info = participant_infos()
    name = st.none() | names()
    avatar = st.none() | avatar_urls()
    if invalid:
        info = info | invalid_participant_infos()
        name = name | invalid_names()
        avatar = avatar | invalid_avatar_urls()
    return st.one_of(
        st.builds(Call, method=st.just("open"), info=st.none() | info),
        st.builds(Call, method=st.just("update"), name=name, avatar_url=avatar),
        st.just(Call("close")),
    )


def call_sequences(
    *, min_size: int = 0, max_size: int = 12, invalid: bool = True
) -> st.SearchStrategy[list[Call]]:
    """A list of calls to make one after another on one session."""
    return st.lists(calls(invalid=invalid), min_size=min_size, max_size=max_size)


@dataclass(frozen=True, slots=True)
class TokenCase:
    """A token and what a backend must do with it at the handshake (P1)."""

    kind: Literal["valid", "expired", "wrong_secret", "other_external_id"]
    token: str
    external_id: str | None

    @property
    def accepted(self) -> bool:
        """Whether the handshake must accept it (another external ID is accepted; R3 refuses
        it only when an open names the first external ID)."""
        return self.kind in ("valid", "other_external_id")


def token_cases(secret: str, external_id: str | None) -> st.SearchStrategy[TokenCase]:
    """Tokens for ``external_id``: valid, expired, signed with another secret, or for another
    external ID. Minted when drawn, against the wall clock."""

    def make(kind: str, other_secret: str, other_id: str) -> TokenCase:
        now = time.time()
        if kind == "expired":
            token = tokens.mint(secret, external_id=external_id, ttl=60.0, now=now - 3600.0)
        elif kind == "wrong_secret":
            token = tokens.mint(other_secret, external_id=external_id, ttl=3600.0, now=now)
        elif kind == "other_external_id":
            token = tokens.mint(secret, external_id=other_id, ttl=3600.0, now=now)
            return TokenCase("other_external_id", token, other_id)
        else:
            token = tokens.mint(secret, external_id=external_id, ttl=3600.0, now=now)
            return TokenCase("valid", token, external_id)
        return TokenCase(kind, token, external_id)  # type: ignore[arg-type]

    return st.builds(
        make,
        st.sampled_from(["valid", "expired", "wrong_secret", "other_external_id"]),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=32, max_size=40).filter(
            lambda s: s != secret
        ),
        external_ids().filter(lambda other: other != external_id),
    )
