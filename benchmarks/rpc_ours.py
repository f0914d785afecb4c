"""Our stack: FrontendEndpoint here, ``commspec kernel`` in its own process."""

from __future__ import annotations

import tempfile
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from commspec.impl import ECHO, FrontendEndpoint
from commspec.impl.comm import Comm

from .common import PAYLOAD, Child
from .rpc_loop import round_trips_per_second

TIMEOUT = 30.0


class OursStack:
    name = "ours (FrontendEndpoint -> commspec kernel process)"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="commspec-bench-")
        self._kernel: Child | None = None
        self._frontend: FrontendEndpoint | None = None

    def start(self) -> OursStack:
        connection_file = Path(self._dir.name) / "kernel.json"
        self._kernel = Child.start("-m", "commspec", "kernel",
                                   "--connection-file", str(connection_file))
        self._kernel.read_line(TIMEOUT)  # it prints the connection file once listening
        self._frontend = FrontendEndpoint(connection_file)
        self._frontend.wait_ready(TIMEOUT)
        self._comm = self._frontend.open_comm(ECHO)
        answer = self._comm.request("echo", PAYLOAD).result(TIMEOUT)
        if answer != PAYLOAD:
            raise RuntimeError(f"echo answered {answer!r}")
        return self

    @property
    def server_pid(self) -> int:
        assert self._kernel is not None
        return self._kernel.pid

    @property
    def comm(self) -> Comm:
        """The echo comm ``start`` opened."""
        return self._comm

    def rate(self, window: int, seconds: float) -> float:
        in_flight: deque[Future[Any]] = deque()
        comm = self._comm

        def send() -> None:
            in_flight.append(comm.request("echo", PAYLOAD))

        def recv_one() -> None:
            in_flight.popleft().result(TIMEOUT)

        return round_trips_per_second(send, recv_one, window, seconds)

    def close(self) -> None:
        try:
            if self._frontend is not None:
                self._frontend.close()
        finally:
            if self._kernel is not None:
                self._kernel.end()
            self._dir.cleanup()
