"""Any kernel, in a process of its own, through its trace file and its control socket.

Rules (SPEC.md, "A kernel in any language: trace export and the control socket"):
- :class:`ExternalKernel` is a :class:`~commspec.mbt.adapter.KernelAdapter` for a kernel
  started the way Jupyter frontends start one (``jupyter_client.KernelManager``, from a
  kernelspec or a command line: :class:`~commspec.conform.kernel.KernelSource`), with
  ``COMMSPEC_TRACE`` and ``COMMSPEC_CONTROL`` in its environment.
- The trace file is followed by a thread of its own: every whole line is parsed and
  handed to the harness's sink as it appears; a line that is not a trace event fails
  the run (``TraceLineError``), it is never skipped.
- The kernel's own actions and the numbers the harness compares go through the control
  socket (:class:`ControlClient`); a request's future ends when the kernel's ``ended``
  event for it arrives, with the outcome the kernel reports.
- ``stop`` shuts the kernel down (a shutdown_request, then the manager's kill), reads
  the trace to its end, and releases the process, the sockets and the files; it is
  safe to call twice. The counts read after it are the last the kernel gave.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import zmq

from commspec.conform.kernel import (
    KernelSource,
    RunningKernel,
    free_loopback_port,
    running_kernel,
)
from commspec.impl.connection import ConnectionInfo
from commspec.impl.control import (
    CONTROL_ENV,
    EVENT_TYPE,
    MAX_DETACHED_ENV,
    REPLY_TYPE,
    REQUEST_TYPE,
    ControlError,
    SocketThread,
)
from commspec.impl.errors import BadMessage, RemoteError, RequestFailed
from commspec.impl.wire import Codec
from commspec.mbt.errors import MbtFailure
from commspec.model.errors import CommspecError
from commspec.model.trace import TraceEvent, TraceSink

__all__ = [
    "CONTROL_TIMEOUT",
    "TRACE_ENV",
    "ControlClient",
    "ExternalKernel",
    "TraceLineError",
]

TRACE_ENV = "COMMSPEC_TRACE"
#: how long a control request may take to be answered (a kernel starting is not one)
CONTROL_TIMEOUT = 10.0
#: how long the kernel may take to start and answer kernel_info
START_TIMEOUT = 60.0
#: how often the trace follower looks for new lines while the file is quiet
FOLLOW_INTERVAL = 0.002


class TraceLineError(CommspecError):
    """The kernel wrote a line to its trace file that is not a trace event."""

    def __init__(self, path: Path, line: str, why: str) -> None:
        super().__init__(f"trace file {path}: not a trace event ({why}): {line[:200]!r}")
        self.path = path
        self.line = line


class ControlClient:
    """The harness's end of a kernel's control socket: a DEALER, signed with the key."""

    def __init__(self, endpoint: str, info: ConnectionInfo) -> None:
        self.endpoint = endpoint
        self.codec = Codec(info.key.encode(), signature_scheme=info.signature_scheme)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(endpoint)
        self._lock = threading.Lock()
        self._replies: dict[str, Future[Any]] = {}
        self._events: dict[str, Future[dict[str, Any]]] = {}
        self._io = SocketThread(sock, self._receive, "commspec-control-client")

    def close(self) -> None:
        self._io.close()
        self._context.term()
        with self._lock:
            waiting = [*self._replies.values(), *self._events.values()]
            self._replies.clear()
            self._events.clear()
        for f in waiting:
            if not f.done():
                f.set_exception(ConnectionError("the control client was closed"))

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float = CONTROL_TIMEOUT) -> Any:
        """The result of one control request; ControlError if the kernel refused it,
        TimeoutError if it did not answer within ``timeout``."""
        result, _ = self._send(method, params or {}, event=False)
        try:
            return result.result(timeout)
        except FutureTimeout:
            raise TimeoutError(f"control request {method!r}: no answer from "
                               f"{self.endpoint} within {timeout:g} s") from None

    def call_with_event(self, method: str, params: dict[str, Any],
                        timeout: float = CONTROL_TIMEOUT) -> tuple[Any, Future[dict[str, Any]]]:
        """The result of a control request that announces an event later (``request``,
        ``stdin``, ``hold_inbound``), and a future of that event's content."""
        result, event = self._send(method, params, event=True)
        assert event is not None
        try:
            return result.result(timeout), event
        except FutureTimeout:
            raise TimeoutError(f"control request {method!r}: no answer from "
                               f"{self.endpoint} within {timeout:g} s") from None

    def _send(self, method: str, params: dict[str, Any], *, event: bool
              ) -> tuple[Future[Any], Future[dict[str, Any]] | None]:
        msg_id = self.codec.new_msg_id()
        reply: Future[Any] = Future()
        later: Future[dict[str, Any]] | None = Future() if event else None
        with self._lock:
            self._replies[msg_id] = reply
            if later is not None:
                self._events[msg_id] = later
        self._io.send(self.codec.encode(msg_id, REQUEST_TYPE,
                                        {"method": method, "params": params}))
        return reply, later

    def _receive(self, frames: list[bytes]) -> None:
        try:
            msg = self.codec.decode(frames, "control").msg
        except BadMessage:
            return  # nothing this client asked for
        parent = str(msg["parent_header"].get("msg_id"))
        with self._lock:
            if msg["msg_type"] == REPLY_TYPE:
                waiting: Future[Any] | None = self._replies.pop(parent, None)
            elif msg["msg_type"] == EVENT_TYPE:
                waiting = self._events.pop(parent, None)
            else:
                waiting = None
        if waiting is None:
            return
        content = msg["content"]
        if msg["msg_type"] == EVENT_TYPE:
            waiting.set_result(content)
        elif "error" in content:
            error = content["error"]
            waiting.set_exception(ControlError(int(error.get("code", 0)),
                                               str(error.get("message", ""))))
        else:
            waiting.set_result(content.get("result"))



