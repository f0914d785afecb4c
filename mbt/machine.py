"""The Hypothesis state machine: one rule that draws an environment action of the model.

Rules:
- Every step draws an action *kind* among those the harness enables now, then one
  action of that kind. The kinds are the model's environment action types
  (:data:`~commspec.model.actions.ENVIRONMENT_ACTIONS`: start, frontend_open, ...,
  shutdown), one per race order (race_reply_first, race_iopub_first,
  race_together, race_queued) and one per reconcile race (race_unseen_request,
  race_stale_request: :mod:`.reconcile`), so each is drawn as often as any action.
  Adding an action type adds its kind; :data:`ACTION_KINDS` is the list.
- One rule, not one per kind: Hypothesis switches rules off at random per example
  (swarm testing) and drops an example whose only enabled rule is switched off; at
  the start only ``start`` is enabled, and per-kind rules lost three examples in five
  that way.
- The harness applies the action to the model and to the system under test and
  compares them at the quiescent point. Whatever the system leaves to the test (a
  deterministic system's delivery order) is drawn too, through the chooser the step
  passes on.
- Nondeterminism is the test's: which action, with which arguments, in which
  order, is drawn by Hypothesis, so a failure shrinks to a short program.
- Every example gets a fresh system (for the live one: a fresh kernel and fresh
  frontend processes, forked by one zygote per run); teardown ends it whatever
  happened. The program each example ran is recorded, so the last one (after
  shrinking, the minimal one) can be printed as a standalone test.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.impl.core.policies import KernelPolicies
from commspec.model.actions import ENVIRONMENT_ACTIONS, Action, Freeze
from commspec.model.system import Bounds

from .adapter import KernelAdapter, ReferenceKernel
from .errors import MbtFailure
from .harness import MBT_BOUNDS, Harness, System, default_supported
from .inprocess import InProcessSystem
from .live import QUIET, STEP_TIMEOUT, LiveSystem
from .processes import FrontendPool
from .race import DESCRIPTIONS, Race, RaceOrder, rule_name
from .reconcile import RECONCILE_RACES, ReconcileRace
from .recorder import Coverage

__all__ = [
    "ACTION_KINDS",
    "ActionKind",
    "Program",
    "RunResult",
    "make_machine",
    "program_as_test",
    "random_seed",
    "run",
]

AdapterFactory = Callable[[], KernelAdapter]
SystemFactory = Callable[[], System]

#: how many of a step's choices (delivery orders, drain batches) a deterministic system
#: lets the test draw; the rest follow the network's own order
CHOICES_PER_STEP = 24


class StepChooser:
    """The chooser of one step: the first ``CHOICES_PER_STEP`` choices with more than
    one alternative come from ``source`` (Hypothesis, or a recorded list when a
    program is replayed); the rest are 0, the network's own order (drawing every
    delivery would exhaust Hypothesis's data on long runs, and shrinking heads for 0
    anyway). ``made`` records what was chosen, so a printed program replays it."""

    def __init__(self, source: Callable[[int], int]) -> None:
        self._source = source
        self.made: list[int] = []

    @classmethod
    def replaying(cls, choices: list[int]) -> StepChooser:
        recorded = iter(choices)
        return cls(lambda n: next(recorded, 0) % n)

    def __call__(self, n: int) -> int:
        if n == 1 or len(self.made) >= CHOICES_PER_STEP:
            return 0
        choice = self._source(n)
        self.made.append(choice)
        return choice


@dataclass
class Program:
    """What one example did: its actions, and how long the live steps took."""

    actions: list[Action]
    seconds: float
    failure: str | None = None
    #: of ``seconds``, the freezes' (each waits out the kernel's heartbeat timeout)
    freeze_seconds: float = 0.0
    freezes: int = 0
    #: per action, the choices its step made (a deterministic system's delivery orders)
    choices: list[list[int]] = field(default_factory=list)


@dataclass
class RunResult:
    #: programs run, the search's and (after a failure) the shrinking's
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    failure: BaseException | None = None
    programs: list[Program] = field(default_factory=list)
    #: the Hypothesis seed the run used (drawn when none was given): it repeats the run
    seed: int | None = None
    #: of ``examples``, those run after the first failure (shrinking it, replaying it)
    shrinks: int = 0
    #: whether a program has failed yet (while the run goes on: the shrinking has begun)
    found_failure: bool = False
    #: of ``seconds``, the search's: up to the end of the first program that failed
    search_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def searched(self) -> int:
        """Programs the search ran, up to and including the first that failed."""
        return self.examples - self.shrinks

    @property
    def searched_steps(self) -> int:
        """The steps of those programs."""
        return sum(len(p.actions) for p in self.programs[:self.searched])

    @property
    def shrunk(self) -> Program | None:
        """After a failure, the last program that failed: the minimal one once shrunk.

        Not simply the last program run: when a failure does not replay, Hypothesis's
        final replay passes and reports it as flaky, and the program to look at is the
        one that did fail.
        """
        return next((p for p in reversed(self.programs) if p.failure is not None), None)

    @property
    def steps_per_second(self) -> float:
        live = sum(p.seconds for p in self.programs)
        return self.steps / live if live > 0 else 0.0

    @property
    def steps_per_second_without_freezes(self) -> float:
        """The same, leaving out freezes: their time is the heartbeat timeout's."""
        live = sum(p.seconds - p.freeze_seconds for p in self.programs)
        steps = self.steps - sum(p.freezes for p in self.programs)
        return steps / live if live > 0 else 0.0


