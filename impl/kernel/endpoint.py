"""The reference kernel endpoint: sockets, a thread, and the core's effects carried out.

Rules:
- The protocol lives in :class:`~commspec.impl.core.kernel.KernelProtocol`; this
  module is the shell around it. One I/O thread (impl/loop.py) owns every socket;
  it turns what happens on the wire into the core's inputs (a message, a frame
  the codec refused, an XPUB subscribe or unsubscribe) and carries out the
  effects the core returns, in order: sends, timers, trace events, and the
  application's part (``application.py``).
- IOPub is read first in each round and before every shell, control and stdin
  message, so subscription changes are seen before the traffic that followed
  them. An unsubscribe is handed over with everything shell and stdin had
  already received (the drain rule's batch).
- Which frontend's connection ended (``impl/core/connections.py``): each shell and
  stdin message is read with the fd of its connection (``ZMQ_SRCFD``); the two
  ROUTERs' socket monitors report connections accepted and gone. A message is
  handed over alone only when its ROUTER's monitor has nothing queued behind it;
  otherwise the ROUTERs and monitors are drained in turn until a drain of the
  ROUTERs is followed by empty monitors, and the events go in with the messages
  drained before them (``PeerConnections``), so the core can tell which
  connection each came by.
- The public API is thread-safe: calls from other threads are posted to the I/O
  thread (reads wait for its answer); comm requests return futures at once.
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
from ..core.comms import DEFAULT_MAX_DETACHED, check_max_detached
from ..core.events import (
    Channel,
    Input,
    Interrupt,
    PeerConnectionLost,
    PeerConnectionMade,
    PeerConnections,
    Received,
    Refused,
    Send,
    Sent,
    Shutdown,
    ShutdownRequested,
    SubscriptionFrames,
)
from ..core.kernel import KernelProtocol
from ..core.policies import KernelPolicies
from ..errors import BadMessage, EndpointClosed
from ..frames import (
    readable,
    recv_frames,
    recv_frames_fd,
    recv_monitor_events,
    recv_subscription,
    send_frames,
    sent_by_peer,
)
from ..loop import IoLoop
from ..runner import LoopRunner
from ..targets import DEFAULT_TARGETS, TargetRegistry
from ..wire import DEFAULT_MAX_MESSAGE_BYTES, Codec
from .application import KernelApplication
from .sockets import (
    UNSENT,
    HeartbeatEcho,
    HeartbeatSettings,
    KernelSockets,
    check_max_message_bytes,
    connection_changes,
)

__all__ = ["KernelConfig", "KernelEndpoint"]

log = logging.getLogger("commspec.kernel")

#: messages handled per socket before the loop looks at the others again
BATCH = 256
#: a bound on the drain rule, so a flood on shell cannot hold an unsubscribe forever
DRAIN_LIMIT = 100_000
#: the channels whose connections are watched (their ROUTERs have socket monitors)
MONITORED = (Channel.SHELL, Channel.STDIN)

Message = dict[str, Any]  # what the public API takes: plain JSON-able dicts
T = TypeVar("T")



@dataclass(frozen=True)
class KernelConfig:
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    #: the largest message a peer may send, in bytes: a larger one is refused and
    #: counted; a single frame larger than this ends its connection (ZMQ_MAXMSGSIZE)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: how many ended requests and closed comm ids are remembered (late replies)
    remember: int = 10_000
    #: how many detached comms (persistent, their frontend gone) are kept; when one more
    #: detaches, the one detached longest is evicted (closed, comm_close published)
    max_detached: int = DEFAULT_MAX_DETACHED
    #: refuse an empty key unless this is set
    insecure: bool = False
    #: how long stop() lets already-queued messages (replies, comm_close) flush
    stop_linger: float = 1.0

    def __post_init__(self) -> None:
        # Refused here, not when the kernel starts: the mistake is in the config.
        check_max_detached(self.max_detached)
        check_max_message_bytes(self.max_message_bytes)


class KernelEndpoint(LoopRunner):
    """A Jupyter kernel that answers comm RPCs and keeps them sound under disconnection.

    Thread-safe public API. Use as a context manager, or ``start()``/``stop()``.
    ``connection_file``: read if it exists (ports of 0 are chosen at bind and
    written back), else created with fresh ports and key (and removed at stop);
    None: a temporary file is created. ``policies``: the disconnection rules
    (SPEC.md); the tests' broken kernels replace one of them.
    """

    core: KernelProtocol
    app: KernelApplication


    def __init__(
        self,
        connection_file: str | os.PathLike[str] | None = None,
        *,
        sink: TraceSink = discard,
        config: KernelConfig | None = None,
        targets: TargetRegistry | None = None,
        ip: str = "127.0.0.1",
        policies: KernelPolicies | None = None,
        on_io_death: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``on_io_death``: called (on the I/O thread) if the I/O loop itself fails and
        ends, taking every socket with it; ``commspec kernel`` exits non-zero then, so
        a restarter sees a dead kernel, not one whose heartbeat alone still echoes."""
        self.config = config or KernelConfig()
        self.sink = sink
        self.log = log
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
        self.codec = Codec(
            self._info.key.encode(),
            signature_scheme=self._info.signature_scheme,
            username="kernel",
            max_message_bytes=self.config.max_message_bytes,
        )
        self._loop = IoLoop("commspec-kernel-io", log=log, on_fatal=on_io_death)
        self.core = KernelProtocol(
            session_id=self.codec.session_id,
            key=self._info.key.encode(),
            targets=self.targets.kind,
            new_msg_id=self.codec.new_msg_id,
            policies=policies,
            tracing=sink is not discard,
            remember=self.config.remember,
            max_detached=self.config.max_detached,
        )
        self.app = KernelApplication(self.core, self, self.targets, self)
        LoopRunner.__init__(self)
        self.effects.update({Send: self._send, ShutdownRequested: self._shutdown_requested})
        self.shutdown_requested = threading.Event()
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sockets: KernelSockets | None = None
        self._heartbeat: HeartbeatEcho | None = None
        self._started = False
        self._stopped = False
        self._stop_lock = threading.Lock()

    # =====================================================================
    # lifecycle
    # =====================================================================

    def start(self) -> KernelEndpoint:
        if self._started:
            raise RuntimeError("the kernel endpoint was already started")
        self._started = True
        self._context = zmq.Context()
        try:
            self._sockets = KernelSockets(self._context, self._info, self.config.heartbeat,
                                          self.config.max_message_bytes)
            self._heartbeat = HeartbeatEcho(self._context, self._info,
                                            self.config.max_message_bytes)
            self._info = self._info.with_ports(dict(self._sockets.ports, hb=self._heartbeat.port))
            self._connection_file = self._write_connection_file()
        except BaseException:
            self._release()
            raise
        sockets = self._sockets
        self._by_channel = {Channel.SHELL: sockets.shell, Channel.CONTROL: sockets.control,
                            Channel.STDIN: sockets.stdin, Channel.IOPUB: sockets.iopub}
        self._monitors = {Channel.SHELL: sockets.shell_monitor,
                          Channel.STDIN: sockets.stdin_monitor}
        #: channels whose fds are not to be trusted until their ROUTER is seen empty
        self._unsure: set[Channel] = set()
        # IOPub first: subscription changes are seen before the shell traffic after them.
        self._loop.add_reader(sockets.iopub, self._on_iopub)
        for monitor in self._monitors.values():
            self._loop.add_reader(monitor, self._on_monitor)
        for channel in (Channel.CONTROL, Channel.SHELL, Channel.STDIN):
            self._loop.add_reader(self._by_channel[channel], partial(self._on_router, channel))
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
            self._loop.post(lambda: self.feed(Shutdown()))
        except EndpointClosed:
            pass  # a shutdown_request ended the thread already
        self._loop.stop(timeout)
        self._release()

    def interrupt(self, why: str = "SIGINT") -> None:
        """Interrupt from outside the protocol (a signal): pending stdin requests end
        ``interrupted``, exactly as on an interrupt_request. Any thread; returns at once."""
        self.submit(Interrupt(why))

    def __enter__(self) -> KernelEndpoint:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_shutdown_request(self, timeout: float | None = None) -> bool:
        """Block until a frontend sent shutdown_request (True) or ``timeout`` passed."""
        return self.shutdown_requested.wait(timeout)

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
        """Frontends known to listen: one per live peer, or one while only peerless
        subscribers hold topics (libzmq does not say how many they are)."""
        return self._read(lambda: self.core.presence.subscriber_count)

    @property
    def subscriptions(self) -> int:
        """The IOPub topics held, peer topics included (0: nobody receives anything)."""
        return self._read(lambda: self.core.presence.subscriptions)

    @property
    def live_peers(self) -> frozenset[bytes]:
        return self._read(lambda: self.core.presence.live_peers)

    @property
    def presence_state(self) -> str:
        return self._read(lambda: self.core.presence.state.value)

    def comm_states(self) -> dict[str, str]:
        """Open and detached comms, by id, with their state's value."""
        return self._read(lambda: {r.comm_id: r.state.value for r in self.core.comms})

    def comm_owner(self, comm_id: str) -> bytes | None:
        """The identity of the frontend that owns an open or detached comm (None: every
        subscriber does, or there is no such comm)."""
        return self._read(lambda: self.core.comm_owner(comm_id))

    def comms(self) -> list[Comm]:
        return self._read(lambda: [self.app.comms[r.comm_id] for r in self.core.comms
                                   if r.comm_id in self.app.comms])

    def comm(self, comm_id: str) -> Comm | None:
        """The open or detached comm with that id, if any."""
        return self._read(lambda: self.app.comms.get(comm_id)
                          if self.core.comms.get(comm_id) is not None else None)

    @property
    def max_detached(self) -> int:
        return self.config.max_detached

    #: ``hold_until_queued`` is supported (the control socket's ``hold_inbound``)
    holds_inbound = True

    @property
    def io_failures(self) -> int:
        """Callbacks of the I/O thread that raised: logged and counted; the loop went on."""
        return self._loop.failures

    @property
    def late_replies(self) -> int:
        """Replies (comm and stdin) for requests that had already ended."""
        return self._read(lambda: self.core.requests.late_replies
                          + self.core.stdin.late_replies)

    @property
    def abandoned_answers(self) -> int:
        """Comm RPCs dropped unanswered because their frontend left (nothing is published
        for a frontend that has left)."""
        return self._read(lambda: self.core.abandoned_answers)

    @property
    def pending_count(self) -> int:
        return self._read(lambda: self.core.requests.pending_count)

    @property
    def stdin_pending_count(self) -> int:
        return self._read(lambda: self.core.stdin.pending_count)

    def connection_fd(self, identity: bytes, channel: str = "shell") -> int | None:
        """The fd of the shell (or stdin) connection the frontend ``identity`` was last
        heard from on, if the kernel could tell (``impl/core/connections.py``)."""
        return self._read(lambda: self.core.connections.fd_of(Channel(channel), identity))

    @property
    def bad_input(self) -> Counter[str]:
        """Bad input dropped so far, by reason."""
        return self._read(self.core.bad.counts)

    # =====================================================================
    # services to targets and applications (thread-safe)
    # =====================================================================


    def current_identity(self) -> bytes | None:
        """The frontend whose shell request is being handled (None off the I/O thread)."""
        return self.app.current_identity()

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
        return self.app.open_comm(target_name, data, persistent=persistent, comm_id=comm_id,
                                   owner=owner)

    def stdin_request(
        self, msg_type: str, content: Message, identity: bytes | None = None
    ) -> Future[Any]:
        """Ask one frontend on stdin (input_request / rpc_request).

        Addressed to ``identity``, by default the frontend whose shell request is
        current (or, off the I/O thread, the last frontend that sent one).
        """
        return self.app.stdin_request(msg_type, content, identity)

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

    def inject_iopub(self, msg_type: str, content: Message, parent: Message | None) -> None:
        """Test hook: publish one message on IOPub outside the protocol (a second reply
        to a request that has one already), on the I/O thread, and return once it is out.
        Nothing in the kernel's state changes."""
        topic = f"kernel.{self.codec.session_id}.{msg_type}".encode()
        self._loop.call_sync(lambda: self._send(Send(
            Channel.IOPUB, (topic,), self.codec.new_msg_id(), msg_type, content, parent)))

    # -- CommTransport (any thread): the application turns them into inputs -----------

    def comm_send(self, comm: Comm, data: Message, buffers: Sequence[bytes] | None) -> None:
        self.app.comm_send(comm, data, buffers)

    def comm_request(
        self, comm: Comm, method: str, params: Any, timeout: float | None
    ) -> Future[Any]:
        return self.app.comm_request(comm, method, params, timeout)

    def comm_close(self, comm: Comm, data: Message | None) -> None:
        self.app.comm_close(comm, data)

    # =====================================================================
    # CoreRunner: handing inputs to the core (any thread)
    # =====================================================================

    def submit(self, event: Input) -> None:
        if self._loop.in_loop_thread():
            self.feed(event)
        else:
            self._loop.post(lambda: self.feed(event))

    def call(self, event: Input) -> None:
        self._loop.call_sync(lambda: self.feed(event))





    # =====================================================================
    # the I/O thread: inputs in, effects out
    # =====================================================================



    def _send(self, effect: Send) -> None:
        frames = self.codec.encode(effect.msg_id, effect.msg_type, effect.content, effect.parent)
        sock = self._by_channel[effect.channel]
        ok, detail = True, ""
        try:
            send_frames(sock, effect.to, frames, effect.buffers)
        except zmq.ZMQError as e:
            if e.errno not in UNSENT:
                raise
            ok, detail = False, UNSENT[e.errno]
            if e.errno == zmq.EHOSTUNREACH:
                log.info("kernel: %s not sent: its frontend is gone", effect.msg_type)
            else:
                # Cannot happen: the sockets have no send limit (sockets.py). Were it
                # to, the message is lost, and says why.
                log.error("kernel: %s not sent: the peer's queue is full", effect.msg_type)
        if effect.confirm:
            self.feed(Sent(effect.msg_id, ok, detail))





    def _shutdown_requested(self, effect: ShutdownRequested) -> None:
        self.shutdown_requested.set()
        # After this request's idle: close everything, then end the thread.
        self._loop.post(lambda: self.feed(Shutdown()))
        self._loop.post(self._loop.request_stop)

    # -- reading the sockets ----------------------------------------------------------

    def _on_router(self, channel: Channel) -> None:
        sock = self._by_channel[channel]
        for _ in range(BATCH):
            # Subscription changes first, before each message: libzmq lets a subscriber
            # receive what we publish as soon as it has read its subscription, which can
            # be before we have. A frontend that saw one of our messages (a probe's busy)
            # and answered must find its subscription already counted.
            if readable(self._by_channel[Channel.IOPUB]):
                self._on_iopub()
            item = self._recv(sock, channel)
            monitor = self._monitors.get(channel)
            if monitor is not None and readable(monitor):
                # Events queued behind it: which connection it came by is for the batch
                # to tell (connections.py), with everything else already received.
                self._on_monitor(item)
                continue
            if item is None:
                self._unsure.discard(channel)  # seen empty: what comes next is newer
                return
            self.feed(item)

    def _recv(self, sock: zmq.Socket[bytes], channel: Channel) -> Received | Refused | None:
        """The next message on ``sock`` as an input, or None if none is queued. On shell
        and stdin it says which connection it came by (its fd), unless that cannot be
        trusted (a drain stopped at its bound with messages left behind)."""
        fd: int | None = None
        if channel in MONITORED:
            got = recv_frames_fd(sock)
            if got is None:
                return None
            frames, fd = got
            if channel in self._unsure:
                fd = None
        else:
            plain = recv_frames(sock)
            if plain is None:
                return None
            frames = plain
        try:
            return self.codec.decode(frames, channel.value, fd)
        except BadMessage as e:
            return Refused(channel, e.reason.value, str(e))

    def _on_monitor(self, first: Received | Refused | None = None) -> None:
        """Connections accepted and gone on shell and stdin, with every message those
        ROUTERs had received before the events were read (``first``: one already read).

        libzmq queues a connection's accept before its first message and its
        disconnect after its last, so the ROUTERs are drained, then the monitors read,
        until a drain is followed by empty monitors: whatever is read after this was
        queued after every event handed over here.

        Subscriptions are read once, first (``_on_router`` did so before ``first``):
        nothing is published while the batch is read, so whatever a frontend sent on
        seeing a publication was sent after its subscription had been queued, and
        that was read here."""
        monitors = self._monitors
        if first is None:
            if not any(readable(m) for m in monitors.values()):
                return  # the other monitor's reader took it all already
            if readable(self._by_channel[Channel.IOPUB]):
                self._on_iopub()  # subscriptions first, as before every message
        drained: list[Received | Refused] = [] if first is None else [first]
        changes: list[PeerConnectionMade | PeerConnectionLost] = []
        full = False
        while True:
            for channel in MONITORED:
                full = self._drain_into(channel, drained) or full
            events = [(channel, recv_monitor_events(monitors[channel]))
                      for channel in MONITORED]
            if not any(queued for _, queued in events):
                break
            for channel, queued in events:
                changes += connection_changes(channel, queued)
            if full:
                break
        if full:
            # Left behind in a ROUTER: messages that may predate these events. Their fds
            # are not trusted until that ROUTER has been seen empty.
            self._unsure.update(MONITORED)
        if changes or drained:
            self.feed(PeerConnections(tuple(changes), tuple(drained)))

    def _drain_into(self, channel: Channel, out: list[Received | Refused]) -> bool:
        """Read ``channel``'s ROUTER into ``out`` until it is empty (False) or the drain
        bound is reached (True)."""
        sock = self._by_channel[channel]
        while len(out) < DRAIN_LIMIT:
            item = self._recv(sock, channel)
            if item is None:
                self._unsure.discard(channel)  # seen empty: what comes next is newer
                return False
            out.append(item)
        return True

    def _on_iopub(self) -> None:
        sock = self._require_sockets().iopub
        frames: list[bytes] = []
        by_peer: list[bool] = []
        for _ in range(BATCH):
            parts = recv_subscription(sock)
            if parts is None:
                break
            if len(parts) != 1:
                self.feed(Refused(Channel.IOPUB, "iopub_frame",
                                   f"{len(parts)}-part message on IOPub"))
                continue
            frames.append(parts[0].bytes)
            by_peer.append(sent_by_peer(parts[0]))
        if frames:
            unsubscribes = any(f[:1] == b"\x00" for f in frames)
            self.feed(SubscriptionFrames(tuple(frames), tuple(by_peer),
                                         self._drain() if unsubscribes else ()))

    def _drain(self) -> tuple[Received | Refused, ...]:
        """The drain rule's I/O: every shell and stdin message already received. A
        channel whose monitor has events queued behind them cannot say which connection
        each came by: their fds are dropped (the core then trusts none of them)."""
        out: list[Received | Refused] = []
        for channel in (Channel.SHELL, Channel.STDIN):
            start = len(out)
            if self._drain_into(channel, out):
                self._unsure.add(channel)
            if readable(self._monitors[channel]):
                out[start:] = [_without_fd(item) for item in out[start:]]
        return tuple(out)

    def _require_sockets(self) -> KernelSockets:
        if self._sockets is None:
            raise EndpointClosed("the kernel's sockets are closed")
        return self._sockets


def _without_fd(item: Received | Refused) -> Received | Refused:
    if isinstance(item, Received) and item.fd is not None:
        return Received(item.channel, item.identities, item.msg)
    return item
