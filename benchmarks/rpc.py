"""Section 1: comm RPC round trips per second, six stacks, interleaved rounds.

Beside each rate, the CPU time each side spent per round trip (this process,
the client, from ``time.process_time``; the server process from /proc), so
the tables say where the time goes, not only how much there is.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Protocol

from .common import median, now, process_cpu
from .rpc_codec import CodecStack
from .rpc_floor import FloorStack
from .rpc_ipykernel import IpykernelStack
from .rpc_ours import OursStack
from .rpc_raw import RawStack
from .rpc_wire import WireStack

WINDOWS = (1, 64)


class Stack(Protocol):
    name: str

    @property
    def server_pid(self) -> int: ...

    def start(self) -> object: ...

    def rate(self, window: int, seconds: float) -> float: ...

    def close(self) -> None: ...


@dataclass
class Rates:
    name: str
    #: round trips per second by window, the median of the rounds
    by_window: dict[int, float]
    #: CPU microseconds per round trip by window: (client, server), medians
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass
class _Sample:
    rate: float
    client_us: float
    server_us: float


def _sample(stack: Stack, window: int, seconds: float) -> _Sample:
    client, server, start = time.process_time(), process_cpu(stack.server_pid), now()
    rate = stack.rate(window, seconds)
    trips = rate * (now() - start)
    return _Sample(rate, (time.process_time() - client) / trips * 1e6,
                   (process_cpu(stack.server_pid) - server) / trips * 1e6)


def measure(seconds: float, rounds: int) -> dict[str, Rates]:
    """Each stack runs ``seconds`` per window per round; rounds interleave the stacks,
    so a burst of load on the shared machine hits them all alike."""
    stacks: dict[str, Stack] = {}
    with ExitStack() as cleanup:  # every stack closed, even if one start() fails midway
        for key, make in (("ours", OursStack), ("ipykernel", IpykernelStack),
                          ("wire", WireStack), ("codec", CodecStack), ("floor", FloorStack),
                          ("raw", RawStack)):
            started: Stack = make()
            cleanup.callback(started.close)
            started.start()
            stacks[key] = started
        for stack in stacks.values():  # warm up
            for window in WINDOWS:
                stack.rate(window, seconds / 4)
        samples: dict[tuple[str, int], list[_Sample]] = {}
        for _ in range(rounds):
            for key, stack in stacks.items():
                for window in WINDOWS:
                    samples.setdefault((key, window), []).append(_sample(stack, window, seconds))
    return {key: _rates(stack.name, [samples[key, w] for w in WINDOWS])
            for key, stack in stacks.items()}


def _rates(name: str, per_window: list[list[_Sample]]) -> Rates:
    rates = Rates(name, {})
    for window, samples in zip(WINDOWS, per_window, strict=True):
        rates.by_window[window] = median([s.rate for s in samples])
        rates.cpu[window] = (median([s.client_us for s in samples]),
                             median([s.server_us for s in samples]))
    return rates
