"""One comm RPC, in either direction, as its caller sees it.

Rules:
- A request either goes out and is *pending*, or fails at once as *undeliverable*
  because nobody could receive it (the kernel has no IOPub subscriber, or the
  frontend has no live session): it never pends.
- A pending request ends in exactly one outcome: *resolved* (a result), *errored*
  (a JSON-RPC error), *invalidated* (the peer that had to answer went away),
  *cancelled* (its comm closed), *timed out* (only if the caller asked for a
  deadline) or *no reply* (the kernel went idle on it without answering).
- Outcomes are absorbing. A reply that arrives for a request that already ended
  is the *late reply*: it changes nothing, is counted and traced (the race
  between a reply in flight and the disconnection, as h2 handles frames that
  were in flight when a stream was reset).
"""

from __future__ import annotations

from ..declaration import MachineSpec, Name, Transition


class RequestState(Name):
    NEW = "new"
    PENDING = "pending"
    RESOLVED = "resolved"
    ERRORED = "errored"
    INVALIDATED = "invalidated"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    NO_REPLY = "no_reply"
    UNDELIVERABLE = "undeliverable"


class RequestEvent(Name):
    SENT = "sent"
    NO_RECEIVER = "no_receiver"
    RESULT = "result"
    ERROR = "error"
    PEER_LOST = "peer_lost"
    COMM_CLOSED = "comm_closed"
    DEADLINE = "deadline"
    IDLE_WITHOUT_REPLY = "idle_without_reply"
    LATE_REPLY = "late_reply"


class RequestFact(Name):
    HAS_DEADLINE = "has_deadline"


S, E, F = RequestState, RequestEvent, RequestFact

OUTCOMES = frozenset(
    {S.RESOLVED, S.ERRORED, S.INVALIDATED, S.CANCELLED, S.TIMED_OUT, S.NO_REPLY,
     S.UNDELIVERABLE}
)

_late = tuple(
    Transition(s, E.LATE_REPLY, s, "a reply for an ended request: dropped and counted")
    for s in sorted(OUTCOMES - {S.UNDELIVERABLE}, key=lambda s: list(S).index(s))
)

REQUEST = MachineSpec(
    name="request",
    title="Comm RPC request",
    summary="One JSON-RPC request over a comm: pending, then exactly one outcome.",
    states=S,
    events=E,
    facts=(F.HAS_DEADLINE,),
    initial=S.NEW,
    terminal=OUTCOMES,
    transitions=(
        Transition(S.NEW, E.SENT, S.PENDING,
                   "sent while a receiver is connected"),
        Transition(S.NEW, E.NO_RECEIVER, S.UNDELIVERABLE,
                   "nobody could receive it: fail at once instead of waiting forever"),
        Transition(S.PENDING, E.RESULT, S.RESOLVED,
                   "the reply carries a result"),
        Transition(S.PENDING, E.ERROR, S.ERRORED,
                   "the reply carries a JSON-RPC error"),
        Transition(S.PENDING, E.PEER_LOST, S.INVALIDATED,
                   "the only party that could answer went away"),
        Transition(S.PENDING, E.COMM_CLOSED, S.CANCELLED,
                   "the comm closed under it"),
        Transition(S.PENDING, E.DEADLINE, S.TIMED_OUT,
                   "the caller's own deadline passed", guard=F.HAS_DEADLINE),
        Transition(S.PENDING, E.IDLE_WITHOUT_REPLY, S.NO_REPLY,
                   "the kernel went idle on the request without a reply (after a grace)"),
        *_late,
    ),
)

#: the events that end a pending request without an answer from its peer
FAILURE_EVENTS = REQUEST.ending_events(S.PENDING) - {E.RESULT, E.ERROR}
