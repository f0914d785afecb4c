"""Shared settings, types and steps of the frontend tests (conftest only holds fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commspec.impl.core.events import Message
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.mbt.fakes import ScriptedKernel
from commspec.model.messages import FEATURE

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


#: a kernel_info_reply that says the kernel keeps this specification
COMMSPEC_KERNEL_INFO = {"status": "ok", "protocol_version": "5.5",
                        "supported_features": ["iopub_welcome", FEATURE]}


def connect(kernel: ScriptedKernel, frontends: FrontendFactory, *,
            kernel_info: dict[str, Any] = COMMSPEC_KERNEL_INFO,
            **options: Any) -> FrontendEndpoint:
    """A frontend (made with ``options``) made ready by the scripted kernel's welcome, its
    first probe answered with ``kernel_info`` (by default: a commspec kernel, to which
    no_reply applies)."""
    frontend = frontends(kernel.connection_file, **options)
    identities, probe = kernel.expect("shell", "kernel_info_request")
    kernel.reply("shell", identities, probe, "kernel_info_reply", kernel_info)
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
