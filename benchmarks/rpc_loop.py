"""The one measuring loop every RPC stack shares: keep ``window`` requests in flight."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter as now


def round_trips_per_second(
    send: Callable[[], None], recv_one: Callable[[], None], window: int, seconds: float
) -> float:
    """Send ``window`` requests, then one more per reply until ``seconds`` passed; drain.

    ``send`` issues one request; ``recv_one`` blocks until one reply arrived.
    Every reply counted was answered inside the measured interval.
    """
    start = now()
    deadline = start + seconds
    in_flight = done = 0
    for _ in range(window):
        send()
        in_flight += 1
    while in_flight:
        recv_one()
        in_flight -= 1
        done += 1
        if now() < deadline:
            send()
            in_flight += 1
    return done / (now() - start)
