"""commspec's kernel protocol core, driven from inside ipykernel.

Rules:
- The core is :class:`~commspec.impl.core.kernel.KernelProtocol`, the reference
  kernel's, with its policies; nothing of the disconnection rules is written here.
  This module is one more runner of it (as ``KernelEndpoint`` is over its own
  sockets): it turns what ipykernel sees into the core's inputs and carries out the
  core's effects on ipykernel's sockets.
- The core runs on ipykernel's main thread, the one that runs the user's code and
  the comm handlers. What other threads see (the IOPub thread's subscription frames,
  a control-socket call, a comm request made from a worker thread) is posted to an
  inbox the main thread empties: from its event loop when idle, and from inside a
  blocking ``input()`` (``wait``), which also reads the stdin socket itself.
- What goes out: IOPub through ipykernel's IOPub thread (its ``BackgroundSocket``,
  in order with ipykernel's own output); shell replies on the stream of the message
  they answer; stdin requests on ipykernel's stdin ROUTER, whose ``ROUTER_MANDATORY``
  (``sockets.py``) turns a send to a departed frontend into ``Sent(ok=False)``.
- Busy and idle for the messages the core handles (``CORE_TYPES``) are the core's
  (an RPC's idle follows its answer); ipykernel's own for these are suppressed
  (``kernel.py``). In a message ipykernel dispatches while a cell holds the shell
  (``concurrent``), the core's are dropped too, as ipykernel publishes none then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import zmq

from commspec.impl.comm import Comm
from commspec.impl.connection import ConnectionInfo
from commspec.impl.core.events import (
    Channel,
    Input,
    Interrupt,
    Overheard,
    PeerConnections,
    Received,
    Refused,
    Send,
    Sent,
    Shutdown,
    SubscriptionFrames,
)
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.errors import BadMessage, EndpointClosed
from commspec.impl.frames import (
    monitor_event,
    readable,
    recv_frames_fd,
    recv_monitor_events,
    sent_by_peer,
)
from commspec.impl.kernel.sockets import UNSENT, connection_changes
from commspec.impl.runner import EffectRunner
from commspec.impl.targets import TargetRegistry
from commspec.impl.wire import Codec
from commspec.model.trace import TraceSink, discard

from .application import IPyKernelApplication, PackageComms

if TYPE_CHECKING:
    from .shell_channel import ShellChannelWatch

__all__ = ["CORE_TYPES", "BridgeConfig", "KernelBridge"]

log = logging.getLogger("commspec.ipykernel")

#: the shell messages the core handles (comms and their RPCs); ipykernel handles the rest
CORE_TYPES = frozenset({"comm_open", "comm_msg", "comm_close", "comm_info_request"})
#: how long a call from another thread waits for the main thread
CALL_TIMEOUT = 10.0

T = TypeVar("T")


class LoopTimer:
    """A timer on ipykernel's main loop; cancelled before it is armed, it never is."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._handle: Any = None
        self._cancelled = False

    def arm(self, delay: float, callback: Callable[[], None]) -> None:
        if not self._cancelled:
            self._handle = self._loop.call_later(delay, callback)

    def cancel(self) -> None:
        """Any thread."""
        self._cancelled = True
        if self._handle is not None:
            self._loop.add_callback(self._loop.remove_timeout, self._handle)


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge is told (``CommspecIPythonKernel``'s traits say what each is)."""

    max_detached: int
    remember: int
    persistent_comm_targets: frozenset[str]
    sink: TraceSink = discard


class KernelBridge(EffectRunner):
    """The core of one ipykernel, and its thread-safe API (the reference kernel's)."""

    core: KernelProtocol
    app: IPyKernelApplication

    def __init__(self, kernel: Any, targets: TargetRegistry, config: BridgeConfig) -> None:
        session = kernel.session
        key = bytes(session.key)
        self.kernel = kernel
        self.config = config
        self.targets = targets
        self.sink = config.sink
        self.log = log
        self.codec = Codec(key, signature_scheme=session.signature_scheme,
                           username="kernel", session_id=session.session)
        self.package = PackageComms(config.persistent_comm_targets)
        self.core = KernelProtocol(
            session_id=session.session, key=key, targets=self._target_kind,
            new_msg_id=self.codec.new_msg_id, tracing=self.sink is not discard,
            remember=config.remember, max_detached=config.max_detached)
        self.app = IPyKernelApplication(self.core, self, targets, self, self.package)
        EffectRunner.__init__(self)
        self.effects.update({Send: self._send})
        self._main = threading.main_thread()
        self._inbox: deque[Callable[[], None]] = deque()
        self._inbox_lock = threading.Lock()
        self._pump_scheduled = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        #: where shell replies go (the stream of the last shell message ipykernel handed
        #: over; the kernel sets the first one at start)
        self.shell_out: Any = None
        #: the shell channel thread's part (shell_channel.py), if ipykernel has that thread
        self.shell_watch: ShellChannelWatch | None = None
        #: the stdin ROUTER's socket monitor (per-connection departure), if any
        self.stdin_monitor: zmq.Socket[bytes] | None = None
        self._ordered: deque[tuple[int, PeerConnections | SubscriptionFrames]] = deque()
        self._ordered_count = 0
        #: unsubscribes on their way through the shell channel thread
        self._departing = 0
        #: messages ipykernel dispatched while a cell held the shell: no status for them
        self._quiet: set[str] = set()
        self._stopped = False

    def _target_kind(self, name: str) -> bool | None:
        """A commspec target's kind, else a ``comm`` package target's; None: neither."""
        kind = self.targets.kind(name)
        return kind if kind is not None else self.package.kind(name)

    # =====================================================================
    # the main thread: inputs in
    # =====================================================================

    def handle_shell(self, stream: Any, idents: Sequence[bytes], msg: dict[str, Any],
                     fd: int | None, concurrent: bool = False) -> None:
        """A message of ``CORE_TYPES`` that ipykernel read on shell (main thread)."""
        self.shell_out = stream
        received = Received(Channel.SHELL, tuple(idents), _message(msg), fd)
        if concurrent:
            self._quiet.add(received.msg_id)
        self.feed(received)

    def overheard(self, idents: Sequence[bytes], msg: dict[str, Any], fd: int | None) -> None:
        """Any other shell message ipykernel handles: its sender's connection (main)."""
        self.feed(Overheard(Received(Channel.SHELL, tuple(idents), _message(msg), fd)))

    def on_stdin_frames(self, frames: Sequence[zmq.Frame]) -> None:
        """A message the stdin stream read (main thread, while no input() waits)."""
        try:
            fd: int | None = int(frames[0].get(zmq.SRCFD))
        except (zmq.ZMQError, TypeError, ValueError):
            fd = None
        self._stdin_message([f.bytes for f in frames], fd)

    def on_stdin_monitor(self, frames: Sequence[bytes]) -> None:
        """A message the stdin monitor's stream read (main thread)."""
        first = monitor_event(bytes(frames[0])) if frames else None
        self._stdin_events([first] if first is not None else [])

    def _read_stdin(self) -> list[Received | Refused]:
        """Everything queued on the stdin ROUTER now (main thread), as the core's inputs;
        a message with monitor events queued behind it has no trusted fd."""
        out: list[Received | Refused] = []
        stdin = self.kernel.stdin_socket
        while (got := recv_frames_fd(stdin)) is not None:
            frames, fd = got
            if self.stdin_monitor is not None and readable(self.stdin_monitor):
                fd = None
            out.append(self._decode(frames, "stdin", fd))
        return out

    def _stdin_message(self, frames: list[bytes], fd: int | None) -> None:
        if self.stdin_monitor is not None and readable(self.stdin_monitor):
            fd = None
        self.feed(self._decode(frames, "stdin", fd))
        self._stdin_events([])

    def _stdin_events(self, first: list[tuple[int, int]]) -> None:
        """The stdin monitor's events (after the messages read before them)."""
        events = first + (recv_monitor_events(self.stdin_monitor)
                          if self.stdin_monitor is not None else [])
        changes = connection_changes(Channel.STDIN, events)
        if changes:
            self.feed(PeerConnections(tuple(changes)))

    def _decode(self, frames: list[bytes], channel: str, fd: int | None) -> Received | Refused:
        try:
            return self.codec.decode(frames, channel, fd)
        except BadMessage as e:
            return Refused(Channel(channel), e.reason.value, str(e))

    def on_xpub(self, frames: Sequence[zmq.Frame]) -> None:
        """One message on ipykernel's IOPub XPUB: a subscription frame (IOPub thread)."""
        if len(frames) != 1:
            self.post(lambda: self.feed(Refused(Channel.IOPUB, "iopub_frame",
                                                f"{len(frames)}-part message on IOPub")))
            return
        frame = frames[0]
        event = SubscriptionFrames((frame.bytes,), (sent_by_peer(frame),))
        departure = frame.bytes[:1] == b"\x00"
        with self._inbox_lock:
            # a subscribe takes the fast way unless a departure is on its way: it must
            # not overtake one (a reconnect's subscribe after the unsubscribe it follows)
            ordered = self.shell_watch is not None and (departure or self._departing > 0)
            if ordered and departure:
                self._departing += 1
        if ordered:
            assert self.shell_watch is not None
            self.shell_watch.subscription(event)  # after what shell had (shell_channel.py)
        else:
            self.post(lambda: self.feed(event))

    # -- the inbox ---------------------------------------------------------------

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the main thread, in order (any thread)."""
        with self._inbox_lock:
            if self._stopped:
                raise EndpointClosed("the kernel has shut down")
            self._inbox.append(fn)
            schedule = not self._pump_scheduled
            self._pump_scheduled = True
        self._wake()
        if schedule:
            self.kernel.io_loop.add_callback(self.pump)

    def pump(self) -> None:
        """Everything posted so far, in order (main thread)."""
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            with self._inbox_lock:
                if not self._inbox:
                    self._pump_scheduled = False
                    return
                fn = self._inbox.popleft()
            try:
                fn()
            except Exception:
                log.exception("commspec: a posted input failed")

    def ordered(self, item: PeerConnections | SubscriptionFrames) -> int:
        """Queue an input that must be taken in order with the shell messages (any
        thread): its number, which the marker that follows it carries."""
        with self._inbox_lock:
            self._ordered_count += 1
            self._ordered.append((self._ordered_count, item))
            number = self._ordered_count
        self._wake()
        return number

    def take_ordered(self, upto: int | None = None) -> None:
        """The ordered inputs up to ``upto`` (all: None), in order (main thread)."""
        self.pump()
        while True:
            with self._inbox_lock:
                if not self._ordered or (upto is not None and self._ordered[0][0] > upto):
                    return
                _, item = self._ordered.popleft()
            if isinstance(item, SubscriptionFrames) \
                    and any(f[:1] == b"\x00" for f in item.frames):
                # the drain rule's stdin part: what stdin had received by now
                item = SubscriptionFrames(item.frames, item.sent_by_peer,
                                          item.drained + tuple(self._read_stdin()))
                with self._inbox_lock:
                    self._departing -= 1
            self.feed(item)

    def wait(self, future: Future[Any]) -> None:
        """Block the main thread until ``future`` is done, meanwhile reading stdin, its
        monitor and what other threads post (a blocking ``input()``: ipykernel's loop is
        not running). Ctrl-C interrupts the wait, and the kernel's pending stdin
        requests end ``interrupted``."""
        stdin = self.kernel.stdin_socket
        watched: list[Any] = [stdin, self._wake_read]
        if self.stdin_monitor is not None:
            watched.append(self.stdin_monitor)
        try:
            while not future.done():
                zmq.select(watched, [], [])
                for item in self._read_stdin():
                    self.feed(item)
                self._stdin_events([])
                self.take_ordered()
        except KeyboardInterrupt:
            self.feed(Interrupt("SIGINT"))
            raise

    def interrupt(self) -> None:
        """SIGINT between cells (main thread): pending stdin requests end interrupted."""
        self.feed(Interrupt("SIGINT"))

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # =====================================================================
    # effects out
    # =====================================================================

    def _send(self, effect: Send) -> None:
        if effect.msg_type == "iopub_welcome":
            return  # sent by the IOPub thread as the subscribe arrived (app.py)
        if effect.msg_type == "status" and effect.parent is not None \
                and effect.parent.get("msg_id") in self._quiet:
            if effect.content.get("execution_state") == "idle":
                self._quiet.discard(effect.parent["msg_id"])
            return
        frames = [*effect.to, *self.codec.encode(effect.msg_id, effect.msg_type,
                                                   effect.content, effect.parent),
                  *effect.buffers]
        if effect.channel is Channel.IOPUB:
            self.kernel.iopub_socket.send_multipart(frames)
            return
        if effect.channel is Channel.SHELL:
            self.shell_out.send_multipart(frames)
            return
        if effect.channel is not Channel.STDIN:
            raise ValueError(f"the bridge sends nothing on {effect.channel.value}")
        ok, detail = True, ""
        try:
            self.kernel.stdin_socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as e:
            if e.errno not in UNSENT:
                raise
            ok, detail = False, UNSENT[e.errno]
            log.info("commspec: %s not sent: %s", effect.msg_type, detail)
        if effect.confirm:
            self.feed(Sent(effect.msg_id, ok, detail))

    # =====================================================================
    # CoreRunner (what the application needs)
    # =====================================================================

    def now(self) -> float:
        return time.monotonic()

    def run_at(self, when: float, callback: Callable[[], None]) -> LoopTimer:
        return self.call_later(max(0.0, when - self.now()), callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> LoopTimer:
        """On the main thread's loop (tornado's timers are not thread-safe: one asked
        for from another thread is armed there)."""
        timer = LoopTimer(self.kernel.io_loop)
        if self.in_core_thread():
            timer.arm(delay, callback)
        else:
            self.post(lambda: timer.arm(delay, callback))
        return timer

    def in_core_thread(self) -> bool:
        return threading.current_thread() is self._main

    def new_msg_id(self) -> str:
        return self.codec.new_msg_id()

    def submit(self, event: Input) -> None:
        if self.in_core_thread():
            self.feed(event)
        else:
            self.post(lambda: self.feed(event))

    def call(self, event: Input) -> None:
        self._on_main(lambda: self.feed(event))

    def _on_main(self, fn: Callable[[], T]) -> T:
        if self.in_core_thread():
            return fn()
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as e:
                done.set_exception(e)

        self.post(run)
        try:
            return done.result(CALL_TIMEOUT)
        except FutureTimeout:
            raise TimeoutError(f"the kernel's main thread did not answer within "
                               f"{CALL_TIMEOUT:g} s (it is running code)") from None

    # =====================================================================
    # shutdown
    # =====================================================================

    def shut_down(self) -> None:
        """Every comm closed, every request failed (any thread; safe to call twice)."""
        if self._stopped:
            return
        try:
            self._on_main(lambda: self.feed(Shutdown()))
        except (EndpointClosed, TimeoutError) as e:
            log.warning("commspec: shutdown not carried out on the main thread: %s", e)
        with self._inbox_lock:
            self._stopped = True

    # =====================================================================
    # the reference kernel's public API, for kernel code and the control socket
    # =====================================================================

    @property
    def connection_info(self) -> ConnectionInfo:
        session = self.kernel.session
        return ConnectionInfo(0, 0, 0, 0, 0, key=bytes(session.key).decode(),
                              signature_scheme=session.signature_scheme)

    @property
    def max_detached(self) -> int:
        return self.core.max_detached

    #: ipykernel reads shell itself: its input cannot be held (``hold_inbound``)
    holds_inbound = False

    def hold_until_queued(self, channels: Sequence[str], timeout: float = 5.0) -> Future[bool]:
        raise NotImplementedError("ipykernel reads its shell socket itself: it cannot be held")

    @property
    def subscriber_count(self) -> int:
        return self._on_main(lambda: self.core.presence.subscriber_count)

    @property
    def late_replies(self) -> int:
        return self._on_main(lambda: self.core.requests.late_replies
                             + self.core.stdin.late_replies)

    @property
    def pending_count(self) -> int:
        return self._on_main(lambda: self.core.requests.pending_count)

    @property
    def stdin_pending_count(self) -> int:
        return self._on_main(lambda: self.core.stdin.pending_count)

    def comm_states(self) -> dict[str, str]:
        return self._on_main(lambda: {r.comm_id: r.state.value for r in self.core.comms})

    def comm(self, comm_id: str) -> Comm | None:
        return self._on_main(lambda: self.app.comms.get(comm_id)
                             if self.core.comms.get(comm_id) is not None else None)

    def current_identity(self) -> bytes | None:
        return self.app.current_identity()

    def open_comm(self, target_name: str, data: dict[str, Any] | None = None, *,
                  persistent: bool = False, comm_id: str | None = None,
                  owner: bytes | None = None) -> Comm:
        """Open a comm from the kernel (any thread); NoFrontend if nobody is subscribed.
        Its owner: ``owner``, else the frontend whose request is being handled (a cell's
        ``execute_request`` included), else every subscriber."""
        owner = owner if owner is not None else self.kernel_caller()
        return self.app.open_comm(target_name, data, persistent=persistent, comm_id=comm_id,
                                  owner=owner)

    def kernel_caller(self) -> bytes | None:
        """The frontend whose shell request the main thread is running, if any."""
        return self.kernel.caller_identity() if self.in_core_thread() else None

    def stdin_request(self, msg_type: str, content: dict[str, Any],
                      identity: bytes | None = None) -> Future[Any]:
        return self.app.stdin_request(msg_type, content, identity)


def _message(msg: dict[str, Any]) -> Any:
    """ipykernel's deserialized message in the core's shape (``Message``)."""
    header = dict(msg["header"])
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "parent_header": dict(msg.get("parent_header") or {}),
        "metadata": dict(msg.get("metadata") or {}),
        "content": msg.get("content") or {},
        "buffers": [memoryview(b) for b in msg.get("buffers") or ()],
    }
