"""Structural facts about every declared machine, Tracked, and MachineSpec's refusals."""

from __future__ import annotations

import itertools
import subprocess
import sys
from enum import Enum
from typing import Any

import pytest

from commspec.model import (
    MACHINES,
    InvalidTransition,
    MachineSpec,
    SpecError,
    TraceEvent,
    Tracked,
    Transition,
)
from commspec.model.explore import Search
from commspec.model.machines import (
    KERNEL_COMM,
    REQUEST,
    KernelCommEvent,
    KernelCommFact,
    KernelCommState,
    RequestEvent,
    RequestState,
)

ALL = pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)


def successors(spec: MachineSpec[Any, Any], state: Enum) -> set[Enum]:
    """Every state one event takes ``state`` to, under any assignment of the facts."""
    out: set[Enum] = set()
    for values in itertools.product((False, True), repeat=len(spec.facts)):
        facts = dict(zip(spec.facts, values, strict=True))
        for event in spec.events:
            try:
                out.add(spec.step(state, event, facts))
            except InvalidTransition:
                pass
    return out


def reachable(spec: MachineSpec[Any, Any], start: Enum) -> set[Enum]:
    edges = lambda state: ((None, nxt) for nxt in successors(spec, state))  # noqa: E731
    return set(Search([start], edges).run().states)


@ALL
def test_every_state_is_reachable_from_the_initial_state(spec: MachineSpec[Any, Any]) -> None:
    assert reachable(spec, spec.initial) == set(spec.states)


@ALL
def test_terminal_states_are_absorbing(spec: MachineSpec[Any, Any]) -> None:
    for state in spec.terminal:
        assert successors(spec, state) <= {state}, state


@ALL
def test_every_non_terminal_state_has_a_way_out(spec: MachineSpec[Any, Any]) -> None:
    for state in set(spec.states) - spec.terminal:
        assert successors(spec, state) - {state}, f"{spec.name}: {state.value} is a trap"


@ALL
def test_an_end_stays_reachable_where_the_machine_has_one(spec: MachineSpec[Any, Any]) -> None:
    if not spec.terminal:
        # presence has no end by design: subscribers may come and go forever
        assert spec.name == "presence"
        return
    for state in spec.states:
        assert reachable(spec, state) & spec.terminal, f"{spec.name}: {state.value}"


@ALL
def test_every_event_and_fact_is_used(spec: MachineSpec[Any, Any]) -> None:
    """An event or fact no row mentions is dead weight in the spec (or a forgotten row)."""
    assert {t.event for t in spec.transitions} == set(spec.events)
    assert {t.guard for t in spec.transitions if t.guard is not None} == set(spec.facts)


@ALL
def test_rows_say_why(spec: MachineSpec[Any, Any]) -> None:
    for t in spec.transitions:
        assert t.why.strip(), t


def test_machine_names_are_unique() -> None:
    assert len({m.name for m in MACHINES}) == len(MACHINES)


def test_a_guarded_row_needs_its_fact() -> None:
    with pytest.raises(SpecError, match="persistent"):
        KERNEL_COMM.step(KernelCommState.OPEN, KernelCommEvent.FRONTEND_LOST)


# -- Tracked ---------------------------------------------------------------


def test_tracked_refuses_an_invalid_event_and_keeps_its_state() -> None:
    events: list[TraceEvent] = []
    request = Tracked(REQUEST, "r1", endpoint="kernel", sink=events.append)
    request.fire(RequestEvent.SENT)
    request.fire(RequestEvent.RESULT)
    with pytest.raises(InvalidTransition) as caught:
        request.fire(RequestEvent.ERROR)
    assert request.state is RequestState.RESOLVED
    e = caught.value
    assert (e.machine, e.state, e.event, e.object_id) == ("request", "resolved", "error", "r1")
    assert "r1" in str(e) and "'error'" in str(e) and "'resolved'" in str(e)
    assert [(t.source, t.event, t.dest) for t in events] == [
        ("new", "sent", "pending"),
        ("pending", "result", "resolved"),
    ]


def test_tracked_traces_every_move_including_late_replies() -> None:
    events: list[TraceEvent] = []
    request = Tracked(REQUEST, "r2", endpoint="kernel", sink=events.append)
    request.fire(RequestEvent.SENT, msg_id="m1")
    request.fire(RequestEvent.PEER_LOST)
    request.fire(RequestEvent.LATE_REPLY, msg_id="m2")
    assert request.ended and request.state is RequestState.INVALIDATED
    last = events[-1]
    assert (last.machine, last.object, last.source, last.event, last.dest, last.msg_id) == (
        "request", "r2", "invalidated", "late_reply", "invalidated", "m2")
    assert TraceEvent.from_json(last.to_json()) == last


def test_tracked_passes_facts_to_the_guard() -> None:
    persistent = Tracked(KERNEL_COMM, "c1")
    default = Tracked(KERNEL_COMM, "c2")
    for comm, value in ((persistent, True), (default, False)):
        comm.fire(KernelCommEvent.OPENED_BY_FRONTEND)
        comm.fire(KernelCommEvent.FRONTEND_LOST, {KernelCommFact.PERSISTENT: value})
    assert persistent.state is KernelCommState.DETACHED
    assert default.state is KernelCommState.CLOSED


