"""commspec's white-box interface, made by stock ipykernel from the inside.

This file's source is executed inside the kernel (one execute_request, sent by
:mod:`commspec.mbt.adapters.ipykernel`), so it imports nothing of commspec: only the
standard library and what every ipykernel has (pyzmq, tornado through pyzmq's
ZMQStream, jupyter_client's Session, the ``comm`` package). It makes the kernel write
commspec's trace to ``COMMSPEC_TRACE`` and serve the control socket at
``COMMSPEC_CONTROL`` (SPEC.md, "A kernel in any language"), by reading ipykernel's
internals; it never changes what ipykernel does, so the trace shows only the
transitions ipykernel takes (none where it ignores a departure).

Rules:
- Presence from the IOPub XPUB's own subscription frames: the IOPub thread's
  ``_xpub_stream`` callback (ipykernel's welcome, ``IOPubThread._handle_subscription``)
  is wrapped so every frame is seen first. ipykernel sets no ``XPUB_VERBOSE``, so a
  topic's first subscribe and its last holder's unsubscribe are what arrive: the set
  of topics held, which is what presence is.
- Comms from ipykernel's shell handlers (``kernel.shell_handlers``, bound to its comm
  manager): a comm_open the manager kept is ``opened_by_frontend``, one it closed
  ``rejected``; a comm_close for a comm it held ``closed_by_frontend``. The control
  socket's ``open``/``close`` go through the ``comm`` package (``opened_by_kernel``,
  ``closed_by_kernel``). At ``shutdown_request`` (or exit) every open comm ends
  ``kernel_shutdown`` and every pending stdin request ``interrupt``: the process ends.
- Kernel requests are the JSON-RPC layer a kernel author writes on ipykernel's comm
  (ipykernel has none): a ``comm_msg`` published on IOPub, its reply recognised by its
  parent's ``msg_id``; it ends on a reply or when its comm closes, never on a departure,
  since nothing in ipykernel tells a comm its frontend left.
- Stdin requests go out on ipykernel's stdin ROUTER (no ``ROUTER_MANDATORY``: a send
  to a departed identity vanishes) and their replies are read by a ZMQStream on it.
- Everything but presence runs on ipykernel's main event loop (``kernel.io_loop``): the
  control socket is a ZMQStream there, so the comm manager is touched from the thread
  that owns it. ``hold_inbound`` is not supported.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

TRACE_ENV = "COMMSPEC_TRACE"
CONTROL_ENV = "COMMSPEC_CONTROL"
MAX_DETACHED_ENV = "COMMSPEC_MAX_DETACHED"
REQUEST_TYPE = "commspec_control_request"
REPLY_TYPE = "commspec_control_reply"
EVENT_TYPE = "commspec_control_event"
TARGETS = ("commspec.echo", "commspec.echo.persistent")
PEER_PREFIX = b"commspec.peer/"

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NO_SUCH_COMM = -32003
TIMED_OUT = -32004
INTERRUPTED = -32007
#: how many ended requests are remembered, to tell a late reply from an unknown one
ENDED_KEPT = 1024
#: how long install waits for the IOPub thread to take the wrapped callback
INSTALL_TIMEOUT = 5.0
#: how long shutdown waits for the main loop to end what is pending, in ms
SHUTDOWN_TIMEOUT_MS = 2000


class ShimError(Exception):
    """A control request refused: its JSON-RPC code and why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TraceFile:
    """commspec's trace, appended line by line (from the main and the IOPub thread)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], str] = {}

    def state(self, machine: str, obj: str, default: str = "new") -> str:
        with self._lock:
            return self._states.get((machine, obj), default)

    def move(self, machine: str, obj: str, event: str, dest: str,
             msg_id: str | None = None, default: str = "new") -> None:
        with self._lock:
            source = self._states.get((machine, obj), default)
            self._states[(machine, obj)] = dest
            self._file.write(json.dumps({
                "endpoint": "kernel", "machine": machine, "object": obj, "from": source,
                "event": event, "to": dest, "time": time.monotonic(), "msg_id": msg_id}) + "\n")

    def objects(self, machine: str, state: str) -> list[str]:
        with self._lock:
            return [o for (m, o), s in self._states.items() if m == machine and s == state]


class Presence:
    """The topics ipykernel's XPUB holds, read from the frames it receives."""

    def __init__(self, trace: TraceFile) -> None:
        self.trace = trace
        self._topics: set[bytes] = set()
        self._lock = threading.Lock()

    def on_frames(self, frames: list[Any]) -> None:
        for frame in frames:
            data = bytes(frame)
            if not data or data[0] not in (0, 1):
                continue
            topic = data[1:]
            with self._lock:
                if data[0] == 1:
                    self._topics.add(topic)
                    dest = "connected"
                elif topic in self._topics:
                    self._topics.discard(topic)
                    dest = "connected" if self._topics else "disconnected"
                else:
                    continue
            self.trace.move("presence", "iopub", "subscribe" if data[0] == 1 else "unsubscribe",
                            dest, default="never_subscribed")

    def subscribers(self) -> int:
        """One per peer topic held, or one while only peerless topics are held."""
        with self._lock:
            peers = sum(1 for t in self._topics if t.startswith(PEER_PREFIX))
            return peers or (1 if self._topics else 0)