class TraceFollower:
    """Hands every line appended to ``path`` to ``sink`` as a trace event, on a thread
    of its own, until ``close`` has read the file to its end."""

    def __init__(self, path: Path, sink: TraceSink) -> None:
        self.path = path
        self.sink = sink
        self.error: TraceLineError | None = None
        self._stop = threading.Event()
        self._file = path.open("a+", encoding="utf-8")  # made if the kernel has not yet
        self._file.seek(0)
        self._partial = ""
        self._thread = threading.Thread(target=self._run, name="commspec-trace-follower",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._read() and self._stop.wait(FOLLOW_INTERVAL):
                break
        self._read()

    def _read(self) -> bool:
        """Hand on the whole lines written so far; whether there were any."""
        chunk = self._file.read()
        if not chunk:
            return False
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip() and self.error is None:
                self._hand_on(line)
        return True

    def _hand_on(self, line: str) -> None:
        try:
            event = TraceEvent.from_json(line)
        except (ValueError, KeyError, TypeError) as e:
            self.error = TraceLineError(self.path, line, str(e))
            return
        self.sink(event)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._file.close()


class ExternalKernel:
    """A kernel under test in a process of its own (see the module docstring)."""

    def __init__(self, source: KernelSource, start_timeout: float = START_TIMEOUT,
                 control_timeout: float = CONTROL_TIMEOUT) -> None:
        self.source = source
        self.start_timeout = start_timeout
        self.control_timeout = control_timeout
        self._stack = contextlib.ExitStack()
        self._kernel: RunningKernel | None = None
        self._control: ControlClient | None = None
        self._follower: TraceFollower | None = None
        self._connection_file: Path | None = None
        self._last: dict[str, Any] = {"subscribers": 0, "late_replies": 0}
        self._first: dict[str, Any] = {}  # the state at start: what the kernel serves
        self._stopped = False
        self.max_detached: int | None = None

    def keep_detached(self, n: int) -> None:
        """Start the kernel with ``COMMSPEC_MAX_DETACHED=n``; ``start`` fails if its
        ``state`` then reports another bound (it did not take the variable)."""
        self.max_detached = n

    def describe(self) -> str:
        return f"ExternalKernel({self.source.describe()})"

    def as_code(self) -> tuple[str, list[tuple[str, str]]]:
        """The expression that makes this adapter again, and the imports it needs (for
        a printed reproducer: it must name this kernel, never the reference one)."""
        return as_code(self.source)

    # -- lifecycle ---------------------------------------------------------

    def start(self, sink: TraceSink) -> None:
        if self._kernel is not None or self._stopped:
            raise RuntimeError("already started")
        try:
            folder = Path(self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="commspec-mbt-")))
            trace = folder / "trace.jsonl"
            endpoint = f"tcp://127.0.0.1:{free_loopback_port()}"
            self._follower = TraceFollower(trace, sink)
            bound = () if self.max_detached is None else (
                (MAX_DETACHED_ENV, str(self.max_detached)),)
            source = KernelSource(self.source.kernelspec, self.source.cmd, (
                *self.source.env, (TRACE_ENV, str(trace)), (CONTROL_ENV, endpoint), *bound))
            self._kernel = self._stack.enter_context(
                running_kernel(source, self.start_timeout))
            self._connection_file = Path(self._kernel.manager.connection_file)
            info = ConnectionInfo.from_dict(dict(self._kernel.info))
            self._control = ControlClient(endpoint, info)
            self._last = self._first = self._first_state(self._control, endpoint)
            kept = self._last.get("max_detached")
            if self.max_detached is not None and kept != self.max_detached:
                raise MbtFailure(f"{self.describe()} keeps {kept} detached comms, the "
                                 f"model {self.max_detached} ({MAX_DETACHED_ENV} not taken)")
        except BaseException:
            self.stop()
            raise

    def _first_state(self, control: ControlClient, endpoint: str) -> dict[str, Any]:
        """The kernel's first ``state``: it answered kernel_info already, so silence
        here means it does not serve the control socket."""
        try:
            state: dict[str, Any] = control.call("state", timeout=self.control_timeout)
        except TimeoutError:
            raise MbtFailure(
                f"{self.source.describe()} answered kernel_info but not, within "
                f"{self.control_timeout:g} s, the control socket at {endpoint}: does it "
                f"take {CONTROL_ENV} (SPEC.md, 'A kernel in any language')?") from None
        return state

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._control is not None:
                with contextlib.suppress(Exception):
                    self._last = self._control.call("state")
                self._control.close()
            self._stack.close()  # the kernel shut down (or killed), the folder gone...
        finally:
            if self._follower is not None:
                self._follower.close()  # ...after the trace was read to its end

    @property
    def connection_file(self) -> Path:
        if self._connection_file is None:
            raise RuntimeError("the kernel under test has not started")
        return self._connection_file

    def _c(self) -> ControlClient:
        if self._control is None or self._stopped:
            raise RuntimeError("the kernel under test is not running")
        return self._control

    def check_trace(self) -> None:
        """MbtFailure if the kernel wrote a line that is not a trace event (the lines
        after it are not handed on: the trace can no longer be trusted)."""
        if self._follower is not None and self._follower.error is not None:
            raise MbtFailure(str(self._follower.error)) from self._follower.error

    @property
    def trace_file(self) -> Path:
        if self._follower is None:
            raise RuntimeError("the kernel under test has not started")
        return self._follower.path

    # -- actions -----------------------------------------------------------

    def open_comm(self, target: str, persistent: bool, owner: str | None = None) -> str:
        result = self._c().call("open", {"target": target, "persistent": persistent,
                                         "owner": owner})
        return str(result["comm_id"])

    def close_comm(self, comm_id: str) -> None:
        self._c().call("close", {"comm_id": comm_id})

    def comm_request(self, comm_id: str, method: str, params: Any,
                     timeout: float | None = None) -> Future[Any]:
        """``timeout``: the request's deadline, seconds (None: none)."""
        _, ended = self._c().call_with_event(
            "request", {"comm_id": comm_id, "method": method, "params": params,
                        "timeout": timeout})
        return _outcome(ended, comm_id, method)

    def stdin_request(self, identity: bytes) -> Future[Any]:
        _, ended = self._c().call_with_event("stdin", {"identity": identity.decode()})
        return _outcome(ended, None, "input_request")

    def interrupt(self) -> None:
        """Interrupt the kernel as Jupyter does (its kernelspec's interrupt mode)."""
        if self._kernel is None or self._stopped:
            raise RuntimeError("the kernel under test is not running")
        self._kernel.manager.interrupt_kernel()

    def hold_inbound(self) -> Future[bool]:
        _, held = self._c().call_with_event("hold_inbound", {"timeout": 5.0})
        out: Future[bool] = Future()
        held.add_done_callback(lambda f: out.set_result(
            f.exception() is None and bool(f.result().get("queued"))))
        return out

    # -- observations -------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        if self._stopped or self._control is None:
            return self._last
        self._last = self._c().call("state")
        return self._last

    @property
    def subscriber_count(self) -> int:
        return int(self._state()["subscribers"])

    @property
    def late_replies(self) -> int:
        return int(self._state()["late_replies"])

    def supports_hold_inbound(self) -> bool:
        """Whether the kernel said, at start, that it serves ``hold_inbound``."""
        return bool(self._first.get("hold_inbound"))


