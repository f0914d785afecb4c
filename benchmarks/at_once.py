"""N echo requests fired at once on one comm (issue 10, point 5): how many end in their result.

Our stack as in the RPC section (``rpc_ours``): a FrontendEndpoint here, ``commspec
kernel`` in its own process. Every request is made before any is awaited; then each
future is waited for, up to a deadline. A request ends in its result, in another
outcome (counted by the exception's type: Undeliverable when the shell queue was full,
NoReply when a reply was dropped but its idle came), or not at all by the deadline (its
reply and idle dropped). The time runs from the first request made to the last one
ended (or to the deadline). Beside it, the kernel process's peak memory before and
after: what its queues cost (nothing is dropped, so what a frontend has not read waits).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import wait
from dataclasses import dataclass

from .common import PAYLOAD, now
from .oversize import peak_rss_kib
from .rpc_ours import OursStack

#: how many requests, and how long they may take in all
N, QUICK_N = 10_000, 1_000
DEADLINE = 60.0


@dataclass(frozen=True)
class AtOnce:
    n: int
    results: int
    #: the requests that ended otherwise, by outcome (the exception's type)
    otherwise: Counter[str]
    never_ended: int
    seconds: float
    #: the kernel process's peak resident memory (VmHWM) before the burst and after it
    kernel_peak_kib: tuple[int, int]


def fire(stack: OursStack, n: int, deadline: float = DEADLINE) -> AtOnce:
    """Make ``n`` echo requests on the stack's comm, then wait for them all."""
    comm = stack.comm
    peak_before = peak_rss_kib(stack.server_pid)
    start = now()
    futures = [comm.request("echo", PAYLOAD) for _ in range(n)]
    done, pending = wait(futures, timeout=deadline)
    seconds = now() - start
    otherwise: Counter[str] = Counter()
    results = 0
    for future in done:
        error = future.exception()
        if error is not None:
            otherwise[type(error).__name__] += 1
        elif future.result() == PAYLOAD:
            results += 1
        else:
            otherwise["wrong result"] += 1
    return AtOnce(n, results, otherwise, len(pending), seconds,
                  (peak_before, peak_rss_kib(stack.server_pid)))


def measure(n: int = N) -> AtOnce:
    stack = OursStack().start()
    try:
        return fire(stack, n)
    finally:
        stack.close()
