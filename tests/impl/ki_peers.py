"""A small raw frontend for the kernel tests, and stock-client helpers.

``RawFrontend`` speaks the wire protocol directly (pyzmq + jupyter_client's
Session, so signing is Session's): DEALERs whose identity is the session id, a
SUB on IOPub subscribed to everything and, if asked, to the per-peer presence
topic. Tests drive it step by step, so each step of a race is theirs to order.
Every wait is bounded and fails with what was seen instead.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from jupyter_client import BlockingKernelClient
from jupyter_client.session import Session

from commspec.impl.comm import Comm
from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.core.presence import peer_topic
from commspec.impl.kernel import KernelEndpoint
from commspec.impl.tracing import ListSink
from commspec.mbt.processes import FrontendProcess as AgentProcess

Message = dict[str, Any]
WAIT = 5.0
#: the test kernels' own targets (conftest registers them): echo, and note what happens
OBSERVED = "test.observed"
OBSERVED_PERSISTENT = "test.observed.persistent"


class RawFrontend:
    def __init__(
        self,
        info: ConnectionInfo,
        *,
        session_id: str | None = None,
        peer: bool = True,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.info = info
        self.session = Session(key=info.key.encode(), session=session_id or uuid.uuid4().hex,
                               username="test", check_pid=False)
        self.identity = self.session.bsession
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.sockets: list[zmq.Socket[bytes]] = []
        self.shell = self._dealer("shell")
        self.control = self._dealer("control")
        self.stdin = self._dealer("stdin")
        self.iopub: zmq.Socket[bytes] | None = self._track(self.context.socket(zmq.SUB))
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        if peer:
            self.iopub.setsockopt(zmq.SUBSCRIBE, peer_topic(self.identity, info.key))
        self.iopub.connect(info.url("iopub"))
        self.seen: list[Message] = []

    @classmethod
    def from_file(cls, path: str, **kwargs: Any) -> RawFrontend:
        return cls(read_connection_file(path), **kwargs)

    def _track(self, sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        sock.linger = 0
        self.sockets.append(sock)
        return sock

    def _dealer(self, channel: str) -> zmq.Socket[bytes]:
        sock = self._track(self.context.socket(zmq.DEALER))
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.connect(self.info.url(channel))
        return sock

    def close_iopub(self) -> None:
        """Close only the SUB: the kernel sees this frontend's unsubscribes."""
        if self.iopub is not None:
            self.iopub.close(linger=0)
            self.sockets.remove(self.iopub)
            self.iopub = None

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.sockets.clear()
        self.iopub = None
        if self._own_context:
            self.context.term()

    # -- sending ------------------------------------------------------------

    def send(self, sock: zmq.Socket[bytes], msg_type: str, content: Message,
             parent: Message | None = None) -> Message:
        msg: Message = self.session.msg(msg_type, content, parent=parent)
        self.session.send(sock, msg)
        return msg

    def open_comm(self, target: str, comm_id: str | None = None) -> str:
        comm_id = comm_id or uuid.uuid4().hex
        self.send(self.shell, "comm_open", {"comm_id": comm_id, "target_name": target, "data": {}})
        return comm_id

    def request(self, comm_id: str, method: str, params: Any = None,
                request_id: Any = None) -> Message:
        data: Message = {"jsonrpc": "2.0", "id": request_id if request_id is not None
                         else uuid.uuid4().hex, "method": method}
        if params is not None:
            data["params"] = params
        return self.send(self.shell, "comm_msg", {"comm_id": comm_id, "data": data})

    def notify(self, comm_id: str, method: str, params: Any = None) -> Message:
        """A JSON-RPC notification on the comm (no ``id``: nothing answers it)."""
        data: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            data["params"] = params
        return self.send(self.shell, "comm_msg", {"comm_id": comm_id, "data": data})

    def answer(self, request: Message, result: Any) -> Message:
        """Answer a kernel request (a comm_msg seen on IOPub) on shell."""
        data = request["content"]["data"]
        return self.send(self.shell, "comm_msg", {
            "comm_id": request["content"]["comm_id"],
            "data": {"jsonrpc": "2.0", "id": data["id"], "result": result},
        }, parent=request)

    # -- receiving ----------------------------------------------------------

    def recv(self, sock: zmq.Socket[bytes], timeout: float) -> Message | None:
        if not sock.poll(int(timeout * 1000)):
            return None
        frames = sock.recv_multipart()
        _, rest = self.session.feed_identities(frames)
        msg: Message = self.session.deserialize(rest)
        return msg

    def wait_iopub(self, predicate: Callable[[Message], bool], timeout: float = WAIT,
                   what: str = "message") -> Message:
        assert self.iopub is not None, "IOPub is closed"
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self.recv(self.iopub, max(0.0, left)) if left > 0 else None
            if msg is None:
                seen = [(m["msg_type"], m["content"]) for m in self.seen[-10:]]
                raise TimeoutError(f"no IOPub {what} within {timeout} s; last seen: {seen}")
            self.seen.append(msg)
            if predicate(msg):
                return msg

    def wait_welcome(self) -> Message:
        return self.wait_iopub(lambda m: m["msg_type"] == "iopub_welcome", what="welcome")

    def wait_reply_to(self, request: Message, timeout: float = WAIT) -> Message:
        """The comm_msg on IOPub whose parent is ``request``: its JSON-RPC data."""
        msg_id = request["header"]["msg_id"]
        msg = self.wait_iopub(
            lambda m: m["msg_type"] == "comm_msg" and m["parent_header"].get("msg_id") == msg_id
            and "id" in m["content"]["data"] and "method" not in m["content"]["data"],
            timeout, what=f"reply to {msg_id}")
        data: Message = msg["content"]["data"]
        return data

    def wait_idle(self, request: Message, timeout: float = WAIT) -> Message:
        msg_id = request["header"]["msg_id"]
        return self.wait_iopub(
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id, timeout, what=f"idle of {msg_id}")

    def wait_kernel_request(self, comm_id: str, timeout: float = WAIT) -> Message:
        return self.wait_iopub(
            lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
            and "method" in m["content"]["data"], timeout, what="kernel request")

    def reply_to(self, sock: zmq.Socket[bytes], request: Message,
                 timeout: float = WAIT) -> Message:
        """The reply on ``sock`` whose parent is ``request``; other replies are skipped."""
        deadline = time.monotonic() + timeout
        skipped: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(sock, left)
            if msg is None:
                break
            if msg["parent_header"].get("msg_id") == request["header"]["msg_id"]:
                return msg
            skipped.append(msg["msg_type"])
        raise TimeoutError(f"no reply to {request['msg_type']} within {timeout} s "
                           f"(skipped {skipped[-10:]})")

    def shell_reply(self, msg_type: str, timeout: float = WAIT) -> Message:
        msg = self.recv(self.shell, timeout)
        if msg is None or msg["msg_type"] != msg_type:
            raise TimeoutError(f"no {msg_type} on shell within {timeout} s (got {msg})")
        return msg


