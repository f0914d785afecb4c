"""Shared settings, types and steps of the frontend tests (conftest only holds fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commspec.impl.core.events import Message
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.mbt.fakes import ScriptedKernel

#: the bound on every wait
WAIT = 10.0
#: what a frontend sends while it connects, which a scripted kernel's test skips
PROBE = ("kernel_info_request",)

#: short enough for tests to see losses quickly, long enough for a loaded CI machine
TEST_OPTIONS = FrontendOptions(
    heartbeat_interval=0.2,
    heartbeat_timeout=2.0,
    connect_timeout=20.0,
    probe_interval=0.05,
    no_reply_grace=0.05,
)

#: the ``frontends`` fixture: makes a frontend (closed at teardown) from a connection
FrontendFactory = Callable[..., FrontendEndpoint]


def connect(kernel: ScriptedKernel, frontends: FrontendFactory) -> FrontendEndpoint:
    """A frontend made ready by the scripted kernel's welcome."""
    frontend = frontends(kernel.connection_file)
    kernel.wait_subscribed(b"")
    kernel.welcome()
    frontend.wait_ready(WAIT)
    return frontend


def open_comm(
    kernel: ScriptedKernel, frontend: FrontendEndpoint, target: str = "t"
) -> tuple[Any, Message]:
    """A comm the frontend opened, and its comm_open as the scripted kernel read it."""
    comm = frontend.open_comm(target)
    _, opened = kernel.expect("shell", "comm_open", skip=PROBE)
    assert opened["content"]["comm_id"] == comm.comm_id
    return comm, opened
