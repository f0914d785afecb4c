"""A frontend in its own process, for the disconnect benchmark (``python -m benchmarks.peer``).

``python -m benchmarks.peer CONNECTION_FILE RAW_PORT [--expect N]``. It prints
``{"loaded": true}``, then obeys lines on stdin:
- ``connect``: connects a FrontendEndpoint, opens one comm to the benchmark
  target, and connects a bare SUB socket (subscribed to ``b""`` and to a topic
  of its own) to the raw XPUB at RAW_PORT; prints ``{"comm_id", "topic"}``.
  Once N kernel requests arrived (never answered: the handler returns a
  Deferred that never settles) it prints ``{"requests": N}``.
- ``close``: closes the FrontendEndpoint cleanly (sockets closed, no comm_close);
- ``close-sub``: closes the SUB socket;
each prints ``{"closed_at"}``, the perf_counter time just before the close.
Killing or stopping the process takes both connections away at once, so the
kernel and the raw XPUB see one and the same departure.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import zmq

from commspec.impl import Deferred, FrontendEndpoint

from .common import now, reply_line

TARGET = "bench.hang"


class Peer:
    def __init__(self, connection_file: str, raw_port: int, expect: int) -> None:
        self.connection_file = connection_file
        self.raw_url = f"tcp://127.0.0.1:{raw_port}"
        self.expect = expect
        self.context = zmq.Context()
        self.frontend: FrontendEndpoint | None = None
        self.sub: zmq.Socket[bytes] | None = None
        self.parked: list[Deferred] = []

    def hang(self, params: Any) -> Deferred:
        deferred = Deferred()
        self.parked.append(deferred)
        if len(self.parked) == self.expect:
            reply_line(requests=len(self.parked))
        return deferred

    def connect(self) -> None:
        self.parked.clear()
        self.frontend = FrontendEndpoint(self.connection_file)
        self.frontend.wait_ready(30.0)
        comm = self.frontend.open_comm(TARGET)
        comm.on_request("hang", self.hang)
        topic = f"peer/{uuid.uuid4().hex}"
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sub.connect(self.raw_url)
        reply_line(comm_id=comm.comm_id, topic=topic)

    def close_frontend(self) -> None:
        if self.frontend is not None:
            closed_at = now()
            self.frontend.close()
            self.frontend = None
            reply_line(closed_at=closed_at)

    def close_sub(self) -> None:
        if self.sub is not None:
            closed_at = now()
            self.sub.close(linger=0)
            self.sub = None
            reply_line(closed_at=closed_at)

    def close(self) -> None:
        if self.frontend is not None:
            self.frontend.close()
        if self.sub is not None:
            self.sub.close(linger=0)
        self.context.term()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("connection_file")
    parser.add_argument("raw_port", type=int)
    parser.add_argument("--expect", type=int, default=1)
    args = parser.parse_args()
    peer = Peer(args.connection_file, args.raw_port, args.expect)
    commands = {"connect": peer.connect, "close": peer.close_frontend,
                "close-sub": peer.close_sub}
    reply_line(loaded=True)
    try:
        for line in sys.stdin:
            command = commands.get(line.strip())
            if command is not None:
                command()
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
