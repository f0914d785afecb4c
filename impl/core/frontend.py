"""The frontend's protocol core: one session with one kernel, inputs in, effects out.

Rules (SPEC.md, "Requirements on a frontend"):
- The session moves through SESSION, each comm through FRONTEND_COMM, each
  comm RPC through REQUEST. ``handle(input, now)`` returns the effects, in
  order; the caller owns the sockets, the heartbeat pinger, the threads and the
  clock.
- Proof of subscription: a link is *connecting* until an ``iopub_welcome``
  arrives (any welcome proves it), or, for a kernel that never welcomes, an
  IOPub message parented to one of our kernel_info probes. A probe goes out at
  once, and each next one ``probe_interval`` after the previous was answered;
  nobody proving us within ``connect_timeout`` is a lost link.
- Nothing goes out before the proof: opens, closes, notifications and requests
  made meanwhile are *held* and go out in order once it comes. While the session
  is lost, requests fail at once (undeliverable) and notifications are refused.
- A lost link (heartbeat silence, a monitor's disconnect, a failed reconnect,
  on purpose) fails every pending request (invalidated) and every plain kernel
  call, and turns every comm stale. After a reconnect's welcome, one
  comm_info_request settles the stale comms (confirmed / not found) and adopts
  listed comms of registered targets never seen; then held work goes out.
- After a reconnect, until comm_info_reply decides, the kernel's comm_msgs on a
  comm whose fate it decides (stale, or not seen yet) are held, in order, and
  handled once it has: on a confirmed or adopted comm as usual, on one it does
  not list as on any comm not held here (dropped and counted). Nothing is
  answered on a comm the kernel may no longer have.
- A comm_close for a comm never held is remembered (bounded), so an outdated
  comm_info_reply cannot revive it.
- Both of those rules are pieces of :class:`FrontendPolicies`
  (``frontend_policies.py``), which a broken variant in the tests replaces.
- A request whose ``idle`` arrived without its reply fails after a grace
  (no_reply); a caller's deadline fails it as timed out.
- Requests from the kernel on a comm are handed to the application; its answer
  goes out on shell parented to the request, unless the link that carried the
  request has been lost since (the kernel has invalidated it already).
- A peer's bad input raises :class:`RemoteProtocolError` before any state
  moves and is counted; anything else raised is our own bug and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from commspec.model.errors import InvalidTransition
from commspec.model.machines import (
    AWAITING_WELCOME,
    FRONTEND_COMM,
    HELD,
    LINKED,
    PROVEN,
    SESSION,
    FrontendCommEvent,
    FrontendCommState,
    RequestEvent,
    SessionEvent,
    SessionState,
)
from commspec.model.messages import ADOPT_METHOD, advertises
from commspec.model.tracked import Tracked

from ..errors import CannotSend, CommRefused, EndpointClosed
from .badinput import BadInput, RemoteProtocolError, describe
from .bounded import BoundedMap, BoundedSet
from .events import (
    AdoptComms,
    Answer,
    AnswerStdin,
    CallEnded,
    CallKernel,
    Channel,
    CloseComm,
    CloseLink,
    CloseSession,
    CommClosed,
    CommData,
    CommLost,
    CommOpened,
    CommsAdopted,
    Connect,
    Disconnect,
    DropIopub,
    Header,
    IopubSeen,
    LinkLost,
    Message,
    OpenComm,
    OpenLink,
    Received,
    Reconnect,
    Refused,
    RegisterTarget,
    Send,
    SendCommData,
    Sent,
    SessionChanged,
    StartRequest,
    StartTimer,
    StdinArrived,
    StopTimer,
    Timer,
    TimerFired,
    TimerKind,
    WatchHeartbeat,
)
from .frontend_policies import FrontendPolicies
from .jsonrpc import (
    INVALID_REQUEST,
    MessageKind,
    classify,
    reply_id,
    rpc_error,
    rpc_notification,
    rpc_request,
)
from .protocol import ProtocolCore
from .requests import PendingRequests, ReplyOutcome

__all__ = ["REMEMBER_CLOSED", "FrontendOptions", "FrontendProtocol", "ProofOfSubscription"]

log = logging.getLogger("commspec.frontend")

#: how many closed comm ids are remembered against out-of-date comm_info replies
REMEMBER_CLOSED = 10_000
#: how many kernel messages on undecided comms are held while reconciling
HOLD_WHILE_RECONCILING = 10_000
#: the session states after a reconnect in which comm_info_reply has not decided yet
DECIDING: frozenset[SessionState] = frozenset({SessionState.RECONNECTING,
                                               SessionState.RECONCILING})

S, CS = SessionState, FrontendCommState
FrontendCommTracked = Tracked[FrontendCommState, FrontendCommEvent]

_PROBE = Timer(TimerKind.PROBE)
_CONNECT = Timer(TimerKind.CONNECT)
_RECONNECT = Timer(TimerKind.RECONNECT)


@dataclass(frozen=True)
class FrontendOptions:
    """The frontend's tunable times, in seconds, with the reason for each default."""

    #: how often the heartbeat pings an answering kernel
    heartbeat_interval: float = 1.0
    #: an unanswered ping this old means the kernel is lost. The kernel's heartbeat
    #: is a separate echo thread, so even a busy kernel answers well within it.
    heartbeat_timeout: float = 3.0
    #: how long connecting (or reconnecting) may take before the link counts as lost
    connect_timeout: float = 30.0
    #: the pace of kernel_info probes for kernels that do not welcome us
    probe_interval: float = 0.1
    #: after ``status: idle`` for a request with no reply yet, wait this long for a
    #: reply sent from another kernel thread before failing it as NoReply
    no_reply_grace: float = 0.05
    #: reconnect by itself after a loss, waiting ``reconnect_delay`` first
    auto_reconnect: bool = False
    reconnect_delay: float = 1.0
    #: subscribe ``commspec.peer/<session id>`` too, so the kernel can tell which
    #: frontend left; off only to test kernels that never welcome us
    presence_topic: bool = True
    #: where comm_info_request goes when reconciling: control is answered even while
    #: shell runs a long cell, but not every kernel serves it there
    reconcile_channel: Literal["shell", "control"] = "shell"


