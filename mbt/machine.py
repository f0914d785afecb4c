"""The Hypothesis state machine: its rules are the system model's environment actions.

Rules:
- One rule per environment action name (start, frontend_open, frontend_request,
  frontend_close, exit, crash, freeze, kernel_open, kernel_close, kernel_request,
  kernel_stdin_request, shutdown). A rule's precondition is "the model enables
  an action of that name"; the rule then draws one of the enabled actions (its
  frontend, comm slot, request slot, comm kind) and hands it to the
  :class:`~commspec.mbt.harness.Harness`, which applies it to the model and to
  the live system and compares them at the quiescent point.
- The reply/departure race has one rule per order (race_reply_first,
  race_iopub_first, race_together, race_queued), so each order is drawn as often
  as any action.
- Nondeterminism is the test's: which action, and with which arguments, is
  drawn by Hypothesis, so a failure shrinks to a short program.
- Every example gets a fresh kernel and fresh frontend processes (forked by one
  zygote per run); teardown ends them whatever happened. The program each example
  ran is recorded, so the last one (after shrinking, the minimal one) can be
  printed as a standalone test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from commspec.model.actions import Action, Freeze
from commspec.model.system import Bounds

from .adapter import KernelAdapter, ReferenceKernel
from .harness import MBT_BOUNDS, QUIET, Coverage, Harness
from .processes import FrontendPool
from .race import Race

__all__ = ["Program", "RunResult", "make_machine", "program_as_test", "run"]

AdapterFactory = Callable[[], KernelAdapter]


@dataclass
class Program:
    """What one example did: its actions, and how long the live steps took."""

    actions: list[Action]
    seconds: float
    failure: str | None = None
    #: of ``seconds``, the freezes' (each waits out the kernel's heartbeat timeout)
    freeze_seconds: float = 0.0
    freezes: int = 0


@dataclass
class RunResult:
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    failure: BaseException | None = None
    programs: list[Program] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None

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


def make_machine(
    adapter_factory: AdapterFactory = ReferenceKernel,
    bounds: Bounds = MBT_BOUNDS,
    *,
    coverage: Coverage | None = None,
    supported: frozenset[str] | None = None,
    on_program: Callable[[Program], None] | None = None,
    quiet: float = QUIET,
    pool: FrontendPool | None = None,
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to a kernel under test and the model's bounds."""

    class ModelBasedTest(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.began = time.monotonic()
            self.harness = Harness(
                adapter_factory(), bounds, coverage=coverage, supported=supported, quiet=quiet,
                pool=pool,
            )
            try:
                self.harness.start()
            except BaseException:
                self.harness.close()
                raise
            self.failure: str | None = None

        def _apply(self, name: str, data: st.DataObject) -> None:
            choices = self.harness.enabled_named(name)
            self._run(data.draw(st.sampled_from(choices), label=name))

        def _run(self, action: Action) -> None:
            try:
                self.harness.apply(action)
            except BaseException as e:
                self.failure = f"{type(e).__name__}: {e}"
                raise

        def _can(self, name: str) -> bool:
            return bool(self.harness.enabled_named(name))

        @precondition(lambda self: self._can("start"))
        @rule(data=st.data())
        def start(self, data: st.DataObject) -> None:
            self._apply("start", data)

        @precondition(lambda self: self._can("frontend_open"))
        @rule(data=st.data())
        def frontend_open(self, data: st.DataObject) -> None:
            self._apply("frontend_open", data)

        @precondition(lambda self: self._can("frontend_request"))
        @rule(data=st.data())
        def frontend_request(self, data: st.DataObject) -> None:
            self._apply("frontend_request", data)

        @precondition(lambda self: self._can("frontend_close"))
        @rule(data=st.data())
        def frontend_close(self, data: st.DataObject) -> None:
            self._apply("frontend_close", data)

        @precondition(lambda self: self._can("exit"))
        @rule(data=st.data())
        def exit(self, data: st.DataObject) -> None:
            self._apply("exit", data)

        @precondition(lambda self: self._can("crash"))
        @rule(data=st.data())
        def crash(self, data: st.DataObject) -> None:
            self._apply("crash", data)

        @precondition(lambda self: self._can("freeze"))
        @rule(data=st.data())
        def freeze(self, data: st.DataObject) -> None:
            """SIGSTOP a frontend until the kernel's heartbeat drops it, then SIGCONT."""
            self._apply("freeze", data)

        @precondition(lambda self: self._can("kernel_open"))
        @rule(data=st.data())
        def kernel_open(self, data: st.DataObject) -> None:
            self._apply("kernel_open", data)

        @precondition(lambda self: self._can("kernel_close"))
        @rule(data=st.data())
        def kernel_close(self, data: st.DataObject) -> None:
            self._apply("kernel_close", data)

        @precondition(lambda self: self._can("kernel_request"))
        @rule(data=st.data())
        def kernel_request(self, data: st.DataObject) -> None:
            self._apply("kernel_request", data)

        @precondition(lambda self: self._can("kernel_stdin_request"))
        @rule(data=st.data())
        def kernel_stdin_request(self, data: st.DataObject) -> None:
            self._apply("kernel_stdin_request", data)

        @precondition(lambda self: self._can("shutdown"))
        @rule(data=st.data())
        def shutdown(self, data: st.DataObject) -> None:
            self._apply("shutdown", data)

        # The race gets one rule per order, so each order is as likely as any action.
        def _races(self, mode: str) -> list[Action]:
            return [a for a in self.harness.enabled_named("race")
                    if isinstance(a, Race) and a.order.value == mode]

        def _race(self, mode: str, data: st.DataObject) -> None:
            action = data.draw(st.sampled_from(self._races(mode)), label=f"race_{mode}")
            self._run(action)

        def _can_race(self, mode: str) -> bool:
            return bool(self._races(mode))

        @precondition(lambda self: self._can_race("reply_first"))
        @rule(data=st.data())
        def race_reply_first(self, data: st.DataObject) -> None:
            """A kernel request; the kernel resolves its answer; then the frontend dies."""
            self._race("reply_first", data)

        @precondition(lambda self: self._can_race("iopub_first"))
        @rule(data=st.data())
        def race_iopub_first(self, data: st.DataObject) -> None:
            """A kernel request; the frontend's IOPub goes, then its answer (late)."""
            self._race("iopub_first", data)

        @precondition(lambda self: self._can_race("together"))
        @rule(data=st.data())
        def race_together(self, data: st.DataObject) -> None:
            """A kernel request; the answer and the SIGKILL back to back."""
            self._race("together", data)

        @precondition(lambda self: self._can_race("queued"))
        @rule(data=st.data())
        def race_queued(self, data: st.DataObject) -> None:
            """A kernel request; answer and unsubscribe both queued before the kernel looks."""
            self._race("queued", data)

        @precondition(lambda self: not self.harness.enabled())
        @rule()
        def nothing_left(self) -> None:
            """Every frontend gone and the kernel down: nothing more can happen."""

        @invariant()
        def model_and_live_checks(self) -> None:
            self.harness.check()

        def teardown(self) -> None:
            try:
                self.harness.close()
            finally:
                if on_program is not None:
                    steps = self.harness.steps
                    freezes = [s.seconds for s in steps if isinstance(s.action, Freeze)]
                    on_program(Program(
                        list(self.harness.program),
                        sum(s.seconds for s in steps),
                        self.failure,
                        sum(freezes),
                        len(freezes),
                    ))

    return ModelBasedTest


def run(
    adapter_factory: AdapterFactory = ReferenceKernel,
    bounds: Bounds = MBT_BOUNDS,
    *,
    examples: int = 20,
    steps: int = 15,
    seed: int | None = None,
    coverage: Coverage | None = None,
    supported: frozenset[str] | None = None,
    progress: Callable[[RunResult], None] | None = None,
    derandomize: bool = False,
    quiet: float = QUIET,
) -> RunResult:
    """Run the model-based test; a failure is caught and returned, not raised."""
    result = RunResult()
    began = time.monotonic()

    def record(program: Program) -> None:
        result.examples += 1
        result.steps += len(program.actions)
        result.programs.append(program)
        if progress is not None:
            progress(result)

    pool = FrontendPool()  # one zygote for every example: forks are cheap, starts are not
    machine = make_machine(
        adapter_factory, bounds, coverage=coverage, supported=supported, on_program=record,
        quiet=quiet, pool=pool,
    )
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
    )
    try:
        run_state_machine_as_test(machine, settings=config)  # type: ignore[no-untyped-call, unused-ignore]
    except BaseException as e:  # the failure, after shrinking
        if isinstance(e, KeyboardInterrupt):
            raise
        result.failure = e
    finally:
        pool.close()
    result.seconds = time.monotonic() - began
    return result


def program_as_test(
    actions: list[Action],
    bounds: Bounds = MBT_BOUNDS,
    supported: frozenset[str] | None = None,
    name: str = "test_shrunk_program",
) -> str:
    """A standalone pytest test that replays ``actions`` against the reference kernel."""
    body = "".join(f"        {a!r},\n" for a in actions)
    b = bounds
    only = "" if supported is None else f", supported={sorted(supported)!r}"
    imports = _imports(actions, [("commspec.mbt.adapter", "ReferenceKernel"),
                                 ("commspec.mbt.harness", "Harness"),
                                 ("commspec.model.system", "Bounds")])
    return f'''{imports}


def {name}() -> None:
    program = [
{body}    ]
    bounds = Bounds(frontends={b.frontends}, comms={b.comms}, requests={b.requests},
                    reconnects={b.reconnects}, faults={b.faults})
    with Harness(ReferenceKernel(), bounds{only}) as harness:
        for action in program:
            harness.apply(action)
            harness.check()
'''


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
