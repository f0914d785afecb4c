"""Broken variants of the reference kernel that only the scenarios through the adapter
(``commspec.mbt.adapter_edges``) reach, each a kernel process of its own.

    python tests/mbt/adapter_variant_kernel.py NAME --connection-file FILE [OPTIONS]

(OPTIONS: commspec kernel's) takes every variant of tests/conform/variant_kernel.py too
(it is that command, with these added). Each one here breaks one stdin rule by
replacing one method of the kernel's stdin requests, so impl/ stays untouched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conform"))

import variant_kernel  # after the path it is found on

from commspec.impl.core.requests import ReplyOutcome
from commspec.impl.kernel import KernelEndpoint

__all__ = ["VARIANTS"]


class ForgetsEndedStdin(KernelEndpoint):
    """A stdin reply to a request that has ended is taken for one to a request never
    made: dropped as unknown, never counted late."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stdin = self.core.stdin
        take = stdin.reply

        def reply(msg_id: str, msg_type: str, content: Any) -> ReplyOutcome:
            if not stdin.is_pending(msg_id):
                stdin.unknown_replies += 1
                return ReplyOutcome.UNKNOWN
            return take(msg_id, msg_type, content)

        stdin.reply = reply  # type: ignore[method-assign]


class AsksTheGone(KernelEndpoint):
    """A stdin request to a frontend that is gone is taken as sent, and pends forever
    (as on a stock ipykernel's stdin socket, which has no ROUTER_MANDATORY)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stdin = self.core.stdin
        start = stdin.start

        def sent(msg_id: str, identity: bytes, kind: str, *, reached: bool,
                 detail: str = "") -> bool:
            return start(msg_id, identity, kind, reached=True, detail=detail)

        stdin.start = sent  # type: ignore[method-assign]


VARIANTS = {
    "forgets_ended_stdin": ForgetsEndedStdin,
    "asks_the_gone": AsksTheGone,
}

if __name__ == "__main__":
    variant_kernel.VARIANTS.update(VARIANTS)
    sys.exit(variant_kernel.main())
