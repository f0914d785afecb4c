"""The kernel's view of one comm.

Rules:
- A comm comes into being when the frontend opens it for a target the kernel
  knows (or the kernel opens it); an open for an unknown target is *rejected*:
  the kernel answers with comm_close and the comm never opens.
- Either side may close an open comm; closing cancels its pending requests.
- When the comm's owner goes away (the frontend that opened it, or for whose
  request the kernel opened it; for comms owned by every subscriber: when the
  subscriber count drops to zero) the policy follows from the comm's kind
  (ark issue 841):
  *persistent* comms (plots) keep their state, fail their pending requests and
  wait *detached* for a frontend to return; *default* comms close and run their
  cleanup handler, since no frontend will ever close them.
- A detached comm re-attaches when its owner subscribes again, or when another
  frontend adopts it (``commspec/adopt`` after comm_info): the adopter becomes the
  owner. The kernel keeps a bounded number of detached comms; past the bound the
  one detached longest is *evicted*: closed, comm_close published.
- Kernel shutdown closes every comm.
"""

from __future__ import annotations

from ..declaration import MachineSpec, Name, Transition


class KernelCommState(Name):
    NEW = "new"
    OPEN = "open"
    DETACHED = "detached"
    CLOSED = "closed"


class KernelCommEvent(Name):
    OPENED_BY_FRONTEND = "opened_by_frontend"
    REJECTED = "rejected"
    OPENED_BY_KERNEL = "opened_by_kernel"
    CLOSED_BY_FRONTEND = "closed_by_frontend"
    CLOSED_BY_KERNEL = "closed_by_kernel"
    FRONTEND_LOST = "frontend_lost"
    FRONTEND_BACK = "frontend_back"
    ADOPTED = "adopted"
    EVICTED = "evicted"
    KERNEL_SHUTDOWN = "kernel_shutdown"


class KernelCommFact(Name):
    PERSISTENT = "persistent"


S, E, F = KernelCommState, KernelCommEvent, KernelCommFact

KERNEL_COMM = MachineSpec(
    name="kernel_comm",
    title="Kernel-side comm",
    summary="The kernel's record of one comm: open, detached (persistent, no frontend), closed.",
    states=S,
    events=E,
    facts=(F.PERSISTENT,),
    initial=S.NEW,
    terminal=frozenset({S.CLOSED}),
    transitions=(
        Transition(S.NEW, E.OPENED_BY_FRONTEND, S.OPEN,
                   "comm_open from a frontend for a registered target"),
        Transition(S.NEW, E.REJECTED, S.CLOSED,
                   "comm_open for an unknown target: the kernel answers with comm_close"),
        Transition(S.NEW, E.OPENED_BY_KERNEL, S.OPEN,
                   "the kernel opened the comm while a frontend is subscribed"),
        Transition(S.OPEN, E.CLOSED_BY_FRONTEND, S.CLOSED,
                   "comm_close from a frontend; pending requests are cancelled"),
        Transition(S.OPEN, E.CLOSED_BY_KERNEL, S.CLOSED,
                   "the kernel closed the comm; pending requests are cancelled"),
        Transition(S.OPEN, E.FRONTEND_LOST, S.DETACHED,
                   "its owner left: a persistent comm keeps its state, fails its requests",
                   guard=F.PERSISTENT),
        Transition(S.OPEN, E.FRONTEND_LOST, S.CLOSED,
                   "its owner left: nobody will close a default comm, so the kernel does",
                   guard=F.PERSISTENT, guard_holds=False),
        Transition(S.OPEN, E.KERNEL_SHUTDOWN, S.CLOSED,
                   "shutdown closes every comm"),
        Transition(S.DETACHED, E.FRONTEND_BACK, S.OPEN,
                   "its owner subscribed again and re-attaches to the persistent comm"),
        Transition(S.DETACHED, E.ADOPTED, S.OPEN,
                   "a frontend adopted it (commspec/adopt): it becomes the owner"),
        Transition(S.DETACHED, E.EVICTED, S.CLOSED,
                   "more comms are detached than the kernel keeps: the longest detached "
                   "closes"),
        Transition(S.DETACHED, E.CLOSED_BY_KERNEL, S.CLOSED,
                   "the kernel may still close a detached comm"),
        Transition(S.DETACHED, E.CLOSED_BY_FRONTEND, S.CLOSED,
                   "a comm_close that was in flight on shell when IOPub dropped still counts"),
        Transition(S.DETACHED, E.KERNEL_SHUTDOWN, S.CLOSED,
                   "shutdown closes every comm"),
    ),
)

#: the comms the kernel still has (open or detached): what shutdown closes
ALIVE = KERNEL_COMM.sources(E.KERNEL_SHUTDOWN)
