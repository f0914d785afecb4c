"""The caller's side of comm RPCs and stdin requests: pending ones and how they ended.

Rules (the ``request`` and ``stdin_request`` machines):
- A request is keyed by the Jupyter ``msg_id`` of the message that carried it;
  its reply is the message whose ``parent_header.msg_id`` is that id. The
  JSON-RPC ``id`` is the peer's business, not ours.
- ``start`` fires SENT when a receiver is present, or NO_RECEIVER: the request
  is *undeliverable* at once and has already ended. It never pends.
- A pending request ends in exactly one outcome, through its ``Tracked``
  object, and each end is one :class:`~commspec.impl.core.events.RequestEnded`
  handed to ``emit``: the result, or the outcome's exception.
- An ended request is remembered in a bounded map (most recent ``remember``
  ones), as h2 remembers closed streams: a reply that arrives for it is the
  *late reply*, fired as LATE_REPLY, counted and never delivered. A reply for
  an id never seen, or forgotten, is counted as unknown.
- Failing every request of a comm, or all of them, is O(N): an index
  comm_id -> msg_ids is kept, the machine row of each (state, fact) is looked
  up once per batch, and only the last ``remember`` are remembered.
No I/O, no futures, no clock: time comes in as a value (``expire(now)``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from enum import Enum
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from commspec.model.machines import (
    FAILURE_EVENTS,
    REQUEST,
    STDIN_FAILURE_EVENTS,
    STDIN_REQUEST,
    RequestEvent,
    RequestFact,
    RequestState,
    StdinRequestEvent,
    StdinRequestState,
)
from commspec.model.trace import TraceSink, discard
from commspec.model.tracked import Tracked

from ..errors import RemoteError, RequestFailed, failure_type
from .bounded import BoundedMap
from .events import RequestEnded
from .jsonrpc import parse_reply

__all__ = [
    "STDIN_KINDS",
    "PendingRequests",
    "ReplyOutcome",
    "RequestRecord",
    "StdinRecord",
    "StdinRequests",
]

Emit = Callable[[RequestEnded], None]
Clock = Callable[[], float]

# shared, never mutated: one dict per request would cost time when failing 100k at once
_HAS_DEADLINE = MappingProxyType({RequestFact.HAS_DEADLINE: True})
_NO_DEADLINE = MappingProxyType({RequestFact.HAS_DEADLINE: False})

#: stdin request kinds and the reply each expects
STDIN_KINDS = {"input_request": "input_reply", "rpc_request": "rpc_reply"}


def _zero() -> float:
    return 0.0


class ReplyOutcome(Enum):
    """What ``reply`` did with a reply."""

    RESOLVED = "resolved"
    ERRORED = "errored"
    #: for a request that already ended: dropped, counted, traced
    LATE = "late"
    #: for an id never seen (or forgotten): dropped, counted
    UNKNOWN = "unknown"
    #: the content is neither a result nor an error: no state change
    MALFORMED = "malformed"


class RequestRecord:
    """One comm RPC: its machine and where it belongs."""

    __slots__ = ("comm_id", "deadline", "method", "msg_id", "tracked")

    def __init__(self, msg_id: str, comm_id: str, method: str, deadline: float | None,
                 tracked: Tracked[RequestState, RequestEvent]) -> None:
        self.msg_id = msg_id
        self.comm_id = comm_id
        self.method = method
        self.deadline = deadline
        self.tracked = tracked

    @property
    def state(self) -> RequestState:
        return self.tracked.state


class StdinRecord:
    """One stdin request: its machine and the frontend it is addressed to."""

    __slots__ = ("identity", "kind", "msg_id", "tracked")

    def __init__(self, msg_id: str, identity: bytes, kind: str,
                 tracked: Tracked[StdinRequestState, StdinRequestEvent]) -> None:
        self.msg_id = msg_id
        self.identity = identity
        self.kind = kind
        self.tracked = tracked

    @property
    def state(self) -> StdinRequestState:
        return self.tracked.state


R = TypeVar("R", RequestRecord, StdinRecord)


class _Requests(Generic[R]):
    """What both kinds share: the pending ones by msg_id, the ended ones remembered
    (bounded) so a reply to them is known late, and the counters."""

    def __init__(self, endpoint: str, emit: Emit, *, sink: TraceSink = discard,
                 clock: Clock = _zero, remember: int = 10_000) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.clock = clock
        self._emit = emit
        self._pending: dict[str, R] = {}
        self._ended: BoundedMap[str, R] = BoundedMap(remember)
        self.late_replies = 0
        self.unknown_replies = 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def is_pending(self, msg_id: str) -> bool:
        return msg_id in self._pending

    def knows(self, msg_id: str) -> bool:
        """Pending, or ended recently enough to be remembered."""
        return msg_id in self._pending or msg_id in self._ended

    def get(self, msg_id: str) -> R | None:
        return self._pending.get(msg_id) or self._ended.get(msg_id)

    def pending(self) -> Iterable[R]:
        return list(self._pending.values())

    def _check_new(self, msg_id: str) -> None:
        if msg_id in self._pending or msg_id in self._ended:
            raise ValueError(f"msg_id {msg_id} was already used for a request")

    def _not_pending(self, msg_id: str, late_reply: Any) -> ReplyOutcome:
        """A reply to a request that is not pending: late if remembered, else unknown."""
        ended = self._ended.get(msg_id)
        if ended is None:
            self.unknown_replies += 1
            return ReplyOutcome.UNKNOWN
        ended.tracked.fire(late_reply, msg_id=msg_id)
        self.late_replies += 1
        return ReplyOutcome.LATE

    def _ended_with(self, record: R, error: RequestFailed | None, result: Any = None) -> None:
        self._pending.pop(record.msg_id, None)
        self._ended.remember(record.msg_id, record)
        self._emit(RequestEnded(record.msg_id, result, error))


class PendingRequests(_Requests[RequestRecord]):
    def __init__(self, endpoint: str, emit: Emit, *, sink: TraceSink = discard,
                 clock: Clock = _zero, remember: int = 10_000) -> None:
        super().__init__(endpoint, emit, sink=sink, clock=clock, remember=remember)
        # insertion-ordered dicts used as ordered sets: iteration follows send order
        self._by_comm: dict[str, dict[str, None]] = {}
        # (deadline, sequence, msg_id); entries of requests that ended are skipped lazily
        self._deadlines: list[tuple[float, int, str]] = []
        self._seq = 0

    def pending_on(self, comm_id: str) -> list[str]:
        return list(self._by_comm.get(comm_id, ()))

    # -- inputs -------------------------------------------------------------

    def start(self, msg_id: str, comm_id: str, method: str, *, receiver_present: bool,
              deadline: float | None = None, detail: str = "",
              failure: type[RequestFailed] | None = None) -> bool:
        """SENT (True: it pends) or NO_RECEIVER (False: it ended, undeliverable, as
        ``failure`` if given: a cause more precise than its state)."""
        self._check_new(msg_id)
        tracked: Tracked[RequestState, RequestEvent] = Tracked(
            REQUEST, msg_id, endpoint=self.endpoint, sink=self.sink, clock=self.clock
        )
        record = RequestRecord(msg_id, comm_id, method, deadline, tracked)
        if not receiver_present:
            tracked.fire(RequestEvent.NO_RECEIVER, msg_id=msg_id)
            self._ended_with(record, self._failure(record, detail, failure))
            return False
        tracked.fire(RequestEvent.SENT, msg_id=msg_id)
        self._pending[msg_id] = record
        self._by_comm.setdefault(comm_id, {})[msg_id] = None
        if deadline is not None:
            self._seq += 1
            heapq.heappush(self._deadlines, (deadline, self._seq, msg_id))
        return True

    def reply(self, msg_id: str, content: Any) -> ReplyOutcome:
        """A reply whose parent is ``msg_id`` arrived, with its JSON-RPC payload."""
        record = self._pending.get(msg_id)
        if record is None:
            return self._not_pending(msg_id, RequestEvent.LATE_REPLY)
        parsed = parse_reply(content)
        if parsed is None:
            return ReplyOutcome.MALFORMED
        ok, value = parsed
        record.tracked.fire(RequestEvent.RESULT if ok else RequestEvent.ERROR, msg_id=msg_id)
        self._unindex(record)
        if ok:
            self._ended_with(record, None, value)
            return ReplyOutcome.RESOLVED
        code, message = value
        self._ended_with(record, RemoteError(
            msg_id, record.comm_id, record.method, record.state.value, code, message))
        return ReplyOutcome.ERRORED

    def fail(self, msg_id: str, event: RequestEvent, detail: str = "") -> bool:
        """End one pending request with a failure event; False if it was not pending."""
        record = self._pending.get(msg_id)
        if record is None:
            return False
        self._check_failure(event)
        record.tracked.fire(event, _HAS_DEADLINE if record.deadline is not None
                            else _NO_DEADLINE, msg_id)
        self._unindex(record)
        self._ended_with(record, self._failure(record, detail))
        return True

    def fail_comm(self, comm_id: str, event: RequestEvent, detail: str = "",
                  failure: type[RequestFailed] | None = None) -> int:
        """End every pending request on a comm (COMM_CLOSED, PEER_LOST...), as ``failure``
        if given."""
        ids = self._by_comm.pop(comm_id, None)
        return self._fail_many(list(ids), event, detail, failure) if ids else 0

    def fail_all(self, event: RequestEvent, detail: str = "") -> int:
        """End every pending request (PEER_LOST when the last peer left...)."""
        ids = list(self._pending)
        self._by_comm.clear()
        return self._fail_many(ids, event, detail)

    def expire(self, now: float) -> int:
        """DEADLINE for every pending request whose deadline is at or before ``now``."""
        expired = 0
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, msg_id = heapq.heappop(heap)
            if self.fail(msg_id, RequestEvent.DEADLINE, "its deadline passed"):
                expired += 1
        return expired

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and heap[0][2] not in self._pending:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # -- internals ----------------------------------------------------------

    @staticmethod
    def _check_failure(event: RequestEvent) -> None:
        if event not in FAILURE_EVENTS:
            raise ValueError(f"{event.value!r} is not a failure event")

    @staticmethod
    def _failure(record: RequestRecord, detail: str,
                 failure: type[RequestFailed] | None = None) -> RequestFailed:
        state = record.state
        return (failure or failure_type(state))(record.msg_id, record.comm_id, record.method,
                                                state.value, detail)

    def _unindex(self, record: RequestRecord) -> None:
        ids = self._by_comm.get(record.comm_id)
        if ids is not None:
            ids.pop(record.msg_id, None)
            if not ids:
                del self._by_comm[record.comm_id]

    def _fail_many(self, ids: list[str], event: RequestEvent, detail: str,
                   failure: type[RequestFailed] | None = None) -> int:
        """``fail`` for many requests at once (already unindexed from ``_by_comm``), in
        order: each gets its own transition (traced when a sink listens), its own
        exception and its own RequestEnded. What is done once instead of per request:
        the machine row lookup (per state and deadline fact) and the bounded memory of
        ended requests (only the last ``remember`` are kept)."""
        self._check_failure(event)
        pending, emit = self._pending, self._emit
        # (dest, exception type, dest's value) by source state, one table per fact value
        Move = tuple[RequestState, type[RequestFailed], str]
        moves: tuple[dict[RequestState, Move], dict[RequestState, Move]] = ({}, {})
        ended: list[tuple[str, RequestRecord]] = []
        try:
            for msg_id in ids:
                record = pending.pop(msg_id, None)
                if record is None:
                    continue
                tracked = record.tracked
                has_deadline = record.deadline is not None
                known = moves[has_deadline]
                move = known.get(tracked.state)
                if move is not None and tracked.sink is discard:
                    tracked.state = move[0]  # a known row and nobody traces: just the move
                else:
                    source = tracked.state
                    dest = tracked.fire(
                        event, _HAS_DEADLINE if has_deadline else _NO_DEADLINE, msg_id
                    )
                    if move is None:
                        move = known[source] = (dest, failure or failure_type(dest), dest.value)
                ended.append((msg_id, record))
                emit(RequestEnded(msg_id, None, move[1](
                    msg_id, record.comm_id, record.method, move[2], detail)))
        finally:
            self._ended.remember_all(ended)
        return len(ended)


class StdinRequests(_Requests[StdinRecord]):
    """The kernel's requests on stdin (input_request, ark's rpc_request), by msg_id.

    Each is addressed to one frontend identity; the endpoint tries the send
    (ROUTER_MANDATORY) and ``start`` is told whether it got through. A pending one
    ends *replied*, *unreachable* (its frontend left) or *interrupted*.
    """

    def start(self, msg_id: str, identity: bytes, kind: str, *, reached: bool,
              detail: str = "") -> bool:
        if kind not in STDIN_KINDS:
            raise ValueError(f"not a stdin request kind: {kind!r}")
        self._check_new(msg_id)
        tracked: Tracked[StdinRequestState, StdinRequestEvent] = Tracked(
            STDIN_REQUEST, msg_id, endpoint=self.endpoint, sink=self.sink, clock=self.clock
        )
        record = StdinRecord(msg_id, identity, kind, tracked)
        if not reached:
            tracked.fire(StdinRequestEvent.HOST_UNREACHABLE, msg_id=msg_id)
            self._ended_with(record, self._failure(
                record, detail or "its frontend is gone (EHOSTUNREACH)"))
            return False
        tracked.fire(StdinRequestEvent.SENT, msg_id=msg_id)
        self._pending[msg_id] = record
        return True

    def reply(self, msg_id: str, msg_type: str, content: Any) -> ReplyOutcome:
        record = self._pending.get(msg_id)
        if record is None:
            return self._not_pending(msg_id, StdinRequestEvent.LATE_REPLY)
        if msg_type != STDIN_KINDS[record.kind]:
            return ReplyOutcome.MALFORMED
        if record.kind == "input_request":
            value = content.get("value") if isinstance(content, dict) else None
            if not isinstance(value, str):
                return ReplyOutcome.MALFORMED
            record.tracked.fire(StdinRequestEvent.REPLY, msg_id=msg_id)
            self._ended_with(record, None, value)
            return ReplyOutcome.RESOLVED
        parsed = parse_reply(content)
        if parsed is None:
            return ReplyOutcome.MALFORMED
        record.tracked.fire(StdinRequestEvent.REPLY, msg_id=msg_id)
        ok, result = parsed
        if ok:
            self._ended_with(record, None, result)
            return ReplyOutcome.RESOLVED
        code, message = result
        self._ended_with(record, RemoteError(
            msg_id, None, record.kind, record.state.value, code, message))
        return ReplyOutcome.ERRORED

    def only_pending_for(self, identity: bytes | None) -> str | None:
        """The msg_id of the one stdin request pending for ``identity``; None if it has
        none or several (a reply without a parent can then answer only that one)."""
        found = [r.msg_id for r in self._pending.values() if r.identity == identity]
        return found[0] if len(found) == 1 else None

    def fail_peer(self, identity: bytes, detail: str = "its frontend left") -> int:
        """PEER_LOST for every pending request addressed to ``identity``."""
        records = [r for r in self._pending.values() if r.identity == identity]
        for record in records:
            self._fail(record, StdinRequestEvent.PEER_LOST, detail)
        return len(records)

    def fail_all(self, event: StdinRequestEvent, detail: str = "") -> int:
        """PEER_LOST (nobody left) or INTERRUPT (interrupt_request, shutdown) for all."""
        records = list(self._pending.values())
        for record in records:
            self._fail(record, event, detail)
        return len(records)

    def _fail(self, record: StdinRecord, event: StdinRequestEvent, detail: str) -> None:
        if event not in STDIN_FAILURE_EVENTS:
            raise ValueError(f"{event.value!r} is not a failure event")
        record.tracked.fire(event, msg_id=record.msg_id)
        self._ended_with(record, self._failure(record, detail))

    @staticmethod
    def _failure(record: StdinRecord, detail: str) -> RequestFailed:
        state = record.state
        return failure_type(state)(record.msg_id, None, record.kind, state.value, detail)
