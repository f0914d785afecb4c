"""The reference kernel endpoint: its sockets, its thread, its public API.

Rules:
- One I/O thread owns every socket (impl/loop.py). Readers turn wire happenings into
  inputs for the dispatcher (dispatch.py), which holds all protocol state and
  applies the spec's rules: a shell or control request, an XPUB subscribe or
  unsubscribe, a stdin reply. A disconnection is one of these inputs, never an
  exception path.
- IOPub is read first in each round, so subscription changes are seen before
  the shell traffic that followed them; the drain rule covers the other order.
- A frame the wire layer refuses (wire.py) is counted by reason and dropped
  before any state sees it.
- The public API is thread-safe: calls from other threads are posted to the
  I/O thread (reads wait for its answer); comm requests return futures at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import zmq

from commspec.model.trace import TraceSink, discard

from ..comm import Comm
from ..connection import CHANNELS, ConnectionInfo, read_connection_file, write_connection_file
from ..core.requests import STDIN_KINDS
from ..errors import BadMessage, EndpointClosed
from ..loop import Callback, IoLoop, Timer
from ..targets import DEFAULT_TARGETS, TargetRegistry
from ..wire import DEFAULT_MAX_MESSAGE_BYTES, Received, Wire
from .dispatch import KernelDispatcher
from .sockets import HeartbeatEcho, HeartbeatSettings, KernelSockets

__all__ = ["KernelConfig", "KernelEndpoint"]

log = logging.getLogger("commspec.kernel")

#: messages handled per socket before the loop looks at the others again
BATCH = 256
#: a bound on the drain rule, so a flood on shell cannot hold an unsubscribe forever
DRAIN_LIMIT = 100_000

Message = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class KernelConfig:
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: how many ended requests and closed comm ids are remembered (late replies)
    remember: int = 10_000
    #: refuse an empty key unless this is set
    insecure: bool = False
    #: how long stop() lets already-queued messages (replies, comm_close) flush
    stop_linger: float = 1.0


class KernelEndpoint:
    """A Jupyter kernel that answers comm RPCs and keeps them sound under disconnection.

    Thread-safe public API. Use as a context manager, or ``start()``/``stop()``.
    ``connection_file``: read if it exists (ports of 0 are chosen at bind and
    written back), else created with fresh ports and key (and removed at stop);
    None: a temporary file is created.
    """

    def __init__(
        self,
        connection_file: str | os.PathLike[str] | None = None,
        *,
        sink: TraceSink = discard,
        config: KernelConfig | None = None,
        targets: TargetRegistry | None = None,
        ip: str = "127.0.0.1",
    ) -> None:
        self.config = config or KernelConfig()
        self.sink = sink
        self.targets = targets if targets is not None else TargetRegistry(DEFAULT_TARGETS)
        self._requested_file = Path(connection_file) if connection_file is not None else None
        if self._requested_file is not None and self._requested_file.exists():
            self._info = read_connection_file(self._requested_file, insecure=self.config.insecure)
            self._created_file = False
            self._rewrite_file = any(self._info.port(c) == 0 for c in CHANNELS)
        else:
            key = "" if self.config.insecure else secrets.token_hex(32)
            self._info = ConnectionInfo(0, 0, 0, 0, 0, key=key, ip=ip)
            self._created_file = self._rewrite_file = True
        self._connection_file: Path | None = None
        self.wire = Wire(
            self._info.key.encode(),
            signature_scheme=self._info.signature_scheme,
            username="kernel",
            max_message_bytes=self.config.max_message_bytes,
        )
        self._loop = IoLoop("commspec-kernel-io", log=log)
        self._core = KernelDispatcher(
            io=self, wire=self.wire, sink=sink, targets=self.targets, services=self,
            transport=self, remember=self.config.remember,
        )
        self._loop.add_deadline_source(self._expire_and_next_deadline)
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sockets: KernelSockets | None = None
        self._heartbeat: HeartbeatEcho | None = None
        self._started = False
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._status_topic = self._topic("status")

    # =====================================================================
    # lifecycle
    # =====================================================================

    def start(self) -> KernelEndpoint:
        if self._started:
            raise RuntimeError("the kernel endpoint was already started")
        self._started = True
        self._context = zmq.Context()
        try:
            self._sockets = KernelSockets(self._context, self._info, self.config.heartbeat)
            self._heartbeat = HeartbeatEcho(self._context, self._info)
            self._info = self._info.with_ports(dict(self._sockets.ports, hb=self._heartbeat.port))
            self._connection_file = self._write_connection_file()
        except BaseException:
            self._release()
            raise
        sockets = self._sockets
        # IOPub first: subscription changes are seen before the shell traffic after them.
        self._loop.add_reader(sockets.iopub, self._on_iopub)
        self._loop.add_reader(sockets.control, partial(self._on_router, sockets.control, "control"))
        self._loop.add_reader(sockets.shell, partial(self._on_router, sockets.shell, "shell"))
        self._loop.add_reader(sockets.stdin, partial(self._on_router, sockets.stdin, "stdin"))
        self._loop.on_exit(self._on_loop_exit)
        self._heartbeat.start()
        self._loop.start()
        log.info("kernel: listening, connection file %s", self._connection_file)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down (every comm closed, every request failed), then end the thread."""
        if self._loop.in_loop_thread():
            raise RuntimeError("stop() waits for the I/O thread: call it from another thread")
        with self._stop_lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
        try:
            self._loop.post(self._core.shutdown_everything)
        except EndpointClosed:
            pass  # a shutdown_request ended the thread already
        self._loop.stop(timeout)
        self._release()

    def __enter__(self) -> KernelEndpoint:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_shutdown_request(self, timeout: float | None = None) -> bool:
        """Block until a frontend sent shutdown_request (True) or ``timeout`` passed."""
        return self._core.shutdown_requested.wait(timeout)

    @property
    def connection_file(self) -> Path:
        if self._connection_file is None:
            raise RuntimeError("the connection file exists once the kernel has started")
        return self._connection_file

    @property
    def connection_info(self) -> ConnectionInfo:
        return self._info

    @property
    def running(self) -> bool:
        return self._loop.running

    def _write_connection_file(self) -> Path:
        if self._requested_file is not None:
            if self._rewrite_file:
                write_connection_file(self._requested_file, self._info)
            return self._requested_file
        fd, name = tempfile.mkstemp(prefix="commspec-kernel-", suffix=".json")
        os.close(fd)
        return write_connection_file(name, self._info)

    def _on_loop_exit(self) -> None:
        if self._sockets is not None:
            self._sockets.close(linger=self.config.stop_linger)

    def _release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._sockets is not None:
            self._sockets.close()  # nothing left to do if the I/O thread closed them
            self._sockets = None
        if self._context is not None:
            self._context.term()
            self._context = None
        if self._created_file and self._connection_file is not None:
            self._connection_file.unlink(missing_ok=True)

    # =====================================================================
    # reading (any thread)
    # =====================================================================

    def _read(self, fn: Callable[[], T]) -> T:
        try:
            return self._loop.call_sync(fn)
        except EndpointClosed:
            return fn()  # the thread is gone, so nothing else touches the state

    @property
    def subscriber_count(self) -> int:
        """Live IOPub subscriptions to ordinary topics (peer topics not counted)."""
        return self._read(lambda: self._core.presence.subscriber_count)

    @property
    def subscriptions(self) -> int:
        """Every live IOPub subscription, peer topics included."""
        return self._read(lambda: self._core.presence.subscriptions)

    @property
    def live_peers(self) -> frozenset[bytes]:
        return self._read(lambda: self._core.presence.live_peers)

    @property
    def presence_state(self) -> str:
        return self._read(lambda: self._core.presence.state.value)

    def comm_states(self) -> dict[str, str]:
        """Open and detached comms, by id, with their state's value."""
        return self._read(lambda: {r.comm_id: r.state.value for r in self._core.comms})

    def comms(self) -> list[Comm]:
        return self._read(lambda: [r.comm for r in self._core.comms])

    def comm(self, comm_id: str) -> Comm | None:
        """The open or detached comm with that id, if any."""
        return self._read(
            lambda: r.comm if (r := self._core.comms.get(comm_id)) is not None else None
        )

    @property
    def late_replies(self) -> int:
        """Replies (comm and stdin) for requests that had already ended."""
        return self._read(lambda: self._core.pending.late_replies + self._core.stdin.late_replies)

    @property
    def pending_count(self) -> int:
        return self._read(lambda: self._core.pending.pending_count)

    @property
    def stdin_pending_count(self) -> int:
        return self._read(lambda: self._core.stdin.pending_count)

    @property
    def bad_input(self) -> Counter[str]:
        """Bad input dropped so far, by reason."""
        return self._core.bad.counts()

    # =====================================================================
    # services to targets and applications (thread-safe)
    # =====================================================================

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._loop.call_later(delay, callback)

    def current_identity(self) -> bytes | None:
        """The frontend whose shell request is being handled (None off the I/O thread)."""
        current = self._core.current if self._loop.in_loop_thread() else None
        return current.identities[0] if current is not None and current.identities else None

    def open_comm(
        self,
        target_name: str,
        data: Message | None = None,
        *,
        persistent: bool = False,
        comm_id: str | None = None,
        owner: bytes | None = None,
    ) -> Comm:
        """Open a comm from the kernel; NoFrontend if nobody is subscribed.

        Its owner is ``owner`` (a frontend's session id), else the frontend whose
        shell request is being handled, else every subscriber (SPEC.md, ownership).
        """
        if not self._loop.running and not self._loop.in_loop_thread():
            raise EndpointClosed("the kernel is not running")
        return self._loop.call_sync(
            lambda: self._core.open_kernel_comm(target_name, data or {}, persistent, comm_id, owner)
        )

    def stdin_request(
        self, msg_type: str, content: Message, identity: bytes | None = None
    ) -> Future[Any]:
        """Ask one frontend on stdin (input_request / rpc_request).

        Addressed to ``identity``, by default the frontend whose shell request is
        current (or, off the I/O thread, the last frontend that sent one).
        """
        if msg_type not in STDIN_KINDS:
            raise ValueError(f"not a stdin request: {msg_type!r}")
        target = identity or self.current_identity()
        last = self._core.last_sender
        if target is None and last:
            target = last[0]
        if target is None:
            raise ValueError("no frontend to address the stdin request to")
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        parent = self._current_header()
        self._loop.run_soon(
            lambda: self._core.start_stdin(msg_type, content, target, parent, future)
        )
        return future

    def hold_until_queued(self, channels: Sequence[str], timeout: float = 5.0) -> Future[bool]:
        """Test hook: block the I/O thread until every named socket has input queued.

        Lets a test make "this had already arrived when the kernel looked" true
        instead of likely: hold, make the frames arrive, and the kernel handles
        them all in one go. Returns once the hold is in place (whatever the test
        sends next is held), with a future that is True once the input was all
        queued (the thread then carries on), False if ``timeout`` passed first.
        """
        if self._loop.in_loop_thread():
            raise RuntimeError("hold_until_queued would hold the thread that called it")
        holding = threading.Event()
        done: Future[bool] = Future()

        def hold() -> None:
            try:
                sockets = self._require_sockets()
            except EndpointClosed as e:
                done.set_exception(e)
                holding.set()
                return
            waiting = {getattr(sockets, c) for c in channels}
            poller = zmq.Poller()
            for sock in waiting:
                poller.register(sock, zmq.POLLIN)
            holding.set()
            deadline = self._loop.clock() + timeout
            while waiting:
                left = deadline - self._loop.clock()
                if left <= 0:
                    done.set_result(False)
                    return
                for sock, _ in poller.poll(int(left * 1000) + 1):
                    waiting.discard(sock)
                    poller.unregister(sock)
            done.set_result(True)

        self._loop.post(hold)
        # Returning before the hold is in place would let the I/O thread handle
        # what the test sends next one piece at a time: the very order it wants to rule out.
        if not holding.wait(timeout):
            raise TimeoutError(f"the I/O thread did not take up the hold within {timeout} s")
        return done

    def _current_header(self) -> Message | None:
        """The header of the request being handled, as the parent of what a handler sends.

        Only on the I/O thread: another thread's call has nothing to do with it.
        """
        current = self._core.current if self._loop.in_loop_thread() else None
        return current.header if current is not None else None

    # =====================================================================
    # CommTransport (any thread)
    # =====================================================================

    def comm_send(self, comm: Comm, data: Message, buffers: Sequence[bytes] | None) -> None:
        parent = self._current_header()
        self._loop.run_soon(lambda: self._core.send_comm_data(comm, data, buffers, parent))

    def comm_request(
        self, comm: Comm, method: str, params: Any, timeout: float | None
    ) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        parent = self._current_header()
        self._loop.run_soon(
            lambda: self._core.start_comm_request(comm, method, params, timeout, parent, future)
        )
        return future

    def comm_close(self, comm: Comm, data: Message | None) -> None:
        self._loop.run_soon(lambda: self._core.close_by_kernel(comm.comm_id, data or {}))

    # =====================================================================
    # the I/O thread: reading the sockets
    # =====================================================================

    def _on_router(self, sock: zmq.Socket[bytes], channel: str) -> None:
        for _ in range(BATCH):
            # Subscription changes first, before each message: libzmq lets a subscriber
            # receive what we publish as soon as it has read its subscription, which can
            # be before we have. A frontend that saw one of our messages (a probe's busy)
            # and answered must find its subscription already counted.
            self._on_iopub()
            if not self._handle_one(sock, channel):
                return

    def _handle_one(self, sock: zmq.Socket[bytes], channel: str) -> bool:
        """Receive and handle one message; False when none was queued."""
        try:
            received = self.wire.recv(sock, channel)
        except BadMessage as e:
            self._core.bad.note(e.reason.value, str(e))
            return True
        if received is None:
            return False
        if channel == "stdin":
            self._core.guard(partial(self._core.on_stdin_reply, received), received)
        else:
            self._core.on_request(channel, received)
        return True

    def _on_iopub(self) -> None:
        sock = self._require_sockets().iopub
        for _ in range(BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 1:
                self._core.bad.note("iopub_frame", f"{len(frames)}-part message on IOPub")
                continue
            self._core.guard(partial(self._core.on_subscription_frame, frames[0]), None)

    def _expire_and_next_deadline(self) -> float | None:
        # Asked before every poll: the requests whose deadline passed end now.
        self._core.guard(lambda: self._core.pending.expire(self._loop.clock()), None)
        return self._core.pending.next_deadline()

    def _require_sockets(self) -> KernelSockets:
        if self._sockets is None:
            raise EndpointClosed("the kernel's sockets are closed")
        return self._sockets

    # =====================================================================
    # KernelIO: what the dispatcher asks of the sockets (I/O thread)
    # =====================================================================

    def drain_inbound(self) -> int:
        """The drain rule's I/O: handle every shell and stdin message already received."""
        sockets = self._require_sockets()
        handled = 0
        for sock, channel in ((sockets.shell, "shell"), (sockets.stdin, "stdin")):
            while handled < DRAIN_LIMIT and self._handle_one(sock, channel):
                handled += 1
        return handled

    def publish(
        self,
        msg_type: str,
        content: Message,
        parent: Message | None,
        topic: bytes | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        msg = self.wire.message(msg_type, content, parent=parent)
        self._send(self._require_sockets().iopub, msg,
                   [self._topic(msg_type) if topic is None else topic], buffers=buffers)

    def publish_message(self, msg: Message) -> None:
        self._send(self._require_sockets().iopub, msg, [self._topic(msg["header"]["msg_type"])])

    def publish_status(self, state: str, parent_header: Message) -> None:
        msg = self.wire.message("status", {"execution_state": state}, {"header": parent_header})
        self._send(self._require_sockets().iopub, msg, [self._status_topic])

    def reply(self, channel: str, received: Received, msg_type: str, content: Message) -> None:
        msg = self.wire.message(msg_type, content, parent=received.msg)
        self._send(getattr(self._require_sockets(), channel), msg, received.identities)

    def send_stdin(self, msg: Message, identity: bytes) -> bool:
        return self._send(self._require_sockets().stdin, msg, [identity])

    def run_soon(self, callback: Callback) -> None:
        self._loop.run_soon(callback)

    def post(self, callback: Callback) -> None:
        self._loop.post(callback)

    def request_stop(self) -> None:
        self._loop.request_stop()

    def _topic(self, msg_type: str) -> bytes:
        return f"kernel.{self.wire.session_id}.{msg_type}".encode()

    def _send(
        self,
        sock: zmq.Socket[bytes],
        msg: Message,
        identities: Sequence[bytes],
        buffers: Sequence[bytes] | None = None,
    ) -> bool:
        """Send; False if the addressed peer is gone (ROUTER_MANDATORY's EHOSTUNREACH)."""
        what = msg["header"]["msg_type"]
        try:
            self.wire.send(sock, msg, identities, buffers)
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                log.info("kernel: %s not sent: its frontend is gone", what)
                return False
            if e.errno == zmq.EAGAIN:
                log.warning("kernel: %s not sent: the peer's queue is full", what)
                return False
            raise
        return True
