"""The disconnection rules of SPEC.md, live over ZeroMQ, one test per rule.

Synchronisation is on trace events (ListSink.wait_for), futures and received
messages; ``hold_until_queued`` makes "had already arrived" exact where a rule
depends on it. Frontends that must die unannounced run in processes we start
and SIGKILL / SIGSTOP by pid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ki_peers import (
    OBSERVED,
    OBSERVED_PERSISTENT,
    KernelUnderTest,
    RawFrontend,
    SpawnedFrontend,
    open_and_wait,
)

from commspec.impl.errors import Disconnected, NoFrontend, TimedOut, Undeliverable, Unreachable
from commspec.impl.kernel import HeartbeatSettings
from commspec.impl.targets import ECHO
from commspec.impl.tracing import match
from commspec.model.trace import TraceEvent

WAIT = 5.0

MakeRaw = Callable[..., RawFrontend]
Spawn = Callable[..., SpawnedFrontend]


def index_of(events: list[TraceEvent], **keys: Any) -> int:
    predicate = match(**keys)
    for i, e in enumerate(events):
        if predicate(e):
            return i
    raise AssertionError(f"no trace event {keys}")


def test_drain_before_invalidate(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    """A reply that reached the kernel before the disconnect resolves its request."""
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, OBSERVED)
    future = kut.observed.comms[comm_id].request("frontend.work", {"n": 1})
    request = frontend.wait_kernel_request(comm_id)

    held = kut.kernel.hold_until_queued(["iopub", "shell"])
    frontend.answer(request, "done")
    frontend.close_iopub()  # its unsubscribes come after the reply
    assert held.result(WAIT), "the reply and the unsubscribe never both arrived"

    assert future.result(WAIT) == "done"
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="frontend_lost"))
    events = kut.sink.events
    msg_id = request["header"]["msg_id"]
    assert index_of(events, machine="request", object=msg_id, event="result") < index_of(
        events, machine="presence", event="unsubscribe")
    assert kut.kernel.late_replies == 0
    assert not kut.sink.find(match(machine="request", event="peer_lost"))


def test_late_reply_dropped_and_counted(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    """ark issue 841's race: the reply arrives after the request was invalidated."""
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, OBSERVED)
    future = kut.observed.comms[comm_id].request("frontend.work")
    request = frontend.wait_kernel_request(comm_id)
    msg_id = request["header"]["msg_id"]

    frontend.close_iopub()
    kut.sink.wait_for(match(machine="request", object=msg_id, event="peer_lost"))
    with pytest.raises(Disconnected):
        future.result(WAIT)

    frontend.answer(request, "too late")  # its DEALER still works
    late = kut.sink.wait_for(match(machine="request", object=msg_id, event="late_reply"))
    assert late.source == late.dest == "invalidated"
    assert kut.kernel.late_replies == 1
    assert "unknown_reply" not in kut.kernel.bad_input
    with pytest.raises(Disconnected):
        future.result(0)  # the outcome did not change


def test_undeliverable_at_once(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    """A kernel request nobody can receive fails at once; it never pends."""
    with pytest.raises(NoFrontend):
        kut.kernel.open_comm(ECHO)  # nobody subscribed: nobody would see it

    owner = raw_frontend(kut)
    bystander = raw_frontend(kut, peer=False)
    owner.wait_welcome()
    bystander.wait_welcome()
    comm_id = open_and_wait(owner, OBSERVED_PERSISTENT)
    kernel_comm = kut.kernel.open_comm(ECHO, persistent=False)
    owner.close_iopub()
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, dest="detached"))

    # The owner is gone: its detached persistent comm has no receiver.
    with pytest.raises(Undeliverable):
        kut.observed.comms[comm_id].request("frontend.work").result(WAIT)
    # The kernel's own comm is every subscriber's; the bystander still listens.
    assert kut.kernel.comm_states()[kernel_comm.comm_id] == "open"
    bystander.close_iopub()
    kut.sink.wait_for(match(machine="presence", dest="disconnected"))
    with pytest.raises(Undeliverable):
        kernel_comm.request("frontend.work").result(WAIT)

    sent = kut.sink.find(match(machine="request", event="sent"))
    assert sent == [], "no request was ever sent, so none could pend"
    assert len(kut.sink.find(match(machine="request", event="no_receiver"))) == 2
    assert kut.kernel.pending_count == 0


