"""Bad input to the kernel: one clear log line, a counter by reason, nothing else.

A mis-signed frame, a reply nobody asked for, a message for a comm that does not
exist: none of it may move state or stop the I/O thread. Each is logged (the
first ``LOUD_PER_REASON`` of a reason at WARNING, later ones at DEBUG, so a
flood cannot drown the log) and counted; tests and operators read the counts.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

__all__ = ["LOUD_PER_REASON", "BadInput"]

log = logging.getLogger("commspec.kernel")

LOUD_PER_REASON = 20


class BadInput:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()  # written on the I/O thread, read from any

    def note(self, reason: str, detail: str) -> None:
        with self._lock:
            self._counts[reason] += 1
            seen = self._counts[reason]
        level = logging.WARNING if seen <= LOUD_PER_REASON else logging.DEBUG
        more = " (further ones logged at DEBUG)" if seen == LOUD_PER_REASON else ""
        log.log(level, "kernel: dropped bad input [%s]: %s%s", reason, detail, more)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)
