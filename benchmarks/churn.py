"""Churn: frontends that come, open a default and a persistent comm, make a request and
die, one after another, against a ``commspec kernel`` process (issue 10, point 7).

Each frontend is the reference FrontendEndpoint in a process of its own (the model-based
tests' frontend process, ``commspec.mbt.agent``, forked by one zygote). It connects,
opens a comm on ``commspec.echo`` (default) and one on ``commspec.echo.persistent``,
has each answer an echo, and dies, in turn: SIGKILL, a clean close, and SIGSTOP until
the kernel's heartbeat drops it. A cycle ends once the kernel has acted on the
departure (its default comm is gone from comm_info), so cycles do not overlap.

What must stay flat: the kernel process's fds, threads and resident memory (VmRSS);
what must stay bounded: the persistent comms left detached, which nobody can re-attach
to (at most ``max_detached``, 64 by default), with no default comm left behind.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import zmq

from commspec.impl import ECHO, ECHO_PERSISTENT
from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.core.frontend import FrontendOptions
from commspec.impl.wire import Wire
from commspec.mbt.processes import FrontendPool, FrontendProcess
from commspec.model.trace import discard

from .common import Child

#: the ways a frontend dies, taken in turn
HOW = ("kill", "close", "stop")
#: the kernel's heartbeat in the benchmark: short, so a stopped frontend is dropped soon
HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT = 0.1, 0.5
#: the frontends' own settings: short heartbeats, as the kernel's
FRONTEND = FrontendOptions(heartbeat_interval=0.1, heartbeat_timeout=2.0, connect_timeout=20.0)
#: the bound on every wait (a departure is seen within the heartbeat timeout)
WAIT = 20.0
#: when the benchmark samples the kernel: after this many cycles
SAMPLES = (0, 50, 200)
QUICK_SAMPLES = (0, 3, 6)


@dataclass(frozen=True)
class Resources:
    """What a process holds, from /proc: open fds, threads, resident memory."""

    fds: int
    threads: int
    rss_kib: int

    @classmethod
    def of(cls, pid: int) -> Resources:
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return cls(fds=len(os.listdir(f"/proc/{pid}/fd")),
                   threads=int(status["Threads"]),
                   rss_kib=int(status["VmRSS"].split()[0]))


class CommCensus:
    """Asks the kernel's comm_info on a DEALER of its own (no IOPub: not a frontend that
    counts as present)."""

    def __init__(self, info: ConnectionInfo) -> None:
        self._wire = Wire(info.key.encode(), signature_scheme=info.signature_scheme)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._shell = self._context.socket(zmq.DEALER)
        self._shell.linger = 0
        self._shell.connect(info.url("shell"))

    def comms(self) -> dict[str, str]:
        """The comms comm_info lists (open and detached), by id, with their target."""
        request = self._wire.message("comm_info_request", {})
        self._wire.send(self._shell, request)
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            if not self._shell.poll(int(left * 1000) + 1):
                break
            received = self._wire.recv(self._shell, "shell")
            if received is not None and \
                    received.msg["parent_header"].get("msg_id") == request["msg_id"]:
                comms = received.msg["content"]["comms"]
                return {comm_id: str(about["target_name"]) for comm_id, about in comms.items()}
        raise TimeoutError(f"no comm_info_reply within {WAIT} s")

    def wait_gone(self, comm_id: str) -> None:
        deadline = time.monotonic() + WAIT
        while comm_id in self.comms():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"comm {comm_id} still listed after {WAIT} s")
            time.sleep(0.01)  # polling the kernel's answer, bounded by the deadline

    def close(self) -> None:
        self._shell.close(linger=0)
        self._context.term()


def churn_cycle(pool: FrontendPool, info: ConnectionInfo, census: CommCensus,
                how: str) -> None:
    """One frontend process comes, opens a default and a persistent comm, has each echo,
    and dies ``how``; returns once the kernel has acted on the departure."""
    process = pool.take(discard)
    try:
        process.connect(info, uuid.uuid4().hex, FRONTEND)
        process.call("wait_ready", timeout=WAIT)
        default = process.call("open", target=ECHO)
        persistent = process.call("open", target=ECHO_PERSISTENT)
        for comm_id in (default, persistent):
            process.request(comm_id, "echo", {"from": comm_id}).result(WAIT)
        _die(process, how)
        census.wait_gone(default)
    finally:
        pool.release([process])


def _die(process: FrontendProcess, how: str) -> None:
    if how == "kill":
        process.kill()
    elif how == "close":
        process.exit()
    elif how == "stop":
        process.freeze()  # the pool resumes and kills it at release
    else:
        raise ValueError(f"no way to die called {how!r}; one of {HOW}")


@dataclass(frozen=True)
class Sample:
    cycles: int
    resources: Resources
    default_comms: int
    persistent_comms: int


def sample(cycles: int, pid: int, census: CommCensus) -> Sample:
    targets = list(census.comms().values())
    return Sample(cycles, Resources.of(pid), targets.count(ECHO),
                  targets.count(ECHO_PERSISTENT))


def churn(pool: FrontendPool, info: ConnectionInfo, census: CommCensus,
          cycles: range, sampled: Sequence[int] = (),
          on_sample: Callable[[int], None] = lambda cycle: None) -> None:
    """Cycles in turn, each frontend dying the next way in ``HOW``; ``on_sample(n)``
    once ``n`` cycles (any in ``sampled``) are done."""
    for cycle in cycles:
        if cycle in sampled:
            on_sample(cycle)
        churn_cycle(pool, info, census, HOW[cycle % len(HOW)])
    if cycles.stop in sampled:
        on_sample(cycles.stop)


def measure(samples: Sequence[int] = SAMPLES) -> list[Sample]:
    """Runs ``max(samples)`` cycles against a ``commspec kernel`` process (default
    max_detached) and samples it after each count of cycles in ``samples``."""
    with tempfile.TemporaryDirectory(prefix="commspec-churn-") as folder:
        connection_file = Path(folder) / "kernel.json"
        kernel = Child.start("-m", "commspec", "kernel", "--connection-file",
                             str(connection_file), "--heartbeat-interval",
                             str(HEARTBEAT_INTERVAL), "--heartbeat-timeout",
                             str(HEARTBEAT_TIMEOUT))
        try:
            kernel.read_line(WAIT)  # the connection file's path, once listening
            info = read_connection_file(connection_file)
            census = CommCensus(info)
            try:
                with FrontendPool() as pool:
                    taken: list[Sample] = []
                    churn(pool, info, census, range(max(samples)), samples,
                          lambda n: taken.append(sample(n, kernel.pid, census)))
                    return taken
            finally:
                census.close()
        finally:
            kernel.end()
