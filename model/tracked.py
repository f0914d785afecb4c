"""An object whose state moves only through its machine's declared table.

The implementation keeps one :class:`Tracked` per comm, request, session... It
holds the current state, asks the spec for the next one (a dict lookup, no
``transitions.Machine`` per object on the hot path) and reports every move to a
trace sink. An event the table does not allow raises
:class:`~commspec.model.errors.InvalidTransition` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

from .declaration import NO_FACTS, E, Facts, MachineSpec, S
from .errors import InvalidTransition
from .trace import TraceEvent, TraceSink, discard


class Tracked(Generic[S, E]):
    __slots__ = ("clock", "endpoint", "object_id", "sink", "spec", "state")

    def __init__(
        self,
        spec: MachineSpec[S, E],
        object_id: str,
        *,
        endpoint: str = "",
        sink: TraceSink = discard,
        clock: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.spec = spec
        self.object_id = object_id
        self.endpoint = endpoint
        self.sink = sink
        #: what stamps trace events: the owner's clock (a protocol core's is the time
        #: its caller gave it); the model itself reads none
        self.clock = clock
        self.state: S = spec.initial

    @property
    def ended(self) -> bool:
        return self.state in self.spec.terminal

    def fire(self, event: E, facts: Facts = NO_FACTS, msg_id: str | None = None) -> S:
        try:
            row = self.spec.row(self.state, event, facts)
        except InvalidTransition as e:
            raise InvalidTransition(e.machine, e.state, e.event, self.object_id) from None
        source, self.state = self.state, row.dest
        if self.sink is discard:
            return row.dest  # nobody traces: skip building the event (hot path)
        self.sink(
            TraceEvent(
                endpoint=self.endpoint,
                machine=self.spec.name,
                object=self.object_id,
                source=source.value,
                event=event.value,
                dest=row.dest.value,
                time=self.clock(),
                msg_id=msg_id,
            )
        )
        return row.dest

    def __repr__(self) -> str:
        return f"<{self.spec.name} {self.object_id} {self.state.value}>"
