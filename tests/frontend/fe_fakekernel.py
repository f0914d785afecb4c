"""A scripted kernel for frontend tests: the test decides every message it sends.

Its sockets are a real kernel's (ROUTER shell/control/stdin with ROUTER_HANDOVER,
XPUB iopub with XPUB_VERBOSER, an echoing heartbeat) but nothing happens unless
the test says so: it can hold back the welcome, go idle without replying, stop
echoing heartbeats, or publish bad input. Only the heartbeat runs on its own
thread (a frontend pings on its own schedule); everything else is driven from
the test thread with bounded waits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import zmq

from commspec.impl.connection import ConnectionInfo, new_connection_info, write_connection_file
from commspec.impl.wire import Wire

Message = dict[str, Any]
WAIT = 10.0


class FakeKernel:
    def __init__(self, workdir: Path) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        ports: dict[str, int] = {}
        for channel, kind in (
            ("shell", zmq.ROUTER),
            ("control", zmq.ROUTER),
            ("stdin", zmq.ROUTER),
            ("iopub", zmq.XPUB),
        ):
            sock = self.context.socket(kind)
            sock.linger = 0
            if kind == zmq.ROUTER:
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            else:
                sock.setsockopt(zmq.XPUB_VERBOSER, 1)
            ports[channel] = sock.bind_to_random_port("tcp://127.0.0.1")
            self.sockets[channel] = sock
        self._echoing = threading.Event()
        self._echoing.set()
        self._hb_stop = threading.Event()
        hb = self.context.socket(zmq.ROUTER)
        hb.linger = 0
        ports["hb"] = hb.bind_to_random_port("tcp://127.0.0.1")
        self._hb_wake_addr = f"inproc://fake-hb-{id(self)}"
        self._hb_wake = self.context.socket(zmq.PAIR)
        self._hb_wake.bind(self._hb_wake_addr)
        self._hb_thread = threading.Thread(target=self._echo, args=(hb,), daemon=True)
        self._hb_thread.start()
        base = new_connection_info()
        self.info: ConnectionInfo = base.with_ports(ports)
        self.connection_file = write_connection_file(workdir / "fake-kernel.json", self.info)
        self.wire = Wire(self.info.key.encode())

    # -- heartbeat ------------------------------------------------------------------

    def _echo(self, hb: zmq.Socket[bytes]) -> None:
        wake = self.context.socket(zmq.PAIR)
        wake.connect(self._hb_wake_addr)
        poller = zmq.Poller()
        poller.register(hb, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        try:
            while not self._hb_stop.is_set():
                for sock, _ in poller.poll():
                    frames = sock.recv_multipart()
                    if sock is hb and self._echoing.is_set():
                        hb.send_multipart(frames)
        finally:
            hb.close(linger=0)
            wake.close(linger=0)

    def stop_echoing(self) -> None:
        """From now on the heartbeat is silent, as a frozen or half-open kernel's is."""
        self._echoing.clear()

    # -- receiving ------------------------------------------------------------------

    def recv(self, channel: str, timeout: float = WAIT) -> tuple[list[bytes], Message]:
        sock = self.sockets[channel]
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"fake kernel: nothing on {channel} within {timeout} s")
        received = self.wire.parse(sock.recv_multipart(), channel)
        return received.identities, received.msg

    def expect(
        self, channel: str, msg_type: str, timeout: float = WAIT, skip: tuple[str, ...] = ()
    ) -> tuple[list[bytes], Message]:
        """The next message on ``channel``, which must be ``msg_type`` (``skip`` ones aside)."""
        while True:
            identities, msg = self.recv(channel, timeout)
            if msg["msg_type"] in skip:
                continue
            assert msg["msg_type"] == msg_type, f"expected {msg_type}, got {msg['msg_type']}"
            return identities, msg

    def subscription_event(self, timeout: float = WAIT) -> bytes:
        """The next XPUB subscription frame (b"\\x01topic" or b"\\x00topic")."""
        sock = self.sockets["iopub"]
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"fake kernel: no subscription event within {timeout} s")
        frame: bytes = sock.recv()
        return frame

    def wait_subscribed(self, topic: bytes = b"", timeout: float = WAIT) -> None:
        while self.subscription_event(timeout) != b"\x01" + topic:
            pass

    # -- sending ---------------------------------------------------------------------

    def publish(
        self, msg_type: str, content: Message, parent: Message | None = None, topic: bytes = b""
    ) -> Message:
        msg = self.wire.message(msg_type, content, parent=parent)
        self.wire.send(self.sockets["iopub"], msg, identities=[topic])
        return msg

    def welcome(self, subscription: bytes = b"") -> Message:
        return self.publish(
            "iopub_welcome", {"subscription": subscription.decode()}, topic=subscription
        )

    def reply(
        self,
        channel: str,
        identities: list[bytes],
        request: Message,
        msg_type: str,
        content: Message,
    ) -> Message:
        msg = self.wire.message(msg_type, content, parent=request)
        self.wire.send(self.sockets[channel], msg, identities=identities)
        return msg

    def send_frames(self, channel: str, frames: list[bytes]) -> None:
        self.sockets[channel].send_multipart(frames)

    def status(self, state: str, parent: Message) -> Message:
        return self.publish("status", {"execution_state": state}, parent=parent)

    # -- end -----------------------------------------------------------------------

    def close(self) -> None:
        self._hb_stop.set()
        self._hb_wake.send(b"stop")
        self._hb_thread.join(WAIT)
        self._hb_wake.close(linger=0)
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.context.term()
