"""Every declared machine of the specification, in the order SPEC.md presents them."""

from __future__ import annotations

from typing import Any

from ..declaration import MachineSpec
from .frontend_comm import FRONTEND_COMM, HELD, FrontendCommEvent, FrontendCommState
from .kernel_comm import ALIVE, KERNEL_COMM, KernelCommEvent, KernelCommFact, KernelCommState
from .presence import PRESENCE, PresenceEvent, PresenceFact, PresenceState
from .request import FAILURE_EVENTS, OUTCOMES, REQUEST, RequestEvent, RequestFact, RequestState
from .session import AWAITING_WELCOME, LINKED, PROVEN, SESSION, SessionEvent, SessionState
from .stdin_request import FAILURE_EVENTS as STDIN_FAILURE_EVENTS
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
    "ALIVE",
    "AWAITING_WELCOME",
    "BY_NAME",
    "FAILURE_EVENTS",
    "FRONTEND_COMM",
    "HELD",
    "KERNEL_COMM",
    "LINKED",
    "MACHINES",
    "OUTCOMES",
    "PRESENCE",
    "PROVEN",
    "REQUEST",
    "SESSION",
    "STDIN_FAILURE_EVENTS",
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
