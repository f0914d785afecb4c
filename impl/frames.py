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

import struct
from collections.abc import Sequence

import zmq
from zmq.backend import Socket as _CythonSocket

__all__ = [
    "monitor_event",
    "readable",
    "recv_frames",
    "recv_frames_fd",
    "recv_monitor_events",
    "recv_subscription",
    "send_frames",
    "sent_by_peer",
]

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_SRCFD = int(zmq.SRCFD)
_SNDMORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_MONITOR_EVENT = struct.Struct("=HI")
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


def recv_frames_fd(sock: zmq.Socket[bytes]) -> tuple[list[bytes], int | None] | None:
    """Like :func:`recv_frames`, with the fd of the connection the message came by
    (``ZMQ_SRCFD``, what the socket monitor reports for that connection too)."""
    if not int(_get(sock, _EVENTS)) & _POLLIN:
        return None
    frame = _recv(sock, _NOBLOCK, copy=False)
    try:
        fd: int | None = int(frame.get(_SRCFD))
    except zmq.ZMQError:
        fd = None
    if fd is not None and fd < 0:
        fd = None
    frames = [frame.bytes]
    while frame.more:
        frame = _recv(sock, _NOBLOCK, copy=False)
        frames.append(frame.bytes)
    return frames, fd


def recv_monitor_events(sock: zmq.Socket[bytes]) -> list[tuple[int, int]]:
    """Every event queued on a socket monitor, as ``(event, value)``: for
    ``EVENT_ACCEPTED`` and ``EVENT_DISCONNECTED`` the value is the connection's fd.
    (The first frame is a 16-bit event number and a 32-bit value, native order; the
    second, the endpoint, is not needed.)"""
    out: list[tuple[int, int]] = []
    while int(_get(sock, _EVENTS)) & _POLLIN:
        frame = _recv(sock, _NOBLOCK, copy=False)
        first = frame.bytes
        while frame.more:
            frame = _recv(sock, _NOBLOCK, copy=False)
        event = monitor_event(first)
        if event is not None:
            out.append(event)
    return out


def monitor_event(first: bytes) -> tuple[int, int] | None:
    """``(event, value)`` from a socket monitor message's first frame, if it is one."""
    if len(first) < _MONITOR_EVENT.size:
        return None
    event, value = _MONITOR_EVENT.unpack_from(first)
    return int(event), int(value)


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
