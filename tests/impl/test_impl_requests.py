"""PendingRequests and StdinRequests: every outcome, late and unknown replies, deadlines."""

from __future__ import annotations

from typing import Any

import pytest

from commspec.impl.core.events import RequestEnded
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


class Ended:
    """Collects the RequestEnded effects the requests emit: what each request ended in."""

    def __init__(self) -> None:
        self.by_id: dict[str, RequestEnded] = {}
        self.count = 0

    def __call__(self, effect: RequestEnded) -> None:
        assert effect.msg_id not in self.by_id, f"{effect.msg_id} ended twice"
        self.by_id[effect.msg_id] = effect
        self.count += 1

    def done(self, msg_id: str) -> bool:
        return msg_id in self.by_id

    def of(self, msg_id: str) -> Any:
        assert self.done(msg_id), f"{msg_id} should have ended already"
        effect = self.by_id[msg_id]
        return effect.error if effect.error is not None else effect.result


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def ended() -> Ended:
    return Ended()


@pytest.fixture
def requests(sink: ListSink, ended: Ended) -> PendingRequests:
    return PendingRequests("kernel", ended, sink=sink, remember=100)


def test_result_resolves(requests: PendingRequests, sink: ListSink, ended: Ended) -> None:
    assert requests.start("m1", "c1", "echo", receiver_present=True)
    assert not ended.done("m1") and requests.pending_count == 1
    assert requests.reply("m1", {"jsonrpc": "2.0", "id": "m1", "result": [1, 2]}) \
        is ReplyOutcome.RESOLVED
    assert ended.of("m1") == [1, 2]
    assert requests.pending_count == 0
    assert [(e.event, e.dest) for e in sink.events] == [("sent", "pending"), ("result", "resolved")]


def test_error_reply_is_remote_error(requests: PendingRequests, ended: Ended) -> None:
    requests.start("m1", "c1", "nope", receiver_present=True)
    assert requests.reply("m1", {"error": {"code": -32601, "message": "no such method"}}) \
        is ReplyOutcome.ERRORED
    error = ended.of("m1")
    assert isinstance(error, RemoteError)
    assert (error.code, error.message, error.state, error.method, error.comm_id) == (
        -32601, "no such method", "errored", "nope", "c1")


def test_no_receiver_fails_at_once(requests: PendingRequests, sink: ListSink,
                                   ended: Ended) -> None:
    assert not requests.start("m1", "c1", "echo", receiver_present=False)
    assert isinstance(ended.of("m1"), Undeliverable)
    assert requests.pending_count == 0
    assert sink.events[-1].dest == "undeliverable"


@pytest.mark.parametrize(("event", "kind", "state"), [
    (RequestEvent.PEER_LOST, Disconnected, "invalidated"),
    (RequestEvent.COMM_CLOSED, CommClosed, "cancelled"),
    (RequestEvent.IDLE_WITHOUT_REPLY, NoReply, "no_reply"),
])
def test_failures_by_cause(requests: PendingRequests, ended: Ended, event: RequestEvent,
                           kind: type[RequestFailed], state: str) -> None:
    requests.start("m1", "c1", "echo", receiver_present=True)
    assert requests.fail("m1", event)
    error = ended.of("m1")
    assert type(error) is kind and error.state == state and error.msg_id == "m1"
    assert not requests.fail("m1", event), "an ended request cannot fail again"


def test_late_reply_is_counted_never_delivered(requests: PendingRequests, sink: ListSink,
                                               ended: Ended) -> None:
    requests.start("m1", "c1", "echo", receiver_present=True)
    requests.fail("m1", RequestEvent.PEER_LOST)
    assert requests.reply("m1", {"result": "too late"}) is ReplyOutcome.LATE
    assert isinstance(ended.of("m1"), Disconnected) and ended.count == 1
    assert requests.late_replies == 1
    late = sink.find(match(event="late_reply"))
    assert len(late) == 1 and late[0].source == late[0].dest == "invalidated"


def test_unknown_and_malformed_replies_change_nothing(requests: PendingRequests,
                                                      ended: Ended) -> None:
    assert requests.reply("never", {"result": 1}) is ReplyOutcome.UNKNOWN
    assert requests.unknown_replies == 1
    requests.start("m1", "c1", "echo", receiver_present=True)
    assert requests.reply("m1", {"neither": 1}) is ReplyOutcome.MALFORMED
    assert requests.reply("m1", {"error": {"code": "x"}}) is ReplyOutcome.MALFORMED
    assert not ended.done("m1") and requests.is_pending("m1")


