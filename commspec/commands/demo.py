"""``commspec demo``: a frontend is killed mid-request; the kernel applies both comm policies.

The scenario, across real processes:
1. the reference kernel starts (in this process, tracing to a JSON-lines file);
2. frontend A starts in a child process, opens a persistent comm
   (``commspec.echo.persistent``) and a default one (``commspec.echo``), and on
   each asks the kernel to ``call_frontend``: the kernel then has a request
   pending on A on both comms, which A deliberately never answers;
3. A is SIGKILLed mid-request. The kernel hears A's presence topic go away and
   applies the policies: the persistent comm is detached and its request
   invalidated; the default comm is closed, its request invalidated, and its
   close handlers (the comm's cleanup) run;
4. frontend B, A restarted in a new endpoint under A's session id (as a reloaded
   page restores its session), connects; the kernel re-attaches A's persistent
   comm to it. B reconciles its view with comm_info: it adopts the persistent
   comm, the default one is gone; then it talks on the persistent comm.

The timeline is read back from the three trace files, merged with narration.
Exit status 0 when every expected outcome happened, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commspec.helptext import plain
from commspec.impl.comm import Comm, Deferred
from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.impl.tracing import JsonLinesSink, ListSink, Tee, match
from commspec.model.trace import TraceEvent

#: how long any one step may take before the demo calls it a failure
STEP = 10.0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="kill a frontend mid-request and watch the kernel apply both comm policies",
        description=plain(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the trace files into DIR and keep them (default: a temporary directory)",
    )


def run(args: argparse.Namespace) -> int:
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return Demo(args.keep).run()
    with tempfile.TemporaryDirectory(prefix="commspec-demo-") as tmp:
        return Demo(Path(tmp)).run()


# -- frontend A, in its own process ---------------------------------------------------


def never_answer(comm: Comm) -> threading.Event:
    """Take the kernel's ``ask`` requests on ``comm`` and deliberately never answer."""
    asked = threading.Event()
    unanswered: list[Deferred] = []

    def ask(params: Any) -> Deferred:
        unanswered.append(Deferred())
        asked.set()
        return unanswered[-1]

    comm.on_request("ask", ask)
    return asked


def frontend_a(connection_file: str, trace_file: str) -> int:
    """Open both comms, leave the kernel waiting on both, report, then wait to be killed."""
    sink = JsonLinesSink(trace_file)
    frontend = FrontendEndpoint(connection_file, sink=sink)
    try:
        frontend.wait_ready(STEP)
        comms = {
            "persistent": frontend.open_comm(ECHO_PERSISTENT, persistent=True),
            "default": frontend.open_comm(ECHO),
        }
        asked = {kind: never_answer(comm) for kind, comm in comms.items()}
        for kind, comm in comms.items():
            if comm.request("echo", kind).result(STEP) != kind:
                return 1
        for comm in comms.values():
            comm.request("call_frontend", {"method": "ask", "params": {"question": 42}})
        if not all(event.wait(STEP) for event in asked.values()):
            return 1
        report = {kind: comm.comm_id for kind, comm in comms.items()}
        report["session"] = frontend.session_id
        print(json.dumps({"pid": os.getpid(), **report}), flush=True)
        sys.stdin.read()  # until killed, or until the demo goes away (EOF)
        return 0
    finally:
        frontend.close()
        sink.close()


# -- the scenario ---------------------------------------------------------------------


@dataclass
class Check:
    what: str
    ok: bool


