"""Lockstep: one environment action applied to the system model and to a system under test.

Rules:
- The model is :class:`~commspec.model.system.SystemModel`. The harness holds a
  *set* of model states the system may be in (states that differ only in what the
  system does not show). An action is enabled when the model enables it in at
  least one of them and the system can make it happen there (:meth:`System.can`).
- The harness does not know which system it drives: anything with the
  :class:`System` interface will do. :class:`~commspec.mbt.live.LiveSystem` is the
  kernel under test and frontend processes over ZeroMQ; a deterministic,
  in-process system of sans-IO cores fits the same interface, letting the test
  choose its delivery orders through the chooser.
- Applying an action: the model takes the environment step from every state that
  enables it, then protocol steps only, breadth first
  (:func:`~commspec.model.explore.quiescent`), to every *quiescent* state (no
  protocol step enabled). The system performs the action, then settles at a
  quiescent point whose observation (:mod:`.projection`) is that of one of those
  states; the matching states are the new set. A system that cannot match reports
  what it shows instead, and the step fails showing it beside the model's closest
  options.
- The race (:mod:`.race`, not a model action): a kernel request, then its
  frontend's answer and its departure in an order the test chooses; the model's
  outcomes are narrowed to those that order allows. The reconcile races
  (:mod:`.reconcile`, not model actions either): a frontend away and back gets a
  kernel request before its comm_info_reply; the model's steps taken in the phases
  the system makes happen.
- After each step: the model's state properties on every state kept, and the
  system's own checks (every traced transition declared, each request ended at
  most once, with a future that agrees with its traced outcome).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from commspec.model.actions import ENVIRONMENT_ACTIONS, Action
from commspec.model.errors import InvalidTransition
from commspec.model.explore import SearchLimit, quiescent
from commspec.model.invariants import state_violations
from commspec.model.system import Bounds, Step, StepKind, SystemModel
from commspec.model.world import World

from .errors import MbtFailure
from .explain import explain
from .projection import Observation, project
from .race import Race, RaceOrder, outcomes, races, rule_name
from .reconcile import RECONCILE_RACES, ReconcileRace, reconcile_races
from .reconcile import outcomes as reconcile_outcomes
from .recorder import Coverage, Move, Recorder, Row

__all__ = [
    "MBT_BOUNDS",
    "SKIPPABLE",
    "SUPPORTED",
    "Action",
    "Chooser",
    "Coverage",
    "Harness",
    "MbtFailure",
    "Mismatch",
    "Move",
    "Observation",
    "Recorder",
    "Row",
    "StepRecord",
    "System",
    "project",
    "without",
]

#: the environment actions the harness can apply, by name; "race" (not a model action:
#: kernel_request, then its owner answers and crashes) stands for every race order,
#: ``race_<order>`` for one; each reconcile race has its own name
SUPPORTED = frozenset({a.name for a in ENVIRONMENT_ACTIONS} | {Race.name}
                      | {a.name for a in RECONCILE_RACES})


def default_supported(bounds: Bounds) -> frozenset[str]:
    """Every supported action, whatever the bounds."""
    return SUPPORTED


#: every name ``without`` takes: the actions, ``race`` and each race order's rule
SKIPPABLE = SUPPORTED | {rule_name(o) for o in RaceOrder}


def without(supported: frozenset[str], skipped: Iterable[str]) -> frozenset[str]:
    """``supported`` less the actions named (``race_<order>`` takes one race order out
    and keeps the others); ValueError naming any name that is not an action."""
    names = set(skipped)
    unknown = sorted(names - SKIPPABLE)
    if unknown:
        raise ValueError(f"not an action: {', '.join(unknown)} (the actions: "
                         f"{', '.join(sorted(SKIPPABLE))})")
    out = set(supported)
    if Race.name in out and names & {rule_name(o) for o in RaceOrder}:
        out.discard(Race.name)  # "race" means every order: name the ones kept
        out |= {rule_name(o) for o in RaceOrder}
    return frozenset(out - names)


#: small bounds: a default run finishes in well under a minute
#: (two detached comms kept: the random programs' races assume a persistent comm stays
#: detached; eviction has a directed program of its own)
MBT_BOUNDS = Bounds(frontends=2, comms=2, requests=2, reconnects=1, faults=2, adoptions=1,
                    detached=2)

#: a bound on the protocol-only exploration after each step
QUIESCE_LIMIT = 50_000

#: picks one of ``n`` alternatives (0 <= pick < n). A deterministic system asks it
#: whenever it has a choice to make (which message is delivered next), so the test
#: decides, shrinks and replays the order; a live system has no say and ignores it.
Chooser = Callable[[int], int]


@dataclass(frozen=True)
class Mismatch:
    """A system that settled where the model cannot be: what it shows, and why it
    stopped waiting for something better."""

    observed: Observation
    why: str


class System(Protocol):
    """What the lockstep needs of the system it drives."""

    def start(self, bounds: Bounds) -> None:
        """Bring the system up, with room for the bounds' frontends and slots."""

    def close(self) -> None:
        """Release everything, even after a failed step; safe to call twice."""

    def can(self, action: Action, world: World) -> bool:
        """Whether the system can make ``action``, which the model enables in
        ``world``, happen as the model means it."""

    def perform(self, action: Action, choose: Chooser | None = None) -> None:
        """Make ``action`` happen; MbtFailure if the system cannot."""

    def settle(
        self, options: Mapping[Observation, World], choose: Chooser | None = None
    ) -> Observation | Mismatch:
        """Run to a quiescent point whose observation is one of ``options`` (the
        model's quiescent states after the action, by projection) and return it, or
        return what the system shows when it cannot get there."""

    def observe(self) -> Observation:
        """The system's state as the model can show it."""

    def check(self) -> None:
        """The per-step checks only the system can make (MbtFailure): every traced
        transition is declared, each request ended at most once, and each request's
        handle agrees with its traced outcome."""


