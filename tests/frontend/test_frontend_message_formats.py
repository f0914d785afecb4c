"""SPEC.md "Message formats", frontend side, against a scripted kernel that answers as
ark does: replies without ``id`` or ``jsonrpc`` and with ``method``, JSON-RPC ids the
kernel reuses, stdin ``rpc_request`` as ``{method, params}``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fe_support import PROBE, WAIT, FrontendFactory, connect, open_comm

from commspec.impl.comm import Deferred
from commspec.impl.errors import RemoteError
from commspec.mbt.fakes import ScriptedKernel


def test_an_ark_reply_resolves_its_request(fake_kernel: ScriptedKernel,
                                          frontends: FrontendFactory) -> None:
    """ark's reply has no id: it used to be read as a notification, and the request
    failed as no_reply once the idle came."""
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("show_help_topic", {"topic": "plot"})
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id,
                                     "data": {"method": "ShowHelpTopicReply", "result": True}},
                        parent=request)
    fake_kernel.status("idle", request)
    assert pending.result(WAIT) is True
    assert frontend.bad_input == {}


def test_an_ark_error_reply_is_a_remote_error(fake_kernel: ScriptedKernel,
                                             frontends: FrontendFactory) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("show_help_topic", {"topic": "nope"})
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {
        "error": {"code": -32000, "message": "no such topic", "data": {"topic": "nope"}}}},
        parent=request)
    with pytest.raises(RemoteError) as caught:
        pending.result(WAIT)
    assert caught.value.code == -32000


def test_kernel_requests_with_the_same_id_are_both_answered(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    """The second used to be answered -32600 "request id 1 is in flight"."""
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    held: list[Deferred] = []
    asked = threading.Event()

    def later(params: Any) -> Deferred:
        held.append(Deferred())
        asked.set()
        return held[-1]

    comm.on_request("later", later)
    comm.on_request("now", lambda params: "now")
    first = fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {
        "jsonrpc": "2.0", "id": 1, "method": "later"}})
    assert asked.wait(WAIT)
    second = fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {
        "jsonrpc": "2.0", "id": 1, "method": "now"}})
    _, reply = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert reply["parent_header"]["msg_id"] == second["msg_id"]
    assert reply["content"]["data"] == {"jsonrpc": "2.0", "id": 1, "result": "now"}
    held[0].resolve("later")
    _, reply = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert reply["parent_header"]["msg_id"] == first["msg_id"]
    assert reply["content"]["data"]["result"] == "later"
    assert frontend.bad_input == {}


@pytest.mark.parametrize("content", [
    {"method": "ShowMessage", "params": {"text": "hi"}},                       # ark today
    {"request": {"jsonrpc": "2.0", "method": "ShowMessage", "params": {"text": "hi"}}},
], ids=["ark", "wrapped"])
def test_a_stdin_rpc_request_in_either_shape_is_answered(
        fake_kernel: ScriptedKernel, frontends: FrontendFactory, content: dict[str, Any]) -> None:
    frontend = connect(fake_kernel, frontends)
    frontend.on_rpc_request(lambda method, params: {"method": method, "params": params})
    execute = frontend.execute("ask()", allow_stdin=True)
    identities, request = fake_kernel.expect("shell", "execute_request", skip=PROBE)
    asked = fake_kernel.reply("stdin", identities, request, "rpc_request", content)
    _, answer = fake_kernel.expect("stdin", "rpc_reply")
    assert answer["parent_header"]["msg_id"] == asked["msg_id"]
    assert answer["content"] == {"result": {"method": "ShowMessage", "params": {"text": "hi"}}}
    fake_kernel.reply("shell", identities, request, "execute_reply", {"status": "ok"})
    assert execute.result(WAIT)["content"]["status"] == "ok"
