"""FrontendEndpoint: the reference client of one kernel.

The protocol state lives in tracked machines: the session in SESSION, each comm
in FRONTEND_COMM, each comm RPC in REQUEST (through PendingRequests). This
module is the shell around them: it turns wire happenings (a message, a
heartbeat timeout, a socket monitor event, a user call) into their input events
and carries out what each transition implies (send, fail, close sockets).

Threads: one I/O thread (:class:`~commspec.impl.loop.IoLoop`) owns every socket and every
piece of state below. Public methods are thread-safe: they run their work on
the I/O thread and wait for it, except ``Comm.request``, which posts its work
(in order with the rest) and returns its future at once. Futures are
``concurrent.futures.Future``, resolved on the I/O thread (``asyncio.wrap_future``
makes them awaitable), so callbacks attached to them and handlers registered on
comms must not block.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import zmq

from commspec.impl.comm import Comm, Dispatch, MessageKind, classify, rpc_request
from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.core.requests import PendingRequests, ReplyOutcome
from commspec.impl.errors import EndpointClosed
from commspec.impl.loop import IoLoop, Timer
from commspec.model.machines import (
    FRONTEND_COMM,
    SESSION,
    FrontendCommEvent,
    FrontendCommState,
    RequestEvent,
    SessionEvent,
    SessionState,
)
from commspec.model.trace import TraceEvent, TraceSink, discard
from commspec.model.tracked import Tracked

from .badinput import BadInput
from .calls import KernelCallFailed, KernelCalls
from .errors import CannotSend
from .link import Link, LinkEvents
from .messaging import Message, Messenger
from .options import FrontendOptions
from .stdin import InputHandler, RpcHandler, StdinAnswers

log = logging.getLogger(__name__)
T = TypeVar("T")

Connection = str | os.PathLike[str] | Mapping[str, Any] | ConnectionInfo
CommOpenHandler = Callable[[Comm, Any], None]

#: how many closed comm ids are remembered against out-of-date comm_info replies
REMEMBER_CLOSED = 10_000

S, CS = SessionState, FrontendCommState
#: states in which a link (sockets) exists
_LINKED = frozenset({S.CONNECTING, S.READY, S.RECONNECTING, S.RECONCILING})
#: states in which the subscription is proven: comm traffic may go out
_LIVE = frozenset({S.READY, S.RECONCILING})
#: states in which comm traffic waits for the welcome instead of failing
_WAITING = frozenset({S.CONNECTING, S.RECONNECTING})
#: comm states a frontend may talk on: a stale comm until reconciling settles it
_USABLE = frozenset({FrontendCommState.OPEN, FrontendCommState.STALE})


class _CommRecord:
    """The frontend's record of one comm: its machine and its public handle."""

    __slots__ = ("comm", "tracked")

    def __init__(self, comm: Comm, tracked: Tracked[FrontendCommState, FrontendCommEvent]):
        self.comm = comm
        self.tracked = tracked