#: how many model states' successors the lockstep remembers (per bounds)
REMEMBERED = 200_000
_MODELS: dict[Bounds, SystemModel] = {}


def remembering_model(bounds: Bounds) -> SystemModel:
    """The system model for ``bounds``, remembering each state's successors: the
    lockstep asks for the same states again and again (every rule's precondition,
    every step's quiescence, every example's first steps), and the model is a pure
    function of the state. One per bounds, shared by every harness."""
    model = _MODELS.get(bounds)
    if model is not None:
        return model
    model = _MODELS[bounds] = SystemModel(bounds)
    cache: dict[World, tuple[tuple[Step, World], ...]] = {}
    plain = model.successors

    def successors(w: World) -> Iterator[tuple[Step, World]]:
        found = cache.get(w)
        if found is None:
            if len(cache) >= REMEMBERED:
                cache.clear()
            found = cache[w] = tuple(plain(w))
        return iter(found)

    model.successors = successors  # type: ignore[method-assign]
    return model


@dataclass
class StepRecord:
    action: Action
    seconds: float
    states: int  # model states kept after it


class Harness:
    """The lockstep of a :class:`System` and the model (see the module docstring)."""

    def __init__(
        self,
        system: System,
        bounds: Bounds = MBT_BOUNDS,
        *,
        supported: Iterable[str] | None = None,
    ) -> None:
        self.system = system
        self.bounds = bounds
        self.model = remembering_model(bounds)
        self.supported = (
            frozenset(supported) if supported is not None else default_supported(bounds)
        )
        self.states: frozenset[World] = frozenset({self.model.initial()})
        self._enabled: tuple[frozenset[World] | None, list[Action]] = (None, [])
        self.program: list[Action] = []
        self.steps: list[StepRecord] = []
        #: what the system showed at the last step both agreed on (for mismatches)
        self.agreed: Observation = project(self.model.initial())

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Harness:
        self.system.start(self.bounds)
        return self

    def close(self) -> None:
        self.system.close()

    def __enter__(self) -> Harness:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what may happen -----------------------------------------------------

    def enabled(self) -> list[Action]:
        """Environment actions the model enables in some kept state, in a stable order."""
        if self._enabled[0] is not self.states:  # asked by every rule's precondition
            self._enabled = (self.states, self._enabled_now())
        return list(self._enabled[1])

    def enabled_named(self, name: str) -> list[Action]:
        return [a for a in self.enabled() if a.name == name]

    def _enabled_now(self) -> list[Action]:
        seen: dict[Action, None] = {}
        orders = self._race_orders()
        kinds = self._reconcile_kinds()
        for w in sorted(self.states, key=repr):
            for step, _ in self._env_steps(w):
                seen.setdefault(step.action, None)
            for race in self._races(w, orders):
                seen.setdefault(race, None)
            for reconcile in self._reconcile_races(w, kinds):
                seen.setdefault(reconcile, None)
        return list(seen)

    def _reconcile_kinds(self) -> list[type[ReconcileRace]]:
        return [k for k in RECONCILE_RACES if k.name in self.supported]

    def _reconcile_races(self, w: World, kinds: list[type[ReconcileRace]]
                         ) -> Iterator[ReconcileRace]:
        if kinds:
            yield from (a for a in reconcile_races(self.model, w, kinds)
                        if self.system.can(a, w))

    def _race_orders(self) -> list[RaceOrder]:
        """The race orders to offer: ``race`` in ``supported`` means all of them,
        ``race_<order>`` one."""
        return [o for o in RaceOrder
                if Race.name in self.supported or rule_name(o) in self.supported]

    def _races(self, w: World, orders: list[RaceOrder]) -> Iterator[Race]:
        if orders:
            yield from (r for r in races(self.model, w, orders) if self.system.can(r, w))

    def _env_steps(self, w: World) -> list[tuple[Step, World]]:
        return [
            (step, succ)
            for step, succ in self.model.successors(w)
            if step.kind is StepKind.ENVIRONMENT
            and step.action.name in self.supported
            and self.system.can(step.action, w)
        ]

    # -- one step ----------------------------------------------------------------

    def apply(self, action: Action, choose: Chooser | None = None) -> None:
        """``action`` on the model and on the system, then both to a quiescent point
        that must match; ``choose`` decides whatever the system leaves to the test."""
        began = time.monotonic()
        self.program.append(action)
        quiet = self._model_after(action)
        self.system.perform(action, choose)
        options = {project(q): q for q in quiet}
        settled = self.system.settle(options, choose)
        if isinstance(settled, Mismatch):
            raise MbtFailure(self._mismatch(action, settled, options))
        self.states = frozenset(q for q in quiet if project(q) == settled)
        self.agreed = settled
        self.check()
        self.steps.append(StepRecord(action, time.monotonic() - began, len(self.states)))

    def _model_after(self, action: Action) -> set[World]:
        """The quiescent states the model can reach by ``action`` from a kept state."""
        try:
            if isinstance(action, Race):
                orders = self._race_orders()
                out: set[World] = set()
                for w in self.states:
                    if action in self._races(w, orders):
                        out |= outcomes(self.model, w, action, QUIESCE_LIMIT)
                if not out:
                    raise MbtFailure(f"the model does not enable {action} here")
                return out
            if isinstance(action, ReconcileRace):
                kinds = self._reconcile_kinds()
                out = set()
                for w in self.states:
                    if action in self._reconcile_races(w, kinds):
                        out |= reconcile_outcomes(self.model, w, action, QUIESCE_LIMIT)
                if not out:
                    raise MbtFailure(f"the model does not enable {action} here")
                return out
            nexts = [succ for w in self.states for step, succ in self._env_steps(w)
                     if step.action == action]
            if not nexts:
                raise MbtFailure(f"the model does not enable {action} here")
            return set(quiescent(self.model, nexts, QUIESCE_LIMIT))
        except InvalidTransition as e:
            raise MbtFailure(f"the model itself fired an undeclared event: {e}") from e
        except SearchLimit as e:
            raise MbtFailure(f"{e} in the model before quiescence") from e

    def _mismatch(
        self, action: Action, mismatch: Mismatch, options: Mapping[Observation, World]
    ) -> str:
        obs = mismatch.observed
        lines = [f"after {action}: the system reached no state the model allows "
                 f"({mismatch.why})",
                 f"  system: {obs}"]
        ranked = sorted(options, key=lambda o: len(obs.diff(o)))
        for o in ranked[:3]:
            lines.append("  model option, differing in:")
            lines.extend(f"    {d}" for d in explain(self.agreed, obs, o))
            lines.extend(f"      ({d})" for d in obs.diff(o))
        if not options:
            lines.append("  (the model has no quiescent state here)")
        lines.append("  program so far: " + repr(self.program))
        return "\n".join(lines)

    # -- checks --------------------------------------------------------------------

    def check(self) -> None:
        """The checks of one step, on demand (the state machine's invariant)."""
        for w in self.states:
            bad = state_violations(w)
            if bad:
                raise MbtFailure(f"model property {bad[0][0]} fails: {bad[0][1]}")
        self.system.check()
