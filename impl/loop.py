"""An endpoint's I/O thread: one thread owns every socket, blocked in poll when idle.

ZeroMQ sockets are not thread-safe, so only this thread touches them. Other
threads post callables on a queue and write one byte to a wake-up pipe that
sits in the same ``zmq.Poller``; timers sit in a heap whose earliest deadline
(together with any other deadline source, such as request deadlines) becomes
the poll timeout. Nothing spins and nothing sleeps.

Each round runs the posted work, then the readers of the sockets that are
readable, in the order the readers were added (the kernel looks at IOPub
subscription changes before shell traffic), then the timers that are due.
Work handed to a loop that has stopped raises :class:`EndpointClosed`.

An owner that lets other threads use its state and one socket directly (the
frontend sends requests from the caller's thread) gives the loop its ``guard``:
every callback then runs holding it, and that socket is watched by its file
descriptor (``add_reader(..., by_fd=True)``), so the poll never touches the
socket itself while another thread does.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import zmq

from .errors import EndpointClosed

__all__ = ["MAX_POLL_MS", "Callback", "IoLoop", "Timer", "check_delay"]

T = TypeVar("T")

#: the longest one poll waits: a timer further off (an hour, or 1e308 s) is looked at
#: again after this, so no delay can overflow the poll's millisecond timeout
MAX_POLL_MS = 60_000


def check_delay(delay: object, what: str = "delay") -> float:
    """A delay in seconds that a timer can hold: a finite real number >= 0. NaN, the
    infinities and booleans are refused (ValueError, naming ``what``), never handed on
    to a timer where they would stop the loop."""
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, got {delay!r}")
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {delay!r}")
    return float(delay)
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
    """``log`` gets the callbacks that failed (the thread carries on without them)."""

    def __init__(self, name: str, *, log: logging.Logger | None = None,
                 guard: threading.RLock | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self._name = name
        #: callbacks that raised: each is logged and counted, and the loop goes on
        self.failures = 0
        #: what ended the thread, if the loop itself failed (not a callback)
        self.fatal: BaseException | None = None
        self._on_fatal = on_fatal
        self._log = log or logging.getLogger(__name__)
        self._guard = guard
        self._poller = zmq.Poller()
        # a reader is keyed by its socket, or by the socket's fd when watched by fd
        self._readers: dict[zmq.Socket[bytes] | int, Callback] = {}
        self._keys: dict[zmq.Socket[bytes], zmq.Socket[bytes] | int] = {}
        # served in this order; replaced, never mutated, so a round can go on over the old one
        self._order: tuple[zmq.Socket[bytes] | int, ...] = ()
        self._posted: queue.SimpleQueue[Callback] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._on_exit: list[Callback] = []
        self._stopping = False
        self._closed = False
        # guards _closed and the pipe, so no thread writes to a closed fd
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread after the work already posted, and wait for it (any thread)."""
        if not self._thread.is_alive():
            self._close_pipe()
            return
        try:
            self.post(self.request_stop)
        except EndpointClosed:
            pass  # stopping already
        if not self.in_loop_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self._name} did not stop within {timeout} s")

    @property
    def running(self) -> bool:
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

    def add_reader(self, sock: zmq.Socket[bytes], callback: Callback, *,
                   by_fd: bool = False) -> None:
        """Call ``callback`` when ``sock`` is readable; readers are served in the order added.

        ``by_fd``: watch the socket's file descriptor instead, for a socket other
        threads also use. It signals that something *may* be queued: ``callback``
        must then read (or ask ``EVENTS``) until nothing is, as every reader here does.
        """
        key: zmq.Socket[bytes] | int = int(sock.FD) if by_fd else sock
        if sock not in self._keys:
            self._order = (*self._order, key)
        self._keys[sock] = key
        self._readers[key] = callback
        self._poller.register(key, zmq.POLLIN)

    def remove_reader(self, sock: zmq.Socket[bytes]) -> None:
        key = self._keys.pop(sock, None)
        if key is not None and self._readers.pop(key, None) is not None:
            self._order = tuple(k for k in self._order if k is not key)
            self._poller.unregister(key)

    # -- handing work over (any thread) ---------------------------------------

    def post(self, callback: Callback) -> None:
        """Run ``callback`` on the loop thread soon; EndpointClosed once it has stopped."""
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

    def call_sync(self, fn: Callable[[], T], timeout: float | None = 10.0) -> T:
        """Run ``fn`` on the loop thread and return its result, raising what it raised.

        Before the thread has started nothing else touches the state, so ``fn``
        runs on the caller's thread; once it has stopped, EndpointClosed.
        """
        if self.in_loop_thread() or self._thread.ident is None:
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
        return self.call_at(time.monotonic() + check_delay(delay), callback)

    def call_at(self, when: float, callback: Callback) -> Timer:
        """Run ``callback`` on the loop thread at monotonic time ``when``."""
        timer = Timer(when, callback)
        if self.in_loop_thread():
            self._push_timer(timer)
        else:
            self.post(lambda: self._push_timer(timer))
        return timer

    # -- the thread ----------------------------------------------------------

    def _push_timer(self, timer: Timer) -> None:
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))

    def _run(self) -> None:
        try:
            self._rounds()
        except BaseException as e:
            # The loop itself failed (not a callback): its owner is told, since every
            # socket dies with the thread (a kernel's command exits non-zero on it).
            self.fatal = e
            self._log.critical("%s: the I/O loop failed and ends: %r", self._name, e,
                               exc_info=e)
            if self._on_fatal is not None:
                try:
                    self._on_fatal(e)
                except Exception:
                    self._log.exception("%s: on_fatal failed", self._name)

    def _rounds(self) -> None:
        try:
            while not self._stopping:
                ready = dict(self._poller.poll(self._timeout_ms()))
                if self._wake_r in ready:
                    self._run_posted()
                for key in self._order:
                    if key in ready:
                        # looked up now: an earlier callback may have removed it
                        callback = self._readers.get(key)
                        if callback is not None:
                            self._guarded(callback)
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
        if not self._timers:
            return None
        # rounded up: waking a hair early would only poll again for nothing; capped, so
        # a far deadline cannot overflow the poll's timeout
        delay = self._timers[0][0] - time.monotonic()
        if not delay < MAX_POLL_MS / 1000:  # also NaN
            return MAX_POLL_MS
        return max(0, int(delay * 1000) + 1)

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
        except OSError:
            pass  # drained (BlockingIOError), or the pipe is already closed
        while True:
            try:
                callback = self._posted.get_nowait()
            except queue.Empty:
                return
            self._guarded(callback)

    def _guarded(self, callback: Callback) -> None:
        # One faulty callback must not take the thread, and every socket, down.
        try:
            if self._guard is None:
                callback()
            else:
                with self._guard:
                    callback()
        except Exception:
            self.failures += 1
            self._log.exception("%s: %r failed", self._name, callback)

    def _close_pipe(self) -> None:
        with self._lock:
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
