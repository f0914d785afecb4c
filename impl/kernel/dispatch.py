"""The kernel's protocol logic: what each input does, under the spec's rules.

The endpoint (endpoint.py) owns the sockets and the thread; it turns wire
happenings into calls here (a shell request, an XPUB frame, a stdin reply) and
carries out what this module asks through :class:`KernelIO` (publish, reply,
send on stdin, drain the inbound queues). Everything here runs on the I/O
thread. State moves only through the ``Tracked`` objects of presence, comms,
requests and stdin requests (impl/core).

Rules (SPEC.md):
- The drain rule: before applying any unsubscribe, every shell and stdin
  message already received is handled, so a reply that reached the kernel
  before the disconnect always resolves its request.
- Departures: when a frontend's presence topic goes, the comms it owns are
  lost (persistent: detached; default: closed, comm_close published, cleanup
  handlers run), requests on them invalidated, stdin requests to it
  unreachable. When the last subscription goes: the same for all.
- A kernel request nobody can receive fails at once (undeliverable); a reply
  for an ended request is a late reply: traced, counted, never delivered.
- Every shell and control request is bracketed by busy/idle parented to it; a
  comm RPC's reply comes before its idle, a deferred reply's idle after it.
- Bad input is counted by reason, logged once, and changes nothing; no error
  raised while handling one input (an InvalidTransition included) escapes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from commspec.model.errors import InvalidTransition
from commspec.model.machines import (
    KernelCommEvent,
    KernelCommState,
    RequestEvent,
    StdinRequestEvent,
)
from commspec.model.trace import TraceSink

from ..comm import (
    INTERNAL_ERROR,
    Comm,
    CommTransport,
    Dispatch,
    MessageKind,
    classify,
    rpc_error,
    rpc_request,
)
from ..core.comms import CommLoss, CommRecord, KernelComms
from ..core.presence import Presence, SubscriptionFrameError
from ..core.requests import STDIN_KINDS, PendingRequests, ReplyOutcome, StdinRequests
from ..errors import EndpointClosed, NoFrontend
from ..targets import KernelServices, TargetRegistry
from ..wire import PROTOCOL_VERSION, Received, Wire
from .badinput import BadInput

__all__ = ["CONTROL_TYPES", "SHELL_TYPES", "KernelDispatcher", "KernelIO"]

log = logging.getLogger("commspec.kernel")

ENDPOINT = "kernel"

SHELL_TYPES = frozenset(
    {"kernel_info_request", "comm_info_request", "comm_open", "comm_msg", "comm_close",
     "shutdown_request"}
)
CONTROL_TYPES = frozenset(
    {"kernel_info_request", "comm_info_request", "shutdown_request", "interrupt_request"}
)

Message = dict[str, Any]
Callback = Callable[[], None]


class KernelIO(Protocol):
    """What the dispatcher asks of the endpoint's sockets and thread."""

    def publish(self, msg_type: str, content: Message, parent: Message | None,
                topic: bytes | None = None, buffers: Sequence[bytes] | None = None) -> None:
        """Build and publish a message on IOPub."""

    def publish_message(self, msg: Message) -> None:
        """Publish a message already built (its msg_id is known)."""

    def publish_status(self, state: str, parent_header: Message) -> None: ...

    def reply(self, channel: str, received: Received, msg_type: str, content: Message) -> None:
        """Answer ``received`` on the channel it came from, to its sender."""

    def send_stdin(self, msg: Message, identity: bytes) -> bool:
        """Send on stdin to one frontend; False on EHOSTUNREACH."""

    def drain_inbound(self) -> int:
        """Handle every shell and stdin message already received; how many."""

    def run_soon(self, callback: Callback) -> None:
        """Run on the I/O thread: now if already on it (thread-safe)."""

    def post(self, callback: Callback) -> None:
        """Run on the I/O thread after the current work (thread-safe)."""

    def request_stop(self) -> None:
        """End the I/O thread after the work already posted."""


@dataclass
class _Current:
    """The shell/control request being handled: its sender and header."""

    identities: list[bytes]
    header: Message


