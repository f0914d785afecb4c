"""The system model reaches every situation the properties are about.

A property that holds because its premise never happens proves nothing, so each
scenario the specification must cover is searched for and printed as a path.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from commspec.model.actions import (
    DeliverShellReply,
    FrontendClose,
    HeartbeatTimeout,
    KernelClose,
    KernelRequest,
    KernelShell,
    KernelStdinRequest,
    KernelUnsubscribe,
    Shutdown,
)
from commspec.model.explore import reach
from commspec.model.machines import (
    FrontendCommState,
    PresenceState,
    RequestState,
    SessionState,
    StdinRequestState,
)
from commspec.model.system import Bounds, Step, SystemModel
from commspec.model.world import Kind, World

Wanted = Callable[[World, Step, World], bool]
SMALL = Bounds(frontends=2, comms=1, requests=1, reconnects=0, faults=1)
RECONNECT = Bounds(frontends=1, comms=1, requests=1, reconnects=1, faults=1)


def _ended(before: World, after: World, state: object, kind: Kind | None = None) -> bool:
    """Some request went from pending to ``state`` in this step."""
    for old, new in zip(before.requests, after.requests, strict=True):
        if (
            old is not None
            and new is not None
            and old.state in (RequestState.PENDING, StdinRequestState.PENDING)
            and new.state is state
            and (kind is None or new.kind is kind)
        ):
            return True
    return False


def reply_drained_before_disconnect(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, KernelUnsubscribe) and any(
        (r := after.requests[i]) is not None and r.state is RequestState.RESOLVED
        for i in step.drained
    )


def reply_after_disconnect_is_late(before: World, step: Step, after: World) -> bool:
    return (
        isinstance(step.action, KernelShell)
        and after.kernel.late_replies > before.kernel.late_replies
        and any(r is not None and r.state is RequestState.INVALIDATED for r in after.requests)
    )


def request_while_nobody_subscribed(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, KernelRequest) and any(
        r is not None and r.state is RequestState.UNDELIVERABLE for r in after.requests
    )


def frontend_closes_comm_under_request(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, FrontendClose) and _ended(before, after, RequestState.CANCELLED)


def kernel_closes_comm_under_request(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, KernelClose) and _ended(before, after, RequestState.CANCELLED)


def one_frontend_leaves_another_stays(before: World, step: Step, after: World) -> bool:
    return (
        isinstance(step.action, KernelUnsubscribe)
        and after.kernel.presence is PresenceState.CONNECTED
        and _ended(before, after, RequestState.INVALIDATED)
    )


def half_open_link_ends_by_heartbeat(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, HeartbeatTimeout)


def reconnect_finds_stale_comms(before: World, step: Step, after: World) -> bool:
    return any(
        fe.session is SessionState.RECONCILING and FrontendCommState.STALE in fe.comms
        for fe in after.frontends
    )


def stale_comm_closed_by_reconcile(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, DeliverShellReply) and any(
        b.comms != a.comms and FrontendCommState.CLOSED in a.comms
        for b, a in zip(before.frontends, after.frontends, strict=True)
    )


def shutdown_fails_pending(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, Shutdown) and _ended(before, after, RequestState.CANCELLED)


def stdin_to_departed_frontend(before: World, step: Step, after: World) -> bool:
    return isinstance(step.action, KernelStdinRequest) and any(
        r is not None and r.state is StdinRequestState.UNREACHABLE for r in after.requests
    )


SCENARIOS: list[tuple[Wanted, Bounds]] = [
    (reply_drained_before_disconnect, SMALL),
    (reply_after_disconnect_is_late, SMALL),
    (request_while_nobody_subscribed, SMALL),
    (frontend_closes_comm_under_request, SMALL),
    (kernel_closes_comm_under_request, SMALL),
    (one_frontend_leaves_another_stays, SMALL),
    (half_open_link_ends_by_heartbeat, SMALL),
    (reconnect_finds_stale_comms, RECONNECT),
    (stale_comm_closed_by_reconcile, RECONNECT),
    (shutdown_fails_pending, SMALL),
    (stdin_to_departed_frontend, SMALL),
]


@pytest.mark.parametrize(("wanted", "bounds"), SCENARIOS, ids=[s[0].__name__ for s in SCENARIOS])
def test_scenario_is_reachable(wanted: Wanted, bounds: Bounds) -> None:
    path = reach(SystemModel(bounds), wanted)
    assert path is not None, f"{wanted.__name__} is unreachable on {bounds}"
    print("\n".join(f"{n:>3}. {s.text}" for n, s in enumerate(path, 1)))


def test_reach_reports_an_impossible_scenario_as_none() -> None:
    # The search itself can fail: with no frontend ever able to leave, nothing is late.
    no_faults = Bounds(frontends=1, comms=1, requests=1, reconnects=0, faults=0)
    assert reach(SystemModel(no_faults), reply_after_disconnect_is_late) is None
