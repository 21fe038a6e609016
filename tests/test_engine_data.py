"""The engine exploring machines whose models hold data: explored copies share nothing with each
other or with the model the search starts from, the default snapshot reads mutable data, and model
classes whose data would go unseen are refused."""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

import pytest

from fsm_session.engine import (
    Core,
    InvalidDefinition,
    On,
    Sample,
    declare,
    format_path,
    replay,
    transition_paths,
)
from tests.test_engine import GOOD, REFUSE, light_model


class Hall(Enum):
    EMPTY = "EMPTY"
    OCCUPIED = "OCCUPIED"


def enter(event: Any) -> None:
    event.model.names.append(event.kwargs["name"])


def leave(event: Any) -> None:
    event.model.names.remove(event.kwargs["name"])


def last_one(event: Any) -> bool:
    return len(event.model.names) == 1


class Roll(Core):
    """A model whose data is a mutable list; it records every instance its ``__init__`` makes."""

    __slots__ = ("names",)
    made: ClassVar[list[Roll]] = []

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        Roll.made.append(self)

    def enter(self, name: str) -> object:
        return self.fire("enter", name=name)

    def exit(self, name: str) -> object:
        return self.fire("exit", name=name)


ROLL = declare(
    "roll",
    Roll,
    {
        Hall.EMPTY: (On("enter", Hall.OCCUPIED, do=(enter,)),),
        Hall.OCCUPIED: (
            On("enter", do=(enter,)),
            On("exit", Hall.EMPTY, when=(last_one,), do=(leave,)),
            On("exit", do=(leave,)),
        ),
    },
    default_refusal=REFUSE,
    samples={
        "enter": (Sample("enter(a)", {"name": "a"}),),
        "exit": (Sample("exit(a)", {"name": "a"}),),
    },
)


def test_paths_of_a_machine_with_mutable_data_replay_on_a_fresh_model() -> None:
    """Explored copies share no list with each other, and the default snapshot reads the list."""
    paths = transition_paths(ROLL)
    assert [format_path(path) for path in paths] == [
        "enter(a)",
        "enter(a) -> enter(a)",
        "enter(a) -> exit(a)",
        "enter(a) -> enter(a) -> exit(a)",
    ]
    for path in paths:
        core = replay(path, Roll())
        assert core.last is path.target.row and core.state.name == path.target.dest


def test_exploring_leaves_the_model_it_starts_from_alone() -> None:
    Roll.made.clear()
    transition_paths(ROLL)
    start = Roll.made[0]
    assert (start.state, start.names, start.last) == (Hall.EMPTY, [], None)
    assert all(core.names == [] for core in Roll.made)


def test_a_model_whose_instances_carry_a_dict_is_refused() -> None:
    """The explored copies and the default snapshot read slots: a ``__dict__`` would go unseen."""

    class Loose(Core):
        def flip(self) -> object:
            return self.fire("flip")

        def smash(self) -> object:
            return self.fire("smash")

        def fix(self) -> object:
            return self.fire("fix")

    class Opened(light_model()):  # type: ignore[misc]
        __slots__ = ("__dict__",)

    for model in (Loose, Opened):
        with pytest.raises(InvalidDefinition, match=f"{model.__name__} instances carry a __dict__"):
            declare("lamp", model, GOOD, default_refusal=REFUSE)


def test_a_snapshot_that_cannot_be_hashed_is_named() -> None:
    class Opaque:
        __hash__ = None  # type: ignore[assignment]

    class Holder(Core):
        __slots__ = ("held",)

        def __init__(self) -> None:
            super().__init__()
            self.held = Opaque()

        def flip(self) -> object:
            return self.fire("flip")

        def smash(self) -> object:
            return self.fire("smash")

        def fix(self) -> object:
            return self.fire("fix")

    definition = declare("holder", Holder, GOOD, default_refusal=REFUSE)
    with pytest.raises(InvalidDefinition, match="the holder machine's snapshot of <Holder OFF>"):
        transition_paths(definition)
