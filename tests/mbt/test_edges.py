"""The live-only scenarios (commspec.mbt.edges): every row they exist for is taken, their
checks can fail, and they leave nothing running behind them."""

from __future__ import annotations

import threading

import pytest

from commspec.impl.kernel import KernelConfig, KernelEndpoint
from commspec.impl.targets import Target, TargetRegistry, echo_target
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.edges import EDGES, ROWS, run_edges
from commspec.mbt.harness import Coverage, Recorder
from commspec.model.trace import TraceEvent, TraceSink


class _AnyTarget(TargetRegistry):
    """A registry that knows every target name: nothing is ever rejected."""

    def get(self, name: str) -> Target | None:
        return super().get(name) or Target(name, echo_target, persistent=False)


class AcceptsAnyTarget(ReferenceKernel):
    """Broken: a comm_open for an unknown target opens a comm instead of being rejected."""

    def make(self, sink: TraceSink) -> KernelEndpoint:
        return KernelEndpoint(
            sink=sink,
            config=KernelConfig(heartbeat=self.heartbeat, stop_linger=0.2),
            targets=_AnyTarget(),
        )


def test_every_row_is_taken() -> None:
    coverage = Coverage()
    times = run_edges(coverage)
    assert [name for name, _ in times] == [name for name, _ in EDGES]
    for name, seconds in times:
        print(f"{name:32s} {seconds:.3f} s")
    missing = [row for row in ROWS if row not in coverage.taken]
    assert not missing, "rows no scenario took:\n" + "\n".join(map(str, missing))
    # every transition taken is a declared one (the Recorder checked each as it came)
    assert set(coverage.taken) <= set(Coverage.declared())
    assert sum(seconds for _, seconds in times) < 15


def test_a_corrupted_trace_is_caught() -> None:
    """The Recorder every scenario uses refuses a transition its machine lacks."""

    def event(source: str, name: str, dest: str) -> TraceEvent:
        return TraceEvent("frontend:x", "request", "m1", source, name, dest, 0.0, "m1")

    good = Recorder()
    for e in (event("new", "sent", "pending"), event("pending", "deadline", "timed_out"),
              event("timed_out", "late_reply", "timed_out")):
        good(e)
    assert good.checker.report.deviation is None
    bad = Recorder()
    # a late reply that revives the request: no such row
    for e in (event("new", "sent", "pending"), event("pending", "deadline", "timed_out"),
              event("timed_out", "late_reply", "resolved")):
        bad(e)
    deviation = bad.checker.report.deviation
    assert deviation is not None and deviation.event.dest == "resolved"


def test_a_broken_kernel_fails_its_scenario() -> None:
    with pytest.raises(AssertionError, match="rejected_open") as failure:
        run_edges(kernel=AcceptsAnyTarget, only=["rejected_open"])
    assert "opened_by_frontend" in str(failure.value)


def test_unknown_scenario_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no such scenario"):
        run_edges(only=["nope"])


def test_nothing_is_left_running() -> None:
    before = {t.ident for t in threading.enumerate()}
    run_edges()
    with pytest.raises(AssertionError):
        run_edges(kernel=AcceptsAnyTarget, only=["rejected_open"])
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, left
