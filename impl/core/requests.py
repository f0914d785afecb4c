"""The caller's side of comm RPCs for one endpoint: pending requests and their outcomes.

Rules (the ``request`` machine):
- A request is keyed by the Jupyter ``msg_id`` of the message that carried it;
  the reply is the message whose ``parent_header.msg_id`` is that id. The
  JSON-RPC ``id`` is the peer's business, not ours.
- ``start`` fires SENT when a receiver is present, or NO_RECEIVER: the request
  is *undeliverable* at once and its future has already failed. It never pends.
- A pending request ends in exactly one outcome, through its ``Tracked`` object;
  its future then holds the result (resolved) or the outcome's exception.
- An ended request is remembered in a bounded map (most recent ``remember``
  ones), as h2 remembers closed streams: a reply that arrives for it is the
  *late reply*, fired as LATE_REPLY, counted and never delivered. A reply for
  an id we never had, or forgot, is counted as unknown.
- Failing every request of a comm, or all of them, is O(N): an index
  comm_id -> msg_ids is kept, and each request is one Tracked (a dict lookup),
  never a ``transitions.Machine``.

Threading: one thread (the endpoint's I/O thread) calls the methods; the
counters and ``pending_count`` are plain reads, safe from any thread. Futures
complete on that thread, so their done-callbacks run there: keep them short.
No I/O happens here.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from concurrent.futures import Future
from enum import Enum
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from commspec.model.machines import (
    REQUEST,
    STDIN_REQUEST,
    RequestEvent,
    RequestFact,
    RequestState,
    StdinRequestEvent,
    StdinRequestState,
)
from commspec.model.trace import TraceSink, discard
from commspec.model.tracked import Tracked

from ..errors import RemoteError, RequestFailed, failure_for, failure_type

__all__ = [
    "STDIN_KINDS",
    "PendingRequests",
    "ReplyOutcome",
    "RequestRecord",
    "StdinRecord",
    "StdinRequests",
]

_TERMINAL_EVENTS = {
    RequestEvent.PEER_LOST,
    RequestEvent.COMM_CLOSED,
    RequestEvent.DEADLINE,
    RequestEvent.IDLE_WITHOUT_REPLY,
}

# shared, never mutated: one dict per request would cost time when failing 100k at once
_HAS_DEADLINE = MappingProxyType({RequestFact.HAS_DEADLINE: True})
_NO_DEADLINE = MappingProxyType({RequestFact.HAS_DEADLINE: False})


class ReplyOutcome(Enum):
    """What ``PendingRequests.reply`` did with a reply."""

    RESOLVED = "resolved"
    ERRORED = "errored"
    #: for a request that already ended: dropped, counted, traced
    LATE = "late"
    #: for an id never seen (or forgotten): dropped, counted
    UNKNOWN = "unknown"
    #: the content is neither ``{"result": ...}`` nor ``{"error": {...}}``: no state change
    MALFORMED = "malformed"


class _Record(Protocol):
    msg_id: str
    future: Future[Any]
    tracked: Tracked[Any, Any]


R = TypeVar("R", bound=_Record)


class _Requests(Generic[R]):
    """What both kinds of request share: the pending ones by msg_id, the ended
    ones remembered (bounded) so a reply to them is known late, and the counters."""

    def __init__(self, endpoint: str, sink: TraceSink = discard, remember: int = 10_000) -> None:
        if remember < 0:
            raise ValueError("remember must be >= 0")
        self.endpoint = endpoint
        self.sink = sink
        self.remember = remember
        self._pending: dict[str, R] = {}
        self._ended: OrderedDict[str, R] = OrderedDict()
        self._late_replies = 0
        self._unknown_replies = 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def late_replies(self) -> int:
        return self._late_replies

    @property
    def unknown_replies(self) -> int:
        return self._unknown_replies

    def _not_pending(self, msg_id: str, late_reply: Enum) -> ReplyOutcome:
        """A reply to a request that is not pending: late if it is remembered, else unknown."""
        ended = self._ended.get(msg_id)
        if ended is None:
            self._unknown_replies += 1
            return ReplyOutcome.UNKNOWN
        ended.tracked.fire(late_reply, msg_id=msg_id)
        self._late_replies += 1
        return ReplyOutcome.LATE

    def _remember_all(self, records: list[R]) -> None:
        """``_remember`` each of ``records`` in order, without inserting the ones that
        would be evicted again within the batch."""
        keep = self.remember
        if keep == 0 or not records:
            return
        ended = self._ended
        if len(records) >= keep:
            ended.clear()
            records = records[-keep:]
        for record in records:
            ended[record.msg_id] = record
        while len(ended) > keep:
            ended.popitem(last=False)

    def _remember(self, record: R) -> None:
        if self.remember == 0:
            return
        self._ended[record.msg_id] = record
        if len(self._ended) > self.remember:
            self._ended.popitem(last=False)


def _running(future: Future[Any] | None) -> Future[Any]:
    """``future`` (or a new one), running: a caller's ``cancel()`` is refused from now on,
    since outcomes come from the machine."""
    fut: Future[Any] = future if future is not None else Future()
    if not fut.running() and not fut.done():
        fut.set_running_or_notify_cancel()
    return fut


def _set_failure(record: _Record, comm_id: str | None, method: str, detail: str) -> None:
    """Fail the record's future with the exception of the state its machine ended in."""
    state = record.tracked.state
    record.future.set_exception(
        failure_type(state)(record.msg_id, comm_id, method, state.value, detail)
    )


