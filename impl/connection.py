"""Connection files: where a kernel listens and the key its messages are signed with.

Rules:
- A new connection gets a fresh random key; an empty key (no signing) is
  refused unless ``insecure=True`` is asked for by name.
- Files are written with mode 0600 (the key is a secret), atomically.
- Ports default to free ports on 127.0.0.1; a port of 0 means "any free port,
  chosen at bind time" (the kernel then rewrites the file with the real ports).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .errors import InsecureConnection

__all__ = [
    "CHANNELS",
    "ConnectionInfo",
    "free_ports",
    "new_connection_info",
    "read_connection_file",
    "write_connection_file",
]

#: the five channels, in the order of their ``<name>_port`` keys
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
SIGNATURE_SCHEME = "hmac-sha256"


@dataclass(frozen=True)
class ConnectionInfo:
    shell_port: int
    iopub_port: int
    stdin_port: int
    control_port: int
    hb_port: int
    key: str
    ip: str = "127.0.0.1"
    transport: str = "tcp"
    signature_scheme: str = SIGNATURE_SCHEME
    kernel_name: str = "commspec"

    def port(self, channel: str) -> int:
        value: int = getattr(self, f"{channel}_port")
        return value

    def url(self, channel: str) -> str:
        return f"{self.transport}://{self.ip}:{self.port(channel)}"

    def with_ports(self, ports: dict[str, int]) -> ConnectionInfo:
        """A copy with the given channels' ports replaced (others kept)."""
        chosen = {c: ports.get(c, self.port(c)) for c in CHANNELS}
        return replace(
            self,
            shell_port=chosen["shell"],
            iopub_port=chosen["iopub"],
            stdin_port=chosen["stdin"],
            control_port=chosen["control"],
            hb_port=chosen["hb"],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, insecure: bool = False) -> ConnectionInfo:
        try:
            key = data.get("key", "")
            info = cls(
                **{f"{c}_port": int(data[f"{c}_port"]) for c in CHANNELS},
                key=key.decode() if isinstance(key, bytes) else str(key),
                ip=str(data.get("ip", "127.0.0.1")),
                transport=str(data.get("transport", "tcp")),
                signature_scheme=str(data.get("signature_scheme", SIGNATURE_SCHEME)),
                kernel_name=str(data.get("kernel_name", "commspec")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid connection description: {e}") from e
        if info.transport != "tcp":
            raise ValueError(f"only tcp transport is supported, not {info.transport!r}")
        _check_key(info.key, insecure)
        return info


def _check_key(key: str, insecure: bool) -> None:
    if not key and not insecure:
        raise InsecureConnection(
            "the connection has an empty key, so messages would not be signed; "
            "pass insecure=True (--insecure) if that is really wanted"
        )


def free_ports(count: int, ip: str = "127.0.0.1") -> list[int]:
    """Ports the OS just handed out on ``ip`` (held together while chosen, so distinct).

    Another process may take one before it is bound again; a kernel that can
    bind ``*`` ports itself (port 0 in its ConnectionInfo) avoids that race.
    """
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((ip, 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def new_connection_info(
    *, ip: str = "127.0.0.1", ports: dict[str, int] | None = None, insecure: bool = False
) -> ConnectionInfo:
    """A fresh connection: a random key (none if ``insecure``), free ports unless given."""
    chosen = dict(zip(CHANNELS, free_ports(len(CHANNELS), ip), strict=True))
    chosen.update(ports or {})
    key = "" if insecure else secrets.token_hex(32)
    return ConnectionInfo(
        shell_port=chosen["shell"],
        iopub_port=chosen["iopub"],
        stdin_port=chosen["stdin"],
        control_port=chosen["control"],
        hb_port=chosen["hb"],
        key=key,
        ip=ip,
    )


def write_connection_file(path: str | os.PathLike[str], info: ConnectionInfo) -> Path:
    """Write ``info`` as JSON, mode 0600, replacing any file atomically."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".commspec-", suffix=".json", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info.to_dict(), f, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_connection_file(
    path: str | os.PathLike[str], *, insecure: bool = False
) -> ConnectionInfo:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a connection file holds a JSON object")
    return ConnectionInfo.from_dict(data, insecure=insecure)
