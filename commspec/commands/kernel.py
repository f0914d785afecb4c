"""``commspec kernel``: run the reference kernel until SIGTERM or a shutdown_request.

SIGINT interrupts, as Jupyter's default interrupt mode sends it (the Interrupt button):
pending stdin requests end ``interrupted`` and the kernel goes on. Without
``--connection-file`` the file goes to Jupyter's runtime directory, where
``jupyter console --existing`` finds it. Usage errors exit 2, naming what was given."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import zmq
from jupyter_core.paths import jupyter_runtime_dir

from commspec.impl.control import (
    CONTROL_ENV,
    ControlServer,
    check_control_endpoint,
    max_detached_from_env,
)
from commspec.impl.errors import EndpointClosed
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.tracing import JsonLinesSink
from commspec.model.errors import CommspecError
from commspec.model.trace import TraceSink, discard

log = logging.getLogger("commspec.kernel")

T = TypeVar("T")

#: the longest heartbeat setting taken: libzmq holds them as an int of milliseconds
MAX_SECONDS = 86_400.0


def _positive(text: str) -> float:
    """A number of seconds for a heartbeat option (argparse names the option)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SECONDS:  # NaN fails this too
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds (at most {MAX_SECONDS:g}), not {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "kernel",
        help="run the reference kernel",
        description="Bind the five Jupyter sockets on 127.0.0.1, print the connection file's "
        "path, and serve comm RPCs until SIGTERM or a shutdown_request. SIGINT (Ctrl-C, "
        "Jupyter's Interrupt) interrupts: pending stdin requests end interrupted.",
    )
    p.add_argument("--connection-file", type=Path, default=None,
                   help="use this file (ports of 0 are chosen and written back); "
                   "created with fresh ports and key if missing (default: a new file in "
                   "Jupyter's runtime directory, where jupyter console --existing looks)")
    p.add_argument("--trace", type=Path, default=None,
                   help="append every transition to this file as JSON lines "
                   f"(default: ${TRACE_ENV} if set)")
    p.add_argument("--control", default=None, metavar="tcp://127.0.0.1:PORT",
                   help="bind the test-control socket there (SPEC.md, 'A kernel in any "
                   f"language'; default: ${CONTROL_ENV} if set, else off). Whoever holds "
                   "the key can then drive the kernel: for test runs only")
    p.add_argument("--heartbeat-interval", type=_positive, default=1.0,
                   help="ZMTP heartbeat interval, seconds (default 1)")
    p.add_argument("--heartbeat-timeout", type=_positive, default=10.0,
                   help="drop a peer silent for this long, seconds (default 10)")
    p.add_argument("--insecure", action="store_true",
                   help="allow an empty key: messages are then not signed")
    p.add_argument("--log-level", default="WARNING",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))


#: the environment variable naming the trace file (SPEC.md, "Trace export")
TRACE_ENV = "COMMSPEC_TRACE"

#: the exit status when the kernel's I/O thread dies (EX_SOFTWARE): a restarter sees it
IO_DEATH_EXIT = 70


def exit_on_io_death(error: BaseException) -> None:
    """The I/O loop itself failed: every socket is gone with it, while the heartbeat
    thread would go on echoing. Exit at once, non-zero, so a restarter notices."""
    print(f"commspec kernel: the I/O thread failed ({error!r}); exiting", file=sys.stderr,
          flush=True)
    os._exit(IO_DEATH_EXIT)


