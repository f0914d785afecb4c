"""The reference kernel endpoint (see endpoint.py for its rules)."""

from __future__ import annotations

from .endpoint import KernelConfig, KernelEndpoint
from .sockets import HeartbeatSettings

__all__ = ["HeartbeatSettings", "KernelConfig", "KernelEndpoint"]
