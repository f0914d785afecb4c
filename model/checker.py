"""Exhaustive breadth-first exploration of the bounded system model.

Rules:
- Every reachable state is visited once; every transition is checked against
  the step properties, every new state against the state properties.
- Breadth first, so the first violation found has a shortest counterexample:
  the path of steps from the initial state, rebuilt from parent pointers.
- After the search, liveness (``nothing_waits_forever``): states with no pending
  request are good; walking protocol edges backwards from them marks every state
  that can still end its requests without another fault. Any state left unmarked
  is stuck, and the shallowest one is the counterexample.
- An :class:`~commspec.model.errors.InvalidTransition` raised while exploring is
  a violation too: the composition fired an event its machine does not allow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InvalidTransition
from .invariants import pending_requests, state_violations, step_violations
from .properties import PROPERTIES
from .system import Step, StepKind, SystemModel
from .world import World

Progress = Callable[["Stats"], None]


@dataclass
class Stats:
    states: int = 0
    transitions: int = 0
    frontier: int = 0
    depth: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Violation:
    property: str
    detail: str
    steps: list[Step]


@dataclass
class Result:
    stats: Stats
    violation: Violation | None = None
    held: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violation is None


class _Graph:
    """Explored states with their BFS parents: enough to rebuild a shortest path."""

    def __init__(self, initial: World) -> None:
        self.index: dict[World, int] = {initial: 0}
        self.states: list[World] = [initial]
        self.parent: list[int] = [-1]
        self.via: list[Step | None] = [None]
        self.depth: list[int] = [0]
        self.protocol_preds: list[list[int]] = [[]]

    def add(self, world: World, parent: int, step: Step) -> int:
        i = len(self.states)
        self.index[world] = i
        self.states.append(world)
        self.parent.append(parent)
        self.via.append(step)
        self.depth.append(self.depth[parent] + 1)
        self.protocol_preds.append([])
        return i

    def path(self, i: int, last: Step | None = None) -> list[Step]:
        steps: list[Step] = [] if last is None else [last]
        while i > 0:
            step = self.via[i]
            assert step is not None
            steps.append(step)
            i = self.parent[i]
        steps.reverse()
        return steps


def check(
    model: SystemModel,
    progress: Progress | None = None,
    progress_every: float = 0.5,
) -> Result:
    start = time.monotonic()
    graph = _Graph(model.initial())
    stats = Stats(states=1)
    found = state_violations(graph.states[0])
    if found:
        return Result(stats, Violation(*found[0], graph.path(0)))
    frontier = [0]
    next_report = start + progress_every
    while frontier:
        nxt: list[int] = []
        for i in frontier:
            world = graph.states[i]
            try:
                successors = list(model.successors(world))
            except InvalidTransition as e:
                return _finish(
                    _count(stats, graph),
                    start,
                    Violation("declared_transitions_only", str(e), graph.path(i)),
                )
            for step, succ in successors:
                stats.transitions += 1
                bad = step_violations(world, succ, step.drained)
                if bad:
                    return _finish(
                        _count(stats, graph), start, Violation(*bad[0], graph.path(i, step))
                    )
                j = graph.index.get(succ)
                if j is None:
                    found = state_violations(succ)
                    if found:
                        return _finish(
                            _count(stats, graph), start, Violation(*found[0], graph.path(i, step))
                        )
                    j = graph.add(succ, i, step)
                    nxt.append(j)
                if step.kind is StepKind.PROTOCOL:
                    graph.protocol_preds[j].append(i)
            if progress is not None and time.monotonic() >= next_report:
                stats.states, stats.frontier = len(graph.states), len(nxt)
                stats.depth, stats.seconds = graph.depth[i], time.monotonic() - start
                progress(stats)
                next_report = time.monotonic() + progress_every
        frontier = nxt
    stats.states = len(graph.states)
    stats.depth = max(graph.depth)
    stuck = _stuck(graph)
    if stuck is not None:
        pending = ", ".join(str(r) for r in pending_requests(graph.states[stuck]))
        return _finish(
            stats,
            start,
            Violation(
                "nothing_waits_forever",
                f"request {pending} is pending and no protocol step can ever end it",
                graph.path(stuck),
            ),
        )
    result = _finish(stats, start, None)
    result.held = [p.name for p in PROPERTIES]
    return result


StepPredicate = Callable[[World, Step, World], bool]


def reach(model: SystemModel, wanted: StepPredicate, limit: int = 2_000_000) -> list[Step] | None:
    """The shortest path whose last step satisfies ``wanted(before, step, after)``, or None.

    This is how the tests show a scenario is reachable at all (a property that holds
    only because its premise never happens proves nothing)."""
    graph = _Graph(model.initial())
    frontier = [0]
    while frontier and len(graph.states) < limit:
        nxt: list[int] = []
        for i in frontier:
            world = graph.states[i]
            for step, succ in model.successors(world):
                if wanted(world, step, succ):
                    return graph.path(i, step)
                if succ not in graph.index:
                    nxt.append(graph.add(succ, i, step))
        frontier = nxt
    return None


def _count(stats: Stats, graph: _Graph) -> Stats:
    stats.states = len(graph.states)
    stats.depth = max(graph.depth)
    return stats


def _stuck(graph: _Graph) -> int | None:
    """The shallowest state from which no protocol path ends every pending request."""
    can_finish = [not pending_requests(w) for w in graph.states]
    work = [i for i, ok in enumerate(can_finish) if ok]
    while work:
        j = work.pop()
        for i in graph.protocol_preds[j]:
            if not can_finish[i]:
                can_finish[i] = True
                work.append(i)
    # States are numbered in BFS order, so the first unmarked one is the shallowest.
    for i, ok in enumerate(can_finish):
        if not ok:
            return i
    return None


def _finish(stats: Stats, start: float, violation: Violation | None) -> Result:
    stats.seconds = time.monotonic() - start
    stats.frontier = 0
    return Result(stats, violation)
