"""A scripted kernel: a real kernel's sockets, and no behaviour of its own.

shell, control and stdin are ROUTERs with ROUTER_HANDOVER (a reconnecting
frontend takes its identity over); iopub is an XPUB with XPUB_VERBOSER, so every
subscribe is seen and can be welcomed, or not; the heartbeat is the reference
kernel's own echo (:class:`~commspec.impl.kernel.sockets.HeartbeatEcho`, on its
thread, as a frontend pings on its own schedule), which the test can silence.
Everything else happens only when the test says so, from the test's thread,
with bounded waits: hold back the welcome, go idle without replying, publish bad
input. The frontend tests and the session scenarios both use it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq

from commspec.impl.connection import ConnectionInfo, write_connection_file
from commspec.impl.core.events import Message
from commspec.impl.kernel.sockets import HeartbeatEcho
from commspec.impl.wire import Wire

__all__ = ["PROBES", "WAIT", "ScriptedKernel"]

#: the bound on every wait
WAIT = 10.0
#: the kernel_info probes a frontend sends while it connects
PROBES = ("kernel_info_request",)
LOOPBACK = "tcp://127.0.0.1"
JsonDict = dict[str, Any]


class ScriptedKernel:
    """``workdir``: where to write a connection file (frontends may take :attr:`info`)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        self._heartbeat: HeartbeatEcho | None = None
        self._closed = False
        try:
            ports: dict[str, int] = {}
            for channel in ("shell", "control", "stdin"):
                sock = self._socket(channel, zmq.ROUTER)
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
                ports[channel] = sock.bind_to_random_port(LOOPBACK)
            iopub = self._socket("iopub", zmq.XPUB)
            iopub.setsockopt(zmq.XPUB_VERBOSER, 1)
            ports["iopub"] = iopub.bind_to_random_port(LOOPBACK)
            key = secrets.token_hex(32)
            unbound = ConnectionInfo(0, 0, 0, 0, 0, key=key)
            self._heartbeat = HeartbeatEcho(self.context, unbound)
            self.info = unbound.with_ports(dict(ports, hb=self._heartbeat.port))
            self.wire = Wire(key.encode(), username="scripted-kernel")
            self.connection_file = (
                write_connection_file(workdir / "scripted-kernel.json", self.info)
                if workdir is not None else None
            )
            self._heartbeat.start()
        except BaseException:
            self.close()
            raise

    def _socket(self, channel: str, kind: int) -> zmq.Socket[bytes]:
        sock = self.context.socket(kind)
        sock.linger = 0
        self.sockets[channel] = sock
        return sock

    def stop_echoing(self) -> None:
        """From now on the heartbeat is silent, as a frozen or half-open kernel's is."""
        assert self._heartbeat is not None
        self._heartbeat.silence()

    # -- receiving ------------------------------------------------------------------

    def recv(self, channel: str, timeout: float = WAIT) -> tuple[list[bytes], Message]:
        sock = self.sockets[channel]
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"scripted kernel: nothing on {channel} within {timeout} s")
        received = self.wire.parse(sock.recv_multipart(), channel)
        return list(received.identities), received.msg

    def expect(
        self, channel: str, msg_type: str, timeout: float = WAIT, skip: tuple[str, ...] = ()
    ) -> tuple[list[bytes], Message]:
        """The next message on ``channel``, which must be ``msg_type`` (``skip`` ones aside)."""
        deadline = time.monotonic() + timeout
        while True:
            identities, msg = self.recv(channel, max(0.0, deadline - time.monotonic()))
            if msg["msg_type"] in skip:
                continue
            if msg["msg_type"] != msg_type:
                raise AssertionError(f"scripted kernel: expected {msg_type} on {channel}, "
                                     f"got {msg['msg_type']}")
            return identities, msg

    def subscription_event(self, timeout: float = WAIT) -> bytes:
        """The next XPUB subscription frame (b"\\x01topic" or b"\\x00topic")."""
        sock = self.sockets["iopub"]
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"scripted kernel: no subscription event within {timeout} s")
        frame: bytes = sock.recv()
        return frame

    def wait_subscribed(self, topic: bytes = b"", timeout: float = WAIT) -> None:
        """Read subscription frames until a subscribe to ``topic`` (bounded)."""
        deadline = time.monotonic() + timeout
        while self.subscription_event(max(0.0, deadline - time.monotonic())) != b"\x01" + topic:
            pass

    # -- sending ---------------------------------------------------------------------

    def publish(
        self, msg_type: str, content: Mapping[str, Any],
        parent: Mapping[str, Any] | None = None, topic: bytes = b"",
    ) -> JsonDict:
        msg = self.wire.message(msg_type, content, parent=parent)
        self.wire.send(self.sockets["iopub"], msg, identities=[topic])
        return msg

    def welcome(self, subscription: bytes = b"") -> JsonDict:
        """An ``iopub_welcome`` for a subscription to ``subscription`` (JEP 65)."""
        return self.publish("iopub_welcome", {"subscription": subscription.decode()},
                            topic=subscription)

    def reply(
        self, channel: str, identities: Sequence[bytes], request: Mapping[str, Any],
        msg_type: str, content: Mapping[str, Any],
    ) -> JsonDict:
        msg = self.wire.message(msg_type, content, parent=request)
        self.wire.send(self.sockets[channel], msg, identities=identities)
        return msg

    def send_frames(self, channel: str, frames: list[bytes]) -> None:
        self.sockets[channel].send_multipart(frames)

    def status(self, state: str, parent: Mapping[str, Any]) -> JsonDict:
        return self.publish("status", {"execution_state": state}, parent=parent)

    # -- end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat, close every socket, end the context (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.stop()
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.context.term()
