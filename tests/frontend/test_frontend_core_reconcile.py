"""Reconciling (SPEC.md, frontend rule 5) in the frontend's protocol core alone: inputs
in, effects out, no sockets, no threads, time given with each input.

After a reconnect, until comm_info_reply decides which comms the kernel still has,
nothing goes out on a stale comm: neither the frontend's own requests nor its answers
to the kernel's requests, which wait in order for the reply.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from commspec.impl.core.events import (
    Answer,
    Channel,
    CloseComm,
    CommClosed,
    CommData,
    Connect,
    Effect,
    Header,
    Input,
    LinkLost,
    Message,
    OpenComm,
    Received,
    Reconnect,
    RegisterTarget,
    RequestEnded,
    Send,
    Sent,
    StartRequest,
    StartTimer,
    Timer,
    TimerFired,
    TimerKind,
)
from commspec.impl.core.frontend import FrontendProtocol
from commspec.impl.core.frontend_policies import UNDECIDED, FrontendPolicies
from commspec.impl.errors import Undeliverable
from commspec.model.machines import FrontendCommState, SessionState

CS = FrontendCommState
COMM = "c1"


class Core:
    """A frontend core and its kernel's side of the wire, written by hand."""

    def __init__(self, policies: FrontendPolicies | None = None) -> None:
        numbers = itertools.count(1)
        given = {} if policies is None else {"policies": policies}
        self.core = FrontendProtocol(session_id="fe", new_msg_id=lambda: f"fe-{next(numbers)}",
                                     **given)
        self._kernel_ids = itertools.count(1)
        self.now = 0.0
        self.reconcile: Send | None = None

    def feed(self, event: Input) -> list[Effect]:
        """The effects of ``event``; a send that asks to be confirmed went out."""
        out = self.core.handle(event, self.now)
        for effect in list(out):
            if isinstance(effect, Send) and effect.confirm:
                out += self.core.handle(Sent(effect.msg_id, True), self.now)
        return out

    def message(self, msg_type: str, content: dict[str, Any],
                parent: Header | None = None) -> Message:
        msg_id = f"k-{next(self._kernel_ids)}"
        header = {"msg_id": msg_id, "msg_type": msg_type, "session": "kernel"}
        return Message(header=header, parent_header=dict(parent or {}), metadata={},
                       content=content, buffers=[], msg_id=msg_id, msg_type=msg_type)

    def iopub(self, msg_type: str, content: dict[str, Any]) -> tuple[Message, list[Effect]]:
        msg = self.message(msg_type, content)
        return msg, self.feed(Received(Channel.IOPUB, (), msg))

    def reply(self, request: Send, msg_type: str, content: dict[str, Any]) -> list[Effect]:
        parent = {"msg_id": request.msg_id, "msg_type": request.msg_type, "session": "fe"}
        return self.feed(Received(Channel.SHELL, (), self.message(msg_type, content, parent)))

    def ask(self, comm_id: str = COMM) -> tuple[Message, list[Effect]]:
        """The kernel's request ``ask`` on ``comm_id``, published on IOPub."""
        return self.iopub("comm_msg", {"comm_id": comm_id, "data": {
            "jsonrpc": "2.0", "id": "k1", "method": "ask", "params": 7}})

    def ready_with_comm(self) -> None:
        self.feed(Connect())
        self.iopub("iopub_welcome", {"subscription": ""})
        assert self.core.state is SessionState.READY
        self.feed(RegisterTarget("t"))
        self.feed(OpenComm(COMM, "t", None, False))
        assert self.core.comm_state(COMM) is CS.OPEN

    def lose_and_reconnect(self) -> None:
        self.feed(LinkLost("test"))
        assert self.core.comm_state(COMM) is CS.STALE
        self.feed(Reconnect())
        assert self.core.state is SessionState.RECONNECTING

    def welcome_again(self) -> None:
        _, out = self.iopub("iopub_welcome", {"subscription": ""})
        [self.reconcile] = sends(out, "comm_info_request")
        assert self.core.state is SessionState.RECONCILING

    def reconciling(self) -> None:
        self.ready_with_comm()
        self.lose_and_reconnect()
        self.welcome_again()

    def comm_info_reply(self, *listed: str) -> list[Effect]:
        assert self.reconcile is not None
        out = self.reply(self.reconcile, "comm_info_reply", {
            "status": "ok", "comms": {c: {"target_name": "t"} for c in listed}})
        assert self.core.state is SessionState.READY
        return out


def sends(out: list[Effect], msg_type: str) -> list[Send]:
    return [e for e in out if isinstance(e, Send) and e.msg_type == msg_type]


def handed(out: list[Effect]) -> list[CommData]:
    return [e for e in out if isinstance(e, CommData)]


