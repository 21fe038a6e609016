"""The building blocks of a machine's table: rows, selectors, guards, refusals, samples.

A table maps every state of an ``Enum`` to a tuple of :class:`On` rows, read top to bottom. A row
says: on this trigger, when these selectors hold, after these guards pass, go to this state, run
these actions and hand back this effect.

* Selectors (``when``) choose between rows of one trigger; they return ``True`` or ``False``.
* Guards (:class:`Guard`) enforce one written rule each; a broken rule raises the guard's typed
  error naming the rule, the trigger and the state. Guards run before anything changes, so a
  refused trigger leaves the state and the data as they were.
* Actions (``do``) update the model's data; they run only after every guard passed.
* The effect is whatever the row hands back to its caller (for the session, the I/O its driver
  must do); ``None`` hands back the machine's declared "no effect".

Nothing here imports trio or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol, cast

from transitions import EventData

__all__ = [
    "Action",
    "Guard",
    "On",
    "Refusal",
    "RuleError",
    "Sample",
    "Selector",
    "TriggerKind",
    "guard",
]

Selector = Callable[[EventData], bool]
"""Chooses between rows of one trigger: ``True`` takes the row."""
Action = Callable[[EventData], None]
"""Updates the model's data once every guard of the row passed."""


class RuleError(Protocol):
    """The shape of an error a guard or a refusal raises: a reason, and where it broke."""

    def __call__(
        self, reason: str, /, *, rule: str | None, trigger: str | None, state: Enum | None
    ) -> Exception: ...


class Guard:
    """A named predicate that enforces one written rule.

    ``check`` returns why the rule is broken, or ``None``. Called by the machine, the guard
    raises ``error(reason, rule=..., trigger=..., state=...)`` or returns ``True``.
    """

    __slots__ = ("__name__", "check", "error", "rule")

    def __init__(
        self, rule: str, error: type[Exception], check: Callable[[EventData], str | None]
    ) -> None:
        self.rule = rule
        self.error = error
        self.check = check
        self.__name__ = check.__name__

    def __call__(self, event: EventData) -> bool:
        reason = self.check(event)
        if reason is not None:
            error = cast(RuleError, self.error)
            raise error(
                reason, rule=self.rule, trigger=event.event.name, state=cast(Any, event.model).state
            )
        return True

    def __repr__(self) -> str:
        return f"<guard {self.__name__} ({self.rule})>"


def guard(
    rule: str, error: type[Exception]
) -> Callable[[Callable[[EventData], str | None]], Guard]:
    """Declare a guard for ``rule`` that raises ``error`` (a decorator on the check)."""

    def wrap(check: Callable[[EventData], str | None]) -> Guard:
        return Guard(rule, error, check)

    return wrap


@dataclass(frozen=True, slots=True, eq=False)
class On:
    """One row of a table: what happens on ``trigger`` in the state whose row this is.

    Rows compare by identity: two states may hold rows that read alike, and ``core.last``
    must name the one that was taken.
    """

    trigger: str
    dest: Enum | None = None
    """The next state; ``None`` stays in the same state (an internal transition)."""
    when: tuple[Selector, ...] = ()
    guards: tuple[Guard, ...] = ()
    do: tuple[Action, ...] = ()
    effect: Enum | None = None
    """What the trigger hands back; ``None``: the machine's declared "no effect"."""
    rule: str = ""
    """The rule(s) this row implements, space-separated, as written in the machine's spec."""


class Refusal(NamedTuple):
    """How a trigger is refused in a state that has no row for it."""

    error: type[Exception]
    rule: str
    reason: str


class TriggerKind(Enum):
    """Who fires a trigger; the diagrams style edges by it."""

    CALL = "call"
    """A public call of the application."""
    REPLY = "reply"
    """A reply from the other side (for the session, the backend)."""
    EVENT = "event"
    """Something observed on the connection (a loss, a drop)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Arguments the exploration of paths may give a trigger, and when it may give them.

    ``args`` is a mapping of keyword arguments, or a function of the model that returns one (a
    reply that carries what the model asked for). ``when`` (a function of the model) says whether
    the sample applies at all; by default it always does, and a refused trigger is skipped anyway.
    """

    label: str
    """How a step with this sample prints, e.g. ``open(info)``."""
    args: Mapping[str, object] | Callable[[Any], Mapping[str, object]] = field(default_factory=dict)
    when: Callable[[Any], bool] | None = None

    def kwargs(self, model: object) -> Mapping[str, object]:
        """The keyword arguments for ``model``."""
        args = self.args
        return dict(args(model)) if callable(args) else dict(args)
