"""The vocabulary of the protocol cores: what goes in, what comes out.

Rules (the shape of h11 and wsproto):
- An *input* is something that happened: a message received on a channel from
  an identity, an XPUB frame (an unsubscribe carries the messages already
  received before it, the drain rule's batch), a shell or stdin connection
  accepted or gone (with the messages received before it, the same way), a frame
  the wire refused, a send that could not go out, a timer that fired, a lost link,
  or a call of the application. A lost link or connection is an input like any
  other, not an exception path.
- An *effect* is something the core wants done: send a message, start or
  cancel a timer, end a request (its result or its failure), tell the
  application (a comm opened, data arrived, a comm lost or closed), trace a
  transition. The caller (a runner over sockets, or the in-process simulation)
  carries the effects out, in order.
- The current time is given with each input, as a value; the cores read no
  clock, own no thread, touch no socket and hold no future.
- A core's state has moved before it returns the effect that announces it.
  The one exception is a send whose outcome *is* the event (a stdin request:
  the ROUTER accepts it or raises EHOSTUNREACH): it is marked ``confirm`` and
  the runner reports what happened as :class:`Sent`, at once.
- Everything here is a frozen dataclass, compared by value, cheap to make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from commspec.model.declaration import Name
from commspec.model.trace import TraceEvent

from ..errors import RequestFailed

__all__ = [
    "AdoptComms",
    "Answer",
    "AnswerStdin",
    "CallEnded",
    "CallKernel",
    "Channel",
    "CloseComm",
    "CloseLink",
    "CloseSession",
    "CommClosed",
    "CommData",
    "CommLost",
    "CommOpened",
    "CommsAdopted",
    "Connect",
    "Disconnect",
    "DropIopub",
    "Effect",
    "Header",
    "Input",
    "Interrupt",
    "IopubSeen",
    "LinkLost",
    "Message",
    "OpenComm",
    "OpenLink",
    "Overheard",
    "PeerConnectionLost",
    "PeerConnectionMade",
    "PeerConnections",
    "Received",
    "Reconnect",
    "Refused",
    "RegisterTarget",
    "RequestEnded",
    "Send",
    "SendCommData",
    "Sent",
    "SessionChanged",
    "Shutdown",
    "ShutdownRequested",
    "StartRequest",
    "StartStdinRequest",
    "StartTimer",
    "StdinArrived",
    "StopTimer",
    "SubscriptionFrames",
    "Timer",
    "TimerFired",
    "TimerKind",
    "Trace",
    "WatchHeartbeat",
]

Header = dict[str, Any]


class Message(TypedDict):
    """A verified Jupyter message, in the shape jupyter_client's Session gives it."""

    header: Header
    parent_header: Header
    metadata: dict[str, Any]
    content: dict[str, Any]
    buffers: list[Any]
    msg_id: str
    msg_type: str


class Channel(Name):
    SHELL = "shell"
    CONTROL = "control"
    STDIN = "stdin"
    IOPUB = "iopub"


class TimerKind(Name):
    #: the earliest deadline of the requests that have one
    DEADLINE = "deadline"
    #: a request's idle arrived without its reply: the grace before no_reply
    NO_REPLY = "no_reply"
    #: the next kernel_info probe of a subscription not yet proven
    PROBE = "probe"
    #: connecting (or reconnecting) may take this long before the link counts as lost
    CONNECT = "connect"
    #: the automatic reconnect after a loss
    RECONNECT = "reconnect"
    #: a held request's deadline passed before it could go out
    HELD = "held"


@dataclass(frozen=True, slots=True)
class Timer:
    kind: TimerKind
    key: str = ""


# =========================================================================
# inputs
# =========================================================================