def ended(out: list[Effect]) -> dict[str, RequestEnded]:
    return {e.msg_id: e for e in out if isinstance(e, RequestEnded)}


# -- the kernel's requests on undecided comms (fix 1) -----------------------------------


def test_a_kernel_request_on_a_stale_comm_waits_for_the_reply_that_confirms_it() -> None:
    """It used to be handed to the comm's handler at once, and its answer sent on a comm
    the kernel might have closed meanwhile."""
    core = Core()
    core.reconciling()
    asked, out = core.ask()
    assert handed(out) == [], "handled before comm_info_reply said whether we hold it"

    out = core.comm_info_reply(COMM)
    [data] = handed(out)
    assert data.comm_id == COMM and data.request["msg_id"] == asked["msg_id"]
    assert data.exchange is not None
    out = core.feed(Answer(data.exchange, {"jsonrpc": "2.0", "id": "k1", "result": 7}))
    [answer] = sends(out, "comm_msg")
    assert answer.parent == asked["header"]
    assert answer.content == {"comm_id": COMM,
                              "data": {"jsonrpc": "2.0", "id": "k1", "result": 7}}
    assert core.core.bad.counts() == {}


def test_a_kernel_request_on_a_stale_comm_the_reply_omits_is_dropped_as_on_a_closed_comm(
) -> None:
    """The comm closes here; the request is then one on a comm we do not hold: dropped and
    counted, as any kernel message on a closed comm is (IOPub reaches every frontend:
    the one that holds the comm answers)."""
    core = Core()
    core.reconciling()
    _, out = core.ask()
    assert handed(out) == []

    out = core.comm_info_reply()
    assert [e.comm_id for e in out if isinstance(e, CommClosed)] == [COMM]
    assert handed(out) == [] and sends(out, "comm_msg") == []
    assert core.core.comm_state(COMM) is CS.CLOSED
    assert core.core.bad.counts() == {"comm_msg_for_unknown_comm": 1}
    # just as a request on a comm closed here is, when nothing is reconciling
    _, out = core.ask()
    assert handed(out) == [] and sends(out, "comm_msg") == []
    assert core.core.bad.counts() == {"comm_msg_for_unknown_comm": 2}


def test_what_the_kernel_says_on_undecided_comms_is_handled_in_its_order() -> None:
    core = Core()
    core.reconciling()
    first, _ = core.iopub("comm_msg", {"comm_id": COMM, "data": {"n": 1}})
    unseen, _ = core.iopub("comm_msg", {"comm_id": "c-new", "data": {"n": 2}})
    asked, _ = core.ask()
    out = core.comm_info_reply(COMM, "c-new")
    assert [d.request["msg_id"] for d in handed(out)] == [
        first["msg_id"], unseen["msg_id"], asked["msg_id"]]


def test_a_kernel_request_before_the_welcome_of_a_reconnect_waits_too() -> None:
    """libzmq may deliver a message published after the new subscription took effect
    before the kernel has read it and welcomed us: nothing may be answered before the
    welcome (rule 2), and only the reply after it says whether we hold the comm."""
    core = Core()
    core.ready_with_comm()
    core.lose_and_reconnect()
    asked, out = core.ask()
    assert handed(out) == [] and sends(out, "comm_msg") == []
    core.welcome_again()
    [data] = handed(core.comm_info_reply(COMM))
    assert data.request["msg_id"] == asked["msg_id"]


def test_what_was_held_from_the_kernel_goes_with_the_link() -> None:
    core = Core()
    core.reconciling()
    core.ask()
    core.feed(LinkLost("again"))
    core.feed(Reconnect())
    core.welcome_again()
    assert handed(core.comm_info_reply(COMM)) == [], "the kernel invalidated it already"


def test_on_an_open_comm_a_kernel_request_is_handled_at_once_while_reconciling() -> None:
    core = Core()
    core.reconciling()
    core.feed(OpenComm("c2", "t", None, False))
    _, out = core.ask("c2")
    assert len(handed(out)) == 1


# -- the frontend's own requests on stale comms (fix 2) ---------------------------------


def test_requests_on_a_stale_comm_go_out_in_order_once_the_reply_confirms_it() -> None:
    core = Core()
    core.reconciling()
    first = core.feed(StartRequest("r1", COMM, "echo", 1))
    second = core.feed(StartRequest("r2", COMM, "echo", 2, timeout=5.0))
    assert sends(first + second, "comm_msg") == [], "sent on a comm not yet confirmed"
    assert StartTimer(Timer(TimerKind.HELD, "r2"), 5.0) in second

    core.now = 1.0
    out = core.comm_info_reply(COMM)
    assert [s.msg_id for s in sends(out, "comm_msg")] == ["r1", "r2"]
    assert core.core.requests.is_pending("r1") and core.core.requests.is_pending("r2")
    # the held one keeps its deadline: due when it was, not 5 s after it went out
    assert StartTimer(Timer(TimerKind.DEADLINE), 5.0) in out
    core.now = 5.0
    out = core.feed(TimerFired(Timer(TimerKind.DEADLINE)))
    assert ended(out)["r2"].error is not None
    assert ended(out)["r2"].error.state == "timed_out"


