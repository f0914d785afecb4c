"""The floor: raw pyzmq, DEALER -> ROUTER (shell), then XPUB -> SUB (iopub), no serialisation.

The echo server runs in its own process (``python -m benchmarks.rpc_raw``), as
the kernels do.
"""

from __future__ import annotations

import sys

import zmq

from .common import PAYLOAD, DealerSubClient, reply_line
from .rpc_loop import round_trips_per_second

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


class RawStack(DealerSubClient):
    name = "raw pyzmq (DEALER->ROUTER, XPUB->SUB)"

    def start(self) -> RawStack:
        self._connect("-m", "benchmarks.rpc_raw")
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


if __name__ == "__main__":
    try:
        serve()
    except KeyboardInterrupt:
        sys.exit(0)
