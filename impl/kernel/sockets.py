"""The kernel's five sockets, bound with the options the disconnection rules need.

- shell, control, stdin: ROUTER with ROUTER_MANDATORY (a send to a departed
  identity raises EHOSTUNREACH instead of vanishing) and ROUTER_HANDOVER (a
  frontend that reconnects with its session id takes its identity over).
- iopub: XPUB with XPUB_VERBOSE (not VERBOSER), so every subscribe reaches the
  kernel (each is welcomed), and a topic's unsubscribe when the last connection
  holding it ends (``impl/core/presence.py`` says why that, and not every one).
- ZMTP heartbeats on all four, set before bind (libzmq reads them when a
  connection is made): a frozen peer or a half-open link then ends in a
  disconnect, so in an unsubscribe too.
- shell and stdin: a socket monitor each (``EVENT_ACCEPTED``, ``EVENT_DISCONNECTED``),
  set up before bind so every connection is seen: with each message's
  ``ZMQ_SRCFD`` it tells the kernel which frontend's connection ended
  (``impl/core/connections.py``).
- hb: a ROUTER that echoes every message, on a thread of its own, so a busy
  I/O thread never looks like a dead kernel.
- No send limit on shell, control, stdin and iopub (``SNDHWM`` 0): at libzmq's default
  of 1,000 messages an XPUB drops what a subscriber that fell behind has not taken,
  silently (replies and idles lost, their requests stuck), and a mandatory ROUTER
  refuses the send (EAGAIN). A peer that stops reading is cut off instead by the
  ZMTP heartbeat, which libzmq keeps up even while the data waits (measured: a
  subscriber that stopped reading during a flood was dropped at timeout + interval),
  and its going is a departure like any other; until then its queue grows.
- A size limit on every socket, the kernel's largest message (``MAXMSGSIZE``, set
  before bind): libzmq refuses a larger frame as soon as it has read its size, before
  buffering any of it, and closes the connection that sent it. The kernel sees only
  that connection end, as it sees any other (the monitor's disconnect; on IOPub its
  unsubscribes): libzmq reports no cause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import zmq

from ..connection import ConnectionInfo
from ..core.events import Channel, PeerConnectionLost, PeerConnectionMade
from ..wire import DEFAULT_MAX_MESSAGE_BYTES

__all__ = [
    "MONITORED_EVENTS",
    "UNSENT",
    "HeartbeatEcho",
    "HeartbeatSettings",
    "KernelSockets",
    "check_max_message_bytes",
    "connection_changes",
]

#: what the shell and stdin monitors report: connections made and gone, with their fd
MONITORED_EVENTS = int(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
#: why a send to one peer did not go out, by errno (mandatory ROUTERs raise these)
UNSENT: dict[int, str] = {
    zmq.EHOSTUNREACH: "EHOSTUNREACH: the stdin socket has no such peer",
    zmq.EAGAIN: "EAGAIN: the peer's queue is full",
}
#: no limit on what waits to be sent to one peer (libzmq's 0)
UNLIMITED = 0

log = logging.getLogger("commspec.kernel")


@dataclass(frozen=True)
class HeartbeatSettings:
    """ZMTP heartbeats on the kernel's sockets. The timeout is the longest stall
    a healthy frontend may have (a client not draining IOPub for a while)."""

    interval: float = 1.0
    timeout: float = 10.0
    ttl: float | None = None  # what peers are asked to use; defaults to ``timeout``

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("heartbeat interval and timeout must be positive")

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        sock.setsockopt(zmq.HEARTBEAT_IVL, _ms(self.interval))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _ms(self.timeout))
        sock.setsockopt(zmq.HEARTBEAT_TTL, _ms(self.ttl if self.ttl is not None else self.timeout))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class KernelSockets:
    """Creates and binds shell, control, stdin and iopub; ports of 0 are chosen at bind."""

    def __init__(
        self, context: zmq.Context[zmq.Socket[bytes]], info: ConnectionInfo,
        heartbeat: HeartbeatSettings, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        """``max_message_bytes``: the largest frame a peer may send (libzmq closes the
        connection of one that sends a larger one)."""
        self._all: list[zmq.Socket[bytes]] = []
        self._monitored: list[zmq.Socket[bytes]] = []
        self.ports: dict[str, int] = {}
        self._max_message_bytes = check_max_message_bytes(max_message_bytes)
        try:
            self.shell = self._router(context, heartbeat)
            self.control = self._router(context, heartbeat)
            self.stdin = self._router(context, heartbeat)
            self.shell_monitor = self._monitor(self.shell)
            self.stdin_monitor = self._monitor(self.stdin)
            self.iopub = self._limited(context.socket(zmq.XPUB))
            self.iopub.setsockopt(zmq.XPUB_VERBOSE, 1)
            heartbeat.apply(self.iopub)
            for name in ("shell", "control", "stdin", "iopub"):
                self.ports[name] = _bind(getattr(self, name), info, name)
        except BaseException:
            self.close()
            raise

    def _track(self, sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        sock.linger = 0
        self._all.append(sock)
        return sock

    def _limited(self, sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        """A peer-facing socket: no send limit, the size limit (see the module's rules)."""
        self._track(sock)
        sock.setsockopt(zmq.SNDHWM, UNLIMITED)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        return sock

    def _router(
        self, context: zmq.Context[zmq.Socket[bytes]], heartbeat: HeartbeatSettings
    ) -> zmq.Socket[bytes]:
        sock = self._limited(context.socket(zmq.ROUTER))
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        heartbeat.apply(sock)
        return sock

    def _monitor(self, sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        """The socket monitor of ``sock`` (a PAIR the kernel's I/O thread reads)."""
        monitor = self._track(sock.get_monitor_socket(MONITORED_EVENTS))
        self._monitored.append(sock)
        return monitor

    def close(self, linger: float = 0.0) -> None:
        for sock in self._monitored:
            if not sock.closed:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError as e:  # closing anyway
                    log.debug("disable_monitor: %s", e)
        self._monitored.clear()
        for sock in self._all:
            if not sock.closed:
                sock.close(linger=_ms(linger) if linger > 0 else 0)
        self._all.clear()


def connection_changes(channel: Channel, events: Iterable[tuple[int, int]]
                       ) -> list[PeerConnectionMade | PeerConnectionLost]:
    """A socket monitor's ``(event, fd)`` as the core's inputs: accepts and disconnects."""
    changes: list[PeerConnectionMade | PeerConnectionLost] = []
    for event, fd in events:
        if event == zmq.EVENT_ACCEPTED:
            changes.append(PeerConnectionMade(channel, fd))
        elif event == zmq.EVENT_DISCONNECTED:
            changes.append(PeerConnectionLost(channel, fd))
    return changes


def check_max_message_bytes(limit: int) -> int:
    """``limit``, if it can be a size limit (a positive int); ValueError naming it if not."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"max_message_bytes must be a positive int, got {limit!r}")
    return limit


def _bind(sock: zmq.Socket[bytes], info: ConnectionInfo, channel: str) -> int:
    port = info.port(channel)
    if port == 0:
        return int(sock.bind_to_random_port(f"{info.transport}://{info.ip}"))
    sock.bind(f"{info.transport}://{info.ip}:{port}")
    return port


class HeartbeatEcho:
    """The heartbeat channel: echoes every message back to its sender, on its own thread."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], info: ConnectionInfo,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._context = context
        self._socket: zmq.Socket[bytes] | None = context.socket(zmq.ROUTER)
        self._socket.linger = 0
        try:
            # A ping is echoed whole: one of any size would cost the kernel twice over.
            self._socket.setsockopt(zmq.MAXMSGSIZE, check_max_message_bytes(max_message_bytes))
            self.port = _bind(self._socket, info, "hb")
        except BaseException:
            self._socket.close()
            raise
        self._stop_address = f"inproc://commspec-hb-stop-{id(self)}"
        self._stop_receiver: zmq.Socket[bytes] | None = context.socket(zmq.PULL)
        self._stop_receiver.bind(self._stop_address)
        self._thread = threading.Thread(target=self._run, name="commspec-kernel-hb", daemon=True)
        self._echoing = threading.Event()
        self._echoing.set()

    def silence(self) -> None:
        """From now on pings go unanswered, as a frozen or half-open kernel's do (for the
        tests of a frontend's loss detection)."""
        self._echoing.clear()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            stopper = self._context.socket(zmq.PUSH)
            stopper.linger = 0
            try:
                stopper.connect(self._stop_address)
                stopper.send(b"stop")
                self._thread.join(timeout)
            finally:
                stopper.close()
        else:
            self._close()

    def _run(self) -> None:
        assert self._socket is not None and self._stop_receiver is not None
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._stop_receiver, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self._stop_receiver in ready:
                    return
                while True:
                    try:
                        frames = self._socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if not self._echoing.is_set():
                        continue
                    try:
                        self._socket.send_multipart(frames, zmq.NOBLOCK)
                    except zmq.ZMQError as e:  # the pinger left, or its queue is full
                        log.debug("heartbeat echo dropped: %s", e)
        except zmq.ZMQError as e:
            log.warning("heartbeat echo stopped: %s", e)
        finally:
            self._close()

    def _close(self) -> None:
        for sock in (self._socket, self._stop_receiver):
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        self._socket = self._stop_receiver = None
