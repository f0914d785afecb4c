"""Kernels for the frontend tests: a stock ipykernel subprocess, started and ended by pid."""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from commspec.impl.connection import free_ports

PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def write_connection_file(path: Path) -> dict[str, object]:
    info: dict[str, object] = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    info.update(
        ip="127.0.0.1",
        transport="tcp",
        key=secrets.token_hex(16),
        signature_scheme="hmac-sha256",
        kernel_name="python3",
    )
    path.write_text(json.dumps(info))
    return info


@dataclass
class KernelProcess:
    connection_file: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """SIGKILL the kernel we started (by its pid) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def start_stock_ipykernel(workdir: Path) -> KernelProcess:
    connection_file = workdir / "kernel.json"
    write_connection_file(connection_file)
    log_path = workdir / "kernel.log"
    env = dict(os.environ)
    # Keep IPython's profile and history out of the user's home, per test.
    env["IPYTHONDIR"] = str(workdir / "ipython")
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-Xfrozen_modules=off",
                "-m",
                "ipykernel_launcher",
                "-f",
                str(connection_file),
                "--HistoryManager.enabled=False",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
    return KernelProcess(connection_file, process, log_path)


def start_commspec_kernel(workdir: Path, *extra_args: str, timeout: float = 20.0) -> KernelProcess:
    """``commspec kernel`` as a subprocess; returns once it printed its connection file."""
    connection_file = workdir / "commspec-kernel.json"
    log_path = workdir / "commspec-kernel.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "commspec",
                "kernel",
                "--connection-file",
                str(connection_file),
                "--trace",
                str(workdir / "commspec-kernel.trace.jsonl"),
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=workdir,
        )
    kernel = KernelProcess(connection_file, process, log_path)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else b""
    if not line.strip():
        kernel.kill()
        raise RuntimeError(
            f"commspec kernel did not start within {timeout} s:\n{kernel.log_tail()}"
        )
    return kernel