class KeylessPeer:
    """A ZMTP 3.0 peer on IOPub speaking raw TCP, without the key and without libzmq:
    it sends whatever subscription frames it likes (libzmq's own SUB and XSUB filter
    an unsubscribe they never subscribed; this does not)."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.sock = zmtp_connect(info, "iopub", b"SUB")

    def send(self, frame: bytes) -> None:
        """One subscription frame (``\\x01topic`` or ``\\x00topic``)."""
        if len(frame) > 255:
            raise ValueError("a short frame only")
        self.sock.sendall(bytes([0x00, len(frame)]) + frame)

    def close(self) -> None:
        self.sock.close()


#: ZMTP 3.0's greeting with the NULL mechanism, as a client sends it
_ZMTP_GREETING = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
                  + b"\x00" * 32)
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


def zmtp_connect(info: ConnectionInfo, channel: str, socket_type: bytes) -> socket.socket:
    """A raw TCP connection to one of the kernel's sockets that has done the ZMTP 3.0
    handshake as a ``socket_type`` peer (NULL mechanism): no libzmq on this side."""
    sock = socket.create_connection((info.ip, info.port(channel)), timeout=WAIT)
    try:
        sock.sendall(_ZMTP_GREETING)
        _recv_exactly(sock, len(_ZMTP_GREETING))
        ready = (b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type))
                 + socket_type)
        sock.sendall(bytes([_COMMAND, len(ready)]) + ready)
    except BaseException:
        sock.close()
        raise
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        if not chunk:
            raise ConnectionError("the kernel closed the connection")
        received += chunk
    return received


class ZmtpPeer:
    """A ZMTP 3.0 peer of any socket type over raw TCP, for frames libzmq would never
    send or that the kernel's libzmq must refuse: a frame of any announced size, a
    multi-part subscription. It answers the kernel's heartbeat PINGs while it reads."""

    def __init__(self, info: ConnectionInfo, channel: str, socket_type: bytes) -> None:
        self.sock = zmtp_connect(info, channel, socket_type)

    def send_message(self, frames: list[bytes]) -> bool:
        """Send one message (its frames with MORE set on all but the last); False if
        the kernel closed the connection meanwhile."""
        try:
            for index, frame in enumerate(frames):
                flags = _MORE if index < len(frames) - 1 else 0
                size = (struct.pack(">Q", len(frame)) if len(frame) > 255
                        else bytes([len(frame)]))
                flags |= _LONG if len(frame) > 255 else 0
                self.sock.sendall(bytes([flags]) + size + frame)
        except OSError:  # reset or broken pipe: the kernel dropped the connection
            return False
        return True

    def recv_message(self, timeout: float = WAIT) -> list[bytes] | None:
        """The next message the kernel sends (commands are skipped, PINGs answered);
        None once the kernel has closed the connection; TimeoutError if neither comes."""
        deadline = time.monotonic() + timeout
        frames: list[bytes] = []
        try:
            while True:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                flags = _recv_exactly(self.sock, 1)[0]
                size_bytes = _recv_exactly(self.sock, 8 if flags & _LONG else 1)
                body = _recv_exactly(self.sock, int.from_bytes(size_bytes, "big"))
                if flags & _COMMAND:
                    self._answer_command(body)
                    continue
                frames.append(body)
                if not flags & _MORE:
                    return frames
        except TimeoutError:
            raise TimeoutError(f"the kernel neither sent a message nor closed the "
                               f"connection within {timeout} s") from None
        except (ConnectionError, OSError):
            return None

    def _answer_command(self, body: bytes) -> None:
        name = body[1 : 1 + body[0]]
        if name == b"PING":  # name, a 2-byte TTL, then the context PONG echoes
            pong = b"\x04PONG" + body[1 + body[0] + 2 :]
            self.sock.sendall(bytes([_COMMAND, len(pong)]) + pong)

    def wait_closed(self, timeout: float = WAIT) -> bool:
        """True once the kernel has closed the connection; False if it sent a message
        first (it read on past whatever this peer sent before)."""
        return self.recv_message(timeout) is None

    def close(self) -> None:
        self.sock.close()


