"""Where an echo RPC's time goes: cProfile on one side, the other side in its own process.

``python -m benchmarks.profile_rpc --side frontend``: ``commspec kernel`` runs in
a child process; the FrontendEndpoint here is profiled (its I/O thread and the
calling thread). ``--side kernel``: a KernelEndpoint here is profiled (its I/O
thread); a child process (``--drive FILE``) runs the unprofiled frontend and the
request loop. Prints the rate and the top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from commspec.impl import ECHO, FrontendEndpoint, KernelEndpoint
from commspec.impl.frontend import endpoint as frontend_endpoint
from commspec.impl.kernel import endpoint as kernel_endpoint

from .common import PAYLOAD, Child, reply_line
from .rpc_loop import round_trips_per_second

PROFILES: dict[str, cProfile.Profile] = {}


def _profiled(name: str, run: Callable[[Any], None]) -> Callable[[Any], None]:
    def wrapper(self: Any) -> None:
        profile = PROFILES[name] = cProfile.Profile()
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()

    return wrapper


def drive(connection_file: str, window: int, seconds: float) -> float:
    with FrontendEndpoint(connection_file) as frontend:
        frontend.wait_ready()
        comm = frontend.open_comm(ECHO)
        comm.request("echo", PAYLOAD).result(10)
        in_flight: deque[Future[Any]] = deque()
        return round_trips_per_second(
            lambda: in_flight.append(comm.request("echo", PAYLOAD)),
            lambda: in_flight.popleft().result(10), window, seconds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("kernel", "frontend"), default="frontend")
    parser.add_argument("--drive", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.drive is not None:
        reply_line(rate=drive(args.drive, args.window, args.seconds))
        return 0
    if args.side == "kernel":
        loop: Any = vars(kernel_endpoint)["IoLoop"]  # whatever I/O loop class it uses
        loop._run = _profiled("kernel", loop._run)
        with KernelEndpoint() as kernel:
            child = Child.start("-m", "benchmarks.profile_rpc", "--drive",
                                str(kernel.connection_file), "--window", str(args.window),
                                "--seconds", str(args.seconds))
            try:
                rate = child.read_json(args.seconds + 30)["rate"]
            finally:
                child.end()
    else:
        loop = vars(frontend_endpoint)["IoLoop"]
        loop._run = _profiled("frontend", loop._run)
        with tempfile.TemporaryDirectory() as work:
            connection_file = Path(work) / "kernel.json"
            kernel_child = Child.start("-m", "commspec", "kernel",
                                       "--connection-file", str(connection_file))
            try:
                kernel_child.read_line()
                caller = PROFILES["caller"] = cProfile.Profile()
                caller.enable()
                rate = drive(str(connection_file), args.window, args.seconds)
                caller.disable()
            finally:
                kernel_child.end()
    print(f"{rate:,.0f} round trips/s (window {args.window}, {args.side} side profiled)")
    for name, profile in PROFILES.items():
        print(f"\n===== {name} thread =====")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
