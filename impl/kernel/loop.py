"""The kernel's I/O thread: one thread owns every socket, blocked in poll when idle.

ZeroMQ sockets are not thread-safe, so only this thread touches them. Other
threads post callables on a queue and write one byte to a wake-up pipe that
sits in the same ``zmq.Poller``; timers sit in a heap whose earliest deadline
(together with any other deadline source, such as request deadlines) becomes
the poll timeout. Readers are served in the order they were added, so the
kernel can look at IOPub subscription changes before shell traffic.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import zmq

from ..errors import EndpointClosed

__all__ = ["Callback", "IoLoop", "Timer"]

log = logging.getLogger("commspec.kernel")

T = TypeVar("T")
Callback = Callable[[], None]


class Timer:
    """A callback due at a monotonic time. ``cancel`` may be called from any thread."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True  # a plain store: read by the loop before it runs the timer


class IoLoop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._poller = zmq.Poller()
        self._readers: dict[zmq.Socket[bytes], Callback] = {}
        self._order: list[zmq.Socket[bytes]] = []
        self._posted: queue.SimpleQueue[Callback] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._deadline_sources: list[Callable[[], float | None]] = []
        self._on_exit: list[Callback] = []
        self._stopping = False
        self._closed = False
        self._lock = threading.Lock()  # guards _closed and the pipe's write end
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end after the work already posted, and wait for it."""
        if not self._thread.is_alive():
            self._close_pipe()
            return
        try:
            self.post(self.request_stop)
        except EndpointClosed:
            pass
        if not self.in_loop_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self._name} did not stop within {timeout} s")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    @staticmethod
    def clock() -> float:
        """The loop's time: ``time.monotonic()``, as timers and deadlines use."""
        return time.monotonic()

    def request_stop(self) -> None:
        """End the thread once the current round is done (loop thread only)."""
        self._stopping = True

    def on_exit(self, callback: Callback) -> None:
        """Run on the loop thread as it ends (closing its sockets)."""
        self._on_exit.append(callback)

    # -- registration (before start, or on the loop thread) ------------------

    def add_reader(self, sock: zmq.Socket[bytes], callback: Callback) -> None:
        self._readers[sock] = callback
        self._order.append(sock)
        self._poller.register(sock, zmq.POLLIN)

    def add_deadline_source(self, source: Callable[[], float | None]) -> None:
        """A function giving the next monotonic time the loop must wake up at (or None)."""
        self._deadline_sources.append(source)

    # -- handing work over (any thread) ---------------------------------------

    def post(self, callback: Callback) -> None:
        with self._lock:
            if self._closed:
                raise EndpointClosed(f"{self._name} has stopped")
            self._posted.put(callback)
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the loop will wake up anyway

    def run_soon(self, callback: Callback) -> None:
        """Run now if on the loop thread, else post."""
        if self.in_loop_thread():
            self._guarded(callback)
        else:
            self.post(callback)

    def call_sync(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the loop thread and return its result, raising what it raised."""
        if self.in_loop_thread() or not self._thread.is_alive():
            return fn()
        result: Future[T] = Future()

        def call() -> None:
            try:
                result.set_result(fn())
            except BaseException as e:
                result.set_exception(e)

        self.post(call)
        return result.result(timeout)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        self.run_soon(lambda: self._push_timer(timer))
        return timer

    # -- the thread ----------------------------------------------------------

    def _push_timer(self, timer: Timer) -> None:
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))

    def _run(self) -> None:
        try:
            while not self._stopping:
                ready = dict(self._poller.poll(self._timeout_ms()))
                if self._wake_r in ready:
                    self._run_posted()
                for sock in self._order:
                    if sock in ready:
                        self._guarded(self._readers[sock])
                self._run_due_timers()
        finally:
            with self._lock:
                self._closed = True
            self._run_posted()  # nobody waits forever on work posted just before the stop
            for callback in self._on_exit:
                self._guarded(callback)
            self._close_pipe()

    def _timeout_ms(self) -> int | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        times = [self._timers[0][0]] if self._timers else []
        for source in self._deadline_sources:
            when = source()
            if when is not None:
                times.append(when)
        if not times:
            return None
        # rounded up: waking a hair early would only poll again for nothing
        return max(0, int((min(times) - time.monotonic()) * 1000) + 1)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(timer.callback)

    def _run_posted(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                callback = self._posted.get_nowait()
            except queue.Empty:
                return
            self._guarded(callback)

    def _guarded(self, callback: Callback) -> None:
        # One faulty callback must not take the thread, and every socket, down.
        try:
            callback()
        except Exception:
            log.exception("%s: %r failed", self._name, callback)

    def _close_pipe(self) -> None:
        with self._lock:
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
