"""Every action of the system model, as data: which party does what, to which slot.

Rules:
- One frozen dataclass per kind of action. Its fields are the slots it names
  (frontend, comm slot, request slot, target...); its class says whether it is a
  *protocol* step (deliveries, processing, answering, heartbeat timeouts,
  reconnects) or an *environment* step (what users and the world do), and its
  ``name``: the string SPEC.md, step texts and printed programs use.
- Actions compare and hash by type and fields: ``Start(0) != Crash(0)``.
- ``repr`` is Python that builds the action again (``FrontendOpen(0, 1,
  Target.PERSISTENT)``), so a printed program is a runnable test; ``str`` is the
  short form for people (``frontend_open(0, 1, persistent)``).
- Every action class is ``@dataclass(frozen=True, slots=True, repr=False)``: frozen
  so it hashes, slotted because the model builds one for every successor it
  enumerates (millions per check), and printed by :class:`Action`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from .declaration import Name
from .world import Target


class StepKind(Name):
    PROTOCOL = "protocol"
    ENVIRONMENT = "environment"


class Action:
    """Base of every action: its kind and name are the class's, its slots the fields."""

    __slots__ = ()
    name: ClassVar[str]
    kind: ClassVar[StepKind]
    #: the field names, in order (set by @dataclass)
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def arguments(self) -> tuple[object, ...]:
        return tuple(getattr(self, field) for field in self.__match_args__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(_as_code, self.arguments()))})"

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(_as_text, self.arguments()))})"


class ProtocolAction(Action):
    __slots__ = ()
    kind: ClassVar[StepKind] = StepKind.PROTOCOL


class EnvironmentAction(Action):
    __slots__ = ()
    kind: ClassVar[StepKind] = StepKind.ENVIRONMENT


def _as_code(value: object) -> str:
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


def _as_text(value: object) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return repr(value)


# =========================================================================
# environment: what users and the world do
# =========================================================================


@dataclass(frozen=True, slots=True, repr=False)
class Start(EnvironmentAction):
    """A frontend process starts and subscribes to IOPub."""

    name: ClassVar[str] = "start"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class FrontendOpen(EnvironmentAction):
    """A frontend opens a comm slot for a persistent or a default target."""

    name: ClassVar[str] = "frontend_open"
    frontend: int
    comm: int
    target: Target


@dataclass(frozen=True, slots=True, repr=False)
class FrontendAdopt(EnvironmentAction):
    """A ready frontend asks comm_info to adopt the comms it does not hold, as a
    reloaded page restoring its widgets does."""

    name: ClassVar[str] = "frontend_adopt"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class FrontendRequest(EnvironmentAction):
    """A frontend sends a comm RPC request on a comm it holds open."""

    name: ClassVar[str] = "frontend_request"
    frontend: int
    comm: int
    request: int


@dataclass(frozen=True, slots=True, repr=False)
class FrontendClose(EnvironmentAction):
    """A frontend closes a comm it holds open."""

    name: ClassVar[str] = "frontend_close"
    frontend: int
    comm: int


@dataclass(frozen=True, slots=True, repr=False)
class Exit(EnvironmentAction):
    """A frontend closes its session and exits."""

    name: ClassVar[str] = "exit"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class Crash(EnvironmentAction):
    """A frontend process is killed (SIGKILL)."""

    name: ClassVar[str] = "crash"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class Freeze(EnvironmentAction):
    """A frontend freezes (SIGSTOP, or a half-open link) until the kernel's heartbeat
    drops it."""

    name: ClassVar[str] = "freeze"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class KernelOpen(EnvironmentAction):
    """The kernel opens a comm slot for the frontend whose request it is handling."""

    name: ClassVar[str] = "kernel_open"
    comm: int
    owner: int
    target: Target


@dataclass(frozen=True, slots=True, repr=False)
class KernelClose(EnvironmentAction):
    """The kernel closes a comm."""

    name: ClassVar[str] = "kernel_close"
    comm: int


@dataclass(frozen=True, slots=True, repr=False)
class KernelRequest(EnvironmentAction):
    """The kernel sends a comm RPC request to the frontend that owns the comm."""

    name: ClassVar[str] = "kernel_request"
    comm: int
    request: int


@dataclass(frozen=True, slots=True, repr=False)
class KernelStdinRequest(EnvironmentAction):
    """The kernel sends a stdin request to one frontend."""

    name: ClassVar[str] = "kernel_stdin_request"
    frontend: int
    request: int


@dataclass(frozen=True, slots=True, repr=False)
class Shutdown(EnvironmentAction):
    """The kernel shuts down."""

    name: ClassVar[str] = "shutdown"


# =========================================================================
# protocol: deliveries, processing, answers, heartbeats, reconnects
# =========================================================================


