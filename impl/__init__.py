"""Reference implementation over ZeroMQ: the shared pieces and the kernel endpoint.

The frontend endpoint lives in ``commspec.impl.frontend``.

Import what you need from here (``from commspec.impl import Comm, PendingRequests``);
the submodules are the implementation's own layout.
"""

from __future__ import annotations

from .comm import Comm, CommTransport, Deferred, Dispatch, ReplyChannel, Responder
from .connection import (
    ConnectionInfo,
    new_connection_info,
    read_connection_file,
    write_connection_file,
)
from .core.requests import PendingRequests, ReplyOutcome, StdinRequests
from .errors import (
    BadMessage,
    BadMessageReason,
    CommClosed,
    CommRefused,
    Disconnected,
    EndpointClosed,
    InsecureConnection,
    Interrupted,
    NoFrontend,
    NoReply,
    RemoteError,
    RequestFailed,
    TimedOut,
    Undeliverable,
    Unreachable,
    failure_for,
)
from .kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from .targets import ECHO, ECHO_PERSISTENT, TargetRegistry, register_target
from .tracing import JsonLinesSink, ListSink, Tee
from .wire import Received, Wire

__all__ = [
    "ECHO",
    "ECHO_PERSISTENT",
    "BadMessage",
    "BadMessageReason",
    "Comm",
    "CommClosed",
    "CommRefused",
    "CommTransport",
    "ConnectionInfo",
    "Deferred",
    "Disconnected",
    "Dispatch",
    "EndpointClosed",
    "HeartbeatSettings",
    "InsecureConnection",
    "Interrupted",
    "JsonLinesSink",
    "KernelConfig",
    "KernelEndpoint",
    "ListSink",
    "NoFrontend",
    "NoReply",
    "PendingRequests",
    "Received",
    "RemoteError",
    "ReplyChannel",
    "ReplyOutcome",
    "RequestFailed",
    "Responder",
    "StdinRequests",
    "TargetRegistry",
    "Tee",
    "TimedOut",
    "Undeliverable",
    "Unreachable",
    "Wire",
    "failure_for",
    "new_connection_info",
    "read_connection_file",
    "register_target",
    "write_connection_file",
]
from .frontend import FrontendEndpoint as FrontendEndpoint  # built on all of the above
