"""The state of the whole system: one kernel, N frontends, the messages between them.

Everything is an immutable tuple, so a state is hashable and the checker can
remember every state it has seen. Component states are the enums of the declared
machines; this module only says how they are laid out.

Channels (each ordered, none ordered against another):
- ``sub_up``: subscribe/unsubscribe frames a frontend's connection produces at
  the kernel's XPUB (the implicit unsubscribe of a dead connection included);
- ``shell``: frontend-to-kernel shell messages not yet processed by the kernel.
  Which of them the kernel's socket has already *received* matters only when the
  kernel acts on an unsubscribe (the drain rule processes the received ones): so
  that step chooses, nondeterministically, how long a prefix of each queue had
  arrived, instead of every arrival being a step of its own;
- ``iopub``: kernel-to-frontend publications, delivered only while the
  frontend's current subscription is live, otherwise dropped;
- ``shell_down``: replies to the frontend's own shell requests (comm_info);
- ``stdin_down`` / ``stdin_up``: stdin requests and their replies.
"""

from __future__ import annotations

from typing import NamedTuple

from .declaration import Name
from .machines import (
    FrontendCommState,
    KernelCommState,
    PresenceState,
    RequestState,
    SessionState,
    StdinRequestState,
)


class Proc(Name):
    """A frontend process, as the environment sees it (not a spec machine)."""

    IDLE = "idle"  # not started yet
    RUNNING = "running"
    FROZEN = "frozen"  # SIGSTOP or a half-open link: silent, but its sockets stay
    DEAD = "dead"


class Msg(Name):
    SUB = "subscribe"
    UNSUB = "unsubscribe"
    WELCOME = "iopub_welcome"
    OPEN = "comm_open"
    CLOSE = "comm_close"
    REQUEST = "request"  # a comm RPC request (either direction)
    REPLY = "reply"  # a comm RPC reply (either direction)
    INFO = "comm_info_request"
    INFO_REPLY = "comm_info_reply"
    STDIN_REQUEST = "stdin_request"
    STDIN_REPLY = "stdin_reply"
    ADOPT = "commspec/adopt"  # a frontend adopted a comm through comm_info


# A message is (kind, argument): a comm slot, a request slot, or the comm slots
# listed by a comm_info_reply.
Message = tuple[Msg, "int | tuple[int, ...]"]
#: the argument of a message that has none (subscriptions, welcomes, comm_info
#: requests): no frontend number travels in a message, so frontends are interchangeable
NO_ARG = -1


class Kind(Name):
    KERNEL_TO_FRONTEND = "kernel request"
    FRONTEND_TO_KERNEL = "frontend request"
    STDIN = "stdin request"


class CloseCause(Name):
    NONE = "-"
    FRONTEND = "closed by a frontend"
    KERNEL = "closed by the kernel"
    REJECTED = "rejected"
    LOST = "closed by a disconnection"
    SHUTDOWN = "closed by shutdown"
    EVICTED = "evicted: more comms detached than the kernel keeps"


class Target(Name):
    """What a comm slot was opened for; the kind decides the disconnection policy."""

    UNUSED = "unused"
    DEFAULT = "default"
    PERSISTENT = "persistent"


#: the owner of a comm that no frontend can be told apart for (a stock frontend's, which
#: never names itself): every subscriber, lost only when the last one goes
OWNER_ALL = -2


class KernelComm(NamedTuple):
    state: KernelCommState
    #: the frontend that opened it, or for whose request the kernel did, or that adopted
    #: it; OWNER_ALL for a stock frontend's; -1 before it opens
    owner: int
    cause: CloseCause


class Request(NamedTuple):
    kind: Kind
    comm: int  # comm slot, or -1 for stdin
    party: int  # the frontend that asks (frontend request) or is asked (stdin), else -1
    state: RequestState | StdinRequestState
    delivered: int  # replies handed to the caller: at most one, ever


class Frontend(NamedTuple):
    #: a stock frontend (jupyter_client, JupyterLab): no peer topic, no reconnect rules
    stock: bool
    proc: Proc
    session: SessionState | None
    linked: bool  # its current connection is alive
    sub_live: bool  # the kernel's XPUB has its current subscription: publications reach it
    #: libzmq re-established a dropped connection by itself: the link is up again, but
    #: the frontend has yet to act on the drop (its socket monitor reported it)
    relinked: bool
    comms: tuple[FrontendCommState, ...]
    owes: tuple[int, ...]  # request slots it received and has yet to answer
    iopub: tuple[Message, ...]
    shell: tuple[Message, ...]
    shell_down: tuple[Message, ...]
    stdin_down: tuple[Message, ...]
    stdin_up: tuple[Message, ...]
    sub_up: tuple[Message, ...]
    late_replies: int
    adopting: bool  # it asked comm_info to adopt what it does not hold (a restore)
    #: ghost state, for a property only: the comms whose adoption by this frontend the
    #: kernel read while they were detached, and nobody adopted since
    adopted: tuple[int, ...]


class Kernel(NamedTuple):
    up: bool
    presence: PresenceState
    peers: tuple[bool, ...]  # per frontend: its subscription is counted
    comms: tuple[KernelComm, ...]
    owed: tuple[int, ...]  # frontend requests it has accepted and must answer
    late_replies: int
    detached: tuple[int, ...]  # the detached comms, longest detached first


class World(NamedTuple):
    kernel: Kernel
    frontends: tuple[Frontend, ...]
    requests: tuple[Request | None, ...]
    targets: tuple[Target, ...]  # per comm slot, fixed when it is opened
    reconnects_left: int
    faults_left: int  # crashes, clean exits and freezes still allowed
    adoptions_left: int  # restores (comm_info to adopt) still allowed
    relinks_left: int  # connections libzmq may still re-establish by itself
    keep_detached: int  # how many detached comms the kernel keeps (a constant)


def initial_world(
    frontends: int,
    comms: int,
    requests: int,
    reconnects: int,
    faults: int,
    adoptions: int = 0,
    detached: int = 1,
    stock: int = 0,
    relinks: int = 0,
) -> World:
    fe = Frontend(
        stock=False,
        proc=Proc.IDLE,
        session=None,
        linked=False,
        sub_live=False,
        relinked=False,
        comms=(FrontendCommState.NEW,) * comms,
        owes=(),
        iopub=(),
        shell=(),
        shell_down=(),
        stdin_down=(),
        stdin_up=(),
        sub_up=(),
        late_replies=0,
        adopting=False,
        adopted=(),
    )
    kernel = Kernel(
        up=True,
        presence=PresenceState.NEVER_SUBSCRIBED,
        peers=(False,) * frontends,
        comms=(KernelComm(KernelCommState.NEW, -1, CloseCause.NONE),) * comms,
        owed=(),
        late_replies=0,
        detached=(),
    )
    # the stock frontends first (any order is the same world, up to renumbering)
    fes = (fe._replace(stock=True),) * stock + (fe,) * (frontends - stock)
    return World(
        kernel, fes, (None,) * requests, (Target.UNUSED,) * comms, reconnects,
        faults, adoptions, relinks, detached,
    )
