"""The commspec specification: declared machines, the system model, the checker.

Pure Python, no I/O, no ZeroMQ: it can be read, explored and tested alone.
"""

from __future__ import annotations

from .declaration import MachineSpec, Transition
from .errors import CommspecError, InvalidTransition, SpecError
from .machines import BY_NAME, MACHINES
from .trace import TraceEvent, TraceSink
from .tracked import Tracked

__all__ = [
    "BY_NAME",
    "MACHINES",
    "CommspecError",
    "InvalidTransition",
    "MachineSpec",
    "SpecError",
    "TraceEvent",
    "TraceSink",
    "Tracked",
    "Transition",
]
