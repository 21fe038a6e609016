"""The requests a client makes, as data: their kinds, their outcomes, the reconnect policy.

Sans I/O like the rest of the core: an outcome is resolved by the client protocol and wakes
whatever the driver hung on it (a ``trio.Event``), without this module knowing of trio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol

from fsm_session.errors import SessionError
from fsm_session.protocol import (
    Close,
    Closed,
    Message,
    Open,
    Opened,
    RefreshToken,
    Request,
    Resume,
    Resumed,
    TokenAccepted,
    Update,
    Updated,
)

__all__ = ["MAKERS", "Kind", "Outcome", "Pending", "ReconnectPolicy", "Waker"]


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a session whose connection dropped gets it back (rule R14), in seconds.

    The first attempt waits ``initial_delay``; each next delay is ``factor`` times the last, at
    most ``max_delay``. Each attempt (connect and resume) is bounded by ``attempt_timeout``.
    After ``give_up_after`` the session is lost: CLOSED, with a ``SessionLostEvent``. The delay
    starts again from ``initial_delay`` only after a connection stayed up ``max_delay`` seconds,
    so a connection that dies right after each resume does not reconnect in a tight loop. A
    request whose connection ended before its reply ``max_sends`` times fails.
    """

    initial_delay: float = 0.05
    factor: float = 2.0
    max_delay: float = 2.0
    attempt_timeout: float = 2.0
    give_up_after: float = 60.0
    max_sends: int = 3

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.factor < 1 or self.max_delay < self.initial_delay:
            raise ValueError("delays must be non-negative, growing and capped above the first")
        if self.attempt_timeout <= 0 or self.give_up_after < 0:
            raise ValueError("attempt_timeout must be positive and give_up_after non-negative")
        if self.max_sends < 1:
            raise ValueError("max_sends must be at least 1")


class Waker(Protocol):
    """What the driver hangs on an outcome to be woken when it is resolved (a ``trio.Event``)."""

    def set(self) -> None: ...


class Outcome:
    """Something callers wait for: a request's reply, or the end of a close."""

    __slots__ = ("done", "error", "value", "waker")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.error: SessionError | None = None
        self.waker: Waker | None = None

    def _resolve(self, value: Any = None, error: SessionError | None = None) -> bool:
        if self.done:
            return False
        self.done, self.value, self.error = True, value, error
        if self.waker is not None:
            self.waker.set()
        return True


class Kind(Enum):
    """The kinds of request, each with the one reply kind it accepts (besides ``error``)."""

    OPEN = ("open", Opened)
    UPDATE = ("update", Updated)
    CLOSE = ("close", Closed)
    RESUME = ("resume", Resumed)
    TOKEN = ("refresh_token", TokenAccepted)

    def __init__(self, trigger: str, reply: type[Message]) -> None:
        self.trigger = trigger
        self.reply = reply


class Pending(Outcome):
    """One request, from the call that made it until its outcome."""

    __slots__ = ("args", "deadline", "generation", "id", "kind", "sends")

    def __init__(self, kind: Kind, generation: int, args: tuple[Any, ...], deadline: float):
        super().__init__()
        self.kind = kind
        self.generation = generation
        self.args = args
        self.deadline = deadline
        self.id: int | None = None
        """The id of its frame on the current connection; ``None`` while not on the wire."""
        self.sends = 0
        """How many connections it was sent on."""

    def __repr__(self) -> str:
        return f"<Pending {self.kind.trigger} id={self.id} gen={self.generation} done={self.done}>"


MAKERS: Final[dict[Kind, Callable[..., Request]]] = {
    Kind.OPEN: Open,
    Kind.UPDATE: Update,
    Kind.CLOSE: Close,
    Kind.RESUME: Resume,
    Kind.TOKEN: RefreshToken,
}