@dataclass(frozen=True, slots=True)
class Received:
    """A verified message on shell, control, stdin or iopub, and who sent it.

    ``fd``: the connection it came by, as libzmq numbers it (``ZMQ_SRCFD``, the fd
    the socket monitor reports too); None when not known (see ``connections.py``).
    """

    channel: Channel
    identities: tuple[bytes, ...]
    msg: Message
    fd: int | None = None

    @property
    def msg_type(self) -> str:
        return self.msg["msg_type"]

    @property
    def msg_id(self) -> str:
        return self.msg["msg_id"]

    @property
    def content(self) -> dict[str, Any]:
        return self.msg["content"]

    @property
    def parent_msg_id(self) -> str | None:
        value = self.msg["parent_header"].get("msg_id")
        return value if isinstance(value, str) else None

    @property
    def identity(self) -> bytes | None:
        return self.identities[0] if self.identities else None


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame the wire layer refused before any state saw it (bad signature...)."""

    channel: Channel
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SubscriptionFrames:
    """Frames the kernel's XPUB had queued, in order: ``\\x01topic``, ``\\x00topic``.

    ``sent_by_peer``: for each frame, whether it carried its connection's ZMQ
    metadata, i.e. a peer sent it. The unsubscribes libzmq makes itself when a
    connection ends carry none, and only those are departures.

    ``drained``: when one of them is an unsubscribe, every shell and stdin message
    the kernel's sockets had already received when they were read, in order (the
    drain rule: all of it is handled before any of the unsubscribes acts).
    """

    frames: tuple[bytes, ...]
    sent_by_peer: tuple[bool, ...]
    drained: tuple[Received | Refused, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerConnectionMade:
    """A ROUTER accepted a connection on file descriptor ``fd`` (``EVENT_ACCEPTED``)."""

    channel: Channel
    fd: int


@dataclass(frozen=True, slots=True)
class PeerConnectionLost:
    """The connection on ``fd`` of a ROUTER is gone (``EVENT_DISCONNECTED``): the
    frontends whose messages it last carried have left that channel, and their
    stdin requests end as ``peer_lost`` (``connections.py`` says which frontends)."""

    channel: Channel
    fd: int


@dataclass(frozen=True, slots=True)
class PeerConnections:
    """What the shell and stdin ROUTERs' socket monitors reported, in order per
    channel, with every shell and stdin message those sockets had received when the
    events were read (``drained``, in order: handled before any event acts)."""

    changes: tuple[PeerConnectionMade | PeerConnectionLost, ...]
    drained: tuple[Received | Refused, ...] = ()


@dataclass(frozen=True, slots=True)
class Overheard:
    """A shell message someone else handles (a kernel that runs the core beside its own
    handlers: commspec for ipykernel's ``execute_request``), shown to the core for what
    it says about its sender: the connection it came by (``connections.py``), and that
    it is the last frontend that sent a request."""

    received: Received


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a ``Send(confirm=True)``: it went out, or it could not."""

    msg_id: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LinkLost:
    """The frontend's link is gone: heartbeat unanswered, monitor saw a disconnect,
    or new sockets could not be made."""

    why: str


# -- the application's calls -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenComm:
    """Open a comm from this side. ``owner`` and ``parent`` are the kernel's: the
    frontend the comm belongs to, and the request it answers."""

    comm_id: str
    target_name: str
    data: Any
    persistent: bool
    owner: bytes | None = None
    parent: Header | None = None


@dataclass(frozen=True, slots=True)
class CloseComm:
    comm_id: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class SendCommData:
    """A comm_msg that expects no answer (a notification)."""

    comm_id: str
    data: Any
    buffers: tuple[bytes, ...] = ()
    parent: Header | None = None


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A JSON-RPC request on a comm; it ends in exactly one RequestEnded."""

    msg_id: str
    comm_id: str
    method: str
    params: Any
    timeout: float | None = None
    parent: Header | None = None


@dataclass(frozen=True, slots=True)
class StartStdinRequest:
    """input_request / rpc_request to one frontend (``identity``; None: the last one
    that sent a shell request)."""

    msg_id: str
    msg_type: str
    content: dict[str, Any]
    identity: bytes | None = None
    parent: Header | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The application's answer to an incoming request (``CommData.exchange``)."""

    exchange: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The kernel stops: every comm closed, every request failed."""


@dataclass(frozen=True, slots=True)
class Interrupt:
    """An interrupt that did not come as a message (SIGINT, Jupyter's default
    ``interrupt_mode``): pending stdin requests end ``interrupted``, as on
    ``interrupt_request``."""

    why: str = "SIGINT"


@dataclass(frozen=True, slots=True)
class RegisterTarget:
    """The frontend accepts comms the kernel opens for this target."""

    target_name: str


@dataclass(frozen=True, slots=True)
class CallKernel:
    """A plain Jupyter request (kernel_info, execute...): its reply ends it."""

    msg_id: str
    msg_type: str
    content: dict[str, Any]
    channel: Channel = Channel.SHELL


@dataclass(frozen=True, slots=True)
class AdoptComms:
    """Ask comm_info and adopt the listed comms of registered targets not held here."""

    msg_id: str
    target_name: str | None = None


@dataclass(frozen=True, slots=True)
class Connect:
    """Start the frontend session: the first link to the kernel."""


@dataclass(frozen=True, slots=True)
class AnswerStdin:
    """The frontend's answer to a stdin request (input_reply / rpc_reply)."""

    request: Message
    link: int
    msg_type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Drop the link on purpose (as a sleeping laptop would)."""

    why: str = "disconnected on purpose"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """New sockets, same session id; stale comms are reconciled once welcomed."""


@dataclass(frozen=True, slots=True)
class DropIopub:
    """Test hook: close the IOPub socket alone (the late-reply race)."""


@dataclass(frozen=True, slots=True)
class CloseSession:
    """End the frontend's session: comms close locally, requests fail."""


Input = (
    Received | Refused | SubscriptionFrames | Overheard | PeerConnections | PeerConnectionMade
    | PeerConnectionLost | TimerFired | Sent | LinkLost | OpenComm
    | CloseComm | SendCommData | StartRequest | StartStdinRequest | Answer | Shutdown
    | Interrupt | RegisterTarget | CallKernel | AdoptComms | Connect | AnswerStdin | Disconnect
    | Reconnect | DropIopub | CloseSession
)

# =========================================================================
# effects
# =========================================================================


@dataclass(frozen=True, slots=True)
class Send:
    """A message to build, sign and send. ``to``: the routing identities in front of
    it (shell, control, stdin), or the topic (iopub)."""

    channel: Channel
    to: tuple[bytes, ...]
    msg_id: str
    msg_type: str
    content: dict[str, Any]
    parent: Header | None = None
    buffers: Sequence[bytes] = ()
    #: the runner reports at once, as :class:`Sent`, whether it went out
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Fire ``TimerFired(timer)`` at ``when`` (the cores' time); replaces one pending."""

    timer: Timer
    when: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """A request this side made ended: ``error`` is None for a result."""

    msg_id: str
    result: Any = None
    error: RequestFailed | None = None


@dataclass(frozen=True, slots=True)
class CommOpened:
    """A comm the peer opened (or, on a frontend, one adopted through comm_info):
    the application sets it up. ``request`` is the message that opened it."""

    comm_id: str
    target_name: str
    data: Any
    persistent: bool
    request: Message | None = None
    identity: bytes | None = None


@dataclass(frozen=True, slots=True)
class CommData:
    """comm_msg data for the application: a notification (``exchange`` None) or a
    request whose answer comes back as ``Answer(exchange, ...)``."""

    comm_id: str
    data: Any
    buffers: tuple[Any, ...]
    exchange: int | None
    request: Message
    identity: bytes | None = None


@dataclass(frozen=True, slots=True)
class CommLost:
    """The comm's peer went away (its disconnect handlers run)."""

    comm_id: str


@dataclass(frozen=True, slots=True)
class CommClosed:
    """The comm closed, for whatever reason (its close handlers run)."""

    comm_id: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Trace:
    event: TraceEvent


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """A frontend asked the kernel to shut down (its reply is already out)."""

    restart: bool


@dataclass(frozen=True, slots=True)
class OpenLink:
    """Make a new set of sockets to the kernel (link number ``link``)."""

    link: int


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close the current sockets and stop watching them."""


@dataclass(frozen=True, slots=True)
class WatchHeartbeat:
    """Start pinging the heartbeat channel; its silence comes back as LinkLost."""


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """The frontend session moved (waiters on its state wake up)."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A plain kernel request ended: its reply, or why it cannot come."""

    msg_id: str
    reply: Message | None = None
    failure: str = ""


@dataclass(frozen=True, slots=True)
class CommsAdopted:
    """The comm_info_reply an adopt_comms call asked for was used: what it adopted."""

    msg_id: str
    comm_ids: tuple[str, ...] = ()
    failure: str = ""


@dataclass(frozen=True, slots=True)
class StdinArrived:
    """A stdin request from the kernel, for the application to answer
    (``AnswerStdin`` with the same ``link``)."""

    request: Message
    link: int


@dataclass(frozen=True, slots=True)
class IopubSeen:
    """A valid IOPub message, after the core handled it (for observers)."""

    msg: Message


Effect = (
    Send | StartTimer | StopTimer | RequestEnded | CommOpened | CommData | CommLost
    | CommClosed | Trace | ShutdownRequested | OpenLink | CloseLink | WatchHeartbeat | DropIopub
    | SessionChanged | CallEnded | CommsAdopted | StdinArrived | IopubSeen
)
