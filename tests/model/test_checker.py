"""The checker proves the properties on bounded configurations, and can fail.

Each broken variant changes one policy of the system model, the way a buggy
kernel or frontend would, and the checker must find it with a short
counterexample naming the property it breaks.
"""

from __future__ import annotations

import argparse

import pytest

from commspec.commands import check as check_command
from commspec.model.checker import Result, check
from commspec.model.ladder import LADDER, Rung
from commspec.model.machines import (
    FrontendCommState,
    KernelCommState,
    RequestEvent,
    RequestState,
)
from commspec.model.properties import PROPERTIES
from commspec.model.system import Bounds, Draft, SystemModel
from commspec.model.world import CloseCause, KernelComm, Target

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


class PersistentClosedOnLoss(SystemModel):
    """Closes every comm whose frontend goes, persistent or not."""

    def _policy_comm_lost(self, d: Draft, c: int) -> None:
        self._kernel_comm_closed(
            d, c, CloseCause.LOST, RequestEvent.PEER_LOST, KernelCommState.CLOSED
        )


class LateReplyDelivered(SystemModel):
    """Hands a late reply to its caller as if the request were still pending."""

    def _policy_late_reply(self, d: Draft, r: int, frontend: int | None) -> None:
        req = d.req[r]
        assert req is not None
        d.req[r] = req._replace(delivered=req.delivered + 1)


class NoDrain(SystemModel):
    """Acts on an unsubscribe without first processing the shell messages received."""

    def _policy_drain(self, d: Draft, received: tuple[int, ...]) -> None:
        return None


class AcceptedWithoutReceiver(SystemModel):
    """Lets a kernel request pend although nobody can receive it."""

    def _policy_receiver_present(self, w: object, kc: KernelComm) -> bool:
        return True


class DefaultCommKeptOnLoss(SystemModel):
    """Keeps a default comm open after its frontend went away."""

    def _policy_comm_lost(self, d: Draft, c: int) -> None:
        if d.targets[c] is Target.PERSISTENT:
            super()._policy_comm_lost(d, c)


class ForgetsUnseenClose(SystemModel):
    """Drops a comm_close for a comm it never saw instead of remembering it closed."""

    def _policy_remember_unseen_close(self) -> bool:
        return False


class DropsRequestsOnUnseenComms(SystemModel):
    """While reconciling, drops a kernel request on a comm not seen yet (the reference
    frontend's bug: only stale comms' requests were held)."""

    def _policy_held_while_reconciling(self) -> frozenset[FrontendCommState]:
        return frozenset({FrontendCommState.STALE})


class HoldsNothingWhileReconciling(SystemModel):
    """While reconciling, drops every kernel request on a comm not yet confirmed."""

    def _policy_held_while_reconciling(self) -> frozenset[FrontendCommState]:
        return frozenset()


#: the reconcile rules' broken frontends: each passes the old single default bound (no
#: reconnect: measured, 235,365 states each) and is caught at the ladder's first rung
RECONCILE_BROKEN = [
    (ForgetsUnseenClose, "reconciled_view"),
    (DropsRequestsOnUnseenComms, "nothing_waits_forever"),
    (HoldsNothingWhileReconciling, "nothing_waits_forever"),
]


@pytest.mark.parametrize(("variant", "prop"), RECONCILE_BROKEN,
                         ids=[b[0].__name__ for b in RECONCILE_BROKEN])
def test_a_broken_reconcile_rule_is_caught_at_the_reconnect_rung(
        variant: type[SystemModel], prop: str) -> None:
    rung = LADDER[0]
    assert rung.bounds.reconnects == 1
    result = check(variant(rung.bounds))
    assert result.violation is not None, f"{variant.__name__} passed the {rung.name} rung"
    assert result.violation.property == prop, result.violation
    assert len(result.violation.steps) <= 16, [s.text for s in result.violation.steps]


BROKEN = [
    (PersistentClosedOnLoss, "persistent_comm_survives"),
    (LateReplyDelivered, "reply_only_while_pending"),
    (NoDrain, "drained_reply_wins"),
    (AcceptedWithoutReceiver, "nothing_waits_forever"),
    (DefaultCommKeptOnLoss, "no_unobserved_default_comm"),
]


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

    def interrupted(model: SystemModel, progress: object = None) -> Result:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model)

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
