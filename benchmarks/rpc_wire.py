"""A second floor: the Jupyter wire itself, with no endpoint around it.

One thread each side, jupyter_client's Session for every message (signed,
verified, JSON), and the messages a comm RPC costs on the wire: the request on
shell, then busy, the reply and idle on IOPub, every one deserialised by the
client as a frontend must. No state machines, no thread hand-offs, no
presence. The echo server runs in its own process (``python -m benchmarks.rpc_wire``).
"""

from __future__ import annotations

import secrets
import sys
import uuid
from typing import Any

import zmq
from jupyter_client.session import Session

from .common import PAYLOAD, DealerSubClient, serve_stack

TOPIC = b"kernel.bench"


def _serve(key: str) -> None:
    session = Session(key=key.encode(), username="kernel", check_pid=False)

    def answer(frames: list[bytes], xpub: zmq.Socket[bytes]) -> None:
        _, msg_frames = session.feed_identities(frames)
        request = session.deserialize(msg_frames)
        data = request["content"]["data"]
        reply = {"jsonrpc": "2.0", "id": data["id"], "result": data.get("params")}
        session.send(xpub, "status", {"execution_state": "busy"}, parent=request, ident=TOPIC)
        session.send(xpub, "comm_msg", {"comm_id": request["content"]["comm_id"],
                                        "data": reply}, parent=request, ident=TOPIC)
        session.send(xpub, "status", {"execution_state": "idle"}, parent=request, ident=TOPIC)

    serve_stack(answer)


class WireStack(DealerSubClient):
    name = "Jupyter wire floor (Session over pyzmq, 1 thread/side)"
    server_module = "benchmarks.rpc_wire"

    def __init__(self) -> None:
        super().__init__()
        self._key = secrets.token_hex(16)
        self._session = Session(key=self._key.encode(), session=uuid.uuid4().hex,
                                username="bench", check_pid=False)
        self._comm_id = uuid.uuid4().hex
        self._pending: set[str] = set()

    def server_args(self) -> list[str]:
        return [self._key]

    def _joined(self) -> None:
        self._pending.clear()

    def _send(self) -> None:
        data: dict[str, Any] = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": "echo",
                                "params": PAYLOAD}
        msg = self._session.send(self._dealer, "comm_msg",
                                 {"comm_id": self._comm_id, "data": data})
        assert msg is not None
        self._pending.add(msg["header"]["msg_id"])

    def _recv_one(self) -> None:
        while True:
            _, frames = self._session.feed_identities(self._sub.recv_multipart())
            msg = self._session.deserialize(frames)
            if msg["msg_type"] == "comm_msg":
                self._pending.discard(msg["parent_header"]["msg_id"])
                return


if __name__ == "__main__":
    _serve(sys.argv[1])
