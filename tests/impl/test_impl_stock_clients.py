"""Stock jupyter_client clients (each with its own session id) against the kernel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ki_peers import KernelUnderTest, stock_open_comm, stock_wait_iopub

from commspec.impl.targets import ECHO, ECHO_PERSISTENT

Message = dict[str, Any]


def is_welcome(m: Message) -> bool:
    return bool(m["msg_type"] == "iopub_welcome")


def rpc(client: Any, comm_id: str, data: Message) -> tuple[Message, list[Message]]:
    """Send comm_msg data; return the shell request and every IOPub message up to its idle."""
    msg = client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    client.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    seen: list[Message] = []

    def until_idle(m: Message) -> bool:
        if m["parent_header"].get("msg_id") == msg_id:
            seen.append(m)
        return bool(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                    and m["parent_header"].get("msg_id") == msg_id)

    stock_wait_iopub(client, until_idle, what=f"idle of {msg_id}")
    return msg, seen


@pytest.fixture
def client(kut: KernelUnderTest, stock: Callable[[KernelUnderTest], Any]) -> Any:
    c = stock(kut)
    stock_wait_iopub(c, is_welcome, what="welcome")
    return c


def test_kernel_info_advertises_welcome(client: Any) -> None:
    reply = client.kernel_info(reply=True, timeout=5)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["protocol_version"] == "5.5"
    assert "iopub_welcome" in reply["content"]["supported_features"]
    assert "commspec" in reply["content"]["supported_features"]
    assert reply["content"]["commspec"] == {"version": "2.0",
                                            "peer_topic_prefix": "commspec.peer/"}


def test_welcome_on_every_subscribe(kut: KernelUnderTest, client: Any,
                                    stock: Callable[[KernelUnderTest], Any]) -> None:
    second = stock(kut)
    welcome = stock_wait_iopub(second, is_welcome, what="welcome for the second client")
    assert welcome["content"] == {"subscription": ""}
    assert welcome["parent_header"] == {}
    # The first client hears the second one's welcome too: each subscribe gets one.
    stock_wait_iopub(client, is_welcome, what="the second welcome, on the first client")
    # One topic, held on two connections: the kernel keeps topics, not counts (libzmq
    # reports b""'s unsubscribe only when the last of them ends).
    assert kut.kernel.subscriptions == 1 and kut.kernel.subscriber_count == 1


def test_comm_info_on_shell_and_control(client: Any) -> None:
    default = stock_open_comm(client, ECHO)
    persistent = stock_open_comm(client, ECHO_PERSISTENT)
    reply = client.comm_info(reply=True, timeout=5)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["comms"] == {
        default: {"target_name": ECHO}, persistent: {"target_name": ECHO_PERSISTENT}}
    msg = client.session.msg("comm_info_request", {"target_name": ECHO_PERSISTENT})
    client.control_channel.send(msg)
    reply = client.get_control_msg(timeout=5)
    assert reply["msg_type"] == "comm_info_reply"
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["comms"] == {persistent: {"target_name": ECHO_PERSISTENT}}


@pytest.mark.parametrize("target", [ECHO, ECHO_PERSISTENT])
def test_rpc_round_trip_and_notification(kut: KernelUnderTest, client: Any, target: str) -> None:
    comm_id = stock_open_comm(client, target)
    request = {"jsonrpc": "2.0", "id": 7, "method": "echo", "params": {"x": [1, "two"]}}
    _, seen = rpc(client, comm_id, request)
    kinds = [m["msg_type"] if m["msg_type"] != "status" else m["content"]["execution_state"]
             for m in seen]
    assert kinds == ["busy", "comm_msg", "idle"], "the reply comes between busy and idle"
    assert seen[1]["content"] == {
        "comm_id": comm_id, "data": {"jsonrpc": "2.0", "id": 7, "result": {"x": [1, "two"]}}}
    _, seen = rpc(client, comm_id, {"jsonrpc": "2.0", "method": "echo", "params": {}})
    assert [m["msg_type"] for m in seen] == ["status", "status"], "a notification has no reply"
    assert kut.kernel.comm_states() == {comm_id: "open"}


def test_deferred_reply_comes_before_its_idle(client: Any) -> None:
    comm_id = stock_open_comm(client, ECHO)
    _, seen = rpc(client, comm_id, {"jsonrpc": "2.0", "id": 1, "method": "sleep",
                                    "params": {"seconds": 0.05}})
    assert [m["msg_type"] for m in seen] == ["status", "comm_msg", "status"]
    assert seen[1]["content"]["data"]["result"] == {"slept": 0.05}


def test_error_codes(client: Any) -> None:
    comm_id = stock_open_comm(client, ECHO)
    _, seen = rpc(client, comm_id, {"jsonrpc": "2.0", "id": 1, "method": "no_such"})
    assert seen[1]["content"]["data"]["error"]["code"] == -32601
    _, seen = rpc(client, comm_id, {"jsonrpc": "2.0", "id": 2, "method": "sleep",
                                    "params": {"seconds": "soon"}})
    assert seen[1]["content"]["data"]["error"]["code"] == -32603
    _, seen = rpc(client, comm_id, {"jsonrpc": "2.0", "id": 3})
    assert seen[1]["content"]["data"]["error"]["code"] == -32600


def test_call_frontend_round_trip(kut: KernelUnderTest, client: Any) -> None:
    """The kernel asks the frontend on the comm; the frontend answers on shell."""
    comm_id = stock_open_comm(client, ECHO)
    outer = client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "jsonrpc": "2.0", "id": "outer", "method": "call_frontend",
        "params": {"method": "frontend.add", "params": [2, 3]}}})
    client.shell_channel.send(outer)
    inner = stock_wait_iopub(client, lambda m: m["msg_type"] == "comm_msg"
                             and m["content"]["data"].get("method") == "frontend.add",
                             what="the kernel's request")
    answer = client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "jsonrpc": "2.0", "id": inner["content"]["data"]["id"], "result": 5}}, parent=inner)
    client.shell_channel.send(answer)
    reply = stock_wait_iopub(client, lambda m: m["msg_type"] == "comm_msg"
                             and m["parent_header"].get("msg_id") == outer["header"]["msg_id"],
                             what="the answer to call_frontend")
    assert reply["content"]["data"] == {"jsonrpc": "2.0", "id": "outer", "result": 5}
    assert kut.kernel.pending_count == 0
