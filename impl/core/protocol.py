"""What every protocol core shares: inputs dispatched by type, effects collected in order.

A core subclass fills ``_handlers`` (input type -> method) and appends its
effects to ``_out`` as it moves; ``handle`` runs one input at the time given and
returns what was produced. The time is the core's only clock: its trace events
are stamped with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commspec.model.trace import TraceEvent, TraceSink, discard

from .events import Effect, Input, RequestEnded, StartTimer, StopTimer, Timer, TimerKind, Trace
from .requests import PendingRequests

__all__ = ["ProtocolCore"]


_DEADLINES = Timer(TimerKind.DEADLINE)


class ProtocolCore:
    #: what this core is, for its errors ("kernel", "frontend")
    role = "protocol"
    #: the requests this side makes (set by the subclass)
    requests: PendingRequests

    def __init__(self, *, tracing: bool) -> None:
        self.now = 0.0
        self._out: list[Effect] = []
        self._handlers: dict[type, Callable[[Any], None]] = {}
        #: the sink the core's Tracked objects report to: trace effects, or nothing
        self.sink: TraceSink = self._trace if tracing else discard
        self._armed: float | None = None

    def handle(self, event: Input, now: float) -> list[Effect]:
        """Handle one input at time ``now``; the effects, in the order to carry out."""
        self.now = now
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"the {self.role} core takes no {type(event).__name__}")
        handler(event)
        return self.take_effects()

    def take_effects(self) -> list[Effect]:
        """The effects produced so far (after an exception in ``handle``: up to it)."""
        out, self._out = self._out, []
        return out

    def clock(self) -> float:
        return self.now

    def _emit(self, effect: RequestEnded) -> None:
        self._out.append(effect)

    def _trace(self, event: TraceEvent) -> None:
        self._out.append(Trace(event))

    def _arm_deadline(self) -> None:
        """One timer, due at the earliest deadline of the pending requests."""
        when = self.requests.next_deadline()
        if when == self._armed:
            return
        self._armed = when
        self._out.append(StopTimer(_DEADLINES) if when is None else StartTimer(_DEADLINES, when))

    def _deadline_passed(self) -> None:
        self._armed = None
        self.requests.expire(self.now)
        self._arm_deadline()
