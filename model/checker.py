"""Exhaustive breadth-first exploration of the bounded system model.

Rules:
- Every reachable state is visited once; every transition is checked against
  the step properties, every new state against the state properties.
- Breadth first (:class:`~commspec.model.explore.Search`, the one search of the
  project), so the first violation found has a shortest counterexample: the path
  of steps from the initial state, rebuilt from parent pointers.
- After the search, liveness (``nothing_waits_forever``, then
  ``reconciling_finishes``): states with nothing waiting (no pending request; no
  frontend reconciling) are good; walking protocol edges backwards from them marks
  every state that can still get there without another fault. Any state left
  unmarked is stuck, and the shallowest one is the counterexample.
- An :class:`~commspec.model.errors.InvalidTransition` raised while exploring is
  a violation too: the composition fired an event its machine does not allow.
- Worlds that differ only in how frontends are numbered are explored once
  (:mod:`.symmetry`); a counterexample is replayed from the initial world, so its
  steps are a real run and name the frontend that acts.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InvalidTransition
from .explore import Search
from .invariants import (
    pending_requests,
    reconciling_frontends,
    relinked_frontends,
    state_violations,
    step_violations,
)
from .properties import PROPERTIES
from .symmetry import FrontendSymmetry, replay
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
class TooLarge:
    """The exploration stopped before the end: the bound does not fit in memory."""

    memory_mib: float
    limit_mib: float
    #: the memory the process held before the exploration began
    baseline_mib: float

    def describe(self, stats: Stats) -> str:
        per_state = max(self.memory_mib - self.baseline_mib, 0.0) / max(stats.states, 1)
        return (
            f"stopped at {stats.states:,} states found ({self.memory_mib:,.0f} MiB; the "
            f"limit is {self.limit_mib:,.0f} MiB), {stats.frontier:,} of them not yet "
            f"expanded, at depth {stats.depth}: the whole space is larger, and each "
            f"further million states needs about {per_state * 1e6 / 1024:,.1f} GiB "
            f"({per_state * 1024:,.1f} KiB a state); nothing is proven for it"
        )


@dataclass
class Result:
    stats: Stats
    violation: Violation | None = None
    held: list[str] = field(default_factory=list)
    #: set when the exploration stopped for want of memory (then nothing is proven)
    too_large: TooLarge | None = None

    @property
    def ok(self) -> bool:
        return self.violation is None and self.too_large is None


#: the checker's search: world states, labelled by the steps between them
_Graph = Search[World, Step]


#: the liveness properties, checked in this order: the property, what waits in a state
#: (it must be able to stop waiting through protocol steps), and what a stuck state says
LIVENESS: tuple[tuple[str, Callable[[World], list[int]], str], ...] = (
    ("nothing_waits_forever", pending_requests,
     "request {} is pending and no protocol step can ever end it"),
    ("drops_acted_on", relinked_frontends,
     "frontend {} was dropped and relinked by libzmq, and no protocol step makes it act "
     "on the drop"),
    ("reconciling_finishes", reconciling_frontends,
     "frontend {} is reconciling and no protocol step can ever end it"),
)

#: how many states are expanded between two looks at the memory used
MEMORY_EVERY = 4096


def check(
    model: SystemModel,
    progress: Progress | None = None,
    progress_every: float = 0.5,
    memory_limit_mib: float | None = None,
) -> Result:
    """Explores ``model``; with ``memory_limit_mib``, stops (``Result.too_large``) once
    the process's peak memory passes it."""
    start = time.monotonic()
    baseline = peak_memory_mib()
    symmetry = FrontendSymmetry()
    graph: _Graph = Search([symmetry.canonical(model.initial())], symmetry.edges(model))
    states = graph.states

    def run_to(i: int, j: int | None = None) -> list[Step]:
        """A real run to state ``i`` (then on to ``j``, by a step that breaks a step
        property if ``j`` was reached by one)."""
        trail = [states[x] for x in graph.trail(i)]
        if j is None:
            return replay(model, symmetry.canonical, trail)
        return replay(model, symmetry.canonical, [*trail, states[j]],
                      prefer=lambda a, step, b: bool(step_violations(a, b, step.drained)))

    stats = Stats(states=1)
    found = state_violations(states[0])
    if found:
        return Result(stats, Violation(*found[0], run_to(0)))
    #: per state, the states with a protocol step to it (liveness walks them backwards)
    protocol_preds: list[list[int]] = []
    next_report = start + progress_every
    expansions = graph.expansions()
    while True:
        try:
            i, edges = next(expansions)
        except StopIteration:
            break
        except InvalidTransition as e:
            return _finish(
                _count(stats, graph),
                start,
                Violation("declared_transitions_only", str(e), run_to(graph.current)),
            )
        world = states[i]
        protocol_preds.extend([] for _ in range(len(states) - len(protocol_preds)))
        for step, j, new in edges:
            stats.transitions += 1
            succ = states[j]
            bad = step_violations(world, succ, step.drained)
            if bad:
                return _finish(_count(stats, graph), start, Violation(*bad[0], run_to(i, j)))
            if new:
                found = state_violations(succ)
                if found:
                    return _finish(
                        _count(stats, graph), start, Violation(*found[0], run_to(i, j))
                    )
            if step.kind is StepKind.PROTOCOL:
                protocol_preds[j].append(i)
        if memory_limit_mib is not None and i % MEMORY_EVERY == MEMORY_EVERY - 1:
            used = peak_memory_mib()
            if used > memory_limit_mib:
                result = _finish(_count(stats, graph), start, None)
                result.stats.frontier = len(states) - i - 1
                result.too_large = TooLarge(used, memory_limit_mib, baseline)
                return result
        if progress is not None and time.monotonic() >= next_report:
            stats.states, stats.frontier = len(states), len(states) - i - 1
            stats.depth, stats.seconds = graph.depth[i], time.monotonic() - start
            progress(stats)
            next_report = time.monotonic() + progress_every
    stats.states = len(states)
    stats.depth = max(graph.depth)
    for name, waiting, says in LIVENESS:
        stuck = _stuck(graph, protocol_preds, waiting)
        if stuck is not None:
            which = ", ".join(str(x) for x in waiting(states[stuck]))
            return _finish(stats, start, Violation(name, says.format(which), run_to(stuck)))
    result = _finish(stats, start, None)
    result.held = [p.name for p in PROPERTIES]
    return result


def peak_memory_mib() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _count(stats: Stats, graph: _Graph) -> Stats:
    stats.states = len(graph.states)
    stats.depth = max(graph.depth)
    return stats


def _stuck(
    graph: _Graph, protocol_preds: list[list[int]], waiting: Callable[[World], list[int]]
) -> int | None:
    """The shallowest state from which no protocol path reaches a state where nothing is
    ``waiting`` (no pending request; no frontend reconciling)."""
    can_finish = [not waiting(w) for w in graph.states]
    work = [i for i, ok in enumerate(can_finish) if ok]
    while work:
        j = work.pop()
        for i in protocol_preds[j]:
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
