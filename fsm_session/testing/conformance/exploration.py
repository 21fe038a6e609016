"""Hypothesis exploration: random call sequences, shrunk to the shortest that breaks a rule."""

from __future__ import annotations

from collections.abc import Callable

import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    precondition,
    rule,
)

from fsm_session.machine import SessionState
from fsm_session.models import ParticipantInfo
from fsm_session.testing import strategies
from fsm_session.testing.conformance.hosting import _Hosted, _start_client, _stop
from fsm_session.testing.conformance.report import RuleViolation
from fsm_session.testing.conformance.world import _Client, _new_id, _World
from fsm_session.testing.portal import TrioPortal

S = SessionState


def _machine(portal: TrioPortal, world: _World) -> type[RuleBasedStateMachine]:
    class Conformance(RuleBasedStateMachine):
        """Random calls on one session service, each checked against the rules."""

        def __init__(self) -> None:
            super().__init__()
            self.steps: list[str] = []
            self.external_id = _new_id("hyp")
            self.hosted: _Hosted | None = portal.run(self._start)

        async def _start(self) -> _Hosted:
            return await _start_client(
                world, portal.nursery, self.steps, external_id=self.external_id
            )

        @property
        def client(self) -> _Client:
            assert self.hosted is not None
            return self.hosted.client

        @rule(info=strategies.participant_infos() | strategies.invalid_participant_infos())
        def open_info(self, info: ParticipantInfo) -> None:
            portal.run(self.client.open, info)

        @rule()
        def open_bare(self) -> None:
            portal.run(self.client.open)

        @rule(
            name=st.none() | strategies.names() | strategies.invalid_names(),
            avatar_url=st.none() | strategies.avatar_urls() | strategies.invalid_avatar_urls(),
        )
        def update(self, name: str | None, avatar_url: str | None) -> None:
            portal.run(lambda: self.client.update(name, avatar_url))

        @rule()
        def close(self) -> None:
            portal.run(self.client.close)

        @precondition(lambda self: self.client.service.state is S.OPEN)
        @rule()
        def reopen_elsewhere(self) -> None:
            """R4/R17: the same external ID on a new connection gets the same participant."""
            self.steps.append("close(); open the same identity on a new connection")
            portal.run(self._reopen_elsewhere)

        async def _reopen_elsewhere(self) -> None:
            identity = self.client.service.identity
            await self.client.close(note=False)
            other = await _start_client(
                world, portal.nursery, self.steps, external_id=self.external_id
            )
            try:
                await other.client.open(identity, note=False)
                await other.client.close(note=False)
            finally:
                await _stop(other)

        @invariant()
        def flags(self) -> None:
            self.client.check()
            self.client.check_flags()

        def teardown(self) -> None:
            if self.hosted is not None:
                portal.run(_stop, self.hosted)
                self.hosted = None

    return Conformance


def _explore(
    portal: TrioPortal,
    world: _World,
    record: Callable[[RuleViolation, str], None],
    examples: int,
    steps: int,
    seed: int | None,
) -> int:
    """Run the Hypothesis machine; the number of examples it ran."""
    counter = [0]
    base = _machine(portal, world)

    class Conformance(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            counter[0] += 1
            super().__init__()

    run_settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        database=None,
        report_multiple_bugs=False,
        print_blob=False,
    )
    test = get_state_machine_test(Conformance, settings=run_settings)
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    try:
        test()
    except RuleViolation as found:
        record(found, "hypothesis")
    except Flaky as exc:
        world.inconclusive.append(f"hypothesis: flaky failure: {exc!r}")
    return counter[0]
