"""``commspec kernel`` as a kernel in any language: its trace file and its control socket,
driven by the generic out-of-process adapter (``commspec.mbt.external``).

Kernels run as processes of their own, started through jupyter_client's KernelManager
and always stopped; every wait is bounded."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from commspec.cli import main
from commspec.conform.kernel import KernelSource, running_kernel
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.impl.tracing import ListSink
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.errors import MbtFailure
from commspec.mbt.external import TRACE_ENV, ExternalKernel, free_loopback_port
from commspec.model.trace import TraceEvent

WAIT = 10.0
START = 60.0
KERNEL_CMD = (f"{shlex.quote(sys.executable)} -m commspec kernel --connection-file "
              "{connection_file} --heartbeat-interval 0.05 --heartbeat-timeout 0.25")
OPTIONS = FrontendOptions(heartbeat_interval=0.2, heartbeat_timeout=2.0,
                          connect_timeout=20.0, probe_interval=0.05, no_reply_grace=0.05)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (from /proc: its sockets' inodes)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture
def external() -> Iterator[tuple[ExternalKernel, ListSink]]:
    kernel = ExternalKernel(KernelSource(cmd=KERNEL_CMD), start_timeout=START)
    sink = ListSink()
    try:
        kernel.start(sink)
        yield kernel, sink
    finally:
        kernel.stop()


def test_the_kernel_traces_to_its_file_and_answers_its_control_socket(
        external: tuple[ExternalKernel, ListSink]) -> None:
    kernel, sink = external
    assert kernel.subscriber_count == 0
    frontend = FrontendEndpoint(kernel.connection_file, options=OPTIONS)
    try:
        frontend.wait_ready(WAIT)
        # the subscribe, read back from the kernel's trace file
        sink.wait_for(lambda e: e.machine == "presence" and e.event == "subscribe", WAIT)
        comm_id = kernel.open_comm("commspec.echo.persistent", True, frontend.session_id)
        assert sink.wait_for(lambda e: e.machine == "kernel_comm" and e.object == comm_id,
                             WAIT)
        assert kernel.subscriber_count == 1
    finally:
        frontend.close()
    kernel.stop()
    kernel.stop()  # twice is safe
    # the shutdown's own transitions were read before stop returned
    assert any(e.machine == "kernel_comm" and e.object == comm_id and e.dest == "closed"
               for e in sink.events), [e for e in sink.events if e.object == comm_id]


def test_the_control_socket_is_bound_only_when_asked_for(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    off = KernelSource(cmd=KERNEL_CMD, env=((TRACE_ENV, str(trace)),))
    with running_kernel(off, START) as running:
        pid = running.pid
        assert pid is not None
        jupyter = {running.info[f"{c}_port"] for c in ("shell", "iopub", "stdin",
                                                        "control", "hb")}
        assert listening_ports(pid) == jupyter
    assert trace.exists()  # the trace was written all the same (COMMSPEC_TRACE alone)
    kernel = ExternalKernel(KernelSource(cmd=KERNEL_CMD), start_timeout=START)
    try:
        kernel.start(ListSink())
        assert kernel._kernel is not None and kernel._kernel.pid is not None
        ports = listening_ports(kernel._kernel.pid)
        assert len(ports - jupyter_ports(kernel)) == 1, ports
    finally:
        kernel.stop()


def jupyter_ports(kernel: ExternalKernel) -> set[int]:
    assert kernel._kernel is not None
    info = kernel._kernel.info
    return {info[f"{c}_port"] for c in ("shell", "iopub", "stdin", "control", "hb")}


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5999", "ipc:///tmp/x", "nonsense"])
def test_a_control_endpoint_off_loopback_is_refused_naming_it(
        endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMMSPEC_CONTROL", endpoint)
    assert main(["kernel", "--connection-file", str(tmp_path / "k.json")]) == 2
    err = capsys.readouterr().err
    assert "COMMSPEC_CONTROL" in err and repr(endpoint) in err, err


def run_mbt(*argv: str) -> subprocess.CompletedProcess[str]:
    """``commspec mbt`` in a process of its own (its kernels are its children: it stops
    them, and the timeout bounds the whole run)."""
    return subprocess.run([sys.executable, "-m", "commspec", "mbt", *argv],
                          capture_output=True, text=True, timeout=300, check=False)


def test_commspec_mbt_drives_the_reference_kernel_out_of_process() -> None:
    run = run_mbt("--cmd", KERNEL_CMD, "--examples", "2", "--steps", "6", "--seed", "7")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: the live system (command " in run.stdout, run.stdout
    assert "directed programs   18 programs" in run.stdout, run.stdout
    assert "presence                   5 / 5" in run.stdout, run.stdout
    # with the scenarios through the adapter, every kernel-side row out of process too:
    # of request's, all but the two only a frontend's request takes (no reply)
    assert "scenarios           9 of 9 through the adapter" in run.stdout, run.stdout
    assert "kernel_comm               14 / 14" in run.stdout, run.stdout
    assert "stdin_request              8 / 8" in run.stdout, run.stdout
    assert "request                   12 / 14" in run.stdout, run.stdout
    not_taken = {line.strip() for line in run.stdout.splitlines()
                 if line.startswith("  request: ")}
    assert not_taken == {"request: pending --idle_without_reply--> no_reply",
                         "request: no_reply --late_reply--> no_reply"}, run.stdout


VARIANT_CMD = (f"{shlex.quote(sys.executable)} "
               f"{shlex.quote(str(Path(__file__).parent.parent / 'conform' / 'variant_kernel.py'))}"
               " persistent_closed_on_disconnect --connection-file {connection_file} "
               "--heartbeat-interval 0.05 --heartbeat-timeout 0.25")


def test_a_broken_kernel_out_of_process_fails_and_its_reproducer_names_it() -> None:
    # too few random programs to catch it: the directed ones do, each to its verdict
    run = run_mbt("--cmd", VARIANT_CMD, "--examples", "1", "--steps", "2", "--seed", "3")
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    assert "directed program FAILED: " in out and "directed program PASSED" not in out, out
    verdicts = [line for line in out.splitlines() if line.startswith("directed program ")]
    assert 1 <= len(verdicts) < 18, out  # only the failures are listed: the rest passed
    assert "ExternalKernel(KernelSource(cmd=" in out and "ReferenceKernel" not in out, out
    assert f"--cmd {shlex.quote(VARIANT_CMD)}" in out, out


def test_a_mismatch_names_the_machine_the_transition_the_property_and_the_section() -> None:
    from mbt_variants import ClosesPersistent

    from commspec.mbt.errors import MbtFailure
    from commspec.mbt.harness import MBT_BOUNDS, Harness
    from commspec.mbt.inprocess import InProcessSystem
    from commspec.mbt.machine import StepChooser
    from commspec.model.actions import Crash, FrontendOpen, Start
    from commspec.model.world import Target

    first = StepChooser(lambda n: 0)  # the first delivery each time: any order shows it
    with Harness(InProcessSystem(ClosesPersistent), MBT_BOUNDS) as harness:
        harness.apply(Start(0), first)
        harness.apply(FrontendOpen(0, 0, Target.PERSISTENT), first)
        with pytest.raises(MbtFailure) as failed:
            harness.apply(Crash(0), first)
    assert ("kernel_comm of comm 0: model expects open --frontend_lost[persistent]--> "
            "detached (persistent_comm_survives, SPEC 'The disconnection policy'); the "
            "kernel went to closed") in str(failed.value), failed.value


class Recording:
    """An adapter that notes every attribute the harness asks of the one it wraps."""

    def __init__(self, inner: object, asked: set[str]) -> None:
        self._inner = inner
        self._asked = asked

    def __getattr__(self, name: str) -> object:
        self._asked.add(name)
        return getattr(self._inner, name)


def test_the_harness_asks_an_adapter_only_what_kernel_adapter_declares() -> None:
    from commspec.mbt.adapter import ADAPTER_NEEDS, ADAPTER_OPTIONAL, KernelAdapter
    from commspec.mbt.harness import MBT_BOUNDS
    from commspec.mbt.machine import run
    from commspec.mbt.scenarios import directed_verdicts

    declared = {n for n in vars(KernelAdapter) if not n.startswith("_")}
    assert declared == ADAPTER_NEEDS
    asked: set[str] = set()
    result = run(lambda: Recording(ReferenceKernel(), asked), MBT_BOUNDS,  # type: ignore[arg-type, return-value]
                 examples=5, steps=10, seed=11)
    assert result.ok, result.failure
    verdicts = directed_verdicts(lambda: Recording(ReferenceKernel(), asked))  # type: ignore[arg-type, return-value]
    assert {v.status for v in verdicts} == {"passed"}, verdicts
    assert asked <= ADAPTER_NEEDS | ADAPTER_OPTIONAL, asked - ADAPTER_NEEDS - ADAPTER_OPTIONAL
    assert ADAPTER_NEEDS <= asked, ADAPTER_NEEDS - asked  # and each one is read


def test_skip_takes_actions_out_and_names_a_bad_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    from commspec.mbt.harness import MBT_BOUNDS, SUPPORTED, without
    from commspec.mbt.machine import run
    from commspec.model.actions import Freeze, Shutdown

    kept = without(SUPPORTED, ["freeze", "shutdown", "race_queued"])
    assert {"race_reply_first", "race_iopub_first", "race_together"} <= kept
    assert not {"freeze", "shutdown", "race", "race_queued"} & kept
    result = run(ReferenceKernel, MBT_BOUNDS, in_process=True, examples=30, steps=15,
                 seed=5, supported=kept)
    assert result.ok, result.failure
    taken = {type(a) for p in result.programs for a in p.actions}
    assert not taken & {Freeze, Shutdown}, taken
    with pytest.raises(ValueError, match="not an action: dance"):
        without(SUPPORTED, ["freeze", "dance"])
    assert main(["mbt", "--skip", "freeze,dance"]) == 2
    assert "not an action: dance" in capsys.readouterr().err


def test_a_kernel_without_the_control_socket_is_named_as_such() -> None:
    # --control wins over the environment: this kernel listens elsewhere, as a kernel
    # that does not take COMMSPEC_CONTROL would not listen at all
    elsewhere = KERNEL_CMD + " --control tcp://127.0.0.1:" + str(free_loopback_port())
    kernel = ExternalKernel(KernelSource(cmd=elsewhere), start_timeout=START,
                            control_timeout=1.0)
    try:
        with pytest.raises(MbtFailure, match=re.escape(
                "answered kernel_info but not, within 1 s, the control socket at "
                "tcp://127.0.0.1:")):
            kernel.start(ListSink())
    finally:
        kernel.stop()


def test_a_trace_line_that_is_not_an_event_fails_the_run(
        external: tuple[ExternalKernel, ListSink]) -> None:
    kernel, _ = external
    kernel.check_trace()  # nothing wrong yet
    with kernel.trace_file.open("a", encoding="utf-8") as trace:
        trace.write('{"endpoint": "kernel", "machine": "kernel_comm"}\n')  # keys missing
    deadline = time.monotonic() + WAIT
    paced = threading.Event()  # never set: a bounded pause between polls
    while time.monotonic() < deadline:  # the follower reads it on its own thread
        try:
            kernel.check_trace()
        except MbtFailure as e:
            assert "not a trace event" in str(e) and "kernel_comm" in str(e), e
            return
        paced.wait(0.005)
    pytest.fail("a line that is not a trace event went unnoticed")


def test_commspec_mbt_says_once_that_a_kernel_lacks_the_control_socket() -> None:
    elsewhere = KERNEL_CMD + " --control tcp://127.0.0.1:" + str(free_loopback_port())
    run = run_mbt("--cmd", elsewhere, "--control-timeout", "1", "--examples", "5")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.count("FAILED") == 1 and "the control socket at" in run.stdout, \
        run.stdout
    assert "random programs" not in run.stdout.split("\n", 1)[1], run.stdout


class ForgetsToClose(ReferenceKernel):
    """Closing a comm does nothing: a request pending on it never ends."""

    def close_comm(self, comm_id: str) -> None:
        pass


def test_the_scenarios_through_the_adapter_pass_and_can_fail() -> None:
    from commspec.mbt.adapter_edges import ADAPTER_EDGES, run_adapter_edges
    from commspec.mbt.recorder import Coverage

    coverage = Coverage()
    verdicts = run_adapter_edges(ReferenceKernel, coverage)
    assert [v.status for v in verdicts] == ["passed"] * len(ADAPTER_EDGES), verdicts
    taken = {row for row in coverage.declared() if row not in coverage.uncovered()}
    assert {("kernel_comm", "new", "rejected", "closed"),
            ("request", "pending", "error", "errored"),
            ("request", "pending", "comm_closed", "cancelled"),
            ("stdin_request", "pending", "peer_lost", "unreachable"),
            ("stdin_request", "pending", "interrupt", "interrupted"),
            ("stdin_request", "interrupted", "late_reply", "interrupted"),
            ("request", "pending", "deadline", "timed_out"),
            ("request", "timed_out", "late_reply", "timed_out")} <= taken
    broken = run_adapter_edges(ForgetsToClose, timeout=1.0)
    failed = [v.name for v in broken if v.status != "passed"]
    assert failed == [e.name for e in ADAPTER_EDGES if e.run.__name__ == "_cancelled"], broken


class SaysItCannotHold(ReferenceKernel):
    """Has hold_inbound, but its kernel says it does not serve it (as a kernel in
    another process can, in its control socket's state)."""

    def supports_hold_inbound(self) -> bool:
        return False


def test_the_queued_race_is_offered_only_where_the_kernel_serves_the_hold() -> None:
    from commspec.mbt.harness import MBT_BOUNDS
    from commspec.mbt.live import LiveSystem
    from commspec.mbt.race import Race, RaceOrder
    from commspec.model.system import SystemModel

    world = SystemModel(MBT_BOUNDS).initial()
    queued = Race(0, 0, RaceOrder.QUEUED)
    assert LiveSystem(ReferenceKernel()).can(queued, world)
    assert not LiveSystem(SaysItCannotHold()).can(queued, world)


class KernelRows:
    """An adapter that notes every row the kernel it wraps traces (machine, source,
    event, dest), read from its trace as the harness reads it."""

    def __init__(self, inner: ExternalKernel, rows: set[tuple[str, str, str, str]]) -> None:
        self._inner = inner
        self._rows = rows

    def start(self, sink: Callable[[TraceEvent], None]) -> None:
        def noted(event: TraceEvent) -> None:
            if event.endpoint == "kernel":
                self._rows.add((event.machine, event.source, event.event, event.dest))
            sink(event)

        self._inner.start(noted)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_the_scenarios_through_the_adapter_take_every_kernel_row_out_of_process() -> None:
    from commspec.mbt.adapter_edges import ADAPTER_EDGES, FRONTEND_ONLY_ROWS, run_adapter_edges
    from commspec.mbt.recorder import Coverage

    taken: set[tuple[str, str, str, str]] = set()
    for edge in ADAPTER_EDGES:
        by_edge: set[tuple[str, str, str, str]] = set()
        [verdict] = run_adapter_edges(partial(KernelRows, ExternalKernel(  # type: ignore[arg-type]
            KernelSource(cmd=KERNEL_CMD)), by_edge), scenarios=[edge])
        assert verdict.status == "passed", verdict
        assert edge.rows <= by_edge, (edge.name, edge.rows - by_edge)
        taken |= by_edge
    # every row of the kernel's requests and stdin requests, but those no kernel request
    # can take (SPEC, "No reply": only a frontend's request ends no_reply)
    kernel_side = {row for row in Coverage.declared()
                   if row[0] in ("request", "stdin_request")} - FRONTEND_ONLY_ROWS
    assert kernel_side <= taken, sorted(kernel_side - taken)
    assert not FRONTEND_ONLY_ROWS & taken
    assert ("kernel_comm", "new", "rejected", "closed") in taken


ADAPTER_VARIANT = Path(__file__).parent / "adapter_variant_kernel.py"
#: how long a scenario waits on a broken kernel for what never comes
BROKEN_WAIT = 2.0


@pytest.mark.parametrize(("variant", "breaks", "why"), [
    # its late comm answers are delivered, not counted: every late comm answer is missed
    ("late_reply_resolves", ("_resolved", "_errored", "_cancelled", "_invalidated"),
     "was never counted late"),
    ("forgets_ended_stdin", ("_replied", "_unreachable"), "was never counted late"),
    # a stdin request to a frontend that is gone pends
    ("asks_the_gone", ("_unreachable",),
     "a stdin request to an identity nobody has had not ended"),
    # a request on a detached comm pends
    ("accepts_without_subscriber", ("_invalidated",),
     "a request on a comm whose frontend had left had not ended"),
])
def test_each_scenario_through_the_adapter_fails_a_kernel_breaking_its_rule(
        variant: str, breaks: tuple[str, ...], why: str) -> None:
    from commspec.mbt.adapter_edges import ADAPTER_EDGES, run_adapter_edges

    cmd = (f"{shlex.quote(sys.executable)} {shlex.quote(str(ADAPTER_VARIANT))} {variant} "
           "--connection-file {connection_file} --heartbeat-interval 0.05 "
           "--heartbeat-timeout 0.25")
    edges = [e for e in ADAPTER_EDGES if e.run.__name__ in breaks]
    assert len(edges) == len(breaks)
    verdicts = run_adapter_edges(lambda: ExternalKernel(KernelSource(cmd=cmd)),
                                 timeout=BROKEN_WAIT, scenarios=edges)
    for v in verdicts:
        assert v.status == "failed" and why in v.detail, v
