"""SPEC.md "Message formats", kernel side: what a comm_msg is, told by the rules, not by
who sent it. Replies as ark and Positron shape them; JSON-RPC ids that are the caller's;
a request on a comm the kernel does not hold; the registry's codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ki_peers import KernelUnderTest, RawFrontend, open_and_wait

from commspec.impl.core.jsonrpc import MessageKind, classify
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.model.machines import REQUEST, STDIN_REQUEST
from commspec.model.messages import ERROR_CODES, FAILURE_CODES

MakeRaw = Callable[..., RawFrontend]

ARK_REPLY = {"method": "ShowHelpTopicReply", "result": True}
ARK_ERROR = {"error": {"code": -32000, "message": "no such topic", "data": {"topic": "x"}}}
POSITRON_REPLY = {"jsonrpc": "2.0", "id": "k-1", "method": "show_question", "result": "yes"}


@pytest.mark.parametrize(("data", "kind"), [
    (ARK_REPLY, MessageKind.REPLY),
    (ARK_ERROR, MessageKind.REPLY),
    (POSITRON_REPLY, MessageKind.REPLY),
    ({"jsonrpc": "2.0", "id": 1, "result": None}, MessageKind.REPLY),
    ({"jsonrpc": "2.0", "id": 1, "method": "m", "params": {}}, MessageKind.REQUEST),
    ({"id": "x", "method": "m"}, MessageKind.REQUEST),
    ({"method": "update", "state": {}}, MessageKind.NOTIFICATION),  # ipywidgets
    ({"anything": 1}, MessageKind.NOTIFICATION),
    ({"id": 1}, MessageKind.INVALID),
    ({"id": True, "method": "m"}, MessageKind.INVALID),
    ([1, 2], MessageKind.INVALID),
])
def test_classify(data: Any, kind: MessageKind) -> None:
    assert classify(data) is kind


def test_the_registry_has_one_code_per_failure_outcome() -> None:
    codes = [e.code for e in ERROR_CODES]
    assert len(codes) == len(set(codes)), "a code is registered twice"
    failures = {s.value for m in (REQUEST, STDIN_REQUEST) for s in m.terminal}
    failures -= {"resolved", "errored", "replied"}  # the answers: they carry their own
    assert set(FAILURE_CODES) == failures
    assert all(-32099 <= c <= -32000 for c in FAILURE_CODES.values()), "JSON-RPC server range"


@pytest.fixture
def frontend(kut: KernelUnderTest, raw_frontend: MakeRaw) -> RawFrontend:
    fe = raw_frontend(kut)
    fe.wait_welcome()
    return fe


@pytest.mark.parametrize("reply", [ARK_REPLY, POSITRON_REPLY], ids=["ark", "positron"])
def test_a_reply_is_told_by_its_parent_and_result_whatever_else_it_carries(
        kut: KernelUnderTest, frontend: RawFrontend, reply: dict[str, Any]) -> None:
    """Positron answers with ``{jsonrpc, id, method, result}``: the kernel took it for a new
    request and answered -32601, and its own request never ended."""
    comm_id = open_and_wait(frontend, ECHO)
    call = frontend.request(comm_id, "call_frontend", {"method": "show_question"})
    asked = frontend.wait_kernel_request(comm_id)
    answer = frontend.send(frontend.shell, "comm_msg",
                           {"comm_id": comm_id, "data": reply}, parent=asked)
    assert frontend.wait_reply_to(call) == {"jsonrpc": "2.0", "id": call["content"]["data"]["id"],
                                            "result": reply["result"]}
    frontend.wait_idle(answer)
    assert kut.kernel.bad_input == {}
    assert kut.kernel.pending_count == 0


def test_an_error_reply_with_data_reaches_the_caller_with_its_code(
        kut: KernelUnderTest, frontend: RawFrontend) -> None:
    comm_id = open_and_wait(frontend, ECHO)
    call = frontend.request(comm_id, "call_frontend", {"method": "show_help"})
    asked = frontend.wait_kernel_request(comm_id)
    frontend.send(frontend.shell, "comm_msg", {"comm_id": comm_id, "data": ARK_ERROR},
                  parent=asked)
    error = frontend.wait_reply_to(call)["error"]
    assert error["code"] == -32000 and "no such topic" in error["message"]


def test_the_same_rpc_id_twice_on_one_comm_both_answer(kut: KernelUnderTest,
                                                      frontend: RawFrontend) -> None:
    """Ids are the caller's: the second used to be answered -32600 "id 9 is in flight"."""
    comm_id = open_and_wait(frontend, ECHO)
    first = frontend.request(comm_id, "sleep", {"seconds": 0.2}, request_id=9)
    second = frontend.request(comm_id, "echo", "again", request_id=9)
    assert frontend.wait_reply_to(second) == {"jsonrpc": "2.0", "id": 9, "result": "again"}
    assert frontend.wait_reply_to(first) == {"jsonrpc": "2.0", "id": 9,
                                             "result": {"slept": 0.2}}
    assert kut.kernel.bad_input == {}


def test_two_frontends_both_using_id_1_on_one_comm(kut: KernelUnderTest,
                                                  frontend: RawFrontend,
                                                  raw_frontend: MakeRaw) -> None:
    other = raw_frontend(kut)
    other.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO_PERSISTENT)
    mine = frontend.request(comm_id, "sleep", {"seconds": 0.2}, request_id=1)
    frontend.wait_iopub(lambda m: m["msg_type"] == "status"
                        and m["parent_header"].get("msg_id") == mine["header"]["msg_id"],
                        what="busy: the kernel holds the first")
    theirs = other.request(comm_id, "echo", "b", request_id=1)
    assert other.wait_reply_to(theirs)["result"] == "b"
    assert frontend.wait_reply_to(mine)["result"] == {"slept": 0.2}


def test_a_request_on_a_comm_the_kernel_does_not_hold_gets_the_comm_closed_code(
        kut: KernelUnderTest, frontend: RawFrontend) -> None:
    """It used to get silence (and, from a commspec frontend, no_reply after the idle)."""
    request = frontend.request("no-such-comm", "echo", 1)
    error = frontend.wait_reply_to(request)["error"]
    assert error["code"] == FAILURE_CODES["cancelled"] == -32003
    frontend.wait_idle(request)
    assert kut.kernel.bad_input == {"unknown_comm": 1}


def test_the_demo_asks_stdin_in_arks_shape(kut: KernelUnderTest,
                                          frontend: RawFrontend) -> None:
    comm_id = open_and_wait(frontend, ECHO_PERSISTENT)
    frontend.request(comm_id, "ask_stdin", {"method": "ShowMessage", "params": {"m": 1}})
    asked = frontend.recv(frontend.stdin, 5.0)
    assert asked is not None and asked["msg_type"] == "rpc_request"
    assert asked["content"] == {"method": "ShowMessage", "params": {"m": 1}}
