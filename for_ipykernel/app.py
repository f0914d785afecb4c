"""``IPKernelApp`` with the spec's sockets and an IOPub thread that reports presence.

- Every socket ipykernel binds gets the spec's options first (``sockets.py``).
- The IOPub thread is ipykernel's, with one change: the XPUB's subscription frames
  are read with their metadata (``copy=False``: what tells libzmq's own unsubscribes
  from a peer's) and handed to the kernel's protocol core. Each subscribe is welcomed
  there and then (ipykernel's welcome message, the core's rule for which topic), so the
  welcome comes before anything published after the subscriber joined. Frames that
  arrive before the kernel exists are kept and handed over when it attaches, so a
  frontend that connected while the kernel was starting is not missed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import zmq
from ipykernel.iostream import IOPubThread
from ipykernel.kernelapp import IPKernelApp
from traitlets import Float, Integer, Type

from commspec.impl.core.kernel import welcome_subscription
from commspec.impl.kernel.sockets import (
    MONITORED_EVENTS,
    HeartbeatSettings,
    check_max_message_bytes,
)
from commspec.impl.wire import DEFAULT_MAX_MESSAGE_BYTES

from .kernel import CommspecIPythonKernel
from .sockets import SocketOptions

__all__ = ["CommspecKernelApp", "PresenceIOPubThread", "main"]

#: how long attaching waits for the IOPub thread to take the kernel's handler
ATTACH_TIMEOUT = 10.0
#: how long a shell message waits for the IOPub thread to read the XPUB first
READ_NOW_TIMEOUT = 1.0

Frames = list[zmq.Frame]


class PresenceIOPubThread(IOPubThread):
    """ipykernel's IOPub thread, whose subscription frames go to the protocol core."""

    def _setup_xpub_listener(self) -> None:
        super()._setup_xpub_listener()
        self._presence: Callable[[Frames], None] | None = None
        self._early: list[Frames] = []
        stream = getattr(self, "_xpub_stream", None)
        if stream is None:
            raise RuntimeError("ipykernel's IOPub thread has no XPUB stream "
                               "(IOPubThread._xpub_stream): this ipykernel is not supported")
        stream.on_recv(self._on_subscription, copy=False)

    def _on_subscription(self, frames: Frames) -> None:
        # The welcome goes out here, at once, as stock ipykernel's does: libzmq sends this
        # subscriber whatever is published from now on, and the welcome must come first.
        # The rule is the core's (which topic, and whether any); the core then only
        # records the subscriber (the bridge drops the welcome it would send).
        for frame in frames:
            data = frame.bytes
            if data[:1] == b"\x01":
                subscription = welcome_subscription(data[1:])
                if subscription is not None:
                    self._send_welcome_message(subscription)  # a raw send, as above
        if self._presence is None:
            self._early.append(frames)
        else:
            self._presence(frames)

    def _really_send(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        # ipykernel sends output straight on the XPUB, outside the stream that reads its
        # subscriptions; libzmq signals the socket's fd once per change, so a send can
        # take the signal of a subscription that just arrived, and the stream then never
        # wakes for it (measured: 6 of 100 frontends never counted while another client
        # kept IOPub busy). What is queued after a send is read then.
        super()._really_send(msg, *args, **kwargs)
        self._read_if_queued()

    def _read_if_queued(self) -> None:
        sock = self.socket
        if sock is None or sock.closed or not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return
        if threading.current_thread() is self.thread:
            self._read_queued()
        else:
            self.io_loop.add_callback(self._read_queued)

    def _read_queued(self) -> None:
        """Every subscription frame queued now (the IOPub thread)."""
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._on_subscription(frames)

    def read_now(self, timeout: float = READ_NOW_TIMEOUT) -> None:
        """Hand over every subscription frame the XPUB has queued, and return once done
        (another thread): what a frontend subscribed before its shell message counts
        before that message, as the spec's kernel reads IOPub before each."""
        done = threading.Event()

        def read() -> None:
            try:
                self._read_queued()
            finally:
                done.set()

        self.io_loop.add_callback(read)
        done.wait(timeout)

    def attach_presence(self, handler: Callable[[Frames], None]) -> None:
        """From now on, ``handler`` gets each subscription message (on the IOPub thread),
        the ones that came before first."""
        attached = threading.Event()

        def attach() -> None:
            self._presence = handler
            early, self._early = self._early, []
            for frames in early:
                handler(frames)
            attached.set()

        self.io_loop.add_callback(attach)
        if not attached.wait(ATTACH_TIMEOUT):
            raise RuntimeError("the IOPub thread did not take the presence handler")


class CommspecKernelApp(IPKernelApp):
    """``python -m commspec.ipykernel -f CONNECTION_FILE``: an IPython kernel that
    keeps commspec's spec."""

    name = "ipython-kernel"  # ipykernel's: its config file and profile are the user's
    kernel_class = Type(  # type: ignore[assignment]  # a trait, as IPKernelApp's own
        CommspecIPythonKernel, klass="ipykernel.kernelbase.Kernel",
        help="The kernel class (a subclass of CommspecIPythonKernel)").tag(config=True)
    heartbeat_interval = Float(1.0, help="ZMTP heartbeat interval on shell, control, "
                               "stdin and iopub, in seconds").tag(config=True)
    heartbeat_timeout = Float(10.0, help="A peer silent this long (seconds) is "
                              "disconnected: its departure is seen").tag(config=True)
    max_message_bytes = Integer(DEFAULT_MAX_MESSAGE_BYTES, help="The largest message a "
                                "peer may send; a larger frame ends its connection"
                                ).tag(config=True)

    #: the shell and stdin ROUTERs' socket monitors (per-connection departure)
    shell_monitor: zmq.Socket[Any] | None = None
    stdin_monitor: zmq.Socket[Any] | None = None

    def _bind_socket(self, s: zmq.Socket[Any], port: int) -> Any:
        SocketOptions(HeartbeatSettings(self.heartbeat_interval, self.heartbeat_timeout),
                      check_max_message_bytes(self.max_message_bytes)).apply(s)
        # monitors before bind, so every connection's accept is seen
        if s is getattr(self, "shell_socket", None) and self.shell_monitor is None:
            self.shell_monitor = s.get_monitor_socket(MONITORED_EVENTS)
        elif s is getattr(self, "stdin_socket", None) and self.stdin_monitor is None:
            self.stdin_monitor = s.get_monitor_socket(MONITORED_EVENTS)
        return super()._bind_socket(s, port)

    def init_signal(self) -> None:
        # ipykernel ignores SIGINT between cells (and takes it as KeyboardInterrupt in
        # one). An interrupt between cells still ends the kernel's pending stdin
        # requests (a comm target's, the control socket's): SPEC, interrupt.
        signal.signal(signal.SIGINT, self._interrupted_between_cells)

    def _interrupted_between_cells(self, signum: int, frame: Any) -> None:
        kernel = getattr(self, "kernel", None)
        bridge = getattr(kernel, "bridge", None)
        if kernel is not None and bridge is not None:
            # a signal handler may not take the bridge's locks: the loop runs it
            kernel.io_loop.asyncio_loop.call_soon_threadsafe(bridge.interrupt)

    def close(self) -> None:
        # The monitors are ours: closed before ipykernel terminates the context, which
        # waits for every socket (else the process never exits after shutdown_request).
        # The shell channel thread reads the shell monitor: it is stopped first, as
        # ipykernel's close would stop it.
        thread = getattr(self, "shell_channel_thread", None)
        if thread is not None and thread.is_alive():
            thread.stop()
            thread.join()
        for monitor in (self.shell_monitor, self.stdin_monitor):
            if monitor is not None and not monitor.closed:
                monitor.close(linger=0)
        super().close()

    def init_iopub(self, context: zmq.Context[Any]) -> None:
        # ipykernel's own init_iopub, making our IOPub thread: ipykernel names the class
        # in its module, so it is swapped there for this one call (no copy of its code)
        from ipykernel import kernelapp

        stock = kernelapp.IOPubThread  # type: ignore[attr-defined]
        kernelapp.IOPubThread = PresenceIOPubThread  # type: ignore[attr-defined]
        try:
            super().init_iopub(context)
        finally:
            kernelapp.IOPubThread = stock  # type: ignore[attr-defined]


def main() -> None:
    """Launch the kernel (``python -m commspec.ipykernel``)."""
    CommspecKernelApp.launch_instance()