def test_persistent_vs_default_on_frontend_sigkill(
    kut: KernelUnderTest, raw_frontend: MakeRaw, spawn_frontend: Spawn
) -> None:
    """Per-peer presence: the killed frontend's comms are lost, though others remain."""
    bystander = raw_frontend(kut, peer=False)
    bystander.wait_welcome()
    proc = spawn_frontend(kut, OBSERVED, OBSERVED_PERSISTENT)
    default_id, persistent_id = proc.comms
    comms = kut.observed.comms
    pending = [comms[default_id].request("ask", {"slot": 0}),
               comms[persistent_id].request("ask", {"slot": 1})]
    assert proc.process.wait_held(0, WAIT) and proc.process.wait_held(1, WAIT)

    proc.kill()
    kut.sink.wait_for(match(machine="kernel_comm", object=default_id, event="frontend_lost"))
    kut.sink.wait_for(match(machine="kernel_comm", object=persistent_id, event="frontend_lost"))

    assert kut.kernel.comm_states() == {persistent_id: "detached"}
    for future in pending:
        with pytest.raises(Disconnected):
            future.result(WAIT)
    assert sorted(kut.observed.disconnected) == sorted([default_id, persistent_id])
    assert kut.observed.closed == [default_id], "only the default comm was cleaned up"
    closed = bystander.wait_iopub(lambda m: m["msg_type"] == "comm_close",
                                  what="comm_close of the default comm")
    assert closed["content"]["comm_id"] == default_id
    assert kut.kernel.presence_state == "connected" and kut.kernel.subscriber_count == 1

    # The same frontend (same session id) comes back: its persistent comm re-attaches.
    returned = raw_frontend(kut, session_id=proc.session_id)
    returned.wait_welcome()
    kut.sink.wait_for(match(machine="kernel_comm", object=persistent_id, event="frontend_back"))
    future = comms[persistent_id].request("frontend.again")
    returned.answer(returned.wait_kernel_request(persistent_id), "welcome back")
    assert future.result(WAIT) == "welcome back"


def test_half_open_detected_by_heartbeat(
    make_kernel: Callable[..., KernelUnderTest], spawn_frontend: Spawn
) -> None:
    """A frozen frontend sends no unsubscribe; the ZMTP heartbeat makes libzmq drop it."""
    kut = make_kernel(heartbeat=HeartbeatSettings(interval=0.1, timeout=0.5))
    proc = spawn_frontend(kut, OBSERVED)
    (comm_id,) = proc.comms
    future = kut.observed.comms[comm_id].request("ask", {"slot": 0})
    assert proc.process.wait_held(0, WAIT)

    proc.freeze()  # SIGSTOP: its sockets stay open, it just stops answering
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="frontend_lost"),
                      timeout=10)
    with pytest.raises(Disconnected):
        future.result(WAIT)
    assert kut.kernel.comm_states() == {}
    assert kut.kernel.presence_state == "disconnected"


def test_stdin_request_to_departed_frontend(
    kut: KernelUnderTest, raw_frontend: MakeRaw, spawn_frontend: Spawn
) -> None:
    bystander = raw_frontend(kut, peer=False)
    bystander.wait_welcome()
    proc = spawn_frontend(kut, ECHO, ask_stdin=0)
    stdin_id = proc.stdin_request
    assert stdin_id is not None
    assert kut.kernel.stdin_pending_count == 1

    # Pending while its frontend dies: unreachable (per-peer presence).
    mark = kut.sink.mark()
    proc.kill()
    lost = kut.sink.wait_for(match(machine="stdin_request", object=stdin_id))
    assert (lost.event, lost.dest) == ("sent", "pending")
    lost = kut.sink.wait_for(match(machine="stdin_request", object=stdin_id, event="peer_lost"))
    assert lost.dest == "unreachable"
    # That can be its stdin connection's end, seen before IOPub's unsubscribe: wait for
    # presence too (until then a request to it goes out into the dying connection, and
    # ends unreachable by peer_lost, not at once).
    kut.sink.wait_for(match(machine="presence", event="unsubscribe"), since=mark)
    assert proc.identity not in kut.kernel.live_peers

    # Addressed to it afterwards: unreachable at once, never pending.
    with pytest.raises(Unreachable):
        kut.kernel.stdin_request("input_request", {"prompt": "?"}, proc.identity).result(WAIT)
    # An identity the stdin ROUTER has no peer for: EHOSTUNREACH (ROUTER_MANDATORY).
    with pytest.raises(Unreachable, match="EHOSTUNREACH"):
        kut.kernel.stdin_request("rpc_request", {"request": {}}, b"nobody").result(WAIT)
    assert len(kut.sink.find(match(machine="stdin_request", event="host_unreachable"))) == 2
    assert kut.kernel.stdin_pending_count == 0


