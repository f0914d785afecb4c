"""Shared helpers: timing, percentiles, child processes ended by pid, loopback ports."""

from __future__ import annotations

import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import zmq

from .rpc_loop import round_trips_per_second

#: the ~200-byte parameter of every echo request
PAYLOAD = "x" * 200
#: where the benchmark package lives, so children can import it as ``benchmarks``
ROOT = Path(__file__).resolve().parent.parent

now = time.perf_counter


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank: for 20 trials p99 is the worst."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Child:
    """A subprocess we started; every way out of it goes through its own pid."""

    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, *args: str, env: dict[str, str] | None = None,
              stderr: Any = subprocess.DEVNULL) -> Child:
        process = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, env=env or child_env(), cwd=ROOT,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_json(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next line the child prints, as JSON; TimeoutError if none comes in time."""
        value: dict[str, Any] = json.loads(self.read_line(timeout))
        return value

    def read_line(self, timeout: float = 30.0) -> str:
        """The next line the child prints; TimeoutError if none comes in time."""
        stdout = self.process.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise TimeoutError(f"child {self.pid} printed nothing within {timeout} s")
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.pid} exited (code {self.process.poll()})")
        return line.decode().strip()

    def tell(self, command: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(command.encode() + b"\n")
        stdin.flush()

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def end(self) -> None:
        """Continue it if stopped, SIGKILL it, reap it, close its pipes."""
        if self.process.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
                self.process.kill()
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def reply_line(**fields: Any) -> None:
    """A child's answer to the parent: one JSON line on stdout."""
    print(json.dumps(fields), flush=True)


def machine() -> dict[str, str]:
    from importlib.metadata import version

    import zmq

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "jupyter_client": version("jupyter_client"),
        "ipykernel": version("ipykernel"),
        "load average": load_average(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: the figures are only read beside them."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class DealerSubClient:
    """The client side the bare stacks share: a DEALER to the server's shell, a SUB
    on its IOPub, and the server (``python -m <server_module> <server_args>``, on
    :func:`serve_stack`) in a child process. A stack says how it sends one request
    (``_send``) and takes one answer (``_recv_one``)."""

    #: a receive that waits this long means the server is gone: fail, do not hang
    TIMEOUT_MS = 30_000
    server_module: str

    def __init__(self) -> None:
        self._server: Child | None = None
        self._context = zmq.Context()
        self._dealer = self._context.socket(zmq.DEALER)
        self._sub = self._context.socket(zmq.SUB)
        for sock in (self._dealer, self._sub):
            sock.linger = 0
            sock.rcvtimeo = self.TIMEOUT_MS

    def server_args(self) -> list[str]:
        return []

    def _send(self) -> None:
        raise NotImplementedError

    def _recv_one(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Start the server, connect, and wait out the slow joiner: send until IOPub
        answers, then drain what else came back."""
        self._server = Child.start("-m", self.server_module, *self.server_args())
        ports = self._server.read_json()
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(f"tcp://127.0.0.1:{ports['iopub']}")
        self._dealer.connect(f"tcp://127.0.0.1:{ports['shell']}")
        while True:
            self._send()
            if self._sub.poll(50):
                break
        while self._sub.poll(100):
            self._sub.recv_multipart()
        self._joined()
        return self

    def _joined(self) -> None:
        """Forget what the slow-joiner requests left behind."""

    @property
    def server_pid(self) -> int:
        assert self._server is not None
        return self._server.pid

    def rate(self, window: int, seconds: float) -> float:
        return round_trips_per_second(self._send, self._recv_one, window, seconds)

    def close(self) -> None:
        try:
            self._dealer.close(linger=0)
            self._sub.close(linger=0)
            self._context.term()
        finally:
            if self._server is not None:
                self._server.end()


def serve_stack(answer: Callable[[list[bytes], zmq.Socket[bytes]], None]) -> None:
    """A bare stack's server, until it is killed: a ROUTER (shell) and an XPUB (IOPub)
    on loopback ports it reports on stdout; every request's frames (the routing id
    first) go to ``answer`` with the XPUB to publish on; subscription frames are read
    and ignored."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    xpub = context.socket(zmq.XPUB)
    try:
        reply_line(shell=router.bind_to_random_port("tcp://127.0.0.1"),
                   iopub=xpub.bind_to_random_port("tcp://127.0.0.1"))
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if xpub in ready:
                xpub.recv()
            if router in ready:
                answer(router.recv_multipart(), xpub)
    except KeyboardInterrupt:
        pass
    finally:
        router.close(linger=0)
        xpub.close(linger=0)
        context.term()
