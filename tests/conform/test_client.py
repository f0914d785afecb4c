"""The conformance client reads what real kernels send, even where it strays from the
protocol's letter, so a check judges the kernel instead of crashing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from commspec.conform.client import Client

KEY = "conform-test-key"


@pytest.fixture
def kernel_sockets() -> Iterator[tuple[dict[str, Any], zmq.Socket[bytes]]]:
    """A connection info whose ports are bound here on 127.0.0.1 (ROUTERs and an XPUB
    for IOPub), and that XPUB; everything closed at the end."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sockets = {name: context.socket(zmq.ROUTER) for name in ("shell", "control", "stdin")}
    sockets["iopub"] = context.socket(zmq.XPUB)
    try:
        info: dict[str, Any] = {"ip": "127.0.0.1", "transport": "tcp", "key": KEY,
                                "signature_scheme": "hmac-sha256"}
        for name, sock in sockets.items():
            sock.linger = 0
            info[f"{name}_port"] = sock.bind_to_random_port("tcp://127.0.0.1")
        yield info, sockets["iopub"]
    finally:
        for sock in sockets.values():
            sock.close(linger=0)
        context.term()


def test_a_null_parent_header_and_metadata_read_as_empty(
        kernel_sockets: tuple[dict[str, Any], zmq.Socket[bytes]]) -> None:
    """xeus-python 0.19 sends its iopub_welcome with ``null`` for both."""
    info, iopub = kernel_sockets
    session = Session(key=KEY.encode(), signature_scheme="hmac-sha256")
    with Client(info, iopub="stock", name="frontend") as client:
        assert iopub.poll(5000), "the client's subscription reached the XPUB"
        assert iopub.recv() == b"\x01"
        parts = [session.pack(session.msg_header("iopub_welcome")), b"null", b"null",
                 b'{"subscription": ""}']
        iopub.send_multipart([b"", b"<IDS|MSG>", session.sign(parts), *parts])
        welcome = client.iopub(lambda m: m["msg_type"] == "iopub_welcome", 5, "the welcome")
    assert welcome["parent_header"] == {} and welcome["metadata"] == {}
    assert welcome["content"] == {"subscription": ""}
    assert "frontend <- iopub iopub_welcome (parent -)" in client.log[-1]