def stock_client(connection_file: str) -> BlockingKernelClient:
    """A stock jupyter_client client with a session id of its own (not KernelManager.client())."""
    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.session.session = uuid.uuid4().hex  # its DEALER identity
    client.start_channels()
    return client


def stock_wait_iopub(client: BlockingKernelClient, predicate: Callable[[Message], bool],
                     timeout: float = WAIT, what: str = "message") -> Message:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no IOPub {what} within {timeout} s; seen {seen[-10:]}")
        try:
            msg: Message = client.get_iopub_msg(timeout=left)
        except Exception:  # queue.Empty
            continue
        seen.append(msg["msg_type"])
        if predicate(msg):
            return msg


def stock_open_comm(client: BlockingKernelClient, target: str) -> str:
    """A stock client opens a comm on ``target``; returns its id once the kernel's idle
    for the comm_open has come (the comm is open, or refused)."""
    comm_id = uuid.uuid4().hex
    msg = client.session.msg("comm_open", {"comm_id": comm_id, "target_name": target, "data": {}})
    client.shell_channel.send(msg)
    stock_wait_iopub(client, lambda m: m["msg_type"] == "status"
                     and m["content"]["execution_state"] == "idle"
                     and m["parent_header"].get("msg_id") == msg["header"]["msg_id"],
                     what="comm_open idle")
    return comm_id


@dataclass
class Observed:
    """What the observed targets' handlers saw, per comm id."""

    comms: dict[str, Comm] = field(default_factory=dict)
    disconnected: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    #: the notifications the targets' handlers were given: (comm id, data)
    notifications: list[tuple[str, Message]] = field(default_factory=list)


@dataclass
class KernelUnderTest:
    kernel: KernelEndpoint
    sink: ListSink
    observed: Observed

    @property
    def connection_file(self) -> str:
        return str(self.kernel.connection_file)


@dataclass
class SpawnedFrontend:
    """A reference frontend in a process of its own, and what it set up."""

    process: AgentProcess
    session_id: str
    comms: list[str] = field(default_factory=list)
    #: the msg_id of the stdin request it holds, if it was asked to make one
    stdin_request: str | None = None

    @property
    def identity(self) -> bytes:
        return self.session_id.encode()

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        self.process.kill()

    def freeze(self) -> None:
        self.process.freeze()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT,
               every: float = 0.01) -> None:
    """Poll ``condition`` until it holds; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not so within {timeout} s")
        time.sleep(every)


def open_and_wait(frontend: RawFrontend, target: str) -> str:
    """Open a comm and wait for that comm_open's idle: the kernel has handled it."""
    comm_id = uuid.uuid4().hex
    msg = frontend.send(frontend.shell, "comm_open",
                        {"comm_id": comm_id, "target_name": target, "data": {}})
    frontend.wait_idle(msg)
    return comm_id