def test_interrupt_ends_stdin_wait(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    asked = frontend.request(comm_id, "ask_stdin", {"prompt": "name?"})
    input_request = frontend.recv(frontend.stdin, WAIT)
    assert input_request is not None and input_request["msg_type"] == "input_request"
    frontend.send(frontend.control, "interrupt_request", {})
    frontend.recv(frontend.control, WAIT)
    reply = frontend.wait_reply_to(asked)
    assert reply["error"]["code"] == -32007  # interrupted, as the demo target maps it
    # The user typed anyway: a late stdin reply, dropped and counted.
    frontend.send(frontend.stdin, "input_reply", {"value": "Ada"}, parent=input_request)
    kut.sink.wait_for(match(machine="stdin_request", event="late_reply"))
    assert kut.kernel.late_replies == 1


def test_stdin_reply_resolves(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    asked = frontend.request(comm_id, "ask_stdin", {"prompt": "name?"})
    input_request = frontend.recv(frontend.stdin, WAIT)
    assert input_request is not None
    assert input_request["parent_header"]["msg_id"] == asked["header"]["msg_id"]
    frontend.send(frontend.stdin, "input_reply", {"value": "Ada"}, parent=input_request)
    assert frontend.wait_reply_to(asked)["result"] == "Ada"


def test_comm_close_cancels_pending(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, OBSERVED)
    future = kut.observed.comms[comm_id].request("frontend.work")
    request = frontend.wait_kernel_request(comm_id)
    frontend.send(frontend.shell, "comm_close", {"comm_id": comm_id, "data": {}})
    kut.sink.wait_for(match(machine="request", event="comm_closed"))
    with pytest.raises(Exception, match="cancelled"):
        future.result(WAIT)
    frontend.answer(request, "after close")
    kut.sink.wait_for(match(machine="request", event="late_reply"))
    assert kut.observed.closed == [comm_id]


def test_shutdown_fails_everything(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    default_id = open_and_wait(frontend, OBSERVED)
    persistent_id = open_and_wait(frontend, OBSERVED_PERSISTENT)
    futures = [kut.observed.comms[c].request("frontend.work") for c in (default_id,
                                                                       persistent_id)]
    frontend.wait_kernel_request(persistent_id)
    frontend.send(frontend.control, "shutdown_request", {"restart": False})
    reply = frontend.recv(frontend.control, WAIT)
    assert reply is not None and reply["msg_type"] == "shutdown_reply"
    assert kut.kernel.wait_for_shutdown_request(WAIT)
    for comm_id in (default_id, persistent_id):
        kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="kernel_shutdown"))
    for future in futures:
        with pytest.raises(Exception, match="cancelled"):
            future.result(WAIT)


def test_peer_topic_is_per_frontend(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    first, second = raw_frontend(kut), raw_frontend(kut)
    first.wait_welcome()
    second.wait_welcome()
    comm_first = open_and_wait(first, OBSERVED)
    comm_second = open_and_wait(second, OBSERVED)
    assert kut.kernel.live_peers == {first.identity, second.identity}
    first.close_iopub()
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_first, event="frontend_lost"))
    assert kut.kernel.comm_states() == {comm_second: "open"}
    assert kut.kernel.live_peers == {second.identity}


def test_deadline_times_out_then_reply_is_late(kut: KernelUnderTest,
                                               raw_frontend: MakeRaw) -> None:
    """Only a caller's own deadline times a request out; the loop wakes for it."""
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, OBSERVED)
    future = kut.observed.comms[comm_id].request("frontend.slow", timeout=0.2)
    request = frontend.wait_kernel_request(comm_id)
    with pytest.raises(TimedOut):
        future.result(WAIT)
    frontend.answer(request, "eventually")
    kut.sink.wait_for(match(machine="request", event="late_reply"))
    assert kut.kernel.late_replies == 1 and kut.kernel.comm_states() == {comm_id: "open"}
