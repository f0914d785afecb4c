"""The test-control socket (SPEC.md, "A kernel in any language"): each method answered
as specified, its events, its refusals, and nothing answered without the key.

The kernel runs in this process with its control socket on 127.0.0.1; the harness's end
is :class:`~commspec.mbt.external.ControlClient`; a reference frontend is the subscriber
that answers the kernel's requests. Every wait is bounded; everything is closed at
teardown."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq

from commspec.impl.comm import Comm, Deferred
from commspec.impl.control import REQUEST_TYPE, ControlError, ControlServer
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.impl.wire import Codec
from commspec.mbt.external import ControlClient, free_loopback_port

WAIT = 10.0
OPTIONS = FrontendOptions(heartbeat_interval=0.2, heartbeat_timeout=2.0,
                          connect_timeout=20.0, probe_interval=0.05, no_reply_grace=0.05)


@dataclass
class Controlled:
    kernel: KernelEndpoint
    server: ControlServer
    client: ControlClient


@pytest.fixture
def controlled(tmp_path: Path) -> Iterator[Controlled]:
    kernel = KernelEndpoint(tmp_path / "kernel.json", config=KernelConfig(
        heartbeat=HeartbeatSettings(0.1, 1.0), stop_linger=0.2)).start()
    server: ControlServer | None = None
    client: ControlClient | None = None
    try:
        endpoint = f"tcp://127.0.0.1:{free_loopback_port()}"
        server = ControlServer(kernel, endpoint).start()
        client = ControlClient(endpoint, kernel.connection_info)
        yield Controlled(kernel, server, client)
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.stop()
        kernel.stop()


@pytest.fixture
def frontend(controlled: Controlled) -> Iterator[FrontendEndpoint]:
    fe = FrontendEndpoint(controlled.kernel.connection_file, options=OPTIONS)
    try:
        fe.wait_ready(WAIT)
        yield fe
    finally:
        fe.close()


def answer_asks(frontend: FrontendEndpoint) -> None:
    """The frontend takes the comms the kernel opens and answers ``ask`` with its params."""
    def taken(comm: Comm, data: Any) -> None:
        comm.on_request("ask", lambda params: {"asked": params})

    for target in (ECHO, ECHO_PERSISTENT):
        frontend.register_target(target, taken)


def state_when(client: ControlClient, holds: Callable[[dict[str, Any]], bool]
               ) -> dict[str, Any]:
    """The kernel's state once ``holds`` is true of it (polled, bounded: the last state
    read if it never is, for the caller's assertion to show)."""
    deadline = time.monotonic() + WAIT
    while True:
        state: dict[str, Any] = client.call("state")
        if holds(state) or time.monotonic() > deadline:
            return state


