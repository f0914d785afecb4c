"""The trace: one structured event for every transition any endpoint takes.

A trace event is a JSON object on its own line (JSON lines)::

    {"endpoint": "kernel", "machine": "request", "object": "k:3f2a...",
     "from": "pending", "event": "peer_lost", "to": "invalidated",
     "time": 12345.678901, "msg_id": "3f2a..."}

``time`` is ``time.monotonic()`` of the process that emitted it, so events of one
endpoint are ordered by it; ``msg_id`` is the Jupyter message id that caused the
transition, or null. Readers must ignore keys they do not know.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TraceEvent:
    endpoint: str
    machine: str
    object: str
    source: str
    event: str
    dest: str
    time: float
    msg_id: str | None = None

    def to_json(self) -> str:
        d = asdict(self)
        d["from"] = d.pop("source")
        d["to"] = d.pop("dest")
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> TraceEvent:
        d: dict[str, Any] = json.loads(line)
        return cls(
            endpoint=str(d["endpoint"]),
            machine=str(d["machine"]),
            object=str(d["object"]),
            source=str(d["from"]),
            event=str(d["event"]),
            dest=str(d["to"]),
            time=float(d["time"]),
            msg_id=d.get("msg_id"),
        )


TraceSink = Callable[[TraceEvent], None]


def discard(event: TraceEvent) -> None:
    """The sink for endpoints nobody traces."""
