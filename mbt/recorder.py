"""The live trace: every transition the system under test reports, as it happens.

Rules:
- A :class:`Recorder` is the trace sink of every endpoint of one system under test
  (kernel and frontends alike). It keeps each object's current state, counts late
  replies, link losses and outcomes, and feeds every event to a
  :class:`~commspec.model.trace_check.TraceChecker` as it arrives, so an event its
  machine does not declare is found at the step that took it.
- Waiting is on the trace: :meth:`Recorder.wait_until` re-evaluates a predicate on
  every event (and every ``POLL`` for observations that are queries, not events),
  bounded by a timeout and, optionally, by a quiet period with no event at all.
- :class:`Coverage` counts the declared transitions taken, over any number of
  recorders and runs (thread-safe: endpoints trace from their own threads).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from commspec.model.machines import MACHINES
from commspec.model.trace import TraceEvent
from commspec.model.trace_check import TraceChecker

from .errors import MbtFailure

__all__ = ["POLL", "Coverage", "Move", "Recorder", "Row"]

#: how often a wait re-reads the observations that are queries, not trace events (the
#: kernel's subscriber count may change just after the event that announced it)
POLL = 0.002

Row = tuple[str, str, str, str]  # (machine, source, event, dest)
Move = tuple[str, str, str]  # (source, event, dest) of one transition


class Coverage:
    """Which declared transitions the live system took, over any number of runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken: Counter[Row] = Counter()

    def add(self, row: Row) -> None:
        with self._lock:
            self.taken[row] += 1

    @staticmethod
    def declared() -> list[Row]:
        return [
            (m.name, t.source.value, t.event.value, t.dest.value)
            for m in MACHINES
            for t in m.transitions
        ]

    def uncovered(self) -> list[Row]:
        with self._lock:
            return [r for r in dict.fromkeys(self.declared()) if r not in self.taken]

    def per_machine(self) -> dict[str, tuple[int, int]]:
        """machine -> (rows taken, rows declared)."""
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            for m in MACHINES:
                rows = {(m.name, t.source.value, t.event.value, t.dest.value)
                        for t in m.transitions}
                out[m.name] = (sum(1 for r in rows if r in self.taken), len(rows))
        return out


class Recorder:
    """The trace sink of every live endpoint: state per object, checked as it arrives."""

    def __init__(self, coverage: Coverage | None = None) -> None:
        self._cond = threading.Condition()
        self.events: list[TraceEvent] = []
        self.state: dict[tuple[str, str, str], str] = {}
        self.late: Counter[str] = Counter()  # late_reply events per endpoint
        self.losses: Counter[str] = Counter()  # session link_lost events per endpoint
        #: objects that moved from pending into an outcome, and how often
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self.checker = TraceChecker(context=6)
        self.coverage = coverage
        self._last_event = 0.0

    def __call__(self, event: TraceEvent) -> None:
        with self._cond:
            self._last_event = time.monotonic()
            self.events.append(event)
            self.checker.feed(len(self.events), event)
            key = (event.endpoint, event.machine, event.object)
            self.state[key] = event.dest
            if event.event == "late_reply":
                self.late[event.endpoint] += 1
            elif event.machine == "session" and event.event == "link_lost":
                self.losses[event.endpoint] += 1
            if event.source == "pending" and event.dest != "pending":
                self.outcomes[key] += 1
            self._cond.notify_all()
        if self.coverage is not None:
            self.coverage.add((event.machine, event.source, event.event, event.dest))

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int) -> list[TraceEvent]:
        with self._cond:
            return list(self.events[mark:])

    def get(self, endpoint: str, machine: str, obj: str, default: str) -> str:
        with self._cond:
            return self.state.get((endpoint, machine, obj), default)

    def moves(self, endpoint: str, machine: str, obj: str | None = None) -> list[Move]:
        """The transitions ``endpoint``'s ``machine`` took (one object's, given ``obj``)."""
        with self._cond:
            return [
                (e.source, e.event, e.dest) for e in self.events
                if e.endpoint == endpoint and e.machine == machine
                and (obj is None or e.object == obj)
            ]

    def started(self, endpoint: str, machine: str, mark: int, timeout: float) -> str | None:
        """The id of the first ``machine`` object ``endpoint`` started after ``mark``
        (waiting up to ``timeout``), or None."""
        found: list[str] = []

        def begun() -> bool:
            found[:] = [e.object for e in self.since(mark)
                        if e.endpoint == endpoint and e.machine == machine
                        and e.source == "new"][:1]
            return bool(found)

        return found[0] if self.wait_until(begun, timeout) else None

    def require_conformance(self) -> None:
        """Raise MbtFailure if the trace checker found an event its machine does not allow."""
        deviation = self.checker.report.deviation
        if deviation is not None:
            raise MbtFailure("the live system took a transition its machine does not "
                             "declare:\n" + deviation.describe())

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float, quiet: float | None = None
    ) -> bool:
        """Re-evaluate ``predicate`` on every trace event (and at least every ``POLL``, for
        the observations that are queries) until it holds (True), ``timeout`` passes, or,
        given ``quiet``, nothing was traced for that long (False): a live system with
        nothing left in flight that still does not match will not match later."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if predicate():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            with self._cond:
                last = max(self._last_event, start)
                if quiet is not None and now - last >= quiet:
                    return False
                self._cond.wait(min(deadline - now, POLL))
