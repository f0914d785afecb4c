"""A comm as application code sees it, on either endpoint; JSON-RPC over comm_msg.

Rules:
- A ``Comm`` holds handlers and talks to its endpoint through a
  :class:`CommTransport` (the kernel and the frontend endpoint both implement
  it). Its state is read from the endpoint's protocol core: only the core moves
  it, the Comm only reads it.
- JSON-RPC as Positron and ark use it (``commspec.impl.core.jsonrpc``). The
  cores answer what is not a valid request (-32600, and a request id still in
  flight on the comm) and route replies to their pending requests; a Comm sees
  only valid requests and notifications.
- An incoming request gets exactly one answer: the handler's return value, a
  -32603 error if it raises, -32601 if no handler has the method. A handler may
  instead return a :class:`Deferred` and complete it later from any thread: a
  request taking a minute never blocks the endpoint.
- Handlers run on the endpoint's I/O thread; they must not block. ``send``,
  ``request`` and ``close`` are thread-safe.
- ``request`` returns a ``concurrent.futures.Future``; in asyncio code use
  ``await asyncio.wrap_future(comm.request(...))``. The future ends in exactly
  one outcome: the result, or a :class:`~commspec.impl.errors.RequestFailed`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from enum import Enum
from typing import Any, Protocol, TypeVar, overload

import orjson

from .core.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    JSONRPC,
    METHOD_NOT_FOUND,
    MessageKind,
    classify,
    rpc_error,
    rpc_notification,
    rpc_request,
    rpc_result,
)
from .loop import check_delay

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_REQUEST",
    "JSONRPC",
    "METHOD_NOT_FOUND",
    "AnswerChannel",
    "Comm",
    "CommTransport",
    "Deferred",
    "Dispatch",
    "MessageKind",
    "ReplyChannel",
    "Responder",
    "check_json",
    "classify",
    "rpc_error",
    "rpc_notification",
    "rpc_request",
    "rpc_result",
]

log = logging.getLogger("commspec.comm")

JsonDict = dict[str, Any]
RequestHandler = Callable[[Any], Any]
NotificationHandler = Callable[[JsonDict], None]
CloseHandler = Callable[[JsonDict], None]
DisconnectHandler = Callable[[], None]
H = TypeVar("H", bound=RequestHandler)


# -- the endpoint's side ------------------------------------------------------------


class CommTransport(Protocol):
    """What a Comm needs from its endpoint. Every method is thread-safe.

    Once the endpoint has stopped, they raise
    :class:`~commspec.impl.errors.EndpointClosed` instead of sending.
    """

    def comm_send(self, comm: Comm, data: JsonDict, buffers: Sequence[bytes] | None) -> None:
        """Send a comm_msg that expects no answer."""

    def comm_request(
        self, comm: Comm, method: str, params: Any, timeout: float | None
    ) -> Future[Any]:
        """Send a JSON-RPC request on the comm; the future ends in exactly one outcome."""

    def comm_close(self, comm: Comm, data: JsonDict | None) -> None:
        """Close the comm from this side (comm_close to the peer; pending requests cancelled)."""


class ReplyChannel(Protocol):
    """Where the answer to one incoming request goes (the endpoint binds it to the request)."""

    def reply(self, payload: JsonDict) -> None:
        """Send the JSON-RPC reply; thread-safe, called at most once."""


def check_json(value: Any) -> None:
    """TypeError or ValueError if JSON cannot carry ``value`` (before it is queued)."""
    orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


class AnswerChannel:
    """The ReplyChannel of one incoming request: its answer goes to ``deliver``
    (the endpoint turns it into the core's ``Answer``). An answer JSON cannot
    carry becomes a -32603 error, so the caller still gets one outcome."""

    __slots__ = ("_deliver", "_exchange")

    def __init__(self, deliver: Callable[[int, JsonDict], None], exchange: int) -> None:
        self._deliver = deliver
        self._exchange = exchange

    def reply(self, payload: JsonDict) -> None:
        try:
            check_json(payload)
        except (TypeError, ValueError) as e:
            log.warning("an answer cannot be encoded: %r", e)
            payload = rpc_error(payload.get("id"), INTERNAL_ERROR,
                                f"the handler's answer cannot be encoded: {e}")
        self._deliver(self._exchange, payload)


class _NoAnswer:
    """A notification's channel: nobody waits for an answer."""

    def reply(self, payload: JsonDict) -> None:
        log.warning("a notification handler tried to answer: %r", payload)


#: the channel handed to notification handlers
NO_ANSWER = _NoAnswer()


class Dispatch(Enum):
    """What ``Comm.handle_data`` did with incoming data."""

    #: a request answered before handle_data returned
    ANSWERED = "answered"
    #: a request whose handler returned a Deferred: its reply() comes later, or its
    #: comm closes first
    DEFERRED = "deferred"
    NOTIFICATION = "notification"


class Deferred:
    """An answer a request handler gives later, from any thread.

    Return one from a handler, keep it, and call ``resolve(value)`` or
    ``reject(code, message)`` exactly once. If the comm closes first the
    Deferred is *cancelled*: ``resolve``/``reject`` then return False and do
    nothing, and callbacks given to ``on_cancel`` run (so long work can stop).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcome: JsonDict | None = None  # {"result": v} or {"error": {...}}
        self._channel: ReplyChannel | None = None
        self._request_id: Any = None
        self._cancelled = False
        self._cancel_callbacks: list[Callable[[], None]] = []
        self._on_settled: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        with self._lock:
            return self._outcome is not None or self._cancelled

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled

    def resolve(self, value: Any) -> bool:
        return self._settle({"result": value})

    def reject(self, code: int, message: str) -> bool:
        return self._settle({"error": {"code": code, "message": message}})

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._cancelled:
                self._cancel_callbacks.append(callback)
                return
        callback()

    # -- the Comm's side -----------------------------------------------------------

    def _settle(self, outcome: JsonDict) -> bool:
        with self._lock:
            if self._outcome is not None or self._cancelled:
                return False
            self._outcome = outcome
            channel, settled = self._channel, self._on_settled
        if channel is not None:
            channel.reply({"jsonrpc": JSONRPC, "id": self._request_id, **outcome})
            if settled is not None:
                settled()
        return True

    def _bind(self, request_id: Any, channel: ReplyChannel, on_settled: Callable[[], None]) -> bool:
        """Attach the reply channel; True if already settled (the caller answers now)."""
        with self._lock:
            self._request_id = request_id
            if self._outcome is not None:
                return True
            self._channel = channel
            self._on_settled = on_settled
            return False

    def _outcome_payload(self) -> JsonDict:
        assert self._outcome is not None
        return {"jsonrpc": JSONRPC, "id": self._request_id, **self._outcome}

    def _cancel(self) -> None:
        with self._lock:
            if self._outcome is not None or self._cancelled:
                return
            self._cancelled = True
            callbacks, self._cancel_callbacks = self._cancel_callbacks, []
        # Nothing to tell the core: it dropped the request (and published its idle) when
        # the comm closed, before the comm's handlers heard of it.
        for callback in callbacks:
            _run_handler("on_cancel", callback)


#: another name for a Deferred, as some handlers read better with it
Responder = Deferred


# -- the comm -----------------------------------------------------------------------


class Comm:
    def __init__(
        self,
        comm_id: str,
        target_name: str,
        *,
        persistent: bool,
        state: Callable[[], Enum],
        transport: CommTransport,
    ) -> None:
        self.comm_id = comm_id
        self.target_name = target_name
        self.persistent = persistent
        self._state = state
        self._transport = transport
        self._request_handlers: dict[str, RequestHandler] = {}
        self._notification_handlers: list[NotificationHandler] = []
        self._close_handlers: list[CloseHandler] = []
        self._disconnect_handlers: list[DisconnectHandler] = []
        self._lock = threading.Lock()  # guards the in-flight map (Deferreds settle anywhere)
        self._in_flight: dict[object, Deferred] = {}

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "default"
        return f"<Comm {self.comm_id} {self.target_name!r} {kind} {self.state.value}>"

    # -- reading ----------------------------------------------------------------

    @property
    def state(self) -> Any:
        """The current state of this comm's machine (read-only)."""
        return self._state()

    @property
    def closed(self) -> bool:
        return bool(self._state().value == "closed")

    @property
    def in_flight(self) -> int:
        """Incoming requests answered by a Deferred that has not settled yet."""
        with self._lock:
            return len(self._in_flight)

    # -- talking (any thread) ------------------------------------------------------

    def send(self, data: JsonDict, buffers: Sequence[bytes] | None = None) -> None:
        """Send data the peer does not answer (a notification: JSON-RPC without ``id``)."""
        if "id" in data:
            raise ValueError("a notification carries no 'id'; use request() to expect an answer")
        self._transport.comm_send(self, data, buffers)

    def notify(self, method: str, params: Any = None) -> None:
        self.send(rpc_notification(method, params))

    def request(self, method: str, params: Any = None, timeout: float | None = None) -> Future[Any]:
        """Ask the peer; the future holds the result or a RequestFailed (thread-safe)."""
        if timeout is not None:
            timeout = check_delay(timeout, "timeout")
        return self._transport.comm_request(self, method, params, timeout)

    def close(self, data: JsonDict | None = None) -> None:
        self._transport.comm_close(self, data)

    # -- handlers ---------------------------------------------------------------

    @overload
    def on_request(self, method: str) -> Callable[[H], H]: ...

    @overload
    def on_request(self, method: str, handler: H) -> H: ...

    def on_request(self, method: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler(params)`` for ``method``; without ``handler``, a decorator."""

        def register(h: H) -> H:
            self._request_handlers[method] = h
            return h

        return register if handler is None else register(handler)

    def on_notification(self, handler: NotificationHandler) -> NotificationHandler:
        """``handler(data)`` for every comm_msg without an ``id``."""
        self._notification_handlers.append(handler)
        return handler

    def on_close(self, handler: CloseHandler) -> CloseHandler:
        """``handler(data)`` once, when the comm closes for any reason (data may be empty)."""
        self._close_handlers.append(handler)
        return handler

    def on_disconnect(self, handler: DisconnectHandler) -> DisconnectHandler:
        """``handler()`` when the frontend this comm belongs to goes away."""
        self._disconnect_handlers.append(handler)
        return handler

    # -- the endpoint's side (its I/O thread) -------------------------------------

    def handle_data(self, data: Any, channel: ReplyChannel) -> Dispatch:
        """Dispatch a valid request or a notification (the endpoint's core checked it)."""
        kind = classify(data)
        if kind is MessageKind.NOTIFICATION:
            for listener in list(self._notification_handlers):
                _run_handler(f"notification handler of comm {self.comm_id}", listener, data)
            return Dispatch.NOTIFICATION
        if kind is not MessageKind.REQUEST:
            raise ValueError(f"comm {self.comm_id}: not a request or notification: {data!r}")
        request_id = data["id"]
        method: str = data["method"]
        handler = self._request_handlers.get(method)
        if handler is None:
            channel.reply(rpc_error(request_id, METHOD_NOT_FOUND, f"method not found: {method}"))
            return Dispatch.ANSWERED
        try:
            value = handler(data.get("params"))
        except Exception as e:  # a handler's bug is the caller's error reply, not our crash
            log.warning("comm %s: handler for %r raised %r", self.comm_id, method, e)
            channel.reply(rpc_error(request_id, INTERNAL_ERROR, f"{type(e).__name__}: {e}"))
            return Dispatch.ANSWERED
        if not isinstance(value, Deferred):
            channel.reply(rpc_result(request_id, value))
            return Dispatch.ANSWERED
        token = object()
        with self._lock:
            self._in_flight[token] = value
        if value._bind(request_id, channel, lambda: self._settled(token)):
            self._settled(token)
            channel.reply(value._outcome_payload())
            return Dispatch.ANSWERED
        return Dispatch.DEFERRED

    def handle_closed(self, data: JsonDict | None = None) -> None:
        """The comm closed (either side, loss, shutdown): cancel Deferreds, run close handlers."""
        with self._lock:
            in_flight, self._in_flight = list(self._in_flight.values()), {}
        for deferred in in_flight:
            deferred._cancel()
        for handler in list(self._close_handlers):
            _run_handler(f"close handler of comm {self.comm_id}", handler, data or {})

    def handle_disconnected(self) -> None:
        """The frontend this comm belongs to went away."""
        for handler in list(self._disconnect_handlers):
            _run_handler(f"disconnect handler of comm {self.comm_id}", handler)

    def _settled(self, token: object) -> None:
        with self._lock:
            self._in_flight.pop(token, None)


def _run_handler(what: str, handler: Callable[..., Any], *args: Any) -> None:
    try:
        handler(*args)
    except Exception:
        log.exception("%s raised; ignored", what)
