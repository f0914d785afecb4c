"""Stock ipykernel through the grey-box adapter (``commspec.mbt.adapters.ipykernel``).

The shim loads into stock ipykernel (the venv's, a version in ``TESTED_VERSIONS``) and
reports what ipykernel does from its own sockets; the model-based harness then fails
it, naming the rule it breaks. Kernels are processes started through jupyter_client
and always stopped; every wait is bounded. These tests start real ipykernels: a few
seconds each.
"""

from __future__ import annotations

import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version

import pytest
import zmq

from commspec.cli import main
from commspec.conform.kernel import KernelSource
from commspec.impl.comm import Comm, Deferred
from commspec.impl.errors import RemoteError, RequestFailed
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.impl.tracing import ListSink
from commspec.mbt.adapters.ipykernel import (
    SKIPPED,
    TESTED_VERSIONS,
    IpykernelAdapter,
    ShimNotLoaded,
)
from commspec.mbt.harness import MBT_BOUNDS, Harness, default_supported, without
from commspec.mbt.live import LiveSystem
from commspec.mbt.machine import program_as_test
from commspec.model.actions import Crash, FrontendOpen, Start
from commspec.model.messages import METHOD_NOT_FOUND
from commspec.model.trace import TraceEvent
from commspec.model.world import Target

#: every test here starts ipykernel; ipykernel 6 has no XPUB, so no grey box to test
pytestmark = [
    pytest.mark.ipykernel,
    pytest.mark.skipif(int(version("ipykernel").split(".")[0]) < 7,
                       reason="the shim needs ipykernel >= 7 (an IOPub XPUB)"),
]

WAIT = 10.0
#: control-socket rounds of the stall test, and how long one answer may take there
ROUNDS = 30
STALL = 3.0
START = 60.0
OPTIONS = FrontendOptions(heartbeat_interval=0.2, heartbeat_timeout=2.0,
                          connect_timeout=20.0, probe_interval=0.05, no_reply_grace=0.05)


@pytest.fixture
def ipykernel() -> Iterator[tuple[IpykernelAdapter, ListSink]]:
    adapter = IpykernelAdapter(start_timeout=START)
    sink = ListSink()
    try:
        adapter.start(sink)
        yield adapter, sink
    finally:
        adapter.stop()


def _is(machine: str, event: str, obj: str | None = None) -> Callable[[TraceEvent], bool]:
    """Matches a trace event of ``machine`` taking ``event`` (on ``obj`` if given)."""
    def match(e: TraceEvent) -> bool:
        return e.machine == machine and e.event == event and (obj is None or e.object == obj)
    return match


def test_the_shim_reports_a_subscribe_and_a_comm_open_from_ipykernel(
        ipykernel: tuple[IpykernelAdapter, ListSink]) -> None:
    adapter, sink = ipykernel
    assert adapter.version in TESTED_VERSIONS
    assert adapter.subscriber_count == 0
    frontend = FrontendEndpoint(adapter.connection_file, options=OPTIONS)
    try:
        frontend.wait_ready(WAIT)
        # read from ipykernel's XPUB: the frontend's peer topic counts it
        sink.wait_for(_is("presence", "subscribe"), WAIT)
        assert adapter.subscriber_count == 1
        comm = frontend.open_comm("commspec.echo", {})
        opened = sink.wait_for(_is("kernel_comm", "opened_by_frontend", comm.comm_id), WAIT)
        assert (opened.source, opened.dest) == ("new", "open")
        assert comm.request("echo", {"x": 1}).result(WAIT) == {"x": 1}
        # a kernel request goes out on the comm and its answer resolves it
        asked = adapter.comm_request(comm.comm_id, "ask", {"slot": 0})
        sink.wait_for(_is("request", "sent"), WAIT)
        with pytest.raises(RemoteError) as refused:  # the bare frontend has no "ask"
            asked.result(WAIT)
        assert refused.value.code == METHOD_NOT_FOUND
        sink.wait_for(_is("request", "error"), WAIT)
    finally:
        frontend.close()
    # ipykernel hears the frontend go (its topics unsubscribed) and keeps its comm open
    sink.wait_for(lambda e: e.machine == "presence" and e.dest == "disconnected", WAIT)
    assert adapter.subscriber_count == 0
    assert not [e for e in sink.events if e.machine == "kernel_comm" and e.dest == "closed"]


