"""``commspec kernel``: run the reference kernel until SIGINT/SIGTERM or shutdown_request."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.tracing import JsonLinesSink
from commspec.model.errors import CommspecError
from commspec.model.trace import TraceSink, discard


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "kernel",
        help="run the reference kernel",
        description="Bind the five Jupyter sockets on 127.0.0.1, print the connection file's "
        "path, and serve comm RPCs until SIGINT/SIGTERM or a shutdown_request.",
    )
    p.add_argument("--connection-file", type=Path, default=None,
                   help="use this file (ports of 0 are chosen and written back); "
                   "created with fresh ports and key if missing")
    p.add_argument("--trace", type=Path, default=None,
                   help="append every transition to this file as JSON lines")
    p.add_argument("--heartbeat-interval", type=_positive, default=1.0,
                   help="ZMTP heartbeat interval, seconds (default 1)")
    p.add_argument("--heartbeat-timeout", type=_positive, default=10.0,
                   help="drop a peer silent for this long, seconds (default 10)")
    p.add_argument("--insecure", action="store_true",
                   help="allow an empty key: messages are then not signed")
    p.add_argument("--log-level", default="WARNING",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))


#: the exit status when the kernel's I/O thread dies (EX_SOFTWARE): a restarter sees it
IO_DEATH_EXIT = 70


def exit_on_io_death(error: BaseException) -> None:
    """The I/O loop itself failed: every socket is gone with it, while the heartbeat
    thread would go on echoing. Exit at once, non-zero, so a restarter notices."""
    print(f"commspec kernel: the I/O thread failed ({error!r}); exiting", file=sys.stderr,
          flush=True)
    os._exit(IO_DEATH_EXIT)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trace = JsonLinesSink(args.trace) if args.trace is not None else None
    sink: TraceSink = trace if trace is not None else discard
    config = KernelConfig(
        heartbeat=HeartbeatSettings(args.heartbeat_interval, args.heartbeat_timeout),
        insecure=args.insecure,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        kernel = KernelEndpoint(args.connection_file, sink=sink, config=config,
                                on_io_death=exit_on_io_death)
        kernel.start()
    except (CommspecError, OSError, ValueError) as e:
        print(f"commspec kernel: {e}", file=sys.stderr)
        if trace is not None:
            trace.close()
        return 2
    try:
        print(kernel.connection_file, flush=True)
        # Wake on a signal or on a frontend's shutdown_request, whichever comes first.
        def watch() -> None:
            kernel.wait_for_shutdown_request()
            stop.set()

        threading.Thread(target=watch, name="commspec-kernel-shutdown-watch", daemon=True).start()
        while not stop.wait(3600):
            pass
    finally:
        kernel.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if trace is not None:
            trace.close()
    return 0
