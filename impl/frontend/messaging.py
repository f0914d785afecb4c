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

_LAST = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


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
            for buffer in buffers:
                memoryview(buffer)  # TypeError before any frame goes out, as send_multipart
            frames.extend(buffers)  # unsigned, after the four signed JSON frames
        # send_multipart's loop with plain int flags: its ``zmq.SNDMORE | flags`` is an
        # enum.Flag operation per frame (about 0.7 us each here). As there, the first
        # frame decides: once it is queued (no zmq.Again), the rest of the message is.
        send = sock.send
        for frame in frames[:-1]:
            send(frame, _MORE)
        send(frames[-1], _LAST)

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
