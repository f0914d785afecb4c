"""The test-control socket (SPEC.md, "A kernel in any language"): the harness's orders.

Rules:
- Off unless asked for: ``commspec kernel`` binds it only with ``COMMSPEC_CONTROL``
  (or ``--control``) set, and only on a loopback address.
- A ROUTER socket of its own, on a thread of its own: nothing received or sent here
  touches IOPub, the trace or presence, so the control client is never a frontend.
- Every message is a Jupyter wire message signed with the kernel's key. One that does
  not verify, or is not a ``commspec_control_request``, is dropped and counted
  (``bad_messages``), never answered. Every request gets exactly one
  ``commspec_control_reply`` (``result`` or ``error``); ``request`` and ``stdin`` later
  one ``commspec_control_event`` ``ended``, ``hold_inbound`` one ``held``.
- Each method is a call into :class:`~commspec.impl.kernel.KernelEndpoint`'s public,
  thread-safe API; events come from future callbacks on any thread and are handed to
  the control thread through a queue and a wake-up pipe (a ZeroMQ socket is one
  thread's).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol
from urllib.parse import urlsplit

import zmq

from commspec.model.messages import FAILURE_CODES, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND

from .comm import Comm
from .connection import ConnectionInfo
from .core.comms import check_max_detached
from .errors import BadMessage, NoFrontend, RemoteError, RequestFailed
from .targets import TargetRegistry
from .wire import Codec

__all__ = [
    "CONTROL_ENV",
    "EVENT_TYPE",
    "MAX_DETACHED_ENV",
    "REPLY_TYPE",
    "REQUEST_TYPE",
    "ControlError",
    "ControlServer",
    "SocketThread",
    "check_control_endpoint",
    "max_detached_from_env",
]

log = logging.getLogger("commspec.control")

#: the environment variable that enables the control socket, and where it binds
CONTROL_ENV = "COMMSPEC_CONTROL"
#: the environment variable by which the harness sets the detached bound (SPEC.md)
MAX_DETACHED_ENV = "COMMSPEC_MAX_DETACHED"
REQUEST_TYPE = "commspec_control_request"
REPLY_TYPE = "commspec_control_reply"
EVENT_TYPE = "commspec_control_event"

#: error codes of the control methods (SPEC.md): nobody subscribed, no such comm
NOBODY_SUBSCRIBED = FAILURE_CODES["undeliverable"]
NO_SUCH_COMM = FAILURE_CODES["cancelled"]

#: how long the control thread sleeps in poll when nothing arrives (its stop check)
POLL_MS = 200


class ControlError(Exception):
    """A control request refused: its JSON-RPC code and why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def max_detached_from_env() -> int | None:
    """``max_detached`` from the environment, if the harness set it (SPEC.md, "A kernel
    in any language"); ValueError naming what was given if it is not a count."""
    text = os.environ.get(MAX_DETACHED_ENV, "")
    if not text:
        return None
    try:
        return check_max_detached(int(text))
    except ValueError as e:
        raise ValueError(f"{MAX_DETACHED_ENV}: expected a whole number of comms >= 0, "
                         f"not {text!r}") from e


def check_control_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``tcp://<loopback>:<port>``; ValueError saying why not."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
        raise ValueError(f"{CONTROL_ENV}: expected tcp://127.0.0.1:PORT, not {endpoint!r}")
    try:
        loopback = ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{CONTROL_ENV}: the control socket binds a loopback address "
                         f"only, not {endpoint!r}")
    return endpoint


