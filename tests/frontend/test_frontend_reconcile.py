"""Reconciling (SPEC.md, frontend rule 5), against a scripted kernel that orders the
race on purpose: comm_info_reply travels on shell and the kernel's messages on IOPub,
so either may come first."""

from __future__ import annotations

import threading
from typing import Any

from fe_support import PROBE, WAIT, FrontendFactory, connect, open_comm

from commspec.impl.core.events import Message
from commspec.impl.core.frontend import FrontendProtocol
from commspec.impl.frontend import FrontendEndpoint, FrontendPolicies
from commspec.impl.tracing import ListSink, match
from commspec.mbt.fakes import ScriptedKernel
from commspec.model.machines import FrontendCommState


class _Handled:
    """The IOPub messages the frontend has handled, by msg_id: a test waits for one it
    published (recorded from the start, so one handled before the test asks counts)."""

    def __init__(self, frontend: FrontendEndpoint) -> None:
        self._seen: set[str] = set()
        self._changed = threading.Condition()
        frontend.on_iopub(self._observe)

    def _observe(self, msg: Message) -> None:
        with self._changed:
            self._seen.add(msg["msg_id"])
            self._changed.notify_all()

    def wait(self, msg: Message) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: msg["msg_id"] in self._seen, WAIT)


def _reconcile(kernel: ScriptedKernel, frontend: FrontendEndpoint) -> tuple[list[bytes], Message]:
    frontend.reconnect()
    kernel.wait_subscribed(b"")
    kernel.welcome()
    return kernel.expect("shell", "comm_info_request", skip=PROBE)


def test_a_kernel_request_on_a_comm_not_seen_yet_waits_for_comm_info_reply(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    """The kernel opened a comm while our subscription was dead and asks on it before
    comm_info_reply arrives: the request used to be dropped (comm_msg_for_unknown_comm),
    the comm then adopted, and the kernel's request left pending for good."""
    frontend = connect(fake_kernel, frontends)
    frontend.register_target("plots", lambda comm, data: comm.on_request("ask", lambda p: p))
    handled = _Handled(frontend)
    identities, info = _reconcile(fake_kernel, frontend)

    asked = fake_kernel.publish("comm_msg", {"comm_id": "c-new", "data": {
        "jsonrpc": "2.0", "id": "k1", "method": "ask", "params": 7}})
    assert handled.wait(asked)
    fake_kernel.reply("shell", identities, info, "comm_info_reply",
                      {"status": "ok", "comms": {"c-new": {"target_name": "plots"}}})

    # the adoption is announced first (SPEC: Adoption), then the held request answered
    _, adopt = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert adopt["content"] == {"comm_id": "c-new",
                                "data": {"jsonrpc": "2.0", "method": "commspec/adopt"}}
    _, answer = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert answer["parent_header"]["msg_id"] == asked["msg_id"]
    assert answer["content"] == {"comm_id": "c-new",
                                 "data": {"jsonrpc": "2.0", "id": "k1", "result": 7}}
    assert frontend.comms()["c-new"].state is FrontendCommState.OPEN
    assert frontend.bad_input == {}


def test_a_kernel_message_on_a_comm_comm_info_does_not_list_stays_unknown(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    frontend = connect(fake_kernel, frontends)
    handled = _Handled(frontend)
    identities, info = _reconcile(fake_kernel, frontend)
    asked = fake_kernel.publish("comm_msg", {"comm_id": "c-gone", "data": {"n": 1}})
    assert handled.wait(asked)
    assert frontend.bad_input == {}, "held, not yet judged"
    fake_kernel.reply("shell", identities, info, "comm_info_reply", {"status": "ok", "comms": {}})
    frontend.wait_ready(WAIT)
    assert frontend.bad_input == {"comm_msg_for_unknown_comm": 1}


def test_a_request_on_a_stale_comm_waits_for_comm_info_reply(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink) -> None:
    """It used to go out at once, before the reply said whether the kernel still had the
    comm; SPEC forbids it."""
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    identities, info = _reconcile(fake_kernel, frontend)
    assert comm.state is FrontendCommState.STALE
    pending = comm.request("echo", 1)
    fake_kernel.reply("shell", identities, info, "comm_info_reply",
                      {"status": "ok", "comms": {comm.comm_id: {"target_name": "t"}}})
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    confirmed = trace.wait_for(match(machine="frontend_comm", event="confirmed"))
    sent = trace.wait_for(match(machine="request", event="sent"))
    assert confirmed.time <= sent.time, "sent before comm_info_reply confirmed its comm"
    fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {
        "id": request["content"]["data"]["id"], "result": 1}}, parent=request)
    assert pending.result(WAIT) == 1


def test_a_kernel_request_on_a_stale_comm_is_handled_once_comm_info_reply_confirms_it(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    """It used to be handled (and answered) at once, on a comm the kernel might have
    closed meanwhile."""
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    handled_on: list[FrontendCommState] = []

    def ask(params: Any) -> Any:
        handled_on.append(comm.state)
        return params

    comm.on_request("ask", ask)
    handled = _Handled(frontend)
    identities, info = _reconcile(fake_kernel, frontend)
    asked = fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {
        "jsonrpc": "2.0", "id": "k1", "method": "ask", "params": 7}})
    assert handled.wait(asked)
    assert handled_on == [], "handled before comm_info_reply said whether we hold the comm"
    fake_kernel.reply("shell", identities, info, "comm_info_reply",
                      {"status": "ok", "comms": {comm.comm_id: {"target_name": "t"}}})

    _, answer = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert answer["parent_header"]["msg_id"] == asked["msg_id"]
    assert answer["content"]["data"] == {"jsonrpc": "2.0", "id": "k1", "result": 7}
    assert handled_on == [FrontendCommState.OPEN]
    assert frontend.bad_input == {}


class _HoldsNothing(FrontendPolicies):
    def held_while_reconciling(self, frontend: FrontendProtocol
                               ) -> frozenset[FrontendCommState]:
        return frozenset()


def test_an_endpoint_follows_the_policies_it_is_given(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    policies = _HoldsNothing()
    frontend = connect(fake_kernel, frontends, policies=policies)
    assert frontend.core.policies is policies
    comm, _ = open_comm(fake_kernel, frontend)
    handled = _Handled(frontend)
    _reconcile(fake_kernel, frontend)
    asked = fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {
        "jsonrpc": "2.0", "id": "k1", "method": "ask", "params": 7}})
    assert handled.wait(asked)
    assert frontend.bad_input == {"comm_msg_for_unknown_comm": 1}, "dropped, not held"
