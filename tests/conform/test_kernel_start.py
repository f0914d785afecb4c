"""Starting the kernel under test: its ports are picked below the ephemeral range
(jupyter_client's own picks come from that range, where any outgoing connection made
meanwhile can take one first: "Address already in use"), and it is asked kernel_info
until it answers."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.session import Session

from commspec.conform.client import Client
from commspec.conform.kernel import (
    PORTS,
    KernelSource,
    _first_kernel_info,
    free_loopback_port,
    running_kernel,
)

KEY = "conform-test-key"

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


def test_the_kernels_ports_are_picked_outside_the_ephemeral_range() -> None:
    source = KernelSource(cmd="commspec kernel --connection-file {connection_file}")
    with running_kernel(source, 60.0) as kernel:
        ports = [kernel.info[f"{channel}_port"] for channel in CHANNELS]
    assert all(port in PORTS for port in ports), ports
    assert len(set(ports)) == len(ports), ports


class Alive:
    """What ``_first_kernel_info`` asks of its manager: the kernel has not exited."""

    def is_alive(self) -> bool:
        return True


def test_a_kernel_info_request_that_was_lost_is_sent_again(tmp_path: Path) -> None:
    """The kernel drops the first request (as one that arrived while it was binding
    can be lost); the second, a second later, is answered."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    shell = context.socket(zmq.ROUTER)
    shell.linger = 0
    info: dict[str, Any] = {"ip": "127.0.0.1", "transport": "tcp", "key": KEY,
                            "signature_scheme": "hmac-sha256",
                            "shell_port": shell.bind_to_random_port("tcp://127.0.0.1"),
                            "control_port": free_loopback_port(),
                            "stdin_port": free_loopback_port()}
    session = Session(key=KEY.encode(), signature_scheme="hmac-sha256")
    got: list[dict[str, Any]] = []
    try:
        with Client(info, name="starter", context=context) as client, \
                ThreadPoolExecutor(1) as pool:
            source = KernelSource(cmd="kernel {connection_file}")
            answer = pool.submit(_first_kernel_info, Alive(), client,  # type: ignore[arg-type]
                                 source, 10.0, tmp_path / "output.txt")
            for _ in range(2):
                assert shell.poll(10_000), "no kernel_info_request reached the kernel"
                identities, msg = session.feed_identities(shell.recv_multipart())
                got.append(session.deserialize(msg))
            session.send(shell, "kernel_info_reply", {"status": "ok"}, parent=got[-1],
                         ident=identities)
            assert answer.result(10)["parent_header"]["msg_id"] == got[-1]["header"]["msg_id"]
    finally:
        shell.close(0)
        context.term()
    assert [m["msg_type"] for m in got] == ["kernel_info_request"] * 2


def test_a_kernel_that_found_a_port_taken_is_started_again(tmp_path: Path) -> None:
    """Another process can bind a port between our pick and the kernel's bind: the
    kernel exits saying so, and is started again on other ports."""
    marker = tmp_path / "tried-once"
    flaky = tmp_path / "flaky_kernel.py"
    flaky.write_text(
        "import os, sys\n"
        f"marker = {str(marker)!r}\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    print('cannot listen on its ports (Address already in use)', file=sys.stderr)\n"
        "    sys.exit(2)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'commspec', 'kernel', *sys.argv[1:]])\n")
    source = KernelSource(cmd=f"{sys.executable} {flaky} --connection-file {{connection_file}}")
    with running_kernel(source, 60.0) as kernel:
        assert kernel.kernel_info["implementation"] == "commspec"
    assert marker.exists(), "the first start was the one that failed"
