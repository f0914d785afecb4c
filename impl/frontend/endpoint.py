"""FrontendEndpoint: the reference client of one kernel.

The protocol lives in :class:`~commspec.impl.core.frontend.FrontendProtocol`;
this module is the shell around it: a thread-safe public API, and an I/O thread
(:class:`~commspec.impl.loop.IoLoop`) that owns every socket, turns what happens
on the wire (a frame set, a heartbeat timeout, a monitor's disconnect) into the
core's inputs, and carries out the effects the core returns: sends, links
opened and closed, timers, trace events, and the application's part
(``application.py``: comms, futures, stdin answers).

Public methods are thread-safe: they hand their input to the I/O thread and wait
for it, except ``Comm.request``: the calling thread hands its request to the
core and sends it on shell itself, holding the endpoint's lock, and returns its
future at once (no wait for the I/O thread: the hand-off was the costliest step
of an RPC). Everything the I/O thread does runs holding the same lock, and it
watches shell by its file descriptor, so the socket is only ever used by one
thread at a time. Futures are ``concurrent.futures.Future``, resolved on the
thread that ended them (the I/O thread, or the caller's for a request that could
not go out); ``asyncio.wrap_future`` makes them awaitable. Callbacks attached to
them and handlers registered on comms must not block.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import zmq

from commspec.impl.comm import Comm
from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.core.events import (
    Channel,
    CloseLink,
    CloseSession,
    Connect,
    Disconnect,
    DropIopub,
    Input,
    LinkLost,
    Message,
    OpenLink,
    Reconnect,
    Refused,
    Send,
    Sent,
    SessionChanged,
    StartRequest,
    WatchHeartbeat,
)
from commspec.impl.core.frontend import FrontendOptions, FrontendProtocol
from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.impl.errors import BadMessage, EndpointClosed
from commspec.impl.loop import IoLoop
from commspec.impl.runner import LoopRunner
from commspec.impl.wire import DEFAULT_MAX_MESSAGE_BYTES, Codec
from commspec.model.machines import SessionState
from commspec.model.trace import TraceSink, discard

from .application import CommOpenHandler, FrontendApplication
from .link import Link
from .stdin import InputHandler, RpcHandler

log = logging.getLogger("commspec.frontend")
T = TypeVar("T")

Connection = str | os.PathLike[str] | Mapping[str, Any] | ConnectionInfo


class FrontendEndpoint(LoopRunner):
    """A frontend session with one kernel; starts connecting on construction.

    ``policies``: the reconcile rules its protocol core follows (the reference ones by
    default); the tests give a broken variant to show the model-based test catches it.
    ``max_message_bytes``: what the kernel takes; a larger message is not sent (a
    request fails undeliverable, saying why), since the kernel would cut the link.
    """

    core: FrontendProtocol
    app: FrontendApplication

    def __init__(
        self,
        connection: Connection,
        *,
        sink: TraceSink = discard,
        options: FrontendOptions | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        session_id: str | None = None,
        insecure: bool = False,
        policies: FrontendPolicies | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if isinstance(connection, ConnectionInfo):
            self.connection = connection
        elif isinstance(connection, Mapping):
            self.connection = ConnectionInfo.from_dict(dict(connection), insecure=insecure)
        else:
            self.connection = read_connection_file(connection, insecure=insecure)
        self.options = options or FrontendOptions()
        #: the largest message sent or received, in bytes: what the kernel takes (its
        #: ``max_message_bytes``, the same default); a larger one is refused here
        self.max_message_bytes = max_message_bytes
        self.codec = Codec(self.connection.key.encode(),
                           signature_scheme=self.connection.signature_scheme,
                           session_id=session_id, max_message_bytes=max_message_bytes)
        self.session_id = self.codec.session_id
        self.core = FrontendProtocol(session_id=self.session_id,
                                      new_msg_id=self.codec.new_msg_id,
                                      options=self.options, policies=policies,
                                      tracing=sink is not discard)
        self.name = self.core.name
        self.app = FrontendApplication(self.core, self)
        self.sink = sink
        self.log = log
        self._owns_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        #: held by whichever thread moves the core or touches shell (see above)
        self._lock = threading.RLock()
        self._direct = threading.local()
        self._loop = IoLoop(f"commspec-{self.name[:24]}", log=log, guard=self._lock)
        self._state_changed = threading.Condition()
        self._link: Link | None = None
        self._link_error: BaseException | None = None
        LoopRunner.__init__(self)
        self.effects.update({
            Send: self._send,
            SessionChanged: self._session_changed,
            # sockets are made, watched and closed by the I/O thread only
            OpenLink: self._on_loop(self._open_link),
            CloseLink: self._on_loop(self._close_link),
            WatchHeartbeat: self._on_loop(self._watch_heartbeat),
            DropIopub: self._on_loop(self._drop_iopub),
        })
        self._closed = False
        self._loop.start()
        try:
            self._call(Connect())
        except BaseException:
            self.close()
            raise

    # =========================================================================
    # public API (any thread)
    # =========================================================================

    @property
    def state(self) -> SessionState:
        return self.core.state

    @property
    def bad_input(self) -> dict[str, int]:
        """How many bad inputs from the kernel were dropped, by reason."""
        return dict(self._read(self.core.bad.counts))

    @property
    def late_replies(self) -> int:
        return self.core.requests.late_replies

    @property
    def pending_count(self) -> int:
        return self.core.requests.pending_count

    @property
    def kernel_info(self) -> dict[str, Any] | None:
        """The kernel's kernel_info_reply content, once a probe got one."""
        return self._read(lambda: self.core.proof.kernel_info)

    @property
    def proven_by(self) -> str | None:
        """What proved the last subscription: "iopub_welcome", "kernel_info" or None yet."""
        return self._read(lambda: self.core.proof.proven_by)

    def wait_for_state(self, state: SessionState, timeout: float = 10.0) -> None:
        """Block until the session is in ``state``; TimeoutError names where it is stuck."""
        deadline = time.monotonic() + timeout
        with self._state_changed:
            while self.core.state is not state:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: session still {self.core.state.value!r} "
                        f"after {timeout} s, waiting for {state.value!r}"
                    )
                self._state_changed.wait(left)

    def wait_ready(self, timeout: float = 10.0) -> None:
        self.wait_for_state(SessionState.READY, timeout)

    def comms(self) -> dict[str, Comm]:
        """The comms this frontend holds open (or stale), by id."""
        return self._read(lambda: {i: self.app.comms[i] for i in self.core.held_comms()
                                   if i in self.app.comms})

    def open_comm(self, target_name: str, data: Any = None, *, persistent: bool = False) -> Comm:
        """Open a comm to ``target_name``; it goes out once the session is ready."""
        return self.app.open_comm(target_name, data, persistent)

    def adopt_comms(self, target_name: str | None = None) -> Future[list[Comm]]:
        """Ask comm_info and adopt the listed comms of registered targets we do not hold.

        A frontend that starts afresh uses it to re-attach to what a previous
        frontend left in the kernel (persistent comms: plots...); reconnecting does
        the same by itself while reconciling.
        """
        return self.app.adopt_comms(target_name)

    def register_target(self, target_name: str, handler: CommOpenHandler) -> None:
        """Accept comms the kernel opens for ``target_name``: ``handler(comm, data)``.

        A kernel comm_open for a target nobody registered is answered with
        comm_close, as a kernel answers an open for a target it does not know.
        """
        self.app.register_target(target_name, handler)

    def on_input_request(self, handler: InputHandler) -> None:
        """Answer stdin input_request: ``handler(prompt, password) -> str | Future[str]``."""
        self.app.stdin.input_handler = handler

    def on_rpc_request(self, handler: RpcHandler) -> None:
        """Answer stdin rpc_request (ark): ``handler(method, params) -> value | Future``."""
        self.app.stdin.rpc_handler = handler

    def on_iopub(self, observer: Callable[[Message], None]) -> None:
        """See every valid IOPub message, after the endpoint handled it (for tools, tests)."""
        self._read(lambda: self.app.observers.append(observer))

    def kernel_request(
        self, msg_type: str, content: dict[str, Any], *, channel: str = "shell"
    ) -> Future[Message]:
        """Send a plain Jupyter request; the future gets its reply message."""
        return self.app.kernel_request(msg_type, content, Channel(channel))

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
        self._call(Disconnect())

    def drop_iopub(self) -> None:
        """Test hook: close the IOPub socket alone, as if it went first (ark issue 841).

        The kernel sees this frontend leave while its shell, control and stdin stay
        open; the session does not notice. Model-based tests use it to make a reply
        reach the kernel after the kernel has acted on the unsubscribe.
        """
        self._call(DropIopub())

    def reconnect(self) -> None:
        """New sockets, same session id; comms are reconciled once welcomed."""
        self._call(Reconnect())
        error, self._link_error = self._link_error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """End the session: comms close locally, sockets, thread and owned context go."""
        if self._loop.running:
            try:
                self._loop.call_sync(lambda: self.feed(CloseSession()))
            except EndpointClosed:
                pass
            self._closed = True
            self._loop.stop(timeout=5.0)
        self._closed = True
        if self._owns_context and not self._context.closed:
            self._context.term()

    def __enter__(self) -> FrontendEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FrontendEndpoint {self.name} {self.core.state.value}>"

    # -- the CommTransport side (called by Comm, any thread) ----------------------

    def comm_send(
        self, comm: Comm, data: dict[str, Any], buffers: Sequence[bytes] | None = None
    ) -> None:
        self.app.comm_send(comm, data, buffers)

    def comm_request(
        self, comm: Comm, method: str, params: Any = None, timeout: float | None = None
    ) -> Future[Any]:
        return self.app.comm_request(comm, method, params, timeout)

    def comm_close(self, comm: Comm, data: dict[str, Any] | None = None) -> None:
        self.app.comm_close(comm, data)

    # -- CoreRunner (any thread) ------------------------------------------------------

    def submit(self, event: Input) -> None:
        if self._loop.in_loop_thread() or getattr(self._direct, "on", False):
            self.feed(event)
            return
        if self._closed or not self._loop.running:
            raise EndpointClosed(f"{self.name} is closed")
        if isinstance(event, StartRequest):
            self._feed_directly(event)
            return
        try:
            self._loop.post(lambda: self.feed(event))
        except EndpointClosed as e:
            raise EndpointClosed(f"{self.name} is closed") from e

    def _feed_directly(self, event: Input) -> None:
        """The caller's thread moves the core and sends, holding the lock the I/O
        thread holds for all it does."""
        with self._lock:
            self._direct.on = True
            try:
                self.feed(event)
            finally:
                self._direct.on = False


    def call(self, event: Input) -> None:
        self._call(event)






    def _on_loop(self, handler: Callable[[T], None]) -> Callable[[T], None]:
        """``handler``, run on the I/O thread: at once there, else posted to it."""
        def run(effect: T) -> None:
            if self._loop.in_loop_thread():
                handler(effect)
            else:
                self._loop.post(functools.partial(handler, effect))
        return run

    # =========================================================================
    # internals (I/O thread)
    # =========================================================================

    def _call(self, event: Input) -> None:
        if getattr(self._direct, "on", False):
            self.feed(event)  # a callback of our own direct send: we hold the lock
            return
        if self._closed and not self._loop.in_loop_thread():
            raise EndpointClosed(f"{self.name} is closed")
        try:
            self._loop.call_sync(lambda: self.feed(event))
        except EndpointClosed as e:
            raise EndpointClosed(f"{self.name} is closed") from e

    def _read(self, fn: Callable[[], T]) -> T:
        if getattr(self._direct, "on", False):
            return fn()
        try:
            return self._loop.call_sync(fn)
        except EndpointClosed:
            return fn()  # the thread is gone: nothing else touches the state



    def _send(self, effect: Send) -> None:
        link = self._link
        if link is None or link.closed:
            ok, detail = False, "no live link to the kernel"
        else:
            ok, detail = self._send_on(link, effect)
        if effect.confirm:
            self.feed(Sent(effect.msg_id, ok, detail))
        elif not ok:
            log.info("%s: %s not sent: %s", self.name, effect.msg_type, detail)

    def _send_on(self, link: Link, effect: Send) -> tuple[bool, str]:
        """Encode and send ``effect`` on ``link``: (whether it went out, why not)."""
        frames = self.codec.encode(effect.msg_id, effect.msg_type, effect.content,
                                   effect.parent)
        size = sum(map(len, frames)) + sum(memoryview(b).nbytes for b in effect.buffers)
        if size > self.max_message_bytes:
            # The kernel would refuse it, or cut the connection that carried it (a frame
            # over its limit) and with it everything else pending here.
            detail = f"{size:,} bytes, more than the kernel takes ({self.max_message_bytes:,})"
            log.warning("%s: %s not sent: %s", self.name, effect.msg_type, detail)
            return False, detail
        try:
            link.send(effect.channel, frames, effect.buffers)
        except zmq.Again:
            # Cannot happen: the DEALERs have no send limit (channels.py), so what the
            # kernel has not read yet waits. Were it to, nothing went out.
            return False, "the socket refused it (its queue is full)"
        finally:
            if effect.channel is Channel.SHELL and link.shell_pending():
                # the send took in the fd's signal of a reply that had arrived: the I/O
                # thread, which watches shell by its fd, would not wake for it
                self._loop.post(link.drain_shell)
        return True, ""

    def _on_frames(self, link: Link, channel: Channel, frames: list[bytes]) -> None:
        if link is not self._link:
            return
        try:
            received = self.codec.decode(frames, channel.value)
        except BadMessage as e:
            self.feed(Refused(channel, e.reason.value, e.detail))
            return
        self.feed(received)

    def _open_link(self, effect: OpenLink) -> None:
        try:
            self._link = Link(self._loop, self._context, self.connection, self.session_id,
                              self.options, on_frames=self._on_frames, on_lost=self._link_lost)
        except Exception as e:
            # No new sockets: the session must not wait for a welcome that cannot come.
            self._link = None
            self._link_error = e
            self.feed(LinkLost(f"reconnect failed: {e!r}"))

    def _link_lost(self, link: Link, why: str) -> None:
        if link is self._link:
            self.feed(LinkLost(why))

    def _close_link(self, effect: CloseLink) -> None:
        if self._link is not None:
            self._link.close()

    def _watch_heartbeat(self, effect: WatchHeartbeat) -> None:
        if self._link is not None:
            self._link.start_heartbeat()

    def _drop_iopub(self, effect: DropIopub) -> None:
        if self._link is not None:
            self._link.drop_iopub()





    def _session_changed(self, effect: SessionChanged) -> None:
        with self._state_changed:
            self._state_changed.notify_all()
