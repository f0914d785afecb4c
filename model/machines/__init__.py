"""Every declared machine of the specification, in the order SPEC.md presents them."""

from __future__ import annotations

from typing import Any

from ..declaration import MachineSpec
from .frontend_comm import FRONTEND_COMM, FrontendCommEvent, FrontendCommState
from .kernel_comm import KERNEL_COMM, KernelCommEvent, KernelCommFact, KernelCommState
from .presence import PRESENCE, PresenceEvent, PresenceFact, PresenceState
from .request import OUTCOMES, REQUEST, RequestEvent, RequestFact, RequestState
from .session import SESSION, SessionEvent, SessionState
from .stdin_request import STDIN_REQUEST, StdinRequestEvent, StdinRequestState

MACHINES: tuple[MachineSpec[Any, Any], ...] = (
    KERNEL_COMM,
    FRONTEND_COMM,
    REQUEST,
    PRESENCE,
    SESSION,
    STDIN_REQUEST,
)
BY_NAME: dict[str, MachineSpec[Any, Any]] = {m.name: m for m in MACHINES}

__all__ = [
    "BY_NAME",
    "FRONTEND_COMM",
    "KERNEL_COMM",
    "MACHINES",
    "OUTCOMES",
    "PRESENCE",
    "REQUEST",
    "SESSION",
    "STDIN_REQUEST",
    "FrontendCommEvent",
    "FrontendCommState",
    "KernelCommEvent",
    "KernelCommFact",
    "KernelCommState",
    "PresenceEvent",
    "PresenceFact",
    "PresenceState",
    "RequestEvent",
    "RequestFact",
    "RequestState",
    "SessionEvent",
    "SessionState",
    "StdinRequestEvent",
    "StdinRequestState",
]
