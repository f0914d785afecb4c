"""The live system: a kernel under test and reference frontends in processes of their own.

Rules:
- :class:`LiveSystem` is a :class:`~commspec.mbt.harness.System`: the lockstep
  drives it by model actions and compares what it observes with the model.
- Slots are mapped to live objects: frontend index -> a frontend process of
  :mod:`.processes`, comm slot -> a comm id, request slot -> a future and the
  msg_id its machine traced. A crash is SIGKILL; a freeze is SIGSTOP until the
  kernel's heartbeat has dropped the frontend, then SIGCONT.
- Settling waits on the trace (never on a guessed sleep, always bounded by
  ``step_timeout``, and by ``quiet`` seconds without any event) until the live
  projection is one the model allows and every ended request's future is done.
  Reconnecting is a protocol step of the model: while settling, a frontend whose
  session is lost is told to reconnect when the model's options have it past
  ``lost``.
- The live system has no say in the order of its deliveries (the wire has), so it
  ignores the lockstep's chooser.
- ``close`` always releases everything (frontend processes, frozen ones included,
  the kernel, files), even after a failed step, and is safe to call twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.frontend import FrontendOptions
from commspec.model.actions import (
    Action,
    Crash,
    Exit,
    Freeze,
    FrontendClose,
    FrontendOpen,
    FrontendRequest,
    KernelClose,
    KernelOpen,
    KernelRequest,
    KernelStdinRequest,
    Shutdown,
    Start,
)
from commspec.model.machines import (
    REQUEST,
    STDIN_REQUEST,
    RequestEvent,
    SessionState,
    StdinRequestEvent,
)
from commspec.model.system import Bounds
from commspec.model.world import Kind, Target, World

from .adapter import TARGETS, KernelAdapter
from .errors import MbtFailure
from .harness import Chooser, Mismatch
from .processes import FrontendPool, FrontendProcess
from .projection import GONE, PAST_LOSS, Observation
from .race import Race, RaceOrder
from .recorder import Coverage, Recorder

__all__ = ["MBT_OPTIONS", "QUIET", "STEP_TIMEOUT", "LiveSystem"]

MBT_OPTIONS = FrontendOptions(
    heartbeat_interval=0.1,
    heartbeat_timeout=1.0,
    # a start against a kernel that has shut down stays "connecting" for the whole test
    connect_timeout=120.0,
    probe_interval=0.05,
    no_reply_grace=0.05,
)

#: how long the live system may take to reach the quiescent point of one step
STEP_TIMEOUT = 10.0
#: a step whose live trace was silent this long without matching has failed (every
#: live step takes milliseconds; the bound only makes a failing step fail fast)
QUIET = 1.0

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
class _LiveRequest:
    kind: Kind
    party: int  # the asking frontend (frontend request) or the asked one (stdin), else -1
    future: Future[Any]
    endpoint: str
    machine: str
    msg_id: str


@dataclass
class _LiveFrontend:
    process: FrontendProcess
    name: str
    session_id: str
    alive: bool = True
    #: reconnects asked of it: one per loss the model follows with a reconnect
    reconnects: int = 0


class LiveSystem:
    """A kernel under test (through its adapter) and reference frontends as processes."""

    def __init__(
        self,
        adapter: KernelAdapter,
        *,
        options: FrontendOptions = MBT_OPTIONS,
        coverage: Coverage | None = None,
        step_timeout: float = STEP_TIMEOUT,
        quiet: float = QUIET,
        pool: FrontendPool | None = None,
    ) -> None:
        self.adapter = adapter
        self.options = options
        self.step_timeout = step_timeout
        self.quiet = quiet
        self.recorder = Recorder(coverage)
        self.frontends: list[_LiveFrontend | None] = []
        self.comm_ids: list[str | None] = []
        #: per comm slot, the frontend that owns it (opened it, or for whom the kernel did)
        self.comm_owners: list[int] = []
        self.requests: list[_LiveRequest | None] = []
        self.connection: ConnectionInfo | None = None
        #: frontend processes: a pool given is the caller's to close, else ours
        self._own_pool = pool is None
        self._pool = pool
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start(self, bounds: Bounds) -> None:
        self.frontends = [None] * bounds.frontends
        self.comm_ids = [None] * bounds.comms
        self.comm_owners = [-1] * bounds.comms
        self.requests = [None] * bounds.requests
        if self._pool is None:
            self._pool = FrontendPool()
        self.adapter.start(self.recorder)
        # read once: the file may go when the kernel shuts down, frontends may start later
        self.connection = read_connection_file(self.adapter.connection_file)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        if self._pool is not None:
            procs = [fe.process for fe in self.frontends if fe is not None]
            try:
                if self._own_pool:
                    self._pool.close()
                else:
                    self._pool.release(procs)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        try:
            self.adapter.stop()
        except Exception as e:  # pragma: no cover
            errors.append(e)
        if errors:
            raise errors[0]

    @property
    def zygote_pid(self) -> int | None:
        """The process the frontends are forked from (None before start)."""
        return None if self._pool is None else self._pool.pid

    # -- what it can do ----------------------------------------------------

    def can(self, action: Action, world: World) -> bool:
        """Whether the live system can make ``action`` happen as the model means it.

        A freeze is the kernel's heartbeat dropping a stopped frontend, so it needs a
        running kernel that counts the frontend among its subscribers (the model lets a
        frontend still connecting to a kernel that shut down freeze too). The queued
        race needs an adapter that can hold the kernel's inbound queues.
        """
        if isinstance(action, Freeze):
            return world.kernel.up and world.kernel.peers[action.frontend]
        if isinstance(action, Race) and action.order is RaceOrder.QUEUED:
            return callable(getattr(self.adapter, "hold_inbound", None))
        return True

    def perform(self, action: Action, choose: Chooser | None = None) -> None:
        mark = self.recorder.mark()
        match action:
            case Start(frontend=f):
                self._start_frontend(f)
            case FrontendOpen(frontend=f, comm=c, target=target):
                self.comm_ids[c] = self._fe(f).process.call(
                    "open", target=TARGETS[target.value])
                self.comm_owners[c] = f
            case FrontendRequest(frontend=f, comm=c, request=r):
                fe = self._fe(f)
                future = fe.process.request(self._cid(c), "echo", {"slot": r})
                self._bind(r, Kind.FRONTEND_TO_KERNEL, f, future, fe.name, "request", mark)
            case FrontendClose(frontend=f, comm=c):
                self._fe(f).process.call("close_comm", comm_id=self._cid(c))
            case Exit(frontend=f):
                fe = self._fe(f)
                fe.alive = False
                fe.process.exit()
            case Crash(frontend=f):
                fe = self._fe(f)
                fe.alive = False
                fe.process.kill()
            case Freeze(frontend=f):
                self._freeze(f)
            case KernelOpen(comm=c, owner=owner, target=target):
                self.comm_ids[c] = self.adapter.open_comm(
                    TARGETS[target.value], target is Target.PERSISTENT,
                    owner=self._fe(owner).session_id,
                )
                self.comm_owners[c] = owner
            case KernelClose(comm=c):
                self.adapter.close_comm(self._cid(c))
            case KernelRequest(comm=c, request=r):
                future = self.adapter.comm_request(self._cid(c), "ask", {"slot": r})
                self._bind(r, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request", mark)
            case KernelStdinRequest(frontend=f, request=s):
                asked = self.frontends[f]
                assert asked is not None
                future = self.adapter.stdin_request(asked.session_id.encode())
                self._bind(s, Kind.STDIN, f, future, "kernel", "stdin_request", mark)
            case Shutdown():
                self.adapter.stop()
            case Race(comm=c, request=r, order=order):
                self._race(c, r, order, mark)
            case _:
                raise MbtFailure(f"no live counterpart for {action}")

    def _start_frontend(self, f: int) -> None:
        assert self.connection is not None and self._pool is not None, "start() first"
        session_id = f"mbt{f}-{uuid.uuid4().hex[:12]}"
        process = self._pool.take(self.recorder)
        # recorded before connecting: close() must end the process whatever happens next
        self.frontends[f] = fe = _LiveFrontend(process, "", session_id)
        fe.name = process.call(
            "connect",
            connection=self.connection.to_dict(),
            session_id=session_id,
            options=asdict(self.options),
            targets=sorted(TARGETS.values()),
        )

    def _freeze(self, f: int) -> None:
        """SIGSTOP until the kernel's heartbeat has dropped the frontend, then SIGCONT:
        the frontend resumes to find its link gone (the model's heartbeat_timeout)."""
        fe = self._fe(f)
        before = self.adapter.subscriber_count
        fe.process.freeze()
        try:
            # nothing is traced while the heartbeat runs out: no quiet bound here
            if not self.recorder.wait_until(
                lambda: self.adapter.subscriber_count < before, self.step_timeout
            ):
                raise MbtFailure(f"the kernel never dropped frozen frontend {f}")
        finally:
            fe.process.resume()

    def _race(self, c: int, r: int, order: RaceOrder, mark: int) -> None:
        """A kernel request on comm slot ``c``; its owner receives it and holds the
        answer; then answer and SIGKILL in ``order``."""
        f = self.comm_owners[c]
        fe = self._fe(f)
        proc = fe.process
        proc.call("hold", on=True)
        try:
            future = self.adapter.comm_request(self._cid(c), "ask", {"slot": r})
            self._bind(r, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request", mark)
            if not proc.wait_held(r, self.step_timeout):
                raise MbtFailure(f"frontend {f} never received kernel request {r}")
        finally:
            proc.call("hold", on=False)
        lr = self.requests[r]
        assert lr is not None

        def ended() -> bool:
            return self.recorder.get("kernel", "request", lr.msg_id, "new") not in UNENDED

        def wait(predicate: Callable[[], bool], what: str) -> None:
            if not self.recorder.wait_until(predicate, self.step_timeout, self.quiet):
                raise MbtFailure(f"race {order.value}: {what}")

        if order is RaceOrder.REPLY_FIRST:
            proc.call("release", slot=r)
            wait(ended, f"kernel request {r} never ended after its answer")
        elif order is RaceOrder.IOPUB_FIRST:
            proc.call("drop_iopub")
            wait(ended, f"kernel request {r} never ended after frontend {f}'s IOPub went")
            late = self.adapter.late_replies
            proc.call("release", slot=r)
            wait(lambda: self.adapter.late_replies > late,
                 f"the answer to kernel request {r} was never counted as late")
        elif order is RaceOrder.QUEUED:
            held: Future[bool] = getattr(self.adapter, "hold_inbound")()  # noqa: B009
            proc.call("release", slot=r)
            proc.call("drop_iopub")
            if not held.result(self.step_timeout):
                raise MbtFailure("the answer and the unsubscribe never both reached the kernel")
            wait(ended, f"kernel request {r} never ended")
        else:  # together: back to back, on the wire's luck
            proc.call("release", slot=r)
        fe.alive = False
        proc.kill()

    def _fe(self, f: int) -> _LiveFrontend:
        fe = self.frontends[f] if 0 <= f < len(self.frontends) else None
        if fe is None or not fe.alive:
            raise MbtFailure(f"frontend {f} is not running")
        return fe

    def _cid(self, c: int) -> str:
        cid = self.comm_ids[c]
        if cid is None:
            raise MbtFailure(f"comm slot {c} was never opened")
        return cid

    def _bind(self, r: int, kind: Kind, party: int, future: Future[Any], endpoint: str,
              machine: str, mark: int) -> None:
        msg_id = self.recorder.started(endpoint, machine, mark, self.step_timeout)
        if msg_id is None:
            raise MbtFailure(f"request slot {r}: no {machine} started at {endpoint}")
        self.requests[r] = _LiveRequest(kind, party, future, endpoint, machine, msg_id)

    # -- settling ------------------------------------------------------------

    def settle(
        self, options: Mapping[Observation, World], choose: Chooser | None = None
    ) -> Observation | Mismatch:
        matched: list[Observation] = []
        reconnected: set[int] = set()

        def settled() -> bool:
            self.recorder.require_conformance()
            self._reconnect_where_the_model_does(options, reconnected)
            obs = self.observe()
            if obs in options and self._futures_caught_up():
                matched.append(obs)
                return True
            return False

        if not self.recorder.wait_until(settled, self.step_timeout, self.quiet):
            return Mismatch(self.observe(), f"waited up to {self.step_timeout} s, quiet for "
                            f"{self.quiet} s")
        return matched[-1]

    def _reconnect_where_the_model_does(
        self, options: Mapping[Observation, World], chosen: set[int]
    ) -> None:
        """Reconnect is a protocol step of the model, taken while the reconnect budget
        lasts: a live frontend whose session is lost reconnects (once per loss) when a
        state the model may be in has it past ``lost``. The budget is shared, so each
        reconnect made in this step (``chosen``) narrows the states the next one may
        rely on."""
        for f, fe in enumerate(self.frontends):
            if fe is None or not fe.alive:
                continue
            lost = self.recorder.get(fe.name, "session", fe.session_id, "")
            if lost != SessionState.LOST.value or fe.reconnects >= self.recorder.losses[fe.name]:
                continue
            allowed = [o for o in options
                       if all(o.sessions[g] in PAST_LOSS for g in (*chosen, f))]
            if allowed:
                chosen.add(f)
                fe.reconnects += 1
                fe.process.call("reconnect")

    def _futures_caught_up(self) -> bool:
        """Every request the trace shows ended has its future done (a frontend process
        reports the outcome just after the transition)."""
        for lr in self.requests:
            if lr is not None and not lr.future.done():
                state = self.recorder.get(lr.endpoint, lr.machine, lr.msg_id, "new")
                if state not in UNENDED and (
                    lr.kind is not Kind.FRONTEND_TO_KERNEL or self._alive(lr.party)
                ):
                    return False
        return True

    def _alive(self, f: int) -> bool:
        fe = self.frontends[f]
        return fe is not None and fe.alive

    # -- observing -------------------------------------------------------------------

    def observe(self) -> Observation:
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
            elif lr.kind is Kind.FRONTEND_TO_KERNEL and not self._alive(lr.party):
                requests.append(GONE)
            else:
                requests.append(rec.get(lr.endpoint, lr.machine, lr.msg_id, "new"))
        return Observation(
            sessions=tuple(sessions),
            presence=rec.get("kernel", "presence", "iopub", "never_subscribed"),
            subscribers=self.adapter.subscriber_count,
            kernel_comms=tuple(
                "new" if cid is None else rec.get("kernel", "kernel_comm", cid, "new")
                for cid in self.comm_ids
            ),
            frontend_comms=tuple(fcomms),
            requests=tuple(requests),
            kernel_late=self.adapter.late_replies,
            frontend_late=tuple(flate),
        )

    # -- checks --------------------------------------------------------------------

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
