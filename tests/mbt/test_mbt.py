"""The model-based test: Hypothesis drives the system model and the reference kernel.

Twice: in-process (the protocol cores on the simulated network, the delivery
orders drawn by Hypothesis; fast, deterministic) and live (the kernel over
ZeroMQ, frontends in processes of their own, SIGKILL and SIGSTOP for real).

- The reference kernel matches the model on every program Hypothesis runs (two
  frontends, and one frontend), on each system.
- Coverage: each system's default run (random programs, directed programs, the
  scenarios for the rows no model action takes) takes every declared transition of
  every machine, or fails listing the rows never taken.
- It can fail: broken variants of the kernel are caught and shrunk to short
  programs, in-process and live.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mbt_variants import CAUGHT_AT, VARIANTS, replay_printed

from commspec.cli import main
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.edges import EDGES, run_edges
from commspec.mbt.harness import MBT_BOUNDS, Harness, MbtFailure
from commspec.mbt.inprocess import InProcessSystem
from commspec.mbt.live import LiveSystem
from commspec.mbt.machine import Program, RunResult, StepChooser, program_as_test, run
from commspec.mbt.race import Race, RaceOrder
from commspec.mbt.recorder import Coverage
from commspec.mbt.scenarios import DIRECTED, directed_verdicts, run_directed
from commspec.mbt.session_edges import SESSION_EDGES, run_session_edges
from commspec.mbt.simulated_edges import SIMULATED_EDGES, run_simulated_edges
from commspec.model.actions import Action, Crash, FrontendOpen, FrontendRequest, Start
from commspec.model.system import Bounds
from commspec.model.world import Target

ONE_FRONTEND = Bounds(frontends=1, comms=2, requests=2, reconnects=1, faults=2)
SMALL = Bounds(frontends=1, comms=2, requests=1, reconnects=0, faults=1)
#: the rules the broken variants are hunted with: comms, kernel requests, crashes and the
#: races whose order the test decides (``together`` is left to the wire's luck, so a
#: failure it finds may not replay, and shrinking replays). Fewer rules, shorter hunts:
#: the default run above exercises the rest.
HUNT = frozenset({"start", "frontend_open", "crash", "kernel_request", "race_iopub_first",
                  "race_queued"})


def _explain(result: RunResult, in_process: bool = False) -> str:
    shrunk = result.shrunk
    if result.ok or shrunk is None:
        return ""
    replay = program_as_test(shrunk.actions, choices=shrunk.choices if in_process else None)
    return (f"{result.failure}\n\nthe shrunk program failed with:\n{shrunk.failure}"
            f"\n\nreplay with:\n{replay}")


DefaultRun = tuple[list[RunResult], Coverage]


@pytest.fixture(scope="module")
def in_process_run() -> DefaultRun:
    """In-process: random programs (two frontends; one frontend that may reconnect),
    the directed programs and the simulated scenarios, all counted in one Coverage."""
    coverage = Coverage()
    two = run(ReferenceKernel, MBT_BOUNDS, in_process=True, examples=300, steps=30,
              coverage=coverage, derandomize=True)
    one = run(ReferenceKernel, ONE_FRONTEND, in_process=True, examples=100, steps=25,
              coverage=coverage, derandomize=True)
    assert len(run_directed(coverage=coverage, in_process=True)) == len(DIRECTED)
    assert len(run_simulated_edges(coverage)) == len(SIMULATED_EDGES)
    return [two, one], coverage


@pytest.fixture(scope="module")
def live_run() -> DefaultRun:
    """Live: the same, over ZeroMQ and processes, with the live scenarios."""
    coverage = Coverage()
    two = run(ReferenceKernel, MBT_BOUNDS, examples=100, steps=30, coverage=coverage,
              derandomize=True)
    one = run(ReferenceKernel, ONE_FRONTEND, examples=40, steps=25, coverage=coverage,
              derandomize=True)
    assert len(run_directed(coverage=coverage)) == len(DIRECTED)
    assert len(run_edges(coverage)) == len(EDGES)
    assert len(run_session_edges(coverage)) == len(SESSION_EDGES)
    return [two, one], coverage


def test_reference_kernel_matches_the_model_in_process(in_process_run: DefaultRun) -> None:
    results, _ = in_process_run
    for result in results:
        assert result.ok, _explain(result, in_process=True)
        assert result.examples >= 50 and result.steps > result.examples


def test_reference_kernel_matches_the_model_live(live_run: DefaultRun) -> None:
    results, _ = live_run
    for result in results:
        assert result.ok, _explain(result)
        assert result.examples >= 20 and result.steps > result.examples


def _assert_covered(coverage: Coverage) -> None:
    missing = coverage.uncovered()
    report = "\n".join(
        f"  {m:<14} {taken:>3} / {declared}"
        for m, (taken, declared) in coverage.per_machine().items()
    )
    assert not missing, (
        "not taken:\n" + "\n".join(f"  {m}: {s} --{e}--> {d}" for m, s, e, d in missing)
        + f"\ncoverage:\n{report}"
    )


def test_every_declared_transition_is_taken_in_process(in_process_run: DefaultRun) -> None:
    _assert_covered(in_process_run[1])


def test_every_declared_transition_is_taken_live(live_run: DefaultRun) -> None:
    _assert_covered(live_run[1])


def test_the_coverage_check_fails_when_a_transition_is_never_taken() -> None:
    coverage = Coverage()
    for row in Coverage.declared()[1:]:
        coverage.add(row)
    assert coverage.uncovered() == [Coverage.declared()[0]]


def test_shrunk_program_is_a_runnable_test(tmp_path: Path) -> None:
    actions: list[Action] = [Start(0), FrontendOpen(0, 0, Target.PERSISTENT),
                             FrontendRequest(0, 0, 0), Crash(0)]
    source = program_as_test(actions, MBT_BOUNDS)
    namespace: dict[str, object] = {}
    exec(compile(source, str(tmp_path / "test_replay.py"), "exec"), namespace)
    replay = namespace["test_shrunk_program"]
    assert callable(replay)
    replay()


def test_a_failure_that_does_not_replay_still_shows_the_program_that_failed() -> None:
    # Hypothesis's last replay passed (the failure was flaky): the program to print is
    # the last one that failed, not the last one run.
    failed = Program([Start(0), Crash(0)], 0.1, "MbtFailure: it broke")
    result = RunResult(failure=RuntimeError("flaky"),
                       programs=[Program([Start(1)], 0.1), failed,
                                 Program([Start(0)], 0.1)])
    assert result.shrunk is failed
    assert "MbtFailure: it broke" in _explain(result)
    assert RunResult(programs=[Program([Start(0)], 0.1)]).shrunk is None


@pytest.mark.parametrize("system", ["in-process", "live"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_variant_is_caught_and_shrunk(variant: str, system: str) -> None:
    result = run(VARIANTS[variant], SMALL, in_process=system == "in-process", examples=300,
                 steps=6, derandomize=True, quiet=0.3, supported=HUNT)
    assert not result.ok, f"{variant} was not caught"
    assert isinstance(result.failure, MbtFailure), repr(result.failure)
    shrunk = result.shrunk
    assert shrunk is not None
    program = shrunk.actions
    assert len(program) <= 6, program
    # caught where the variant breaks the spec, not on some unrelated step
    last = program[-1]
    caught = (last.name, last.order.value) if isinstance(last, Race) else (last.name,)
    assert caught in CAUGHT_AT[variant], (program, shrunk.failure)


def test_an_in_process_failure_replays_from_its_printed_test(tmp_path: Path) -> None:
    # The printed test carries the delivery choices of each step: it fails against the
    # variant as the run did, and passes against the reference kernel.
    variant = VARIANTS["no_drain_before_invalidating"]
    result = run(variant, SMALL, in_process=True, examples=300, steps=6, derandomize=True,
                 supported=HUNT)
    shrunk = result.shrunk
    assert shrunk is not None and len(shrunk.choices) == len(shrunk.actions)
    for kernel, fails in (("Variant", True), ("ReferenceKernel", False)):
        source = program_as_test(shrunk.actions, SMALL, choices=shrunk.choices, kernel=kernel)
        replay_printed(source, variant, tmp_path, fails=fails)


def test_the_in_process_system_is_deterministic() -> None:
    # Same program, same choices: the same trace, event for event (its clock included).
    program: list[Action] = [Start(0), Start(1), FrontendOpen(0, 0, Target.PERSISTENT),
                             FrontendRequest(0, 0, 0), Crash(0)]
    traces = []
    for _ in range(2):
        system = InProcessSystem()
        with Harness(system, MBT_BOUNDS) as harness:
            for i, action in enumerate(program):
                harness.apply(action, StepChooser.replaying([i % 3, 1, 0, 2]))
        traces.append([e.to_json() for e in system.recorder.events])
    assert traces[0] == traces[1] and len(traces[0]) >= 15


def test_teardown_leaves_nothing_behind_even_after_a_failure() -> None:
    before = {t.ident for t in threading.enumerate()}
    system = LiveSystem(VARIANTS["ignores_unsubscribes"](), quiet=0.3)
    harness = Harness(system, MBT_BOUNDS).start()
    connection_file = system.adapter.connection_file
    pids = [system.zygote_pid]
    try:
        harness.apply(Start(0))
        harness.apply(Start(1))
        harness.apply(FrontendOpen(0, 0, Target.DEFAULT))
        for process in system.processes:
            assert process is not None
            pids.append(process.pid)
        system.processes[1].freeze()  # type: ignore[union-attr]  # a stopped one too
        with pytest.raises(MbtFailure):
            harness.apply(Crash(0))
    finally:
        harness.close()
    harness.close()  # twice is fine
    assert not connection_file.exists()
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, left
    for pid in pids:
        assert pid is not None and not Path(f"/proc/{pid}").exists(), f"{pid} is still there"


@pytest.mark.parametrize(("flags", "says"), [
    ([], "(in-process)"), (["--in-process"], "(in-process)"), (["--live"], "(live)"),
])
def test_cli_mbt_runs_and_reports(capsys: pytest.CaptureFixture[str], flags: list[str],
                                  says: str) -> None:
    assert main(["mbt", "--examples", "4", "--steps", "6", "--seed", "7", *flags]) == 0
    out = capsys.readouterr().out
    assert says in out and "steps/s" in out and "transitions taken" in out
    for machine in ("kernel_comm", "frontend_comm", "request", "presence", "session"):
        assert machine in out


def test_cli_mbt_refuses_both_systems(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["mbt", "--live", "--in-process"])
    assert exited.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_cli_mbt_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mbt", "--examples", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err


class WithoutHold(ReferenceKernel):
    """The reference kernel, saying what a kernel in another process says in its first
    ``state`` when it cannot hold its inbound queues (``hold_inbound`` false), while it
    still has the method (as ExternalKernel always has)."""

    def supports_hold_inbound(self) -> bool:
        return False


QUEUED_RACE = [d for d in DIRECTED
               if any(isinstance(a, Race) and a.order is RaceOrder.QUEUED for a in d[2])]


@pytest.mark.parametrize(("kernel", "status"), [(ReferenceKernel, "passed"),
                                                (WithoutHold, "skipped")])
def test_the_queued_race_is_skipped_when_the_started_kernel_cannot_hold_its_queues(
        kernel: type[ReferenceKernel], status: str) -> None:
    """Only the running kernel can tell (ExternalKernel asks its control socket at
    start): the directed program is skipped then, not failed for a race the harness
    then never offers."""
    assert len(QUEUED_RACE) == 1
    [verdict] = directed_verdicts(kernel, programs=QUEUED_RACE)
    assert verdict.status == status, verdict
    if status == "skipped":
        assert "hold_inbound" in verdict.detail, verdict
