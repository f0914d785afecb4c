"""``python -m benchmarks.ipykernel_rpc``: comm RPC round trips per second through
commspec for ipykernel, beside stock ipykernel and beside the reference kernel;
the same client, the same run.

Three kernels, each started by jupyter_client's ``KernelManager`` from a kernelspec
this run writes into a temporary folder of its own:

- *ours*: ``python -m commspec.ipykernel -f {connection_file}`` (its ``commspec.echo``
  target);
- *stock*: ``python -m ipykernel_launcher -f {connection_file}``; an execute_request
  first registers an echo target with the ``comm`` package, whose handler answers each
  request with ``comm.send`` (parented, by ipykernel, to the request it handles);
- *reference*: ``python -m commspec kernel --connection-file {connection_file}`` (its
  ``commspec.echo`` target).

Both ipykernels run with ``--HistoryManager.enabled=False`` and an IPYTHONDIR of the
run's own. The client is one class for all three (:class:`SessionClient`):
jupyter_client's ``Session`` over a DEALER (shell) and a SUB (IOPub) of pyzmq in the
calling thread, no heartbeat channel, every IOPub message verified and decoded. It
waits until heard (an ``iopub_welcome``, or the IOPub status of one of its
kernel_info_requests), sends ``comm_open``, then JSON-RPC ``echo`` requests with a
200-byte string parameter as ``comm_msg`` on shell, each reply matched by its IOPub
``parent_header`` and checked.

A round is ``--trips`` round trips per kernel per window (1 in flight: sequential;
and 64 in flight, refilled as each reply arrives), after ``--warmup`` round trips per
kernel per window; rounds interleave the kernels (the order rotated each round) so
load drift hits all three. Printed: each kernel's median round trips per second; each
ratio as the median of the rounds' own ratios (a round's three kernels ran seconds
apart, so a burst of load shifts its ratio less than its rates); the CPU each side
spent per round trip (client: ``time.process_time``; kernel: utime+stime of all its
threads, from /proc), medians; the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from .common import PAYLOAD, child_env, load_average, machine, median, now, process_cpu
from .report import table
from .rpc_ipykernel import REGISTER, TARGET

#: a wait this long for one message means the kernel is stuck or gone: fail, do not hang
TIMEOUT = 30.0
#: how long a loaded machine may take to start a kernel and answer
START_TIMEOUT = 120.0
#: a kernel_info_request is sent again after this long unheard
ASK_EVERY = 0.5
WINDOWS = (1, 64)
TRIPS, ROUNDS, WARMUP = 1_000, 7, 200

#: the comm target the stock kernel registers (commspec kernels have theirs), and the
#: code that registers it: rpc_ipykernel's, the stock ipykernel benchmark's
STOCK_TARGET = TARGET
IPYKERNEL_OPTIONS = ["--HistoryManager.enabled=False"]


@dataclass(frozen=True)
class KernelKind:
    key: str
    name: str
    argv: list[str]
    target: str
    #: code run by an execute_request before the comm is opened
    setup: str | None = None


KINDS = (
    KernelKind("ours", "ours: commspec.ipykernel",
               [sys.executable, "-m", "commspec.ipykernel", "-f", "{connection_file}",
                *IPYKERNEL_OPTIONS], "commspec.echo"),
    KernelKind("stock", "stock ipykernel",
               [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                *IPYKERNEL_OPTIONS], STOCK_TARGET, REGISTER),
    KernelKind("reference", "reference kernel (commspec kernel)",
               [sys.executable, "-m", "commspec", "kernel", "--connection-file",
                "{connection_file}"], "commspec.echo"),
)


class KernelGone(RuntimeError):
    """The kernel did not answer in time, or its process exited."""


class SessionClient:
    """One client for every kernel: Session over a DEALER and a SUB, one thread."""

    def __init__(self, info: dict[str, Any], label: str, alive: Callable[[], bool]) -> None:
        self._label = label
        self._alive = alive  # whether the kernel process still runs
        self.session = Session(key=info["key"].encode(),
                               signature_scheme=info["signature_scheme"],
                               session=uuid.uuid4().hex, username="bench")
        self._context = zmq.Context()
        self._shell = self._context.socket(zmq.DEALER)
        self._iopub = self._context.socket(zmq.SUB)
        for sock in (self._shell, self._iopub):
            sock.linger = 0
        self._iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self._iopub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
        self._shell.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        self._poller = zmq.Poller()
        self._poller.register(self._shell, zmq.POLLIN)
        self._poller.register(self._iopub, zmq.POLLIN)
        self._pending: set[str] = set()
        self._next_id = 0
        self.comm_id = ""

    def close(self) -> None:
        self._shell.close(linger=0)
        self._iopub.close(linger=0)
        self._context.term()

    def _recv(self, sock: zmq.Socket[bytes], timeout: float) -> dict[str, Any] | None:
        """The next message on ``sock``, decoded and verified; None after ``timeout``."""
        if not sock.poll(int(timeout * 1000)):
            if not self._alive():
                raise KernelGone(f"{self._label}: the kernel process exited")
            return None
        _, frames = self.session.feed_identities(sock.recv_multipart())
        return self.session.deserialize(frames)

    def _send(self, msg_type: str, content: dict[str, Any]) -> str:
        msg = self.session.msg(msg_type, content)
        self.session.send(self._shell, msg)
        msg_id: str = msg["header"]["msg_id"]
        return msg_id

    def wait_heard(self, timeout: float) -> None:
        """kernel_info_request until shell answers and IOPub delivers an iopub_welcome or
        a message parented to one of them (the spec's rules for frontends, 2 and 3)."""
        deadline = now() + timeout
        asked: set[str] = set()
        answered = heard = False
        while not (answered and heard):
            if now() > deadline:
                raise KernelGone(f"{self._label}: not ready within {timeout} s "
                                 f"(kernel_info answered: {answered}, IOPub heard: {heard})")
            asked.add(self._send("kernel_info_request", {}))
            until = now() + ASK_EVERY
            while not (answered and heard) and (left := until - now()) > 0:
                ready = dict(self._poller.poll(max(1, int(left * 1000))))
                if self._shell in ready:
                    reply = self._recv(self._shell, 0)
                    answered |= bool(reply and reply["msg_type"] == "kernel_info_reply"
                                     and reply["parent_header"].get("msg_id") in asked)
                if self._iopub in ready:
                    msg = self._recv(self._iopub, 0)
                    heard |= bool(msg and (msg["msg_type"] == "iopub_welcome"
                                           or msg["parent_header"].get("msg_id") in asked))
            if not self._alive():
                raise KernelGone(f"{self._label}: the kernel process exited")
        self._drain()

    def _drain(self) -> None:
        """Forget what is already queued (the probes' answers)."""
        for sock in (self._shell, self._iopub):
            while sock.poll(0):
                sock.recv_multipart()

    def execute(self, code: str) -> None:
        msg_id = self._send("execute_request", {
            "code": code, "silent": True, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        while True:
            reply = self._recv(self._shell, TIMEOUT)
            if reply is None:
                raise KernelGone(f"{self._label}: no execute_reply within {TIMEOUT} s")
            if reply["parent_header"].get("msg_id") == msg_id:
                if reply["content"]["status"] != "ok":
                    raise RuntimeError(f"{self._label}: setup failed: {reply['content']}")
                return

    def open_comm(self, target: str) -> None:
        self.comm_id = uuid.uuid4().hex
        self._send("comm_open", {"comm_id": self.comm_id, "target_name": target, "data": {}})

    def send_echo(self) -> None:
        self._next_id += 1
        self._pending.add(self._send("comm_msg", {"comm_id": self.comm_id, "data": {
            "jsonrpc": "2.0", "id": self._next_id, "method": "echo", "params": PAYLOAD}}))

    def recv_echo(self) -> None:
        """Until the reply to one pending request arrived on IOPub (checked)."""
        while True:
            msg = self._recv(self._iopub, TIMEOUT)
            if msg is None:
                raise KernelGone(f"{self._label}: no echo reply within {TIMEOUT} s "
                                 f"({len(self._pending)} pending)")
            if msg["msg_type"] != "comm_msg":
                continue
            parent = msg["parent_header"].get("msg_id")
            if parent in self._pending:
                self._pending.discard(parent)
                data = msg["content"]["data"]
                if data.get("result") != PAYLOAD:
                    raise RuntimeError(f"{self._label}: echo answered {data!r}")
                return

    def round_trips(self, count: int, window: int) -> float:
        """``count`` echo round trips, ``window`` in flight; round trips per second."""
        start = now()
        sent = done = 0
        while sent < min(window, count):
            self.send_echo()
            sent += 1
        while done < count:
            self.recv_echo()
            done += 1
            if sent < count:
                self.send_echo()
                sent += 1
        return count / (now() - start)


class BenchKernel:
    """One kernel of the run: its KernelManager, its process's stderr, our client."""

    def __init__(self, kind: KernelKind, specs: KernelSpecManager, work: Path) -> None:
        self.kind = kind
        self._work = work
        self._stderr_path = work / f"{kind.key}.stderr"
        self.manager = KernelManager(
            kernel_name=spec_name(kind), kernel_spec_manager=specs, ip="127.0.0.1",
            connection_file=str(work / f"{kind.key}.json"))
        self.client: SessionClient | None = None

    def start(self, env: dict[str, str]) -> None:
        """Launch the process; :meth:`connect` waits until it is heard."""
        with self._stderr_path.open("wb") as stderr:  # the child keeps its own copy
            self.manager.start_kernel(env=env, cwd=str(self._work),
                                      stdout=subprocess.DEVNULL, stderr=stderr)

    @property
    def pid(self) -> int:
        pid: int = self.manager.provisioner.pid  # type: ignore[union-attr]
        return pid

    def alive(self) -> bool:
        provisioner: Any = self.manager.provisioner
        return provisioner is not None and provisioner.process.poll() is None

    def connect(self) -> SessionClient:
        info: dict[str, Any] = dict(self.manager.get_connection_info())
        if isinstance(info["key"], bytes):
            info["key"] = info["key"].decode()
        client = self.client = SessionClient(info, self.kind.name, self.alive)
        client.wait_heard(START_TIMEOUT)
        if self.kind.setup is not None:
            client.execute(self.kind.setup)
        client.open_comm(self.kind.target)
        client.round_trips(1, 1)  # the comm is open and answers
        return client

    def stderr_tail(self, chars: int = 2_000) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)  # SIGKILL to its own process group


def spec_name(kind: KernelKind) -> str:
    return f"commspec-bench-{kind.key}"


def write_specs(folder: Path) -> KernelSpecManager:
    """The run's kernelspecs, in a folder only this run's KernelSpecManager reads."""
    for kind in KINDS:
        spec = folder / spec_name(kind)
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": kind.argv, "display_name": kind.name, "language": "python",
            "interrupt_mode": "signal"}))
    return KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)


