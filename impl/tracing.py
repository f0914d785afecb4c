"""Trace sinks: where an endpoint's transitions go.

Every :class:`~commspec.model.tracked.Tracked` object reports each move to a
sink, a plain callable taking a :class:`~commspec.model.trace.TraceEvent`.
Sinks are called on the endpoint's I/O thread (and, for requests made from
other threads, sometimes on those), so every sink here is thread-safe.

- :class:`JsonLinesSink` writes the trace format of SPEC.md, one event a line.
- :class:`ListSink` keeps events in memory; tests synchronise on it with
  :meth:`ListSink.wait_for` (a bounded wait on a condition, never a sleep).
- :class:`Tee` hands each event to several sinks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

from commspec.model.trace import TraceEvent, TraceSink

__all__ = ["JsonLinesSink", "ListSink", "Tee", "match"]

Predicate = Callable[[TraceEvent], bool]


class JsonLinesSink:
    """Appends each event as a JSON line; line-buffered so a crash loses at most one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: TextIO | None = open(self.path, "a", encoding="utf-8", buffering=1)

    def __call__(self, event: TraceEvent) -> None:
        line = event.to_json()
        with self._lock:
            if self._file is None:
                return  # closed: late events of a stopping endpoint are not an error
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def match(
    *,
    machine: str | None = None,
    event: str | None = None,
    object: str | None = None,  # the trace key's own name
    dest: str | None = None,
    msg_id: str | None = None,
    endpoint: str | None = None,
) -> Predicate:
    """A predicate on the named keys of a trace event (None = any)."""
    wanted = {
        "machine": machine,
        "event": event,
        "object": object,
        "dest": dest,
        "msg_id": msg_id,
        "endpoint": endpoint,
    }
    wanted = {k: v for k, v in wanted.items() if v is not None}

    def predicate(e: TraceEvent) -> bool:
        return all(getattr(e, k) == v for k, v in wanted.items())

    predicate.__doc__ = " ".join(f"{k}={v}" for k, v in wanted.items())
    return predicate


class ListSink:
    """Collects events; threads can wait for one that matches a predicate."""

    def __init__(self) -> None:
        self._events: list[TraceEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: TraceEvent) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    @property
    def events(self) -> list[TraceEvent]:
        """A snapshot of every event so far."""
        with self._cond:
            return list(self._events)

    def mark(self) -> int:
        """An index to pass as ``since``: only events after this point count."""
        with self._cond:
            return len(self._events)

    def find(self, predicate: Predicate, since: int = 0) -> list[TraceEvent]:
        with self._cond:
            return [e for e in self._events[since:] if predicate(e)]

    def wait_for(
        self, predicate: Predicate, timeout: float = 5.0, since: int = 0, count: int = 1
    ) -> TraceEvent:
        """The ``count``-th event after ``since`` that matches; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self._events[since:] if predicate(e)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = "\n  ".join(e.to_json() for e in self._events[-15:])
                    raise TimeoutError(
                        f"no{' ' + str(count) + ' ' if count > 1 else ' '}trace event matching "
                        f"{predicate.__doc__ or predicate!r} within {timeout} s "
                        f"(found {len(found)}); last events:\n  {recent}"
                    )
                self._cond.wait(left)

    def clear(self) -> None:
        with self._cond:
            self._events.clear()


class Tee:
    """Hands each event to every sink, in order."""

    def __init__(self, *sinks: TraceSink) -> None:
        self.sinks = sinks

    def __call__(self, event: TraceEvent) -> None:
        for sink in self.sinks:
            sink(event)
