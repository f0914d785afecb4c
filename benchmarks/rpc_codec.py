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

from .common import PAYLOAD, DealerSubClient, reply_line
from .rpc_floor import send_frames
from .rpc_loop import round_trips_per_second


def serve(key: str) -> None:
    codec = Codec(key.encode(), username="kernel")
    topics = {t: f"kernel.{codec.session_id}.{t}".encode() for t in ("status", "comm_msg")}
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    xpub = context.socket(zmq.XPUB)

    def publish(msg_type: str, content: dict[str, Any], parent: dict[str, Any]) -> None:
        send_frames(xpub, [topics[msg_type],
                           *codec.encode(codec.new_msg_id(), msg_type, content, parent)])

    try:
        reply_line(shell=router.bind_to_random_port("tcp://127.0.0.1"),
                   iopub=xpub.bind_to_random_port("tcp://127.0.0.1"))
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if xpub in ready:
                xpub.recv()
            if router not in ready:
                continue
            request = codec.decode(router.recv_multipart(), "shell")
            parent = request.msg["header"]
            data = request.content["data"]
            publish("status", {"execution_state": "busy"}, parent)
            publish("comm_msg", {"comm_id": request.content["comm_id"], "data": {
                "jsonrpc": "2.0", "id": data["id"], "result": data.get("params")}}, parent)
            publish("status", {"execution_state": "idle"}, parent)
    finally:
        router.close(linger=0)
        xpub.close(linger=0)
        context.term()


class CodecStack(DealerSubClient):
    name = "codec wire floor (our Codec over pyzmq, 1 thread/side)"

    def __init__(self) -> None:
        super().__init__()
        self._key = secrets.token_hex(16)
        self._codec = Codec(self._key.encode(), username="bench")
        self._comm_id = uuid.uuid4().hex
        self._pending: set[str] = set()

    def start(self) -> CodecStack:
        self._connect("-m", "benchmarks.rpc_codec", self._key)
        while True:  # the slow joiner: ask until IOPub answers, then drain
            self._send()
            if self._sub.poll(50):
                break
        while self._sub.poll(100):
            self._sub.recv_multipart()
        self._pending.clear()
        return self

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

    @property
    def server_pid(self) -> int:
        assert self._server is not None
        return self._server.pid

    def rate(self, window: int, seconds: float) -> float:
        return round_trips_per_second(self._send, self._recv_one, window, seconds)


if __name__ == "__main__":
    try:
        serve(sys.argv[1])
    except KeyboardInterrupt:
        sys.exit(0)
