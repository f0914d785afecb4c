"""Starting the kernel under test the way Jupyter frontends do.

Rules:
- A kernel comes from a kernelspec (``--kernelspec NAME``) or a command line with
  ``{connection_file}`` in it (``--cmd``); the command becomes a kernelspec of its own
  in a temporary folder, so both start through ``jupyter_client.KernelManager``, with
  the connection file and ports it chooses, on 127.0.0.1.
- Every check gets a kernel of its own (a check that kills frontends or sends bad
  input must not decide the next one's fate); it is ready once shell answers a
  kernel_info_request, within ``start_timeout``.
- Stopping always ends the process: a shutdown_request first, then the manager's own
  kill, whatever state the kernel is in.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager

from .client import Client, NoAnswer

__all__ = ["KernelSource", "KernelStartFailed", "RunningKernel", "free_loopback_port",
           "running_kernel"]

CMD_SPEC = "commspec-conform-target"

#: where ports are picked: below Linux's default ephemeral range (32768 up), where
#: jupyter_client's own picks (bind to port 0) come from, so that no connection another
#: socket makes meanwhile takes one before the kernel binds it (seen: "Address already
#: in use" while many frontend processes connected)
PORTS = range(20_000, 32_768)
#: picks tried before giving up (each one verified free by binding it)
PORT_TRIES = 100
#: how often a kernel that has not answered yet is asked kernel_info again, seconds
RESEND_EVERY = 1.0
#: starts tried when the kernel finds a port taken, and how its output says so
START_ATTEMPTS = 3
PORT_TAKEN = "Address already in use"


#: not the module's generator: Hypothesis seeds that one alike in every run, and two
#: runs at once then pick the same ports in the same order (seen in CI)
_PICK = random.SystemRandom()


def free_loopback_port(taken: frozenset[int] = frozenset()) -> int:
    """A TCP port free on 127.0.0.1 now, from ``PORTS``, not one of ``taken``."""
    for _ in range(PORT_TRIES):
        port = _PICK.choice(PORTS)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port on 127.0.0.1 in {PORTS} after {PORT_TRIES} tries")


class KernelStartFailed(RuntimeError):
    """The kernel did not start, or did not answer kernel_info in time."""


class PortTaken(KernelStartFailed):
    """The kernel exited saying a port it was given was taken (EADDRINUSE)."""


@dataclass(frozen=True)
class KernelSource:
    """Where the kernel under test comes from: exactly one of the two."""

    kernelspec: str | None = None
    cmd: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if (self.kernelspec is None) == (self.cmd is None):
            raise ValueError("give a kernelspec name or a command line, not both or neither")
        if self.cmd is not None and "{connection_file}" not in self.cmd:
            raise ValueError(f"the command must contain {{connection_file}}: {self.cmd!r}")

    def describe(self) -> str:
        return f"kernelspec {self.kernelspec}" if self.kernelspec else f"command {self.cmd}"


@dataclass
class RunningKernel:
    manager: KernelManager
    info: dict[str, Any]
    kernel_info: dict[str, Any]

    @property
    def pid(self) -> int | None:
        provisioner = self.manager.provisioner
        process = getattr(provisioner, "process", None)
        pid = getattr(process, "pid", None)
        return pid if isinstance(pid, int) else None

    def alive(self) -> bool:
        return bool(self.manager.is_alive())


def _manager(source: KernelSource, folder: Path) -> KernelManager:
    if source.kernelspec is not None:
        manager = KernelManager(kernel_name=source.kernelspec)
    else:
        assert source.cmd is not None
        spec_dir = folder / "kernels" / CMD_SPEC
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": shlex.split(source.cmd), "display_name": "kernel under test",
            "language": "unknown", "interrupt_mode": "signal"}))
        specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])
        manager = KernelManager(kernel_name=CMD_SPEC, kernel_spec_manager=specs)
    manager.connection_file = str(folder / "kernel.json")
    manager.ip = "127.0.0.1"
    manager.cache_ports = False  # else its provisioner picks ephemeral ports over ours
    ports: set[int] = set()
    for channel in ("shell", "iopub", "stdin", "control", "hb"):
        port = free_loopback_port(frozenset(ports))
        ports.add(port)
        setattr(manager, f"{channel}_port", port)
    manager.shutdown_wait_time = 2.0  # then it is killed: a check must not wait long
    return manager


@contextmanager
def running_kernel(source: KernelSource, start_timeout: float) -> Iterator[RunningKernel]:
    """A fresh kernel for one check; stopped however the check ends. A kernel that
    could not listen on its ports (another process bound one between our pick and its
    bind) is started again on others, at most START_ATTEMPTS times."""
    with tempfile.TemporaryDirectory(prefix="commspec-conform-") as tmp:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                kernel, output = _start(source, Path(tmp) / f"attempt-{attempt}",
                                        start_timeout)
                break
            except PortTaken:
                if attempt == START_ATTEMPTS:
                    raise
        try:
            yield kernel
        finally:
            _stop(kernel.manager)
            output.close()


def _start(source: KernelSource, folder: Path,
           start_timeout: float) -> tuple[RunningKernel, IO[bytes]]:
    folder.mkdir()
    manager = _manager(source, folder)
    # The kernel's own output goes to a file of its own, not into the scorecard.
    output = (folder / "kernel-output.txt").open("wb")
    try:
        manager.start_kernel(env={**os.environ, **dict(source.env)}, stdout=output,
                             stderr=output)
    except NoSuchKernel:
        output.close()
        installed = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise KernelStartFailed(f"no kernelspec named {source.kernelspec!r} "
                                f"(installed: {installed})") from None
    except Exception as e:
        output.close()
        raise KernelStartFailed(f"{source.describe()} did not start: {e}") from e
    try:
        info: dict[str, Any] = dict(manager.get_connection_info())
        with Client(info, name="starter") as client:
            reply = _first_kernel_info(manager, client, source, start_timeout,
                                       Path(output.name))
    except BaseException:
        _stop(manager)
        output.close()
        raise
    return RunningKernel(manager, info, reply["content"]), output


def _first_kernel_info(manager: KernelManager, client: Client, source: KernelSource,
                       timeout: float, output: Path) -> dict[str, Any]:
    """The kernel's first kernel_info_reply; a kernel that exits first is reported as
    soon as it has, with the last of its output, not after the whole timeout.

    The request is sent again every second until one is answered, as jupyter_client's
    own wait_for_ready does: one request sent while the kernel was still binding can
    be lost for good (seen once in CI, a kernel alive and silent for the whole 60 s)."""
    deadline = time.monotonic() + timeout
    asked: list[str] = []
    resend_at = 0.0
    while True:
        now = time.monotonic()
        if now >= resend_at:
            asked.append(client.send("shell", "kernel_info_request", {})["header"]["msg_id"])
            resend_at = now + RESEND_EVERY
        try:
            return client.wait("shell", lambda m: m["parent_header"].get("msg_id") in asked,
                               min(0.2, max(0.0, deadline - time.monotonic())),
                               "kernel_info_reply")
        except NoAnswer:
            pass
        if not manager.is_alive():
            process = getattr(manager.provisioner, "process", None)
            status = process.poll() if process is not None else None
            said = output.read_text(errors="replace").strip().splitlines()[-3:]
            failure = PortTaken if any(PORT_TAKEN in line for line in said) \
                else KernelStartFailed
            raise failure(
                f"{source.describe()} exited with status {status} before answering "
                f"kernel_info" + (f"; its last output: {' / '.join(said)}" if said else ""))
        if time.monotonic() >= deadline:
            raise KernelStartFailed(f"{source.describe()} did not answer kernel_info within "
                                    f"{timeout:g} s")


def _stop(manager: KernelManager) -> None:
    try:
        if manager.is_alive():
            manager.shutdown_kernel(now=False, restart=False)
    except Exception:
        pass
    finally:
        if manager.has_kernel and manager.is_alive():
            manager.shutdown_kernel(now=True)
        manager.cleanup_resources()