# -- MachineSpec refuses broken declarations -------------------------------


class S(Enum):
    A = "a"
    B = "b"
    END = "end"


class E(Enum):
    GO = "go"
    STOP = "stop"


class F(Enum):
    FLAG = "flag"
    OTHER = "other"


class Elsewhere(Enum):
    X = "x"


def declare(*rows: Transition[Any, Any], facts: tuple[Enum, ...] = (F.FLAG,)) -> MachineSpec[
        Any, Any]:
    return MachineSpec(
        name="toy", title="Toy", summary="a toy", states=S, events=E, initial=S.A,
        terminal=frozenset({S.END}), transitions=rows, facts=facts,
    )


def test_a_sound_toy_declaration_is_accepted() -> None:
    toy = declare(
        Transition(S.A, E.GO, S.B, "go", guard=F.FLAG),
        Transition(S.A, E.GO, S.END, "stop", guard=F.FLAG, guard_holds=False),
        Transition(S.END, E.STOP, S.END, "a self-loop on an end is allowed"),
    )
    assert toy.step(S.A, E.GO, {F.FLAG: True}) is S.B
    assert toy.step(S.A, E.GO, {F.FLAG: False}) is S.END


@pytest.mark.parametrize(
    ("rows", "facts", "message"),
    [
        pytest.param(
            (Transition(S.A, E.GO, S.B, "one"), Transition(S.A, E.GO, S.END, "two")),
            (F.FLAG,), "overlapping", id="two unguarded rows"),
        pytest.param(
            (Transition(S.A, E.GO, S.B, "one"),
             Transition(S.A, E.GO, S.END, "two", guard=F.FLAG)),
            (F.FLAG,), "overlapping", id="guarded and unguarded"),
        pytest.param(
            (Transition(S.A, E.GO, S.B, "one", guard=F.FLAG),
             Transition(S.A, E.GO, S.END, "two", guard=F.OTHER)),
            (F.FLAG, F.OTHER), "overlapping", id="two different facts"),
        pytest.param(
            (Transition(S.A, E.GO, S.B, "one", guard=F.FLAG),
             Transition(S.A, E.GO, S.B, "two", guard=F.FLAG),
             Transition(S.A, E.GO, S.END, "three", guard=F.FLAG, guard_holds=False)),
            (F.FLAG,), "overlapping", id="three rows on one fact"),
        pytest.param(
            (Transition(S.END, E.GO, S.A, "back to life"),),
            (F.FLAG,), "terminal state 'end' is left", id="terminal left"),
        pytest.param(
            (Transition(S.A, E.GO, S.B, "one", guard=F.OTHER),),
            (F.FLAG,), "undeclared fact", id="undeclared guard"),
        pytest.param(
            (Transition(S.A, E.GO, Elsewhere.X, "leak"),),
            (F.FLAG,), "state of another machine", id="foreign state"),
    ],
)
def test_broken_declarations_are_refused(
    rows: tuple[Transition[Any, Any], ...], facts: tuple[Enum, ...], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        declare(*rows, facts=facts)


# -- the model stays free of I/O libraries ---------------------------------


def test_the_model_never_imports_zmq() -> None:
    # every module of the package, not only what commspec.model imports itself
    code = (
        "import importlib, pkgutil, sys, commspec.model as m\n"
        "for info in pkgutil.walk_packages(m.__path__, 'commspec.model.'):\n"
        "    importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'zmq' or m.startswith('zmq.'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_import_check_can_fail() -> None:
    code = "import sys, zmq\nassert not any(m == 'zmq' for m in sys.modules)\n"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0


def test_state_groups_are_derived_from_the_tables() -> None:
    from commspec.model.machines import (
        ALIVE,
        AWAITING_WELCOME,
        FAILURE_EVENTS,
        HELD,
        LINKED,
        PROVEN,
        STDIN_FAILURE_EVENTS,
        FrontendCommState,
        KernelCommState,
        RequestEvent,
        SessionState,
        StdinRequestEvent,
    )

    s = SessionState
    assert ALIVE == {KernelCommState.OPEN, KernelCommState.DETACHED}
    assert HELD == {FrontendCommState.OPEN, FrontendCommState.STALE}
    assert LINKED == {s.CONNECTING, s.READY, s.RECONNECTING, s.RECONCILING}
    assert PROVEN == {s.READY, s.RECONCILING}
    assert AWAITING_WELCOME == {s.CONNECTING, s.RECONNECTING}
    assert FAILURE_EVENTS == {RequestEvent.PEER_LOST, RequestEvent.COMM_CLOSED,
                              RequestEvent.DEADLINE, RequestEvent.IDLE_WITHOUT_REPLY}
    assert STDIN_FAILURE_EVENTS == {StdinRequestEvent.PEER_LOST, StdinRequestEvent.INTERRUPT}
