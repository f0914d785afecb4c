"""Our frontend against a stock ipykernel 7.4 (no commspec code in the kernel).

The kernel gets a comm target through an execute_request; its handler answers
JSON-RPC requests with ``comm.send``, which ipykernel parents to the message it
is handling, i.e. the request. Synchronisation is on futures, trace events and
received messages only.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from fe_kernels import KernelProcess
from fe_support import TEST_OPTIONS, FrontendFactory

from commspec.impl.errors import RemoteError, TimedOut, Undeliverable
from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.tracing import ListSink, match
from commspec.model.machines import FrontendCommState, SessionState

TARGET = "commspec.test"
WAIT = 20.0

# Runs inside the kernel. The handler replies from within on_msg, so ipykernel's
# comm.send takes the request as its parent; the result echoes the request header
# the kernel saw, so the test can hold the reply's parent_header against it.
REGISTER_TARGET = f"""
from IPython import get_ipython
commspec_comms = {{}}

def commspec_target(comm, open_msg):
    commspec_comms[comm.comm_id] = comm

    def on_msg(msg):
        data = msg["content"]["data"]
        if not (isinstance(data, dict) and "method" in data and "id" in data):
            return
        if data["method"] == "ignore":
            return  # a handler that forgets to answer: the kernel goes idle anyway
        if data["method"] == "echo":
            reply = {{"result": {{"params": data.get("params"), "request": msg["header"]}}}}
        else:
            reply = {{"error": {{"code": -32601, "message": data["method"]}}}}
        comm.send({{"jsonrpc": "2.0", "id": data["id"], **reply}})

    comm.on_msg(on_msg)
    comm.on_close(lambda msg: commspec_comms.pop(comm.comm_id, None))

