"""A user's own machine declared on the engine: one participant joining and leaving a conference.

It lives in the tests, not the library, to show that the engine, the diagrams, the Markdown table,
the transition paths and property tests work on any machine declared with ``declare``. Its rules
(C1...) are its own, not rules of ``specs/``.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from transitions import EventData

from fsm_session.engine import Core, On, Refusal, Sample, TriggerKind, declare, guard

ROOM_LIMIT: Final = 3
"""How many other members a room may hold (rule C3)."""


class Room(Enum):
    OUTSIDE = "OUTSIDE"
    JOINING = "JOINING"
    IN_CALL = "IN_CALL"
    LEAVING = "LEAVING"


class Act(Enum):
    NOTHING = "nothing"
    SEND_JOIN = "send_join"
    SEND_LEAVE = "send_leave"


class ConferenceError(Exception):
    """A refused trigger: the rule broken, the trigger and the state, as the engine passes them."""

    def __init__(
        self,
        reason: str,
        *,
        rule: str | None = None,
        trigger: str | None = None,
        state: Enum | None = None,
    ) -> None:
        self.reason, self.rule, self.trigger, self.state = reason, rule, trigger, state
        super().__init__(f"{reason} (rule {rule}, {trigger} in {state})")


class NotNow(ConferenceError):
    """The trigger makes no sense in this state."""


class BadRoom(ConferenceError, ValueError):
    """The room name is not one the backend accepts."""


class RoomFull(ConferenceError):
    """The room holds as many members as it may."""


def _core(event: EventData) -> Conference:
    model: Conference = event.model
    return model


@guard("C1", BadRoom)
def room_name_is_valid(event: EventData) -> str | None:
    room = event.kwargs["room"]
    if not isinstance(room, str) or not room.isidentifier():
        return f"a room name is an identifier, not {room!r}"
    return None


@guard("C3", RoomFull)
def room_has_space(event: EventData) -> str | None:
    return "the room is full" if len(_core(event).members) >= ROOM_LIMIT else None


@guard("C4", NotNow)
def is_a_member(event: EventData) -> str | None:
    name = event.kwargs["name"]
    return None if name in _core(event).members else f"{name!r} is not in the room"


def room_emptied(event: EventData) -> bool:
    """The last other member left: a call of one ends."""
    core = _core(event)
    return core.members == frozenset({event.kwargs["name"]})


def remember_room(event: EventData) -> None:
    _core(event).room = event.kwargs["room"]


def add_member(event: EventData) -> None:
    core = _core(event)
    core.members = core.members | {event.kwargs["name"]}


def remove_member(event: EventData) -> None:
    core = _core(event)
    core.members = core.members - {event.kwargs["name"]}


def forget_all(event: EventData) -> None:
    core = _core(event)
    core.room, core.members = None, frozenset()


R = Room
CONFERENCE_TABLE: Final = {
    R.OUTSIDE: (
        On("join", R.JOINING, guards=(room_name_is_valid,), do=(remember_room,),
           effect=Act.SEND_JOIN, rule="C1 C2"),
    ),
    R.JOINING: (
        On("joined", R.IN_CALL, rule="C2"),
        On("join_failed", R.OUTSIDE, do=(forget_all,), rule="C2"),
        On("leave", R.LEAVING, effect=Act.SEND_LEAVE, rule="C5"),
        On("dropped", R.OUTSIDE, do=(forget_all,), rule="C6"),
    ),
    R.IN_CALL: (
        On("member_joined", guards=(room_has_space,), do=(add_member,), rule="C3"),
        On("member_left", R.LEAVING, when=(room_emptied,), guards=(is_a_member,),
           do=(remove_member,), effect=Act.SEND_LEAVE, rule="C4 C7"),
        On("member_left", guards=(is_a_member,), do=(remove_member,), rule="C4"),
        On("leave", R.LEAVING, effect=Act.SEND_LEAVE, rule="C5"),
        On("dropped", R.OUTSIDE, do=(forget_all,), rule="C6"),
    ),
    R.LEAVING: (
        On("leave", rule="C5"),
        On("left", R.OUTSIDE, do=(forget_all,), rule="C5"),
        On("dropped", R.OUTSIDE, do=(forget_all,), rule="C6"),
    ),
}  # fmt: skip


class Conference(Core):
    """One participant's membership of one conference room."""

    __slots__ = ("members", "room")

    def __init__(self) -> None:
        super().__init__()
        self.room: str | None = None
        self.members: frozenset[str] = frozenset()

    def join(self, room: str) -> Act:
        return self._fire("join", room=room)  # type: ignore[no-any-return]

    def joined(self) -> Act:
        return self._fire("joined")  # type: ignore[no-any-return]

    def join_failed(self) -> Act:
        return self._fire("join_failed")  # type: ignore[no-any-return]

    def member_joined(self, name: str) -> Act:
        return self._fire("member_joined", name=name)  # type: ignore[no-any-return]

    def member_left(self, name: str) -> Act:
        return self._fire("member_left", name=name)  # type: ignore[no-any-return]

    def leave(self) -> Act:
        return self._fire("leave")  # type: ignore[no-any-return]

    def left(self) -> Act:
        return self._fire("left")  # type: ignore[no-any-return]

    def dropped(self) -> Act:
        return self._fire("dropped")  # type: ignore[no-any-return]


CONFERENCE: Final = declare(
    "conference",
    Conference,
    CONFERENCE_TABLE,
    default_refusal=Refusal(NotNow, "C0", "not in this state"),
    kinds={
        "joined": TriggerKind.REPLY,
        "join_failed": TriggerKind.REPLY,
        "left": TriggerKind.REPLY,
        "member_joined": TriggerKind.EVENT,
        "member_left": TriggerKind.EVENT,
        "dropped": TriggerKind.EVENT,
    },
    samples={
        "join": (Sample("join(lobby)", {"room": "lobby"}),),
        "member_joined": tuple(Sample(f"member_joined({n})", {"name": n}) for n in ("bo", "al")),
        "member_left": (Sample("member_left(bo)", {"name": "bo"}),),
    },
    no_effect=Act.NOTHING,
    table_name="CONFERENCE_TABLE",
)
