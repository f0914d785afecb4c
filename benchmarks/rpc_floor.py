"""The raw four-message floor: a comm RPC's real messages, pre-built, moved by bare pyzmq.

The client sends a signed comm_msg echo request (6 frames; the ROUTER sees 7 with the
routing id); the server answers every request by publishing three pre-built 7-frame
IOPub messages (topic + 6 frames: busy, the reply, idle) of real size; the client
receives all three. Nothing is serialised, signed, verified or parsed at run time:
this is the physical limit of moving a comm RPC's four messages through pyzmq, which
the RPC ratios are read against. The server runs in its own process
(``python -m benchmarks.rpc_floor``), as the kernels do.
"""

from __future__ import annotations

import uuid

import zmq

from commspec.impl.wire import Codec

from .common import PAYLOAD, DealerSubClient, serve_stack

KEY = b"the four-message floor signs nothing at run time"
_MORE = int(zmq.SNDMORE)


def request_frames(codec: Codec) -> list[bytes]:
    """A comm_msg echo request as a frontend sends it: 6 frames."""
    content = {"comm_id": uuid.uuid4().hex, "data": {
        "jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": "echo", "params": PAYLOAD}}
    return codec.encode(codec.new_msg_id(), "comm_msg", content)


def answer_frames(codec: Codec, request: list[bytes]) -> list[list[bytes]]:
    """busy, the reply and idle, each topic + 6 frames, parented to ``request``."""
    parsed = Codec(KEY, replay_window=0).decode(request, "shell")
    parent = parsed.msg["header"]
    data = parsed.content["data"]

    def publish(msg_type: str, content: dict[str, object]) -> list[bytes]:
        topic = f"kernel.{codec.session_id}.{msg_type}".encode()
        return [topic, *codec.encode(codec.new_msg_id(), msg_type, content, parent)]

    return [
        publish("status", {"execution_state": "busy"}),
        publish("comm_msg", {"comm_id": parsed.content["comm_id"], "data": {
            "jsonrpc": "2.0", "id": data["id"], "result": data["params"]}}),
        publish("status", {"execution_state": "idle"}),
    ]


def send_frames(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    # Frame by frame with int flags: send_multipart's enum.Flag per frame costs more.
    send = sock.send
    for frame in frames[:-1]:
        send(frame, _MORE)
    send(frames[-1], 0)


class FloorStack(DealerSubClient):
    name = "raw four-message floor (pre-built frames over pyzmq)"
    server_module = "benchmarks.rpc_floor"

    def __init__(self) -> None:
        super().__init__()
        self._request = request_frames(Codec(KEY))

    def _send(self) -> None:
        send_frames(self._dealer, self._request)

    def _recv_one(self) -> None:  # busy, reply, idle
        recv = self._sub.recv_multipart
        recv()
        recv()
        recv()


def _serve() -> None:
    codec = Codec(KEY, username="kernel")
    answers = answer_frames(codec, request_frames(Codec(KEY)))

    def answer(request: list[bytes], xpub: zmq.Socket[bytes]) -> None:
        for frames in answers:
            send_frames(xpub, frames)

    serve_stack(answer)


if __name__ == "__main__":
    _serve()