def test_a_kernel_open_and_close_are_traced_and_shutdown_ends_the_rest(
        ipykernel: tuple[IpykernelAdapter, ListSink]) -> None:
    adapter, sink = ipykernel
    frontend = FrontendEndpoint(adapter.connection_file, options=OPTIONS)
    for target in ("commspec.echo", "commspec.echo.persistent"):
        frontend.register_target(target, lambda comm, data: None)
    try:
        frontend.wait_ready(WAIT)
        closing = adapter.open_comm("commspec.echo", False, frontend.session_id)
        kept = adapter.open_comm("commspec.echo.persistent", True, frontend.session_id)
        adapter.close_comm(closing)
        sink.wait_for(_is("kernel_comm", "closed_by_kernel", closing), WAIT)
        asked = adapter.stdin_request(frontend.session_id.encode())
        sink.wait_for(_is("stdin_request", "sent"), WAIT)
        assert asked.result(WAIT) == ""  # the reference frontend answers with no handler
        adapter.stop()
        shut = sink.wait_for(_is("kernel_comm", "kernel_shutdown", kept), WAIT)
        assert (shut.source, shut.dest) == ("open", "closed")
    finally:
        frontend.close()


def test_a_kernel_request_past_its_deadline_times_out_and_its_answer_is_late(
        ipykernel: tuple[IpykernelAdapter, ListSink]) -> None:
    adapter, sink = ipykernel
    frontend = FrontendEndpoint(adapter.connection_file, options=OPTIONS)
    answers: list[Deferred] = []

    def held(comm: Comm, data: object) -> None:
        comm.on_request("ask", lambda params: answers.append(Deferred()) or answers[-1])

    frontend.register_target("commspec.echo.persistent", held)
    try:
        frontend.wait_ready(WAIT)
        comm_id = adapter.open_comm("commspec.echo.persistent", True, frontend.session_id)
        asked = adapter.comm_request(comm_id, "ask", {}, timeout=0.2)
        with pytest.raises(RequestFailed) as failed:
            asked.result(WAIT)
        assert failed.value.state == "timed_out"
        request = sink.wait_for(_is("request", "deadline")).object
        late = adapter.late_replies
        answers[0].resolve("too late")
        sink.wait_for(_is("request", "late_reply", request), WAIT)
        assert adapter.late_replies == late + 1
    finally:
        frontend.close()


def test_the_control_socket_answers_after_requests_that_end_between_its_requests(
        ipykernel: tuple[IpykernelAdapter, ListSink]) -> None:
    """A request that ends outside a control request (here: its frontend closes the
    comm) sends its ended event from ipykernel's loop; the control socket must go on
    reading (sent straight on the socket, the event took its FD's edge: 2 stalls in 10
    runs of one directed program). Many rounds, so a stall that strikes one in a few is
    caught."""
    adapter, _ = ipykernel
    frontend = FrontendEndpoint(adapter.connection_file, options=OPTIONS)
    opened: queue.Queue[Comm] = queue.Queue()

    def hold(comm: Comm, data: object) -> None:
        comm.on_request("ask", lambda params: Deferred())
        opened.put(comm)

    frontend.register_target("commspec.echo.persistent", hold)
    # as the harness does: the state asked all the time, meanwhile
    done = threading.Event()
    stalled: list[BaseException] = []

    def ask_state() -> None:
        while not done.is_set():
            try:
                adapter.control("state", timeout=STALL)
            except BaseException as e:  # a stall: reported by the test's thread
                stalled.append(e)
                return

    asker = threading.Thread(target=ask_state, name="state-asker")
    try:
        frontend.wait_ready(WAIT)
        asker.start()
        for _ in range(ROUNDS):
            adapter.open_comm("commspec.echo.persistent", True, frontend.session_id)
            comm = opened.get(timeout=WAIT)
            asked = adapter.comm_request(comm.comm_id, "ask", {})  # pending once answered
            frontend.comm_close(comm)
            with pytest.raises(RequestFailed) as failed:
                asked.result(WAIT)
            assert failed.value.state == "cancelled"
            assert not stalled, stalled
    finally:
        done.set()
        if asker.is_alive():
            asker.join(WAIT)
        frontend.close()
    assert not stalled, stalled