@dataclass
class Result:
    name: str
    #: round trips per second by window: the median of the rounds
    rps: dict[int, float] = field(default_factory=dict)
    #: CPU microseconds per round trip by window, (client, kernel): medians
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: round trips per second by window, each round's, in round order
    rounds: dict[int, list[float]] = field(default_factory=dict)


def _sample(kernel: BenchKernel, trips: int, window: int) -> tuple[float, float, float]:
    client = kernel.client
    assert client is not None
    ours, theirs = time.process_time(), process_cpu(kernel.pid)
    rate = client.round_trips(trips, window)
    return (rate, (time.process_time() - ours) / trips * 1e6,
            (process_cpu(kernel.pid) - theirs) / trips * 1e6)


def measure(trips: int, rounds: int, warmup: int) -> dict[str, Result]:
    """Start the three kernels, warm each up, then ``rounds`` interleaved rounds."""
    samples: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with ExitStack() as cleanup:
        work = Path(cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix="commspec-bench-ipk-rpc-")))
        specs = write_specs(work / "kernels")
        env = dict(child_env(), IPYTHONDIR=str(work / "ipython"),
                   JUPYTER_RUNTIME_DIR=str(work / "runtime"))
        kernels = [BenchKernel(kind, specs, work) for kind in KINDS]
        for kernel in kernels:
            cleanup.callback(kernel.close)
        try:
            for kernel in kernels:  # all three start at once
                kernel.start(env)
            for kernel in kernels:
                kernel.connect()
                if warmup:
                    for window in WINDOWS:
                        _sample(kernel, warmup, window)
            for n in range(rounds):
                shift = n % len(kernels)
                for kernel in kernels[shift:] + kernels[:shift]:
                    for window in WINDOWS:
                        samples.setdefault((kernel.kind.key, window), []).append(
                            _sample(kernel, trips, window))
        except BaseException:
            for kernel in kernels:
                tail = kernel.stderr_tail()
                if tail:
                    print(f"--- {kernel.kind.name}: stderr (tail)\n{tail}", file=sys.stderr)
            raise
    results: dict[str, Result] = {}
    for kind in KINDS:
        result = results[kind.key] = Result(kind.name)
        for window in WINDOWS:
            got = samples[kind.key, window]
            result.rounds[window] = [s[0] for s in got]
            result.rps[window] = median(result.rounds[window])
            result.cpu[window] = (median([s[1] for s in got]), median([s[2] for s in got]))
    return results


