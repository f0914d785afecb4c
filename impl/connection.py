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

from commspec.model.errors import CommspecError

from .errors import InsecureConnection

__all__ = [
    "CHANNELS",
    "ConnectionFileError",
    "ConnectionInfo",
    "free_ports",
    "new_connection_info",
    "read_connection_file",
    "write_connection_file",
]

class ConnectionFileError(CommspecError, ValueError):
    """A connection file that cannot be read or written. Names the file the user gave
    (``path``) and says what is wrong with it (``problem``)."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"connection file {self.path}: {problem}")


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
        """Refuses (ValueError saying what is wrong) missing ports, ports that are not
        port numbers, a key that is not a string, and any transport but tcp."""
        missing = [f"{c}_port" for c in CHANNELS if f"{c}_port" not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        key = data.get("key", "")
        if isinstance(key, bytes):  # jupyter_client's own dicts hold it as bytes
            key = key.decode()
        if not isinstance(key, str):
            raise ValueError(f"key must be a string, not {key!r}")
        info = cls(
            **{f"{c}_port": _port(data, f"{c}_port") for c in CHANNELS},
            key=key,
            ip=str(data.get("ip", "127.0.0.1")),
            transport=str(data.get("transport", "tcp")),
            signature_scheme=str(data.get("signature_scheme", SIGNATURE_SCHEME)),
            kernel_name=str(data.get("kernel_name", "commspec")),
        )
        if info.transport != "tcp":
            raise ValueError(f"only tcp transport is supported, not {info.transport!r}")
        _check_key(info.key, insecure)
        return info


def _port(data: dict[str, Any], name: str) -> int:
    value = data[name]
    # bool is an int to Python, not a port to anyone; 0 means "choose one at bind"
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a port number (an integer 0-65535), not {value!r}")
    return value


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
    """Write ``info`` as JSON, mode 0600, replacing any file atomically.

    Raises ConnectionFileError naming ``path`` (never the temporary file beside it)."""
    target = Path(path)
    if target.is_dir():
        raise ConnectionFileError(target, "is a folder, not a file")
    if not target.parent.is_dir():
        raise ConnectionFileError(target, f"its folder {target.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".commspec-", suffix=".json", dir=target.parent)
    except OSError as e:
        raise ConnectionFileError(target, f"cannot be written ({e.strerror})") from e
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info.to_dict(), f, indent=2)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ConnectionFileError(target, f"cannot be written ({e.strerror})") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_connection_file(
    path: str | os.PathLike[str], *, insecure: bool = False
) -> ConnectionInfo:
    """The connection ``path`` describes. Raises ConnectionFileError (a ValueError) naming
    ``path`` and what is wrong, or InsecureConnection naming it for an empty key."""
    source = Path(path)
    data = _load_json(source)
    if not isinstance(data, dict):
        raise ConnectionFileError(source, f"holds a JSON {_json_kind(data)}, not an object")
    try:
        return ConnectionInfo.from_dict(data, insecure=insecure)
    except InsecureConnection as e:
        raise InsecureConnection(f"connection file {source}: {e}") from None
    except ValueError as e:
        raise ConnectionFileError(source, str(e)) from None


def _load_json(source: Path) -> Any:
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectionFileError(source, "no such file") from None
    except IsADirectoryError:
        raise ConnectionFileError(source, "is a folder, not a file") from None
    except UnicodeDecodeError:
        raise ConnectionFileError(source, "not UTF-8 text, so not JSON") from None
    except OSError as e:
        raise ConnectionFileError(source, f"cannot be read ({e.strerror})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConnectionFileError(
            source, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise ConnectionFileError(source, "not valid JSON (nested too deeply)") from None


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")
