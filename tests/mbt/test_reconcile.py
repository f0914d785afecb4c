"""The reconcile races: a kernel request reaches a reconnected frontend before its
comm_info_reply (``commspec.mbt.reconcile``).

- The races are offered where the model can take their phases, and their phases
  separate the model's reconcile rule from its broken twins (``model/broken.py``):
  the outcome the reference frontend must reach is one no broken rule reaches.
- Broken frontends (``mbt_variants.FRONTEND_VARIANTS``: the request dropped instead of
  held, by the reference core with other ``FrontendPolicies``) fail a fixed program,
  in-process and live, that the reference frontend passes; and the random
  model-based test finds them, failing at the race that makes the interleaving.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mbt_variants import FRONTEND_CAUGHT_AT, FRONTEND_VARIANTS, HoldsNothing, replay_printed

from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.agent import _policies_of
from commspec.mbt.harness import MBT_BOUNDS, Harness, MbtFailure, System
from commspec.mbt.inprocess import InProcessSystem
from commspec.mbt.live import LiveSystem
from commspec.mbt.machine import program_as_test, run
from commspec.mbt.processes import policies_spec
from commspec.mbt.projection import project
from commspec.mbt.reconcile import RECONCILE_RACES, StaleRequest, UnseenRequest, outcomes
from commspec.model.actions import Action, FrontendOpen, Start
from commspec.model.broken import DropsRequestsOnUnseenComms, HoldsNothingWhileReconciling
from commspec.model.explore import quiescent
from commspec.model.system import Bounds, SystemModel
from commspec.model.world import Target, World

#: the smallest bounds with both races: two frontends, one reconnect, one fault
HUNT_BOUNDS = Bounds(frontends=2, comms=1, requests=1, reconnects=1, faults=1)
#: the rules the broken frontends are hunted with
HUNT = frozenset({"start", "frontend_open", "kernel_open", "kernel_request", "freeze",
                  *(race.name for race in RECONCILE_RACES)})

UNSEEN = UnseenRequest(0, 0, 0, 1, Target.DEFAULT)
STALE = StaleRequest(0, 0, 0)
#: per variant, a program that ends in the race that catches it
FIXED: dict[str, list[Action]] = {
    "drops_unseen_while_reconciling": [Start(0), Start(1), UNSEEN],
    "drops_undecided_while_reconciling": [Start(0), FrontendOpen(0, 0, Target.PERSISTENT),
                                          STALE],
}


def _after(model: SystemModel, program: list[Action]) -> World:
    states = {model.initial()}
    for action in program:
        states = set(quiescent(model, [n for w in states for s, n in model.successors(w)
                                       if s.action == action]))
    assert len(states) == 1
    return states.pop()


def test_the_races_are_offered_where_their_phases_can_happen() -> None:
    with Harness(InProcessSystem(), MBT_BOUNDS) as harness:
        harness.apply(Start(0))
        assert not [a for a in harness.enabled() if isinstance(a, UnseenRequest)]
        harness.apply(Start(1))
        harness.apply(FrontendOpen(0, 0, Target.PERSISTENT))
        enabled = harness.enabled()
    assert UnseenRequest(1, 1, 0, 0, Target.PERSISTENT) in enabled
    # the comm slot in use is not free for an unseen open; a persistent comm of its own
    # comes back stale
    assert UnseenRequest(0, 0, 0, 1, Target.DEFAULT) not in enabled
    assert StaleRequest(0, 0, 0) in enabled and StaleRequest(1, 0, 0) not in enabled


@pytest.mark.parametrize(("program", "broken"), [
    (FIXED["drops_unseen_while_reconciling"], DropsRequestsOnUnseenComms),
    (FIXED["drops_unseen_while_reconciling"], HoldsNothingWhileReconciling),
    (FIXED["drops_undecided_while_reconciling"], HoldsNothingWhileReconciling),
])
def test_the_phases_tell_the_reconcile_rule_from_its_broken_twin(
        program: list[Action], broken: type[SystemModel]) -> None:
    *before, race = program
    assert isinstance(race, (UnseenRequest, StaleRequest))
    ends = {}
    for model in (SystemModel(MBT_BOUNDS), broken(MBT_BOUNDS)):
        found = outcomes(model, _after(model, before), race)
        assert found
        ends[type(model)] = {project(q) for q in found}
    right = ends[SystemModel]
    assert all(o.requests[0] == "resolved" for o in right), right
    assert not right & ends[broken]


def _system(system: str, policies: type[FrontendPolicies]) -> System:
    if system == "in-process":
        return InProcessSystem(frontend_policies=policies)
    return LiveSystem(ReferenceKernel(), frontend_policies=policies, quiet=0.3)


@pytest.mark.parametrize("system", ["in-process", "live"])
@pytest.mark.parametrize("variant", sorted(FRONTEND_VARIANTS))
def test_a_broken_frontend_fails_the_fixed_program_the_reference_passes(
        variant: str, system: str) -> None:
    *before, race = FIXED[variant]
    for policies, fails in ((FrontendPolicies, False), (FRONTEND_VARIANTS[variant], True)):
        with Harness(_system(system, policies), MBT_BOUNDS) as harness:
            for action in before:
                harness.apply(action)
            assert race in harness.enabled()
            if not fails:
                harness.apply(race)
                continue
            with pytest.raises(MbtFailure) as failed:
                harness.apply(race)
        assert f"after {race}: the system reached no state the model allows" in str(
            failed.value)


@pytest.mark.parametrize("variant", sorted(FRONTEND_VARIANTS))
def test_the_random_mbt_catches_a_broken_frontend(variant: str, tmp_path: Path) -> None:
    # In-process (live, the fixed programs above show it; a live hunt costs 5 s each).
    # Not shrunk: each race step draws dozens of delivery orders, and shrinking them
    # took thousands of examples (40 s) for a program already short when found.
    result = run(ReferenceKernel, HUNT_BOUNDS, in_process=True, examples=100, steps=5,
                 derandomize=True, supported=HUNT,
                 frontend_policies=FRONTEND_VARIANTS[variant],
                 shrink=False)
    assert not result.ok, f"{variant} was not caught"
    assert isinstance(result.failure, MbtFailure), repr(result.failure)
    failed = result.shrunk
    assert failed is not None
    assert failed.actions[-1].name in FRONTEND_CAUGHT_AT[variant], failed
    # its printed test, with the delivery orders each step drew, fails against the
    # variant and passes against the reference frontend
    for frontend, fails in (("Variant", True), (None, False)):
        source = program_as_test(failed.actions, HUNT_BOUNDS, HUNT, choices=failed.choices,
                                 frontend=frontend)
        replay_printed(source, FRONTEND_VARIANTS[variant], tmp_path, fails=fails)


def test_the_reference_frontend_passes_the_hunt() -> None:
    result = run(ReferenceKernel, HUNT_BOUNDS, in_process=True, examples=100, steps=5,
                 derandomize=True, supported=HUNT)
    assert result.ok, result.failure
    drawn = {a.name for p in result.programs for a in p.actions}
    assert {race.name for race in RECONCILE_RACES} <= drawn


@pytest.mark.parametrize("system", ["in-process", "live"])
def test_two_reconcile_races_on_one_frontend(system: str) -> None:
    # the second waits for its own comm_info_reply, not the one the first held back
    bounds = Bounds(frontends=2, comms=2, requests=2, reconnects=2, faults=2)
    program: list[Action] = [Start(0), Start(1), UnseenRequest(0, 0, 0, 1, Target.PERSISTENT),
                             StaleRequest(0, 0, 1)]
    with Harness(_system(system, FrontendPolicies), bounds) as harness:
        for action in program:
            assert action in harness.enabled()
            harness.apply(action)


def test_a_frontend_process_builds_the_reference_endpoint_with_the_policies_named(
) -> None:
    assert isinstance(_policies_of(policies_spec(HoldsNothing)), HoldsNothing)
    # anything else named is refused, not run as something it is not
    with pytest.raises(TypeError, match="is not a FrontendPolicies"):
        _policies_of({"module": "commspec.impl.core.frontend", "name": "FrontendProtocol",
                      "path": "."})