class _CommExchange:
    """Where the answer to one comm RPC from a frontend goes (a ReplyChannel)."""

    __slots__ = ("comm_id", "deferred", "dispatcher", "done", "request")

    def __init__(self, dispatcher: KernelDispatcher, comm_id: str, request: Message) -> None:
        self.dispatcher = dispatcher
        self.comm_id = comm_id
        self.request = request
        self.deferred = False  # set once handle_data returned DEFERRED
        self.done = False

    def reply(self, payload: Message) -> None:
        self._run(lambda: self.dispatcher.finish_exchange(self, payload))

    def abandon(self) -> None:
        self._run(lambda: self.dispatcher.finish_exchange(self, None))

    def _run(self, callback: Callable[[], None]) -> None:
        try:
            self.dispatcher.io.run_soon(callback)
        except EndpointClosed:
            # The kernel stopped first: nobody is left to answer, and the
            # handler's thread must not fail because of it.
            log.info("kernel: answer on comm %s dropped: the kernel has stopped", self.comm_id)


class KernelDispatcher:
    """The kernel's state and the handlers that move it (I/O thread only)."""

    def __init__(
        self,
        *,
        io: KernelIO,
        wire: Wire,
        sink: TraceSink,
        targets: TargetRegistry,
        services: KernelServices,
        transport: CommTransport,
        remember: int,
    ) -> None:
        self.io = io
        self.wire = wire
        self.targets = targets
        self.services = services
        self.transport = transport
        self.presence = Presence(ENDPOINT, sink)
        self.comms = KernelComms(ENDPOINT, sink, remember_closed=remember)
        self.pending = PendingRequests(ENDPOINT, sink, remember=remember)
        self.stdin = StdinRequests(ENDPOINT, sink, remember=remember)
        self.bad = BadInput()
        #: the shell/control request being handled, and the last sender of one
        self.current: _Current | None = None
        self.last_sender: list[bytes] | None = None
        self.shut_down = False
        self.shutdown_requested = threading.Event()

    def guard(self, fn: Callable[[], Any], received: Received | None) -> Any:
        """The dispatch boundary: nothing raised by one input ends the I/O thread."""
        what = f"{received.msg_type} {received.msg_id}" if received is not None else "input"
        try:
            return fn()
        except InvalidTransition as e:
            self.bad.note("invalid_transition", f"{what}: {e}")
        except Exception as e:
            log.exception("kernel: handling %s failed", what)
            self.bad.note("handler_error", f"{what}: {type(e).__name__}: {e}")
        return None

    # =====================================================================
    # presence
    # =====================================================================

    def on_subscription_frame(self, frame: bytes) -> None:
        try:
            subscribed, topic = Presence.parse(frame)
        except SubscriptionFrameError as e:
            self.bad.note("iopub_frame", str(e))
            return
        if not subscribed:
            drained = self.io.drain_inbound()
            if drained:
                log.debug("kernel: drained %d message(s) before an unsubscribe", drained)
        try:
            change = self.presence.apply(frame)
        except SubscriptionFrameError as e:
            self.bad.note("unknown_unsubscribe", str(e))
            return
        if subscribed:
            self.io.publish(
                "iopub_welcome", {"subscription": topic.decode("utf-8", "replace")}, None, topic
            )
            peer = change.peer if change.peer_arrived else None
            for record in self.comms.back(peer, self.presence.is_known_peer):
                log.info("kernel: comm %s re-attached", record.comm_id)
            return
        if change.peer_departed and change.peer is not None:
            self._peer_left(change.peer)
        if change.emptied:
            self._everyone_left()

    def _peer_left(self, peer: bytes) -> None:
        log.info("kernel: frontend %s left", peer.decode("utf-8", "replace"))
        self._apply_losses(self.comms.lost_with_peer(peer, self.presence.is_known_peer))
        self.stdin.fail_peer(peer, "its frontend left (its presence topic was unsubscribed)")

    def _everyone_left(self) -> None:
        log.info("kernel: the last IOPub subscriber left")
        self._apply_losses(self.comms.lost_all())
        self.pending.fail_all(RequestEvent.PEER_LOST, "no frontend is subscribed any more")
        self.stdin.fail_all(StdinRequestEvent.PEER_LOST, "no frontend is subscribed any more")

    def _apply_losses(self, losses: list[CommLoss]) -> None:
        for loss in losses:
            comm = loss.record.comm
            self.pending.fail_comm(comm.comm_id, RequestEvent.PEER_LOST, "its frontend left")
            comm.handle_disconnected()
            if loss.closed:
                self.io.publish("comm_close", {"comm_id": comm.comm_id, "data": {}}, None)
                comm.handle_closed({})

    def _receiver_present(self, record: CommRecord) -> bool:
        if record.state is not KernelCommState.OPEN:
            return False
        owner = self.comms.owner(record, self.presence.is_known_peer)
        if owner is None:
            return self.presence.subscriptions > 0
        return self.presence.is_live_peer(owner)

    def _owner_gone(self, identity: bytes) -> bool:
        return self.presence.has_departed(identity) or self.presence.subscriptions == 0

    # =====================================================================
    # shell and control requests
    # =====================================================================

    def on_request(self, channel: str, received: Received) -> None:
        """A shell or control request: bracketed by busy/idle, dispatched by msg_type."""
        allowed = SHELL_TYPES if channel == "shell" else CONTROL_TYPES
        header = received.msg["header"]
        self.current = _Current(received.identities, header)
        if received.identities:
            self.last_sender = received.identities
        self.io.publish_status("busy", header)
        idle_now = True
        try:
            if received.msg_type not in allowed:
                self.bad.note(
                    "unknown_msg_type", f"{received.msg_type!r} on {channel} ({received.msg_id})"
                )
            else:
                handler = getattr(self, "_on_" + received.msg_type)
                result = self.guard(lambda: handler(channel, received), received)
                idle_now = result is not False
        finally:
            self.current = None
            if idle_now:
                self.io.publish_status("idle", header)

    def _on_kernel_info_request(self, channel: str, received: Received) -> None:
        self.io.reply(channel, received, "kernel_info_reply", {
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "implementation": "commspec",
            "implementation_version": "0.1.0",
            "language_info": {
                "name": "commspec",
                "version": "0.1.0",
                "mimetype": "text/plain",
                "file_extension": ".txt",
            },
            "banner": "commspec reference kernel: comm RPCs that survive disconnection",
            "help_links": [],
            "supported_features": ["iopub_welcome"],
        })

    def _on_comm_info_request(self, channel: str, received: Received) -> None:
        wanted = received.content.get("target_name")
        comms = {
            r.comm_id: {"target_name": r.comm.target_name}
            for r in self.comms
            if not wanted or r.comm.target_name == wanted
        }
        self.io.reply(channel, received, "comm_info_reply", {"status": "ok", "comms": comms})

    def _on_shutdown_request(self, channel: str, received: Received) -> None:
        restart = bool(received.content.get("restart", False))
        self.io.reply(channel, received, "shutdown_reply", {"status": "ok", "restart": restart})
        self.shutdown_requested.set()
        # After this request's idle: close everything, then end the thread.
        self.io.post(self.shutdown_everything)
        self.io.post(self.io.request_stop)

    def _on_interrupt_request(self, channel: str, received: Received) -> None:
        self.stdin.fail_all(StdinRequestEvent.INTERRUPT, "interrupt_request")
        self.io.reply(channel, received, "interrupt_reply", {"status": "ok"})

    # -- comms ---------------------------------------------------------------

    def _on_comm_open(self, channel: str, received: Received) -> None:
        content = received.content
        comm_id, target_name = content.get("comm_id"), content.get("target_name")
        if not isinstance(comm_id, str) or not comm_id or not isinstance(target_name, str):
            self.bad.note("invalid_content", f"comm_open without comm_id/target_name "
                          f"({received.msg_id})")
            return
        if self.comms.known(comm_id):
            self.bad.note("reused_comm_id", f"comm_open for comm {comm_id}, already used")
            return
        tracked = self.comms.new_tracked(comm_id)
        target = self.targets.get(target_name)
        if target is None:
            # Count before answering: whoever sees the answer must see the count.
            self.bad.note("unknown_target", f"comm_open for target {target_name!r}: refused")
            self.comms.reject(tracked, received.msg_id)
            self.io.publish("comm_close", {"comm_id": comm_id, "data": {}}, received.msg)
            return
        opener = received.identities[0] if received.identities else b""
        comm = Comm(comm_id, target_name, persistent=target.persistent, tracked=tracked,
                    transport=self.transport)
        record = self.comms.opened(comm, tracked, opener, received.msg_id)
        data = content.get("data")
        try:
            target.factory(comm, data if isinstance(data, dict) else {}, self.services)
        except Exception as e:
            log.exception("kernel: target %r failed to set up comm %s", target_name, comm_id)
            self.close_by_kernel(comm_id, {"error": f"{type(e).__name__}: {e}"})
            return
        if self._owner_gone(opener):
            # Its frontend left before its comm_open was read: lost at once.
            self._apply_losses([self.comms.lose(record, received.msg_id)])

    def _on_comm_msg(self, channel: str, received: Received) -> bool:
        content = received.content
        comm_id, data = content.get("comm_id"), content.get("data")
        if not isinstance(comm_id, str):
            self.bad.note("invalid_content", f"comm_msg without comm_id ({received.msg_id})")
            return True
        if classify(data) is MessageKind.REPLY:
            self._on_comm_reply(received, data)
            return True
        record = self.comms.get(comm_id)
        if record is None:
            self._note_missing_comm(comm_id, received)
            return True
        exchange = _CommExchange(self, comm_id, received.msg)
        dispatch = record.comm.handle_data(data, exchange)
        if dispatch is Dispatch.INVALID:
            self.bad.note("invalid_request", f"comm {comm_id}: not a JSON-RPC message "
                          f"({received.msg_id})")
        elif dispatch is Dispatch.DUPLICATE:
            self.bad.note("duplicate_request_id", f"comm {comm_id}: request id "
                          f"{data.get('id')!r} is already in flight ({received.msg_id})")
        elif dispatch is Dispatch.DEFERRED:
            exchange.deferred = True
            return False  # the idle follows the reply
        return True

    def _on_comm_reply(self, received: Received, data: Message) -> None:
        parent = received.parent_msg_id
        outcome = self.pending.reply(parent, data) if parent else ReplyOutcome.UNKNOWN
        if outcome is ReplyOutcome.LATE:
            log.info("kernel: late reply to request %s dropped (it had ended)", parent)
        elif outcome is ReplyOutcome.UNKNOWN:
            self.bad.note("unknown_reply", f"reply to {parent!r}, which the kernel never sent "
                          f"or has forgotten ({received.msg_id})")
        elif outcome is ReplyOutcome.MALFORMED:
            self.bad.note("malformed_reply", f"reply to {parent}: neither result nor error")

    def _on_comm_close(self, channel: str, received: Received) -> None:
        comm_id = received.content.get("comm_id")
        record = self.comms.get(comm_id) if isinstance(comm_id, str) else None
        if record is None:
            self._note_missing_comm(str(comm_id), received)
            return
        self.comms.close(record, KernelCommEvent.CLOSED_BY_FRONTEND, received.msg_id)
        self.pending.fail_comm(record.comm_id, RequestEvent.COMM_CLOSED, "the frontend closed it")
        # Tell every other frontend: the comm was broadcast (kernel-opened) or may have
        # been adopted through comm_info, and a frontend must hear that it closed.
        self.io.publish("comm_close", {"comm_id": record.comm_id, "data": {}}, received.msg)
        data = received.content.get("data")
        record.comm.handle_closed(data if isinstance(data, dict) else {})

    def _note_missing_comm(self, comm_id: str, received: Received) -> None:
        reason = "closed_comm" if self.comms.recently_closed(comm_id) else "unknown_comm"
        self.bad.note(reason, f"{received.msg_type} for comm {comm_id} ({received.msg_id})")

    def finish_exchange(self, exchange: _CommExchange, payload: Message | None) -> None:
        if exchange.done:
            return
        exchange.done = True
        parent = exchange.request
        if payload is not None:
            try:
                self.io.publish(
                    "comm_msg", {"comm_id": exchange.comm_id, "data": payload}, parent
                )
            except (TypeError, ValueError) as e:
                # The handler answered with something JSON cannot carry: the caller
                # still gets one outcome, an internal error, not a silent NoReply.
                log.warning("kernel: the answer on comm %s cannot be sent: %r",
                            exchange.comm_id, e)
                error = rpc_error(payload.get("id"), INTERNAL_ERROR,
                                  f"the handler's answer cannot be encoded: {e}")
                self.io.publish(
                    "comm_msg", {"comm_id": exchange.comm_id, "data": error}, parent
                )
        if exchange.deferred:
            self.io.publish_status("idle", parent["header"])

    # -- kernel-initiated -------------------------------------------------------

    def open_kernel_comm(
        self, target_name: str, data: Message, persistent: bool, comm_id: str | None,
        owner: bytes | None = None,
    ) -> Comm:
        if self.presence.subscriptions == 0:
            raise NoFrontend("no frontend is subscribed to IOPub: nobody would see the comm")
        if owner is None and self.current is not None and self.current.identities:
            # Opened while handling a frontend's request (a plot from its execute):
            # that frontend owns it, so its departure alone settles the comm.
            owner = self.current.identities[0]
        comm_id = comm_id or uuid.uuid4().hex
        tracked = self.comms.new_tracked(comm_id)
        comm = Comm(comm_id, target_name, persistent=persistent, tracked=tracked,
                    transport=self.transport)
        self.comms.opened(comm, tracked, owner, None, by_kernel=True)
        parent = self.current.header if self.current is not None else None
        self.io.publish(
            "comm_open", {"comm_id": comm_id, "target_name": target_name, "data": data},
            {"header": parent} if parent else None,
        )
        return comm

    def close_by_kernel(self, comm_id: str, data: Message) -> None:
        record = self.comms.get(comm_id)
        if record is None:
            return  # closed already: closing twice is not an error for the caller
        self.comms.close(record, KernelCommEvent.CLOSED_BY_KERNEL, None)
        self.pending.fail_comm(comm_id, RequestEvent.COMM_CLOSED, "the kernel closed it")
        self.io.publish("comm_close", {"comm_id": comm_id, "data": data}, None)
        record.comm.handle_closed(data)

    def send_comm_data(
        self, comm: Comm, data: Message, buffers: Sequence[bytes] | None, parent: Message | None
    ) -> None:
        record = self.comms.get(comm.comm_id)
        if record is None or record.state is not KernelCommState.OPEN:
            log.info("kernel: comm %s is not open; message not sent", comm.comm_id)
            return
        self.io.publish("comm_msg", {"comm_id": comm.comm_id, "data": data},
                        {"header": parent} if parent else None, buffers=buffers)

    def start_comm_request(
        self,
        comm: Comm,
        method: str,
        params: Any,
        timeout: float | None,
        parent: Message | None,
        future: Future[Any],
    ) -> None:
        try:
            msg = self.wire.message(
                "comm_msg", {"comm_id": comm.comm_id}, {"header": parent} if parent else None
            )
            msg_id: str = msg["header"]["msg_id"]
            msg["content"]["data"] = rpc_request(msg_id, method, params)
            record = self.comms.get(comm.comm_id)
            present = record is not None and self._receiver_present(record)
            deadline = time.monotonic() + timeout if timeout is not None else None
            self.pending.start(msg_id, comm.comm_id, method, receiver_present=present,
                               deadline=deadline, future=future)
            if present:
                self.io.publish_message(msg)
        except Exception as e:
            if not future.done():
                future.set_exception(e)
            raise

    def start_stdin(
        self,
        msg_type: str,
        content: Message,
        identity: bytes,
        parent: Message | None,
        future: Future[Any],
    ) -> None:
        try:
            msg = self.wire.message(msg_type, content, {"header": parent} if parent else None)
            msg_id: str = msg["header"]["msg_id"]
            if self._owner_gone(identity):
                reached, detail = False, "its frontend has left"
            else:
                reached = self.io.send_stdin(msg, identity)
                detail = "EHOSTUNREACH: the stdin socket has no such peer"
            self.stdin.start(msg_id, identity, msg_type, reached=reached, detail=detail,
                             future=future)
        except Exception as e:
            if not future.done():
                future.set_exception(e)
            raise

    def on_stdin_reply(self, received: Received) -> None:
        if received.msg_type not in STDIN_KINDS.values():
            self.bad.note("unknown_msg_type", f"{received.msg_type!r} on stdin")
            return
        parent = received.parent_msg_id
        outcome = (
            self.stdin.reply(parent, received.msg_type, received.content)
            if parent else ReplyOutcome.UNKNOWN
        )
        if outcome is ReplyOutcome.LATE:
            log.info("kernel: late stdin reply to %s dropped (it had ended)", parent)
        elif outcome is ReplyOutcome.UNKNOWN:
            self.bad.note("unknown_reply", f"{received.msg_type} to {parent!r}, not a request "
                          "the kernel has pending or remembers")
        elif outcome is ReplyOutcome.MALFORMED:
            self.bad.note("malformed_reply", f"{received.msg_type} to {parent}")

    # -- shutdown --------------------------------------------------------------

    def shutdown_everything(self) -> None:
        if self.shut_down:
            return
        self.shut_down = True
        for record in self.comms:
            self.guard(partial(self._close_at_shutdown, record), None)
        self.pending.fail_all(RequestEvent.COMM_CLOSED, "the kernel shut down")
        self.stdin.fail_all(StdinRequestEvent.INTERRUPT, "the kernel shut down")

    def _close_at_shutdown(self, record: CommRecord) -> None:
        self.comms.close(record, KernelCommEvent.KERNEL_SHUTDOWN, None)
        self.pending.fail_comm(record.comm_id, RequestEvent.COMM_CLOSED, "the kernel shut down")
        self.io.publish("comm_close", {"comm_id": record.comm_id, "data": {}}, None)
        record.comm.handle_closed({})