def test_a_bad_control_request_is_refused_saying_why(
        ipykernel: tuple[IpykernelAdapter, ListSink]) -> None:
    adapter, _ = ipykernel
    from commspec.impl.control import ControlError

    with pytest.raises(ControlError, match="no target 'nope'"):
        adapter.open_comm("nope", False, None)
    with pytest.raises(ControlError, match="no comm"):
        adapter.close_comm("not-a-comm")
    # a message not signed with the key is dropped and counted, never answered
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    keyless = context.socket(zmq.DEALER)
    keyless.linger = 0
    try:
        keyless.connect(adapter.control_endpoint)
        keyless.send_multipart([b"<IDS|MSG>", b"not a signature", b"{}", b"{}", b"{}", b"{}"])
        deadline = time.monotonic() + WAIT
        while adapter.control("state")["bad_messages"] < 1:
            assert time.monotonic() < deadline, "the keyless message was never counted"
        assert not keyless.poll(0)
    finally:
        keyless.close()
        context.term()
    assert adapter.subscriber_count == 0  # and it still answers


def test_the_model_based_test_fails_ipykernel_naming_the_rule_it_breaks() -> None:
    """Bounded: one short program (a frontend opens a default comm and is SIGKILLed),
    seconds-scale timeouts."""
    supported = without(default_supported(MBT_BOUNDS), SKIPPED)
    system = LiveSystem(IpykernelAdapter(start_timeout=START), step_timeout=5.0, quiet=1.0)
    with Harness(system, MBT_BOUNDS, supported=supported) as harness:
        harness.apply(Start(0))
        harness.apply(FrontendOpen(0, 0, Target.DEFAULT))
        with pytest.raises(AssertionError) as failed:
            harness.apply(Crash(0))
    message = str(failed.value)
    assert "no_unobserved_default_comm" in message
    assert "kernel_comm of comm 0" in message


def test_a_kernel_that_is_not_ipykernel_is_refused_naming_it() -> None:
    kernel_cmd = (f"{shlex.quote(sys.executable)} -m commspec kernel --connection-file "
                  "{connection_file}")
    adapter = IpykernelAdapter(KernelSource(cmd=kernel_cmd), start_timeout=START)
    try:
        with pytest.raises(ShimNotLoaded, match="it is not ipykernel"):
            adapter.start(ListSink())
    finally:
        adapter.stop()


def test_a_printed_reproducer_makes_the_ipykernel_adapter_again() -> None:
    source = KernelSource(kernelspec="python3")
    code, imports = IpykernelAdapter(source).as_code()
    names: dict[str, object] = {}
    for module, name in imports:
        exec(f"from {module} import {name}", names)
    made = eval(code, names)
    assert type(made) is IpykernelAdapter and made.source == source
    program = program_as_test([Start(0), Crash(0)], MBT_BOUNDS, adapter=(code, imports))
    assert "IpykernelAdapter(KernelSource(kernelspec='python3'))" in program
    assert "ReferenceKernel" not in program


#: the CLI run's actions: frontends start, open, request and crash, the kernel opens,
#: closes and asks; what makes long programs (stdin, races, adoption, shutdown) is left
#: out, so the directed programs that remain take seconds
CLI_SKIP = ("kernel_stdin_request,race_reply_first,race_together,race_iopub_first,"
            "frontend_adopt,shutdown,exit")


def test_commspec_mbt_through_the_adapter_prints_the_rules_ipykernel_breaks(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The end-to-end run, bounded (about 10 s at load 1): one random program of up to
    6 steps, no shrinking, 5 s step timeouts, the directed programs left with crashes
    only (5 of 18); ipykernel from the kernelspec python3."""
    status = main(["mbt", "--adapter", "ipykernel", "--skip", CLI_SKIP, "--examples", "1",
                   "--steps", "6", "--max-shrinks", "0", "--step-timeout", "5",
                   "--quiet", "1", "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "kernelspec python3 through the ipykernel adapter" in out.splitlines()[0]
    assert "skipping" in out and "freeze" in out.splitlines()[0]
    assert "(no_unobserved_default_comm, SPEC 'The disconnection policy'); the kernel " \
           "stayed open" in out
    assert "persistent_comm_survives" in out
    # the reproducer replays it against ipykernel, never the reference kernel
    assert "IpykernelAdapter(KernelSource(kernelspec='python3'))" in out
    assert "ReferenceKernel" not in out
    assert "to repeat: commspec mbt --adapter ipykernel --kernelspec python3 --skip" in out