@dataclass(frozen=True)
class ActionKind:
    """One kind of environment action a step can draw: an action type, or one race order."""

    action_type: type[Action]
    #: for the race, the one order this kind selects
    order: RaceOrder | None = None

    @property
    def name(self) -> str:
        return self.action_type.name if self.order is None else rule_name(self.order)

    @property
    def doc(self) -> str:
        return DESCRIPTIONS[self.order] if self.order is not None else (
            self.action_type.__doc__ or self.name)

    def selects(self, action: Action) -> bool:
        if self.order is not None:
            return isinstance(action, Race) and action.order is self.order
        return type(action) is self.action_type


ACTION_KINDS: tuple[ActionKind, ...] = (
    *(ActionKind(t) for t in ENVIRONMENT_ACTIONS),
    *(ActionKind(Race, order) for order in RaceOrder),
    *(ActionKind(t) for t in RECONCILE_RACES),
)

#: the steps that wait out the kernel's heartbeat timeout (a freeze, and the reconcile
#: races, which begin with one)
FREEZING = (Freeze, ReconcileRace)


def make_machine(
    system_factory: SystemFactory,
    bounds: Bounds = MBT_BOUNDS,
    *,
    supported: frozenset[str] | None = None,
    on_program: Callable[[Program], None] | None = None,
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to a system under test and the model's bounds."""
    offered = default_supported(bounds) if supported is None else supported
    # kinds the harness never offers would only cost Hypothesis draws
    kinds = [k for k in ACTION_KINDS
             if k.name in offered or (k.order is not None and Race.name in offered)]

    class ModelBasedTest(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.failure: str | None = None
            self.choices: list[list[int]] = []
            system = system_factory()  # _Searched, when the search is done, passes here
            self.harness = Harness(system, bounds, supported=supported)
            try:
                self.harness.start()
            except Exception as e:  # a failure like any other: the run must know of it
                self.failed(e)
                self.harness.close()
                self.report()
                raise
            except BaseException:
                self.harness.close()
                raise

        def failed(self, e: Exception) -> None:
            # only Exceptions: Hypothesis's StopTest (its data ran out: an invalid
            # example, not a failure) and KeyboardInterrupt are BaseExceptions
            if self.failure is None:
                self.failure = f"{type(e).__name__}: {e}"

        @rule(data=st.data())
        def act(self, data: st.DataObject) -> None:
            """One environment action, of a kind the harness enables now."""
            enabled = self.harness.enabled()
            now = [k for k in kinds if any(k.selects(a) for a in enabled)]
            if not now:
                return  # every frontend gone and the kernel down: nothing more can happen
            kind = data.draw(st.sampled_from(now), label="kind")
            action = data.draw(st.sampled_from([a for a in enabled if kind.selects(a)]),
                               label=kind.name)
            label = f"{kind.name}: order"
            choose = StepChooser(lambda n: data.draw(_below(n), label=label))
            self.choices.append(choose.made)
            try:
                self.harness.apply(action, choose)
            except Exception as e:
                self.failed(e)
                raise

        @invariant()
        def model_and_system_checks(self) -> None:
            try:
                self.harness.check()
            except Exception as e:
                self.failed(e)
                raise

        def teardown(self) -> None:
            try:
                self.harness.close()
            except Exception as e:
                self.failed(e)
                raise
            finally:
                self.report()

        def report(self) -> None:
            """Tell ``on_program`` what this example did."""
            if on_program is not None:
                steps = self.harness.steps
                freezes = [s.seconds for s in steps if isinstance(s.action, FREEZING)]
                on_program(Program(
                    list(self.harness.program),
                    sum(s.seconds for s in steps),
                    self.failure,
                    sum(freezes),
                    len(freezes),
                    self.choices,
                ))

    return ModelBasedTest


@functools.cache
def _below(n: int) -> st.SearchStrategy[int]:
    """0 .. n-1: one strategy per n (building one per draw costs a fifth of the draw)."""
    return st.integers(0, n - 1)


def random_seed() -> int:
    """A fresh Hypothesis seed, for a run that is to be repeatable."""
    return random.SystemRandom().randrange(2**32)


def run(
    adapter_factory: AdapterFactory = ReferenceKernel,
    bounds: Bounds = MBT_BOUNDS,
    *,
    in_process: bool = False,
    examples: int = 20,
    steps: int = 15,
    seed: int | None = None,
    coverage: Coverage | None = None,
    supported: frozenset[str] | None = None,
    progress: Callable[[RunResult], None] | None = None,
    derandomize: bool = False,
    quiet: float = QUIET,
    step_timeout: float = STEP_TIMEOUT,
    frontend_policies: type[FrontendPolicies] = FrontendPolicies,
    shrink: bool = True,
    max_shrinks: int | None = None,
) -> RunResult:
    """Run the model-based test; a failure is caught and returned, not raised.

    The search runs ``examples`` programs, exactly (Hypothesis's own count leaves out
    the programs it deems invalid, so it would run more); a failure ends it, and the
    shrinking that follows runs as many as it takes (``RunResult.shrinks``). Without a
    ``seed`` one is drawn (unless ``derandomize``) and returned in the result: given
    again, it repeats the run's programs.

    Live (the default here): ``adapter_factory``'s kernel, reference frontends as
    processes. ``in_process``: the reference kernel's protocol core, with the
    policies of ``adapter_factory`` (a :class:`ReferenceKernel` or a broken variant
    of it), and frontend cores on the simulated network. Either way the frontends'
    reconcile rules are ``frontend_policies``: the reference ones, or a broken variant's.
    Without ``shrink``, a failure is reported as first found (shrinking a program whose
    steps draw many delivery orders can take thousands of examples); ``max_shrinks``
    bounds the programs the shrinking may run (a kernel that takes seconds to start
    makes each one cost that). ``quiet`` and ``step_timeout`` are the live system's
    bounds on one step (:class:`~commspec.mbt.live.LiveSystem`).
    """
    if seed is None and not derandomize:
        seed = random_seed()
    result = RunResult(seed=seed)
    began = time.monotonic()

    def record(program: Program) -> None:
        # once a program failed, the programs after it are the shrinking's
        result.shrinks += result.found_failure
        if not result.found_failure:
            result.search_seconds = time.monotonic() - began
        result.found_failure = result.found_failure or program.failure is not None
        result.examples += 1
        result.steps += len(program.actions)
        result.programs.append(program)
        if progress is not None:
            progress(result)

    def searched_enough() -> bool:
        return not result.found_failure and result.examples >= examples

    pool: FrontendPool | None = None
    factory: SystemFactory
    if in_process:
        policies = _policies(adapter_factory)

        def factory() -> System:
            return InProcessSystem(policies, coverage=coverage,
                                   frontend_policies=frontend_policies)
    else:
        live_pool = pool = FrontendPool()  # one zygote for every example: forks are cheap

        def factory() -> System:
            return LiveSystem(adapter_factory(), coverage=coverage, quiet=quiet,
                              step_timeout=step_timeout, pool=live_pool,
                              frontend_policies=frontend_policies)

    def bounded() -> System:
        if searched_enough() or (max_shrinks is not None and result.shrinks >= max_shrinks):
            raise _Searched
        return factory()

    machine = make_machine(bounded, bounds, supported=supported, on_program=record)
    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        # one failure, shrunk: the program printed and replayed is one program
        report_multiple_bugs=False,
        phases=tuple(Phase) if shrink else tuple(p for p in Phase if p is not Phase.shrink),
    )
    try:
        with _fewer_collections():
            run_state_machine_as_test(machine, settings=config)  # type: ignore[no-untyped-call, unused-ignore]
    except _Searched:
        shrunk = result.shrunk  # the shrinking's budget ran out: its smallest failure
        if result.found_failure and shrunk is not None:
            result.failure = MbtFailure(shrunk.failure or "failed")
    except BaseException as e:  # the failure, after shrinking
        if isinstance(e, KeyboardInterrupt):
            raise
        result.failure = e
    finally:
        if pool is not None:
            pool.close()
    result.seconds = time.monotonic() - began
    if not result.found_failure:
        result.search_seconds = result.seconds
    return result


class _Searched(KeyboardInterrupt):
    """Raised instead of starting a program past the ``examples`` asked for, and
    caught by :func:`run`. A KeyboardInterrupt, because that is the one exception
    Hypothesis passes on at once, as an interruption: any other it takes for the
    test's failure, or (raised before the example draws what earlier ones drew) for
    data generation that is not deterministic."""


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect the youngest generation ten times less often while the test runs.

    Hypothesis and the model allocate many short-lived objects per step; at the
    default threshold (700) the collector ran often enough to cost about a fifth of
    the in-process steps per second. Memory is not at stake: every example's
    system is dropped when the example ends.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 10_000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _policies(adapter_factory: AdapterFactory) -> type[KernelPolicies]:
    policies = getattr(adapter_factory, "policies", None)
    if not (isinstance(policies, type) and issubclass(policies, KernelPolicies)):
        raise ValueError("in-process runs take the reference kernel's core: the adapter "
                         "must be ReferenceKernel or a variant of it (its policies)")
    return policies


_LIVE_REPLAY = """\
    with Harness(LiveSystem({adapter}{core}), bounds{only}) as harness:
        for action in program:
            harness.apply(action)
            harness.check()
"""
_IN_PROCESS_REPLAY = """\
    with Harness(InProcessSystem({kernel}.policies{core}), bounds{only}) as harness:
        for action, made in zip(program, choices, strict=True):
            harness.apply(action, StepChooser.replaying(made))
            harness.check()
"""


def program_as_test(
    actions: list[Action],
    bounds: Bounds = MBT_BOUNDS,
    supported: frozenset[str] | None = None,
    name: str = "test_shrunk_program",
    *,
    choices: list[list[int]] | None = None,
    kernel: str = "ReferenceKernel",
    frontend: str | None = None,
    adapter: tuple[str, list[tuple[str, str]]] | None = None,
) -> str:
    """A standalone pytest test that replays ``actions`` against the reference kernel
    (or the variant named ``kernel``, importable from the test's folder) and reference
    frontends (or the frontend core named ``frontend``): live, or, given the
    ``choices`` each step made, in-process. ``adapter``: for a live replay against
    another kernel, the expression that makes its adapter and the imports it needs
    (:meth:`~commspec.mbt.external.ExternalKernel.as_code`)."""
    body = "".join(f"        {a!r},\n" for a in actions)
    b = bounds
    only = "" if supported is None else f", supported={sorted(supported)!r}"
    system = (("commspec.mbt.live", "LiveSystem"),) if choices is None else (
        ("commspec.mbt.inprocess", "InProcessSystem"), ("commspec.mbt.machine", "StepChooser"))
    made_by, needs = adapter if adapter is not None else (
        f"{kernel}()", [("commspec.mbt.adapter", "ReferenceKernel")])
    if choices is not None:
        needs = [("commspec.mbt.adapter", "ReferenceKernel")]
    imports = _imports(actions, [*needs, ("commspec.mbt.harness", "Harness"), *system,
                                 ("commspec.model.system", "Bounds")])
    made = "" if choices is None else f"    choices = {choices!r}\n"
    core = "" if frontend is None else f", frontend_policies={frontend}"
    replay = (_LIVE_REPLAY if choices is None else _IN_PROCESS_REPLAY).format(
        kernel=kernel, adapter=made_by, only=only, core=core)
    return (f"{imports}\n\n\ndef {name}() -> None:\n    program = [\n{body}    ]\n{made}"
            f"    bounds = Bounds(frontends={b.frontends}, comms={b.comms}, "
            f"requests={b.requests},\n"
            f"                    reconnects={b.reconnects}, faults={b.faults}, "
            f"adoptions={b.adoptions}, detached={b.detached})\n{replay}")


def _imports(actions: list[Action], always: list[tuple[str, str]]) -> str:
    """The import lines a printed program needs: its action classes and the enums their
    arguments use (each printed as ``Class.MEMBER``), grouped by module."""
    needed: dict[str, set[str]] = {}
    for module, name in always:
        needed.setdefault(module, set()).add(name)
    for a in actions:
        for t in (type(a), *(type(v) for v in a.arguments() if isinstance(v, Enum))):
            needed.setdefault(t.__module__, set()).add(t.__name__)
    return "\n".join(
        f"from {module} import {', '.join(sorted(names))}"
        for module, names in sorted(needed.items())
    )
