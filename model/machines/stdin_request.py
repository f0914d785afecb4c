"""A kernel request on the stdin channel (input_request, ark's rpc_request).

Rules:
- It is addressed to one frontend: the identity that sent the shell request the
  kernel is executing. The stdin ROUTER has ROUTER_MANDATORY on, so a send to an
  identity that is gone fails at once with EHOSTUNREACH: *unreachable*, never
  pending.
- A pending stdin request ends *replied*, *unreachable* (its frontend went away
  while it waited: the kernel's sockets report that peer's disconnect, or the
  last IOPub subscriber left) or *interrupted* (interrupt_request or shutdown).
- A reply after it ended is a late reply: counted, dropped.
"""

from __future__ import annotations

from ..declaration import MachineSpec, Name, Transition


class StdinRequestState(Name):
    NEW = "new"
    PENDING = "pending"
    REPLIED = "replied"
    UNREACHABLE = "unreachable"
    INTERRUPTED = "interrupted"


class StdinRequestEvent(Name):
    SENT = "sent"
    HOST_UNREACHABLE = "host_unreachable"
    REPLY = "reply"
    PEER_LOST = "peer_lost"
    INTERRUPT = "interrupt"
    LATE_REPLY = "late_reply"


S, E = StdinRequestState, StdinRequestEvent

STDIN_REQUEST = MachineSpec(
    name="stdin_request",
    title="Stdin request",
    summary="A kernel request to one frontend on stdin: pending, replied, unreachable.",
    states=S,
    events=E,
    initial=S.NEW,
    terminal=frozenset({S.REPLIED, S.UNREACHABLE, S.INTERRUPTED}),
    transitions=(
        Transition(S.NEW, E.SENT, S.PENDING,
                   "the stdin ROUTER accepted the message for that identity"),
        Transition(S.NEW, E.HOST_UNREACHABLE, S.UNREACHABLE,
                   "ROUTER_MANDATORY raised EHOSTUNREACH: the frontend is gone"),
        Transition(S.PENDING, E.REPLY, S.REPLIED,
                   "input_reply / rpc_reply from the addressed frontend"),
        Transition(S.PENDING, E.PEER_LOST, S.UNREACHABLE,
                   "the addressed frontend disconnected while we waited"),
        Transition(S.PENDING, E.INTERRUPT, S.INTERRUPTED,
                   "interrupt_request or kernel shutdown ends the wait"),
        *(Transition(s, E.LATE_REPLY, s, "a reply for an ended request: dropped and counted")
          for s in (S.REPLIED, S.UNREACHABLE, S.INTERRUPTED)),
    ),
)

#: the events that end a pending stdin request without its reply
FAILURE_EVENTS = STDIN_REQUEST.ending_events(S.PENDING) - {E.REPLY}
