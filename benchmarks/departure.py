"""A departure with N pending requests: how long another frontend waits meanwhile.

A ``KernelEndpoint`` in this process. Frontend A (raw sockets here, a commspec peer)
opens a comm and sends N ``call_frontend`` requests, each of which the kernel answers
only when its own request to A ends; A never answers, so N kernel requests pend.
Frontend B, in a child process of its own (no shared GIL with the kernel), a commspec
peer reading its IOPub, sends kernel_info_request after kernel_info_request on shell
and records each round trip. After a baseline window A closes its sockets: its
departure fails the N requests (the futures the target's handlers wait on included)
and drops the N answers nobody awaits. Printed: B's round trips before and after the
departure (median, p99, max) and how long the kernel took to fail all N.

``python -m benchmarks.departure [N]`` runs it alone; ``probe FILE`` is B's process.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass

import zmq
from jupyter_client.session import Session

from commspec.impl.connection import read_connection_file
from commspec.impl.core.presence import peer_topic
from commspec.impl.kernel import KernelEndpoint
from commspec.impl.targets import ECHO, ECHO_PERSISTENT

from .common import Child, median, percentile, reply_line

N, QUICK_N = 10_000, 500
#: seconds of probing before the departure, and after all N have failed
WINDOW, QUICK_WINDOW = 1.0, 0.3
BOUND = 120.0  # any wait longer than this is a failure of the run


@dataclass
class DepartureCost:
    n: int
    comm: str  # "default" or "persistent"
    before: list[float]  # B's round trips, ms
    after: list[float]
    failed_all_ms: float  # A's close until the kernel held no pending request


class Peer:
    """A frontend on raw sockets: shell DEALER and IOPub SUB with its peer topic."""

    def __init__(self, path: str, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        info = read_connection_file(path)
        self.session = Session(key=info.key.encode(), session=uuid.uuid4().hex,
                               check_pid=False)
        self.shell = context.socket(zmq.DEALER)
        self.shell.setsockopt(zmq.IDENTITY, self.session.bsession)
        self.shell.connect(info.url("shell"))
        self.iopub = context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.RCVHWM, 0)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.setsockopt(zmq.SUBSCRIBE, peer_topic(self.session.bsession, info.key))
        self.iopub.connect(info.url("iopub"))
        for sock in (self.shell, self.iopub):
            sock.linger = 0

    def wait_welcome(self) -> None:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            if self.iopub.poll(100) and b"iopub_welcome" in b"".join(self.iopub.recv_multipart()):
                return
        raise TimeoutError("no iopub_welcome")

    def send(self, msg_type: str, content: dict[str, object]) -> str:
        msg = self.session.msg(msg_type, content)
        self.session.send(self.shell, msg)
        return str(msg["header"]["msg_id"])

    def close(self) -> None:
        self.shell.close(0)
        self.iopub.close(0)


def probe(path: str) -> None:
    """B: kernel_info round trips from "go" to "stop" (commands on stdin), then the
    list of (sent at, ms) as one JSON line. IOPub is read and dropped meanwhile."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    b = Peer(path, context)
    b.wait_welcome()
    reply_line(ready=True)
    assert sys.stdin.readline().strip() == "go"
    poller = zmq.Poller()
    poller.register(b.shell, zmq.POLLIN)
    poller.register(b.iopub, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    probes: list[tuple[float, float]] = []
    sent = time.monotonic()
    b.send("kernel_info_request", {})
    while True:
        ready = dict(poller.poll(int(BOUND * 1000)))
        if not ready:
            raise TimeoutError("the kernel answered nothing")
        if b.iopub in ready:
            while b.iopub.poll(0):
                b.iopub.recv_multipart()
        if b.shell in ready:
            b.shell.recv_multipart()
            now = time.monotonic()
            probes.append((sent, (now - sent) * 1000))
            sent = now
            b.send("kernel_info_request", {})
        if sys.stdin.fileno() in ready:
            sys.stdin.readline()
            break
    reply_line(probes=probes)
    b.close()
    context.term()


def _wait(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)


def one(n: int, persistent: bool, window: float) -> DepartureCost:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    kernel = KernelEndpoint().start()
    b: Child | None = None
    a = Peer(str(kernel.connection_file), context)
    try:
        a.wait_welcome()
        comm_id = uuid.uuid4().hex
        a.send("comm_open", {"comm_id": comm_id, "data": {},
                             "target_name": ECHO_PERSISTENT if persistent else ECHO})
        for i in range(n):
            a.send("comm_msg", {"comm_id": comm_id, "data": {
                "jsonrpc": "2.0", "id": i, "method": "call_frontend",
                "params": {"method": "hang"}}})
        _wait(lambda: kernel.pending_count == n, f"{n} kernel requests pending")
        b = Child.start("-m", "benchmarks.departure", "probe", str(kernel.connection_file))
        b.read_json(BOUND)
        b.tell("go")
        time.sleep(window)
        left = time.monotonic()
        a.close()
        _wait(lambda: kernel.pending_count == 0, "the departure failed them")
        failed_all = time.monotonic()
        time.sleep(window)
        b.tell("stop")
        probes = b.read_json(BOUND)["probes"]
    finally:
        if b is not None:
            b.end()
        a.close()
        kernel.stop()
        context.term()
    return DepartureCost(
        n, "persistent" if persistent else "default",
        [ms for sent, ms in probes if sent + ms / 1000 < left],
        [ms for sent, ms in probes if sent + ms / 1000 >= left],
        (failed_all - left) * 1000)


def measure(n: int, window: float = WINDOW) -> list[DepartureCost]:
    return [one(n, persistent=False, window=window), one(n, persistent=True, window=window)]


def summary(ms: list[float]) -> str:
    return f"{median(ms):.2f} / {percentile(ms, 99):.2f} / {max(ms):.2f}"


def main(argv: list[str]) -> None:
    if argv[:1] == ["probe"]:
        probe(argv[1])
        return
    n = int(argv[0]) if argv else N
    for cost in measure(n):
        print(json.dumps({"n": cost.n, "comm": cost.comm, "before": summary(cost.before),
                          "after": summary(cost.after), "probes": len(cost.after),
                          "failed_all_ms": round(cost.failed_all_ms, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