class ProofOfSubscription:
    """One link's proof that its IOPub subscription is live (JEP 65, or kernel_info)."""

    def __init__(self) -> None:
        self.active = False
        self.probes: set[str] = set()
        self.unanswered: str | None = None
        #: what proved the subscription: "iopub_welcome" or "kernel_info"
        self.proven_by: str | None = None
        #: what the kernel said in its kernel_info_reply, if it answered a probe
        self.kernel_info: dict[str, Any] | None = None

    def proves(self, msg: Message) -> bool:
        if not self.active:
            return False
        if msg["msg_type"] == "iopub_welcome":
            self.proven_by = "iopub_welcome"
        elif msg["parent_header"].get("msg_id") in self.probes:
            self.proven_by = "kernel_info"
        else:
            return False
        return True


class _CommRecord:
    __slots__ = ("comm_id", "opened_with", "persistent", "target_name", "tracked")

    def __init__(self, comm_id: str, target_name: str, persistent: bool,
                 tracked: FrontendCommTracked) -> None:
        self.comm_id = comm_id
        self.target_name = target_name
        self.persistent = persistent
        self.tracked = tracked
        #: the msg_id of the comm_open this frontend sent: a comm_close parented to it
        #: is the kernel refusing the comm (it has no such target)
        self.opened_with: str | None = None

    @property
    def state(self) -> FrontendCommState:
        return self.tracked.state


# -- work held until the subscription is proven -----------------------------------------


@dataclass(eq=False, slots=True)
class _HeldOpen:
    record: _CommRecord
    data: Any


@dataclass(eq=False, slots=True)
class _HeldClose:
    record: _CommRecord
    data: Any


@dataclass(eq=False, slots=True)
class _HeldSend:
    record: _CommRecord
    data: Any
    buffers: tuple[bytes, ...]


@dataclass(eq=False, slots=True)
class _HeldRequest:
    record: _CommRecord
    msg_id: str
    method: str
    params: Any
    deadline: float | None


_Held = _HeldOpen | _HeldClose | _HeldSend | _HeldRequest


@dataclass(eq=False, slots=True)
class _Exchange:
    """A request from the kernel, awaiting the application's answer."""

    comm_id: str
    rpc_id: Any
    request: Header
    link: int


@dataclass(frozen=True, slots=True)
class _Sending:
    comm_id: str
    method: str
    deadline: float | None


