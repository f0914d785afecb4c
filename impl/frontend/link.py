"""One link to the kernel: a generation of sockets and what watches them.

The link is the thin shell between the wire and the session machine: it turns a
frame into a verified message (or a counted bad input), a welcome or a probe's
status into "subscription proven", and a heartbeat timeout, a monitor's
EVENT_DISCONNECTED or an expired connect deadline into "lost, because...". It
decides nothing: the endpoint's machines do. A reconnect closes the link and
opens a new one; callbacks of a closed link are ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from commspec.impl.connection import ConnectionInfo
from commspec.impl.errors import BadMessage
from commspec.impl.loop import IoLoop
from commspec.model.errors import InvalidTransition

from .channels import Channels, readable
from .heartbeat import Heartbeat
from .messaging import Message, Messenger
from .options import FrontendOptions
from .probe import SubscriptionProbe

#: messages read from one socket before the others get their turn
BATCH = 256


class LinkEvents:
    """What a link reports; the endpoint supplies every callback."""

    def __init__(
        self,
        *,
        message: Callable[[str, Message], None],
        bad_input: Callable[[str, str], None],
        proven: Callable[[str], None],
        lost: Callable[[str], None],
    ) -> None:
        self.message = message
        self.bad_input = bad_input
        self.proven = proven
        self.lost = lost


class Link:
    def __init__(
        self,
        loop: IoLoop,
        context: zmq.Context[zmq.Socket[bytes]],
        connection: ConnectionInfo,
        messenger: Messenger,
        options: FrontendOptions,
        events: LinkEvents,
    ) -> None:
        self._loop = loop
        self._context = context
        self._connection = connection
        self._messenger = messenger
        self._options = options
        self._events = events
        self._heartbeat: Heartbeat | None = None
        self.closed = False
        self.channels = Channels(
            context, connection, messenger.session_id, presence=options.presence_topic
        )
        for name, sock in self.channels.by_name().items():
            loop.add_reader(sock, functools.partial(self._drain, sock, name))
        for monitor in self.channels.monitors:
            loop.add_reader(monitor, functools.partial(self._on_monitor, monitor))
        self.probe = SubscriptionProbe(
            loop,
            send_probe=lambda: str(self.send("shell", "kernel_info_request", {})["msg_id"]),
            on_proven=self._if_open(events.proven),
            on_gave_up=lambda: self._lost(
                f"no proof of subscription within {options.connect_timeout} s"
            ),
            interval=options.probe_interval,
            deadline=options.connect_timeout,
        )
        self.probe.start()

    # -- sending ----------------------------------------------------------------------

    def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> Message:
        return self._messenger.send(self._socket(channel), msg_type, content, parent, buffers)

    def send_message(self, channel: str, msg: Message) -> None:
        """Send a message built beforehand (its msg_id was needed first); may raise zmq.Again."""
        self._messenger.send_message(self._socket(channel), msg)

    def _socket(self, channel: str) -> zmq.Socket[bytes]:
        if self.closed:
            raise RuntimeError("the link is closed")
        return self.channels.by_name()[channel]

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
        self.probe.stop()
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
        iopub = self.channels.iopub
        monitor = self.channels.monitors[1]  # (shell, iopub), as Channels builds them
        for sock in (monitor, iopub):
            self._loop.remove_reader(sock)
        self.channels.close_iopub()

    # -- internals (I/O thread) -----------------------------------------------------------

    def _if_open(self, callback: Callable[[str], None]) -> Callable[[str], None]:
        def guarded(value: str) -> None:
            if not self.closed:
                callback(value)

        return guarded

    def _lost(self, why: str) -> None:
        if not self.closed:
            self._events.lost(why)

    def _on_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        if not self.closed and Channels.link_down(monitor):
            self._lost("socket monitor: the kernel closed the connection")

    def _drain(self, sock: zmq.Socket[bytes], channel: str) -> None:
        # A handler may close this link midway: stop reading its sockets then.
        for _ in range(BATCH):
            if self.closed or not readable(sock):
                return
            frames = sock.recv_multipart(zmq.NOBLOCK)
            try:
                msg = self._messenger.parse(frames, channel)
            except BadMessage as e:
                self._events.bad_input(f"{channel}:{e.reason.value}", e.detail)
                continue
            try:
                if channel == "iopub" and self.probe.on_iopub(msg):
                    if msg["msg_type"] == "iopub_welcome":
                        continue  # the welcome that proved us: reported as such, once
                self._events.message(channel, msg)
            except InvalidTransition as e:
                # an input the spec does not allow now: counted, moves nothing
                self._events.bad_input(f"{channel}:invalid_transition", str(e))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                # a well-signed message of the wrong shape: counted, never fatal
                self._events.bad_input(
                    f"{channel}:malformed_content", f"{msg.get('msg_type')}: {e!r}"
                )
