"""The frontend's I/O thread: one thread owns every socket.

ZeroMQ sockets are not thread-safe, so the sockets live on this thread alone.
Other threads hand it work through a thread-safe queue and a wake-up pipe that
sits in the same ``zmq.Poller`` as the sockets; timers live in a heap whose
earliest deadline is the poll timeout. Nothing spins and nothing sleeps: the
thread is blocked in ``poll`` unless a socket, the pipe or a timer needs it.
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

log = logging.getLogger(__name__)

T = TypeVar("T")
Callback = Callable[[], None]


class LoopClosed(RuntimeError):
    """Work was handed to an I/O thread that has stopped."""


class Timer:
    """A callback due at a monotonic time; ``cancel`` is safe on the loop thread only."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class IoLoop:
    def __init__(self, name: str) -> None:
        self._poller = zmq.Poller()
        self._readers: dict[zmq.Socket[bytes] | int, Callback] = {}
        self._commands: queue.SimpleQueue[Callback] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._closed = False
        # guards _closed and the wake-up fds, so no thread writes to a closed fd
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Run the queued commands, then end the thread and wait for it (thread-safe)."""
        if not self._thread.is_alive():
            self._release()
            return
        try:
            self.call_soon_threadsafe(self._request_stop)
        except LoopClosed:
            pass  # stopping already
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"I/O thread {self._thread.name} did not stop in {timeout} s")

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    # -- registration (loop thread) ------------------------------------------

    def add_reader(self, sock: zmq.Socket[bytes], callback: Callback) -> None:
        self._readers[sock] = callback
        self._poller.register(sock, zmq.POLLIN)

    def remove_reader(self, sock: zmq.Socket[bytes]) -> None:
        if self._readers.pop(sock, None) is not None:
            self._poller.unregister(sock)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(time.monotonic() + delay, callback)

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    # -- handing work over (any thread) -----------------------------------------

    def call_soon_threadsafe(self, callback: Callback) -> None:
        with self._lock:
            if self._closed:
                raise LoopClosed(f"I/O thread {self._thread.name} has stopped")
            self._commands.put(callback)
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full, so the loop is already due to wake up

    def run_sync(self, fn: Callable[[], T], timeout: float | None = 10.0) -> T:
        """Run ``fn`` on the loop thread and return its result (or raise its error)."""
        if self.in_loop_thread():
            return fn()
        done: Future[T] = Future()

        def call() -> None:
            if not done.set_running_or_notify_cancel():
                return
            try:
                done.set_result(fn())
            except BaseException as e:
                done.set_exception(e)

        self.call_soon_threadsafe(call)
        return done.result(timeout)

    # -- the thread -------------------------------------------------------------

    def _request_stop(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        try:
            while not self._stopping:
                for sock, _ in self._poller.poll(self._poll_timeout_ms()):
                    if sock == self._wake_r:
                        self._drain_commands()
                    else:
                        callback = self._readers.get(sock)
                        if callback is not None:
                            self._guarded(callback)
                self._run_due_timers()
        finally:
            with self._lock:
                self._closed = True
            # Commands that came in after the stop still run, so no caller of
            # run_sync waits for a result that never comes.
            self._drain_commands()
            self._release()

    def _poll_timeout_ms(self) -> int | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        # round up, so a timer is never polled for just short of its deadline
        return max(0, int((self._timers[0][0] - time.monotonic()) * 1000) + 1)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(timer.callback)

    def _drain_commands(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass  # drained
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._guarded(command)

    def _guarded(self, callback: Callback) -> None:
        # One faulty callback must not take the thread (and every socket) down.
        try:
            callback()
        except Exception:
            log.exception("%s: callback %r failed", self._thread.name, callback)

    def _release(self) -> None:
        with self._lock:
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
