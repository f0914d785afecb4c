"""The frontend's tunable times, in seconds, with the reason for each default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class FrontendOptions:
    #: how often the heartbeat pings an answering kernel
    heartbeat_interval: float = 1.0
    #: an unanswered ping this old means the kernel is lost. The kernel's heartbeat
    #: is a separate echo thread, so even a busy kernel answers well within it.
    heartbeat_timeout: float = 3.0
    #: how long connecting (or reconnecting) may take before the link counts as lost
    connect_timeout: float = 30.0
    #: the pace of kernel_info probes for kernels that do not welcome us
    probe_interval: float = 0.1
    #: after ``status: idle`` for a request with no reply yet, wait this long for a
    #: reply sent from another kernel thread before failing it as NoReply
    no_reply_grace: float = 0.05
    #: reconnect by itself after a loss, waiting ``reconnect_delay`` first
    auto_reconnect: bool = False
    reconnect_delay: float = 1.0
    #: subscribe ``commspec.peer/<session id>`` too, so the kernel can tell which
    #: frontend left; off only to test kernels that never welcome us
    presence_topic: bool = True
    #: where comm_info_request goes when reconciling: control is answered even while
    #: shell runs a long cell, but not every kernel serves it there
    reconcile_channel: Literal["shell", "control"] = "shell"
