"""The checker proves the properties on bounded configurations, and can fail.

Each broken variant changes one policy of the system model, the way a buggy
kernel or frontend would, and the checker must find it with a short
counterexample naming the property it breaks.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from pathlib import Path
from xml.etree import ElementTree

import pytest

from commspec.chart import ARROWS
from commspec.commands import check as check_command
from commspec.model.broken import (
    DETACHED_BROKEN,
    KERNEL_BROKEN,
    NO_REQUESTS_RECONNECT,
    RECONCILE_BROKEN,
    SESSION_BROKEN,
    DropsRequestsOnUnseenComms,
    NoDrain,
)
from commspec.model.checker import MEMORY_EVERY, Result, check
from commspec.model.ladder import LADDER, Rung
from commspec.model.machines import (
    RequestState,
)
from commspec.model.properties import PROPERTIES
from commspec.model.system import Bounds, SystemModel

# --------------------------------------------------------------------------
# the real specification holds
# --------------------------------------------------------------------------


def test_default_bound_holds_every_property() -> None:
    result = check(SystemModel(Bounds()))
    assert result.ok, result.violation
    assert result.stats.states >= 100_000
    assert result.held == [p.name for p in PROPERTIES]


@pytest.mark.parametrize(
    "bounds",
    [
        Bounds(frontends=1, comms=1, requests=1, reconnects=1, faults=1),
        Bounds(frontends=3, comms=0, requests=1, reconnects=0, faults=1),
        Bounds(frontends=1, comms=2, requests=1, reconnects=0, faults=1),
    ],
    ids=["reconnect", "three-frontends-stdin", "two-comms"],
)
def test_other_bounds_hold(bounds: Bounds) -> None:
    result = check(SystemModel(bounds))
    assert result.ok, result.violation


# --------------------------------------------------------------------------
# broken variants: each must be caught, with a short counterexample
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "prop"), list(RECONCILE_BROKEN),
                         ids=[b[0].__name__ for b in RECONCILE_BROKEN])
def test_a_broken_reconcile_rule_is_caught_at_the_reconnect_rung(
        variant: type[SystemModel], prop: str) -> None:
    rung = LADDER[0]
    assert rung.bounds.reconnects == 1
    result = check(variant(rung.bounds))
    assert result.violation is not None, f"{variant.__name__} passed the {rung.name} rung"
    assert result.violation.property == prop, result.violation
    assert len(result.violation.steps) <= 16, [s.text for s in result.violation.steps]


@pytest.mark.parametrize(("variant", "prop"), list(SESSION_BROKEN),
                         ids=[b[0].__name__ for b in SESSION_BROKEN])
def test_a_reconcile_that_never_finishes_is_caught_with_nothing_else_waiting(
        variant: type[SystemModel], prop: str) -> None:
    assert check(SystemModel(NO_REQUESTS_RECONNECT)).ok
    result = check(variant(NO_REQUESTS_RECONNECT))
    assert result.violation is not None and result.violation.property == prop, result.violation
    assert len(result.violation.steps) <= 12, [s.text for s in result.violation.steps]


@pytest.mark.parametrize(("variant", "prop", "rung"), list(DETACHED_BROKEN),
                         ids=[b[0].__name__ for b in DETACHED_BROKEN])
def test_a_broken_rule_for_detached_comms_is_caught_at_its_rung(
        variant: type[SystemModel], prop: str, rung: str) -> None:
    bounds = next(r.bounds for r in LADDER if r.name == rung)
    result = check(variant(bounds))
    assert result.violation is not None and result.violation.property == prop, result.violation
    assert len(result.violation.steps) <= 14, [s.text for s in result.violation.steps]


BROKEN = list(KERNEL_BROKEN)


@pytest.mark.parametrize(("variant", "prop"), BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_variant_is_caught(variant: type[SystemModel], prop: str) -> None:
    result: Result = check(variant(Bounds()))
    assert result.violation is not None, f"{variant.__name__} passed the checker"
    assert result.violation.property == prop, result.violation
    assert 3 <= len(result.violation.steps) <= 16, [s.text for s in result.violation.steps]


def test_check_command_reports_a_counterexample_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(check_command, "SystemModel", NoDrain)
    args = argparse.Namespace(frontends=2, comms=1, requests=1, reconnects=0, faults=1, quiet=True)
    assert check_command.run(args) == 1
    out = capsys.readouterr().out
    assert "VIOLATED  drained_reply_wins" in out
    assert "shortest counterexample" in out
    assert "    1. frontend 0 starts" in out


TINY = Bounds(frontends=1, comms=1, requests=1, reconnects=0, faults=1)
TINY_RECONNECT = Bounds(frontends=1, comms=1, requests=1, reconnects=1, faults=1)
NO_BOUNDS = argparse.Namespace(frontends=None, comms=None, requests=None, reconnects=None,
                               faults=None, quiet=True)


def test_check_command_runs_the_ladder_and_stops_at_the_first_failing_rung(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ladder = (Rung("tiny", TINY, ""), Rung("tiny, reconnect", TINY_RECONNECT, ""),
              Rung("never reached", Bounds(), ""))
    monkeypatch.setattr(check_command, "LADDER", ladder)
    monkeypatch.setattr(check_command, "SystemModel", DropsRequestsOnUnseenComms)
    assert check_command.run(NO_BOUNDS) == 1
    out = capsys.readouterr().out
    assert "rung 1/3 tiny:" in out and "rung 2/3 tiny, reconnect:" in out
    assert "rung 3/3" not in out, "the run ends at the first failing rung"
    assert "VIOLATED  nothing_waits_forever" in out and "shortest counterexample" in out
    summary = out[out.index("\nrung "):]
    assert "held" in summary and "VIOLATED nothing_waits_forever" in summary


def test_check_command_holds_on_a_whole_ladder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(check_command, "LADDER", (Rung("tiny", TINY, ""),
                                                  Rung("tiny, reconnect", TINY_RECONNECT, "")))
    assert check_command.run(NO_BOUNDS) == 0
    assert "OK: every property holds on all 2 rungs of the ladder" in capsys.readouterr().out


def test_an_interrupted_check_prints_what_it_explored(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = check_command.check
    calls: list[int] = []

    def interrupted(model: SystemModel, progress: object = None, **limits: float) -> Result:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, **limits)

    monkeypatch.setattr(check_command, "LADDER", (Rung("tiny", TINY, ""),
                                                  Rung("tiny, reconnect", TINY_RECONNECT, "")))
    monkeypatch.setattr(check_command, "check", interrupted)
    assert check_command.run(NO_BOUNDS) == 130
    out = capsys.readouterr().out
    assert "INTERRUPTED" in out and "(interrupted)" in out
    assert out.count("held") >= 1, "the finished rung is in the summary"


def test_check_command_holds_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(frontends=1, comms=1, requests=1, reconnects=1, faults=1, quiet=True)
    assert check_command.run(args) == 0
    out = capsys.readouterr().out
    assert "OK: every property holds" in out
    for p in PROPERTIES:
        assert f"held  {p.name}" in out


@pytest.mark.parametrize("bad", [{"frontends": 0}, {"requests": -1}])
def test_check_command_refuses_bad_bounds(
    bad: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    values = {
        "frontends": 2,
        "comms": 1,
        "requests": 1,
        "reconnects": 0,
        "faults": 1,
        "quiet": True,
    } | bad
    assert check_command.run(argparse.Namespace(**values)) == 2
    assert "commspec check: --" in capsys.readouterr().err


def test_request_states_are_the_machine_states() -> None:
    # The model stores machine states, not copies of them.
    assert RequestState.PENDING.value == "pending"


def test_check_command_draws_the_counterexample(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "counterexample.svg"
    monkeypatch.setattr(check_command, "SystemModel", NoDrain)
    args = argparse.Namespace(frontends=2, comms=1, requests=1, reconnects=0, faults=1,
                              quiet=True, chart=chart)
    assert check_command.run(args) == 1
    assert f"chart of the counterexample: {chart}" in capsys.readouterr().out
    steps = check(NoDrain(Bounds())).violation.steps  # type: ignore[union-attr]
    svg = ElementTree.parse(chart).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    lifelines = svg.findall(f"{ns}line[@class='lifeline']")
    messages = svg.findall(f"{ns}line[@class='message']")
    texts = [t.text for t in svg.findall(f"{ns}text[@class='step']")]
    assert len(lifelines) == 3, "the kernel and two frontends"
    assert len(messages) == sum(type(s.action) in ARROWS for s in steps)
    assert texts == [f"{n}. {s.text}" for n, s in enumerate(steps, 1)]
    kernel_x = lifelines[0].get("x1")
    # the kernel's stdin request reaches the frontend: an arrow on stdin, from the kernel
    asked = next(n for n, s in enumerate(steps) if "receives stdin request" in s.text)
    arrow = messages[sum(type(s.action) in ARROWS for s in steps[:asked])]
    assert arrow.get("data-channel") == "stdin" and arrow.get("x1") == kernel_x
    assert arrow.get("x2") != kernel_x


def test_nothing_is_charted_when_every_property_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "none.svg"
    args = argparse.Namespace(frontends=1, comms=1, requests=1, reconnects=0, faults=1,
                              quiet=True, chart=chart)
    assert check_command.run(args) == 0
    assert not chart.exists()


def test_the_race_charts_are_checked_for_drift(tmp_path: Path) -> None:
    from commspec import chart

    assert chart.write_races(tmp_path)
    assert chart.stale_races(tmp_path) == []
    drawn = tmp_path / "race-drain.svg"
    drawn.write_text(drawn.read_text().replace("drained_reply_wins", "something else"))
    assert chart.stale_races(tmp_path) == ["race-drain"]


# --------------------------------------------------------------------------
# the ladder on several processes
# --------------------------------------------------------------------------

PARALLEL = argparse.Namespace(**vars(NO_BOUNDS) | {"jobs": 2})


def test_a_parallel_ladder_reports_like_a_sequential_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ladder = (Rung("tiny", TINY, ""), Rung("tiny, reconnect", TINY_RECONNECT, ""),
              Rung("never reported", Bounds(frontends=1, reconnects=1, requests=2), ""))
    monkeypatch.setattr(check_command, "LADDER", ladder)
    monkeypatch.setattr(check_command, "SystemModel", DropsRequestsOnUnseenComms)
    assert check_command.run(NO_BOUNDS) == 1
    sequential = capsys.readouterr().out
    assert check_command.run(PARALLEL) == 1
    parallel = capsys.readouterr().out
    assert "rung 3/3" not in parallel, "the run ends at the first failing rung"
    assert "2 rungs at a time" in parallel
    # the same report, rung by rung, counterexample included, but for the timings
    def report(out: str) -> list[str]:
        body = out[:out.index("\nrung ")]
        return [line for line in body.splitlines() if not line.startswith("explored ")]
    assert report(parallel) == report(sequential)
    assert any("shortest counterexample" in line for line in report(parallel))
    assert multiprocessing.active_children() == [], "the run ends its workers"


def test_a_parallel_ladder_says_when_a_worker_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check_command, "LADDER", (Rung("tiny", TINY, ""),
                                                  Rung("dies", TINY_RECONNECT, "")))

    def dies(model: SystemModel, progress: object = None, **limits: float) -> Result:
        os._exit(3)

    monkeypatch.setattr(check_command, "check", dies)
    with pytest.raises(RuntimeError, match=r"ended without a result.*exit code 3"):
        check_command.run(PARALLEL)
    assert multiprocessing.active_children() == []


def test_a_bound_too_large_for_the_memory_stops_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a limit this process is already past: the check stops at its first look
    args = argparse.Namespace(frontends=2, comms=1, requests=1, reconnects=0, faults=1,
                              quiet=True, max_memory=1.0)
    assert check_command.run(args) == 3
    out = capsys.readouterr().out
    assert "TOO LARGE for this machine: stopped at" in out
    assert "the whole space is larger" in out and "nothing is proven" in out
    result = check(SystemModel(Bounds()), memory_limit_mib=1.0)
    assert not result.ok and result.violation is None and result.too_large is not None
    assert result.stats.states > MEMORY_EVERY, "it explored before it looked"
    assert result.stats.frontier > 0
