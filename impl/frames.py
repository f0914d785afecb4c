"""Moving whole messages through a ZeroMQ socket, without blocking and cheaply.

On the hot path of an RPC (four messages of seven frames each) pyzmq's
conveniences show: ``send_multipart`` / ``recv_multipart`` build an
``enum.Flag`` for every frame, ``Socket.send`` is a Python wrapper around the
Cython one, asking ``RCVMORE`` after each frame is a ``getsockopt`` call, and a
receive with nothing queued raises ``zmq.Again``. These call pyzmq's Cython
methods with plain int flags, read "more" from each received frame, and ask the
socket whether a message is queued instead of provoking the exception
(measured: a 7-frame receive 4.5 us instead of 7.5, a 7-frame send 1.8 us
instead of 3.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq
from zmq.backend import Socket as _CythonSocket

__all__ = ["readable", "recv_frames", "recv_subscription", "send_frames", "sent_by_peer"]

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_get = _CythonSocket.get
_recv = _CythonSocket.recv
_send = _CythonSocket.send


def readable(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message is queued on ``sock`` now."""
    return bool(int(_get(sock, _EVENTS)) & _POLLIN)


def recv_frames(sock: zmq.Socket[bytes]) -> list[bytes] | None:
    """The next whole message on ``sock``, or None if none is queued."""
    if not int(_get(sock, _EVENTS)) & _POLLIN:
        return None
    frame = _recv(sock, _NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = _recv(sock, _NOBLOCK, copy=False)
        frames.append(frame.bytes)
    return frames


def recv_subscription(sock: zmq.Socket[bytes]) -> list[zmq.Frame] | None:
    """Like :func:`recv_frames`, as frames: an XPUB's frames carry metadata."""
    if not int(_get(sock, _EVENTS)) & _POLLIN:
        return None
    frame = _recv(sock, _NOBLOCK, copy=False)
    frames = [frame]
    while frame.more:
        frame = _recv(sock, _NOBLOCK, copy=False)
        frames.append(frame)
    return frames


def sent_by_peer(frame: zmq.Frame) -> bool:
    """Whether a peer sent ``frame``: what a connection delivers carries its ZMTP
    metadata (``Socket-Type`` on every transport); what libzmq makes up itself, such
    as an XPUB's unsubscribe when a connection ends, carries none."""
    try:
        frame.get("Socket-Type")
    except zmq.ZMQError:
        return False
    return True


def send_frames(sock: zmq.Socket[bytes], *parts: Sequence[bytes]) -> None:
    """Send the frames of ``parts`` in order as one message; zmq.Again (nothing sent)
    if the socket's queue is full: once the first frame is queued, the rest is."""
    last: bytes | None = None
    for part in parts:
        for frame in part:
            if last is not None:
                _send(sock, last, _SNDMORE)
            last = frame
    if last is not None:
        _send(sock, last, _NOBLOCK)
