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
- The reconcile races (:mod:`.reconcile`) run their phases one after the other,
  each waited for on the trace or on the frontend's word: the kernel dropped the
  frozen frontend and it noticed its loss; the unseen comm open at its owner; the
  reconnected frontend's comm_info_reply held back in its process
  (``hold_replies``); the kernel request handled there; then the reply let through.
- The frontends are the reference endpoint, with the reference reconcile rules or a
  broken variant's (``frontend_policies``).
- ``close`` always releases everything (frontend processes, frozen ones included,
  the kernel, files), even after a failed step, and is safe to call twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.impl.frontend import FrontendOptions
from commspec.model.actions import (
    Action,
    Crash,
    Exit,
    Freeze,
    FrontendAdopt,
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
from commspec.model.system import Bounds
from commspec.model.world import Kind, Target, World

from .adapter import TARGETS, KernelAdapter
from .errors import MbtFailure
from .harness import Chooser, Mismatch
from .processes import FrontendPool, FrontendProcess
from .projection import PAST_LOSS, Observation
from .race import Race, RaceOrder
from .reconcile import ReconcileRace, UnseenRequest
from .recorder import Coverage, Recorder
from .slots import UNENDED, Slots

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
        frontend_policies: type[FrontendPolicies] = FrontendPolicies,
    ) -> None:
        self.adapter = adapter
        self.frontend_policies = frontend_policies
        self.options = options
        self.step_timeout = step_timeout
        self.quiet = quiet
        self.recorder = Recorder(coverage)
        self.slots = Slots(self.recorder)
        #: per frontend slot, the process that runs it (ended ones included)
        self.processes: list[FrontendProcess | None] = []
        self.connection: ConnectionInfo | None = None
        #: frontend processes: a pool given is the caller's to close, else ours
        self._own_pool = pool is None
        self._pool = pool
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start(self, bounds: Bounds) -> None:
        self.slots.start(bounds)
        self.processes = [None] * bounds.frontends
        if self._pool is None:
            self._pool = FrontendPool()
        keep_detached = getattr(self.adapter, "keep_detached", None)
        if callable(keep_detached):
            keep_detached(bounds.detached)
        self.adapter.start(self.recorder)
        # read once: the file may go when the kernel shuts down, frontends may start later
        self.connection = read_connection_file(self.adapter.connection_file)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        if self._pool is not None:
            procs = [p for p in self.processes if p is not None]
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
            return self.holds_inbound()
        return True

    def holds_inbound(self) -> bool:
        """The adapter has ``hold_inbound`` and, if it can tell (``supports_hold_inbound``:
        a kernel in another process says at start, so ask once started), its kernel
        serves it."""
        if not callable(getattr(self.adapter, "hold_inbound", None)):
            return False
        supports = getattr(self.adapter, "supports_hold_inbound", None)
        return not callable(supports) or bool(supports())

    def perform(self, action: Action, choose: Chooser | None = None) -> None:
        mark = self.recorder.mark()
        slots = self.slots
        match action:
            case Start(frontend=f):
                self._start_frontend(f)
            case FrontendOpen(frontend=f, comm=c, target=target):
                slots.opened(c, self._proc(f).call("open", target=TARGETS[target.value]), f)
            case FrontendRequest(frontend=f, comm=c, request=r):
                future = self._proc(f).request(slots.cid(c), "echo", {"slot": r})
                self._bind(r, Kind.FRONTEND_TO_KERNEL, f, future, slots.name(f), "request",
                           mark)
            case FrontendClose(frontend=f, comm=c):
                self._proc(f).call("close_comm", comm_id=slots.cid(c))
            case FrontendAdopt(frontend=f):
                self._proc(f).call("adopt")
            case Exit(frontend=f):
                proc = self._proc(f)
                slots.gone(f)
                proc.exit()
            case Crash(frontend=f):
                proc = self._proc(f)
                slots.gone(f)
                proc.kill()
            case Freeze(frontend=f):
                self._freeze(f)
            case KernelOpen(comm=c, owner=owner, target=target):
                self._kernel_open(c, owner, target)
            case KernelClose(comm=c):
                self.adapter.close_comm(slots.cid(c))
            case KernelRequest(comm=c, request=r):
                future = self.adapter.comm_request(slots.cid(c), "ask", {"slot": r})
                self._bind(r, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request", mark)
            case KernelStdinRequest(frontend=f, request=s):
                future = self.adapter.stdin_request(slots.session_id(f).encode())
                self._bind(s, Kind.STDIN, f, future, "kernel", "stdin_request", mark)
            case Shutdown():
                self.adapter.stop()
            case Race(comm=c, request=r, order=order):
                self._race(c, r, order, mark)
            case ReconcileRace():
                self._reconcile_race(action)
            case _:
                raise MbtFailure(f"no live counterpart for {action}")

    def _kernel_open(self, c: int, owner: int, target: Target) -> str:
        self._proc(owner)  # it must be running
        comm_id = self.adapter.open_comm(TARGETS[target.value], target is Target.PERSISTENT,
                                         owner=self.slots.session_id(owner))
        self.slots.opened(c, comm_id, owner)
        return comm_id

    def _reconcile_race(self, race: ReconcileRace) -> None:
        """The phases of :mod:`.reconcile`, each waited for before the next."""
        f = race.frontend
        proc = self._proc(f)
        slots, recorder = self.slots, self.recorder
        name, session = slots.name(f), slots.session_id(f)

        def session_is(state: str) -> bool:
            return recorder.get(name, "session", session, "") == state

        def wait(predicate: Callable[[], bool], what: str) -> None:
            if not recorder.wait_until(predicate, self.step_timeout, self.quiet):
                raise MbtFailure(f"{race.name}: {what}")

        self._freeze(f)
        # noticed by its heartbeat, which traces nothing meanwhile: no quiet bound
        if not recorder.wait_until(lambda: session_is("lost"), self.step_timeout):
            raise MbtFailure(f"{race.name}: frontend {f} never noticed its loss")
        if isinstance(race, UnseenRequest):
            comm_id = self._kernel_open(race.comm, race.owner, race.target)
            owner = slots.name(race.owner)
            wait(lambda: recorder.get(owner, "frontend_comm", comm_id, "") == "open",
                 f"frontend {race.owner} never opened comm {race.comm}")
        held = proc.replies_held
        proc.call("hold_replies", on=True)
        slots.reconnected(f)
        proc.call("reconnect")
        if not proc.wait_reply_held(held, self.step_timeout):
            raise MbtFailure(f"{race.name}: frontend {f}'s comm_info_reply never came")
        if not session_is("reconciling"):
            raise MbtFailure(f"{race.name}: frontend {f} is not reconciling")
        mark = recorder.mark()
        future = self.adapter.comm_request(slots.cid(race.comm), "ask",
                                           {"slot": race.request})
        self._bind(race.request, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request",
                   mark)
        if not proc.wait_seen(race.request, self.step_timeout):
            raise MbtFailure(f"{race.name}: frontend {f} never received kernel request "
                             f"{race.request}")
        proc.call("hold_replies", on=False)

    def _start_frontend(self, f: int) -> None:
        assert self.connection is not None and self._pool is not None, "start() first"
        session_id = f"mbt{f}-{uuid.uuid4().hex[:12]}"
        process = self._pool.take(self.recorder)
        # recorded before connecting: close() must end the process whatever happens next
        self.processes[f] = process
        name = process.connect(self.connection, session_id, self.options,
                               sorted(TARGETS.values()), policies=self.frontend_policies)
        self.slots.started_frontend(f, name, session_id)

    def _freeze(self, f: int) -> None:
        """SIGSTOP until the kernel's heartbeat has dropped the frontend, then SIGCONT:
        the frontend resumes to find its link gone (the model's heartbeat_timeout)."""
        proc = self._proc(f)
        before = self.adapter.subscriber_count
        proc.freeze()
        try:
            # nothing is traced while the heartbeat runs out: no quiet bound here
            if not self.recorder.wait_until(
                lambda: self.adapter.subscriber_count < before, self.step_timeout
            ):
                raise MbtFailure(f"the kernel never dropped frozen frontend {f}")
        finally:
            proc.resume()

    def _race(self, c: int, r: int, order: RaceOrder, mark: int) -> None:
        """A kernel request on comm slot ``c``; its owner receives it and holds the
        answer; then answer and SIGKILL in ``order``."""
        f = self.slots.owner(c)
        proc = self._proc(f)
        proc.call("hold", on=True)
        try:
            future = self.adapter.comm_request(self.slots.cid(c), "ask", {"slot": r})
            self._bind(r, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request", mark)
            if not proc.wait_held(r, self.step_timeout):
                raise MbtFailure(f"frontend {f} never received kernel request {r}")
        finally:
            proc.call("hold", on=False)
        def ended() -> bool:
            return self.slots.state_of(r) not in UNENDED

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
        self.slots.gone(f)
        proc.kill()

    def _proc(self, f: int) -> FrontendProcess:
        proc = self.processes[f] if 0 <= f < len(self.processes) else None
        if proc is None or not self.slots.alive(f):
            raise MbtFailure(f"frontend {f} is not running")
        return proc

    def _bind(self, r: int, kind: Kind, party: int, future: Future[Any], endpoint: str,
              machine: str, mark: int) -> None:
        self.slots.bind(r, kind, party, future, endpoint, machine, mark, self.step_timeout)

    # -- settling ------------------------------------------------------------

    def settle(
        self, options: Mapping[Observation, World], choose: Chooser | None = None
    ) -> Observation | Mismatch:
        matched: list[Observation] = []
        reconnected: set[int] = set()

        def settled() -> bool:
            self.recorder.require_conformance()
            self._check_adapter_trace()
            self._reconnect_where_the_model_does(options, reconnected)
            obs = self.observe()
            if obs in options and self.slots.futures_caught_up():
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
        for f, proc in enumerate(self.processes):
            if proc is None or not self.slots.alive(f) or not self.slots.lost_unanswered(f):
                continue
            allowed = [o for o in options
                       if all(o.sessions[g] in PAST_LOSS for g in (*chosen, f))]
            if allowed:
                chosen.add(f)
                self.slots.reconnected(f)
                proc.call("reconnect")

    # -- observing -------------------------------------------------------------------

    def observe(self) -> Observation:
        return self.slots.observe(subscribers=self.adapter.subscriber_count,
                                  kernel_late=self.adapter.late_replies)

    def check(self) -> None:
        self._check_adapter_trace()
        self.slots.check()

    def _check_adapter_trace(self) -> None:
        """An adapter that reads its kernel's trace from elsewhere (a file) may have
        found a line that is not an event: its optional ``check_trace`` says so."""
        check_trace = getattr(self.adapter, "check_trace", None)
        if callable(check_trace):
            check_trace()
