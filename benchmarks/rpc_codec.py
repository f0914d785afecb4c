"""The Jupyter wire floor again, on our Codec instead of jupyter_client's Session.

The same four messages and one thread each side as ``rpc_wire``: the request
encoded and sent on shell; busy, the reply and idle decoded from IOPub by the
client, as a frontend must; the server decodes the request and encodes all three.
What an endpoint built on ``commspec.impl.wire.Codec`` could reach with nothing
around it. The echo server runs in its own process (``python -m benchmarks.rpc_codec``).
"""

from __future__ import annotations

import secrets
import sys
import uuid
from typing import Any

import zmq

from commspec.impl.wire import Codec

from .common import PAYLOAD, DealerSubClient, serve_stack
from .rpc_floor import send_frames


def _serve(key: str) -> None:
    codec = Codec(key.encode(), username="kernel")
    topics = {t: f"kernel.{codec.session_id}.{t}".encode() for t in ("status", "comm_msg")}

    def answer(frames: list[bytes], xpub: zmq.Socket[bytes]) -> None:
        def publish(msg_type: str, content: dict[str, Any]) -> None:
            send_frames(xpub, [topics[msg_type],
                               *codec.encode(codec.new_msg_id(), msg_type, content, parent)])

        request = codec.decode(frames, "shell")
        parent = request.msg["header"]
        data = request.content["data"]
        publish("status", {"execution_state": "busy"})
        publish("comm_msg", {"comm_id": request.content["comm_id"], "data": {
            "jsonrpc": "2.0", "id": data["id"], "result": data.get("params")}})
        publish("status", {"execution_state": "idle"})

    serve_stack(answer)


class CodecStack(DealerSubClient):
    name = "codec wire floor (our Codec over pyzmq, 1 thread/side)"
    server_module = "benchmarks.rpc_codec"

    def __init__(self) -> None:
        super().__init__()
        self._key = secrets.token_hex(16)
        self._codec = Codec(self._key.encode(), username="bench")
        self._comm_id = uuid.uuid4().hex
        self._pending: set[str] = set()

    def server_args(self) -> list[str]:
        return [self._key]

    def _joined(self) -> None:
        self._pending.clear()

    def _send(self) -> None:
        codec = self._codec
        msg_id = codec.new_msg_id()
        send_frames(self._dealer, codec.encode(msg_id, "comm_msg", {
            "comm_id": self._comm_id, "data": {
                "jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": "echo",
                "params": PAYLOAD}}))
        self._pending.add(msg_id)

    def _recv_one(self) -> None:
        decode, recv = self._codec.decode, self._sub.recv_multipart
        while True:
            received = decode(recv(), "iopub")
            if received.msg_type == "comm_msg":
                self._pending.discard(received.parent_msg_id or "")
                return


if __name__ == "__main__":
    _serve(sys.argv[1])
