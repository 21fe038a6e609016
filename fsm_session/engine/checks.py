"""Definition checks: a table is refused before it is built unless it is sound.

Every state is a key; every state is reachable from the initial one and the initial state from
every state; every trigger has a handler method on the model's class and, where some state has no
row for it, a refusal; no row is shadowed by an unconditional row of the same trigger before it;
the last row of each trigger in each state has no selector, so some row always applies (its
guards may still refuse); every guard is a :class:`~fsm_session.engine.rows.Guard`, which passes
or raises, never answers ``False``."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from enum import Enum
from typing import Any

from fsm_session.engine.rows import Guard, On, Refusal

__all__ = ["InvalidDefinition", "check_definition"]


class InvalidDefinition(Exception):
    """A state machine table breaks a structural rule; raised when the machine is declared."""


def _reach(start: Enum, graph: Mapping[Enum, set[Enum]]) -> set[Enum]:
    seen, todo = {start}, deque([start])
    while todo:
        for nxt in graph[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _edges(table: Mapping[Any, tuple[On, ...]], states: set[Enum]) -> dict[Enum, set[Enum]]:
    edges: dict[Enum, set[Enum]] = {state: set() for state in states}
    for source, rows in table.items():
        if not isinstance(rows, tuple) or not all(isinstance(row, On) for row in rows):
            raise InvalidDefinition(f"{source.name}: a state's rows are a tuple of On rows")
        open_ended: set[str] = set()
        for row in rows:
            if row.trigger in open_ended:
                raise InvalidDefinition(
                    f"{source.name}: a row on {row.trigger!r} follows one that always applies"
                )
            if not row.when:
                open_ended.add(row.trigger)
            if not all(isinstance(check, Guard) for check in row.guards):
                raise InvalidDefinition(
                    f"{source.name}: a guard of a row on {row.trigger!r} is not a Guard "
                    "(declare it with @guard(rule, error); a selector goes in when=)"
                )
            if row.dest is not None and row.dest not in states:
                raise InvalidDefinition(f"{source.name}: {row.dest!r} is not a state")
            edges[source].add(source if row.dest is None else row.dest)
    return edges


def _check_last_rows(table: Mapping[Any, tuple[On, ...]]) -> None:
    """Some row of each trigger always applies: the last one of each state has no selector."""
    for source, rows in table.items():
        last = {row.trigger: row for row in rows}
        for trigger, row in last.items():
            if row.when:
                raise InvalidDefinition(
                    f"{source.name}: the last row on {trigger!r} has a selector (when=), so no "
                    "row may apply; end the trigger's rows with one without a selector"
                )


def check_definition(
    table: Mapping[Any, tuple[On, ...]],
    initial: Enum,
    refusals: Mapping[str, Refusal],
    handler: type,
) -> None:
    """Raise :class:`InvalidDefinition` unless the table is sound (see the module's rules)."""
    states = set(type(initial))
    if set(table) != states:
        missing = sorted(s.name for s in states - set(table))
        raise InvalidDefinition(
            f"every state needs a row in the table (even an empty one); missing: {missing}"
            if missing
            else f"the table's keys {set(table)} are not the states of {type(initial).__name__}"
        )
    edges = _edges(table, states)
    triggers = {row.trigger for rows in table.values() for row in rows}
    for trigger in sorted(triggers):
        if not callable(getattr(handler, trigger, None)):
            raise InvalidDefinition(f"trigger {trigger!r} has no handler on {handler.__name__}")
        everywhere = all(any(r.trigger == trigger for r in table[s]) for s in states)
        if not everywhere and trigger not in refusals:
            raise InvalidDefinition(
                f"trigger {trigger!r} is missing from some states but has no refusal"
            )
    unknown = set(refusals) - triggers
    if unknown:
        raise InvalidDefinition(f"refusals name triggers no row uses: {sorted(unknown)}")
    unreachable = states - _reach(initial, edges)
    if unreachable:
        raise InvalidDefinition(
            f"states unreachable from {initial.name}: {sorted(s.name for s in unreachable)}"
        )
    backwards: dict[Enum, set[Enum]] = {state: set() for state in states}
    for source, targets in edges.items():
        for target in targets:
            backwards[target].add(source)
    stuck = states - _reach(initial, backwards)
    if stuck:
        raise InvalidDefinition(
            f"{initial.name} is unreachable from: {sorted(s.name for s in stuck)}"
        )
    _check_last_rows(table)