class KernelSignals:
    """While in use: SIGINT interrupts the kernel (once there is one running), SIGTERM
    sets ``stop``. Installed before the kernel starts, so a signal during start-up
    neither kills the process with a traceback nor is lost; restored on exit."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.kernel: KernelEndpoint | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> KernelSignals:
        self._previous = {signal.SIGINT: signal.signal(signal.SIGINT, self._interrupt),
                          signal.SIGTERM: signal.signal(signal.SIGTERM, self._terminate)}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        kernel = self.kernel
        if kernel is None or not kernel.running:
            return  # nothing to interrupt yet (or any more)
        try:
            kernel.interrupt()
        except EndpointClosed:
            return  # it stopped meanwhile
        log.warning("SIGINT: interrupted (pending stdin requests end interrupted); "
                    "SIGTERM or a shutdown_request stops the kernel")

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()


def default_connection_file() -> Path:
    """A new file name in Jupyter's runtime directory (made if missing, private), where
    ``jupyter console --existing`` looks for kernels."""
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    return runtime / f"kernel-commspec-{uuid.uuid4().hex[:12]}.json"


class UsageError(Exception):
    """What the user gave cannot be used: the message says what and why (exit 2)."""


def run(args: argparse.Namespace, endpoint: Callable[..., KernelEndpoint] = KernelEndpoint
        ) -> int:
    """``endpoint``: what makes the kernel (the tests' broken variants give their own)."""
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with KernelSignals() as signals:
        trace: JsonLinesSink | None = None
        control: ControlServer | None = None
        try:
            trace = _open_trace(args.trace or _from_env(TRACE_ENV, Path))
            control_at = _control_endpoint(args.control or _from_env(CONTROL_ENV, str))
            signals.kernel = _start_kernel(args, trace, endpoint)
            control = _start_control(signals.kernel, control_at)
        except UsageError as e:
            print(f"commspec kernel: {e}", file=sys.stderr)
            if signals.kernel is not None:
                signals.kernel.stop()
            if trace is not None:
                trace.close()
            return 2
        try:
            _serve(signals.kernel, signals.stop, defaulted=args.connection_file is None)
        finally:
            if control is not None:
                control.stop()
            signals.kernel.stop()
            if trace is not None:
                trace.close()
    return 0


def _from_env(name: str, kind: Callable[[str], T]) -> T | None:
    """The environment's value for ``name`` (unset or empty: None)."""
    value = os.environ.get(name, "")
    return kind(value) if value else None


def _detached_bound() -> dict[str, Any]:
    bound = max_detached_from_env()
    return {} if bound is None else {"max_detached": bound}


def _control_endpoint(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    try:
        return check_control_endpoint(endpoint)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _start_control(kernel: KernelEndpoint, endpoint: str | None) -> ControlServer | None:
    """The test-control socket, only when asked for (SPEC.md: off unless enabled)."""
    if endpoint is None:
        return None
    try:
        return ControlServer(kernel, endpoint).start()
    except zmq.ZMQError as e:
        raise UsageError(f"control socket {endpoint}: cannot bind ({e})") from e


def _open_trace(path: Path | None) -> JsonLinesSink | None:
    if path is None:
        return None
    try:
        return JsonLinesSink(path)
    except OSError as e:
        raise UsageError(f"trace file {path}: cannot be opened ({e.strerror})") from e


def _start_kernel(args: argparse.Namespace, trace: JsonLinesSink | None,
                  endpoint: Callable[..., KernelEndpoint]) -> KernelEndpoint:
    try:
        config = KernelConfig(
            heartbeat=HeartbeatSettings(args.heartbeat_interval, args.heartbeat_timeout),
            insecure=args.insecure, **_detached_bound(),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        connection_file = args.connection_file or default_connection_file()
    except OSError as e:
        raise UsageError(f"cannot make Jupyter's runtime directory for the connection file "
                         f"({e}); give one with --connection-file") from e
    sink: TraceSink = trace if trace is not None else discard
    try:
        kernel = endpoint(connection_file, sink=sink, config=config,
                          on_io_death=exit_on_io_death)
        return kernel.start()
    except (CommspecError, ValueError) as e:  # they name the file already
        raise UsageError(str(e)) from e
    except (OSError, zmq.ZMQError) as e:
        raise UsageError(f"connection file {connection_file}: cannot listen on its "
                         f"ports ({e})") from e


def _serve(kernel: KernelEndpoint, stop: threading.Event, *, defaulted: bool) -> None:
    """Until SIGTERM (``stop``) or a frontend's shutdown_request, whichever comes first."""
    print(kernel.connection_file, flush=True)
    if defaulted:
        print(f"commspec kernel: connect with: jupyter console --existing "
              f"{kernel.connection_file.name}", file=sys.stderr, flush=True)

    def watch() -> None:
        kernel.wait_for_shutdown_request()
        stop.set()

    threading.Thread(target=watch, name="commspec-kernel-shutdown-watch", daemon=True).start()
    while not stop.wait(3600):
        pass
