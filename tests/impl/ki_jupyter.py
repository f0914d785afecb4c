"""Helpers for the tests that run the kernel as stock Jupyter does: a subprocess whose
interrupt is a signal, driven by jupyter_client's own clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from jupyter_client import BlockingKernelClient
from ki_peers import WAIT, Message, stock_open_comm, stock_wait_iopub

from commspec.impl.targets import ECHO
from commspec.model.messages import FAILURE_CODES

#: how long a kernel subprocess may take to answer first (its start-up, on a loaded machine)
START_WAIT = 4 * WAIT


def is_welcome(msg: Message) -> bool:
    return bool(msg["msg_type"] == "iopub_welcome")


def wait_until_answering(client: BlockingKernelClient) -> Message:
    """The kernel's first kernel_info_reply, then the kernel's welcome for this client's
    IOPub subscription. Not jupyter_client's wait_for_ready: it gives up ("Kernel
    died") on a heartbeat missed for a second, which a kernel still starting on a
    loaded machine can miss. The welcome matters: a client that connected before the
    kernel bound can have its reply before its subscription reaches the kernel, and a
    comm it opened then would be lost at once (nobody subscribed), its idle unseen."""
    reply: Message = client.kernel_info(reply=True, timeout=START_WAIT)
    assert reply["content"]["status"] == "ok", reply["content"]
    stock_wait_iopub(client, is_welcome, timeout=START_WAIT, what="welcome")
    return reply


#: how long one look at IOPub waits before stdin is looked at again, milliseconds
POLL_MS = 20


def ask_on_stdin(client: BlockingKernelClient, comm_id: str) -> tuple[str, Message]:
    """Make the kernel ask ``client`` on stdin (the demo's ``ask_stdin`` on ``comm_id``);
    returns the comm request's id and the input_request, unanswered.

    A client's stdin connection can reach the kernel after its shell one (on a loaded
    machine, well after): a request sent before then ends ``unreachable`` at once
    (EHOSTUNREACH), so ask again, until START_WAIT has passed."""
    deadline = time.monotonic() + START_WAIT
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        request_id = uuid.uuid4().hex
        client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
            "jsonrpc": "2.0", "id": request_id, "method": "ask_stdin",
            "params": {"prompt": "?"}}}))
        asked, answer = _asked_or_answered(client, request_id)
        if asked is not None:
            return request_id, asked
        error = answer["content"]["data"].get("error", {})
        assert error.get("code") == FAILURE_CODES["unreachable"], answer["content"]
        client.stdin_channel.socket.poll(POLL_MS)  # paces the asks; nothing is expected
    raise AssertionError(f"the kernel could not reach the client on stdin in {START_WAIT} s "
                         f"({attempts} asks)")


def _asked_or_answered(client: BlockingKernelClient,
                       request_id: str) -> tuple[Message | None, Message]:
    """The input_request the ask made, or else the ask's answer on IOPub (within WAIT)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if client.stdin_channel.msg_ready():
            asked: Message = client.get_stdin_msg(timeout=0)
            assert asked["msg_type"] == "input_request", asked
            return asked, {}
        if client.iopub_channel.msg_ready():
            msg: Message = client.get_iopub_msg(timeout=0)
            if msg["msg_type"] == "comm_msg" and msg["content"]["data"].get("id") == request_id:
                return None, msg
        else:
            client.iopub_channel.socket.poll(POLL_MS)
    raise TimeoutError(f"the ask_stdin {request_id} was neither asked nor answered in {WAIT} s")


def interrupt_ends_a_pending_stdin_request(client: BlockingKernelClient,
                                           interrupt: Callable[[], None]) -> Message:
    """Make the kernel ask ``client`` on stdin, leave it unanswered, ``interrupt()``;
    returns the JSON-RPC error the request ended with, once it is seen to be the one
    for ``interrupted``."""
    request_id, _ = ask_on_stdin(client, stock_open_comm(client, ECHO))
    interrupt()
    answer = stock_wait_iopub(
        client, lambda m: m["msg_type"] == "comm_msg"
        and m["content"]["data"].get("id") == request_id, what="ask_stdin's answer")
    error: Message = answer["content"]["data"].get("error", {})
    assert error.get("code") == FAILURE_CODES["interrupted"], answer["content"]
    return error
