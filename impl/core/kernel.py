"""The kernel's protocol core: inputs in, effects out, no I/O (SPEC.md's kernel rules).

Rules:
- ``handle(input, now)`` moves state through the declared machines (presence,
  kernel comms, requests, stdin requests) and returns the effects that follow,
  in order. The caller owns the sockets, the threads and the clock.
- Every shell and control request is bracketed by ``status: busy`` and
  ``status: idle`` parented to it. A comm RPC from a frontend is handed to the
  application (``CommData`` with an exchange); its idle goes out only after the
  application's ``Answer`` (so a reply always precedes its idle), or when its
  comm closes first. Every request gets a reply: the standard ones this kernel does
  not serve (execute...) and unknown ``*_request`` types an error reply
  (``unserved.py``).
- Disconnection is an input like any other: unsubscribes (``SubscriptionFrames``)
  carry the messages received before them, and the policies (``policies.py``:
  drain, frontend_lost, comm_lost, keep_detached, receiver_present, late_reply)
  decide what it does.
- The notification ``commspec/adopt`` on a comm is the kernel's own, never the
  target's: a detached comm becomes the sender's (``policies.adopt``) if the
  sender is a commspec peer that is present; otherwise nothing changes.
- A peer's bad input raises :class:`RemoteProtocolError` before any state
  moves; the input boundary counts it and carries on. An event a machine does
  not allow, caused by a peer's message, is counted the same way. An application
  call the state does not allow raises to the caller (NoFrontend, ValueError).
  Anything else is our own bug and propagates; the effects produced before it
  are still returned by ``take_effects``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from commspec.model.errors import InvalidTransition
from commspec.model.machines import (
    KernelCommEvent,
    KernelCommState,
    RequestEvent,
    StdinRequestEvent,
)
from commspec.model.messages import ADOPT_METHOD, FEATURE, SPEC_VERSION

from ..errors import NoFrontend
from .badinput import BadInput, RemoteProtocolError
from .comms import DEFAULT_MAX_DETACHED, CommRecord, KernelComms, check_max_detached
from .connections import ConnectionGone, PeerConnectionMap
from .events import (
    Answer,
    Channel,
    CloseComm,
    CommClosed,
    CommData,
    CommLost,
    CommOpened,
    Header,
    Interrupt,
    OpenComm,
    Overheard,
    PeerConnectionLost,
    PeerConnectionMade,
    PeerConnections,
    Received,
    Refused,
    Send,
    SendCommData,
    Sent,
    Shutdown,
    ShutdownRequested,
    StartRequest,
    StartStdinRequest,
    SubscriptionFrames,
    TimerFired,
    TimerKind,
)
from .jsonrpc import (
    COMM_CLOSED_CODE,
    INVALID_REQUEST,
    MessageKind,
    classify,
    reply_id,
    rpc_error,
    rpc_request,
)
from .policies import KernelPolicies
from .presence import PEER_TOPIC_PREFIX, Presence, SubscriptionFrameError
from .protocol import ProtocolCore
from .requests import STDIN_KINDS, PendingRequests, ReplyOutcome, StdinRequests
from .unserved import UNSERVED, error_content, reply_type

__all__ = ["CONTROL_TYPES", "ENDPOINT", "KERNEL_INFO", "SHELL_TYPES", "KernelProtocol",
           "welcome_subscription"]


log = logging.getLogger("commspec.kernel")

ENDPOINT = "kernel"
PROTOCOL_VERSION = "5.5"

SHELL_TYPES = frozenset(
    {"kernel_info_request", "comm_info_request", "comm_open", "comm_msg", "comm_close",
     "shutdown_request"}
)
CONTROL_TYPES = frozenset(
    {"kernel_info_request", "comm_info_request", "shutdown_request", "interrupt_request"}
)

KERNEL_INFO: dict[str, Any] = {
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
    "supported_features": ["iopub_welcome", FEATURE],
    FEATURE: {"version": SPEC_VERSION, "peer_topic_prefix": PEER_TOPIC_PREFIX.decode()},
}

def welcome_subscription(topic: bytes) -> str | None:
    """What JEP 65's welcome for a subscribe to ``topic`` names (it goes out on that
    topic): none for a topic that is not UTF-8 (JEP 65), and a peer topic's without its
    tag (its tag is its proof)."""
    try:
        return Presence.public_name(topic).decode("utf-8")
    except UnicodeDecodeError:
        return None


#: the target registry as the core sees it: a target's kind (persistent?) or None
TargetKind = Callable[[str], bool | None]


@dataclass(eq=False, slots=True)
class _Exchange:
    """An incoming comm RPC awaiting the application's answer."""

    comm_id: str
    request: Header  # the request's header: the parent of the reply and the idle
    requester: bytes | None  # who asked: once it has left, nobody awaits the answer