def _params(content: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(content, dict) or not isinstance(content.get("method"), str):
        raise ControlError(INVALID_PARAMS, "content must be {method: string, params: object}")
    params = content.get("params", {})
    if not isinstance(params, dict):
        raise ControlError(INVALID_PARAMS, "params must be an object")
    return content["method"], params


def _get(params: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = params.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ControlError(INVALID_PARAMS, f"params.{key}: expected {_kind_name(kind)}, "
                           f"not {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def ended_content(handle: str, future: Future[Any], success: str) -> dict[str, Any]:
    """The ``ended`` event of a request whose future is done; ``success`` names the
    terminal state of a result (``resolved`` for a comm request, ``replied`` on stdin)."""
    try:
        result = future.result()
    except RemoteError as e:
        return {"event": "ended", "request": handle, "outcome": e.state,
                "error": {"code": e.code, "message": e.message}}
    except RequestFailed as e:
        return {"event": "ended", "request": handle, "outcome": e.state,
                "error": {"code": FAILURE_CODES.get(e.state, INTERNAL_ERROR),
                          "message": str(e)}}
    except BaseException as e:  # a kernel bug: still one outcome, saying so
        return {"event": "ended", "request": handle, "outcome": "errored",
                "error": {"code": INTERNAL_ERROR, "message": f"{type(e).__name__}: {e}"}}
    return {"event": "ended", "request": handle, "outcome": success, "result": result}


class SocketThread:
    """One ZeroMQ socket and the thread that alone uses it: ``on_frames`` runs on that
    thread for every message received; ``send`` may be called from any thread (the
    frames are queued and the thread woken through a pipe)."""

    def __init__(self, sock: zmq.Socket[bytes], on_frames: Callable[[list[bytes]], None],
                 name: str) -> None:
        self.socket = sock
        self._on_frames = on_frames
        self._outbox: queue.SimpleQueue[list[bytes]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, frames: list[bytes]) -> None:
        self._outbox.put(frames)
        self._wake()

    def close(self) -> None:
        """Stop the thread, then close the socket and the pipe; safe to call twice."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.socket.close()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass  # closed already
        self._wake_read = self._wake_write = -1

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # closed: nothing to wake

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        while not self._stop.is_set():
            for what, _ in poller.poll(POLL_MS):
                if what is self.socket:
                    self._on_frames(self.socket.recv_multipart())
                else:
                    os.read(self._wake_read, 4096)
            self._flush()

    def _flush(self) -> None:
        while True:
            try:
                frames = self._outbox.get_nowait()
            except queue.Empty:
                return
            self.socket.send_multipart(frames)


class ControlledKernel(Protocol):
    """What the control socket needs of a kernel: the reference kernel's thread-safe API
    (``KernelEndpoint``, and commspec for ipykernel's ``KernelBridge``)."""

    @property
    def connection_info(self) -> ConnectionInfo: ...
    @property
    def targets(self) -> TargetRegistry: ...
    @property
    def max_detached(self) -> int: ...
    @property
    def subscriber_count(self) -> int: ...
    @property
    def late_replies(self) -> int: ...
    @property
    def pending_count(self) -> int: ...
    @property
    def stdin_pending_count(self) -> int: ...
    #: whether ``hold_until_queued`` can hold the kernel's input
    holds_inbound: bool

    def open_comm(self, target_name: str, data: dict[str, Any] | None = None, *,
                  persistent: bool = False, comm_id: str | None = None,
                  owner: bytes | None = None) -> Comm: ...
    def comm(self, comm_id: str) -> Comm | None: ...
    def comm_states(self) -> dict[str, str]: ...
    def stdin_request(self, msg_type: str, content: dict[str, Any],
                      identity: bytes | None = None) -> Future[Any]: ...
    def hold_until_queued(self, channels: Sequence[str],
                          timeout: float = 5.0) -> Future[bool]: ...


class ControlServer:
    """The control socket of one running kernel (see the module docstring)."""

    def __init__(self, kernel: ControlledKernel, endpoint: str) -> None:
        self.kernel = kernel
        self.endpoint = check_control_endpoint(endpoint)
        info = kernel.connection_info
        self.codec = Codec(info.key.encode(), signature_scheme=info.signature_scheme)
        #: messages dropped: not signed with the key, or not a control request
        self.bad_messages = 0
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._io: SocketThread | None = None
        self._methods: dict[str, Callable[[dict[str, Any], list[bytes], Any], Any]] = {
            "open": self._open,
            "close": self._close,
            "request": self._request,
            "stdin": self._stdin,
            "state": self._state,
            "hold_inbound": self._hold_inbound,
        }

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ControlServer:
        sock = self._context.socket(zmq.ROUTER)
        sock.linger = 0
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError:
            sock.close()
            self._context.term()
            raise
        self._io = SocketThread(sock, self._receive, "commspec-control")
        return self

    def stop(self) -> None:
        """Stop the thread and release the socket; safe to call twice."""
        if self._io is not None:
            self._io.close()
            self._io = None
            self._context.term()

    # -- the control thread ---------------------------------------------------------

    def _receive(self, frames: list[bytes]) -> None:
        try:
            received = self.codec.decode(frames, "control")
        except BadMessage as e:
            self.bad_messages += 1
            log.warning("control socket: dropped a bad message (%s)", e)
            return
        if received.msg_type != REQUEST_TYPE:
            self.bad_messages += 1
            log.warning("control socket: dropped a %r (only %s is taken)",
                        received.msg_type, REQUEST_TYPE)
            return
        ids = list(received.identities)
        header = received.msg["header"]
        try:
            method, params = _params(received.msg["content"])
            handler = self._methods.get(method)
            if handler is None:
                raise ControlError(METHOD_NOT_FOUND, f"no control method {method!r}")
            content: dict[str, Any] = {"result": handler(params, ids, header)}
        except ControlError as e:
            content = {"error": {"code": e.code, "message": e.message}}
        except Exception as e:  # the kernel failed doing it: still one answer
            log.exception("control request failed")
            content = {"error": {"code": INTERNAL_ERROR, "message": f"{type(e).__name__}: {e}"}}
        self._post(ids, REPLY_TYPE, content, header)

    def _post(self, ids: list[bytes], msg_type: str, content: dict[str, Any],
              parent: Any) -> None:
        """Queue a message for the control thread to send (from any thread)."""
        io = self._io
        if io is not None:  # stopped: nobody is listening any more
            io.send([*ids, *self.codec.encode(self.codec.new_msg_id(), msg_type, content,
                                              parent)])

    def _when_done(self, future: Future[Any], ids: list[bytes], parent: Any,
                   content: Callable[[Future[Any]], dict[str, Any]]) -> None:
        future.add_done_callback(lambda f: self._post(ids, EVENT_TYPE, content(f), parent))

    # -- the methods ------------------------------------------------------------

    def _open(self, params: dict[str, Any], ids: list[bytes], parent: Any) -> Any:
        target = _get(params, "target", str)
        persistent = _get(params, "persistent", bool)
        owner = _get(params, "owner", (str, type(None)))
        if self.kernel.targets.get(target) is None:
            raise ControlError(INVALID_PARAMS, f"params.target: no target {target!r}")
        try:
            comm = self.kernel.open_comm(target, persistent=persistent,
                                         owner=owner.encode() if owner else None)
        except NoFrontend as e:
            raise ControlError(NOBODY_SUBSCRIBED, str(e)) from e
        # a target's factory runs for frontend opens only: serve echo here too
        comm.on_request("echo", lambda p: p)
        return {"comm_id": comm.comm_id}

    def _comm(self, params: dict[str, Any]) -> Any:
        comm_id = _get(params, "comm_id", str)
        comm = self.kernel.comm(comm_id)
        if comm is None:
            raise ControlError(NO_SUCH_COMM, f"the kernel has no comm {comm_id}")
        return comm

    def _close(self, params: dict[str, Any], ids: list[bytes], parent: Any) -> Any:
        self._comm(params).close()
        return {}

    def _request(self, params: dict[str, Any], ids: list[bytes], parent: Any) -> Any:
        comm = self._comm(params)
        method = _get(params, "method", str)
        timeout = params.get("timeout")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise ControlError(INVALID_PARAMS, f"params.timeout: expected a positive number "
                               f"of seconds or null, not {timeout!r}")
        handle = uuid.uuid4().hex
        future = comm.request(method, params.get("params"), timeout=timeout)
        self._when_done(future, ids, parent, lambda f: ended_content(handle, f, "resolved"))
        return {"request": handle}

    def _stdin(self, params: dict[str, Any], ids: list[bytes], parent: Any) -> Any:
        identity = _get(params, "identity", str)
        handle = uuid.uuid4().hex
        future = self.kernel.stdin_request(
            "input_request", {"prompt": "mbt?", "password": False}, identity=identity.encode())
        self._when_done(future, ids, parent, lambda f: ended_content(handle, f, "replied"))
        return {"request": handle}

    def _state(self, params: dict[str, Any], ids: list[bytes], parent: Any) -> Any:
        k = self.kernel
        return {"subscribers": k.subscriber_count, "late_replies": k.late_replies,
                "pending": k.pending_count, "stdin_pending": k.stdin_pending_count,
                "comms": k.comm_states(), "max_detached": k.max_detached,
                "hold_inbound": k.holds_inbound}

    def _hold_inbound(self, params: dict[str, Any], ids: list[bytes], parent: Any) -> Any:
        if not self.kernel.holds_inbound:
            raise ControlError(METHOD_NOT_FOUND, "this kernel cannot hold its input")
        timeout = params.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout <= 60:
            raise ControlError(INVALID_PARAMS, f"params.timeout: expected seconds in "
                               f"(0, 60], not {timeout!r}")
        held = self.kernel.hold_until_queued(["iopub", "shell"], timeout=float(timeout))

        def content(f: Future[Any]) -> dict[str, Any]:
            queued = f.exception() is None and bool(f.result())
            return {"event": "held", "queued": queued}

        self._when_done(held, ids, parent, content)
        return {}
