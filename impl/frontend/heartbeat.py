"""The heartbeat channel as an input source: "the kernel stopped echoing".

The kernel's heartbeat socket echoes every frame. We ping on a REQ socket and
call the kernel lost when a ping goes unanswered for ``timeout`` seconds. A REQ
that sent and got no reply cannot send again, so on a timeout the socket is
closed (linger 0) and a fresh one connected: the lazy-pirate pattern. Pinging
goes on after a loss, so the owner also hears when the kernel echoes again.

The heartbeat only reports edges (alive -> lost, lost -> alive); what a loss
means is for the session machine to decide.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq

from commspec.impl.frames import readable
from commspec.impl.loop import IoLoop, Timer


class Heartbeat:
    def __init__(
        self,
        loop: IoLoop,
        context: zmq.Context[zmq.Socket[bytes]],
        address: str,
        *,
        interval: float,
        timeout: float,
        on_lost: Callable[[], None],
        on_back: Callable[[], None] | None = None,
    ) -> None:
        if timeout <= 0 or interval <= 0:
            raise ValueError("heartbeat interval and timeout must be positive")
        self._loop = loop
        self._context = context
        self._address = address
        self._interval = interval
        self._timeout = timeout
        self._on_lost = on_lost
        self._on_back = on_back
        self._socket: zmq.Socket[bytes] | None = None
        self._timer: Timer | None = None
        self._sent: bytes | None = None
        self._seq = 0
        self.alive = True
        self.lost_count = 0

    def start(self) -> None:
        self._open_socket()
        self._ping()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_socket()

    # -- internals (loop thread) -------------------------------------------------

    def _open_socket(self) -> None:
        sock = self._context.socket(zmq.REQ)
        sock.linger = 0
        sock.connect(self._address)
        self._loop.add_reader(sock, self._on_readable)
        self._socket = sock

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._loop.remove_reader(self._socket)
            self._socket.close(linger=0)
            self._socket = None
        self._sent = None

    def _ping(self) -> None:
        assert self._socket is not None
        self._seq += 1
        self._sent = b"commspec-ping %d" % self._seq
        self._socket.send(self._sent)
        self._schedule(self._timeout, self._on_timeout)

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _on_readable(self) -> None:
        sock = self._socket
        if sock is None:
            return
        while readable(sock):
            frames = sock.recv_multipart(zmq.NOBLOCK)
            if self._sent is None or frames != [self._sent]:
                continue  # an echo of an older ping; cannot happen with REQ, but harmless
            self._sent = None
            if not self.alive:
                self.alive = True
                if self._on_back is not None:
                    self._on_back()
                if self._socket is not sock:
                    return  # on_back stopped us
            self._schedule(self._interval, self._ping)
            return

    def _on_timeout(self) -> None:
        self._timer = None
        # Lazy pirate: a REQ waiting for a reply that never comes is stuck; replace it.
        self._close_socket()
        self._open_socket()
        if self.alive:
            self.alive = False
            self.lost_count += 1
            self._on_lost()
        if self._socket is not None:  # on_lost may have stopped us
            self._ping()
