"""Failing N pending requests on one disconnect: the core's PendingRequests, then futures.

For each N the requests are started on one comm (as the kernel's core starts
them, receiver present, each with the future the application layer keeps for
it), then one call fails them all: ``fail_all`` (the last subscriber left) or
``fail_comm`` (the comm's frontend left), with PEER_LOST, and the application
completes each future from the RequestEnded the core emitted (as
``KernelApplication`` does). Both are timed together; each future ends in
Disconnected.

Beside it, two floors. "floor": any design that hands each caller a
``concurrent.futures.Future`` and a failure of its own: N times, build a
Disconnected and ``set_exception`` it on a running future, nothing else.
"future only": the same with one Disconnected shared by all N futures.
"""

from __future__ import annotations

import gc
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from commspec.impl import Disconnected, PendingRequests
from commspec.impl.core.events import RequestEnded
from commspec.model.machines import RequestEvent

from .common import median, now

COMM = "bench-comm"


@dataclass
class FailCost:
    n: int
    fail_all: float  # seconds, median of the repeats
    fail_comm: float
    floor: float
    future_only: float

    def ns_per_request(self, seconds: float) -> float:
        return seconds / self.n * 1e9


def _one(n: int, comm_wide: bool) -> float:
    ended: list[RequestEnded] = []
    pending = PendingRequests("kernel", ended.append)
    futures: dict[str, Future[Any]] = {}
    for i in range(n):
        msg_id = f"msg-{i}"
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        futures[msg_id] = future
        pending.start(msg_id, COMM, "hang", receiver_present=True)
    last = futures[f"msg-{n - 1}"]
    gc.collect()
    start = now()
    if comm_wide:
        failed = pending.fail_comm(COMM, RequestEvent.PEER_LOST, "its frontend left")
    else:
        failed = pending.fail_all(RequestEvent.PEER_LOST, "no frontend is subscribed any more")
    pop = futures.pop
    for effect in ended:
        pop(effect.msg_id).set_exception(effect.error)
    elapsed = now() - start
    if failed != n or not isinstance(last.exception(), Disconnected):
        raise RuntimeError(f"failed {failed} of {n}, last ended {last.exception()!r}")
    return elapsed


def _floor(n: int, shared: bool = False) -> float:
    futures: list[Future[Any]] = [Future() for _ in range(n)]
    for future in futures:
        future.set_running_or_notify_cancel()
    error = Disconnected("*", COMM, "hang", "invalidated", "left")
    gc.collect()
    start = now()
    if shared:
        for future in futures:
            future.set_exception(error)
    else:
        for i, future in enumerate(futures):
            future.set_exception(Disconnected(str(i), COMM, "hang", "invalidated", "left"))
    return now() - start


def measure(sizes: tuple[int, ...], repeats: int) -> list[FailCost]:
    _one(1000, comm_wide=False)  # warm up
    return [
        FailCost(
            n,
            median([_one(n, comm_wide=False) for _ in range(repeats)]),
            median([_one(n, comm_wide=True) for _ in range(repeats)]),
            median([_floor(n) for _ in range(repeats)]),
            median([_floor(n, shared=True) for _ in range(repeats)]),
        )
        for n in sizes
    ]
