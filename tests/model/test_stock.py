"""Stock frontends in the model: what jupyter_client and JupyterLab get from a commspec
kernel, proven, and shown to be more than nothing and less than everything.

A stock frontend never names itself (no peer topic), so the kernel cannot tell which
of them left: the comms they own belong to every subscriber, and their requests end
when the last subscriber goes. Their stdin requests end sooner, per connection.
"""

from __future__ import annotations

from test_symmetry import asymmetries

from commspec.model.actions import KernelUnsubscribe
from commspec.model.explore import reach
from commspec.model.machines import RequestState, StdinRequestState
from commspec.model.system import Bounds, Step, SystemModel
from commspec.model.world import OWNER_ALL, Kind, Proc, World

TWO_STOCK = Bounds(frontends=2, comms=1, requests=1, reconnects=0, faults=1, stock=2)


def _departure_read_while_another_stays(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, KernelUnsubscribe) and any(after.kernel.peers)


def test_a_stock_frontends_comm_request_waits_while_another_stays() -> None:
    """The issue's scenario: A (stock) leaves while B stays; the kernel's request on A's
    comm is still pending: the exemption of nothing_waits_forever is not vacuous."""
    def wanted(before: World, step: Step, after: World) -> bool:
        return _departure_read_while_another_stays(before, step, after) and any(
            r is not None and r.kind is Kind.KERNEL_TO_FRONTEND
            and r.state is RequestState.PENDING
            and after.kernel.comms[r.comm].owner == OWNER_ALL
            and after.frontends[step.action.frontend].proc is Proc.DEAD  # type: ignore[attr-defined]
            for r in after.requests)
    assert reach(SystemModel(TWO_STOCK), wanted) is not None


def test_a_stock_frontends_stdin_request_ends_when_it_leaves() -> None:
    def wanted(before: World, step: Step, after: World) -> bool:
        return _departure_read_while_another_stays(before, step, after) and any(
            old is not None and old.kind is Kind.STDIN
            and old.state is StdinRequestState.PENDING
            and new is not None and new.state is StdinRequestState.UNREACHABLE
            for old, new in zip(before.requests, after.requests, strict=True))
    assert reach(SystemModel(TWO_STOCK), wanted) is not None


def test_stock_and_commspec_frontends_side_by_side_commute_with_renumbering() -> None:
    assert asymmetries(SystemModel(Bounds(frontends=2, comms=1, requests=0, faults=1,
                                          stock=1))) == []


def test_more_stock_frontends_than_frontends_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="--stock must be at most --frontends"):
        Bounds(frontends=1, stock=2)
