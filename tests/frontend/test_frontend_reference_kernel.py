"""The frontend against our KernelEndpoint: both endpoints' traces tell one story.

In-process kernels share the test's trace sink with the frontends (the
``endpoint`` field tells them apart); kernels that must die or freeze run as
``commspec kernel`` subprocesses, ended by pid.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest
import zmq
from fe_kernels import KernelProcess
from fe_support import TEST_OPTIONS, FrontendFactory

from commspec.impl.comm import Comm, Deferred
from commspec.impl.errors import CommRefused, Disconnected, RemoteError, Undeliverable
from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.frontend import endpoint as frontend_endpoint
from commspec.impl.kernel import KernelEndpoint
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.impl.tracing import ListSink, Tee, match
from commspec.model.machines import FrontendCommState, SessionState
from commspec.model.trace import TraceEvent

WAIT = 15.0


def never_answer(comm: Comm) -> threading.Event:
    """Make ``comm`` take the kernel's "ask" requests and never answer them."""
    asked = threading.Event()
    kept: list[Deferred] = []

    def ask(params: Any) -> Deferred:
        kept.append(Deferred())
        asked.set()
        return kept[-1]

    comm.on_request("ask", ask)
    return asked


def test_waits_for_welcome(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    # Open and ask at once: whatever the timing, nothing goes out before the welcome.
    frontend = frontends(reference_kernel.connection_file)
    comm = frontend.open_comm(ECHO)
    assert comm.request("echo", "first").result(WAIT) == "first"
    me = frontend.name
    welcomed = trace.wait_for(match(endpoint=me, machine="session", event="welcomed"))
    opened = trace.wait_for(match(endpoint=me, machine="frontend_comm", event="opened_by_frontend"))
    sent = trace.wait_for(match(endpoint=me, machine="request", event="sent"))
    assert welcomed.time <= opened.time <= sent.time
    subscribed = trace.wait_for(match(endpoint="kernel", machine="presence", event="subscribe"))
    kernel_opened = trace.wait_for(
        match(endpoint="kernel", machine="kernel_comm", object=comm.comm_id)
    )
    assert subscribed.time <= kernel_opened.time


def test_reconnect_and_reconcile(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    held: dict[str, Future[Any]] = {}
    comms: dict[str, Comm] = {}

    def on_event(event: TraceEvent) -> None:
        # The moment the reconnect begins (before any welcome can be handled), make a
        # request on each stale comm: they wait for the welcome, then go out.
        if event.machine == "session" and event.dest == "reconnecting":
            held.update({kind: comm.request("echo", kind) for kind, comm in comms.items()})

    # a long grace, so the cancel by reconciling always beats a NoReply
    options = replace(TEST_OPTIONS, no_reply_grace=2.0)
    frontend = frontends(
        reference_kernel.connection_file, sink=Tee(trace, on_event), options=options
    )
    frontend.wait_ready(WAIT)
    comms["persistent"] = frontend.open_comm(ECHO_PERSISTENT, persistent=True)
    comms["default"] = frontend.open_comm(ECHO)
    asked = {kind: never_answer(comm) for kind, comm in comms.items()}
    calls = {kind: comm.request("call_frontend", {"method": "ask"}) for kind, comm in comms.items()}
    for kind, event in asked.items():
        assert event.wait(WAIT), f"the kernel never asked the frontend on the {kind} comm"
    persistent, default = comms["persistent"], comms["default"]

    frontend.disconnect()
    for call in calls.values():
        with pytest.raises(Disconnected):
            call.result(WAIT)
    # the kernel applied both policies when this frontend's presence topic went away
    trace.wait_for(match(endpoint="kernel", object=persistent.comm_id, dest="detached"))
    trace.wait_for(match(endpoint="kernel", object=default.comm_id, dest="closed"))
    trace.wait_for(match(endpoint="kernel", machine="request", event="peer_lost"), count=2)

    frontend.reconnect()
    frontend.wait_ready(WAIT)
    me = frontend.name
    trace.wait_for(match(endpoint=me, object=persistent.comm_id, event="confirmed"))
    # gone either way: comm_info does not list it (not_found), or the kernel's comm_close
    # of the loss reaches the new subscription first (libzmq's XPUB delivers to a
    # subscriber as soon as it has read the subscription, before the kernel has)
    trace.wait_for(match(endpoint=me, object=default.comm_id, dest="closed"))
    trace.wait_for(match(endpoint="kernel", object=persistent.comm_id, event="frontend_back"))
    assert persistent.state is FrontendCommState.OPEN
    assert default.state is FrontendCommState.CLOSED
    assert held["persistent"].result(WAIT) == "persistent"
    # held while its comm was stale, and never sent: the comm was gone by the time
    # comm_info_reply (or the kernel's comm_close) decided
    never_sent = held["default"].exception(WAIT)
    assert isinstance(never_sent, Undeliverable), never_sent
    assert not trace.find(match(endpoint=me, machine="request", object=never_sent.msg_id,
                                event="sent")), "a request on a stale comm went out"
    assert reference_kernel.bad_input.get("closed_comm", 0) == 0
    # the re-attached persistent comm works both ways again
    assert persistent.request("call_frontend", {"method": "missing"}).exception(WAIT)
    assert persistent.request("echo", 2).result(WAIT) == 2


def test_other_frontends_comms_survive_a_departure(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    leaving = frontends(reference_kernel.connection_file)
    staying = frontends(reference_kernel.connection_file)
    leaving.wait_ready(WAIT)
    staying.wait_ready(WAIT)
    gone = leaving.open_comm(ECHO)
    kept = staying.open_comm(ECHO)
    assert gone.request("echo", 1).result(WAIT) == 1
    assert kept.request("echo", 1).result(WAIT) == 1
    leaving.close()
    trace.wait_for(match(endpoint="kernel", object=gone.comm_id, dest="closed"))
    assert kept.request("echo", 2).result(WAIT) == 2
    assert kept.state is FrontendCommState.OPEN


def test_a_comm_the_kernel_refused_says_so(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    """The kernel answers a comm_open for a target it lacks with comm_close: requests
    made on that comm, before the refusal arrived and after it, end as CommRefused
    naming the target, not as a bare close or "nobody could receive it"."""
    frontend = frontends(reference_kernel.connection_file)
    frontend.wait_ready(WAIT)
    comm = frontend.open_comm("no.such.target")
    before = comm.request("echo", 1)
    with pytest.raises(CommRefused) as first:
        before.result(WAIT)
    # pending when the refusal came (cancelled), or made after it had come (undeliverable)
    assert first.value.state in ("cancelled", "undeliverable")
    assert first.value.comm_id == comm.comm_id
    assert "no target 'no.such.target'" in str(first.value)
    with pytest.raises(CommRefused) as after:
        comm.request("echo", 2).result(WAIT)
    assert after.value.state == "undeliverable"
    assert "no target 'no.such.target'" in str(after.value)
    assert str(after.value).count("nobody could receive it") == 0
    # a comm closed for any other reason still says only that
    closed = frontend.open_comm(ECHO)
    closed.close()
    with pytest.raises(Undeliverable, match="its comm is closed") as plain:
        closed.request("echo", 3).result(WAIT)
    assert not isinstance(plain.value, CommRefused)


def test_deferred_reply_is_not_mistaken_for_no_reply(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory
) -> None:
    # The kernel answers "sleep" from a timer: its idle must follow the reply, or the
    # frontend would fail the request as NoReply after its 50 ms grace.
    frontend = frontends(reference_kernel.connection_file)
    comm = frontend.open_comm(ECHO)
    assert comm.request("sleep", {"seconds": 0.3}).result(WAIT) == {"slept": 0.3}


def test_adopting_a_persistent_comm_left_by_another_frontend(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    first = frontends(reference_kernel.connection_file)
    plot = first.open_comm(ECHO_PERSISTENT, persistent=True)
    assert plot.request("echo", "drawn").result(WAIT) == "drawn"
    first.close()
    trace.wait_for(match(endpoint="kernel", object=plot.comm_id, dest="detached"))

    second = frontends(reference_kernel.connection_file)
    second.register_target(ECHO_PERSISTENT, lambda comm, data: None)
    adopted = second.adopt_comms().result(WAIT)
    assert [c.comm_id for c in adopted] == [plot.comm_id]
    trace.wait_for(match(endpoint=second.name, object=plot.comm_id, event="confirmed"))
    assert adopted[0].request("echo", "again").result(WAIT) == "again"


@pytest.fixture
def frozen(commspec_kernel_process: KernelProcess) -> Iterator[KernelProcess]:
    """The kernel process, to be SIGSTOPped by the test; always resumed before it is killed."""
    try:
        yield commspec_kernel_process
    finally:
        if commspec_kernel_process.process.poll() is None:
            os.kill(commspec_kernel_process.process.pid, signal.SIGCONT)


def test_kernel_loss_fails_pending_requests(
    commspec_kernel_process: KernelProcess, frontends: FrontendFactory, trace: ListSink
) -> None:
    frontend = frontends(commspec_kernel_process.connection_file)
    frontend.wait_ready(WAIT)
    comm = frontend.open_comm(ECHO)
    pending = comm.request("sleep", {"seconds": 600})
    trace.wait_for(match(endpoint=frontend.name, machine="request", event="sent"))
    commspec_kernel_process.kill()
    with pytest.raises(Disconnected):
        pending.result(WAIT)
    trace.wait_for(match(endpoint=frontend.name, machine="session", event="link_lost"))
    assert frontend.state is SessionState.LOST
    assert comm.state is FrontendCommState.STALE


def test_frozen_kernel_is_lost_by_heartbeat(
    frozen: KernelProcess, frontends: FrontendFactory, trace: ListSink
) -> None:
    # A frozen kernel closes no connection: only the heartbeat can tell.
    options = replace(TEST_OPTIONS, heartbeat_interval=0.1, heartbeat_timeout=0.5)
    frontend: FrontendEndpoint = frontends(frozen.connection_file, options=options)
    frontend.wait_ready(WAIT)
    comm = frontend.open_comm(ECHO)
    assert comm.request("echo", 1).result(WAIT) == 1
    pending = comm.request("sleep", {"seconds": 600})
    os.kill(frozen.process.pid, signal.SIGSTOP)
    with pytest.raises(Disconnected):
        pending.result(WAIT)
    assert frontend.state is SessionState.LOST


def test_stdin_requests_are_answered(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory
) -> None:
    frontend = frontends(reference_kernel.connection_file)
    frontend.on_input_request(lambda prompt, password: f"typed at {prompt}")
    later: Future[Any] = Future()
    frontend.on_rpc_request(lambda method, params: later if method == "slow" else [method, params])
    comm = frontend.open_comm(ECHO)
    assert comm.request("ask_stdin", {"prompt": "name?"}).result(WAIT) == "typed at name?"
    answer = comm.request("ask_stdin", {"method": "pick", "params": {"n": 1}}).result(WAIT)
    assert answer == ["pick", {"n": 1}]
    pending = comm.request("ask_stdin", {"method": "slow"})
    answerer = threading.Thread(target=lambda: later.set_result("late but fine"))
    answerer.start()
    assert pending.result(WAIT) == "late but fine"
    answerer.join(WAIT)


def test_auto_reconnect(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    options = replace(TEST_OPTIONS, auto_reconnect=True, reconnect_delay=0.05)
    frontend = frontends(reference_kernel.connection_file, options=options)
    comm = frontend.open_comm(ECHO_PERSISTENT, persistent=True)
    assert comm.request("echo", 1).result(WAIT) == 1
    frontend.disconnect()
    trace.wait_for(match(endpoint=frontend.name, machine="session", event="reconciled"))
    frontend.wait_ready(WAIT)
    assert comm.state is FrontendCommState.OPEN
    assert comm.request("echo", 2).result(WAIT) == 2


def test_an_answer_json_cannot_carry_is_an_internal_error(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory
) -> None:
    # Not a silent NoReply: the caller still gets its one outcome.
    frontend = frontends(reference_kernel.connection_file)
    comm = frontend.open_comm(ECHO)
    assert comm.request("echo", 1).result(WAIT) == 1  # the kernel holds the comm now
    kernel_comm = reference_kernel.comm(comm.comm_id)
    assert kernel_comm is not None
    kernel_comm.on_request("unencodable", lambda params: object())
    with pytest.raises(RemoteError) as caught:
        comm.request("unencodable").result(WAIT)
    assert caught.value.code == -32603
    assert comm.request("echo", 2).result(WAIT) == 2


def test_answers_to_another_frontends_requests_are_not_bad_input(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory, trace: ListSink
) -> None:
    # IOPub reaches every frontend: both hold the kernel's comm and see each other's replies.
    one = frontends(reference_kernel.connection_file)
    other = frontends(reference_kernel.connection_file)
    for frontend in (one, other):
        frontend.register_target(ECHO, lambda comm, data: None)
        frontend.wait_ready(WAIT)
    shared = reference_kernel.open_comm(ECHO)
    shared.on_request("echo", lambda params: params)
    for frontend in (one, other):
        trace.wait_for(match(endpoint=frontend.name, machine="frontend_comm",
                             object=shared.comm_id, dest="open"))
    mine, theirs = one.comms()[shared.comm_id], other.comms()[shared.comm_id]
    assert mine.request("echo", "first").result(WAIT) == "first"
    # IOPub is ordered: once the other's own answer is in, so was the first one's reply
    assert theirs.request("echo", "second").result(WAIT) == "second"
    assert one.bad_input == {} and other.bad_input == {}


def test_a_reconnect_that_cannot_open_its_sockets_leaves_the_session_lost(
    reference_kernel: KernelEndpoint, frontends: FrontendFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the model-based tests: a reconnect whose sockets failed (EADDRINUSE on a
    # monitor) left the session "reconnecting" for good, waiting for a welcome.
    frontend = frontends(reference_kernel.connection_file)
    frontend.wait_ready(WAIT)

    def no_sockets(*args: Any, **kwargs: Any) -> None:
        raise zmq.ZMQError(errno.EADDRINUSE)

    monkeypatch.setattr(frontend_endpoint, "Link", no_sockets)
    with pytest.raises(zmq.ZMQError):
        frontend.reconnect()
    assert frontend.state is SessionState.LOST
    monkeypatch.undo()
    frontend.reconnect()  # and it can try again
    frontend.wait_ready(WAIT)