class KernelProtocol(ProtocolCore):
    """One kernel's protocol state. Drive it from one thread at a time."""

    role = "kernel"

    def __init__(
        self,
        *,
        session_id: str,
        key: bytes,
        targets: TargetKind,
        new_msg_id: Callable[[], str],
        policies: KernelPolicies | None = None,
        tracing: bool = False,
        remember: int = 10_000,
        max_detached: int = DEFAULT_MAX_DETACHED,
    ) -> None:
        super().__init__(tracing=tracing)
        self.session_id = session_id
        #: how many detached comms are kept (``policies.keep_detached``); past that the
        #: one detached longest is evicted
        self.max_detached = check_max_detached(max_detached)
        self.policies = policies if policies is not None else KernelPolicies()
        self._targets = targets
        self._new_msg_id = new_msg_id
        sink, clock = self.sink, self.clock
        self.presence = Presence(ENDPOINT, sink, clock, key=key)
        self.comms = KernelComms(ENDPOINT, sink, clock, remember_closed=remember)
        emit = self._emit
        self.requests = PendingRequests(ENDPOINT, emit, sink=sink, clock=clock,
                                        remember=remember)
        self.stdin = StdinRequests(ENDPOINT, emit, sink=sink, clock=clock, remember=remember)
        self.bad = BadInput(ENDPOINT, log)
        #: which shell/stdin connection each frontend was last heard from on
        self.connections = PeerConnectionMap(remember)
        self._batch_bound = False
        #: the identity of the last frontend that sent a shell or control request
        self.last_sender: bytes | None = None
        self.shut_down = False
        #: comm RPCs dropped unanswered because their requester left
        self.abandoned_answers = 0
        #: execute_requests answered (not run: this kernel runs no code)
        self.execution_count = 0
        self._exchanges: dict[int, _Exchange] = {}
        self._next_exchange = 0
        self._stdin_sending: dict[str, tuple[bytes, str]] = {}
        self._topics: dict[str, bytes] = {}
        self._handlers = {
            Received: self._on_received,
            Refused: self._on_refused,
            SubscriptionFrames: self._on_subscriptions,
            Overheard: self._on_overheard,
            PeerConnections: self._on_connections,
            PeerConnectionMade: self._on_connection_change,
            PeerConnectionLost: self._on_connection_change,
            TimerFired: self._on_timer,
            Sent: self._on_sent,
            OpenComm: self._open_comm,
            CloseComm: self._close_by_kernel,
            SendCommData: self._send_comm_data,
            StartRequest: self._start_request,
            StartStdinRequest: self._start_stdin,
            Answer: self._on_answer,
            Shutdown: self._shutdown,
            Interrupt: self._interrupt,
        }
        self._requests_by_type: dict[str, Callable[[Received], bool]] = {
            "kernel_info_request": self._on_kernel_info_request,
            "comm_info_request": self._on_comm_info_request,
            "shutdown_request": self._on_shutdown_request,
            "interrupt_request": self._on_interrupt_request,
            "comm_open": self._on_comm_open,
            "comm_msg": self._on_comm_msg,
            "comm_close": self._on_comm_close,
        }

    # =====================================================================
    # the interface
    # =====================================================================

    def take(self, item: Received | Refused) -> None:
        """Handle a message that had already arrived (the drain rule's batch)."""
        if isinstance(item, Refused):
            self._on_refused(item)
        else:
            self._on_received(item)

    def settles(self, item: Received | Refused) -> bool:
        """Whether a message of a drain batch settles a request or a comm (SPEC, "The
        drain rule"): a reply to a request the kernel made, a comm_close for a comm it
        holds, a stdin reply. Read from the message alone: nothing runs."""
        if isinstance(item, Refused):
            return False
        if item.channel is Channel.STDIN:
            return item.msg_type in STDIN_KINDS.values()
        if item.msg_type == "comm_close":
            return self.comms.get(str(item.content.get("comm_id"))) is not None
        if item.msg_type == "comm_msg":
            parent = item.parent_msg_id
            return (classify(item.content.get("data")) is MessageKind.REPLY
                    and parent is not None and self.requests.knows(parent))
        return False

    def comm_state(self, comm_id: str) -> KernelCommState:
        record = self.comms.get(comm_id)
        return record.state if record is not None else KernelCommState.CLOSED

    def lose_comm(self, record: CommRecord, *, persistent: bool) -> None:
        """Its owner left: FRONTEND_LOST with the fact ``persistent``; its requests fail;
        the application hears of the loss, and of the close if it closed. A comm that
        detached may push the longest detached one past the bound: that one is evicted."""
        self.comms.lose(record, persistent=persistent)
        self.requests.fail_comm(record.comm_id, RequestEvent.PEER_LOST, "its frontend left")
        self._out.append(CommLost(record.comm_id))
        if record.closed:
            self._closed(record, {}, None)
            return
        keep = self.policies.keep_detached(self)
        for evicted in self.comms.evict_beyond(keep):
            log.info("kernel: comm %s evicted: more than %d comms are detached",
                     evicted.comm_id, keep)
            # Its requests failed when it detached; any sent since was undeliverable.
            self.requests.fail_comm(evicted.comm_id, RequestEvent.COMM_CLOSED,
                                    "it was evicted: too many comms are detached")
            self._closed(evicted, {}, None)

    def comm_owner(self, comm_id: str) -> bytes | None:
        """The frontend that owns an open or detached comm; None when every subscriber
        does, or the kernel does not hold it."""
        record = self.comms.get(comm_id)
        if record is None:
            return None
        return self.comms.owner(record, self.presence.is_known_peer)

    def owner_gone(self, identity: bytes) -> bool:
        """The frontend has left, or nobody at all is subscribed."""
        return self.presence.has_departed(identity) or self.presence.subscriptions == 0

    # =====================================================================
    # output helpers
    # =====================================================================

    def _topic(self, msg_type: str) -> bytes:
        topic = self._topics.get(msg_type)
        if topic is None:
            topic = self._topics[msg_type] = f"kernel.{self.session_id}.{msg_type}".encode()
        return topic

    def _publish(self, msg_type: str, content: dict[str, Any], parent: Header | None,
                 topic: bytes | None = None, buffers: tuple[bytes, ...] = (),
                 msg_id: str | None = None) -> None:
        self._out.append(Send(
            Channel.IOPUB, (self._topic(msg_type) if topic is None else topic,),
            msg_id or self._new_msg_id(), msg_type, content, parent, buffers,
        ))

    def _status(self, state: str, parent: Header) -> None:
        self._publish("status", {"execution_state": state}, parent)

    def _reply(self, received: Received, msg_type: str, content: dict[str, Any]) -> None:
        self._out.append(Send(received.channel, received.identities, self._new_msg_id(),
                              msg_type, content, received.msg["header"]))

    # =====================================================================
    # inputs from the wire
    # =====================================================================

    def _on_refused(self, refused: Refused) -> None:
        self.bad.note(refused.reason, refused.detail)

    def _on_received(self, received: Received) -> None:
        if not self._batch_bound:
            self.connections.note(received)
        if received.channel is Channel.STDIN:
            self._guarded(self._on_stdin_reply, received)
        elif received.channel is Channel.IOPUB:
            raise ValueError("the kernel receives nothing on iopub but subscription frames")
        else:
            self._on_request(received)

    def _guarded(self, handler: Callable[[Received], Any], received: Received) -> Any:
        """The input boundary for one peer message: its protocol errors are counted."""
        try:
            return handler(received)
        except RemoteProtocolError as e:
            self.bad.refused(e)
        except InvalidTransition as e:
            self.bad.note("invalid_transition", f"{received.msg_type} {received.msg_id}: {e}")
        return None

    def _on_request(self, received: Received) -> None:
        """A shell or control request: bracketed by busy/idle, dispatched by msg_type."""
        allowed = SHELL_TYPES if received.channel is Channel.SHELL else CONTROL_TYPES
        header = received.msg["header"]
        if received.identities:
            self.last_sender = received.identities[0]
        self._status("busy", header)
        idle_now = True
        try:
            msg_type = received.msg_type
            if received.channel is Channel.SHELL and msg_type in UNSERVED:
                self._unserved(received)
            elif msg_type not in allowed:
                # Counted first, then answered: whoever sees the answer sees the count.
                self.bad.note("unknown_msg_type", f"{msg_type!r} on "
                              f"{received.channel.value} ({received.msg_id})")
                if msg_type.endswith("_request"):
                    self._unserved(received)
            else:
                idle_now = self._guarded(self._requests_by_type[msg_type], received) is not False
        finally:
            if idle_now:
                self._status("idle", header)

    def _on_overheard(self, event: Overheard) -> None:
        received = event.received
        if received.channel is not Channel.SHELL:
            raise ValueError("only shell messages are overheard")
        if not self._batch_bound:
            self.connections.note(received)
        if received.identities:
            self.last_sender = received.identities[0]

    # -- presence ----------------------------------------------------------------

    def _on_subscriptions(self, event: SubscriptionFrames) -> None:
        """Subscribes read before any unsubscribe count at once (a new frontend's
        messages in the drain batch must find it subscribed); from the first
        unsubscribe on, the frames act only after the drain rule has run."""
        frames = tuple(zip(event.frames, event.sent_by_peer, strict=True))
        first = next((i for i, (f, _) in enumerate(frames) if f[:1] == b"\x00"), len(frames))
        for frame, by_peer in frames[:first]:
            self._on_frame(frame, by_peer)
        rest = frames[first:]

        def act() -> None:
            for frame, by_peer in rest:
                self._on_frame(frame, by_peer)

        if rest:
            self.policies.drain(self, event.drained, act)
        else:
            for item in event.drained:
                self.take(item)

    def _on_frame(self, frame: bytes, sent_by_peer: bool) -> None:
        try:
            change = self.presence.apply(frame, sent_by_peer=sent_by_peer)
        except SubscriptionFrameError as e:
            self.bad.note(e.reason, str(e))
            return
        if change.subscribed:
            self._welcome(change.topic)
            peer = change.peer if change.peer_arrived else None
            for record in self.comms.back(peer, self.presence.is_known_peer):
                log.info("kernel: comm %s re-attached", record.comm_id)
            return
        if change.peer_departed and change.peer is not None:
            self._abandon_exchanges(change.peer)
            self.policies.frontend_lost(self, change.peer)
        if change.emptied:
            self._abandon_exchanges(None)
            self.policies.frontend_lost(self, None)

    def _abandon_exchanges(self, requester: bytes | None) -> None:
        """Its requester left (None: every subscriber did): the comm RPCs it was still
        being answered are dropped, and their answers with them when they come. Nothing
        is published for a frontend that has left (SPEC, "The disconnection policy"),
        but one idle, parented to the last of them, so that no observer is left seeing
        the kernel busy on their account."""
        dropped = [number for number, exchange in self._exchanges.items()
                   if requester is None or exchange.requester == requester]
        if not dropped:
            return
        last = self._exchanges[dropped[-1]].request
        for number in dropped:
            del self._exchanges[number]
        self.abandoned_answers += len(dropped)
        self._status("idle", last)

    # -- the shell and stdin connections (connections.py) -------------------------------

    def _on_connections(self, event: PeerConnections) -> None:
        """Monitor events and the messages received before them: the messages' senders
        are bound first, the messages handled (the drain rule), then the events act."""
        self.connections.bind_batch(event.changes, event.drained)

        def act() -> None:
            for change in event.changes:
                self._connection_gone(self.connections.apply(change))

        self._batch_bound = True
        try:
            if event.changes:
                self.policies.drain(self, event.drained, act)
            else:
                for item in event.drained:
                    self.take(item)
        finally:
            self._batch_bound = False

    def _on_connection_change(self, event: PeerConnectionMade | PeerConnectionLost) -> None:
        self._on_connections(PeerConnections((event,)))

    def _connection_gone(self, gone: ConnectionGone | None) -> None:
        """The frontends last heard from on a connection that ended have left that channel:
        their stdin requests end as when their presence topic goes (``peer_lost``)."""
        if gone is None or not gone.identities:
            return
        how = "its fd was reused" if gone.by_reuse else "disconnected"
        for identity in gone.identities:
            ended = self.stdin.fail_peer(
                identity, f"its frontend left (its {gone.channel.value} connection, "
                f"fd {gone.fd}, {how})")
            if ended:
                log.info("kernel: frontend %s: %s connection gone, %d stdin request(s) ended",
                         identity.decode("utf-8", "replace"), gone.channel.value, ended)

    def _welcome(self, topic: bytes) -> None:
        subscription = welcome_subscription(topic)
        if subscription is not None:
            self._publish("iopub_welcome", {"subscription": subscription}, None,
                          subscription.encode("utf-8"))

    # -- shell and control requests ------------------------------------------------

    def _unserved(self, received: Received) -> None:
        """A request this kernel answers without serving (unserved.py)."""
        msg_type = received.msg_type
        if msg_type == "execute_request" and not received.content.get("silent"):
            self.execution_count += 1
        content = error_content(msg_type, received.content, self.execution_count)
        if msg_type == "execute_request":
            self._publish("error", {key: content[key] for key in ("ename", "evalue", "traceback")},
                          received.msg["header"])
        self._reply(received, reply_type(msg_type), content)

    def _on_kernel_info_request(self, received: Received) -> bool:
        self._reply(received, "kernel_info_reply", KERNEL_INFO)
        return True

    def _on_comm_info_request(self, received: Received) -> bool:
        wanted = received.content.get("target_name")
        comms = {
            r.comm_id: {"target_name": r.target_name}
            for r in self.comms
            if not wanted or r.target_name == wanted
        }
        self._reply(received, "comm_info_reply", {"status": "ok", "comms": comms})
        return True

    def _on_shutdown_request(self, received: Received) -> bool:
        restart = bool(received.content.get("restart", False))
        self._reply(received, "shutdown_reply", {"status": "ok", "restart": restart})
        self._out.append(ShutdownRequested(restart))
        return True

    def _on_interrupt_request(self, received: Received) -> bool:
        self._interrupt(Interrupt("interrupt_request"))
        self._reply(received, "interrupt_reply", {"status": "ok"})
        return True

    def _on_comm_open(self, received: Received) -> bool:
        content = received.content
        comm_id, target_name = content.get("comm_id"), content.get("target_name")
        if not isinstance(comm_id, str) or not comm_id or not isinstance(target_name, str):
            raise RemoteProtocolError(
                "invalid_content", f"comm_open without comm_id/target_name ({received.msg_id})")
        if self.comms.known(comm_id):
            raise RemoteProtocolError("reused_comm_id",
                                      f"comm_open for comm {comm_id}, already used")
        persistent = self._targets(target_name)
        opener = received.identity or b""
        record = self.comms.new(comm_id, target_name, bool(persistent), opener)
        if persistent is None:
            # Count before answering: whoever sees the answer must see the count.
            self.bad.note("unknown_target", f"comm_open for target {target_name!r}: refused")
            self.comms.reject(record, received.msg_id)
            self._publish("comm_close", {"comm_id": comm_id, "data": {}}, received.msg["header"])
            return True
        self.comms.opened(record, received.msg_id, by_kernel=False)
        data = content.get("data")
        self._out.append(CommOpened(comm_id, target_name, data if isinstance(data, dict) else {},
                                    record.persistent, received.msg, received.identity))
        if self.owner_gone(opener):
            # Its frontend left before its comm_open was read: lost at once.
            self.policies.comm_lost(self, record)
        return True

    def _on_comm_msg(self, received: Received) -> bool:
        content = received.content
        comm_id, data = content.get("comm_id"), content.get("data")
        if not isinstance(comm_id, str):
            raise RemoteProtocolError("invalid_content",
                                      f"comm_msg without comm_id ({received.msg_id})")
        kind = classify(data)
        if kind is MessageKind.REPLY:
            assert isinstance(data, dict)  # classify says so
            self._on_comm_reply(received, data)
            return True
        header = received.msg["header"]
        if kind is MessageKind.REQUEST and self.comms.get(comm_id) is None:
            # Answer it (SPEC: a request on a comm the kernel does not hold gets the
            # registered "comm closed" error, not silence), then count it.
            assert isinstance(data, dict)  # a request, classify says
            self._comm_reply(comm_id, rpc_error(data["id"], COMM_CLOSED_CODE,
                                                f"comm {comm_id} is not open"), header)
        record = self._existing(comm_id, received)
        if kind is MessageKind.NOTIFICATION:
            assert isinstance(data, dict)  # a notification, classify says
            if data.get("method") == ADOPT_METHOD:
                self._on_adopt(record, received)  # the kernel's, not the target's
                return True
            self._out.append(CommData(comm_id, data, tuple(received.msg["buffers"]), None,
                                      received.msg, received.identity))
            return True
        if kind is MessageKind.INVALID:
            if isinstance(data, dict) and "id" in data:
                self._comm_reply(comm_id, rpc_error(reply_id(data), INVALID_REQUEST,
                                                    "invalid request"), header)
            self.bad.note("invalid_request",
                          f"comm {comm_id}: not a JSON-RPC message ({received.msg_id})")
            return True
        assert isinstance(data, dict)  # a request, classify says
        # Correlated by this message's msg_id (the exchange), never by the JSON-RPC id:
        # that id is the caller's, and two callers may both use 1.
        self._next_exchange += 1
        exchange = self._next_exchange
        self._exchanges[exchange] = _Exchange(record.comm_id, header, received.identity)
        self._out.append(CommData(comm_id, data, tuple(received.msg["buffers"]), exchange,
                                  received.msg, received.identity))
        return False  # the idle follows the answer

    def _on_adopt(self, record: CommRecord, received: Received) -> None:
        """``commspec/adopt``: a frontend adopted the comm through comm_info. A detached
        comm becomes the sender's if the sender is a commspec peer that is present (only
        then can its departure be seen, and the comm detach again); an open comm keeps its
        owner, who is still there (the adopter only receives its traffic)."""
        adopter = received.identity
        # A live peer is a known one; presence is what makes it a receiver now.
        if record.state is KernelCommState.DETACHED and adopter is not None \
                and self.presence.is_live_peer(adopter):
            self.policies.adopt(self, record, adopter, received.msg_id)
            return
        why = ("it is not detached" if record.state is not KernelCommState.DETACHED
               else "its sender is not a commspec peer that is present")
        log.info("kernel: comm %s: %s from %s ignored: %s", record.comm_id, ADOPT_METHOD,
                 (adopter or b"?").decode("utf-8", "replace"), why)

    def _on_comm_reply(self, received: Received, data: dict[str, Any]) -> None:
        parent = received.parent_msg_id
        if parent is not None and self.requests.is_pending(parent):
            if self.requests.reply(parent, data) is ReplyOutcome.MALFORMED:
                self.bad.note("malformed_reply", f"reply to {parent}: neither result nor error")
        elif parent is not None and self.requests.knows(parent):
            self.policies.late_reply(self, parent, data)
        else:
            self.requests.unknown_replies += 1
            self.bad.note("unknown_reply", f"reply to {parent!r}, which the kernel never sent "
                          f"or has forgotten ({received.msg_id})")

    def _on_comm_close(self, received: Received) -> bool:
        comm_id = received.content.get("comm_id")
        record = self._existing(str(comm_id), received)
        self.comms.close(record, KernelCommEvent.CLOSED_BY_FRONTEND, received.msg_id)
        self.requests.fail_comm(record.comm_id, RequestEvent.COMM_CLOSED, "the frontend closed it")
        # Every other frontend must hear it closed: the comm was broadcast (kernel-opened)
        # or may have been adopted through comm_info.
        data = received.content.get("data")
        self._closed(record, data if isinstance(data, dict) else {}, received.msg["header"],
                     published={})
        return True

    def _existing(self, comm_id: str, received: Received) -> CommRecord:
        record = self.comms.get(comm_id)
        if record is None:
            reason = "closed_comm" if self.comms.recently_closed(comm_id) else "unknown_comm"
            raise RemoteProtocolError(
                reason, f"{received.msg_type} for comm {comm_id} ({received.msg_id})")
        return record

    def _on_stdin_reply(self, received: Received) -> None:
        if received.msg_type not in STDIN_KINDS.values():
            raise RemoteProtocolError("unknown_msg_type", f"{received.msg_type!r} on stdin")
        parent = received.parent_msg_id
        if parent is None:
            # jupyter_client's KernelClient.input (jupyter console's too) sends no parent:
            # it answers the one request pending for its sender, if there is exactly one
            parent = self.stdin.only_pending_for(received.identity)
        asked = self.stdin.get(parent) if parent and self.stdin.is_pending(parent) else None
        if asked is not None and received.identity != asked.identity:
            # Only the frontend asked may answer: another's reply is dropped and counted,
            # and the request waits on (SPEC, Stdin messages).
            self.bad.note("stdin_reply_from_another_frontend",
                          f"{received.msg_type} to {parent}, asked of another frontend")
            return
        outcome = (self.stdin.reply(parent, received.msg_type, received.content)
                   if parent else ReplyOutcome.UNKNOWN)
        if outcome is ReplyOutcome.LATE:
            log.info("kernel: late stdin reply to %s dropped (it had ended)", parent)
        elif outcome is ReplyOutcome.UNKNOWN:
            self.bad.note("unknown_reply", f"{received.msg_type} to {parent!r}, not a request "
                          "the kernel has pending or remembers")
        elif outcome is ReplyOutcome.MALFORMED:
            self.bad.note("malformed_reply", f"{received.msg_type} to {parent}")

    def _on_timer(self, event: TimerFired) -> None:
        if event.timer.kind is TimerKind.DEADLINE:
            self._deadline_passed()

    def _on_sent(self, event: Sent) -> None:
        sending = self._stdin_sending.pop(event.msg_id, None)
        if sending is None:
            raise ValueError(f"no confirmed send {event.msg_id} was asked for")
        identity, msg_type = sending
        self.stdin.start(event.msg_id, identity, msg_type, reached=event.ok,
                         detail=event.detail or "EHOSTUNREACH: the stdin socket has no such peer")

    # =====================================================================
    # the application's calls
    # =====================================================================

    def _on_answer(self, event: Answer) -> None:
        exchange = self._exchanges.pop(event.exchange, None)
        if exchange is None:
            # its comm closed first (its idle went out then), its requester left, or
            # it was answered twice
            return
        self._comm_reply(exchange.comm_id, event.payload, exchange.request)
        self._status("idle", exchange.request)

    def _comm_reply(self, comm_id: str, payload: dict[str, Any], request: Header) -> None:
        self._publish("comm_msg", {"comm_id": comm_id, "data": payload}, request)

    def _open_comm(self, event: OpenComm) -> None:
        if self.presence.subscriptions == 0:
            raise NoFrontend("no frontend is subscribed to IOPub: nobody would see the comm")
        record = self.comms.new(event.comm_id, event.target_name, event.persistent, event.owner)
        self.comms.opened(record, None, by_kernel=True)
        self._publish("comm_open", {"comm_id": event.comm_id, "target_name": event.target_name,
                                    "data": event.data if event.data is not None else {}},
                      event.parent)

    def _close_by_kernel(self, event: CloseComm) -> None:
        record = self.comms.get(event.comm_id)
        if record is None:
            return  # closed already: closing twice is not an error for the caller
        data = event.data if event.data is not None else {}
        self.comms.close(record, KernelCommEvent.CLOSED_BY_KERNEL, None)
        self.requests.fail_comm(record.comm_id, RequestEvent.COMM_CLOSED, "the kernel closed it")
        self._closed(record, data, None, published=data)

    def _closed(self, record: CommRecord, data: dict[str, Any], parent: Header | None,
                published: dict[str, Any] | None = None) -> None:
        """A comm has closed: comm_close to every frontend, the idles of the requests it
        will never answer, and the application told."""
        self._publish("comm_close", {"comm_id": record.comm_id,
                                     "data": {} if published is None else published}, parent)
        for number, exchange in list(self._exchanges.items()):
            if exchange.comm_id == record.comm_id:
                del self._exchanges[number]
                self._status("idle", exchange.request)
        self._out.append(CommClosed(record.comm_id, data))

    def _send_comm_data(self, event: SendCommData) -> None:
        record = self.comms.get(event.comm_id)
        if record is None or record.state is not KernelCommState.OPEN:
            log.info("kernel: comm %s is not open; message not sent", event.comm_id)
            return
        self._publish("comm_msg", {"comm_id": event.comm_id, "data": event.data}, event.parent,
                      buffers=event.buffers)

    def _start_request(self, event: StartRequest) -> None:
        record = self.comms.get(event.comm_id)
        present = record is not None and self.policies.receiver_present(self, record)
        deadline = self.now + event.timeout if event.timeout is not None else None
        if self.requests.start(event.msg_id, event.comm_id, event.method,
                               receiver_present=present, deadline=deadline):
            self._publish("comm_msg", {"comm_id": event.comm_id,
                                       "data": rpc_request(event.msg_id, event.method,
                                                           event.params)},
                          event.parent, msg_id=event.msg_id)
            if deadline is not None:
                self._arm_deadline()


    def _start_stdin(self, event: StartStdinRequest) -> None:
        if event.msg_type not in STDIN_KINDS:
            raise ValueError(f"not a stdin request: {event.msg_type!r}")
        target = event.identity or self.last_sender
        if target is None:
            raise ValueError("no frontend to address the stdin request to")
        if self.owner_gone(target):
            self.stdin.start(event.msg_id, target, event.msg_type, reached=False,
                             detail="its frontend has left")
            return
        self._stdin_sending[event.msg_id] = (target, event.msg_type)
        self._out.append(Send(Channel.STDIN, (target,), event.msg_id, event.msg_type,
                              event.content, event.parent, confirm=True))

    def _interrupt(self, event: Interrupt) -> None:
        self.stdin.fail_all(StdinRequestEvent.INTERRUPT, event.why)

    def _shutdown(self, event: Shutdown) -> None:
        if self.shut_down:
            return
        self.shut_down = True
        for record in self.comms:
            self.comms.close(record, KernelCommEvent.KERNEL_SHUTDOWN, None)
            self.requests.fail_comm(record.comm_id, RequestEvent.COMM_CLOSED,
                                    "the kernel shut down")
            self._closed(record, {}, None)
        self.requests.fail_all(RequestEvent.COMM_CLOSED, "the kernel shut down")
        self.stdin.fail_all(StdinRequestEvent.INTERRUPT, "the kernel shut down")