@dataclass(frozen=True, slots=True, repr=False)
class DeliverIopub(ProtocolAction):
    """A frontend receives the first publication on its IOPub channel."""

    name: ClassVar[str] = "deliver_iopub"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class DeliverShellReply(ProtocolAction):
    """A frontend receives the reply to its own shell request (comm_info)."""

    name: ClassVar[str] = "deliver_shell_reply"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class DeliverStdin(ProtocolAction):
    """A frontend receives a stdin request."""

    name: ClassVar[str] = "deliver_stdin"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class Answer(ProtocolAction):
    """A frontend answers a kernel request or a stdin request it received."""

    name: ClassVar[str] = "answer"
    frontend: int
    request: int


@dataclass(frozen=True, slots=True, repr=False)
class NoticeLinkLost(ProtocolAction):
    """A frontend notices its link is gone (its own heartbeat)."""

    name: ClassVar[str] = "notice_link_lost"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class LibzmqRelink(ProtocolAction):
    """libzmq re-establishes a frontend's dropped connection by itself and subscribes
    again: the kernel welcomes it, yet it dropped the frontend (SPEC frontend 4)."""

    name: ClassVar[str] = "libzmq_relink"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class Reconnect(ProtocolAction):
    """A frontend whose session is lost reconnects and subscribes again."""

    name: ClassVar[str] = "reconnect"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class HeartbeatTimeout(ProtocolAction):
    """The kernel's ZMTP heartbeat to a frozen frontend times out; it later resumes.
    ``lost``: how many of its shell messages were in flight on the connection that
    ended (written, never read by the kernel), and are gone with it."""

    name: ClassVar[str] = "heartbeat_timeout"
    frontend: int
    lost: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class KernelSubscribe(ProtocolAction):
    """The kernel's XPUB reads a frontend's subscribe and publishes a welcome."""

    name: ClassVar[str] = "kernel_subscribe"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class KernelUnsubscribe(ProtocolAction):
    """The kernel's XPUB reads a frontend's unsubscribe. ``received``: per frontend, how
    many of its shell messages had reached the kernel's socket (the drain rule
    applies those that settle something first); ``stdin``: the same for its stdin
    replies; ``order``: the frontends whose batches it drained, in the order it read
    them."""

    name: ClassVar[str] = "kernel_unsubscribe"
    frontend: int
    received: tuple[int, ...]
    order: tuple[int, ...] = ()
    stdin: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, repr=False)
class KernelShell(ProtocolAction):
    """The kernel processes the first shell message from a frontend."""

    name: ClassVar[str] = "kernel_shell"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class KernelStdinReply(ProtocolAction):
    """The kernel receives a frontend's stdin reply."""

    name: ClassVar[str] = "kernel_stdin_reply"
    frontend: int


@dataclass(frozen=True, slots=True, repr=False)
class KernelAnswer(ProtocolAction):
    """The kernel publishes its reply to a frontend request."""

    name: ClassVar[str] = "kernel_answer"
    request: int


#: in the order SPEC.md lists them
ENVIRONMENT_ACTIONS: tuple[type[EnvironmentAction], ...] = (
    Start,
    FrontendOpen,
    FrontendRequest,
    FrontendClose,
    FrontendAdopt,
    Exit,
    Crash,
    Freeze,
    KernelOpen,
    KernelClose,
    KernelRequest,
    KernelStdinRequest,
    Shutdown,
)
PROTOCOL_ACTIONS: tuple[type[ProtocolAction], ...] = (
    DeliverIopub,
    DeliverShellReply,
    DeliverStdin,
    Answer,
    NoticeLinkLost,
    LibzmqRelink,
    Reconnect,
    HeartbeatTimeout,
    KernelSubscribe,
    KernelUnsubscribe,
    KernelShell,
    KernelStdinReply,
    KernelAnswer,
)
BY_NAME: dict[str, type[Action]] = {a.name: a for a in (*ENVIRONMENT_ACTIONS, *PROTOCOL_ACTIONS)}

__all__ = [
    "BY_NAME",
    "ENVIRONMENT_ACTIONS",
    "PROTOCOL_ACTIONS",
    "Action",
    "Answer",
    "Crash",
    "DeliverIopub",
    "DeliverShellReply",
    "DeliverStdin",
    "EnvironmentAction",
    "Exit",
    "Freeze",
    "FrontendAdopt",
    "FrontendClose",
    "FrontendOpen",
    "FrontendRequest",
    "HeartbeatTimeout",
    "KernelAnswer",
    "KernelClose",
    "KernelOpen",
    "KernelRequest",
    "KernelShell",
    "KernelStdinReply",
    "KernelStdinRequest",
    "KernelSubscribe",
    "KernelUnsubscribe",
    "LibzmqRelink",
    "NoticeLinkLost",
    "ProtocolAction",
    "Reconnect",
    "Shutdown",
    "Start",
    "StepKind",
]
