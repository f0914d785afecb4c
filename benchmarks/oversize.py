"""One oversize unsigned frame at the kernel's shell (issue 10, point 4): what it costs.

A ``commspec kernel`` process (its default limit, 64 MiB) and one DEALER of our own,
with a socket monitor. The DEALER sends one message whose last frame is larger than
the limit and whose signature is wrong, then asks kernel_info on the same DEALER
(asking again each second until answered): ZeroMQ keeps one connection's messages in
order, so the answer comes once the kernel is through with the big one. Measured: the
kernel process's peak resident memory (``VmHWM``) before and after, whether the
kernel's libzmq cut the connection (the monitor's disconnect; the DEALER connects again
by itself and the question goes on the new connection), and how long until the kernel
answered again.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq

from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.frames import recv_monitor_events
from commspec.impl.wire import DELIMITER, Wire

from .common import Child, now

#: the frame's size: four times the kernel's default limit; just past it for --quick
FRAME_MIB, QUICK_FRAME_MIB = 256, 65
#: the bound on every wait
WAIT = 60.0
#: how often kernel_info is asked again while unanswered
ASK_EVERY = 1.0


@dataclass(frozen=True)
class OversizeCost:
    frame_mib: int
    #: the kernel process's VmHWM, KiB
    peak_before_kib: int
    peak_after_kib: int
    connection_cut: bool
    #: from the frame's send to the kernel's next answer
    seconds: float

    @property
    def growth_mib(self) -> float:
        return (self.peak_after_kib - self.peak_before_kib) / 1024


def peak_rss_kib(pid: int) -> int:
    """A process's peak resident memory so far (``VmHWM``), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


class ShellProbe:
    """A DEALER on the kernel's shell, signing with the key, its disconnects monitored."""

    def __init__(self, info: ConnectionInfo) -> None:
        self._wire = Wire(info.key.encode(), signature_scheme=info.signature_scheme)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.shell = self._context.socket(zmq.DEALER)
        self.shell.linger = 0
        self._monitor = self.shell.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.shell.connect(info.url("shell"))

    def kernel_answers(self) -> None:
        """Ask kernel_info (again each ``ASK_EVERY`` s) until one of these questions is
        answered (replies to earlier ones are skipped); TimeoutError after ``WAIT``."""
        asked: set[str] = set()
        deadline = now() + WAIT
        while now() < deadline:
            request = self._wire.message("kernel_info_request", {})
            asked.add(request["msg_id"])
            self._wire.send(self.shell, request)
            ask_again = now() + ASK_EVERY
            while (left := ask_again - now()) > 0 and self.shell.poll(int(left * 1000) + 1):
                received = self._wire.recv(self.shell, "shell")
                if received is not None and \
                        received.msg["parent_header"].get("msg_id") in asked:
                    return
        raise TimeoutError(f"the kernel did not answer kernel_info within {WAIT} s")

    def was_cut(self) -> bool:
        """Whether the connection was cut since the last look (a monitor disconnect)."""
        return any(event == zmq.EVENT_DISCONNECTED
                   for event, _ in recv_monitor_events(self._monitor))

    def close(self) -> None:
        self.shell.disable_monitor()
        self._monitor.close(linger=0)
        self.shell.close(linger=0)
        self._context.term()


def unsigned_message(frame_mib: int) -> list[bytes]:
    """A message with a wrong signature whose last frame is ``frame_mib`` MiB."""
    return [DELIMITER, b"not-a-signature", b"{}", b"{}", b"{}", b"x" * (frame_mib << 20)]


def measure(frame_mib: int = FRAME_MIB) -> OversizeCost:
    with tempfile.TemporaryDirectory(prefix="commspec-oversize-") as folder:
        connection_file = Path(folder) / "kernel.json"
        kernel = Child.start("-m", "commspec", "kernel", "--connection-file",
                             str(connection_file))
        try:
            kernel.read_line(WAIT)  # the connection file's path, once listening
            probe = ShellProbe(read_connection_file(connection_file))
            try:
                probe.kernel_answers()
                before = peak_rss_kib(kernel.pid)
                frames = unsigned_message(frame_mib)
                start = now()
                probe.shell.send_multipart(frames, copy=False)
                del frames  # ours to free: only the kernel's memory is measured
                probe.kernel_answers()
                seconds = now() - start
                return OversizeCost(frame_mib, before, peak_rss_kib(kernel.pid),
                                    probe.was_cut(), seconds)
            finally:
                probe.close()
        finally:
            kernel.end()
