"""PendingRequests and StdinRequests: every outcome, late and unknown replies, deadlines."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest

from commspec.impl.core.requests import PendingRequests, ReplyOutcome, StdinRequests
from commspec.impl.errors import (
    CommClosed,
    Disconnected,
    Interrupted,
    NoReply,
    RemoteError,
    RequestFailed,
    TimedOut,
    Undeliverable,
    Unreachable,
    failure_for,
)
from commspec.impl.tracing import ListSink, match
from commspec.model.machines import (
    RequestEvent,
    RequestState,
    StdinRequestEvent,
    StdinRequestState,
)


def outcome(future: Future[Any]) -> Any:
    assert future.done(), "the future should have ended already"
    error = future.exception(timeout=0)
    return error if error is not None else future.result(timeout=0)


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def requests(sink: ListSink) -> PendingRequests:
    return PendingRequests("kernel", sink, remember=100)


def test_result_resolves(requests: PendingRequests, sink: ListSink) -> None:
    fut = requests.start("m1", "c1", "echo", receiver_present=True)
    assert not fut.done() and requests.pending_count == 1
    assert requests.reply("m1", {"jsonrpc": "2.0", "id": "m1", "result": [1, 2]}) \
        is ReplyOutcome.RESOLVED
    assert outcome(fut) == [1, 2]
    assert requests.pending_count == 0
    assert [(e.event, e.dest) for e in sink.events] == [("sent", "pending"), ("result", "resolved")]


def test_error_reply_is_remote_error(requests: PendingRequests) -> None:
    fut = requests.start("m1", "c1", "nope", receiver_present=True)
    assert requests.reply("m1", {"error": {"code": -32601, "message": "no such method"}}) \
        is ReplyOutcome.ERRORED
    error = outcome(fut)
    assert isinstance(error, RemoteError)
    assert (error.code, error.message, error.state, error.method, error.comm_id) == (
        -32601, "no such method", "errored", "nope", "c1")


def test_no_receiver_fails_at_once(requests: PendingRequests, sink: ListSink) -> None:
    fut = requests.start("m1", "c1", "echo", receiver_present=False)
    assert isinstance(outcome(fut), Undeliverable)
    assert requests.pending_count == 0
    assert sink.events[-1].dest == "undeliverable"


@pytest.mark.parametrize(("event", "kind", "state"), [
    (RequestEvent.PEER_LOST, Disconnected, "invalidated"),
    (RequestEvent.COMM_CLOSED, CommClosed, "cancelled"),
    (RequestEvent.IDLE_WITHOUT_REPLY, NoReply, "no_reply"),
])
def test_failures_by_cause(requests: PendingRequests, event: RequestEvent,
                           kind: type[RequestFailed], state: str) -> None:
    fut = requests.start("m1", "c1", "echo", receiver_present=True)
    assert requests.fail("m1", event)
    error = outcome(fut)
    assert type(error) is kind and error.state == state and error.msg_id == "m1"
    assert not requests.fail("m1", event), "an ended request cannot fail again"


def test_late_reply_is_counted_never_delivered(requests: PendingRequests, sink: ListSink) -> None:
    fut = requests.start("m1", "c1", "echo", receiver_present=True)
    requests.fail("m1", RequestEvent.PEER_LOST)
    assert requests.reply("m1", {"result": "too late"}) is ReplyOutcome.LATE
    assert isinstance(outcome(fut), Disconnected)
    assert requests.late_replies == 1
    late = sink.find(match(event="late_reply"))
    assert len(late) == 1 and late[0].source == late[0].dest == "invalidated"


def test_unknown_and_malformed_replies_change_nothing(requests: PendingRequests) -> None:
    assert requests.reply("never", {"result": 1}) is ReplyOutcome.UNKNOWN
    assert requests.unknown_replies == 1
    fut = requests.start("m1", "c1", "echo", receiver_present=True)
    assert requests.reply("m1", {"neither": 1}) is ReplyOutcome.MALFORMED
    assert requests.reply("m1", {"error": {"code": "x"}}) is ReplyOutcome.MALFORMED
    assert not fut.done() and requests.is_pending("m1")


def test_forgotten_after_remember_limit(sink: ListSink) -> None:
    requests = PendingRequests("kernel", sink, remember=2)
    for i in range(3):
        requests.start(f"m{i}", "c", "echo", receiver_present=True)
        requests.fail(f"m{i}", RequestEvent.PEER_LOST)
    assert requests.reply("m0", {"result": 1}) is ReplyOutcome.UNKNOWN  # forgotten
    assert requests.reply("m2", {"result": 1}) is ReplyOutcome.LATE


def test_deadline(requests: PendingRequests) -> None:
    now = time.monotonic()
    late = requests.start("a", "c", "echo", receiver_present=True, deadline=now + 10)
    soon = requests.start("b", "c", "echo", receiver_present=True, deadline=now + 1)
    forever = requests.start("c", "c", "echo", receiver_present=True)
    assert requests.next_deadline() == now + 1
    assert requests.expire(now) == 0
    assert requests.expire(now + 1) == 1
    assert isinstance(outcome(soon), TimedOut)
    assert requests.next_deadline() == now + 10
    requests.reply("a", {"result": "in time"})
    assert requests.next_deadline() is None, "answered requests leave the deadline heap"
    assert outcome(late) == "in time" and not forever.done()


def test_fail_comm_only_touches_that_comm(requests: PendingRequests) -> None:
    a = [requests.start(f"a{i}", "A", "echo", receiver_present=True) for i in range(3)]
    b = requests.start("b", "B", "echo", receiver_present=True)
    requests.reply("a1", {"result": 1})
    assert requests.fail_comm("A", RequestEvent.COMM_CLOSED) == 2
    assert [type(outcome(f)) for f in a] == [CommClosed, int, CommClosed]
    assert not b.done()
    assert requests.fail_comm("A", RequestEvent.COMM_CLOSED) == 0


def test_caller_cannot_cancel_a_pending_request(requests: PendingRequests) -> None:
    fut = requests.start("m", "c", "echo", receiver_present=True)
    assert not fut.cancel(), "outcomes come from the machine, not from Future.cancel"
    requests.reply("m", {"result": 1})
    assert outcome(fut) == 1


def test_fail_all_100k_is_linear() -> None:
    small, large = 10_000, 100_000
    timings = []
    for n in (small, large):
        requests = PendingRequests("kernel")
        futures = [requests.start(f"m{i}", f"c{i % 100}", "echo", receiver_present=True)
                   for i in range(n)]
        started = time.perf_counter()
        assert requests.fail_all(RequestEvent.PEER_LOST) == n
        timings.append(time.perf_counter() - started)
        assert requests.pending_count == 0
        assert all(isinstance(f.exception(timeout=0), Disconnected) for f in futures[:: n // 10])
    # O(N): ten times the requests may not cost much more than ten times the time.
    assert timings[1] < 20 * timings[0] + 0.5, timings
    assert timings[1] < 5.0, f"100k requests took {timings[1]:.2f} s to fail"


def test_failure_for_maps_every_outcome() -> None:
    for state, kind in [
        (RequestState.INVALIDATED, Disconnected), (RequestState.CANCELLED, CommClosed),
        (RequestState.TIMED_OUT, TimedOut), (RequestState.NO_REPLY, NoReply),
        (RequestState.UNDELIVERABLE, Undeliverable),
        (StdinRequestState.UNREACHABLE, Unreachable),
        (StdinRequestState.INTERRUPTED, Interrupted),
    ]:
        error = failure_for(state, msg_id="m", comm_id="c", method="echo")
        assert type(error) is kind and error.state == state.value and "m" in str(error)
    error = failure_for(RequestState.ERRORED, msg_id="m", code=-1, message="bad")
    assert isinstance(error, RemoteError) and error.code == -1
    with pytest.raises(ValueError):
        failure_for(RequestState.RESOLVED, msg_id="m")


# -- stdin ----------------------------------------------------------------------


def test_stdin_outcomes(sink: ListSink) -> None:
    stdin = StdinRequests("kernel", sink)
    unreachable = stdin.start("s0", b"x", "input_request", reached=False)
    assert isinstance(outcome(unreachable), Unreachable)
    replied = stdin.start("s1", b"x", "input_request", reached=True)
    assert stdin.reply("s1", "input_reply", {"value": "Ada"}) is ReplyOutcome.RESOLVED
    assert outcome(replied) == "Ada"
    rpc = stdin.start("s2", b"x", "rpc_request", reached=True)
    assert stdin.reply("s2", "rpc_reply", {"error": {"code": 5, "message": "no"}}) \
        is ReplyOutcome.ERRORED
    assert isinstance(outcome(rpc), RemoteError)
    lost = stdin.start("s3", b"x", "input_request", reached=True)
    other = stdin.start("s4", b"y", "input_request", reached=True)
    assert stdin.fail_peer(b"x") == 1
    assert isinstance(outcome(lost), Unreachable) and not other.done()
    assert stdin.fail_all(StdinRequestEvent.INTERRUPT) == 1
    assert isinstance(outcome(other), Interrupted)
    assert stdin.reply("s3", "input_reply", {"value": "late"}) is ReplyOutcome.LATE
    assert stdin.late_replies == 1
    assert stdin.reply("zz", "input_reply", {"value": "?"}) is ReplyOutcome.UNKNOWN
