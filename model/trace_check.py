"""Checking a recorded trace against the declared machines.

Rules:
- A trace is JSON lines, one :class:`~commspec.model.trace.TraceEvent` a line
  (blank lines are skipped). A line that is not a trace event is a
  :class:`TraceFormatError` naming its line number: the trace is unreadable,
  which is not the same as a trace the model refuses.
- Every (endpoint, machine, object) is replayed on its own, starting at its
  machine's initial state. Each event must be a declared row of that machine
  whose source, event and destination are the event's ``from``, ``event`` and
  ``to``, and its ``from`` must be the state the replay is in. Guards' facts are
  not in the trace, so a row with that source, event and destination is enough.
- An object in a terminal state whose next event starts again from the initial
  state is a new incarnation of the same id (a frontend that reconnects under
  its old session id in a new process): its replay starts over.
- The first event the model does not allow is reported with the events of the
  same object just before it, as context; checking stops there.

Pure: no I/O; :func:`check_lines` takes any iterable of lines.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .declaration import MachineSpec
from .machines import BY_NAME
from .trace import TraceEvent

__all__ = [
    "Deviation",
    "TraceChecker",
    "TraceFormatError",
    "TraceReport",
    "check_lines",
    "parse_line",
]

ObjectKey = tuple[str, str, str]  # (endpoint, machine, object)
Row = tuple[str, str, str]  # (source, event, dest) as the trace spells them


class TraceFormatError(ValueError):
    """A line that is not a trace event."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True)
class Deviation:
    """The first event the model does not allow."""

    line: int
    event: TraceEvent
    reason: str
    #: the events of the same object just before it, with their line numbers
    context: tuple[tuple[int, TraceEvent], ...]

    def describe(self) -> str:
        e = self.event
        lines = [
            f"line {self.line}: {e.endpoint} {e.machine} {e.object}: "
            f"{e.source} --{e.event}--> {e.dest}",
            f"  not allowed: {self.reason}",
        ]
        if self.context:
            lines.append("  preceding events of this object:")
            for n, c in self.context:
                lines.append(f"    line {n}: {c.source} --{c.event}--> {c.dest}")
        else:
            lines.append("  (the first event of this object)")
        return "\n".join(lines)


@dataclass
class TraceReport:
    events: int = 0
    #: events per machine name
    machines: Counter[str] = field(default_factory=Counter)
    objects: int = 0
    #: (machine, source, event, dest) rows the trace took
    rows: set[tuple[str, str, str, str]] = field(default_factory=set)
    deviation: Deviation | None = None

    @property
    def ok(self) -> bool:
        return self.deviation is None

    def summary(self) -> str:
        per = ", ".join(f"{m} {n}" for m, n in sorted(self.machines.items()))
        return (
            f"{self.events} events, {self.objects} objects, "
            f"{len(self.machines)} machines ({per or 'none'})"
        )


def _rows(spec: MachineSpec[Any, Any]) -> frozenset[Row]:
    return frozenset((t.source.value, t.event.value, t.dest.value) for t in spec.transitions)


_ROWS: dict[str, frozenset[Row]] = {name: _rows(spec) for name, spec in BY_NAME.items()}


def parse_line(text: str, line: int) -> TraceEvent:
    """One trace event, or TraceFormatError naming ``line``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceFormatError(line, f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise TraceFormatError(line, f"a JSON {type(data).__name__}, not an object")
    missing = [k for k in ("endpoint", "machine", "object", "from", "event", "to", "time")
               if k not in data]
    if missing:
        raise TraceFormatError(line, f"missing key(s) {', '.join(missing)}")
    for k in ("endpoint", "machine", "object", "from", "event", "to"):
        if not isinstance(data[k], str):
            raise TraceFormatError(line, f"{k!r} is not a string")
    if not isinstance(data["time"], (int, float)) or isinstance(data["time"], bool):
        raise TraceFormatError(line, "'time' is not a number")
    if data.get("msg_id") is not None and not isinstance(data["msg_id"], str):
        raise TraceFormatError(line, "'msg_id' is neither a string nor null")
    return TraceEvent.from_json(text)


class TraceChecker:
    """Replays events one by one; ``feed`` returns the deviation, if this event is one."""

    def __init__(self, context: int = 5) -> None:
        self.report = TraceReport()
        self._state: dict[ObjectKey, str] = {}
        self._recent: dict[ObjectKey, deque[tuple[int, TraceEvent]]] = {}
        self._context = context

    def feed(self, line: int, event: TraceEvent) -> Deviation | None:
        report = self.report
        if report.deviation is not None:
            return report.deviation
        key = (event.endpoint, event.machine, event.object)
        recent = self._recent.setdefault(key, deque(maxlen=max(self._context, 1)))
        reason = self._refusal(key, event)
        if reason is not None:
            context = tuple(recent)[-self._context :] if self._context else ()
            report.deviation = Deviation(line, event, reason, context)
            return report.deviation
        if key not in self._state:
            report.objects += 1
        self._state[key] = event.dest
        recent.append((line, event))
        report.events += 1
        report.machines[event.machine] += 1
        report.rows.add((event.machine, event.source, event.event, event.dest))
        return None

    def _refusal(self, key: ObjectKey, event: TraceEvent) -> str | None:
        spec = BY_NAME.get(event.machine)
        if spec is None:
            known = ", ".join(sorted(BY_NAME))
            return f"unknown machine {event.machine!r} (declared: {known})"
        states = {s.value for s in spec.states}
        events = {e.value for e in spec.events}
        for what, value in (("state", event.source), ("state", event.dest)):
            if value not in states:
                return f"{event.machine} has no {what} {value!r}"
        if event.event not in events:
            return f"{event.machine} has no event {event.event!r}"
        current = self._state.get(key, spec.initial.value)
        if (
            current != event.source
            and event.source == spec.initial.value
            and current in {s.value for s in spec.terminal}
        ):
            current = event.source  # a new incarnation of a reused id
        if current != event.source:
            return f"'from' is {event.source!r} but the object is in {current!r}"
        if (event.source, event.event, event.dest) not in _ROWS[event.machine]:
            allowed = sorted(
                f"{e} -> {d}" for s, e, d in _ROWS[event.machine] if s == event.source
            )
            return (
                f"{event.machine} has no row {event.source} --{event.event}--> {event.dest}"
                f" (from {event.source!r} it allows: {', '.join(allowed) or 'nothing'})"
            )
        return None


def check_lines(lines: Iterable[str], context: int = 5) -> TraceReport:
    """Check a whole trace; TraceFormatError on the first unreadable line."""
    checker = TraceChecker(context)
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        if checker.feed(n, parse_line(text, n)) is not None:
            break
    return checker.report