def subscribed(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda state: state["subscribers"] == n


def test_state_gives_the_counts_and_the_bound(controlled: Controlled) -> None:
    state = controlled.client.call("state")
    assert state == {"subscribers": 0, "late_replies": 0, "pending": 0, "stdin_pending": 0,
                     "comms": {}, "max_detached": controlled.kernel.config.max_detached,
                     "hold_inbound": True}


def test_open_while_nobody_is_subscribed_is_refused_and_opens_nothing(
        controlled: Controlled) -> None:
    with pytest.raises(ControlError) as refused:
        controlled.client.call("open", {"target": ECHO, "persistent": False, "owner": None})
    assert refused.value.code == -32001, refused.value
    assert controlled.kernel.comm_states() == {}


def test_open_request_and_close_through_the_control_socket(
        controlled: Controlled, frontend: FrontendEndpoint) -> None:
    answer_asks(frontend)
    client = controlled.client
    assert state_when(client, subscribed(1))["subscribers"] == 1
    opened = client.call("open", {"target": ECHO_PERSISTENT, "persistent": True,
                                  "owner": frontend.session_id})
    comm_id = opened["comm_id"]
    assert controlled.kernel.comm_owner(comm_id) == frontend.session_id.encode()
    assert client.call("state")["comms"] == {comm_id: "open"}

    handle, ended = client.call_with_event(
        "request", {"comm_id": comm_id, "method": "ask", "params": {"slot": 1}})
    assert isinstance(handle["request"], str)
    assert ended.result(WAIT) == {"event": "ended", "request": handle["request"],
                                  "outcome": "resolved", "result": {"asked": {"slot": 1}}}

    assert client.call("close", {"comm_id": comm_id}) == {}
    assert controlled.kernel.comm(comm_id) is None


def test_a_request_whose_frontend_leaves_ends_invalidated(
        controlled: Controlled, frontend: FrontendEndpoint) -> None:
    client = controlled.client
    state_when(client, subscribed(1))
    # the frontend takes the comm and holds its answer: the request stays pending
    def holds_its_answer(comm: Comm, data: Any) -> None:
        comm.on_request("ask", lambda params: Deferred())

    frontend.register_target(ECHO_PERSISTENT, holds_its_answer)
    comm_id = client.call("open", {"target": ECHO_PERSISTENT, "persistent": True,
                                   "owner": frontend.session_id})["comm_id"]
    _, ended = client.call_with_event("request", {"comm_id": comm_id, "method": "ask",
                                                  "params": None})
    assert state_when(client, lambda state: state["pending"] == 1)["pending"] == 1
    frontend.close()
    event = ended.result(WAIT)
    assert (event["outcome"], event["error"]["code"]) == ("invalidated", -32002), event


def test_stdin_asks_the_frontend_named(controlled: Controlled,
                                       frontend: FrontendEndpoint) -> None:
    frontend.on_input_request(lambda prompt, password: f"answer to {prompt}")
    state_when(controlled.client, subscribed(1))
    _, ended = controlled.client.call_with_event("stdin", {"identity": frontend.session_id})
    event = ended.result(WAIT)
    assert (event["outcome"], event["result"]) == ("replied", "answer to mbt?"), event


@pytest.mark.parametrize(("method", "params", "code", "names"), [
    ("dance", {}, -32601, "dance"),
    ("close", {"comm_id": "nope"}, -32003, "nope"),
    ("close", {"comm_id": 7}, -32602, "comm_id"),
    ("request", {"comm_id": "nope", "method": "ask"}, -32003, "nope"),
    ("open", {"target": ECHO, "persistent": "yes", "owner": None}, -32602, "persistent"),
    ("stdin", {}, -32602, "identity"),
    ("hold_inbound", {"timeout": -1}, -32602, "timeout"),
])
def test_a_bad_control_request_is_refused_naming_why_and_changes_nothing(
        controlled: Controlled, method: str, params: dict[str, Any], code: int,
        names: str) -> None:
    with pytest.raises(ControlError) as refused:
        controlled.client.call(method, params)
    assert refused.value.code == code and names in refused.value.message, refused.value
    assert controlled.client.call("state")["comms"] == {}


def test_an_unsigned_request_is_dropped_and_counted_never_answered(
        controlled: Controlled) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        sock.linger = 0
        sock.connect(controlled.server.endpoint)
        wrong_key = Codec(b"not the key")
        sock.send_multipart(wrong_key.encode(wrong_key.new_msg_id(), REQUEST_TYPE,
                                             {"method": "state", "params": {}}))
        # paced by signed requests (their answers prove the control thread is reading)
        deadline = time.monotonic() + WAIT
        while controlled.server.bad_messages < 1 and time.monotonic() < deadline:
            controlled.client.call("state")
        assert controlled.server.bad_messages == 1
        assert not sock.poll(0), "an unsigned request was answered"
    finally:
        sock.close()
        context.term()


def test_hold_inbound_answers_once_held_then_says_both_were_queued(
        controlled: Controlled, frontend: FrontendEndpoint) -> None:
    state_when(controlled.client, lambda state: state["subscribers"] == 1)
    comm = frontend.open_comm(ECHO)
    answered, held = controlled.client.call_with_event("hold_inbound", {"timeout": 5})
    assert answered == {}
    comm.notify("note", {"n": 1})  # on shell
    frontend.drop_iopub()  # an unsubscribe
    assert held.result(WAIT) == {"event": "held", "queued": True}
