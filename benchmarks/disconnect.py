"""Disconnect-to-invalidation latency: ours, and the raw XPUB unsubscribe beside it.

A KernelEndpoint in this process has ``PENDING`` requests out to a frontend in
its own process (the model-based tests' frontend process, ``commspec.mbt.agent``,
forked by one zygote), which holds them unanswered. The same process also holds
a bare SUB connected to a raw XPUB_VERBOSER socket here, set with the kernel's
heartbeat options. The peer then goes away:
- ``close``: it closes the frontend's sockets; later, separately, the SUB;
- ``kill``: SIGKILL, which takes both connections at once;
- ``stop``: SIGSTOP, found out by the ZMTP heartbeats on both XPUBs.
Ours: from the action to the moment the *last* of the kernel's request futures
failed with Disconnected (noted on the kernel's I/O thread, in the future's
done-callback). Raw: from the action to the *first* unsubscribe frame.

``time.perf_counter`` is CLOCK_MONOTONIC on Linux, shared by processes, so the
peer's "closed at" and our "failed at" are on one clock.
"""

from __future__ import annotations

import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import zmq

from commspec.impl import (
    Comm,
    Disconnected,
    HeartbeatSettings,
    KernelConfig,
    KernelEndpoint,
    TargetRegistry,
)
from commspec.impl.targets import DEFAULT_TARGETS
from commspec.mbt.processes import FrontendPool, FrontendProcess
from commspec.model.trace import discard

from .common import now

#: the comm target the benchmark's kernel serves (it hands each comm to the trial)
TARGET = "bench.hang"

HEARTBEAT = HeartbeatSettings(interval=0.1, timeout=0.5)
#: requests pending on the frontend when it goes away
PENDING = 8
WAIT = 10.0
HOW = ("close", "kill", "stop")


@dataclass
class Latencies:
    how: str
    ours: list[float]
    raw: list[float]


class RawXpub:
    """A bare XPUB_VERBOSER with the kernel's heartbeat options, bound here."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.xpub = context.socket(zmq.XPUB)
        self.xpub.linger = 0
        self.xpub.setsockopt(zmq.XPUB_VERBOSER, 1)
        HEARTBEAT.apply(self.xpub)
        self.port = self.xpub.bind_to_random_port("tcp://127.0.0.1")
        self._live: set[bytes] = set()

    def _frame(self) -> bytes:
        if not self.xpub.poll(int(WAIT * 1000)):
            raise TimeoutError(f"no subscription frame within {WAIT} s")
        return self.xpub.recv()

    def wait_subscribed(self, topic: bytes) -> None:
        expected = {b"", topic}
        while self._live != expected:
            frame = self._frame()
            if frame[:1] == b"\x01":
                self._live.add(frame[1:])

    def wait_unsubscribed(self) -> float:
        """When the first unsubscribe came; returns once all of them did."""
        first: float | None = None
        while self._live:
            frame = self._frame()
            if frame[:1] == b"\x00" and frame[1:] in self._live:
                first = now() if first is None else first
                self._live.discard(frame[1:])
        assert first is not None
        return first

    def close(self) -> None:
        self.xpub.close(linger=0)


class Bench:
    """Our kernel and the raw XPUB; the target hands every comm opened on it to us."""

    def __init__(self) -> None:
        self._comms: queue.Queue[Comm] = queue.Queue()
        registry = TargetRegistry(DEFAULT_TARGETS)
        registry.register(TARGET, lambda comm, data, kernel: self._comms.put(comm))
        self._context = zmq.Context()
        self.raw = RawXpub(self._context)
        self.kernel = KernelEndpoint(
            config=KernelConfig(heartbeat=HEARTBEAT, stop_linger=0.2), targets=registry
        ).start()
        self._pool = FrontendPool()

    def peer(self) -> FrontendProcess:
        return self._pool.take(discard)

    def trial(self, peer: FrontendProcess, how: str) -> tuple[float, float]:
        """(ours, raw) latency in seconds for one departure of ``peer``."""
        peer.connect(self.kernel.connection_info, uuid.uuid4().hex)
        peer.call("wait_ready", timeout=WAIT)
        peer.call("hold", on=True)
        comm_id = peer.call("open", target=TARGET)
        topic = f"peer/{uuid.uuid4().hex}"
        peer.call("sub", url=f"tcp://127.0.0.1:{self.raw.port}", topics=[topic])
        self.raw.wait_subscribed(topic.encode())
        comm = self._comms.get(timeout=WAIT)
        if comm.comm_id != comm_id:
            raise RuntimeError(f"expected comm {comm_id}, got {comm.comm_id}")
        failed: list[tuple[float, BaseException | None]] = []
        all_failed = threading.Event()

        def on_done(future: Future[Any]) -> None:  # on the kernel's I/O thread
            failed.append((now(), future.exception()))
            if len(failed) == PENDING:
                all_failed.set()

        for slot in range(PENDING):
            comm.request("ask", {"slot": slot}).add_done_callback(on_done)
        if not peer.wait_held(PENDING - 1, WAIT):  # every one reached the frontend
            raise TimeoutError(f"{PENDING} requests did not reach the frontend in {WAIT} s")
        if how == "close":
            ours_from = float(peer.call("close"))
            self._wait(all_failed, failed, how)
            raw_from = float(peer.call("close_sub"))
            raw_at = self.raw.wait_unsubscribed()
        else:
            ours_from = raw_from = now()
            if how == "kill":
                peer.kill()
            else:
                peer.freeze()
            raw_at = self.raw.wait_unsubscribed()
            self._wait(all_failed, failed, how)
        return max(t for t, _ in failed) - ours_from, raw_at - raw_from

    @staticmethod
    def _wait(
        all_failed: threading.Event, failed: list[tuple[float, BaseException | None]], how: str
    ) -> None:
        if not all_failed.wait(WAIT):
            raise TimeoutError(f"{how}: {len(failed)}/{PENDING} requests failed in {WAIT} s")
        wrong = [e for _, e in failed if not isinstance(e, Disconnected)]
        if wrong:
            raise RuntimeError(f"{how}: a request ended in {wrong[0]!r}, not Disconnected")

    def run(self, how: str, count: int) -> Latencies:
        pairs: list[tuple[float, float]] = []
        if how == "close":  # one peer connects and closes again and again
            peer = self.peer()
            try:
                self.trial(peer, how)  # warm up
                pairs = [self.trial(peer, how) for _ in range(count)]
            finally:
                self._pool.release([peer])
        while len(pairs) < count:  # a fresh peer for each: forked in milliseconds
            peer = self.peer()
            try:
                pairs.append(self.trial(peer, how))
            finally:
                self._pool.release([peer])
        return Latencies(how, [o for o, _ in pairs], [r for _, r in pairs])

    def close(self) -> None:
        try:
            self._pool.close()
            self.kernel.stop()
        finally:
            self.raw.close()
            self._context.term()


def measure(trials: dict[str, int]) -> list[Latencies]:
    """Latencies (seconds) for each way of going away, ``trials[how]`` times each."""
    bench = Bench()
    try:
        return [bench.run(how, trials[how]) for how in HOW]
    finally:
        bench.close()
