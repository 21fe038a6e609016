"""The engine on a machine of a user's own (tests/conference.py): its checks, its errors, its
paths, and a Hypothesis property; and definitions the engine refuses, with the reason named."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_session.diagrams import replay, transition_paths
from fsm_session.engine import (
    Core,
    InvalidDefinition,
    On,
    PathError,
    Refusal,
    Sample,
    TriggerKind,
    declare,
    format_path,
    graph_of,
)
from tests.conference import (
    CONFERENCE,
    ROOM_LIMIT,
    Act,
    BadRoom,
    Conference,
    ConferenceError,
    NotNow,
    Room,
    RoomFull,
)


def in_call(*members: str) -> Conference:
    core = Conference()
    assert core.join("lobby") is Act.SEND_JOIN
    assert core.joined() is Act.NOTHING
    for name in members:
        core.member_joined(name)
    return core


def test_a_declared_machine_fires_its_rows_and_hands_back_effects() -> None:
    core = in_call("bo", "al")
    assert (core.state, core.room, core.members) == (Room.IN_CALL, "lobby", {"bo", "al"})
    assert core.member_left("bo") is Act.NOTHING and core.state is Room.IN_CALL
    # The last other member leaving ends the call: a selector picked the row.
    assert core.member_left("al") is Act.SEND_LEAVE and core.state is Room.LEAVING
    assert core.last is CONFERENCE.table[Room.IN_CALL][1]
    assert core.left() is Act.NOTHING
    assert (core.state, core.room, core.members) == (Room.OUTSIDE, None, frozenset())


def test_guards_and_refusals_raise_the_machines_own_errors_and_change_nothing() -> None:
    core = Conference()
    with pytest.raises(BadRoom) as bad:
        core.join("no room")
    assert (bad.value.rule, bad.value.trigger, bad.value.state) == ("C1", "join", Room.OUTSIDE)
    with pytest.raises(NotNow) as refused:
        core.leave()
    assert (refused.value.rule, refused.value.state) == ("C0", Room.OUTSIDE)
    assert (core.state, core.room, core.last) == (Room.OUTSIDE, None, None)
    full = in_call(*(f"m{i}" for i in range(ROOM_LIMIT)))
    with pytest.raises(RoomFull, match="full") as caught:
        full.member_joined("one too many")
    assert caught.value.rule == "C3" and len(full.members) == ROOM_LIMIT
    with pytest.raises(NotNow, match="'zed' is not in the room") as absent:
        full.member_left("zed")
    assert absent.value.rule == "C4"


def test_the_built_transitions_machine_holds_every_row() -> None:
    built = CONFERENCE.machine
    assert list(built.states) == [state.name for state in Room]
    held = sum(len(ts) for event in built.events.values() for ts in event.transitions.values())
    assert held == sum(len(rows) for rows in CONFERENCE.table.values())
    assert CONFERENCE.kind("dropped") is TriggerKind.EVENT
    assert CONFERENCE.kind("join") is TriggerKind.CALL


def test_paths_of_a_users_machine_cover_every_row_and_replay() -> None:
    graph = graph_of(CONFERENCE)
    paths = transition_paths(CONFERENCE)
    assert [path.target.key for path in paths] == [edge.key for edge in graph.edges]
    by_key = {path.target.key: path for path in paths}
    # A data-dependent row: another member must still be in the room when one leaves.
    assert format_path(by_key["IN_CALL", 2]) == (
        "join(lobby) -> joined -> member_joined(bo) -> member_joined(al) -> member_left(bo)"
    )
    for path in paths:
        core = replay(path, Conference())
        assert core.last is path.target.row and core.state.name == path.target.dest
    wrong = by_key["JOINING", 0]
    with pytest.raises(PathError, match="starts from OUTSIDE, but the model is IN_CALL"):
        replay(wrong, in_call())


def snapshot(core: Conference) -> tuple[object, ...]:
    return (core.state, core.room, core.members)


STEP = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(["lobby", "team_a", "no room", ""])),
    st.tuples(st.sampled_from(["member_joined", "member_left"]), st.sampled_from("abcd")),
    st.tuples(st.sampled_from(["joined", "join_failed", "leave", "left", "dropped"]), st.none()),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, max_size=25))
def test_property_every_step_takes_a_row_of_its_state_or_changes_nothing(
    steps: list[tuple[str, str | None]],
) -> None:
    """Any sequence of calls: a refused step changes nothing; a taken step follows its row."""
    core = Conference()
    for trigger, argument in steps:
        before, state = snapshot(core), core.state
        method: Any = getattr(core, trigger)
        try:
            effect = method() if argument is None else method(argument)
        except ConferenceError as exc:
            assert snapshot(core) == before
            assert (exc.trigger, exc.state) == (trigger, state)
            assert exc.rule is not None and exc.rule.startswith("C")
            continue
        row = core.last
        assert row is not None and row in CONFERENCE.table[state] and row.trigger == trigger
        assert core.state is (state if row.dest is None else row.dest)
        assert effect is (row.effect or Act.NOTHING)
        # Data follows the state: no room outside a call, no members unless in one.
        assert (core.room is None) is (core.state is Room.OUTSIDE)
        assert not core.members or core.state in (Room.IN_CALL, Room.LEAVING)
        assert len(core.members) <= ROOM_LIMIT


# --------------------------------------------------------------------------------------------
# Definitions the engine refuses.
# --------------------------------------------------------------------------------------------


class Light(Enum):
    OFF = "OFF"
    ON = "ON"
    BROKEN = "BROKEN"


def light_model() -> type[Core]:
    """A fresh model class each time: declaring binds the definition to its class."""

    class Lamp(Core):
        __slots__ = ()

        def flip(self) -> object:
            return self.fire("flip")

        def smash(self) -> object:
            return self.fire("smash")

        def fix(self) -> object:
            return self.fire("fix")

    return Lamp


GOOD: dict[Light, tuple[On, ...]] = {
    Light.OFF: (On("flip", Light.ON), On("smash", Light.BROKEN)),
    Light.ON: (On("flip", Light.OFF), On("smash", Light.BROKEN)),
    Light.BROKEN: (On("fix", Light.OFF),),
}
REFUSE = Refusal(NotNow, "L0", "not now")


def test_a_sound_definition_is_declared_and_drawn() -> None:
    lamp = light_model()
    definition = declare("lamp", lamp, GOOD, default_refusal=REFUSE)
    core: Any = lamp()
    assert core.state is Light.OFF and definition.initial is Light.OFF
    core.flip()
    core.smash()
    with pytest.raises(NotNow, match="not now"):
        core.flip()
    assert [format_path(path) for path in transition_paths(definition)][-1] == "smash -> fix"


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        ({}, {}, "table is empty"),
        ({Light.OFF: GOOD[Light.OFF], Light.ON: GOOD[Light.ON]}, {}, r"missing: \['BROKEN'\]"),
        (
            {**GOOD, Light.BROKEN: (On("fix"),)},
            {},
            r"OFF is unreachable from: \['BROKEN'\]",
        ),
        (
            {**GOOD, Light.OFF: (On("flip", Light.ON),), Light.ON: (On("flip", Light.OFF),)},
            {},
            r"states unreachable from OFF: \['BROKEN'\]",
        ),
        (
            {**GOOD, Light.ON: (On("flip"), On("flip", Light.OFF), On("smash", Light.BROKEN))},
            {},
            "ON: a row on 'flip' follows one that always applies",
        ),
        (
            {**GOOD, Light.BROKEN: (On("fix", Light.OFF), On("repaint"))},
            {},
            "trigger 'repaint' has no handler on Lamp",
        ),
        (GOOD, {"default_refusal": None}, "trigger 'fix' is missing from some states"),
        (GOOD, {"refusals": {"glow": REFUSE}}, r"refusals name triggers no row uses: \['glow'\]"),
        (GOOD, {"kinds": {"glow": TriggerKind.EVENT}}, "kinds or samples name 'glow'"),
        (GOOD, {"samples": {"glow": (Sample("glow"),)}}, "kinds or samples name 'glow'"),
        ({**GOOD, Light.BROKEN: [On("fix", Light.OFF)]}, {}, "a tuple of On rows"),
        ({**GOOD, Light.BROKEN: (On("fix", "OFF"),)}, {}, "'OFF' is not a state"),
        (
            {**GOOD, Light.BROKEN: (On("fix", Light.OFF, when=(lambda event: True,)),)},
            {},
            "BROKEN: the last row on 'fix' has a selector",
        ),
        (
            {
                **GOOD,
                Light.ON: (
                    On("flip", Light.OFF, when=(bool,)),
                    On("smash", Light.BROKEN),
                    On("flip", when=(bool,)),
                ),
            },
            {},
            "ON: the last row on 'flip' has a selector",
        ),
        (
            {**GOOD, Light.BROKEN: (On("fix", Light.OFF, guards=(lambda event: True,)),)},  # type: ignore[arg-type]
            {},
            "BROKEN: a guard of a row on 'fix' is not a Guard",
        ),
    ],
)
def test_unsound_definitions_are_refused_with_the_reason(
    table: dict[Any, Any], options: dict[str, Any], message: str
) -> None:
    settings_ = {"default_refusal": REFUSE, **options}
    with pytest.raises(InvalidDefinition, match=message):
        declare("lamp", light_model(), table, **settings_)


def test_a_model_class_carries_one_machine() -> None:
    lamp = light_model()
    declare("lamp", lamp, GOOD, default_refusal=REFUSE)
    with pytest.raises(InvalidDefinition, match="Lamp already carries the lamp machine"):
        declare("other", lamp, GOOD, default_refusal=REFUSE)


class Tally(Enum):
    COUNTING = "COUNTING"
    DONE = "DONE"


def test_exploring_data_without_end_stops_at_its_limit() -> None:
    """A counter has endless configurations: a row no sample reaches is left without a path."""

    def add(event: Any) -> None:
        event.model.count += 1

    def never(event: Any) -> bool:
        return False

    class Counter(Core):
        __slots__ = ("count",)

        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def tick(self) -> object:
            return self.fire("tick")

        def finish(self) -> object:
            return self.fire("finish")

        def reset(self) -> object:
            return self.fire("reset")

    table = {
        Tally.COUNTING: (
            On("tick", do=(add,)),
            On("finish", Tally.DONE, when=(never,)),
            On("finish"),
        ),
        Tally.DONE: (On("reset", Tally.COUNTING),),
    }
    definition = declare("tally", Counter, table, default_refusal=REFUSE)
    paths = transition_paths(definition, limit=50)
    assert [path.target.trigger for path in paths] == ["finish", "tick"]