class Shim:
    """The trace and the control socket of one ipykernel (see the module docstring)."""

    def __init__(self, kernel: Any, trace_path: str, endpoint: str | None) -> None:
        from jupyter_client.session import Session

        self.kernel = kernel
        self.trace = TraceFile(trace_path)
        self.presence = Presence(self.trace)
        self.endpoint = endpoint
        session = kernel.session
        self.session = Session(key=session.key, signature_scheme=session.signature_scheme)
        self.max_detached = int(os.environ.get(MAX_DETACHED_ENV, "0") or 0)
        self.late_replies = 0
        #: control messages dropped: not signed with the key, or not a control request
        self.bad_messages = 0
        #: msg_id -> (comm_id, control ids, control header, handle) of a pending request
        self.pending: dict[str, tuple[str | None, list[bytes], dict[str, Any], str]] = {}
        #: msg_id -> (machine, outcome) of an ended request, the last ENDED_KEPT
        self.ended: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._context: Any = None
        self._stream: Any = None  # the control socket's, on the main loop
        self._stdin_stream: Any = None
        self._shut = False
        self._methods: dict[str, Any] = {"open": self._open, "close": self._close,
                                         "request": self._request, "stdin": self._stdin,
                                         "state": self._state}

    # -- installing -----------------------------------------------------------------

    def install(self) -> None:
        import comm as comm_pkg

        manager = comm_pkg.get_comm_manager()
        for target in TARGETS:
            manager.register_target(target, self._target)
        handlers = self.kernel.shell_handlers
        handlers["comm_open"] = self._wrap_comm_open(handlers["comm_open"])
        handlers["comm_close"] = self._wrap_comm_close(handlers["comm_close"])
        control = self.kernel.control_handlers
        control["shutdown_request"] = self._wrap_shutdown(control["shutdown_request"])
        atexit.register(self.shut_down)
        self._watch_xpub()
        self._serve_stdin()
        if self.endpoint is not None:
            self._serve_control(self.endpoint)

    def _watch_xpub(self) -> None:
        """Take ipykernel's XPUB callback over, on the IOPub thread that owns it."""
        iopub = self.kernel.iopub_socket.io_thread
        welcome = getattr(iopub, "_handle_subscription", None)
        if getattr(iopub, "_xpub_stream", None) is None or welcome is None:
            raise RuntimeError("ipykernel's IOPub has no XPUB subscription stream "
                               "(IOPubThread._xpub_stream, ipykernel >= 7.0): there is no "
                               "presence to read")
        taken = threading.Event()

        def on_frames(frames: list[Any]) -> None:
            self.presence.on_frames(frames)
            welcome(frames)

        def take() -> None:
            iopub._xpub_stream.on_recv(on_frames)
            taken.set()

        iopub.io_loop.add_callback(take)
        if not taken.wait(INSTALL_TIMEOUT):
            raise RuntimeError("ipykernel's IOPub thread did not take the presence hook")

    def _serve_stdin(self) -> None:
        from zmq.eventloop.zmqstream import ZMQStream

        self._stdin_stream = ZMQStream(self.kernel.stdin_socket, self.kernel.io_loop)
        self._stdin_stream.on_recv(self._on_stdin)

    def _serve_control(self, endpoint: str) -> None:
        import zmq
        from zmq.eventloop.zmqstream import ZMQStream

        parts = urlsplit(endpoint)
        if parts.scheme != "tcp" or not parts.hostname or parts.port is None \
                or not ipaddress.ip_address(parts.hostname).is_loopback:
            raise ValueError(f"{CONTROL_ENV}: expected tcp://127.0.0.1:PORT, not {endpoint!r}")
        self._context = zmq.Context()
        sock = self._context.socket(zmq.ROUTER)
        sock.linger = SHUTDOWN_TIMEOUT_MS  # the last ended events go out as it exits
        sock.bind(endpoint)
        self._stream = ZMQStream(sock, self.kernel.io_loop)
        self._stream.on_recv(self._on_control)

    # -- comms ----------------------------------------------------------------------

    def _target(self, comm: Any, open_msg: dict[str, Any]) -> None:
        comm.on_msg(lambda msg: self._on_comm_msg(comm, msg))

    def _wrap_comm_open(self, original: Any) -> Any:
        import comm as comm_pkg

        def comm_open(stream: Any, ident: Any, msg: dict[str, Any]) -> Any:
            comm_id = str(msg["content"].get("comm_id"))
            result = original(stream, ident, msg)
            kept = comm_id in comm_pkg.get_comm_manager().comms
            if self.trace.state("kernel_comm", comm_id) == "new":
                self.trace.move("kernel_comm", comm_id,
                                "opened_by_frontend" if kept else "rejected",
                                "open" if kept else "closed", msg["header"]["msg_id"])
            return result

        return comm_open

    def _wrap_comm_close(self, original: Any) -> Any:
        import comm as comm_pkg

        def comm_close(stream: Any, ident: Any, msg: dict[str, Any]) -> Any:
            comm_id = str(msg["content"].get("comm_id"))
            held = comm_id in comm_pkg.get_comm_manager().comms
            result = original(stream, ident, msg)
            if held and self.trace.state("kernel_comm", comm_id) == "open":
                self._comm_closed(comm_id, "closed_by_frontend", msg["header"]["msg_id"])
            return result

        return comm_close

    def _comm_closed(self, comm_id: str, event: str, msg_id: str | None) -> None:
        self.trace.move("kernel_comm", comm_id, event, "closed", msg_id)
        for request, (on, *_rest) in list(self.pending.items()):
            if on == comm_id:
                self._end(request, "comm_closed", "cancelled", msg_id,
                          error={"code": NO_SUCH_COMM, "message": f"comm {comm_id} closed"})

    def _on_comm_msg(self, comm: Any, msg: dict[str, Any]) -> None:
        data = msg["content"].get("data") or {}
        parent = str((msg.get("parent_header") or {}).get("msg_id"))
        if "result" in data or "error" in data:
            self._on_reply(parent, msg, data)
        elif data.get("id") is not None and isinstance(data.get("method"), str):
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": data["id"]}
            if data["method"] == "echo":
                answer["result"] = data.get("params")
            else:
                answer["error"] = {"code": METHOD_NOT_FOUND, "message": "method not found"}
            self.kernel.session.send(self.kernel.iopub_socket, "comm_msg",
                                     {"comm_id": comm.comm_id, "data": answer},
                                     parent=msg, ident=comm.topic)

    def _on_reply(self, parent: str, msg: dict[str, Any], data: dict[str, Any]) -> None:
        msg_id = msg["header"]["msg_id"]
        if parent in self.pending:
            if "result" in data:
                self._end(parent, "result", "resolved", msg_id, result=data["result"])
            else:
                self._end(parent, "error", "errored", msg_id, error=data["error"])
        elif parent in self.ended:
            self._late(parent, msg_id)

    def _late(self, request: str, msg_id: str) -> None:
        machine, state = self.ended[request]
        self.late_replies += 1
        self.trace.move(machine, request, "late_reply", state, msg_id)

    def _end(self, request: str, event: str, outcome: str, msg_id: str | None, *,
             result: Any = None, error: dict[str, Any] | None = None) -> None:
        comm_id, ids, header, handle = self.pending.pop(request)
        machine = "request" if comm_id is not None else "stdin_request"
        self.trace.move(machine, request, event, outcome, msg_id)
        self.ended[request] = (machine, outcome)
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        content: dict[str, Any] = {"event": "ended", "request": handle, "outcome": outcome}
        if error is None:
            content["result"] = result
        else:
            content["error"] = error
        self._post(ids, EVENT_TYPE, content, header)

    # -- stdin ----------------------------------------------------------------------

    def _on_stdin(self, frames: list[Any]) -> None:
        try:
            _, parts = self.session.feed_identities(frames)
            msg = self.session.deserialize(parts)
        except Exception:
            return  # not signed with the key, or not a message: ipykernel would drop it
        parent = str((msg.get("parent_header") or {}).get("msg_id"))
        msg_id = msg["header"]["msg_id"]
        if parent in self.pending:
            self._end(parent, "reply", "replied", msg_id,
                      result=(msg.get("content") or {}).get("value"))
        elif parent in self.ended:
            self._late(parent, msg_id)

    # -- shutdown -------------------------------------------------------------------

    def _wrap_shutdown(self, original: Any) -> Any:
        async def shutdown_request(stream: Any, ident: Any, parent: dict[str, Any]) -> Any:
            self.shut_down()
            return await original(stream, ident, parent)

        return shutdown_request

    def shut_down(self) -> None:
        """The process ends: so does every comm, and every wait (from ipykernel's
        control thread or at exit; done on the main loop, whose objects these are;
        safe to call twice)."""
        if threading.current_thread() is threading.main_thread():
            self._end_everything()
            return
        done = threading.Event()

        def end() -> None:
            self._end_everything()
            done.set()

        self.kernel.io_loop.add_callback(end)
        done.wait(SHUTDOWN_TIMEOUT_MS / 1000)

    def _end_everything(self) -> None:
        if self._shut:
            return
        self._shut = True
        for comm_id in self.trace.objects("kernel_comm", "open"):
            self._comm_closed(comm_id, "kernel_shutdown", None)
        for request, (on, *_rest) in list(self.pending.items()):
            if on is None:
                self._end(request, "interrupt", "interrupted", None, error={
                    "code": INTERRUPTED, "message": "the kernel shut down"})
        if self._stream is not None:
            self._stream.flush()  # the ended events go out before the process ends

    # -- the control socket ---------------------------------------------------------

    def _on_control(self, frames: list[Any]) -> None:
        try:
            ids, parts = self.session.feed_identities(frames)
            msg = self.session.deserialize(parts)
        except Exception as e:
            self._bad(f"not a signed message ({type(e).__name__}: {e})")
            return  # never answered (SPEC): a client without the key drives nothing
        if msg["header"].get("msg_type") != REQUEST_TYPE:
            self._bad(f"a {msg['header'].get('msg_type')!r}, not a {REQUEST_TYPE}")
            return
        header = msg["header"]
        try:
            content = msg.get("content") or {}
            method, params = content.get("method"), content.get("params", {})
            handler = self._methods.get(method) if isinstance(method, str) else None
            if handler is None:
                raise ShimError(METHOD_NOT_FOUND, f"no control method {method!r}")
            if not isinstance(params, dict):
                raise ShimError(INVALID_PARAMS, "params must be an object")
            reply: dict[str, Any] = {"result": handler(params, list(ids), header)}
        except ShimError as e:
            reply = {"error": {"code": e.code, "message": e.message}}
        except Exception as e:  # the kernel failed doing it: still one answer
            reply = {"error": {"code": INTERNAL_ERROR, "message": f"{type(e).__name__}: {e}"}}
        self._post(list(ids), REPLY_TYPE, reply, header)

    def _bad(self, why: str) -> None:
        self.bad_messages += 1
        self.kernel.log.warning("commspec control socket: dropped %s", why)

    def _post(self, ids: list[bytes], msg_type: str, content: dict[str, Any],
              parent: dict[str, Any]) -> None:
        # through the ZMQStream, even from outside its callbacks (an ended request): a
        # send straight on the socket can take the edge of its edge-triggered FD, and
        # the stream then never reads the requests queued behind it (seen: a stall)
        if self._stream is not None:
            self.session.send(self._stream, msg_type, content, parent={"header": parent},
                              ident=ids)

    def _open(self, params: dict[str, Any], ids: list[bytes], header: dict[str, Any]) -> Any:
        import comm as comm_pkg

        target = _param(params, "target", str)
        _param(params, "persistent", bool)  # ipykernel has no persistent comms
        if target not in comm_pkg.get_comm_manager().targets:
            raise ShimError(INVALID_PARAMS, f"params.target: no target {target!r}")
        comm = comm_pkg.create_comm(target_name=target)
        self._target(comm, {})
        self.trace.move("kernel_comm", comm.comm_id, "opened_by_kernel", "open")
        return {"comm_id": comm.comm_id}

    def _comm(self, params: dict[str, Any]) -> Any:
        import comm as comm_pkg

        comm_id = _param(params, "comm_id", str)
        comm = comm_pkg.get_comm_manager().comms.get(comm_id)
        if comm is None:
            raise ShimError(NO_SUCH_COMM, f"the kernel has no comm {comm_id}")
        return comm

    def _close(self, params: dict[str, Any], ids: list[bytes], header: dict[str, Any]) -> Any:
        comm = self._comm(params)
        comm.close()
        self._comm_closed(comm.comm_id, "closed_by_kernel", None)
        return {}

    def _request(self, params: dict[str, Any], ids: list[bytes], header: dict[str, Any]) -> Any:
        comm = self._comm(params)
        method = _param(params, "method", str)
        timeout = params.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or timeout <= 0):
            raise ShimError(INVALID_PARAMS, f"params.timeout: expected seconds > 0 or "
                            f"null, not {timeout!r}")
        rid = uuid.uuid4().hex
        sent = self.kernel.session.send(
            self.kernel.iopub_socket, "comm_msg",
            {"comm_id": comm.comm_id, "data": {"jsonrpc": "2.0", "id": rid, "method": method,
                                               "params": params.get("params")}},
            ident=comm.topic)
        msg_id = sent["header"]["msg_id"]
        handle = uuid.uuid4().hex
        self.pending[msg_id] = (comm.comm_id, ids, header, handle)
        self.trace.move("request", msg_id, "sent", "pending", msg_id)
        if timeout is not None:
            self.kernel.io_loop.call_later(timeout, lambda: self._expire(msg_id, timeout))
        return {"request": handle}

    def _expire(self, request: str, timeout: float) -> None:
        """The caller's deadline (the JSON-RPC layer's, not ipykernel's) passed."""
        if request in self.pending:
            self._end(request, "deadline", "timed_out", None, error={
                "code": TIMED_OUT, "message": f"no answer within {timeout:g} s"})

    def _stdin(self, params: dict[str, Any], ids: list[bytes], header: dict[str, Any]) -> Any:
        identity = _param(params, "identity", str)
        # through the stream that reads the replies, for its FD's edge (see _post)
        sent = self.kernel.session.send(self._stdin_stream, "input_request",
                                        {"prompt": "mbt?", "password": False},
                                        ident=identity.encode())
        msg_id = sent["header"]["msg_id"]
        handle = uuid.uuid4().hex
        self.pending[msg_id] = (None, ids, header, handle)
        self.trace.move("stdin_request", msg_id, "sent", "pending", msg_id)
        return {"request": handle}

    def _state(self, params: dict[str, Any], ids: list[bytes], header: dict[str, Any]) -> Any:
        return {"subscribers": self.presence.subscribers(), "late_replies": self.late_replies,
                "pending": sum(1 for c, *_ in self.pending.values() if c is not None),
                "stdin_pending": sum(1 for c, *_ in self.pending.values() if c is None),
                "comms": {c: "open" for c in self.trace.objects("kernel_comm", "open")},
                "max_detached": self.max_detached, "hold_inbound": False,
                "bad_messages": self.bad_messages}


def _param(params: dict[str, Any], key: str, kind: type) -> Any:
    value = params.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ShimError(INVALID_PARAMS, f"params.{key}: expected {kind.__name__}, not {value!r}")
    return value


def install() -> Shim:
    """Install the shim in the running ipykernel, from its environment: the trace file
    is ``COMMSPEC_TRACE`` (required), the control socket ``COMMSPEC_CONTROL`` (if set)."""
    from ipykernel.kernelbase import Kernel

    path = os.environ.get(TRACE_ENV)
    if not path:
        raise RuntimeError(f"{TRACE_ENV} is not set: nowhere to write the trace")
    shim = Shim(Kernel.instance(), path, os.environ.get(CONTROL_ENV))
    shim.install()
    return shim
