"""A Jupyter client on raw sockets, for holding a kernel to the spec from outside.

Rules:
- It speaks the wire protocol with jupyter_client's ``Session`` (so signing is
  Jupyter's own, whatever the kernel), on DEALERs for shell, control and stdin whose
  identity is the session id, and, only if asked, a SUB on IOPub: ``"stock"`` subscribes
  to everything, as every Jupyter frontend does; ``"peer"`` also to its commspec peer
  topic (SPEC, "Per-peer presence"). A client without IOPub is an *observer*: the
  kernel never counts it as a subscriber, so it can watch a departure without
  changing what the kernel sees.
- Every wait is bounded and fails with what was seen instead; every message sent and
  received is written to ``log`` in one line, which is a check's evidence.
- Messages that arrive while a client waits for another are kept, in order, for the
  next wait on that channel: nothing is read twice or lost.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import zmq
from jupyter_client.session import Session

from commspec.impl.core.presence import peer_topic

__all__ = ["Client", "Message", "NoAnswer", "brief"]

Message = dict[str, Any]
IopubMode = Literal["none", "stock", "peer"]
_CHANNELS = ("shell", "control", "stdin")


class NoAnswer(TimeoutError):
    """Nothing that was waited for came in time."""


def brief(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Client:
    def __init__(self, info: dict[str, Any], *, iopub: IopubMode = "none",
                 name: str = "client", context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 session_id: str | None = None, log: list[str] | None = None) -> None:
        self.info = info
        self.name = name
        key = info.get("key", "")
        self.key = key.encode() if isinstance(key, str) else bytes(key)
        self.session = Session(key=self.key, signature_scheme=info.get("signature_scheme",
                                                                       "hmac-sha256"),
                               session=session_id or uuid.uuid4().hex,
                               username="commspec-conform",
                               check_pid=False)
        self.identity = self.session.bsession
        self._own_context = context is None
        self.context = context or zmq.Context()
        #: one line per message; several clients may share one list (a check's journal)
        self.log: list[str] = [] if log is None else log
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        self._kept: dict[str, list[Message]] = {}
        for channel in _CHANNELS:
            sock = self.context.socket(zmq.DEALER)
            sock.linger = 0
            sock.setsockopt(zmq.IDENTITY, self.identity)
            sock.connect(self.url(channel))
            self.sockets[channel] = sock
        if iopub != "none":
            sub = self.context.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.RCVHWM, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            if iopub == "peer":
                sub.setsockopt(zmq.SUBSCRIBE, peer_topic(self.identity, self.key.decode()))
            sub.connect(self.url("iopub"))
            self.sockets["iopub"] = sub
        self.iopub_mode = iopub

    def url(self, channel: str) -> str:
        port, ip = self.info[f"{channel}_port"], self.info.get("ip", "127.0.0.1")
        if self.info.get("transport", "tcp") == "tcp":
            return f"tcp://{ip}:{port}"
        return f"ipc://{ip}-{port}"  # jupyter_client's naming for ipc

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.sockets.clear()
        if self._own_context:
            self.context.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ------------------------------------------------------------------

    def send(self, channel: str, msg_type: str, content: Message,
             parent: Message | None = None) -> Message:
        msg: Message = self.session.msg(msg_type, content, parent=parent)
        self.session.send(self.sockets[channel], msg)
        self.log.append(f"{self.name} -> {channel} {msg_type} {brief(content)}")
        return msg

    def send_frames(self, channel: str, frames: list[bytes], what: str) -> None:
        self.sockets[channel].send_multipart(frames)
        self.log.append(f"{self.name} -> {channel} raw frames: {what}")

    def signed(self, parts: list[bytes]) -> list[bytes]:
        """``<IDS|MSG>``, the signature and the four JSON frames given, as bytes."""
        return [b"<IDS|MSG>", self.session.sign(parts), *parts]

    # -- receiving ----------------------------------------------------------------

    def _recv(self, channel: str, timeout: float) -> Message | None:
        sock = self.sockets[channel]
        if not sock.poll(max(0, int(timeout * 1000))):
            return None
        frames = sock.recv_multipart()
        _, rest = self.session.feed_identities(frames)
        msg: Message = self.session.deserialize(rest)
        # Some kernels send null for an empty parent or metadata (xeus-python 0.19's
        # iopub_welcome): read as the {} the protocol means, not a crash of a check.
        msg["parent_header"] = msg.get("parent_header") or {}
        msg["metadata"] = msg.get("metadata") or {}
        content = msg["content"]
        shown = content.get("execution_state") if msg["msg_type"] == "status" else brief(content)
        parent = msg["parent_header"].get("msg_type", "-")
        self.log.append(f"{self.name} <- {channel} {msg['msg_type']} (parent {parent}) {shown}")
        return msg

    def wait(self, channel: str, predicate: Callable[[Message], bool], timeout: float,
             what: str) -> Message:
        """The first message on ``channel`` that ``predicate`` accepts; the others are
        kept for later waits. NoAnswer naming ``what`` after ``timeout`` seconds."""
        kept = self._kept.setdefault(channel, [])
        for i, earlier in enumerate(kept):
            if predicate(earlier):
                return kept.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self._recv(channel, left) if left > 0 else None
            if msg is None:
                raise NoAnswer(f"{self.name}: no {what} on {channel} within {timeout:g} s")
            if predicate(msg):
                return msg
            kept.append(msg)

    def reply_to(self, request: Message, timeout: float, channel: str = "shell") -> Message:
        msg_id = request["header"]["msg_id"]
        return self.wait(channel, lambda m: m["parent_header"].get("msg_id") == msg_id,
                         timeout, f"reply to {request['header']['msg_type']}")

    def iopub(self, predicate: Callable[[Message], bool], timeout: float,
              what: str) -> Message:
        return self.wait("iopub", predicate, timeout, what)

    def drain_iopub(self, timeout: float = 0.0) -> list[Message]:
        """What IOPub holds now (kept ones first), waiting at most ``timeout`` for the
        first."""
        got = self._kept.pop("iopub", [])
        while True:
            msg = self._recv("iopub", timeout if not got else 0)
            if msg is None:
                return got
            got.append(msg)

    def wait_heard(self, timeout: float) -> bool:
        """Whether the kernel hears this client's IOPub subscription within ``timeout``:
        a welcome, or, from a kernel without JEP 65, an IOPub message parented to a
        kernel_info probe (sent again every half second until one comes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe: str = self.send("shell", "kernel_info_request", {})["header"]["msg_id"]

            def heard(m: Message, probe: str = probe) -> bool:
                return bool(m["msg_type"] == "iopub_welcome"
                            or m["parent_header"].get("msg_id") == probe)

            try:
                self.iopub(heard, min(0.5, max(0.0, deadline - time.monotonic())),
                           "welcome or status")
                return True
            except NoAnswer:
                continue
        return False

    def idle_of(self, request: Message, timeout: float) -> Message:
        msg_id = request["header"]["msg_id"]
        return self.iopub(lambda m: m["msg_type"] == "status"
                          and m["content"].get("execution_state") == "idle"
                          and m["parent_header"].get("msg_id") == msg_id,
                          timeout, f"idle of {request['header']['msg_type']}")

    # -- requests a check makes -----------------------------------------------------

    def request(self, msg_type: str, content: Message, timeout: float,
                channel: str = "shell") -> Message:
        """Send a request and return its reply."""
        return self.reply_to(self.send(channel, msg_type, content), timeout, channel)

    def kernel_info(self, timeout: float, channel: str = "shell") -> Message:
        return self.request("kernel_info_request", {}, timeout, channel)

    def comm_info(self, timeout: float, target_name: str | None = None) -> dict[str, Any]:
        content = {"target_name": target_name} if target_name else {}
        comms: dict[str, Any] = self.request("comm_info_request", content,
                                             timeout)["content"].get("comms", {})
        return comms

    def open_comm(self, target: str, comm_id: str | None = None,
                  data: Message | None = None) -> tuple[str, Message]:
        comm_id = comm_id or uuid.uuid4().hex
        msg = self.send("shell", "comm_open", {"comm_id": comm_id, "target_name": target,
                                               "data": data or {}})
        return comm_id, msg

    def open_comm_handled(self, target: str, timeout: float) -> str:
        """Open a comm and wait for its comm_open's idle (needs IOPub): the kernel has
        handled it, so what is sent on the comm next finds it."""
        comm_id, opened = self.open_comm(target)
        self.idle_of(opened, timeout)
        return comm_id

    def rpc(self, comm_id: str, method: str, params: Any = None,
            request_id: Any = None) -> Message:
        data: Message = {"jsonrpc": "2.0", "method": method,
                         "id": request_id if request_id is not None else uuid.uuid4().hex}
        if params is not None:
            data["params"] = params
        return self.send("shell", "comm_msg", {"comm_id": comm_id, "data": data})

    def rpc_reply(self, request: Message, timeout: float) -> Message:
        """The comm_msg on IOPub that answers ``request`` (its parent, with result or
        error); needs an IOPub socket."""
        msg_id = request["header"]["msg_id"]
        return self.iopub(
            lambda m: m["msg_type"] == "comm_msg"
            and m["parent_header"].get("msg_id") == msg_id
            and isinstance(m["content"].get("data"), dict)
            and bool({"result", "error"} & m["content"]["data"].keys()),
            timeout, "comm RPC reply")

    def execute(self, code: str, timeout: float) -> Message:
        return self.request("execute_request", {"code": code, "silent": False,
                                                "store_history": False,
                                                "user_expressions": {},
                                                "allow_stdin": False}, timeout)