def _outcome(ended: Future[dict[str, Any]], comm_id: str | None, method: str) -> Future[Any]:
    """A future that ends as the kernel's ``ended`` event says its request did."""
    out: Future[Any] = Future()

    def settle(f: Future[dict[str, Any]]) -> None:
        failed = f.exception()
        if failed is not None:
            out.set_exception(failed)
            return
        event = f.result()
        handle, state = str(event.get("request")), str(event.get("outcome"))
        if "result" in event:
            out.set_result(event["result"])
            return
        error = event.get("error") or {}
        if state == "errored":
            out.set_exception(RemoteError(handle, comm_id, method, state,
                                          int(error.get("code", 0)),
                                          str(error.get("message", ""))))
        else:
            out.set_exception(RequestFailed(handle, comm_id, method, state,
                                            str(error.get("message", ""))))

    ended.add_done_callback(settle)
    return out



def as_code(source: KernelSource) -> tuple[str, list[tuple[str, str]]]:
    """The expression that makes an :class:`ExternalKernel` of ``source``, and its imports."""
    args = ", ".join(f"{name}={value!r}" for name, value in (
        ("kernelspec", source.kernelspec), ("cmd", source.cmd), ("env", source.env))
        if value)
    return (f"ExternalKernel(KernelSource({args}))",
            [("commspec.mbt.external", "ExternalKernel"),
             ("commspec.conform.kernel", "KernelSource")])
