"""The frontend against a scripted kernel: every kernel-side happening is a test step.

The scripted kernel decides when the welcome comes, whether a request is
answered, when the heartbeat goes quiet and what bad input arrives, so each
rule of the session, comm and request machines is exercised on purpose.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest
from fe_support import PROBE, TEST_OPTIONS, WAIT, FrontendFactory, connect, open_comm

from commspec.impl.comm import Deferred
from commspec.impl.core.events import Message
from commspec.impl.core.presence import peer_topic
from commspec.impl.errors import CommClosed, Disconnected, NoReply, TimedOut, Undeliverable
from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.tracing import ListSink, match
from commspec.mbt.fakes import ScriptedKernel
from commspec.model.machines import FrontendCommState, SessionState


def test_waits_for_welcome(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = frontends(fake_kernel.connection_file)
    fake_kernel.wait_subscribed(b"")
    # The kernel holds the welcome back (and ignores kernel_info): the comm and the
    # request made meanwhile must wait, not race into the slow-joiner gap.
    fake_kernel.expect("shell", "kernel_info_request")
    comm = frontend.open_comm("t")
    pending = comm.request("echo", {"n": 1})
    assert frontend.state is SessionState.CONNECTING
    assert comm.state is FrontendCommState.NEW
    assert trace.find(match(machine="request")) == []

    welcome = fake_kernel.welcome()
    _, opened = fake_kernel.expect("shell", "comm_open", skip=PROBE)
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert opened["content"]["comm_id"] == request["content"]["comm_id"] == comm.comm_id
    welcomed = trace.wait_for(match(machine="session", event="welcomed"))
    assert welcomed.msg_id == welcome["msg_id"]
    sent = trace.wait_for(match(machine="request", event="sent"))
    assert welcomed.time <= sent.time

    data = request["content"]["data"]
    fake_kernel.publish(
        "comm_msg",
        {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": data["id"], "result": 2}},
        parent=request,
    )
    assert pending.result(WAIT) == 2


def test_no_reply_after_idle_then_late_reply(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("forgotten")
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    fake_kernel.status("busy", request)
    fake_kernel.status("idle", request)
    with pytest.raises(NoReply):
        pending.result(WAIT)
    trace.wait_for(match(machine="request", object=request["msg_id"], dest="no_reply"))

    # The reply the kernel sends after all is the late reply: counted, not delivered.
    data = request["content"]["data"]
    fake_kernel.publish(
        "comm_msg",
        {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": data["id"], "result": 1}},
        parent=request,
    )
    trace.wait_for(match(machine="request", object=request["msg_id"], event="late_reply"))
    assert frontend.late_replies == 1
    assert frontend.state is SessionState.READY


def test_a_kernel_that_does_not_advertise_commspec_may_reply_after_its_idle(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink
) -> None:
    """No grace at all, and still no no_reply: only a commspec kernel promises that a reply
    precedes its request's idle. (The stock-ipykernel test shows the old behaviour fail.)"""
    frontend = connect(fake_kernel, frontends, kernel_info={"status": "ok"},
                       options=replace(TEST_OPTIONS, no_reply_grace=0.0))
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("later")
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    fake_kernel.status("idle", request)
    data = request["content"]["data"]
    fake_kernel.publish("comm_msg", {"comm_id": comm.comm_id, "data": {"id": data["id"],
                                                                       "result": "late"}},
                        parent=request)
    assert pending.result(WAIT) == "late"
    assert not trace.find(match(machine="request", dest="no_reply"))


