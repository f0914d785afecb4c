"""The frontend's sockets to one kernel, as jupyter_client clients make them.

shell, control and stdin are DEALERs whose identity is the session id (the
kernel addresses stdin requests to it, and ROUTER_HANDOVER lets a reconnect
take it over); iopub is a SUB subscribed to everything *and* to the per-peer
presence topic ``commspec.peer/<session id>/<tag>``: libzmq reports that topic's
unsubscribe when this socket goes away, which tells the kernel which frontend
left. Monitors on shell and iopub turn a dropped TCP connection into an input.

The DEALERs have no send limit (``SNDHWM`` 0): what the kernel has not read yet
waits in libzmq's queue, however many requests a caller fires at once. At libzmq's
default (1,000 messages) the rest failed at once as undeliverable although the
kernel was alive and would read them. A kernel that stops reading for good is lost
by the heartbeat, and the link's queue goes with its sockets.
"""

from __future__ import annotations

import uuid

import zmq
from zmq.utils.monitor import recv_monitor_message

from commspec.impl.connection import ConnectionInfo
from commspec.impl.core.presence import peer_topic
from commspec.impl.frames import readable

#: the monitor events that mean "this link is down"
LINK_DOWN_EVENTS = zmq.EVENT_DISCONNECTED
#: no limit on what waits to be sent (libzmq's 0)
UNLIMITED = 0


class Channels:
    """One generation of sockets; a reconnect closes them and opens a new set."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        connection: ConnectionInfo,
        session_id: str,
        *,
        presence: bool = True,
    ) -> None:
        identity = session_id.encode()
        self._sockets: list[zmq.Socket[bytes]] = []

        def dealer(channel: str) -> zmq.Socket[bytes]:
            sock = self._track(context.socket(zmq.DEALER))
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.SNDHWM, UNLIMITED)
            sock.connect(connection.url(channel))
            return sock

        try:
            self.shell = dealer("shell")
            self.control = dealer("control")
            self.stdin = dealer("stdin")
            self.iopub = self._track(context.socket(zmq.SUB))
            # Subscribe before connecting, so the kernel's first view of us already
            # carries both topics.
            self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
            if presence:
                self.iopub.setsockopt(zmq.SUBSCRIBE, peer_topic(session_id, connection.key))
            self.iopub.connect(connection.url("iopub"))
            # A name of our own for each monitor: pyzmq's default names it after the
            # socket's file descriptor, which the next link's socket may reuse while
            # libzmq has not yet released the old monitor (EADDRINUSE on reconnect).
            self.monitors = [
                self._track(s.get_monitor_socket(
                    LINK_DOWN_EVENTS, addr=f"inproc://commspec-monitor-{uuid.uuid4().hex}"
                ))
                for s in (self.shell, self.iopub)
            ]
        except BaseException:
            self.close()
            raise

    def by_name(self) -> dict[str, zmq.Socket[bytes]]:
        return {
            "iopub": self.iopub,
            "shell": self.shell,
            "control": self.control,
            "stdin": self.stdin,
        }

    def _track(self, sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        sock.linger = 0
        self._sockets.append(sock)
        return sock

    @staticmethod
    def link_down(monitor: zmq.Socket[bytes]) -> bool:
        """Read every queued monitor event; true if one says the link dropped."""
        down = False
        while readable(monitor):
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
            down = down or bool(event["event"] & LINK_DOWN_EVENTS)
        return down

    def close_iopub(self) -> None:
        """The IOPub socket and its monitor only (a test hook's half-close)."""
        _stop_monitor(self.iopub)
        self.iopub.close(linger=0)
        self.monitors[1].close(linger=0)

    def close(self) -> None:
        # Monitors stop first, and at once. libzmq's I/O thread sends each monitor event
        # with a blocking send; closing a socket stops its monitor only when libzmq
        # destroys the socket, later. An event sent in between to a PAIR we had closed
        # hung that thread, and with it every socket of the context, for good (a
        # frontend resumed after SIGSTOP then never reconnected: found by the
        # model-based tests' freeze rule).
        for name in ("iopub", "shell"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                _stop_monitor(sock)
        # The IOPub SUB next: its going is what the kernel's XPUB sees (the unsubscribe
        # of our presence topic), so the kernel learns of a clean close soonest.
        iopub = getattr(self, "iopub", None)
        if iopub is not None and not iopub.closed:
            iopub.close(linger=0)
        for sock in getattr(self, "monitors", ()):
            sock.close(linger=0)
        for sock in self._sockets:
            if not sock.closed:
                sock.close(linger=0)
        self._sockets.clear()


def _stop_monitor(sock: zmq.Socket[bytes]) -> None:
    try:
        sock.disable_monitor()
    except zmq.ZMQError:
        pass  # never monitored
