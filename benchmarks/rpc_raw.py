"""The floor: raw pyzmq, DEALER -> ROUTER (shell), then XPUB -> SUB (iopub), no serialisation.

The echo server runs in its own process (``python -m benchmarks.rpc_raw``), as
the kernels do.
"""

from __future__ import annotations

import sys

import zmq

from .common import PAYLOAD, Child, reply_line
from .rpc_loop import round_trips_per_second

TIMEOUT_MS = 30_000
FRAME = PAYLOAD.encode()


def serve() -> None:
    """The echo server: every frame a DEALER sends comes back on the XPUB."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    xpub = context.socket(zmq.XPUB)
    try:
        shell = router.bind_to_random_port("tcp://127.0.0.1")
        iopub = xpub.bind_to_random_port("tcp://127.0.0.1")
        reply_line(shell=shell, iopub=iopub)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if xpub in ready:  # subscription frames: read and ignore
                xpub.recv()
            if router in ready:
                _identity, frame = router.recv_multipart()
                xpub.send(frame)
    finally:
        router.close(linger=0)
        xpub.close(linger=0)
        context.term()


class RawStack:
    name = "raw pyzmq (DEALER->ROUTER, XPUB->SUB)"

    def __init__(self) -> None:
        self._server: Child | None = None
        self._context = zmq.Context()
        self._dealer = self._context.socket(zmq.DEALER)
        self._sub = self._context.socket(zmq.SUB)
        for sock in (self._dealer, self._sub):
            sock.linger = 0
            sock.rcvtimeo = TIMEOUT_MS

    def start(self) -> RawStack:
        self._server = Child.start("-m", "benchmarks.rpc_raw")
        ports = self._server.read_json()
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(f"tcp://127.0.0.1:{ports['iopub']}")
        self._dealer.connect(f"tcp://127.0.0.1:{ports['shell']}")
        # The slow joiner: ping until an echo arrives, then drain what else came back.
        while True:
            self._dealer.send(FRAME)
            if self._sub.poll(50):
                break
        while self._sub.poll(100):
            self._sub.recv()
        return self

    @property
    def server_pid(self) -> int:
        assert self._server is not None
        return self._server.pid

    def rate(self, window: int, seconds: float) -> float:
        dealer, sub = self._dealer, self._sub

        def send() -> None:
            dealer.send(FRAME)

        def recv_one() -> None:
            sub.recv()

        return round_trips_per_second(send, recv_one, window, seconds)

    def close(self) -> None:
        try:
            self._dealer.close(linger=0)
            self._sub.close(linger=0)
            self._context.term()
        finally:
            if self._server is not None:
                self._server.end()


if __name__ == "__main__":
    try:
        serve()
    except KeyboardInterrupt:
        sys.exit(0)
