"""Bad input: counted by reason, logged, no state change, and the kernel answers after.

Each test sends one bad thing on shell, then a kernel_info_request on the same
DEALER: ZeroMQ keeps one peer's messages in order and the kernel handles them
in order, so once the kernel_info_reply is back the bad message was handled.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
from jupyter_client.session import DELIM, Session
from ki_peers import KernelUnderTest, RawFrontend, open_and_wait

from commspec.impl.kernel import KernelEndpoint
from commspec.impl.targets import ECHO
from commspec.impl.tracing import match

WAIT = 5.0
MakeRaw = Callable[..., RawFrontend]


@pytest.fixture
def frontend(kut: KernelUnderTest, raw_frontend: MakeRaw) -> RawFrontend:
    fe = raw_frontend(kut)
    fe.wait_welcome()
    return fe


def snapshot(kernel: KernelEndpoint) -> tuple[Any, ...]:
    return (kernel.comm_states(), kernel.subscriptions, kernel.presence_state,
            kernel.pending_count, kernel.late_replies)


def kernel_still_answers(frontend: RawFrontend) -> None:
    frontend.send(frontend.shell, "kernel_info_request", {})
    frontend.shell_reply("kernel_info_reply")


def signed(session: Session, header: bytes, parent: bytes = b"{}", metadata: bytes = b"{}",
           content: bytes = b"{}") -> list[bytes]:
    parts = [header, parent, metadata, content]
    return [DELIM, session.sign(parts), *parts]


def header_json(msg_type: str = "kernel_info_request", **drop: bool) -> bytes:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "s",
              "username": "u", "version": "5.5", "date": "2024-01-01T00:00:00Z"}
    for key in drop:
        header.pop(key)
    return json.dumps(header).encode()


def expect_bad(kut: KernelUnderTest, frontend: RawFrontend, reason: str,
               send: Callable[[], None], caplog: pytest.LogCaptureFixture) -> None:
    before = snapshot(kut.kernel)
    events_before = kut.sink.mark()
    with caplog.at_level(logging.WARNING, logger="commspec.kernel"):
        send()
        kernel_still_answers(frontend)
    assert kut.kernel.bad_input[reason] == 1, kut.kernel.bad_input
    assert sum(kut.kernel.bad_input.values()) == 1, kut.kernel.bad_input
    assert snapshot(kut.kernel) == before
    assert kut.sink.events[events_before:] == [], "bad input moved no machine"
    lines = [r.getMessage() for r in caplog.records if reason in r.getMessage()]
    assert len(lines) == 1, lines


def test_bad_input_missigned(kut: KernelUnderTest, frontend: RawFrontend,
                             caplog: pytest.LogCaptureFixture) -> None:
    impostor = Session(key=b"not the key", check_pid=False)
    expect_bad(kut, frontend, "missigned", lambda: frontend.shell.send_multipart(
        signed(impostor, header_json())), caplog)


def test_bad_input_unsigned(kut: KernelUnderTest, frontend: RawFrontend,
                            caplog: pytest.LogCaptureFixture) -> None:
    expect_bad(kut, frontend, "missigned", lambda: frontend.shell.send_multipart(
        [DELIM, b"", header_json(), b"{}", b"{}", b"{}"]), caplog)


def test_bad_input_replayed(kut: KernelUnderTest, frontend: RawFrontend,
                            caplog: pytest.LogCaptureFixture) -> None:
    frames = signed(frontend.session, header_json())
    frontend.shell.send_multipart(frames)
    frontend.shell_reply("kernel_info_reply")
    expect_bad(kut, frontend, "replayed", lambda: frontend.shell.send_multipart(frames), caplog)


@pytest.mark.parametrize("frames", [
    [b"no delimiter at all"],
    [DELIM, b"sig", b"{}"],
], ids=["no_delimiter", "too_few_frames"])
def test_bad_input_truncated(kut: KernelUnderTest, frontend: RawFrontend, frames: list[bytes],
                             caplog: pytest.LogCaptureFixture) -> None:
    expect_bad(kut, frontend, "truncated", lambda: frontend.shell.send_multipart(frames), caplog)


def test_bad_input_malformed_json(kut: KernelUnderTest, frontend: RawFrontend,
                                  caplog: pytest.LogCaptureFixture) -> None:
    expect_bad(kut, frontend, "malformed_json", lambda: frontend.shell.send_multipart(
        signed(frontend.session, b"{not json")), caplog)


def test_bad_input_too_deep(kut: KernelUnderTest, frontend: RawFrontend,
                            caplog: pytest.LogCaptureFixture) -> None:
    """100,000 levels of nesting: its own reason, one line (no RecursionError anywhere)."""
    deep = b"[" * 100_000 + b"]" * 100_000
    expect_bad(kut, frontend, "too_deep", lambda: frontend.shell.send_multipart(
        signed(frontend.session, header_json("comm_msg"), content=deep)), caplog)
    assert kut.kernel.io_failures == 0


def test_bad_input_invalid_id_is_not_echoed(kut: KernelUnderTest, frontend: RawFrontend,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """An id nested 1,000 deep decodes but cannot be encoded again: the -32600 answer
    carries id null (JSON-RPC 2.0), so the answer still goes out."""
    comm_id = open_and_wait(frontend, ECHO)
    deep = "[" * 1000 + "]" * 1000
    header = json.loads(header_json("comm_msg"))
    content = f'{{"comm_id": "{comm_id}", "data": {{"jsonrpc": "2.0", "id": {deep}, ' \
              f'"method": "echo"}}}}'

    def send() -> None:
        frontend.shell.send_multipart(signed(frontend.session, json.dumps(header).encode(),
                                             content=content.encode()))

    expect_bad(kut, frontend, "invalid_request", send, caplog)
    reply = frontend.wait_reply_to({"header": header})
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)
    assert kut.kernel.io_failures == 0


@pytest.mark.parametrize("parts", [
    {"header": header_json(msg_type=True)},
    {"header": header_json(), "content": b"[1, 2]"},
    {"header": b"[]"},
], ids=["no_msg_type", "content_not_object", "header_not_object"])
def test_bad_input_missing_fields(kut: KernelUnderTest, frontend: RawFrontend,
                                  parts: dict[str, bytes],
                                  caplog: pytest.LogCaptureFixture) -> None:
    expect_bad(kut, frontend, "missing_fields", lambda: frontend.shell.send_multipart(
        signed(frontend.session, **parts)), caplog)


def test_bad_input_oversized(make_kernel: Callable[..., KernelUnderTest], raw_frontend: MakeRaw,
                             caplog: pytest.LogCaptureFixture) -> None:
    kut = make_kernel(max_message_bytes=64 * 1024)
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    # Over the limit in all, each frame under it: a frame over it ends its connection
    # unread (ZMQ_MAXMSGSIZE, test_impl_load.py).
    msg = frontend.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "jsonrpc": "2.0", "id": 1, "method": "echo"}})
    expect_bad(kut, frontend, "oversized", lambda: frontend.session.send(
        frontend.shell, msg, buffers=[b"b" * 40_000, b"b" * 40_000]), caplog)


def test_bad_input_unknown_msg_type(kut: KernelUnderTest, frontend: RawFrontend,
                                    caplog: pytest.LogCaptureFixture) -> None:
    # Not a request (no "_request"): counted, and nothing to reply to.
    expect_bad(kut, frontend, "unknown_msg_type", lambda: frontend.send(
        frontend.shell, "bogus", {}), caplog)


def test_bad_input_unknown_comm(kut: KernelUnderTest, frontend: RawFrontend,
                                caplog: pytest.LogCaptureFixture) -> None:
    expect_bad(kut, frontend, "unknown_comm", lambda: frontend.request(
        uuid.uuid4().hex, "echo"), caplog)


def test_bad_input_request_on_closed_comm(kut: KernelUnderTest, frontend: RawFrontend,
                                          caplog: pytest.LogCaptureFixture) -> None:
    comm_id = open_and_wait(frontend, ECHO)
    frontend.wait_idle(frontend.send(frontend.shell, "comm_close", {"comm_id": comm_id}))
    expect_bad(kut, frontend, "closed_comm", lambda: frontend.request(comm_id, "echo"), caplog)


def test_bad_input_unknown_reply(kut: KernelUnderTest, frontend: RawFrontend,
                                 caplog: pytest.LogCaptureFixture) -> None:
    comm_id = open_and_wait(frontend, ECHO)
    expect_bad(kut, frontend, "unknown_reply", lambda: frontend.send(
        frontend.shell, "comm_msg",
        {"comm_id": comm_id, "data": {"jsonrpc": "2.0", "id": 1, "result": 2}}), caplog)


def test_bad_input_invalid_request(kut: KernelUnderTest, frontend: RawFrontend,
                                   caplog: pytest.LogCaptureFixture) -> None:
    comm_id = open_and_wait(frontend, ECHO)
    holder: dict[str, Any] = {}

    def send() -> None:
        holder["msg"] = frontend.send(frontend.shell, "comm_msg", {
            "comm_id": comm_id, "data": {"jsonrpc": "2.0", "id": 5, "method": 42}})

    expect_bad(kut, frontend, "invalid_request", send, caplog)
    assert frontend.wait_reply_to(holder["msg"])["error"]["code"] == -32600


def test_bad_input_unknown_target(kut: KernelUnderTest, frontend: RawFrontend,
                                  caplog: pytest.LogCaptureFixture) -> None:
    comm_id = uuid.uuid4().hex
    with caplog.at_level(logging.WARNING, logger="commspec.kernel"):
        frontend.open_comm("no.such.target", comm_id)
        closed = frontend.wait_iopub(lambda m: m["msg_type"] == "comm_close",
                                     what="comm_close answering the unknown target")
    assert closed["content"]["comm_id"] == comm_id
    rejected = kut.sink.wait_for(match(machine="kernel_comm", object=comm_id))
    assert (rejected.event, rejected.dest) == ("rejected", "closed")
    assert kut.kernel.bad_input["unknown_target"] == 1
    assert kut.kernel.comm_states() == {}
    kernel_still_answers(frontend)


@pytest.fixture
def xsub(kut: KernelUnderTest) -> Iterator[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.XSUB)
    sock.linger = 0
    sock.connect(kut.kernel.connection_info.url("iopub"))
    yield sock
    sock.close(linger=0)
    context.term()


@pytest.mark.parametrize(("frame", "counted"), [
    # libzmq's XPUB drops an unsubscribe it has no subscription for before we see it;
    # the kernel's own check (unknown_unsubscribe) stays as a second line.
    (b"\x00never-subscribed", {}),
    (b"\x07not a subscription", {"iopub_frame": 1}),
], ids=["unsubscribe_without_subscribe", "not_a_subscription"])
def test_bad_input_on_iopub(kut: KernelUnderTest, xsub: zmq.Socket[bytes], frame: bytes,
                            counted: dict[str, int]) -> None:
    xsub.send(frame)
    xsub.send(b"\x01sync")  # then a real subscription: its welcome proves both were read
    assert xsub.poll(int(WAIT * 1000)), "no welcome for the XSUB's subscription"
    topic, *_ = xsub.recv_multipart()
    assert topic == b"sync"
    assert kut.kernel.bad_input == counted
    assert kut.kernel.subscriptions == 1
    assert kut.kernel.presence_state == "connected"


@pytest.mark.parametrize(("msg_type", "content", "fields"), [
    ("execute_request", {"code": "1+1", "silent": False}, {"execution_count": 1}),
    ("complete_request", {"code": "pri", "cursor_pos": 3},
     {"matches": [], "cursor_start": 3, "cursor_end": 3}),
    ("inspect_request", {"code": "x", "cursor_pos": 1, "detail_level": 0}, {"found": False}),
    ("history_request", {"output": False, "raw": True, "hist_access_type": "tail", "n": 10},
     {"history": []}),
])
def test_unserved_requests_get_an_error_reply(kut: KernelUnderTest, frontend: RawFrontend,
                                              msg_type: str, content: dict[str, Any],
                                              fields: dict[str, Any]) -> None:
    """A stock client's everyday requests end in a reply that says why (this kernel runs
    no code), with the fields a client reads without checking status; not bad input."""
    request = frontend.send(frontend.shell, msg_type, content)
    reply = frontend.shell_reply(msg_type.replace("_request", "_reply"))
    assert reply["parent_header"]["msg_id"] == request["header"]["msg_id"]
    body = reply["content"]
    assert (body["status"], body["ename"]) == ("error", "NoCodeExecution")
    assert "runs no code" in body["evalue"]
    assert {key: body[key] for key in fields} == fields
    frontend.wait_idle(request)
    assert kut.kernel.bad_input == {}


def test_execute_request_publishes_its_error(kut: KernelUnderTest, frontend: RawFrontend) -> None:
    request = frontend.send(frontend.shell, "execute_request", {"code": "1+1"})
    error = frontend.wait_iopub(lambda m: m["msg_type"] == "error", what="error")
    assert error["parent_header"]["msg_id"] == request["header"]["msg_id"]
    assert error["content"]["ename"] == "NoCodeExecution"
    frontend.wait_idle(request)
    frontend.send(frontend.shell, "execute_request", {"code": "2+2"})
    assert frontend.shell_reply("execute_reply")["content"]["execution_count"] == 1
    assert frontend.shell_reply("execute_reply")["content"]["execution_count"] == 2


def test_is_complete_is_answered_unknown(kut: KernelUnderTest, frontend: RawFrontend) -> None:
    frontend.send(frontend.shell, "is_complete_request", {"code": "1+"})
    assert frontend.shell_reply("is_complete_reply")["content"] == {"status": "unknown"}


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_unknown_request_is_answered_and_counted(kut: KernelUnderTest, frontend: RawFrontend,
                                                 channel: str) -> None:
    request = frontend.send(getattr(frontend, channel), "bogus_request", {})
    reply = frontend.recv(getattr(frontend, channel), WAIT)
    assert reply is not None, "no reply to an unknown request"
    assert reply["msg_type"] == "bogus_reply"
    assert reply["parent_header"]["msg_id"] == request["header"]["msg_id"]
    assert (reply["content"]["status"], reply["content"]["ename"]) == \
        ("error", "UnknownMessageType")
    assert kut.kernel.bad_input["unknown_msg_type"] == 1
