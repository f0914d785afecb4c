"""The options ipykernel's sockets need before they are bound (SPEC.md, "Sockets").

ipykernel creates and binds its sockets itself (``IPKernelApp.init_sockets``);
every bind goes through ``IPKernelApp._bind_socket``, so that is where the options
are set, on each socket just before its bind, as libzmq needs them (it reads the
heartbeat options when a connection is made):

- shell, control, stdin (ROUTER): ``ROUTER_MANDATORY``, so a send to a departed
  identity raises EHOSTUNREACH instead of vanishing (an ``input()`` addressed to a
  killed frontend ends at once), and no send limit;
- iopub (XPUB): ``XPUB_VERBOSE``, so every subscribe reaches the kernel (each is
  welcomed), and no send limit (an XPUB at its limit drops silently);
- all four: ZMTP heartbeats (a frozen frontend or a half-open link ends in a
  disconnect, so in an unsubscribe) and the message size limit, as the reference
  kernel's (``commspec.impl.kernel.sockets``), whose settings these are.

The heartbeat channel (``hb``) is ipykernel's own echo thread, left as it is.
"""

from __future__ import annotations

import zmq

from commspec.impl.kernel.sockets import UNLIMITED, HeartbeatSettings

__all__ = ["SocketOptions"]


class SocketOptions:
    """Applies the spec's options to one of ipykernel's sockets before its bind."""

    def __init__(self, heartbeat: HeartbeatSettings, max_message_bytes: int) -> None:
        self.heartbeat = heartbeat
        self.max_message_bytes = max_message_bytes

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        kind = sock.getsockopt(zmq.TYPE)
        if kind not in (zmq.ROUTER, zmq.XPUB):
            return  # ipykernel's debugpy STREAM and the like: not a Jupyter channel
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        else:
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        sock.setsockopt(zmq.SNDHWM, UNLIMITED)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        self.heartbeat.apply(sock)
