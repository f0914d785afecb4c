"""The floor: raw pyzmq, DEALER -> ROUTER (shell), then XPUB -> SUB (iopub), no serialisation.

The echo server runs in its own process (``python -m benchmarks.rpc_raw``), as
the kernels do.
"""

from __future__ import annotations

import zmq

from .common import PAYLOAD, DealerSubClient, serve_stack

FRAME = PAYLOAD.encode()


def _echo(request: list[bytes], xpub: zmq.Socket[bytes]) -> None:
    """Every frame a DEALER sends comes back on the XPUB."""
    xpub.send(request[1])


class RawStack(DealerSubClient):
    name = "raw pyzmq (DEALER->ROUTER, XPUB->SUB)"
    server_module = "benchmarks.rpc_raw"

    def _send(self) -> None:
        self._dealer.send(FRAME)

    def _recv_one(self) -> None:
        self._sub.recv()


if __name__ == "__main__":
    serve_stack(_echo)