def test_forgotten_after_remember_limit(sink: ListSink, ended: Ended) -> None:
    requests = PendingRequests("kernel", ended, sink=sink, remember=2)
    for i in range(3):
        requests.start(f"m{i}", "c", "echo", receiver_present=True)
        requests.fail(f"m{i}", RequestEvent.PEER_LOST)
    assert requests.reply("m0", {"result": 1}) is ReplyOutcome.UNKNOWN  # forgotten
    assert requests.reply("m2", {"result": 1}) is ReplyOutcome.LATE


def test_deadline(requests: PendingRequests, ended: Ended) -> None:
    now = 1000.0  # time is a value the caller gives: no clock is read
    requests.start("a", "c", "echo", receiver_present=True, deadline=now + 10)
    requests.start("b", "c", "echo", receiver_present=True, deadline=now + 1)
    requests.start("c", "c", "echo", receiver_present=True)
    assert requests.next_deadline() == now + 1
    assert requests.expire(now) == 0
    assert requests.expire(now + 1) == 1
    assert isinstance(ended.of("b"), TimedOut)
    assert requests.next_deadline() == now + 10
    requests.reply("a", {"result": "in time"})
    assert requests.next_deadline() is None, "answered requests leave the deadline heap"
    assert ended.of("a") == "in time" and not ended.done("c")


def test_fail_comm_only_touches_that_comm(requests: PendingRequests, ended: Ended) -> None:
    for i in range(3):
        requests.start(f"a{i}", "A", "echo", receiver_present=True)
    requests.start("b", "B", "echo", receiver_present=True)
    requests.reply("a1", {"result": 1})
    assert requests.fail_comm("A", RequestEvent.COMM_CLOSED) == 2
    assert [type(ended.of(f"a{i}")) for i in range(3)] == [CommClosed, int, CommClosed]
    assert not ended.done("b")
    assert requests.fail_comm("A", RequestEvent.COMM_CLOSED) == 0


def test_failing_many_is_one_end_each_remembering_only_the_last(sink: ListSink) -> None:
    # fail_all takes the batch path (one row lookup per state): each request still
    # ends once, in order, with its own exception; only the last `remember` stay known.
    ended = Ended()
    requests = PendingRequests("kernel", ended, remember=1_000)
    for i in range(5_000):
        requests.start(f"m{i}", f"c{i % 7}", "echo", receiver_present=True, deadline=None
                       if i % 2 else 10.0)
    assert requests.fail_all(RequestEvent.PEER_LOST) == 5_000
    assert ended.count == 5_000 and list(ended.by_id) == [f"m{i}" for i in range(5_000)]
    errors = [ended.of(f"m{i}") for i in range(5_000)]
    assert all(type(e) is Disconnected for e in errors)
    assert len({id(e) for e in errors}) == 5_000, "an exception of its own for each"
    assert requests.pending_count == 0
    assert requests.reply("m3999", {"result": 1}) is ReplyOutcome.UNKNOWN  # forgotten
    assert requests.reply("m4000", {"result": 1}) is ReplyOutcome.LATE


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


def test_stdin_outcomes(sink: ListSink, ended: Ended) -> None:
    stdin = StdinRequests("kernel", ended, sink=sink)
    assert not stdin.start("s0", b"x", "input_request", reached=False)
    assert isinstance(ended.of("s0"), Unreachable)
    stdin.start("s1", b"x", "input_request", reached=True)
    assert stdin.reply("s1", "input_reply", {"value": "Ada"}) is ReplyOutcome.RESOLVED
    assert ended.of("s1") == "Ada"
    stdin.start("s2", b"x", "rpc_request", reached=True)
    assert stdin.reply("s2", "rpc_reply", {"error": {"code": 5, "message": "no"}}) \
        is ReplyOutcome.ERRORED
    assert isinstance(ended.of("s2"), RemoteError)
    stdin.start("s3", b"x", "input_request", reached=True)
    stdin.start("s4", b"y", "input_request", reached=True)
    assert stdin.fail_peer(b"x") == 1
    assert isinstance(ended.of("s3"), Unreachable) and not ended.done("s4")
    assert stdin.fail_all(StdinRequestEvent.INTERRUPT) == 1
    assert isinstance(ended.of("s4"), Interrupted)
    assert stdin.reply("s3", "input_reply", {"value": "late"}) is ReplyOutcome.LATE
    assert stdin.late_replies == 1
    assert stdin.reply("zz", "input_reply", {"value": "?"}) is ReplyOutcome.UNKNOWN
