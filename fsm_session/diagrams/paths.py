"""Transition paths of a machine by name: :func:`fsm_session.engine.transition_paths` and replay."""

from __future__ import annotations

from typing import Any

from fsm_session.diagrams.model import definition_of, extract
from fsm_session.engine import Core, Definition, Graph, TransitionPath
from fsm_session.engine import replay as replay_on
from fsm_session.engine import transition_paths as explore
from fsm_session.engine.explore import DEFAULT_LIMIT

__all__ = ["new_core", "replay", "transition_paths"]


def transition_paths(
    machine: str | Definition[Any] | Graph, *, limit: int = DEFAULT_LIMIT
) -> list[TransitionPath]:
    """For each row reachable from the initial state, in edge order, a shortest path whose last
    step takes it, found by firing the real machine's triggers (see the engine)."""
    return explore(extract(machine), limit=limit)


def new_core(machine: str | Definition[Any]) -> Any:
    """A fresh model of ``machine``, as :func:`transition_paths` starts from."""
    return definition_of(machine).new()


def replay(path: TransitionPath, core: Core | None = None) -> Any:
    """Fire every step of ``path`` on ``core`` (a fresh model of ``path.machine`` by default).

    Raises :class:`~fsm_session.engine.PathError` when a step starts from another state, is
    refused, or takes another row than it names.
    """
    return replay_on(path, core if core is not None else new_core(path.machine))