class RequestRecord:
    """One request: its machine, its future, and where it belongs."""

    __slots__ = ("comm_id", "deadline", "future", "method", "msg_id", "tracked")

    def __init__(
        self,
        msg_id: str,
        comm_id: str,
        method: str,
        future: Future[Any],
        deadline: float | None,
        tracked: Tracked[RequestState, RequestEvent],
    ) -> None:
        self.msg_id = msg_id
        self.comm_id = comm_id
        self.method = method
        self.future = future
        self.deadline = deadline
        self.tracked = tracked

    @property
    def state(self) -> RequestState:
        return self.tracked.state


class PendingRequests(_Requests[RequestRecord]):
    def __init__(self, endpoint: str, sink: TraceSink = discard, remember: int = 10_000) -> None:
        super().__init__(endpoint, sink, remember)
        # insertion-ordered dicts used as ordered sets: iteration follows send order
        self._by_comm: dict[str, dict[str, None]] = {}
        # (deadline, sequence, msg_id); entries of requests that ended are skipped lazily
        self._deadlines: list[tuple[float, int, str]] = []
        self._seq = 0

    # -- reading ------------------------------------------------------------

    def is_pending(self, msg_id: str) -> bool:
        return msg_id in self._pending

    def knows(self, msg_id: str) -> bool:
        """Pending, or ended recently enough to be remembered."""
        return msg_id in self._pending or msg_id in self._ended

    def get(self, msg_id: str) -> RequestRecord | None:
        return self._pending.get(msg_id) or self._ended.get(msg_id)

    def pending_on(self, comm_id: str) -> list[str]:
        return list(self._by_comm.get(comm_id, ()))

    # -- inputs -------------------------------------------------------------

    def start(
        self,
        msg_id: str,
        comm_id: str,
        method: str,
        *,
        receiver_present: bool,
        deadline: float | None = None,
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        """Record a request as sent (SENT) or fail it at once (NO_RECEIVER).

        ``future`` lets a caller on another thread hand over the future it already
        returned to its own caller; by default a new one is made.
        """
        if msg_id in self._pending or msg_id in self._ended:
            raise ValueError(f"msg_id {msg_id} was already used for a request")
        fut = _running(future)
        tracked: Tracked[RequestState, RequestEvent] = Tracked(
            REQUEST, msg_id, endpoint=self.endpoint, sink=self.sink
        )
        record = RequestRecord(msg_id, comm_id, method, fut, deadline, tracked)
        if not receiver_present:
            tracked.fire(RequestEvent.NO_RECEIVER, msg_id=msg_id)
            self._remember(record)
            self._complete(record, detail="nobody could receive it")
            return fut
        tracked.fire(RequestEvent.SENT, msg_id=msg_id)
        self._pending[msg_id] = record
        self._by_comm.setdefault(comm_id, {})[msg_id] = None
        if deadline is not None:
            self._seq += 1
            heapq.heappush(self._deadlines, (deadline, self._seq, msg_id))
        return fut

    def reply(self, msg_id: str, content: Any) -> ReplyOutcome:
        """A reply whose parent is ``msg_id`` arrived, with its JSON-RPC payload."""
        record = self._pending.get(msg_id)
        if record is None:
            return self._not_pending(msg_id, RequestEvent.LATE_REPLY)
        parsed = _parse_reply(content)
        if parsed is None:
            return ReplyOutcome.MALFORMED
        if parsed[0] == "result":
            self._end(record, RequestEvent.RESULT)
            record.future.set_result(parsed[1])
            return ReplyOutcome.RESOLVED
        code, message = parsed[1]
        self._end(record, RequestEvent.ERROR)
        record.future.set_exception(
            failure_for(
                RequestState.ERRORED,
                msg_id=msg_id,
                comm_id=record.comm_id,
                method=record.method,
                code=code,
                message=message,
            )
        )
        return ReplyOutcome.ERRORED

    def fail(self, msg_id: str, event: RequestEvent, detail: str = "") -> bool:
        """End one pending request with a failure event; False if it was not pending."""
        record = self._pending.get(msg_id)
        if record is None:
            return False
        self._fail(record, event, detail)
        return True

    def fail_comm(self, comm_id: str, event: RequestEvent, detail: str = "") -> int:
        """End every pending request on a comm (COMM_CLOSED, PEER_LOST...)."""
        ids = self._by_comm.pop(comm_id, None)
        if not ids:
            return 0
        return self._fail_many(list(ids), event, detail)

    def fail_all(self, event: RequestEvent, detail: str = "") -> int:
        """End every pending request (PEER_LOST when the last peer left...)."""
        ids = list(self._pending)
        self._by_comm.clear()
        return self._fail_many(ids, event, detail)

    def expire(self, now: float) -> int:
        """Fire DEADLINE for every pending request whose deadline is at or before ``now``."""
        expired = 0
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, msg_id = heapq.heappop(heap)
            record = self._pending.get(msg_id)
            if record is None:
                continue
            self._fail(record, RequestEvent.DEADLINE, "its deadline passed")
            expired += 1
        return expired

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and heap[0][2] not in self._pending:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # -- internals ----------------------------------------------------------

    def _fail(
        self, record: RequestRecord, event: RequestEvent, detail: str, unindex: bool = True
    ) -> None:
        if event not in _TERMINAL_EVENTS:
            raise ValueError(f"{event.value!r} is not a failure event")
        record.tracked.fire(
            event, _HAS_DEADLINE if record.deadline is not None else _NO_DEADLINE, record.msg_id
        )
        self._forget_pending(record, unindex)
        self._complete(record, detail)

    def _fail_many(self, ids: list[str], event: RequestEvent, detail: str) -> int:
        """``_fail`` for many requests at once (already unindexed from ``_by_comm``), in
        order: each gets its own transition (traced when a sink listens), its own
        exception and its future failed, as ``_fail`` does; what is done once instead of
        per request is the machine row lookup (per state and deadline fact) and the
        bounded memory of ended requests (only the last ``remember`` are kept)."""
        if event not in _TERMINAL_EVENTS:
            raise ValueError(f"{event.value!r} is not a failure event")
        pending = self._pending
        # The machine row of (state, deadline fact) is looked up once, by the first request
        # that takes it (through Tracked.fire); the others reuse it: (dest, exception type,
        # dest's value) by state, one table per value of the fact.
        Move = tuple[RequestState, type[RequestFailed], str]
        moves: tuple[dict[RequestState, Move], dict[RequestState, Move]] = ({}, {})
        ended: list[RequestRecord] = []
        keep = ended.append
        try:
            for msg_id in ids:
                record = pending.get(msg_id)
                if record is None:
                    continue  # ended meanwhile (by a done-callback of an earlier one)
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
                        move = known[source] = (dest, failure_type(dest), dest.value)
                # one at a time, after its move, as _fail does: a done-callback of an
                # earlier request still sees the later ones pending
                del pending[msg_id]
                keep(record)
                record.future.set_exception(
                    move[1](msg_id, record.comm_id, record.method, move[2], detail)
                )
        finally:
            self._remember_all(ended)
        return len(ended)

    def _end(self, record: RequestRecord, event: RequestEvent) -> None:
        record.tracked.fire(event, msg_id=record.msg_id)
        self._forget_pending(record, unindex=True)

    def _forget_pending(self, record: RequestRecord, unindex: bool) -> None:
        del self._pending[record.msg_id]
        if unindex:
            ids = self._by_comm.get(record.comm_id)
            if ids is not None:
                ids.pop(record.msg_id, None)
                if not ids:
                    del self._by_comm[record.comm_id]
        self._remember(record)

    @staticmethod
    def _complete(record: RequestRecord, detail: str) -> None:
        _set_failure(record, record.comm_id, record.method, detail)


def _parse_reply(content: Any) -> tuple[str, Any] | None:
    """("result", value), ("error", (code, message)), or None if it is neither."""
    if not isinstance(content, dict):
        return None
    if "result" in content and "error" not in content:
        return ("result", content["result"])
    error = content.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message", "")
        if isinstance(code, int) and not isinstance(code, bool):
            return ("error", (code, str(message)))
    return None


# -- stdin requests ---------------------------------------------------------------

STDIN_KINDS = {"input_request": "input_reply", "rpc_request": "rpc_reply"}


class StdinRecord:
    __slots__ = ("future", "identity", "kind", "msg_id", "tracked")

    def __init__(
        self,
        msg_id: str,
        identity: bytes,
        kind: str,
        future: Future[Any],
        tracked: Tracked[StdinRequestState, StdinRequestEvent],
    ) -> None:
        self.msg_id = msg_id
        self.identity = identity
        self.kind = kind
        self.future = future
        self.tracked = tracked


class StdinRequests(_Requests[StdinRecord]):
    """The kernel's requests on stdin (input_request, ark's rpc_request), by msg_id.

    Rules (the ``stdin_request`` machine): each is addressed to one frontend
    identity; the endpoint first tries the send (ROUTER_MANDATORY), then calls
    ``start`` with whether it got through. A pending one ends *replied*,
    *unreachable* (its frontend left) or *interrupted*. A reply after the end is
    a late reply: counted, dropped. Same threading rules as PendingRequests.
    """

    def start(
        self,
        msg_id: str,
        identity: bytes,
        kind: str,
        *,
        reached: bool,
        detail: str = "",
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        if kind not in STDIN_KINDS:
            raise ValueError(f"not a stdin request kind: {kind!r}")
        fut = _running(future)
        tracked: Tracked[StdinRequestState, StdinRequestEvent] = Tracked(
            STDIN_REQUEST, msg_id, endpoint=self.endpoint, sink=self.sink
        )
        record = StdinRecord(msg_id, identity, kind, fut, tracked)
        if not reached:
            tracked.fire(StdinRequestEvent.HOST_UNREACHABLE, msg_id=msg_id)
            self._ended_with(record, detail or "its frontend is gone (EHOSTUNREACH)")
            return fut
        tracked.fire(StdinRequestEvent.SENT, msg_id=msg_id)
        self._pending[msg_id] = record
        return fut

    def reply(self, msg_id: str, msg_type: str, content: Any) -> ReplyOutcome:
        record = self._pending.get(msg_id)
        if record is None:
            return self._not_pending(msg_id, StdinRequestEvent.LATE_REPLY)
        if msg_type != STDIN_KINDS[record.kind]:
            return ReplyOutcome.MALFORMED
        if record.kind == "input_request":
            if not isinstance(content, dict) or not isinstance(content.get("value"), str):
                return ReplyOutcome.MALFORMED
            parsed: tuple[str, Any] | None = ("result", content["value"])
        else:
            parsed = _parse_reply(content)
            if parsed is None:
                return ReplyOutcome.MALFORMED
        record.tracked.fire(StdinRequestEvent.REPLY, msg_id=msg_id)
        del self._pending[msg_id]
        self._remember(record)
        assert parsed is not None
        if parsed[0] == "result":
            record.future.set_result(parsed[1])
            return ReplyOutcome.RESOLVED
        code, message = parsed[1]
        record.future.set_exception(
            RemoteError(msg_id, None, record.kind, record.tracked.state.value, code, message)
        )
        return ReplyOutcome.ERRORED

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
        if event not in (StdinRequestEvent.PEER_LOST, StdinRequestEvent.INTERRUPT):
            raise ValueError(f"{event.value!r} is not a failure event")
        record.tracked.fire(event, msg_id=record.msg_id)
        del self._pending[record.msg_id]
        self._ended_with(record, detail)

    def _ended_with(self, record: StdinRecord, detail: str) -> None:
        self._remember(record)
        _set_failure(record, None, record.kind, detail)