get_ipython().kernel.comm_manager.register_target({TARGET!r}, commspec_target)
"""


def execute_ok(frontend: FrontendEndpoint, code: str) -> None:
    reply = frontend.execute(code).result(WAIT)
    assert reply["content"]["status"] == "ok", reply["content"]


def test_rpc_round_trip_reply_parented_to_request(
    stock_kernel: KernelProcess, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = frontends(stock_kernel.connection_file)
    frontend.wait_ready(WAIT)
    execute_ok(frontend, REGISTER_TARGET)
    replies: list[dict[str, Any]] = []
    got_reply = threading.Event()

    def observe(msg: dict[str, Any]) -> None:
        data = msg["content"].get("data")
        if msg["msg_type"] == "comm_msg" and isinstance(data, dict) and "result" in data:
            replies.append(msg)
            got_reply.set()

    frontend.on_iopub(observe)
    comm = frontend.open_comm(TARGET)
    result = comm.request("echo", {"x": 1}).result(WAIT)

    assert result["params"] == {"x": 1}
    assert got_reply.wait(WAIT), "the reply was resolved but never observed"
    parent = replies[0]["parent_header"]
    request_header = result["request"]
    sent = trace.wait_for(match(machine="request", event="sent"))
    assert parent["msg_id"] == sent.msg_id == request_header["msg_id"]
    assert parent["session"] == frontend.session_id
    assert parent["msg_type"] == "comm_msg"
    assert {k: v for k, v in parent.items() if k != "date"} == {
        k: v for k, v in request_header.items() if k != "date"
    }
    trace.wait_for(match(machine="request", object=sent.msg_id, dest="resolved"))

    with pytest.raises(RemoteError) as error:
        comm.request("no_such_method").result(WAIT)
    assert error.value.code == -32601
    assert frontend.bad_input == {}


def test_an_idle_without_reply_is_not_no_reply_from_a_stock_kernel(
    stock_kernel: KernelProcess, frontends: FrontendFactory, trace: ListSink
) -> None:
    """ipykernel does not advertise commspec: its comm handlers may answer after the idle
    (from a thread), so the idle proves nothing and only the caller's deadline ends a
    request nobody answers. (It used to end as no_reply after 50 ms.)"""
    frontend = frontends(stock_kernel.connection_file)
    execute_ok(frontend, REGISTER_TARGET)
    comm = frontend.open_comm(TARGET)
    with pytest.raises(TimedOut):
        comm.request("ignore", timeout=1.0).result(WAIT)
    assert not trace.find(match(machine="request", dest="no_reply"))
    assert frontend.kernel_info is not None and "commspec" not in frontend.kernel_info.get(
        "supported_features", [])
    # the comm and the session are fine: the next request is answered
    assert comm.request("echo", 3).result(WAIT)["params"] == 3


def test_second_client_is_welcomed_or_probed(
    stock_kernel: KernelProcess, frontends: FrontendFactory, trace: ListSink
) -> None:
    first = frontends(stock_kernel.connection_file)
    first.wait_ready(WAIT)
    # ipykernel 7.4 welcomes only the first subscriber of a topic: a second client
    # subscribed to b"" alone is not welcomed, and must prove itself by kernel_info.
    # A b"" subscriber receives every welcome, though, and any welcome proves it; so the
    # first client's two (b"" and its presence topic) must have gone out before the
    # second subscribes, or the later one proves the second (seen in CI). A proof by
    # kernel_info is one more "welcomed" event in the first's trace.
    proofs = 2 if first.proven_by == "iopub_welcome" else 3
    trace.wait_for(
        match(machine="session", object=first.session_id, event="welcomed"), WAIT, count=proofs
    )
    unwelcomed = frontends(
        stock_kernel.connection_file, options=replace(TEST_OPTIONS, presence_topic=False)
    )
    unwelcomed.wait_ready(WAIT)
    assert unwelcomed.proven_by == "kernel_info"
    # With its own presence topic, a client is the first subscriber of that topic, so
    # it is welcomed, unless its first probe's status overtook the welcome: both prove it.
    third = frontends(stock_kernel.connection_file)
    third.wait_ready(WAIT)
    assert third.proven_by in ("iopub_welcome", "kernel_info")
    for frontend in (first, unwelcomed, third):
        execute_ok(frontend, "1 + 1")


def test_reconcile_after_kernel_closed_a_comm_while_cut_off(
    stock_kernel: KernelProcess, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = frontends(stock_kernel.connection_file)
    frontend.wait_ready(WAIT)
    execute_ok(frontend, REGISTER_TARGET)
    doomed = frontend.open_comm(TARGET)
    kept = frontend.open_comm(TARGET)
    # a round trip on each proves the kernel has both
    for comm in (doomed, kept):
        assert comm.request("echo", comm.comm_id).result(WAIT)["params"] == comm.comm_id

    frontend.disconnect()
    assert frontend.state is SessionState.LOST
    for comm in (doomed, kept):
        trace.wait_for(match(machine="frontend_comm", object=comm.comm_id, dest="stale"))

    # Another client closes one comm kernel-side; its comm_close reaches nobody of ours.
    other = frontends(stock_kernel.connection_file, sink=ListSink())
    other.wait_ready(WAIT)
    execute_ok(other, f"commspec_comms[{doomed.comm_id!r}].close()")

    frontend.reconnect()
    frontend.wait_ready(WAIT)
    trace.wait_for(match(machine="frontend_comm", object=doomed.comm_id, event="not_found"))
    trace.wait_for(match(machine="frontend_comm", object=kept.comm_id, event="confirmed"))
    assert doomed.state is FrontendCommState.CLOSED
    assert kept.state is FrontendCommState.OPEN
    # other subscribers' welcomes may interleave as moves to the same state: skip them
    changes = [
        (e.event, e.dest)
        for e in trace.find(match(machine="session", object=frontend.session_id))
        if e.source != e.dest
    ]
    assert changes == [
        ("welcomed", "ready"),
        ("link_lost", "lost"),
        ("reconnect", "reconnecting"),
        ("welcomed", "reconciling"),
        ("reconciled", "ready"),
    ]

    assert kept.request("echo", "again").result(WAIT)["params"] == "again"
    with pytest.raises(Undeliverable):
        doomed.request("echo", "gone").result(WAIT)
