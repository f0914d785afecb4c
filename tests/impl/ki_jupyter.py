"""Helpers for the tests that run the kernel as stock Jupyter does: a subprocess whose
interrupt is a signal, driven by jupyter_client's own clients."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from jupyter_client import BlockingKernelClient
from ki_peers import WAIT, Message, stock_open_comm, stock_wait_iopub

from commspec.impl.targets import ECHO
from commspec.model.messages import FAILURE_CODES


def interrupt_ends_a_pending_stdin_request(client: BlockingKernelClient,
                                           interrupt: Callable[[], None]) -> Message:
    """Make the kernel ask ``client`` on stdin (the demo's ``ask_stdin``), leave it
    unanswered, ``interrupt()``; returns the JSON-RPC error the request ended with,
    once it is seen to be the one for ``interrupted``."""
    comm_id = stock_open_comm(client, ECHO)
    request_id = uuid.uuid4().hex
    client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "jsonrpc": "2.0", "id": request_id, "method": "ask_stdin", "params": {"prompt": "?"}}}))
    asked: Message = client.get_stdin_msg(timeout=WAIT)
    assert asked["msg_type"] == "input_request", asked
    interrupt()
    answer = stock_wait_iopub(
        client, lambda m: m["msg_type"] == "comm_msg"
        and m["content"]["data"].get("id") == request_id, what="ask_stdin's answer")
    error: Message = answer["content"]["data"].get("error", {})
    assert error.get("code") == FAILURE_CODES["interrupted"], answer["content"]
    return error
