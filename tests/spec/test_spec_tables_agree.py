"""The compiled table (``MachineSpec.step``) and ``transitions.Machine`` agree everywhere.

Exhaustive, not sampled: every machine, every (state, event) pair and every
assignment of the machine's guard facts. Both read the same declaration, so a
disagreement is a bug in ``MachineSpec``'s compilation or in ``transitions_config``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
from transitions import Machine, MachineError

from commspec.model import MACHINES, InvalidTransition, MachineSpec
from commspec.model.machines import KERNEL_COMM


def assignments(spec: MachineSpec[Any, Any]) -> Iterator[dict[Enum, bool]]:
    """Every assignment of True/False to the machine's guard facts (one, if it has none)."""
    for values in itertools.product((False, True), repeat=len(spec.facts)):
        yield dict(zip(spec.facts, values, strict=True))


class FactModel:
    """A transitions model whose guard facts are plain attributes (transitions reads them)."""

    state: str


def transitions_step(model: FactModel, state: Enum, event: Enum) -> str | None:
    """The state transitions moves ``model`` to from ``state``, or None if it refuses."""
    model.state = state.value
    try:
        moved = model.trigger(event.value)  # type: ignore[attr-defined]
    except MachineError:
        return None
    except AttributeError:
        return None  # transitions knows no such trigger: the event is in no row
    if not moved:
        # rows exist but every condition failed: the state must not have moved
        assert model.state == state.value
        return None
    return model.state


def disagreements(spec: MachineSpec[Any, Any], config: dict[str, Any]) -> list[str]:
    """Each (facts, state, event) where ``spec.step`` and a Machine from ``config`` differ."""
    out: list[str] = []
    for facts in assignments(spec):
        model = FactModel()
        for fact, value in facts.items():
            setattr(model, fact.value, value)
        Machine(model=model, **config, auto_transitions=False)
        for state, event in itertools.product(spec.states, spec.events):
            theirs = transitions_step(model, state, event)
            try:
                ours: str | None = spec.step(state, event, facts).value
            except InvalidTransition as e:
                # the error must say where it happened
                assert (e.machine, e.state, e.event) == (spec.name, state.value, event.value)
                ours = None
            if ours != theirs:
                shown = {f.value: v for f, v in facts.items()}
                out.append(f"{event.value} in {state.value} with {shown}: "
                           f"table -> {ours}, transitions -> {theirs}")
    return out


@pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)
def test_table_and_transitions_agree_on_every_pair(spec: MachineSpec[Any, Any]) -> None:
    assert disagreements(spec, spec.transitions_config()) == []


@pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)
def test_every_pair_is_covered(spec: MachineSpec[Any, Any]) -> None:
    """The walk really visits every pair: count the table's moves and refusals."""
    moves = refusals = 0
    for facts in assignments(spec):
        for state, event in itertools.product(spec.states, spec.events):
            try:
                spec.step(state, event, facts)
                moves += 1
            except InvalidTransition:
                refusals += 1
    assert moves + refusals == len(spec.states) * len(spec.events) * 2 ** len(spec.facts)
    assert moves > 0 and refusals > 0


def _doctored(change: str) -> dict[str, Any]:
    config = copy.deepcopy(KERNEL_COMM.transitions_config())
    rows: list[dict[str, Any]] = config["transitions"]
    guarded = next(r for r in rows if "conditions" in r)
    if change == "drop guard":
        del guarded["conditions"]
    elif change == "drop row":
        rows.remove(guarded)
    elif change == "move dest":
        rows[0]["dest"] = "closed" if rows[0]["dest"] != "closed" else "open"
    elif change == "extra row":
        rows.append({"trigger": "frontend_back", "source": "open", "dest": "closed"})
    return config


@pytest.mark.parametrize("change", ["drop guard", "drop row", "move dest", "extra row"])
def test_the_comparison_catches_a_doctored_config(change: str) -> None:
    assert disagreements(KERNEL_COMM, _doctored(change))