def test_a_request_on_a_stale_comm_the_reply_omits_never_goes_out() -> None:
    core = Core()
    core.reconciling()
    core.feed(StartRequest("r1", COMM, "echo", 1, timeout=5.0))
    out = core.comm_info_reply()
    assert sends(out, "comm_msg") == []
    error = ended(out)["r1"].error
    assert isinstance(error, Undeliverable)
    assert error.detail == "its comm closed before it could go out"


@pytest.mark.parametrize(("end", "why"), [
    ("link_lost", "the link was lost before it could go out"),
    ("deadline", "its deadline passed before it could go out"),
])
def test_a_held_request_ends_when_its_link_or_its_deadline_does(end: str, why: str) -> None:
    core = Core()
    core.reconciling()
    core.feed(StartRequest("r1", COMM, "echo", 1, timeout=5.0))
    core.now = 5.0
    if end == "link_lost":
        out = core.feed(LinkLost("again"))
    else:
        out = core.feed(TimerFired(Timer(TimerKind.HELD, "r1")))
    error = ended(out)["r1"].error
    assert isinstance(error, Undeliverable)
    assert error.detail == why
    assert sends(out, "comm_msg") == []


# -- the rules are the policies' (fix 3) ------------------------------------------------


class HoldsNothing(FrontendPolicies):
    def held_while_reconciling(self, frontend: FrontendProtocol
                               ) -> frozenset[FrontendCommState]:
        return frozenset()


class ForgetsUnseenClose(FrontendPolicies):
    def remember_unseen_close(self, frontend: FrontendProtocol) -> bool:
        return False


def test_the_reference_rules_hold_what_only_the_reply_decides() -> None:
    assert FrontendPolicies().held_while_reconciling(Core().core) == {CS.NEW, CS.STALE}
    assert UNDECIDED == {CS.NEW, CS.STALE}


def test_a_core_follows_the_policies_it_is_given() -> None:
    core = Core(HoldsNothing())
    core.reconciling()
    _, out = core.ask()
    assert handed(out) == []
    assert handed(core.comm_info_reply(COMM)) == [], "dropped, not held"
    assert core.core.bad.counts() == {"comm_msg_for_unknown_comm": 1}

    core = Core(ForgetsUnseenClose())
    core.reconciling()
    core.iopub("comm_close", {"comm_id": "c-new", "data": {}})
    core.comm_info_reply(COMM, "c-new")  # outdated: it still lists c-new
    assert core.core.comm_state("c-new") is CS.OPEN, "adopted, the close forgotten"
    assert Core().core.policies.remember_unseen_close(Core().core)


# -- a comm_close lost with the link (SPEC frontend 5) ---------------------------------


def test_a_close_the_kernel_still_lists_after_a_reconnect_is_sent_again() -> None:
    """The frontend closed the comm and sent comm_close; the link then broke with the
    message still in flight, so the kernel kept the comm (the model's checker finds
    it, ForgetsItsLostClose). The reply that lists the comm makes the close go again;
    a comm the frontend did not close itself is left alone."""
    core = Core()
    core.ready_with_comm()
    core.feed(OpenComm("c2", "t", None, False))
    [first] = sends(core.feed(CloseComm("c2", None)), "comm_close")
    assert first.content["comm_id"] == "c2"
    core.iopub("comm_close", {"comm_id": "c-kernel", "data": {}})  # closed by the kernel
    core.lose_and_reconnect()
    core.welcome_again()
    out = core.comm_info_reply(COMM, "c2", "c-kernel")
    assert [s.content["comm_id"] for s in sends(out, "comm_close")] == ["c2"]
    assert core.core.comm_state("c2") is CS.CLOSED
    assert core.core.comm_state(COMM) is CS.OPEN


def test_a_close_made_while_the_link_was_down_goes_once() -> None:
    """Held until the welcome, it goes then, on the new link: the reply that lists the
    comm (outdated: it was read before the close) sends nothing more."""
    core = Core()
    core.ready_with_comm()
    core.lose_and_reconnect()
    out = core.feed(CloseComm(COMM, None))
    assert sends(out, "comm_close") == [], "held: no link"
    msg = core.message("iopub_welcome", {"subscription": ""})
    out = core.feed(Received(Channel.IOPUB, (), msg))
    [core.reconcile] = sends(out, "comm_info_request")
    out += core.comm_info_reply(COMM)
    assert [s.content["comm_id"] for s in sends(out, "comm_close")] == [COMM]
