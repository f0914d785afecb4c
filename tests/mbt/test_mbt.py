"""The model-based test: Hypothesis drives the system model and the live reference kernel.

- The reference kernel matches the model on every program Hypothesis runs (two
  frontends, and one frontend).
- Coverage: the declared transitions the live system took are reported; a
  regression in what the default run reaches fails.
- It can fail: broken variants of the kernel are caught and shrunk to short programs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mbt_variants import VARIANTS

from commspec.cli import main
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.harness import (
    MBT_BOUNDS,
    Coverage,
    Harness,
    MbtFailure,
)
from commspec.mbt.machine import RunResult, program_as_test, run
from commspec.mbt.scenarios import DIRECTED, run_directed
from commspec.model.system import Bounds

ONE_FRONTEND = Bounds(frontends=1, comms=2, requests=2, reconnects=0, faults=1)
SMALL = Bounds(frontends=1, comms=2, requests=1, reconnects=0, faults=1)
#: the rules the broken variants are hunted with: comms, kernel requests, crashes and the
#: races whose order the test decides (``together`` is left to the wire's luck, so a
#: failure it finds may not replay, and shrinking replays). Fewer rules, shorter hunts:
#: the default run above exercises the rest.
HUNT = frozenset({"start", "frontend_open", "crash", "kernel_request", "race_iopub_first",
                  "race_queued"})


def _explain(result: RunResult) -> str:
    if result.ok or result.last is None:
        return ""
    return f"{result.failure}\n\nreplay with:\n{program_as_test(result.last.actions)}"


@pytest.fixture(scope="module")
def default_run() -> tuple[list[RunResult], Coverage]:
    coverage = Coverage()
    two = run(ReferenceKernel, MBT_BOUNDS, examples=150, steps=40, coverage=coverage,
              derandomize=True)
    one = run(ReferenceKernel, ONE_FRONTEND, examples=60, steps=30, coverage=coverage,
              derandomize=True)
    directed = run_directed(coverage=coverage)
    assert len(directed) == len(DIRECTED)
    return [two, one], coverage


def test_reference_kernel_matches_the_model(default_run: tuple[list[RunResult], Coverage]) -> None:
    results, _ = default_run
    for result in results:
        assert result.ok, _explain(result)
        assert result.examples >= 20 and result.steps >= 3 * result.examples // 2


#: the transitions the default run reaches today: losing one is a regression
EXPECTED = {
    ("kernel_comm", "new", "opened_by_frontend", "open"),
    ("kernel_comm", "new", "opened_by_kernel", "open"),
    ("kernel_comm", "open", "closed_by_frontend", "closed"),
    ("kernel_comm", "open", "closed_by_kernel", "closed"),
    ("kernel_comm", "open", "frontend_lost", "detached"),
    ("kernel_comm", "open", "frontend_lost", "closed"),
    ("kernel_comm", "open", "kernel_shutdown", "closed"),
    ("kernel_comm", "detached", "closed_by_kernel", "closed"),
    ("kernel_comm", "detached", "kernel_shutdown", "closed"),
    ("frontend_comm", "new", "opened_by_frontend", "open"),
    ("frontend_comm", "new", "closed_by_kernel", "closed"),
    ("frontend_comm", "new", "opened_by_kernel", "open"),
    ("frontend_comm", "open", "closed_by_frontend", "closed"),
    ("frontend_comm", "open", "closed_by_kernel", "closed"),
    ("frontend_comm", "open", "session_closed", "closed"),
    ("request", "new", "sent", "pending"),
    ("request", "new", "no_receiver", "undeliverable"),
    ("request", "pending", "result", "resolved"),
    ("presence", "never_subscribed", "subscribe", "connected"),
    ("presence", "connected", "subscribe", "connected"),
    ("presence", "connected", "unsubscribe", "connected"),
    ("presence", "connected", "unsubscribe", "disconnected"),
    ("presence", "disconnected", "subscribe", "connected"),
    ("session", "connecting", "welcomed", "ready"),
    ("session", "ready", "link_lost", "lost"),
    ("session", "ready", "close", "closed"),
    ("session", "lost", "close", "closed"),
    ("session", "connecting", "close", "closed"),
    ("stdin_request", "new", "sent", "pending"),
    ("stdin_request", "new", "host_unreachable", "unreachable"),
    ("stdin_request", "pending", "reply", "replied"),
}


def test_coverage_of_the_default_run(default_run: tuple[list[RunResult], Coverage]) -> None:
    _, coverage = default_run
    taken = set(coverage.taken)
    lost = sorted(EXPECTED - taken)
    report = "\n".join(
        f"  {m:<14} {taken_n:>3} / {declared}" for m, (taken_n, declared)
        in coverage.per_machine().items()
    )
    assert not lost, f"the default run no longer takes {lost}\ncoverage:\n{report}"


@pytest.mark.skip(
    reason="unfinished: full transition coverage needs rules the harness lacks yet: "
    "freeze (SIGSTOP) and reconnect (stale comms, reconciling), the 'IOPub first, reply "
    "later on shell' race rule (late replies, invalidated), deadlines and no_reply (not "
    "model actions), and rejected opens; `commspec mbt` lists the transitions not taken"
)
def test_every_declared_transition_is_taken(
    default_run: tuple[list[RunResult], Coverage],
) -> None:
    _, coverage = default_run
    missing = coverage.uncovered()
    assert not missing, "not taken:\n" + "\n".join(map(str, missing))


def test_shrunk_program_is_a_runnable_test(tmp_path: Path) -> None:
    actions = [("start", 0), ("frontend_open", 0, 0, "persistent"),
               ("frontend_request", 0, 0, 0), ("crash", 0)]
    source = program_as_test(actions, MBT_BOUNDS)
    namespace: dict[str, object] = {}
    exec(compile(source, str(tmp_path / "test_replay.py"), "exec"), namespace)
    replay = namespace["test_shrunk_program"]
    assert callable(replay)
    replay()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_variant_is_caught_and_shrunk(variant: str) -> None:
    result = run(VARIANTS[variant], SMALL, examples=300, steps=12, derandomize=True, quiet=0.3,
                 supported=HUNT)
    assert not result.ok, f"{variant} was not caught"
    assert isinstance(result.failure, MbtFailure), repr(result.failure)
    assert result.last is not None and result.last.failure is not None
    assert len(result.last.actions) <= 6, result.last.actions


def test_teardown_leaves_nothing_behind_even_after_a_failure() -> None:
    before = {t.ident for t in threading.enumerate()}
    harness = Harness(VARIANTS["ignores_unsubscribes"](), SMALL, quiet=0.3).start()
    connection_file = harness.adapter.connection_file
    try:
        harness.apply(("start", 0))
        harness.apply(("frontend_open", 0, 0, "default"))
        with pytest.raises(MbtFailure):
            harness.apply(("crash", 0))
    finally:
        harness.close()
    harness.close()  # twice is fine
    assert not connection_file.exists()
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, left


def test_cli_mbt_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mbt", "--examples", "4", "--steps", "6", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "live steps/s" in out and "transitions taken" in out
    for machine in ("kernel_comm", "frontend_comm", "request", "presence", "session"):
        assert machine in out


def test_cli_mbt_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mbt", "--examples", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err