def ratio(results: dict[str, Result], theirs: str, window: int) -> float:
    """ours / ``theirs``: the median of the rounds' own ratios."""
    return median([a / b for a, b in zip(results["ours"].rounds[window],
                                         results[theirs].rounds[window], strict=True)])


def rps_table(results: dict[str, Result]) -> str:
    rows = [[r.name, *(f"{r.rps[w]:,.0f}" for w in WINDOWS)] for r in results.values()]
    for key, label in (("stock", "stock ipykernel"), ("reference", "reference kernel")):
        rows.append([f"ratio ours / {label}",
                     *(f"{ratio(results, key, w):.2f}x" for w in WINDOWS)])
    return table(["comm RPC echo, round trips/s (one client)",
                  *(f"{w} in flight" for w in WINDOWS)], rows)


def cpu_table(results: dict[str, Result]) -> str:
    rows = [[r.name, *(f"{r.cpu[w][side]:,.0f}" for w in WINDOWS for side in (0, 1))]
            for r in results.values()]
    return table(["CPU us per round trip",
                  *(f"{w}: {side}" for w in WINDOWS for side in ("client", "kernel"))], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ipykernel_rpc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips", type=int, default=TRIPS,
                        help=f"round trips per kernel per window per round ({TRIPS})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds ({ROUNDS})")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help=f"warm-up round trips per kernel per window ({WARMUP})")
    args = parser.parse_args(argv)
    # SIGTERM ends the run through its cleanup: the kernels run in sessions of their own
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.trips < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--trips and --rounds must be at least 1, --warmup at least 0")
    started = now()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()), flush=True)
    print(f"load average at the start {load_average()}", flush=True)
    results = measure(args.trips, args.rounds, args.warmup)
    print(f"\n{args.trips:,} round trips per kernel per window per round; rounds: "
          f"{args.rounds}, interleaved; medians\n", flush=True)
    print(rps_table(results), flush=True)
    print("\n" + cpu_table(results), flush=True)
    print(f"\n(run took {now() - started:.0f} s; load average at the end {load_average()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