class _Held:
    """Work made while the session was not ready; it goes out when it is."""

    __slots__ = ("buffers", "data", "deadline", "kind", "method", "outer", "record")

    def __init__(
        self,
        kind: str,
        record: _CommRecord,
        *,
        data: Any = None,
        method: str = "",
        deadline: float | None = None,
        outer: Future[Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        self.buffers = buffers
        self.kind = kind  # "open" | "close" | "request" | "send"
        self.record = record
        self.data = data
        self.method = method
        self.deadline = deadline
        self.outer = outer


class _KernelReplyChannel:
    """Where the answer to one kernel request goes: a comm_msg on shell parented to it."""

    __slots__ = ("_endpoint", "_generation", "_record", "_request")

    def __init__(
        self, endpoint: FrontendEndpoint, record: _CommRecord, request: Message, generation: int
    ) -> None:
        self._endpoint = endpoint
        self._record = record
        self._request = request
        self._generation = generation

    def reply(self, payload: dict[str, Any]) -> None:
        self._endpoint._on_loop(
            lambda: self._endpoint._send_comm_reply(
                self._record, self._request, payload, self._generation
            )
        )

    def abandon(self) -> None:
        """The comm closed first: nothing to send (the kernel cancelled its request too)."""


class FrontendEndpoint:
    """A frontend session with one kernel; starts connecting on construction."""

    def __init__(
        self,
        connection: Connection,
        *,
        sink: TraceSink = discard,
        options: FrontendOptions | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        session_id: str | None = None,
        insecure: bool = False,
    ) -> None:
        if isinstance(connection, ConnectionInfo):
            self.connection = connection
        elif isinstance(connection, Mapping):
            self.connection = ConnectionInfo.from_dict(dict(connection), insecure=insecure)
        else:
            self.connection = read_connection_file(connection, insecure=insecure)
        self.options = options or FrontendOptions()
        self._messenger = Messenger(
            self.connection.key.encode(), self.connection.signature_scheme, session_id
        )
        self.session_id = self._messenger.session_id
        self.name = f"frontend:{self.session_id}"
        self._user_sink = sink
        self._owns_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        self._loop = IoLoop(f"commspec-{self.name[:24]}", log=log)
        self._state_changed = threading.Condition()
        self._session: Tracked[SessionState, SessionEvent] = Tracked(
            SESSION, self.session_id, endpoint=self.name, sink=self._trace
        )
        self._requests = PendingRequests(self.name, sink=self._trace)
        self._comms: dict[str, _CommRecord] = {}
        #: ids of comms that closed, most recent last (bounded), as h2 remembers streams
        self._closed_ids: OrderedDict[str, None] = OrderedDict()
        self._targets: dict[str, CommOpenHandler] = {}
        self._held: list[_Held] = []
        self._no_reply_timers: dict[str, Timer] = {}
        self._deadline_timer: Timer | None = None
        self._stdin = StdinAnswers()
        self._iopub_observers: list[Callable[[Message], None]] = []
        self._bad = BadInput(self.name)
        self._calls = KernelCalls()
        #: the current link, or the last one (closed) while the session is lost
        self._link: Link | None = None
        self._reconcile_id: str | None = None
        self._reconnect_timer: Timer | None = None
        #: bumped on every new set of sockets, so work from an older link is recognised
        self._generation = 0
        self._closed = False
        self._loop.start()
        try:
            self._loop.call_sync(self._open_link)
        except BaseException:
            self.close()
            raise

    # =========================================================================
    # public API (any thread)
    # =========================================================================

    @property
    def state(self) -> SessionState:
        return self._session.state

    @property
    def bad_input(self) -> dict[str, int]:
        """How many bad inputs from the kernel were dropped, by reason."""
        return self._bad.counts()

    @property
    def late_replies(self) -> int:
        return self._requests.late_replies

    @property
    def pending_count(self) -> int:
        return self._requests.pending_count

    @property
    def kernel_info(self) -> dict[str, Any] | None:
        """The kernel's kernel_info_reply content, once a probe got one."""
        return self._call(lambda: self._link.probe.kernel_info if self._link else None)

    @property
    def proven_by(self) -> str | None:
        """What proved the last subscription: "iopub_welcome", "kernel_info" or None yet."""
        return self._call(lambda: self._link.probe.proven_by if self._link else None)

    def wait_for_state(self, state: SessionState, timeout: float = 10.0) -> None:
        """Block until the session is in ``state``; TimeoutError names where it is stuck."""
        deadline = time.monotonic() + timeout
        with self._state_changed:
            while self._session.state is not state:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: session still {self._session.state.value!r} "
                        f"after {timeout} s, waiting for {state.value!r}"
                    )
                self._state_changed.wait(left)

    def wait_ready(self, timeout: float = 10.0) -> None:
        self.wait_for_state(S.READY, timeout)

    def comms(self) -> dict[str, Comm]:
        """The comms this frontend holds open (or stale), by id."""

        def held() -> dict[str, Comm]:
            live = (CS.OPEN, CS.STALE)
            return {i: r.comm for i, r in self._comms.items() if r.tracked.state in live}

        return self._call(held)

    def open_comm(self, target_name: str, data: Any = None, *, persistent: bool = False) -> Comm:
        """Open a comm to ``target_name``; it goes out once the session is ready."""
        return self._call(lambda: self._open_comm(target_name, data, persistent))

    def adopt_comms(self, target_name: str | None = None) -> Future[list[Comm]]:
        """Ask comm_info and adopt the listed comms of registered targets we do not hold.

        A frontend that starts afresh uses it to re-attach to what a previous
        frontend left in the kernel (persistent comms: plots...); reconnecting does
        the same by itself while reconciling.
        """

        def start() -> Future[list[Comm]]:
            content = {} if target_name is None else {"target_name": target_name}
            reply = self._kernel_request("comm_info_request", content, "shell")
            adopted: Future[list[Comm]] = Future()

            def settle(f: Future[Message]) -> None:  # on the I/O thread
                error = f.exception()
                if error is not None:
                    adopted.set_exception(error)
                    return
                msg = f.result()
                listed = msg["content"].get("comms")
                if not isinstance(listed, dict):
                    adopted.set_result([])
                    return
                adopted.set_result(self._adopt(listed, str(msg["msg_id"])))

            reply.add_done_callback(settle)
            return adopted

        return self._call(start)

    def register_target(self, target_name: str, handler: CommOpenHandler) -> None:
        """Accept comms the kernel opens for ``target_name``: ``handler(comm, data)``.

        A kernel comm_open for a target nobody registered is answered with
        comm_close, as a kernel answers an open for a target it does not know.
        """
        self._call(lambda: self._targets.__setitem__(target_name, handler))

    def on_input_request(self, handler: InputHandler) -> None:
        """Answer stdin input_request: ``handler(prompt, password) -> str | Future[str]``."""

        def set_handler() -> None:
            self._stdin.input_handler = handler

        self._call(set_handler)

    def on_rpc_request(self, handler: RpcHandler) -> None:
        """Answer stdin rpc_request (ark): ``handler(method, params) -> value | Future``."""

        def set_handler() -> None:
            self._stdin.rpc_handler = handler

        self._call(set_handler)

    def on_iopub(self, observer: Callable[[Message], None]) -> None:
        """See every valid IOPub message, after the endpoint handled it (for tools, tests)."""
        self._call(lambda: self._iopub_observers.append(observer))

    def kernel_request(
        self, msg_type: str, content: dict[str, Any], *, channel: str = "shell"
    ) -> Future[Message]:
        """Send a plain Jupyter request; the future gets its reply message."""
        return self._call(lambda: self._kernel_request(msg_type, content, channel))

    def execute(self, code: str, *, allow_stdin: bool = False) -> Future[Message]:
        return self.kernel_request(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": allow_stdin,
                "stop_on_error": True,
            },
        )

    def disconnect(self) -> None:
        """Drop the link on purpose (as a sleeping laptop would): LINK_LOST."""
        self._call(lambda: self._link_lost("disconnected on purpose"))

    def drop_iopub(self) -> None:
        """Test hook: close the IOPub socket alone, as if it went first (ark issue 841).

        The kernel sees this frontend leave while its shell, control and stdin stay
        open; the session does not notice. Model-based tests use it to make a reply
        reach the kernel after the kernel has acted on the unsubscribe.
        """

        def drop() -> None:
            link = self._live_link()
            if link is not None:
                link.drop_iopub()

        self._call(drop)

    def reconnect(self) -> None:
        """New sockets, same session id; comms are reconciled once welcomed."""
        self._call(self._reconnect)

    def close(self) -> None:
        """End the session: comms close locally, sockets, thread and owned context go."""
        if self._loop.running:
            try:
                self._loop.call_sync(self._shutdown)
            except EndpointClosed:
                pass
            self._loop.stop(timeout=5.0)
        if self._owns_context and not self._context.closed:
            self._context.term()

    def __enter__(self) -> FrontendEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FrontendEndpoint {self.name} {self._session.state.value}>"

    # -- the CommTransport side (called by Comm, any thread) ----------------------

    def comm_send(
        self, comm: Comm, data: dict[str, Any], buffers: Sequence[bytes] | None = None
    ) -> None:
        self._call(lambda: self._comm_send(comm.comm_id, data, buffers))

    def comm_request(
        self, comm: Comm, method: str, params: Any = None, timeout: float | None = None
    ) -> Future[Any]:
        """Post the request to the I/O thread and return its future at once (no hand-off
        wait), so requests pipeline; what the I/O thread finds (undeliverable, held...)
        ends or holds that future. Posted work runs in order, so sends from one thread
        go out in the order they were made."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        future: Future[Any] = Future()
        if self._session.state not in _WAITING:
            # It goes out (or fails) as soon as the I/O thread sees it: from now on its
            # outcome comes from the machine, as for a request sent synchronously. Only
            # a request that may be held stays cancellable until it goes out.
            future.set_running_or_notify_cancel()
        work = functools.partial(self._post_request, comm.comm_id, method, params, deadline, future)
        if self._loop.in_loop_thread():
            work()
            return future
        if self._closed:
            raise EndpointClosed(f"{self.name} is closed")
        try:
            self._loop.post(work)
        except EndpointClosed as e:
            raise EndpointClosed(f"{self.name} is closed") from e
        return future

    def comm_close(self, comm: Comm, data: dict[str, Any] | None = None) -> None:
        self._call(lambda: self._close_comm(comm.comm_id, data))

    # =========================================================================
    # internals (I/O thread)
    # =========================================================================

    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed and not self._loop.in_loop_thread():
            raise EndpointClosed(f"{self.name} is closed")
        try:
            return self._loop.call_sync(fn)
        except (EndpointClosed, RuntimeError) as e:
            if not self._loop.running:
                raise EndpointClosed(f"{self.name} is closed") from e
            raise

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the I/O thread: now if we are on it, else soon; dropped once closed."""
        if self._loop.in_loop_thread():
            fn()
            return
        try:
            self._loop.post(fn)
        except EndpointClosed:
            log.debug("%s: closed; dropped work handed over late", self.name)

    def _trace(self, event: TraceEvent) -> None:
        try:
            self._user_sink(event)
        except Exception:
            # the transition happened; a failing sink must not undo what follows it
            log.exception("%s: the trace sink failed on %s", self.name, event)
        if event.machine == SESSION.name:
            with self._state_changed:
                self._state_changed.notify_all()

    def _fire(self, event: SessionEvent, msg_id: str | None = None) -> SessionState:
        return self._session.fire(event, msg_id=msg_id)

    # -- the link: sockets, proof of subscription, heartbeat --------------------------

    def _open_link(self) -> None:
        self._generation += 1
        self._link = Link(
            self._loop,
            self._context,
            self.connection,
            self._messenger,
            self.options,
            LinkEvents(
                message=self._on_message,
                bad_input=self._bad.note,
                proven=self._on_welcomed,
                lost=self._link_lost,
            ),
        )

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()
        self._reconcile_id = None

    def _live_link(self) -> Link | None:
        """The link if its sockets are open (whatever the session made of it yet)."""
        return self._link if self._link is not None and not self._link.closed else None

    def _send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> Message:
        link = self._live_link()
        assert link is not None, "sending needs a live link: the callers check the session"
        return link.send(channel, msg_type, content, parent, buffers)

    def _on_welcomed(self, msg_id: str) -> None:
        state = self._session.state
        if state not in (S.CONNECTING, S.RECONNECTING, S.READY, S.RECONCILING):
            return
        new = self._fire(SessionEvent.WELCOMED, msg_id)
        link = self._live_link()
        if link is not None and state in _WAITING:
            link.start_heartbeat()
        if state is S.CONNECTING:
            self._flush_held()
        elif state is S.RECONNECTING:
            assert new is S.RECONCILING
            # comm_info first: what waited goes out after it, so a request on a comm
            # the kernel no longer has is cancelled by the reply, not left to time out
            self._send_reconcile()
            self._flush_held()

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for item in held:
            self._release(item, deliver=True)

    def _link_lost(self, why: str) -> None:
        if self._session.state not in _LINKED:
            return
        log.info("%s: link lost: %s", self.name, why)
        self._fire(SessionEvent.LINK_LOST)
        self._close_link()
        for timer in self._no_reply_timers.values():
            timer.cancel()
        self._no_reply_timers.clear()
        self._requests.fail_all(RequestEvent.PEER_LOST)
        self._calls.fail_all(f"link lost: {why}")
        # Requests and sends that never went out cannot go out now; opens and closes
        # wait for the next link.
        held, self._held = self._held, []
        for item in held:
            if item.kind in ("open", "close"):
                self._held.append(item)
            else:
                self._release(item, deliver=False)
        for record in list(self._comms.values()):
            was = record.tracked.state
            if was in (CS.OPEN, CS.STALE):
                record.tracked.fire(FrontendCommEvent.LINK_LOST)
            if was is CS.OPEN:
                record.comm.handle_disconnected()
        if self.options.auto_reconnect:
            self._reconnect_timer = self._loop.call_later(
                self.options.reconnect_delay, self._auto_reconnect
            )

    def _auto_reconnect(self) -> None:
        self._reconnect_timer = None
        if self._session.state is S.LOST:
            self._reconnect()

    def _reconnect(self) -> None:
        if self._session.state is S.CLOSED:
            raise EndpointClosed(f"{self.name} is closed")
        if self._session.state is not S.LOST:
            self._link_lost("reconnect requested")
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
            self._reconnect_timer = None
        self._fire(SessionEvent.RECONNECT)
        try:
            self._open_link()
        except BaseException as e:
            # No new sockets: the session must not wait for a welcome that cannot come.
            self._link_lost(f"reconnect failed: {e!r}")
            raise

    def _send_reconcile(self) -> None:
        msg = self._send(self.options.reconcile_channel, "comm_info_request", {})
        self._reconcile_id = str(msg["msg_id"])

    def _on_reconcile_reply(self, msg: Message) -> None:
        self._reconcile_id = None
        content = msg["content"]
        listed = content.get("comms")
        if content.get("status") != "ok" or not isinstance(listed, dict):
            self._bad.note("comm_info_reply_unusable", repr(content)[:200])
            self._link_lost("comm_info_reply was not usable")
            return
        for comm_id, record in list(self._comms.items()):
            if record.tracked.state is not CS.STALE:
                continue
            if comm_id in listed:
                record.tracked.fire(FrontendCommEvent.CONFIRMED, msg_id=msg["msg_id"])
            else:
                record.tracked.fire(FrontendCommEvent.NOT_FOUND, msg_id=msg["msg_id"])
                self._forget_comm(record, None)
        self._adopt(listed, msg["msg_id"])
        self._fire(SessionEvent.RECONCILED, msg["msg_id"])
        self._flush_held()

    def _adopt(self, listed: dict[str, Any], msg_id: str) -> list[Comm]:
        """Adopt listed comms we never saw (their comm_open was lost to us).

        Only for targets registered here: comm_info lists every comm of the kernel,
        other frontends' too, and a frontend adopts what it knows how to drive (as
        a widget manager restores only widget comms). A comm remembered as closed is
        never revived by a reply that was already out of date.
        """
        adopted: list[Comm] = []
        for comm_id, info in listed.items():
            target_name = info.get("target_name") if isinstance(info, dict) else None
            handler = self._targets.get(str(target_name))
            if comm_id in self._comms or comm_id in self._closed_ids or handler is None:
                continue
            record = self._new_record(comm_id, str(target_name), persistent=False)
            record.tracked.fire(FrontendCommEvent.CONFIRMED, msg_id=msg_id)
            self._run_handler(functools.partial(handler, record.comm, None))
            adopted.append(record.comm)
        return adopted

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
        if self._session.state is not S.CLOSED:
            self._fire(SessionEvent.CLOSE)
        self._close_link()
        for timer in self._no_reply_timers.values():
            timer.cancel()
        self._no_reply_timers.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        held, self._held = self._held, []
        for item in held:
            self._release(item, deliver=False)
        for record in list(self._comms.values()):
            if record.tracked.state in (CS.OPEN, CS.STALE):
                record.tracked.fire(FrontendCommEvent.SESSION_CLOSED)
                self._forget_comm(record, None)
        self._requests.fail_all(RequestEvent.PEER_LOST)
        self._calls.fail_all("the endpoint closed")

    # -- receiving -----------------------------------------------------------------

    def _on_message(self, channel: str, msg: Message) -> None:
        if channel == "iopub":
            self._on_iopub(msg)
        elif channel == "stdin":
            self._on_stdin(msg)
        else:
            self._on_reply(msg)

    def _on_iopub(self, msg: Message) -> None:
        msg_type = msg["msg_type"]
        if msg_type == "iopub_welcome":
            if self._session.state in (S.READY, S.RECONCILING):
                self._fire(SessionEvent.WELCOMED, msg["msg_id"])
        if msg_type == "status":
            if msg["content"].get("execution_state") == "idle":
                self._on_idle(msg["parent_header"].get("msg_id"))
        elif msg_type == "comm_open":
            self._on_kernel_comm_open(msg)
        elif msg_type == "comm_msg":
            self._on_comm_msg(msg)
        elif msg_type == "comm_close":
            self._on_kernel_comm_close(msg)
        for observer in self._iopub_observers:
            self._run_handler(functools.partial(observer, msg))

    def _on_reply(self, msg: Message) -> None:
        parent_id = msg["parent_header"].get("msg_id")
        if parent_id is not None and parent_id == self._reconcile_id:
            self._on_reconcile_reply(msg)
        elif self._link is not None and self._link.probe.is_probe(parent_id):
            self._link.probe.on_probe_reply(msg)
        elif not self._calls.reply(msg):
            self._bad.note("reply_for_unknown_request", str(msg["msg_type"]))

    # -- comms -----------------------------------------------------------------------

    def _new_record(self, comm_id: str, target_name: str, persistent: bool) -> _CommRecord:
        tracked: Tracked[FrontendCommState, FrontendCommEvent] = Tracked(
            FRONTEND_COMM, comm_id, endpoint=self.name, sink=self._trace
        )
        comm = Comm(comm_id, target_name, persistent=persistent, tracked=tracked, transport=self)
        record = _CommRecord(comm, tracked)
        self._comms[comm_id] = record
        return record

    def _open_comm(self, target_name: str, data: Any, persistent: bool) -> Comm:
        if self._session.state is S.CLOSED:
            raise EndpointClosed(f"{self.name} is closed")
        record = self._new_record(uuid.uuid4().hex, target_name, persistent)
        if self._session.state in _LIVE:
            self._send_open(record, data)
        else:
            self._held.append(_Held("open", record, data=data))
        return record.comm

    def _send_open(self, record: _CommRecord, data: Any) -> None:
        comm = record.comm
        msg = self._send(
            "shell",
            "comm_open",
            {"comm_id": comm.comm_id, "target_name": comm.target_name, "data": data or {}},
        )
        record.tracked.fire(FrontendCommEvent.OPENED_BY_FRONTEND, msg_id=msg["msg_id"])

    def _comm_send(self, comm_id: str, data: Any, buffers: Sequence[bytes] | None) -> None:
        record = self._comms.get(comm_id)
        if record is None or record.tracked.state is CS.CLOSED:
            raise CannotSend(comm_id, "it is closed")
        if self._session.state in _LIVE and record.tracked.state in _USABLE:
            self._send("shell", "comm_msg", {"comm_id": comm_id, "data": data}, buffers=buffers)
        elif self._session.state in _WAITING:
            self._held.append(_Held("send", record, data=data, buffers=buffers))
        else:
            raise CannotSend(comm_id, f"the session is {self._session.state.value}")

    def _post_request(
        self,
        comm_id: str,
        method: str,
        params: Any,
        deadline: float | None,
        future: Future[Any],
    ) -> None:
        """The I/O thread's half of ``comm_request``: whatever fails ends ``future``."""
        try:
            self._comm_request(comm_id, method, params, deadline, future)
        except Exception as e:
            if not future.done():
                if not future.running():
                    future.set_running_or_notify_cancel()
                if not future.cancelled():
                    future.set_exception(e)
            log.exception("%s: request %r on comm %s failed", self.name, method, comm_id)

    def _comm_request(
        self, comm_id: str, method: str, params: Any, deadline: float | None, future: Future[Any]
    ) -> None:
        record = self._comms.get(comm_id)
        state = self._session.state
        if record is not None and state in _WAITING and record.tracked.state is not CS.CLOSED:
            if future.cancelled():
                return  # the caller gave up before it could go out
            item = _Held(
                "request", record, data=params, method=method, deadline=deadline, outer=future
            )
            self._held.append(item)
            if deadline is not None:
                # Its deadline passes before it could go out: nobody received it in time.
                self._loop.call_at(deadline, lambda: self._drop_held(item))
            return
        # It goes out, or fails, now: only a caller that cancelled first stops that.
        if not future.running() and not future.set_running_or_notify_cancel():
            return  # cancelled while it waited for the I/O thread: it never went out
        if record is not None and state in _LIVE and record.tracked.state in _USABLE:
            self._send_request(record, method, params, deadline, future)
        else:
            self._undeliverable(comm_id, method, future)

    def _drop_held(self, item: _Held) -> None:
        if item in self._held:
            self._held.remove(item)
            self._release(item, deliver=False)

    def _undeliverable(
        self, comm_id: str, method: str, future: Future[Any] | None = None
    ) -> Future[Any]:
        msg_id = self._messenger.new_msg_id()
        return self._requests.start(msg_id, comm_id, method, receiver_present=False, future=future)

    def _send_request(
        self,
        record: _CommRecord,
        method: str,
        params: Any,
        deadline: float | None,
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        link = self._live_link()
        assert link is not None
        comm_id = record.comm.comm_id
        msg = self._messenger.message("comm_msg", {"comm_id": comm_id, "data": None})
        msg_id = str(msg["msg_id"])
        msg["content"]["data"] = rpc_request(msg_id, method, params)
        try:
            link.send_message("shell", msg)
        except zmq.Again:
            # shell's queue is full: the kernel stopped reading, nobody receives this
            return self._requests.start(
                msg_id, comm_id, method, receiver_present=False, future=future
            )
        future = self._requests.start(
            msg_id, comm_id, method, receiver_present=True, deadline=deadline, future=future
        )
        if deadline is not None:
            self._arm_deadline()
        return future

    def _release(self, item: _Held, *, deliver: bool) -> None:
        record = item.record
        comm_id = record.comm.comm_id
        if item.kind == "open":
            if deliver and record.tracked.state is CS.NEW:
                self._send_open(record, item.data)
        elif item.kind == "close":
            if deliver:
                self._send_close(comm_id, item.data)
        elif item.kind == "send":
            if deliver and record.tracked.state in _USABLE:
                self._comm_send(comm_id, item.data, item.buffers)
        else:
            outer = item.outer
            assert outer is not None
            if outer.cancelled():
                return  # the caller gave up before it could go out
            if deliver and record.tracked.state in _USABLE:
                self._send_request(record, item.method, item.data, item.deadline, outer)
            else:
                self._undeliverable(comm_id, item.method, outer)

    def _close_comm(self, comm_id: str, data: Any) -> None:
        record = self._comms.get(comm_id)
        if record is None or record.tracked.state is CS.CLOSED:
            return
        if record.tracked.state is CS.NEW:
            # Never sent: forget the held open, and what was held for it.
            self._held = [h for h in self._held if h.record is not record]
            del self._comms[comm_id]
            return
        if self._session.state in _LIVE:
            self._send_close(comm_id, data)
        else:
            # No link, or not yet proven: the kernel hears of it once we are ready.
            self._held.append(_Held("close", record, data=data))
        record.tracked.fire(FrontendCommEvent.CLOSED_BY_FRONTEND)
        self._forget_comm(record, data)

    def _send_close(self, comm_id: str, data: Any) -> None:
        self._send("shell", "comm_close", {"comm_id": comm_id, "data": data or {}})

    def _forget_comm(self, record: _CommRecord, data: Any) -> None:
        """The comm closed (any side): cancel its requests, tell its handlers."""
        comm_id = record.comm.comm_id
        self._comms.pop(comm_id, None)
        self._closed_ids[comm_id] = None
        if len(self._closed_ids) > REMEMBER_CLOSED:
            self._closed_ids.popitem(last=False)
        self._requests.fail_comm(comm_id, RequestEvent.COMM_CLOSED)
        # what was held for it cannot go out now; its own held close still must
        held = [h for h in self._held if h.record is record and h.kind != "close"]
        self._held = [h for h in self._held if h.record is not record or h.kind == "close"]
        for item in held:
            self._release(item, deliver=False)
        record.comm.handle_closed(data)

    def _on_kernel_comm_open(self, msg: Message) -> None:
        content = msg["content"]
        comm_id = str(content["comm_id"])
        target_name = str(content.get("target_name", ""))
        if comm_id in self._comms or comm_id in self._closed_ids:
            # adopted from a comm_info_reply that overtook this comm_open: nothing new
            if comm_id not in self._comms:
                self._bad.note("comm_open_for_closed_comm", comm_id)
            return
        record = self._new_record(comm_id, target_name, persistent=False)
        record.tracked.fire(FrontendCommEvent.OPENED_BY_KERNEL, msg_id=msg["msg_id"])
        handler = self._targets.get(target_name)
        if handler is None:
            log.info("%s: no target %r here; closing comm %s", self.name, target_name, comm_id)
            self._close_comm(comm_id, None)
            return
        self._run_handler(lambda: handler(record.comm, content.get("data")))

    def _on_kernel_comm_close(self, msg: Message) -> None:
        content = msg["content"]
        comm_id = str(content["comm_id"])
        record = self._comms.get(comm_id)
        if record is None and comm_id not in self._closed_ids:
            # A comm we never saw (opened while we could not hear): remember it closed,
            # so an out-of-date comm_info_reply cannot make us adopt it.
            record = self._new_record(comm_id, "", persistent=False)
        if record is None or record.tracked.state not in (CS.NEW, CS.OPEN, CS.STALE):
            # Already closed here: the kernel tells every frontend when a comm closes,
            # the one that closed it included (SPEC.md). Expected, not bad input.
            log.debug("%s: comm_close for comm %s, already closed here", self.name, comm_id)
            return
        record.tracked.fire(FrontendCommEvent.CLOSED_BY_KERNEL, msg_id=msg["msg_id"])
        self._forget_comm(record, content.get("data"))

    def _on_comm_msg(self, msg: Message) -> None:
        content = msg["content"]
        data = content.get("data")
        # IOPub goes to every frontend: what the kernel says in answer to another
        # frontend's message (a reply, a message on a comm we do not hold) is that
        # frontend's business, not bad input.
        parent_session = msg["parent_header"].get("session")
        others = bool(parent_session) and parent_session != self.session_id
        if classify(data) is MessageKind.REPLY:
            if not others:
                self._on_rpc_reply(msg, data)
            return
        comm_id = str(content["comm_id"])
        record = self._comms.get(comm_id)
        if record is None or record.tracked.state not in (CS.OPEN, CS.STALE):
            if not others:
                self._bad.note("comm_msg_for_unknown_comm", comm_id)
            return
        channel = _KernelReplyChannel(self, record, msg, self._generation)
        dispatch = record.comm.handle_data(data, channel)
        if dispatch in (Dispatch.INVALID, Dispatch.DUPLICATE):
            self._bad.note(f"comm_msg_{dispatch.value}", repr(data)[:200])

    def _on_rpc_reply(self, msg: Message, data: dict[str, Any]) -> None:
        parent_id = str(msg["parent_header"].get("msg_id", ""))
        timer = self._no_reply_timers.pop(parent_id, None)
        if timer is not None:
            timer.cancel()
        outcome = self._requests.reply(parent_id, data)
        if outcome is ReplyOutcome.UNKNOWN:
            self._bad.note("reply_for_unknown_request", parent_id)
        elif outcome is ReplyOutcome.MALFORMED:
            self._bad.note("malformed_reply", repr(data)[:200])

    def _on_idle(self, parent_id: str | None) -> None:
        if not parent_id or not self._requests.is_pending(parent_id):
            return
        if parent_id in self._no_reply_timers:
            return

        def give_up() -> None:
            self._no_reply_timers.pop(parent_id, None)
            self._requests.fail(parent_id, RequestEvent.IDLE_WITHOUT_REPLY)

        self._no_reply_timers[parent_id] = self._loop.call_later(
            self.options.no_reply_grace, give_up
        )

    def _arm_deadline(self) -> None:
        when = self._requests.next_deadline()
        if self._deadline_timer is not None:
            if when is not None and self._deadline_timer.when == when:
                return
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if when is not None:
            self._deadline_timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._deadline_timer = None
        self._requests.expire(time.monotonic())
        self._arm_deadline()

    # -- answering the kernel --------------------------------------------------------

    def _send_comm_reply(
        self, record: _CommRecord, request: Message, reply: dict[str, Any], generation: int
    ) -> None:
        # A reply made after the link that carried the request was lost is dropped:
        # the kernel has already invalidated that request.
        if (
            generation != self._generation
            or self._live_link() is None
            or record.tracked.state is CS.CLOSED
        ):
            self._bad.note("reply_to_kernel_after_link_lost", record.comm.comm_id)
            return
        self._send(
            "shell", "comm_msg", {"comm_id": record.comm.comm_id, "data": reply}, parent=request
        )

    def _on_stdin(self, msg: Message) -> None:
        generation = self._generation

        def send(reply_type: str, content: Message) -> None:
            self._on_loop(lambda: self._send_stdin_reply(msg, reply_type, content, generation))

        if not self._stdin.answer(msg, send):
            self._bad.note("unknown_stdin_message", str(msg["msg_type"]))

    def _send_stdin_reply(
        self, request: Message, reply_type: str, content: Message, generation: int
    ) -> None:
        # An answer made after the link that carried the request was lost is dropped:
        # the kernel found the request unreachable when we left.
        if generation != self._generation or self._live_link() is None:
            self._bad.note("reply_to_kernel_after_link_lost", reply_type)
            return
        self._send("stdin", reply_type, content, parent=request)

    # -- plain kernel requests --------------------------------------------------------

    def _kernel_request(
        self, msg_type: str, content: dict[str, Any], channel: str
    ) -> Future[Message]:
        if channel not in ("shell", "control"):
            raise ValueError(f"requests go on shell or control, not {channel!r}")
        if self._live_link() is None:
            failed: Future[Message] = Future()
            failed.set_exception(KernelCallFailed("", msg_type, "no live link to the kernel"))
            return failed
        msg = self._send(channel, msg_type, content)
        return self._calls.add(str(msg["msg_id"]), msg_type)

    def _run_handler(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s: a handler failed", self.name)