class FrontendProtocol(ProtocolCore):
    """One frontend session's protocol state. Drive it from one thread at a time."""

    role = "frontend"

    def __init__(
        self,
        *,
        session_id: str,
        new_msg_id: Callable[[], str],
        options: FrontendOptions | None = None,
        policies: FrontendPolicies | None = None,
        tracing: bool = False,
    ) -> None:
        super().__init__(tracing=tracing)
        self.session_id = session_id
        self.name = f"frontend:{session_id}"
        self.options = options or FrontendOptions()
        self.policies = policies if policies is not None else FrontendPolicies()
        self._new_msg_id = new_msg_id
        sink = self.sink
        self.session: Tracked[SessionState, SessionEvent] = Tracked(
            SESSION, session_id, endpoint=self.name, sink=sink, clock=self.clock
        )
        self.requests = PendingRequests(self.name, self._emit, sink=sink, clock=self.clock)
        self.bad = BadInput(self.name, log)
        self.comms: dict[str, _CommRecord] = {}
        self._closed_ids: BoundedSet[str] = BoundedSet(REMEMBER_CLOSED)
        #: comms the kernel refused, by id: the target it said it does not have
        self._refused: BoundedMap[str, str] = BoundedMap(REMEMBER_CLOSED)
        #: the comms this frontend closed itself: a comm_info_reply that still lists one
        #: gets its comm_close again, unless it went on the current link (the first may
        #: have been lost with the link that ended)
        self._closed_here: BoundedSet[str] = BoundedSet(REMEMBER_CLOSED)
        self._closes_on_this_link: set[str] = set()
        self._targets: set[str] = set()
        self._held: list[_Held] = []
        #: after a reconnect, the kernel's comm_msgs on undecided comms (stale, not seen
        #: yet), in order, until comm_info_reply decides whether this frontend holds them
        #: (SPEC.md, frontend 5)
        self._held_from_kernel: list[Message] = []
        self._no_reply: set[str] = set()
        #: whether the kernel keeps this specification (its kernel_info_reply says):
        #: None until a probe is answered. Only such a kernel promises that a reply
        #: precedes its request's idle, so only to it does ``no_reply`` apply.
        self.commspec_kernel: bool | None = None
        #: requests whose idle came before we knew; judged when kernel_info is answered
        self._idle_unjudged: set[str] = set()
        self._calls: dict[str, str] = {}
        self._adopting: dict[str, str | None] = {}
        self._sending: dict[str, _Sending] = {}
        self._exchanges: dict[int, _Exchange] = {}
        self._next_exchange = 0
        #: the number of the current link (a new set of sockets for each), and whether
        #: its sockets are open
        self.link = 0
        self.link_open = False
        self.proof = ProofOfSubscription()
        self._reconcile_id: str | None = None
        self.closed = False
        self._handlers = {
            Connect: self._connect,
            Received: self._on_received,
            Refused: self._on_refused,
            Sent: self._on_sent,
            LinkLost: lambda e: self._link_lost(e.why),
            TimerFired: self._on_timer,
            OpenComm: self._open_comm,
            CloseComm: self._close_comm,
            SendCommData: self._send_comm_data,
            StartRequest: self._start_request,
            Answer: self._on_answer,
            AnswerStdin: self._on_answer_stdin,
            CallKernel: self._call_kernel,
            AdoptComms: self._adopt_comms,
            RegisterTarget: lambda e: self._targets.add(e.target_name),
            Disconnect: lambda e: self._link_lost(e.why),
            Reconnect: self._reconnect,
            DropIopub: self._drop_iopub,
            CloseSession: self._close_session,
        }

    # =====================================================================
    # the interface
    # =====================================================================

    @property
    def state(self) -> SessionState:
        return self.session.state

    def comm_state(self, comm_id: str) -> FrontendCommState:
        record = self.comms.get(comm_id)
        return record.state if record is not None else CS.CLOSED

    def held_comms(self) -> list[str]:
        """The comms this frontend holds open (or stale), by id."""
        return [i for i, r in self.comms.items() if r.state in HELD]

    # =====================================================================
    # helpers
    # =====================================================================

    def _fire(self, event: SessionEvent, msg_id: str | None = None) -> SessionState:
        state = self.session.fire(event, msg_id=msg_id)
        self._out.append(SessionChanged())
        return state

    def _send(self, channel: Channel, msg_type: str, content: dict[str, Any],
              parent: Header | None = None, buffers: tuple[bytes, ...] = (),
              msg_id: str | None = None, confirm: bool = False) -> str:
        msg_id = msg_id or self._new_msg_id()
        self._out.append(Send(channel, (), msg_id, msg_type, content, parent, buffers, confirm))
        return msg_id

    def _timer(self, timer: Timer, delay: float) -> None:
        self._out.append(StartTimer(timer, self.now + delay))

    def _new_record(self, comm_id: str, target_name: str, persistent: bool) -> _CommRecord:
        tracked: FrontendCommTracked = Tracked(
            FRONTEND_COMM, comm_id, endpoint=self.name, sink=self.sink, clock=self.clock
        )
        record = _CommRecord(comm_id, target_name, persistent, tracked)
        self.comms[comm_id] = record
        return record

    # =====================================================================
    # the link: sockets, proof of subscription
    # =====================================================================

    def _connect(self, event: Connect) -> None:
        if self.link != 0:
            raise RuntimeError(f"{self.name} is connected already")
        self._open_link()

    def _open_link(self) -> None:
        self.link += 1
        self.link_open = True
        self.proof = ProofOfSubscription()
        self.proof.active = True
        self._out.append(OpenLink(self.link))
        self._timer(_CONNECT, self.options.connect_timeout)
        self._probe()

    def _probe(self) -> None:
        """One probe; the next goes ``probe_interval`` after this one is answered (a
        kernel still starting up is not flooded; one that never answers is the connect
        deadline's business)."""
        proof = self.proof
        if proof.active and proof.unanswered is None:
            msg_id = self._send(Channel.SHELL, "kernel_info_request", {})
            proof.probes.add(msg_id)
            proof.unanswered = msg_id

    def _stop_proof(self) -> None:
        if self.proof.active:
            self.proof.active = False
            self._out.append(StopTimer(_PROBE))
            self._out.append(StopTimer(_CONNECT))

    def _close_link(self) -> None:
        self._stop_proof()
        if self.link_open:
            self.link_open = False
            self._out.append(CloseLink())
        self._reconcile_id = None
        self._held_from_kernel.clear()  # what the dead link carried is answered by nobody now

    def _on_welcomed(self, msg_id: str) -> None:
        state = self.session.state
        if state not in LINKED:
            return
        new = self._fire(SessionEvent.WELCOMED, msg_id)
        if state in AWAITING_WELCOME:
            self._out.append(WatchHeartbeat())
        if state is S.CONNECTING:
            self._flush_held()
        elif state is S.RECONNECTING:
            assert new is S.RECONCILING
            # comm_info first: what waited goes out after it, so a request on a comm
            # the kernel no longer has is cancelled by the reply, not left to time out
            self._reconcile_id = self._send(Channel(self.options.reconcile_channel),
                                            "comm_info_request", {})
            # What waits on a stale comm waits on for the reply: the kernel may no longer
            # have that comm (SPEC.md, frontend 5).
            self._flush_held(lambda record: record.state is not CS.STALE)

    def _link_lost(self, why: str) -> None:
        if self.session.state not in LINKED:
            return
        log.info("%s: link lost: %s", self.name, why)
        self._closes_on_this_link.clear()
        self._fire(SessionEvent.LINK_LOST)
        self._close_link()
        self._forget_idles()
        self.requests.fail_all(RequestEvent.PEER_LOST)
        self._fail_calls(f"link lost: {why}")
        # Requests and sends that never went out cannot go out now; opens and closes
        # wait for the next link.
        held, self._held = self._held, []
        for item in held:
            if isinstance(item, (_HeldOpen, _HeldClose)):
                self._held.append(item)
            else:
                self._release(item, deliver=False, why="the link was lost before it could go out")
        for record in list(self.comms.values()):
            was = record.state
            if was in HELD:
                record.tracked.fire(FrontendCommEvent.LINK_LOST)
            if was is CS.OPEN:
                self._out.append(CommLost(record.comm_id))
        if self.options.auto_reconnect:
            self._timer(_RECONNECT, self.options.reconnect_delay)

    def _fail_calls(self, why: str) -> None:
        calls, self._calls = self._calls, {}
        for msg_id in calls:
            self._out.append(CallEnded(msg_id, failure=why))
        adopting, self._adopting = self._adopting, {}
        for msg_id in adopting:
            self._out.append(CommsAdopted(msg_id, failure=why))

    def _reconnect(self, event: Reconnect | None = None) -> None:
        if self.session.state is S.CLOSED:
            raise EndpointClosed(f"{self.name} is closed")
        if self.session.state is not S.LOST:
            self._link_lost("reconnect requested")
        self._out.append(StopTimer(_RECONNECT))
        self._fire(SessionEvent.RECONNECT)
        self._open_link()

    def _drop_iopub(self, event: DropIopub) -> None:
        if self.link_open:
            self._out.append(DropIopub())

    def _close_session(self, event: CloseSession) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.append(StopTimer(_RECONNECT))
        if self.session.state is not S.CLOSED:
            self._fire(SessionEvent.CLOSE)
        self._close_link()
        self._forget_idles()
        if self._armed is not None:
            self._armed = None
            self._out.append(StopTimer(Timer(TimerKind.DEADLINE)))
        held, self._held = self._held, []
        for item in held:
            self._release(item, deliver=False, why="the session closed before it could go out")
        for record in list(self.comms.values()):
            if record.state in HELD:
                record.tracked.fire(FrontendCommEvent.SESSION_CLOSED)
                self._forget_comm(record, None)
        self.requests.fail_all(RequestEvent.PEER_LOST)
        self._fail_calls("the endpoint closed")

    # =====================================================================
    # inputs from the wire
    # =====================================================================

    def _on_refused(self, refused: Refused) -> None:
        self.bad.note(f"{refused.channel.value}:{refused.reason}", refused.detail)

    def _on_received(self, received: Received) -> None:
        try:
            if received.channel is Channel.IOPUB:
                self._on_iopub(received.msg)
            elif received.channel is Channel.STDIN:
                self._on_stdin(received.msg)
            else:
                self._on_reply(received.msg)
        except RemoteProtocolError as e:
            self.bad.note(f"{received.channel.value}:{e.reason}", e.detail)
        except InvalidTransition as e:
            # an input the spec does not allow now: counted, moves nothing
            self.bad.note(f"{received.channel.value}:invalid_transition", str(e))

    def _on_iopub(self, msg: Message) -> None:
        msg_type = msg["msg_type"]
        if self.proof.proves(msg):
            self._stop_proof()
            self._on_welcomed(msg["msg_id"])
            if msg_type == "iopub_welcome":
                return  # the welcome that proved us: reported as such, once
        elif msg_type == "iopub_welcome":
            if self.session.state in PROVEN:
                self._fire(SessionEvent.WELCOMED, msg["msg_id"])
        content = msg["content"]
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                parent = msg["parent_header"].get("msg_id")
                if isinstance(parent, str):
                    self._on_idle(parent)
        elif msg_type == "comm_open":
            self._on_kernel_comm_open(msg)
        elif msg_type == "comm_msg":
            self._on_comm_msg(msg)
        elif msg_type == "comm_close":
            self._on_kernel_comm_close(msg)
        self._out.append(IopubSeen(msg))

    def _on_reply(self, msg: Message) -> None:
        parent = msg["parent_header"].get("msg_id")
        if not isinstance(parent, str):
            raise RemoteProtocolError("reply_for_unknown_request", str(msg["msg_type"]))
        if parent == self._reconcile_id:
            self._on_reconcile_reply(msg)
        elif parent in self.proof.probes:
            self.proof.kernel_info = msg["content"]
            self._learned_kernel(advertises(msg["content"]))
            if self.proof.unanswered == parent:
                self.proof.unanswered = None
                if self.proof.active:
                    self._timer(_PROBE, self.options.probe_interval)
        elif parent in self._adopting:
            target = self._adopting.pop(parent)
            listed = msg["content"].get("comms")
            adopted = self._adopt(listed, msg["msg_id"], target) if isinstance(listed, dict) else []
            self._out.append(CommsAdopted(parent, tuple(adopted)))
        elif parent in self._calls:
            del self._calls[parent]
            self._out.append(CallEnded(parent, msg))
        else:
            raise RemoteProtocolError("reply_for_unknown_request", str(msg["msg_type"]))

    def _on_stdin(self, msg: Message) -> None:
        if msg["msg_type"] not in ("input_request", "rpc_request"):
            self.bad.note("unknown_stdin_message", str(msg["msg_type"]))
            return
        self._out.append(StdinArrived(msg, self.link))

    def _on_sent(self, event: Sent) -> None:
        sending = self._sending.pop(event.msg_id, None)
        if sending is None:
            raise ValueError(f"no confirmed send {event.msg_id} was asked for")
        if self.requests.start(event.msg_id, sending.comm_id, sending.method,
                               receiver_present=event.ok, deadline=sending.deadline,
                               detail=event.detail):
            if sending.deadline is not None:
                self._arm_deadline()

    def _on_timer(self, event: TimerFired) -> None:
        timer = event.timer
        kind = timer.kind
        if kind is TimerKind.NO_REPLY:
            if timer.key in self._no_reply:
                self._no_reply.discard(timer.key)
                self.requests.fail(timer.key, RequestEvent.IDLE_WITHOUT_REPLY)
        elif kind is TimerKind.DEADLINE:
            self._deadline_passed()
        elif kind is TimerKind.PROBE:
            self._probe()
        elif kind is TimerKind.CONNECT:
            if self.proof.active:
                self._stop_proof()
                self._link_lost(
                    f"no proof of subscription within {self.options.connect_timeout} s")
        elif kind is TimerKind.RECONNECT:
            if self.session.state is S.LOST:
                self._reconnect()
        elif kind is TimerKind.HELD:
            for item in self._held:
                if isinstance(item, _HeldRequest) and item.msg_id == timer.key:
                    # Its deadline passed before it could go out: nobody received it in time.
                    self._held.remove(item)
                    self._release(item, deliver=False,
                                  why="its deadline passed before it could go out")
                    break

    # -- comms ---------------------------------------------------------------------

    def _on_kernel_comm_open(self, msg: Message) -> None:
        content = msg["content"]
        comm_id, target_name = content.get("comm_id"), content.get("target_name", "")
        if not isinstance(comm_id, str) or not isinstance(target_name, str):
            raise RemoteProtocolError("malformed_content", f"comm_open: {describe(content)}")
        if comm_id in self.comms or comm_id in self._closed_ids:
            # adopted from a comm_info_reply that overtook this comm_open: nothing new
            if comm_id not in self.comms:
                self.bad.note("comm_open_for_closed_comm", comm_id)
            return
        record = self._new_record(comm_id, target_name, persistent=False)
        record.tracked.fire(FrontendCommEvent.OPENED_BY_KERNEL, msg_id=msg["msg_id"])
        if target_name not in self._targets:
            log.info("%s: no target %r here; closing comm %s", self.name, target_name, comm_id)
            self._close_comm(CloseComm(comm_id))
            return
        self._out.append(CommOpened(comm_id, target_name, content.get("data"), False, msg))

    def _on_kernel_comm_close(self, msg: Message) -> None:
        comm_id = msg["content"].get("comm_id")
        if not isinstance(comm_id, str):
            raise RemoteProtocolError("malformed_content",
                                      f"comm_close: {describe(msg['content'])}")
        record = self.comms.get(comm_id)
        if record is None and comm_id not in self._closed_ids \
                and self.policies.remember_unseen_close(self):
            # A comm we never saw (opened while we could not hear): remember it closed,
            # so an out-of-date comm_info_reply cannot make us adopt it.
            record = self._new_record(comm_id, "", persistent=False)
        if record is None or record.state is CS.CLOSED:
            # Already closed here: the kernel tells every frontend when a comm closes,
            # the one that closed it included (SPEC.md). Expected, not bad input.
            log.debug("%s: comm_close for comm %s, already closed here", self.name, comm_id)
            return
        record.tracked.fire(FrontendCommEvent.CLOSED_BY_KERNEL, msg_id=msg["msg_id"])
        refused = record.opened_with is not None \
            and msg["parent_header"].get("msg_id") == record.opened_with
        if refused:
            self._refused.remember(comm_id, record.target_name)
            log.warning("%s: the kernel refused comm %s: it has no target %r", self.name,
                        comm_id, record.target_name)
        self._forget_comm(record, msg["content"].get("data"))

    def _on_comm_msg(self, msg: Message) -> None:
        content = msg["content"]
        data = content.get("data")
        # IOPub goes to every frontend: what the kernel says in answer to another
        # frontend's message (a reply, a message on a comm we do not hold) is that
        # frontend's business, not bad input.
        parent_session = msg["parent_header"].get("session")
        others = bool(parent_session) and parent_session != self.session_id
        kind = classify(data)
        if kind is MessageKind.REPLY:
            assert isinstance(data, dict)  # classify says so
            if not others:
                self._on_rpc_reply(msg, data)
            return
        comm_id = content.get("comm_id")
        record = self.comms.get(comm_id) if isinstance(comm_id, str) else None
        if self.session.state in DECIDING and isinstance(comm_id, str):
            here = self._state_here(comm_id, record)
            if here in self.policies.held_while_reconciling(self):
                # A stale comm the kernel may have closed meanwhile, or one opened while
                # our subscription was dead: only comm_info_reply says whether we hold
                # it, so nothing is handled (or answered) on it before.
                if len(self._held_from_kernel) < HOLD_WHILE_RECONCILING:
                    self._held_from_kernel.append(msg)
                else:
                    self.bad.note("comm_msg_for_unknown_comm", f"{comm_id} (too many held)")
                return
            if here is not CS.OPEN:
                record = None  # not held and not decided: as on a comm we do not hold
        if record is None or record.state not in HELD:
            if not others:
                self.bad.note("comm_msg_for_unknown_comm", str(comm_id))
            return
        buffers = tuple(msg["buffers"])
        if kind is MessageKind.NOTIFICATION:
            self._out.append(CommData(record.comm_id, data, buffers, None, msg))
            return
        header = msg["header"]
        if kind is MessageKind.INVALID:
            if isinstance(data, dict) and "id" in data:
                self._answer(record.comm_id, rpc_error(reply_id(data), INVALID_REQUEST,
                                                       "invalid request"), header)
            self.bad.note("comm_msg_invalid", describe(data))
            return
        assert isinstance(data, dict)  # a request, classify says
        # Correlated by the kernel's msg_id (the exchange), never by the JSON-RPC id.
        self._next_exchange += 1
        self._exchanges[self._next_exchange] = _Exchange(record.comm_id, data["id"], header,
                                                         self.link)
        self._out.append(CommData(record.comm_id, data, buffers, self._next_exchange, msg))

    def _state_here(self, comm_id: str, record: _CommRecord | None) -> FrontendCommState:
        """The comm's state here; one never seen (nor remembered closed) is ``new``."""
        if record is not None:
            return record.state
        return CS.CLOSED if comm_id in self._closed_ids else CS.NEW

    def _on_rpc_reply(self, msg: Message, data: dict[str, Any]) -> None:
        parent = msg["parent_header"].get("msg_id")
        parent = parent if isinstance(parent, str) else ""
        self._idle_unjudged.discard(parent)
        if parent in self._no_reply:
            self._no_reply.discard(parent)
            self._out.append(StopTimer(Timer(TimerKind.NO_REPLY, parent)))
        outcome = self.requests.reply(parent, data)
        if outcome is ReplyOutcome.UNKNOWN:
            self.bad.note("reply_for_unknown_request", parent)
        elif outcome is ReplyOutcome.MALFORMED:
            self.bad.note("malformed_reply", describe(data))

    def _on_idle(self, parent: str) -> None:
        if not self.requests.is_pending(parent) or parent in self._no_reply:
            return
        if self.commspec_kernel is None:
            self._idle_unjudged.add(parent)
        elif self.commspec_kernel:
            self._no_reply.add(parent)
            self._timer(Timer(TimerKind.NO_REPLY, parent), self.options.no_reply_grace)

    def _forget_idles(self) -> None:
        """The link or the session ended: no idle will be judged now."""
        for msg_id in self._no_reply:
            self._out.append(StopTimer(Timer(TimerKind.NO_REPLY, msg_id)))
        self._no_reply.clear()
        self._idle_unjudged.clear()

    def _learned_kernel(self, keeps_spec: bool) -> None:
        if self.commspec_kernel is not None:
            return
        self.commspec_kernel = keeps_spec
        unjudged, self._idle_unjudged = self._idle_unjudged, set()
        for parent in unjudged:
            self._on_idle(parent)

    def _on_reconcile_reply(self, msg: Message) -> None:
        self._reconcile_id = None
        content = msg["content"]
        listed = content.get("comms")
        if content.get("status") != "ok" or not isinstance(listed, dict):
            self.bad.note("comm_info_reply_unusable", describe(content))
            self._link_lost("comm_info_reply was not usable")
            return
        for comm_id, record in list(self.comms.items()):
            if record.state is not CS.STALE:
                continue
            if comm_id in listed:
                record.tracked.fire(FrontendCommEvent.CONFIRMED, msg_id=msg["msg_id"])
            else:
                record.tracked.fire(FrontendCommEvent.NOT_FOUND, msg_id=msg["msg_id"])
                self._forget_comm(record, None)
        self._adopt(listed, msg["msg_id"], None)
        # A comm we closed that the kernel still lists: our comm_close may have been in
        # flight on the connection that ended, so it goes again (unless it already went
        # on this one, or is still held to go).
        held_closes = {h.record.comm_id for h in self._held if isinstance(h, _HeldClose)}
        for comm_id in listed:
            if (comm_id in self._closed_here and comm_id not in self.comms
                    and comm_id not in held_closes and comm_id not in self._closes_on_this_link):
                self._send_close(comm_id, None)
        self._fire(SessionEvent.RECONCILED, msg["msg_id"])
        self._flush_held()
        held, self._held_from_kernel = self._held_from_kernel, []
        for msg in held:
            self._on_comm_msg(msg)  # confirmed or adopted now, or not held here for good

    def _adopt(self, listed: dict[str, Any], msg_id: str, target: str | None) -> list[str]:
        """Adopt listed comms we never saw (their comm_open was lost to us).

        Only for targets registered here: comm_info lists every comm of the kernel,
        other frontends' too, and a frontend adopts what it knows how to drive (as
        a widget manager restores only widget comms). A comm remembered as closed is
        never revived by a reply that was already out of date. Each adopted comm is
        announced (``commspec/adopt``), so a kernel holding it detached makes this
        frontend its owner and its requests reach us.
        """
        adopted: list[str] = []
        for comm_id, info in listed.items():
            target_name = info.get("target_name") if isinstance(info, dict) else None
            if (not isinstance(target_name, str) or target_name not in self._targets
                    or (target is not None and target_name != target)
                    or comm_id in self.comms or comm_id in self._closed_ids):
                continue
            record = self._new_record(comm_id, target_name, persistent=False)
            record.tracked.fire(FrontendCommEvent.CONFIRMED, msg_id=msg_id)
            self._out.append(CommOpened(comm_id, target_name, None, False))
            self._send(Channel.SHELL, "comm_msg",
                       {"comm_id": comm_id, "data": rpc_notification(ADOPT_METHOD)})
            adopted.append(comm_id)
        return adopted

    def _forget_comm(self, record: _CommRecord, data: Any) -> None:
        """The comm closed (any side): cancel its requests, tell its handlers."""
        comm_id = record.comm_id
        self.comms.pop(comm_id, None)
        self._closed_ids.add(comm_id)
        self.requests.fail_comm(comm_id, RequestEvent.COMM_CLOSED, *self._why_closed(comm_id))
        # what was held for it cannot go out now; its own held close still must
        keep: list[_Held] = []
        for item in self._held:
            if item.record is not record or isinstance(item, _HeldClose):
                keep.append(item)
            else:
                self._release(item, deliver=False, why="its comm closed before it could go out")
        self._held = keep
        for number, exchange in list(self._exchanges.items()):
            if exchange.comm_id == comm_id:
                del self._exchanges[number]
        self._out.append(CommClosed(comm_id, data))

    # =====================================================================
    # the application's calls
    # =====================================================================

    def _open_comm(self, event: OpenComm) -> None:
        if self.session.state is S.CLOSED:
            raise EndpointClosed(f"{self.name} is closed")
        if event.comm_id in self.comms or event.comm_id in self._closed_ids:
            raise ValueError(f"comm id {event.comm_id} is already in use or was used recently")
        record = self._new_record(event.comm_id, event.target_name, event.persistent)
        if self.session.state in PROVEN:
            self._send_open(record, event.data)
        else:
            self._held.append(_HeldOpen(record, event.data))

    def _send_open(self, record: _CommRecord, data: Any) -> None:
        msg_id = record.opened_with = self._new_msg_id()
        record.tracked.fire(FrontendCommEvent.OPENED_BY_FRONTEND, msg_id=msg_id)
        self._send(Channel.SHELL, "comm_open", {"comm_id": record.comm_id,
                                                "target_name": record.target_name,
                                                "data": data or {}}, msg_id=msg_id)

    def _close_comm(self, event: CloseComm) -> None:
        record = self.comms.get(event.comm_id)
        if record is None or record.state is CS.CLOSED:
            return
        if record.state is CS.NEW:
            # Never sent: forget the held open, and what was held for it.
            self._held = [h for h in self._held if h.record is not record]
            del self.comms[event.comm_id]
            return
        record.tracked.fire(FrontendCommEvent.CLOSED_BY_FRONTEND)
        self._closed_here.add(record.comm_id)
        if self.session.state in PROVEN:
            self._send_close(record.comm_id, event.data)
        else:
            # No link, or not yet proven: the kernel hears of it once we are ready.
            self._held.append(_HeldClose(record, event.data))
        self._forget_comm(record, event.data)

    def _send_close(self, comm_id: str, data: Any) -> None:
        self._closes_on_this_link.add(comm_id)
        self._send(Channel.SHELL, "comm_close", {"comm_id": comm_id, "data": data or {}})

    def _send_comm_data(self, event: SendCommData) -> None:
        record = self.comms.get(event.comm_id)
        if record is None or record.state is CS.CLOSED:
            raise CannotSend(event.comm_id, "it is closed")
        state = self.session.state
        if state in PROVEN and record.state in HELD and not self._undecided(record):
            self._send(Channel.SHELL, "comm_msg", {"comm_id": event.comm_id, "data": event.data},
                       buffers=event.buffers)
        elif state in AWAITING_WELCOME or self._undecided(record):
            self._held.append(_HeldSend(record, event.data, event.buffers))
        else:
            raise CannotSend(event.comm_id, f"the session is {state.value}")

    def _start_request(self, event: StartRequest) -> None:
        deadline = self.now + event.timeout if event.timeout is not None else None
        record = self.comms.get(event.comm_id)
        state = self.session.state
        if record is not None and record.state is not CS.CLOSED and (
                state in AWAITING_WELCOME or self._undecided(record)):
            self._held.append(_HeldRequest(record, event.msg_id, event.method, event.params,
                                           deadline))
            if deadline is not None:
                self._out.append(StartTimer(Timer(TimerKind.HELD, event.msg_id), deadline))
            return
        if record is not None and state in PROVEN and record.state in HELD:
            self._send_request(record, event.msg_id, event.method, event.params, deadline)
        elif record is None or record.state is CS.CLOSED:
            detail, failure = self._why_closed(event.comm_id)
            self.requests.start(event.msg_id, event.comm_id, event.method,
                                receiver_present=False, detail=detail, failure=failure)
        else:
            self.requests.start(event.msg_id, event.comm_id, event.method,
                                receiver_present=False, detail=f"the session is {state.value}")

    def _why_closed(self, comm_id: str) -> tuple[str, type[CommRefused] | None]:
        """What a request on a closed comm ends with: its refusal, if it was refused."""
        target = self._refused.get(comm_id)
        if target is None:
            return ("its comm is closed", None)
        return (f"the kernel has no target {target!r} (it answered comm_open with "
                "comm_close)", CommRefused)

    def _undecided(self, record: _CommRecord) -> bool:
        """A stale comm while reconciling: only comm_info_reply says whether it lives."""
        return self.session.state is S.RECONCILING and record.state is CS.STALE

    def _send_request(self, record: _CommRecord, msg_id: str, method: str, params: Any,
                      deadline: float | None) -> None:
        self._sending[msg_id] = _Sending(record.comm_id, method, deadline)
        self._send(Channel.SHELL, "comm_msg",
                   {"comm_id": record.comm_id, "data": rpc_request(msg_id, method, params)},
                   msg_id=msg_id, confirm=True)


    def _flush_held(self, ready: Callable[[_CommRecord], bool] = lambda record: True) -> None:
        """Send what was held, in order; what is on a comm not ``ready`` stays held."""
        held, self._held = self._held, []
        for item in held:
            if ready(item.record):
                self._release(item, deliver=True)
            else:
                self._held.append(item)

    def _release(self, item: _Held, *, deliver: bool,
                 why: str = "its comm closed before it could go out") -> None:
        """Send what was held (``deliver``), or end it: a held request ends
        undeliverable, saying ``why`` (it never went out, so nothing else could end it)."""
        record = item.record
        if isinstance(item, _HeldOpen):
            if deliver and record.state is CS.NEW:
                self._send_open(record, item.data)
        elif isinstance(item, _HeldClose):
            if deliver:
                self._send_close(record.comm_id, item.data)
        elif isinstance(item, _HeldSend):
            if deliver and record.state in HELD:
                self._send(Channel.SHELL, "comm_msg",
                           {"comm_id": record.comm_id, "data": item.data}, buffers=item.buffers)
        else:
            if item.deadline is not None:
                self._out.append(StopTimer(Timer(TimerKind.HELD, item.msg_id)))
            if deliver and record.state in HELD:
                self._send_request(record, item.msg_id, item.method, item.params, item.deadline)
            else:
                self.requests.start(item.msg_id, record.comm_id, item.method,
                                    receiver_present=False, detail=why)

    # -- answering the kernel --------------------------------------------------------

    def _on_answer(self, event: Answer) -> None:
        exchange = self._exchanges.pop(event.exchange, None)
        if exchange is None:
            return  # its comm closed first: the kernel cancelled its request too
        record = self.comms.get(exchange.comm_id)
        # An answer made after the link that carried the request was lost is dropped:
        # the kernel has already invalidated that request.
        if exchange.link != self.link or not self.link_open or record is None:
            self.bad.note("reply_to_kernel_after_link_lost", exchange.comm_id)
            return
        self._answer(exchange.comm_id, event.payload, exchange.request)

    def _answer(self, comm_id: str, payload: dict[str, Any], request: Header) -> None:
        self._send(Channel.SHELL, "comm_msg", {"comm_id": comm_id, "data": payload},
                   parent=request)

    def _on_answer_stdin(self, event: AnswerStdin) -> None:
        # An answer made after the link that carried the request was lost is dropped:
        # the kernel found the request unreachable when we left.
        if event.link != self.link or not self.link_open:
            self.bad.note("reply_to_kernel_after_link_lost", event.msg_type)
            return
        self._send(Channel.STDIN, event.msg_type, event.content,
                   parent=event.request["header"])

    # -- plain kernel requests --------------------------------------------------------

    def _call_kernel(self, event: CallKernel) -> None:
        if event.channel not in (Channel.SHELL, Channel.CONTROL):
            raise ValueError(f"requests go on shell or control, not {event.channel.value!r}")
        if not self.link_open:
            self._out.append(CallEnded(event.msg_id, failure="no live link to the kernel"))
            return
        self._calls[event.msg_id] = event.msg_type
        self._send(event.channel, event.msg_type, event.content, msg_id=event.msg_id)

    def _adopt_comms(self, event: AdoptComms) -> None:
        if not self.link_open:
            self._out.append(CommsAdopted(event.msg_id, failure="no live link to the kernel"))
            return
        self._adopting[event.msg_id] = event.target_name
        content = {} if event.target_name is None else {"target_name": event.target_name}
        self._send(Channel.SHELL, "comm_info_request", content, msg_id=event.msg_id)

