"""One link to the kernel: a generation of sockets and what watches them.

The link decides nothing: it is the thin shell between the wire and the
frontend's protocol core. It hands every frame set it reads to ``on_frames(link,
channel, frames)`` (the endpoint decodes it into an input), and turns a
heartbeat timeout or a monitor's EVENT_DISCONNECTED into ``on_lost(link, why)``.
A reconnect closes the link and opens a new one; callbacks of a closed link are
never called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import zmq

from commspec.impl.connection import ConnectionInfo
from commspec.impl.core.events import Channel
from commspec.impl.core.frontend import FrontendOptions
from commspec.impl.frames import readable, recv_frames, send_frames
from commspec.impl.loop import IoLoop

from .channels import Channels
from .heartbeat import Heartbeat

__all__ = ["Link"]

#: messages read from one socket before the others get their turn
BATCH = 256



class Link:
    def __init__(
        self,
        loop: IoLoop,
        context: zmq.Context[zmq.Socket[bytes]],
        connection: ConnectionInfo,
        session_id: str,
        options: FrontendOptions,
        *,
        on_frames: Callable[[Link, Channel, list[bytes]], None],
        on_lost: Callable[[Link, str], None],
    ) -> None:
        self._loop = loop
        self._context = context
        self._connection = connection
        self._options = options
        self._on_frames = on_frames
        self._on_lost = on_lost
        self._heartbeat: Heartbeat | None = None
        self.closed = False
        self.channels = Channels(context, connection, session_id, presence=options.presence_topic)
        self._sockets = {Channel(name): sock for name, sock in self.channels.by_name().items()}
        for channel, sock in self._sockets.items():
            # shell is also written by callers' threads (requests go out without a
            # hand-off): the loop watches it by its fd, never touching the socket
            loop.add_reader(sock, functools.partial(self._drain, sock, channel),
                            by_fd=channel is Channel.SHELL)
        for monitor in self.channels.monitors:
            loop.add_reader(monitor, functools.partial(self._on_monitor, monitor))

    # -- sending ----------------------------------------------------------------------

    def send(self, channel: Channel, *frames: Sequence[bytes]) -> None:
        """Send one message (the frames of ``frames`` in order); zmq.Again if the
        socket's queue is full."""
        if self.closed:
            raise RuntimeError("the link is closed")
        send_frames(self._sockets[channel], *frames)

    def shell_pending(self) -> bool:
        """Whether a reply waits on shell (a send may have taken in its fd's signal)."""
        return not self.closed and readable(self._sockets[Channel.SHELL])

    def drain_shell(self) -> None:
        """Read what waits on shell (on the loop thread)."""
        self._drain(self._sockets[Channel.SHELL], Channel.SHELL)

    # -- watching -------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """Watch the heartbeat from now on; only once the kernel has proven itself, since a
        kernel still starting up is the connect deadline's business, not a loss."""
        if self._heartbeat is not None or self.closed:
            return
        self._heartbeat = Heartbeat(
            self._loop,
            self._context,
            self._connection.url("hb"),
            interval=self._options.heartbeat_interval,
            timeout=self._options.heartbeat_timeout,
            on_lost=lambda: self._lost(
                f"heartbeat unanswered for {self._options.heartbeat_timeout} s"
            ),
        )
        self._heartbeat.start()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        for sock in (*self.channels.by_name().values(), *self.channels.monitors):
            self._loop.remove_reader(sock)
        self.channels.close()

    def drop_iopub(self) -> None:
        """Close the IOPub socket alone, without reporting a loss (I/O thread).

        A test hook for the race of ark issue 841: the kernel sees this frontend's
        unsubscribes while its shell stays open, so an answer sent afterwards
        reaches the kernel late. The IOPub monitor goes first, so its "disconnected"
        is not taken for a lost link.
        """
        if self.closed:
            return
        monitor = self.channels.monitors[1]  # (shell, iopub), as Channels builds them
        for sock in (monitor, self.channels.iopub):
            self._loop.remove_reader(sock)
        self._sockets.pop(Channel.IOPUB, None)
        self.channels.close_iopub()

    # -- internals (I/O thread) -----------------------------------------------------------

    def _lost(self, why: str) -> None:
        if not self.closed:
            self._on_lost(self, why)

    def _on_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        if not self.closed and Channels.link_down(monitor):
            self._lost("socket monitor: the kernel closed the connection")

    def _drain(self, sock: zmq.Socket[bytes], channel: Channel) -> None:
        # What a frame set does may close this link midway: stop reading its sockets then.
        for _ in range(BATCH):
            frames = None if self.closed else recv_frames(sock)
            if frames is None:
                return
            self._on_frames(self, channel, frames)
