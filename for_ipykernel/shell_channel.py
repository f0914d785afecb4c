"""What commspec needs from ipykernel's shell channel thread: order and connections.

ipykernel 7 reads the shell ROUTER on a thread of its own (the shell channel thread)
and forwards each message to the main thread through an inproc socket. Two of the
spec's rules need to know what that thread had read, and when:

- **The drain rule** (SPEC, "The drain rule"): a departure acts only after the shell
  messages already received. Every subscription frame of the IOPub thread is
  therefore routed through the shell channel thread (in order: a re-subscribe never
  overtakes the unsubscribe before it); at an unsubscribe it first reads the shell
  ROUTER dry, the comm messages it finds go to the core with the departure (the
  drain batch: the ones that settle something are handled before it acts), the
  others are forwarded to ipykernel as usual. The departure then follows everything
  already forwarded, as a *marker* on the same inproc socket: the main thread takes
  it in order with the messages before it (``KernelBridge.take_ordered``).
- **Per-connection departure** (SPEC, "Per-connection departure for stdin requests"):
  each shell message's ``ZMQ_SRCFD`` is read here and handed to the main thread with
  the message (by its signature); the shell ROUTER's socket monitor is read here too,
  after the message it follows, and its events go to the core as ordered inputs. A
  message read while monitor events were queued behind it may have come by a
  connection those events end: its fd is not trusted (``None``), which unbinds its
  sender (``connections.py``: missing a departure, never a wrong one).

Everything here runs on the shell channel thread, but ``fd_of`` (main thread).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import zmq

from commspec.impl.core.events import (
    Channel,
    PeerConnections,
    Received,
    Refused,
    SubscriptionFrames,
)
from commspec.impl.errors import BadMessage
from commspec.impl.frames import monitor_event, readable, recv_monitor_events
from commspec.impl.kernel.sockets import connection_changes
from commspec.impl.wire import DELIMITER

from .bridge import KernelBridge

__all__ = ["MARKER", "ShellChannelWatch"]

#: the first bytes of an ordered-input marker on the inproc socket to the main thread
MARKER = b"commspec-ordered:"
#: how many shell messages' fds wait for the main thread at most
FDS_KEPT = 10_000


def signature_of(frames: Sequence[Any]) -> bytes | None:
    """A wire message's HMAC signature (the frame after the delimiter): its name here."""
    for i, frame in enumerate(frames):
        data = frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)
        if data == DELIMITER:
            if i + 1 < len(frames):
                after = frames[i + 1]
                return after.bytes if isinstance(after, zmq.Frame) else bytes(after)
            return None
    return None


class ShellChannelWatch:
    """Orders departures after shell traffic and reads shell connections (see above)."""

    def __init__(self, kernel: Any, bridge: KernelBridge, monitor: zmq.Socket[bytes] | None,
                 core_types: frozenset[str]) -> None:
        self.kernel = kernel
        self.bridge = bridge
        self.monitor = monitor
        self.core_types = core_types
        self._fds: OrderedDict[bytes, int | None] = OrderedDict()
        self._fds_lock = threading.Lock()
        self._monitor_stream: Any = None

    @property
    def loop(self) -> Any:
        return self.kernel.shell_channel_thread.io_loop

    def start(self) -> None:
        """Read the monitor on the shell channel thread (any thread)."""
        if self.monitor is not None:
            self.loop.add_callback(self._watch_monitor)

    def _watch_monitor(self) -> None:
        from zmq.eventloop.zmqstream import ZMQStream

        assert self.monitor is not None
        self._monitor_stream = ZMQStream(self.monitor, self.loop)
        self._monitor_stream.on_recv(self._on_monitor_message)

    def _on_monitor_message(self, frames: list[bytes]) -> None:
        assert self.monitor is not None
        first = monitor_event(frames[0]) if frames else None
        self._hand_over(([first] if first is not None else [])
                        + recv_monitor_events(self.monitor))

    # -- each shell message ----------------------------------------------------------

    def before_forward(self, frames: Sequence[zmq.Frame]) -> None:
        """A shell message ipykernel is about to forward: remember its connection."""
        signature = signature_of(frames)
        if signature is None:
            return
        fd = self._trusted_fd(frames)
        with self._fds_lock:
            self._fds[signature] = fd
            while len(self._fds) > FDS_KEPT:
                self._fds.popitem(last=False)

    def _trusted_fd(self, frames: Sequence[zmq.Frame]) -> int | None:
        """The fd a message came by, unless monitor events are queued behind it."""
        if self.monitor is not None and readable(self.monitor):
            return None
        try:
            fd = int(frames[0].get(zmq.SRCFD))
        except (zmq.ZMQError, TypeError, ValueError):
            return None
        return fd if fd >= 0 else None

    def after_forward(self) -> None:
        """Monitor events queued behind the message act after it (the drain rule)."""
        if self.monitor is not None and readable(self.monitor):
            self._hand_over(recv_monitor_events(self.monitor))

    def fd_of(self, frames: Sequence[Any]) -> int | None:
        """The connection a forwarded message came by, if known (main thread)."""
        signature = signature_of(frames)
        if signature is None:
            return None
        with self._fds_lock:
            return self._fds.pop(signature, None)

    def _hand_over(self, events: list[tuple[int, int]]) -> None:
        changes = connection_changes(Channel.SHELL, events)
        if changes:
            self._ordered(PeerConnections(tuple(changes)))

    # -- subscriptions (from the IOPub thread) ------------------------------------------

    def subscription(self, event: SubscriptionFrames) -> None:
        """An XPUB frame: to the core, after what shell had received (IOPub thread)."""
        self.loop.add_callback(self._on_subscription, event)

    async def _on_subscription(self, event: SubscriptionFrames) -> None:
        if not any(f[:1] == b"\x00" for f in event.frames):
            self._ordered(event)
            return
        drained: list[Received | Refused] = []
        sock = self.kernel.shell_stream.socket
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            item = self._as_core_input(frames)
            if item is None:
                # not a comm message: ipykernel's, forwarded as its own stream would
                self.before_forward(frames)
                await self.kernel.forward_shell(frames)
            else:
                drained.append(item)
        self._ordered(SubscriptionFrames(event.frames, event.sent_by_peer, tuple(drained)))
        self.after_forward()

    def _as_core_input(self, frames: list[zmq.Frame]) -> Received | None:
        """A drained message the core handles itself (a comm message), else None."""
        fd = self._trusted_fd(frames)
        try:
            item = self.bridge.codec.decode([f.bytes for f in frames], "shell", fd)
        except BadMessage:
            return None  # ipykernel's to refuse, as it refuses any other
        return item if item.msg_type in self.core_types else None

    # -- to the main thread, in order ------------------------------------------------------

    def _ordered(self, item: PeerConnections | SubscriptionFrames) -> None:
        number = self.bridge.ordered(item)
        to_main = self.kernel.shell_channel_thread.manager.get_shell_channel_to_subshell_socket(
            None)
        to_main.send_multipart([MARKER + str(number).encode()])


def marker_number(frames: Sequence[Any]) -> int | None:
    """The number an ordered-input marker carries; None if ``frames`` is not one."""
    if len(frames) != 1:
        return None
    data = frames[0].bytes if isinstance(frames[0], zmq.Frame) else bytes(frames[0])
    if not data.startswith(MARKER):
        return None
    try:
        return int(data[len(MARKER):])
    except ValueError:
        return None
