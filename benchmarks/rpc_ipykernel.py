"""Stock ipykernel in its own process, driven by jupyter_client's BlockingKernelClient.

An execute_request registers a comm target whose handler answers each JSON-RPC
request with ``comm.send``; ipykernel parents that comm_msg (on IOPub) to the
request being handled, which is how the reply is matched.

The start waits with a loop of its own instead of ``wait_for_ready``: without a
KernelManager that one takes a late heartbeat for a dead kernel, which on a
loaded machine it often is not ("Kernel died before replying to kernel_info").
Here the kernel is dead only when its process has exited; the client runs no
heartbeat channel at all.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import tempfile
import uuid
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient

from commspec.impl.connection import free_ports

from .common import PAYLOAD, Child, now
from .rpc_loop import round_trips_per_second

TIMEOUT = 30.0
#: how long a loaded machine may take to start a kernel process and answer
START_TIMEOUT = 120.0
#: each kernel_info_request waits this long for its answer before the next is sent
ASK_EVERY = 1.0
TARGET = "bench.echo"
REGISTER = f"""
import comm as _comm

def _bench_echo(c, open_msg):
    def on_msg(msg):
        data = msg["content"]["data"]
        c.send({{"jsonrpc": "2.0", "id": data["id"], "result": data.get("params")}})
    c.on_msg(on_msg)

_comm.get_comm_manager().register_target({TARGET!r}, _bench_echo)
"""
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


class IpykernelStack:
    name = "stock ipykernel process + jupyter_client"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="commspec-bench-ipk-")
        self._kernel: Child | None = None
        self._client: BlockingKernelClient | None = None
        self._next_id = 0

    def start(self) -> IpykernelStack:
        work = Path(self._dir.name)
        connection_file = work / "kernel.json"
        info: dict[str, Any] = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
        info.update(ip="127.0.0.1", transport="tcp", key=secrets.token_hex(16),
                    signature_scheme="hmac-sha256", kernel_name="python3")
        connection_file.write_text(json.dumps(info))
        env = dict(os.environ, IPYTHONDIR=str(work / "ipython"),
                   JUPYTER_RUNTIME_DIR=str(work / "runtime"))
        self._kernel = Child.start("-m", "ipykernel_launcher", "-f", str(connection_file),
                                   "--HistoryManager.enabled=False", env=env)
        client = BlockingKernelClient(connection_file=str(connection_file))
        client.load_connection_file()
        client.session.session = uuid.uuid4().hex  # its own DEALER identity
        client.start_channels(hb=False)
        self._client = client
        wait_until_ready(client, self._kernel, START_TIMEOUT)
        reply = client.execute_interactive(REGISTER, timeout=TIMEOUT, output_hook=lambda m: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"registering the echo target failed: {reply['content']}")
        self._comm_id = uuid.uuid4().hex
        client.shell_channel.send(client.session.msg(
            "comm_open", {"comm_id": self._comm_id, "target_name": TARGET, "data": {}}))
        self._pending: set[str] = set()
        self._send()
        self._recv_one()
        return self

    def _send(self) -> None:
        assert self._client is not None
        self._next_id += 1
        msg = self._client.session.msg("comm_msg", {"comm_id": self._comm_id, "data": {
            "jsonrpc": "2.0", "id": self._next_id, "method": "echo", "params": PAYLOAD}})
        self._pending.add(msg["header"]["msg_id"])
        self._client.shell_channel.send(msg)

    def _recv_one(self) -> None:
        assert self._client is not None
        while True:
            msg = self._client.get_iopub_msg(timeout=TIMEOUT)
            if msg["msg_type"] != "comm_msg":
                continue
            parent = msg["parent_header"].get("msg_id")
            if parent in self._pending:
                self._pending.discard(parent)
                if msg["content"]["data"].get("result") != PAYLOAD:
                    raise RuntimeError(f"echo answered {msg['content']['data']!r}")
                return

    @property
    def server_pid(self) -> int:
        assert self._kernel is not None
        return self._kernel.pid

    def rate(self, window: int, seconds: float) -> float:
        return round_trips_per_second(self._send, self._recv_one, window, seconds)

    def close(self) -> None:
        try:
            if self._client is not None:
                self._client.stop_channels()
        finally:
            if self._kernel is not None:
                self._kernel.end()
            self._dir.cleanup()


def wait_until_ready(client: BlockingKernelClient, kernel: Child, timeout: float) -> None:
    """Ask kernel_info until shell answers and IOPub delivers; fail only if the kernel's
    process exits or ``timeout`` passes. Any IOPub message proves the subscription
    (the kernel's status around each kernel_info, or its iopub_welcome)."""
    deadline = now() + timeout
    asked: set[str] = set()
    answered = False
    while True:
        code = kernel.process.poll()
        if code is not None:
            raise RuntimeError(f"ipykernel (pid {kernel.pid}) exited with code {code}")
        if now() > deadline:
            raise TimeoutError(f"ipykernel (pid {kernel.pid}) not ready within {timeout} s"
                               f" (kernel_info answered: {answered})")
        if not answered:
            asked.add(client.kernel_info())
            answered = _answered(client, asked, now() + ASK_EVERY)
            continue
        try:
            client.get_iopub_msg(timeout=ASK_EVERY)
            return
        except queue.Empty:
            asked.add(client.kernel_info())  # something for IOPub to carry


def _answered(client: BlockingKernelClient, asked: set[str], until: float) -> bool:
    while (left := until - now()) > 0:
        try:
            msg = client.get_shell_msg(timeout=left)
        except queue.Empty:
            return False
        if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") in asked:
            return True
    return False
