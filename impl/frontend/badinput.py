"""Bad input from the kernel: logged once per reason, counted, otherwise ignored.

A bad signature, malformed JSON, a message for a comm we do not know or a reply
for a request we never made must not move any state or crash the I/O thread; it
is evidence for whoever debugs the kernel, so it is counted and shown once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger(__name__)


class BadInput:
    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()  # read from any thread, written on the I/O thread

    def note(self, reason: str, detail: str = "") -> None:
        with self._lock:
            self._counts[reason] += 1
            first = self._counts[reason] == 1
        if first:
            log.warning(
                "%s: dropped bad input from the kernel (%s)%s; further ones are only counted",
                self._endpoint,
                reason,
                f": {detail}" if detail else "",
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