@dataclass
class Demo:
    workdir: Path
    t0: float = field(default_factory=time.monotonic)
    narration: list[tuple[float, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def say(self, text: str) -> None:
        self.narration.append((time.monotonic(), text))

    def check(self, what: str, ok: bool) -> bool:
        self.checks.append(Check(what, ok))
        return ok

    def run(self) -> int:
        traces = {
            "kernel": self.workdir / "kernel.trace.jsonl",
            "A": self.workdir / "frontend-a.trace.jsonl",
            "B": self.workdir / "frontend-b.trace.jsonl",
        }
        for path in traces.values():
            path.unlink(missing_ok=True)
        try:
            self.scenario(traces)
        except Exception as e:  # a step that failed outright is one more failed check
            self.check(f"the scenario ran to its end ({type(e).__name__}: {e})", False)
        self.print_timeline(traces)
        return 0 if self.checks and all(c.ok for c in self.checks) else 1

    def scenario(self, traces: dict[str, Path]) -> None:
        watch = ListSink()
        kernel_file = JsonLinesSink(traces["kernel"])
        config = KernelConfig(heartbeat=HeartbeatSettings(interval=0.5, timeout=3.0))
        with (
            closing_sink(kernel_file),
            KernelEndpoint(sink=Tee(kernel_file, watch), config=config) as kernel,
        ):
            self.say(f"kernel listening; connection file {kernel.connection_file}")
            with frontend_process(kernel.connection_file, traces["A"]) as (child, report):
                persistent, default = report["persistent"], report["default"]
                self.names[persistent] = "persistent comm"
                self.names[default] = "default comm"
                self.say(
                    f"frontend A (pid {child.pid}) opened a persistent and a default comm; "
                    "the kernel now waits on A on both (A never answers)"
                )
                cleanup = threading.Event()
                for comm in kernel.comms():
                    if comm.comm_id == default:
                        comm.on_close(lambda data: cleanup.set())
                mark = watch.mark()
                self.say(f"SIGKILL frontend A (pid {child.pid}) mid-request")
                os.kill(child.pid, signal.SIGKILL)
                child.wait(STEP)
                self.expect_policies(watch, mark, persistent, default, cleanup)
            session = str(report["session"])
            self.frontend_b(kernel, traces["B"], watch, session, persistent, default)
            self.say("stopping the kernel")

    def expect_policies(
        self,
        watch: ListSink,
        since: int,
        persistent: str,
        default: str,
        cleanup: threading.Event,
    ) -> None:
        def seen(predicate: Callable[[TraceEvent], bool], count: int = 1) -> bool:
            try:
                watch.wait_for(predicate, timeout=STEP, since=since, count=count)
                return True
            except TimeoutError:
                return False

        self.check(
            "persistent comm detached",
            seen(match(machine="kernel_comm", object=persistent, dest="detached")),
        )
        self.check(
            "default comm closed",
            seen(match(machine="kernel_comm", object=default, dest="closed")),
        )
        self.check(
            "the kernel's requests on both comms invalidated",
            seen(match(machine="request", event="peer_lost", dest="invalidated"), count=2),
        )
        self.check("the default comm's cleanup ran", cleanup.wait(STEP))
        self.say("the kernel applied both policies")

    def frontend_b(
        self,
        kernel: KernelEndpoint,
        trace: Path,
        watch: ListSink,
        session: str,
        persistent: str,
        default: str,
    ) -> None:
        sink = JsonLinesSink(trace)
        with (
            closing_sink(sink),
            FrontendEndpoint(kernel.connection_file, sink=sink, session_id=session) as b,
        ):
            self.say(
                "frontend B (A restarted: a new endpoint with A's session id) connects "
                "and reconciles its view with comm_info"
            )
            b.register_target(ECHO_PERSISTENT, lambda comm, data: None)
            b.wait_ready(STEP)
            adopted = {c.comm_id: c for c in b.adopt_comms().result(STEP)}
            self.check("B adopted the persistent comm", persistent in adopted)
            self.check("the default comm is gone from the kernel", default not in adopted)
            try:
                watch.wait_for(match(object=persistent, event="frontend_back"), timeout=STEP)
                reattached = True
            except TimeoutError:
                reattached = False
            self.check("the kernel re-attached the persistent comm", reattached)
            if persistent in adopted:
                answer = adopted[persistent].request("echo", "still here").result(STEP)
                self.check("B talks on the re-attached comm", answer == "still here")
                self.say(f"B asked the persistent comm to echo, and got {answer!r}")

    # -- output -----------------------------------------------------------------------

    def print_timeline(self, traces: dict[str, Path]) -> None:
        rows: list[tuple[float, str, str]] = [(t, "", text) for t, text in self.narration]
        for who, path in traces.items():
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as f:
                events = [TraceEvent.from_json(line) for line in f if line.strip()]
            label = who if who == "kernel" else f"frontend {who}"
            for e in events:
                if e.source == e.dest and e.event == "welcomed":
                    continue  # a welcome for somebody else's subscription
                rows.append((e.time, label, self.describe(e)))
        rows.sort(key=lambda row: row[0])
        print("commspec demo: a frontend is killed mid-request; the kernel applies both policies")
        print()
        for t, who, text in rows:
            if who:
                print(f"  {t - self.t0:+8.3f}s  {who:<11} {text}")
            else:
                print(f"  {t - self.t0:+8.3f}s  -- {text}")
        print()
        for c in self.checks:
            print(f"  [{'ok' if c.ok else 'FAILED'}] {c.what}")
        verdict = all(c.ok for c in self.checks) and bool(self.checks)
        print()
        print("expected outcome: " + ("yes" if verdict else "NO"))

    def describe(self, e: TraceEvent) -> str:
        if e.machine in ("session", "presence"):
            obj = e.machine
        elif e.machine == "request":
            # msg ids are <session>_<pid>_<n>: the counter tells one endpoint's apart
            obj = f"request #{e.object.rsplit('_', 1)[-1]}"
        else:
            obj = self.names.get(e.object, f"{e.machine.replace('_', ' ')} {e.object[:8]}")
        return f"{obj}: {e.source} --{e.event}--> {e.dest}"


@contextmanager
def closing_sink(sink: JsonLinesSink) -> Iterator[JsonLinesSink]:
    try:
        yield sink
    finally:
        sink.close()


@contextmanager
def frontend_process(
    connection_file: Path, trace: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """Frontend A as a child process; it is always ended (by its pid) and reaped."""
    child = subprocess.Popen(
        [sys.executable, "-m", "commspec.commands.demo", str(connection_file), str(trace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], STEP * 3)
        line = child.stdout.readline() if ready else b""
        if not line.strip():
            raise RuntimeError("frontend A did not report its comms")
        yield child, json.loads(line)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(STEP)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


if __name__ == "__main__":
    sys.exit(frontend_a(sys.argv[1], sys.argv[2]))
