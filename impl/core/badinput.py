"""Bad input from a peer: one clear log line, a counter by reason, no state change.

Rules:
- A peer's protocol error (a mis-signed frame, a reply nobody asked for, a
  message for a comm that does not exist, an event its machine does not allow
  now) is a :class:`RemoteProtocolError`. The core raises it *before* it moves
  any state; the input boundary catches it, counts it by reason and logs it:
  the first ``LOUD_PER_REASON`` of a reason at WARNING, later ones at DEBUG, so
  a flood cannot drown the log.
- Anything else raised while handling an input is our own bug. It is not
  counted as the peer's fault: it propagates to the caller (the runner's loop
  logs it with its traceback and carries on).
- Counts are read through the endpoint (on its I/O thread): no lock here.
"""

from __future__ import annotations

import logging
import reprlib
from collections import Counter
from typing import Any

from commspec.model.errors import CommspecError

__all__ = ["BAD_INPUT", "LOUD_PER_REASON", "BadInput", "RemoteProtocolError", "describe"]

LOUD_PER_REASON = 20
#: the attribute that marks a log record as bad input, naming its reason (a runner that
#: sends bad input on purpose, such as ``commspec mbt``, tells these apart by it)
BAD_INPUT = "bad_input"

_DESCRIBE = reprlib.Repr()  # keyword arguments only from Python 3.12
_DESCRIBE.maxlevel, _DESCRIBE.maxstring, _DESCRIBE.maxother = 4, 80, 80


def describe(value: Any) -> str:
    """A peer's value for a log line: short, and bounded in depth (plain ``repr`` of
    a list nested 1,000 deep raises RecursionError)."""
    return _DESCRIBE.repr(value)[:200]


class RemoteProtocolError(CommspecError):
    """The peer sent something the specification does not allow (bad input)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BadInput:
    def __init__(self, endpoint: str, log: logging.Logger) -> None:
        self.endpoint = endpoint
        self._log = log
        self._counts: Counter[str] = Counter()

    def note(self, reason: str, detail: str) -> None:
        self._counts[reason] += 1
        seen = self._counts[reason]
        level = logging.WARNING if seen <= LOUD_PER_REASON else logging.DEBUG
        more = " (further ones logged at DEBUG)" if seen == LOUD_PER_REASON else ""
        self._log.log(level, "%s: dropped bad input [%s]: %s%s",
                      self.endpoint, reason, detail, more, extra={BAD_INPUT: reason})

    def refused(self, error: RemoteProtocolError) -> None:
        self.note(error.reason, error.detail)

    def counts(self) -> Counter[str]:
        return Counter(self._counts)
