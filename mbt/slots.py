"""The model's slots mapped to a system's objects, and what that system shows of them.

Rules:
- A system under test (live or in-process) keeps one :class:`Slots`: frontend
  index -> the frontend's trace name and session id (and whether it still
  runs), comm slot -> a comm id and the frontend that owns it, request slot ->
  a future and the msg_id its machine traced.
- What the system shows is read from its trace (a :class:`~.recorder.Recorder`)
  plus two numbers only the kernel knows (subscribers, late replies): one
  :meth:`Slots.observe` and one :meth:`Slots.check` for every system, so the
  model is compared with each by the same code.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from commspec.model.machines import (
    REQUEST,
    STDIN_REQUEST,
    RequestEvent,
    StdinRequestEvent,
)
from commspec.model.system import Bounds
from commspec.model.world import Kind

from .errors import MbtFailure
from .projection import GONE, Observation
from .recorder import Recorder

__all__ = ["RESULTS", "UNENDED", "Slots"]

#: request states before any outcome (the machines' non-terminal states)
UNENDED = frozenset(
    s.value for m in (REQUEST, STDIN_REQUEST) for s in m.states if s not in m.terminal
)
#: request states whose future holds a result (every other outcome is an exception)
RESULTS = frozenset(
    s.value
    for s in REQUEST.dests(RequestEvent.RESULT) | STDIN_REQUEST.dests(StdinRequestEvent.REPLY)
)


@dataclass
class _Request:
    kind: Kind
    party: int  # the asking frontend (frontend request) or the asked one (stdin), else -1
    future: Future[Any]
    endpoint: str
    machine: str
    msg_id: str


@dataclass
class _Frontend:
    name: str
    session_id: str
    alive: bool = True
    #: reconnects asked of it: one per loss the model follows with a reconnect
    reconnects: int = 0


class Slots:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.frontends: list[_Frontend | None] = []
        self.comm_ids: list[str | None] = []
        #: per comm slot, the frontend that owns it (opened it, or for whom the kernel did)
        self.comm_owners: list[int] = []
        self.requests: list[_Request | None] = []
        #: frontends started so far, over all slots
        self.starts = 0

    def start(self, bounds: Bounds) -> None:
        self.frontends = [None] * bounds.frontends
        self.comm_ids = [None] * bounds.comms
        self.comm_owners = [-1] * bounds.comms
        self.requests = [None] * bounds.requests

    # -- recording what the system did ---------------------------------------------

    def started_frontend(self, f: int, name: str, session_id: str) -> None:
        self.frontends[f] = _Frontend(name, session_id)
        self.starts += 1

    def opened(self, c: int, comm_id: str, owner: int) -> None:
        self.comm_ids[c] = comm_id
        self.comm_owners[c] = owner

    def bind(self, r: int, kind: Kind, party: int, future: Future[Any], endpoint: str,
             machine: str, mark: int, timeout: float = 0.0) -> None:
        """Request slot ``r`` is the first ``machine`` object ``endpoint`` started after
        ``mark`` (waiting up to ``timeout`` for it to be traced)."""
        msg_id = self.recorder.started(endpoint, machine, mark, timeout)
        if msg_id is None:
            raise MbtFailure(f"request slot {r}: no {machine} started at {endpoint}")
        self.requests[r] = _Request(kind, party, future, endpoint, machine, msg_id)

    def gone(self, f: int) -> None:
        fe = self.frontends[f]
        if fe is not None:
            fe.alive = False

    def reconnected(self, f: int) -> None:
        fe = self.frontends[f]
        assert fe is not None
        fe.reconnects += 1

    # -- reading ------------------------------------------------------------------------

    def alive(self, f: int) -> bool:
        fe = self.frontends[f] if 0 <= f < len(self.frontends) else None
        return fe is not None and fe.alive

    def name(self, f: int) -> str:
        return self._frontend(f).name

    def session_id(self, f: int) -> str:
        return self._frontend(f).session_id

    def _frontend(self, f: int) -> _Frontend:
        fe = self.frontends[f] if 0 <= f < len(self.frontends) else None
        if fe is None:
            raise MbtFailure(f"frontend {f} never started")
        return fe

    def cid(self, c: int) -> str:
        cid = self.comm_ids[c]
        if cid is None:
            raise MbtFailure(f"comm slot {c} was never opened")
        return cid

    def owner(self, c: int) -> int:
        return self.comm_owners[c]

    def request(self, r: int) -> _Request:
        lr = self.requests[r]
        if lr is None:
            raise MbtFailure(f"request slot {r} is unused")
        return lr

    def state_of(self, r: int) -> str:
        lr = self.request(r)
        return self.recorder.get(lr.endpoint, lr.machine, lr.msg_id, "new")

    def lost_unanswered(self, f: int) -> bool:
        """Frontend ``f``'s session is lost, and no reconnect has answered that loss yet."""
        fe = self._frontend(f)
        state = self.recorder.get(fe.name, "session", fe.session_id, "")
        return state == "lost" and fe.reconnects < self.recorder.losses[fe.name]

    def futures_caught_up(self) -> bool:
        """Every request the trace shows ended has its future done."""
        for lr in self.requests:
            if lr is not None and not lr.future.done():
                state = self.recorder.get(lr.endpoint, lr.machine, lr.msg_id, "new")
                if state not in UNENDED and (
                    lr.kind is not Kind.FRONTEND_TO_KERNEL or self.alive(lr.party)
                ):
                    return False
        return True

    def observe(self, *, subscribers: int, kernel_late: int) -> Observation:
        rec = self.recorder
        sessions: list[str] = []
        fcomms: list[tuple[str, ...] | None] = []
        flate: list[int] = []
        for fe in self.frontends:
            if fe is None:
                sessions.append("idle")
                fcomms.append(tuple("new" for _ in self.comm_ids))
                flate.append(0)
            elif not fe.alive:
                sessions.append("dead")
                fcomms.append(None)
                flate.append(0)
            else:
                sessions.append(rec.get(fe.name, "session", fe.session_id, "connecting"))
                fcomms.append(tuple(
                    "new" if cid is None
                    else rec.get(fe.name, "frontend_comm", cid, "new")
                    for cid in self.comm_ids
                ))
                flate.append(rec.late[fe.name])
        requests: list[str | None] = []
        for lr in self.requests:
            if lr is None:
                requests.append(None)
            elif lr.kind is Kind.FRONTEND_TO_KERNEL and not self.alive(lr.party):
                requests.append(GONE)
            else:
                requests.append(rec.get(lr.endpoint, lr.machine, lr.msg_id, "new"))
        return Observation(
            sessions=tuple(sessions),
            presence=rec.get("kernel", "presence", "iopub", "never_subscribed"),
            subscribers=subscribers,
            kernel_comms=tuple(
                "new" if cid is None else rec.get("kernel", "kernel_comm", cid, "new")
                for cid in self.comm_ids
            ),
            frontend_comms=tuple(fcomms),
            requests=tuple(requests),
            kernel_late=kernel_late,
            frontend_late=tuple(flate),
        )

    def check(self) -> None:
        """Every traced event declared; each request ended at most once, with a future
        that agrees with its traced outcome."""
        self.recorder.require_conformance()
        for key, n in self.recorder.outcomes.items():
            if n > 1:
                raise MbtFailure(f"{key} ended {n} times")
        for r, lr in enumerate(self.requests):
            if lr is None:
                continue
            state = self.recorder.get(lr.endpoint, lr.machine, lr.msg_id, "new")
            if state in UNENDED:
                continue
            if not lr.future.done():
                raise MbtFailure(f"request {r} is {state} but its future is not done")
            delivered = lr.future.exception() is None
            if delivered != (state in RESULTS):
                raise MbtFailure(
                    f"request {r} is {state} but its future "
                    f"{'holds a result' if delivered else 'failed'}"
                )