def test_reply_before_idle_resolves(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory
) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("answered")
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    fake_kernel.status("busy", request)
    data = request["content"]["data"]
    fake_kernel.publish(
        "comm_msg",
        {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": data["id"], "result": "ok"}},
        parent=request,
    )
    fake_kernel.status("idle", request)
    assert pending.result(WAIT) == "ok"


def test_deadline_times_out(fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("slow", timeout=0.1)
    fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    with pytest.raises(TimedOut):
        pending.result(WAIT)


def test_bad_input_is_counted_and_changes_nothing(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("echo")
    _, request = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    mark = trace.mark()

    good = fake_kernel.wire.message("status", {"execution_state": "busy"})
    frames = fake_kernel.wire.session.serialize(good)
    forged = [b"", *frames[:1], b"0" * 64, *frames[2:]]
    fake_kernel.send_frames("iopub", forged)
    junk = fake_kernel.wire.session.serialize(good)
    junk[-1] = b"{not json"
    junk[1] = fake_kernel.wire.session.sign(junk[2:6])
    fake_kernel.send_frames("iopub", [b"", *junk])
    fake_kernel.publish("comm_msg", {"comm_id": "nobody", "data": {"method": "x"}})
    fake_kernel.publish(
        "comm_msg", {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": 7, "result": 0}}
    )
    # a good reply after all that still lands: the bad input moved nothing
    data = request["content"]["data"]
    fake_kernel.publish(
        "comm_msg",
        {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": data["id"], "result": 5}},
        parent=request,
    )
    assert pending.result(WAIT) == 5
    assert frontend.bad_input == {
        "iopub:missigned": 1,
        "iopub:malformed_json": 1,
        "comm_msg_for_unknown_comm": 1,
        "reply_for_unknown_request": 1,
    }
    moves = trace.find(lambda e: e.machine != "request", since=mark)
    assert moves == [], moves
    assert frontend.state is SessionState.READY
    assert comm.state is FrontendCommState.OPEN


def test_an_invalid_id_nested_deep_is_answered_with_id_null(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory
) -> None:
    """A kernel request whose id is a list nested 1,000 deep (orjson decodes it, yet
    encodes at most 255 levels): the frontend answers -32600 with id null, counts it,
    and logs it without a RecursionError."""
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    placeholder = fake_kernel.wire.message("comm_msg", {"comm_id": comm.comm_id, "data": {}})
    frames = fake_kernel.wire.session.serialize(placeholder)
    deep = "[" * 1000 + "]" * 1000
    frames[-1] = (f'{{"comm_id": "{comm.comm_id}", "data": {{"jsonrpc": "2.0", '
                  f'"id": {deep}, "method": "echo"}}}}').encode()
    frames[1] = fake_kernel.wire.session.sign(frames[2:6])
    fake_kernel.send_frames("iopub", [b"", *frames])
    _, reply = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    assert reply["parent_header"]["msg_id"] == placeholder["msg_id"]
    assert reply["content"]["data"]["id"] is None
    assert reply["content"]["data"]["error"]["code"] == -32600
    assert frontend.bad_input == {"comm_msg_invalid": 1}
    assert comm.state is FrontendCommState.OPEN


def test_heartbeat_silence_fails_pending_requests(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("never")
    fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    fake_kernel.stop_echoing()
    with pytest.raises(Disconnected):
        pending.result(WAIT)
    trace.wait_for(match(machine="session", event="link_lost"))
    assert frontend.state is SessionState.LOST
    assert comm.state is FrontendCommState.STALE
    # nothing can go out while lost
    with pytest.raises(Undeliverable):
        comm.request("later").result(WAIT)


def test_answers_kernel_requests(fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    later: list[Deferred] = []
    handed_out = threading.Event()
    comm.on_request("add", lambda params: params["a"] + params["b"])

    def slow(params: Any) -> Deferred:
        answer = Deferred()
        later.append(answer)
        handed_out.set()
        return answer

    comm.on_request("slow", slow)

    def ask(request_id: str, method: str, params: Any) -> tuple[Message, Message]:
        request = fake_kernel.publish(
            "comm_msg",
            {
                "comm_id": comm.comm_id,
                "data": {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params},
            },
        )
        _, reply = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
        return request, reply

    request, reply = ask("k1", "add", {"a": 1, "b": 2})
    assert reply["parent_header"]["msg_id"] == request["msg_id"]
    assert reply["content"]["data"] == {"jsonrpc": "2.0", "id": "k1", "result": 3}

    _, reply = ask("k2", "missing", None)
    assert reply["content"]["data"]["error"]["code"] == -32601

    # answered later, from another thread
    request = fake_kernel.publish(
        "comm_msg",
        {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": "k3", "method": "slow"}},
    )

    def answer_from_another_thread() -> None:
        # the handler ran on the frontend's I/O thread; this thread only completes it
        if handed_out.wait(WAIT):
            later[0].resolve("done")

    worker = threading.Thread(target=answer_from_another_thread)
    worker.start()
    _, reply = fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    worker.join(WAIT)
    assert reply["parent_header"]["msg_id"] == request["msg_id"]
    assert reply["content"]["data"]["result"] == "done"


def test_kernel_opened_comms(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = connect(fake_kernel, frontends)
    opened: Future[Any] = Future()
    frontend.register_target("known", lambda comm, data: opened.set_result((comm, data)))
    fake_kernel.publish(
        "comm_open", {"comm_id": "c-known", "target_name": "known", "data": {"x": 1}}
    )
    comm, data = opened.result(WAIT)
    assert (comm.comm_id, data, comm.state) == ("c-known", {"x": 1}, FrontendCommState.OPEN)

    # an open for a target this frontend does not know is answered with comm_close
    fake_kernel.publish("comm_open", {"comm_id": "c-unknown", "target_name": "nope", "data": {}})
    _, close = fake_kernel.expect("shell", "comm_close", skip=PROBE)
    assert close["content"]["comm_id"] == "c-unknown"
    trace.wait_for(match(machine="frontend_comm", object="c-unknown", dest="closed"))

    closed: Future[Any] = Future()
    comm.on_close(closed.set_result)
    fake_kernel.publish("comm_close", {"comm_id": "c-known", "data": {"bye": True}})
    assert closed.result(WAIT) == {"bye": True}
    assert comm.state is FrontendCommState.CLOSED


def test_closing_a_comm_cancels_its_requests(
    fake_kernel: ScriptedKernel, frontends: FrontendFactory
) -> None:
    frontend = connect(fake_kernel, frontends)
    comm, _ = open_comm(fake_kernel, frontend)
    pending = comm.request("never")
    fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    comm.close()
    _, close = fake_kernel.expect("shell", "comm_close", skip=PROBE)
    assert close["content"]["comm_id"] == comm.comm_id
    with pytest.raises(CommClosed):
        pending.result(WAIT)


def test_input_request_is_answered(fake_kernel: ScriptedKernel, frontends: FrontendFactory) -> None:
    frontend = connect(fake_kernel, frontends)
    frontend.on_input_request(lambda prompt, password: f"answer to {prompt}")
    execute = frontend.execute("input('name? ')", allow_stdin=True)
    identities, request = fake_kernel.expect("shell", "execute_request", skip=PROBE)
    asked = fake_kernel.reply(
        "stdin", identities, request, "input_request", {"prompt": "name? ", "password": False}
    )
    _, answer = fake_kernel.expect("stdin", "input_reply")
    assert answer["parent_header"]["msg_id"] == asked["msg_id"]
    assert answer["content"] == {"value": "answer to name? "}
    fake_kernel.reply("shell", identities, request, "execute_reply", {"status": "ok"})
    assert execute.result(WAIT)["content"]["status"] == "ok"


def test_close_ends_everything(fake_kernel: ScriptedKernel, trace: ListSink) -> None:
    frontend = FrontendEndpoint(fake_kernel.connection_file, sink=trace)
    try:
        fake_kernel.wait_subscribed(b"")
        fake_kernel.welcome()
        frontend.wait_ready(WAIT)
        comm, _ = open_comm(fake_kernel, frontend)
        pending = comm.request("never")
        fake_kernel.expect("shell", "comm_msg", skip=PROBE)
    finally:
        frontend.close()
    with pytest.raises(CommClosed):
        pending.result(WAIT)
    assert frontend.state is SessionState.CLOSED
    assert comm.state is FrontendCommState.CLOSED
    assert not [t for t in threading.enumerate() if t.name.startswith("commspec-frontend")]
    # the kernel sees this very frontend go away, by its presence topic
    gone = b"\x00" + peer_topic(frontend.session_id, fake_kernel.info.key)
    while (event := fake_kernel.subscription_event()) != gone:
        assert not event.startswith(b"\x00commspec.peer/"), event
