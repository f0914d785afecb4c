"""Sending and receiving for the frontend, over the shared :class:`~commspec.impl.wire.Wire`.

Sends never block the I/O thread: a DEALER whose queue is full (the kernel has
stopped reading) raises ``zmq.Again`` to the caller instead of freezing every
socket, the heartbeat included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

from commspec.impl.wire import Wire

Message = dict[str, Any]


class Messenger:
    def __init__(self, key: bytes, signature_scheme: str, session_id: str | None = None) -> None:
        self.wire = Wire(key, signature_scheme=signature_scheme, session_id=session_id)

    @property
    def session_id(self) -> str:
        return self.wire.session_id

    def new_msg_id(self) -> str:
        return str(self.wire.session.msg_id)

    def message(
        self, msg_type: str, content: dict[str, Any], parent: Message | None = None
    ) -> Message:
        return self.wire.message(msg_type, content, parent=parent)

    def send_message(
        self, sock: zmq.Socket[bytes], msg: Message, buffers: Sequence[bytes] | None = None
    ) -> None:
        frames: list[bytes] = self.wire.session.serialize(msg)
        if buffers:
            frames.extend(buffers)  # unsigned, after the four signed JSON frames
        sock.send_multipart(frames, zmq.NOBLOCK)

    def send(
        self,
        sock: zmq.Socket[bytes],
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> Message:
        msg = self.message(msg_type, content, parent)
        self.send_message(sock, msg, buffers)
        return msg

    def parse(self, frames: list[bytes], channel: str) -> Message:
        """The verified message; raises BadMessage (with its reason) otherwise."""
        return self.wire.parse(frames, channel).msg
