"""Lockstep: one environment action applied to the system model and to the live system.

Rules:
- The model is :class:`~commspec.model.system.SystemModel`. The harness holds a
  *set* of model states the live system may be in (states that differ only in
  what the live system does not show). An action is enabled when the model
  enables it in at least one of them.
- Applying an action: the model takes the environment step from every state
  that enables it; the live system gets the same action (frontend index -> a
  frontend process of :mod:`.processes`, comm slot -> a comm id, request slot ->
  a future and its msg_id; a crash is SIGKILL, a freeze SIGSTOP until the kernel's
  heartbeat has dropped the frontend, then SIGCONT). The model then runs protocol
  steps only, breadth first, to every *quiescent* state (no protocol step enabled).
  The live system is waited on, on its trace (never on a guessed sleep, always
  bounded), until its projection equals the projection of one of those
  quiescent states; the matching states are the new set. No match within the
  bound is a failure that shows the live projection and the model's options.
  Reconnecting is a protocol step of the model: while waiting, a live frontend
  whose session is lost is told to reconnect when the model's states have it
  past ``lost``.
- The race (``race``, not a model action): a kernel request, then its frontend's
  answer and its departure in an order the test chooses (``RaceOrder``); the
  model's outcomes are narrowed to those that order allows.
- Every live transition is fed, as it happens, to a
  :class:`~commspec.model.trace_check.TraceChecker`: an event its machine does
  not declare fails the step. After each step the model's state properties are
  checked on every state kept, and each live request has ended at most once,
  with a future that agrees with its traced outcome.
- ``close`` always releases everything (frontend processes, frozen ones
  included, the kernel, files), even after a failed step.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.frontend import FrontendOptions
from commspec.model.actions import (
    ENVIRONMENT_ACTIONS,
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
from commspec.model.errors import InvalidTransition
from commspec.model.invariants import state_violations
from commspec.model.machines import (
    MACHINES,
    SESSION,
    FrontendCommState,
    KernelCommState,
    RequestState,
    SessionEvent,
)
from commspec.model.system import Bounds, Step, StepKind, SystemModel
from commspec.model.trace import TraceEvent
from commspec.model.trace_check import TraceChecker
from commspec.model.world import Kind, Msg, Proc, Target, World

from .adapter import TARGETS, KernelAdapter
from .processes import FrontendPool, FrontendProcess
from .race import Race, RaceOrder, rule_name

__all__ = [
    "MBT_BOUNDS",
    "MBT_OPTIONS",
    "SUPPORTED",
    "Action",
    "Coverage",
    "Harness",
    "MbtFailure",
    "Move",
    "Observation",
    "Recorder",
    "Row",
    "project",
]

#: the environment actions the harness can apply to the live system, by name; "race"
#: (not a model action: kernel_request, then its owner answers and crashes) stands for
#: every race order, ``race_<order>`` for one
SUPPORTED = frozenset({a.name for a in ENVIRONMENT_ACTIONS} | {Race.name})

def default_supported(bounds: Bounds) -> frozenset[str]:
    """Every supported action, whatever the bounds."""
    return SUPPORTED


#: small bounds: a default run finishes in well under a minute
MBT_BOUNDS = Bounds(frontends=2, comms=2, requests=2, reconnects=1, faults=2)

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
#: how often a wait re-reads the observations that are queries, not trace events (the
#: kernel's subscriber count may change just after the event that announced it)
POLL = 0.002
#: a bound on the protocol-only exploration after each step
QUIESCE_LIMIT = 50_000


class MbtFailure(AssertionError):
    """The live system and the model disagree (or a property failed)."""


# =========================================================================
# the live trace
# =========================================================================

Row = tuple[str, str, str, str]  # (machine, source, event, dest)
Move = tuple[str, str, str]  # (source, event, dest) of one transition


class Coverage:
    """Which declared transitions the live system took, over any number of runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken: Counter[Row] = Counter()

    def add(self, row: Row) -> None:
        with self._lock:
            self.taken[row] += 1

    @staticmethod
    def declared() -> list[Row]:
        return [
            (m.name, t.source.value, t.event.value, t.dest.value)
            for m in MACHINES
            for t in m.transitions
        ]

    def uncovered(self) -> list[Row]:
        with self._lock:
            return [r for r in dict.fromkeys(self.declared()) if r not in self.taken]

    def per_machine(self) -> dict[str, tuple[int, int]]:
        """machine -> (rows taken, rows declared)."""
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            for m in MACHINES:
                rows = {(m.name, t.source.value, t.event.value, t.dest.value)
                        for t in m.transitions}
                out[m.name] = (sum(1 for r in rows if r in self.taken), len(rows))
        return out


class Recorder:
    """The trace sink of every live endpoint: state per object, checked as it arrives."""

    def __init__(self, coverage: Coverage | None = None) -> None:
        self._cond = threading.Condition()
        self.events: list[TraceEvent] = []
        self.state: dict[tuple[str, str, str], str] = {}
        self.late: Counter[str] = Counter()  # late_reply events per endpoint
        self.losses: Counter[str] = Counter()  # session link_lost events per endpoint
        #: objects that moved from pending into an outcome, and how often
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self.checker = TraceChecker(context=6)
        self.coverage = coverage
        self._last_event = 0.0

    def __call__(self, event: TraceEvent) -> None:
        with self._cond:
            self._last_event = time.monotonic()
            self.events.append(event)
            self.checker.feed(len(self.events), event)
            key = (event.endpoint, event.machine, event.object)
            self.state[key] = event.dest
            if event.event == "late_reply":
                self.late[event.endpoint] += 1
            elif event.machine == "session" and event.event == "link_lost":
                self.losses[event.endpoint] += 1
            if event.source == "pending" and event.dest != "pending":
                self.outcomes[key] += 1
            self._cond.notify_all()
        if self.coverage is not None:
            self.coverage.add((event.machine, event.source, event.event, event.dest))

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int) -> list[TraceEvent]:
        with self._cond:
            return list(self.events[mark:])

    def get(self, endpoint: str, machine: str, obj: str, default: str) -> str:
        with self._cond:
            return self.state.get((endpoint, machine, obj), default)

    def moves(self, endpoint: str, machine: str, obj: str | None = None) -> list[Move]:
        """The transitions ``endpoint``'s ``machine`` took (one object's, given ``obj``)."""
        with self._cond:
            return [
                (e.source, e.event, e.dest) for e in self.events
                if e.endpoint == endpoint and e.machine == machine
                and (obj is None or e.object == obj)
            ]

    def started(self, endpoint: str, machine: str, mark: int, timeout: float) -> str | None:
        """The id of the first ``machine`` object ``endpoint`` started after ``mark``
        (waiting up to ``timeout``), or None."""
        found: list[str] = []

        def begun() -> bool:
            found[:] = [e.object for e in self.since(mark)
                        if e.endpoint == endpoint and e.machine == machine
                        and e.source == "new"][:1]
            return bool(found)

        return found[0] if self.wait_until(begun, timeout) else None

    def require_conformance(self) -> None:
        """Raise MbtFailure if the trace checker found an event its machine does not allow."""
        deviation = self.checker.report.deviation
        if deviation is not None:
            raise MbtFailure("the live system took a transition its machine does not "
                             "declare:\n" + deviation.describe())

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float, quiet: float | None = None
    ) -> bool:
        """Re-evaluate ``predicate`` on every trace event (and at least every ``POLL``, for
        the observations that are queries) until it holds (True), ``timeout`` passes, or,
        given ``quiet``, nothing was traced for that long (False): a live system with
        nothing left in flight that still does not match will not match later."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if predicate():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            with self._cond:
                last = max(self._last_event, start)
                if quiet is not None and now - last >= quiet:
                    return False
                self._cond.wait(min(deadline - now, POLL))


# =========================================================================
# projection: what the live system and the model can both show
# =========================================================================


class Observation(NamedTuple):
    sessions: tuple[str, ...]  # per frontend: idle, dead, or its session state
    presence: str
    subscribers: int
    kernel_comms: tuple[str, ...]  # per comm slot
    frontend_comms: tuple[tuple[str, ...] | None, ...]  # per frontend (None: dead)
    requests: tuple[str | None, ...]  # per request slot: its state (None: unused)
    kernel_late: int
    frontend_late: tuple[int, ...]

    def diff(self, other: Observation) -> list[str]:
        return [
            f"{name}: live {a!r}, model {b!r}"
            for name, a, b in zip(self._fields, self, other, strict=True)
            if a != b
        ]


GONE = "caller gone"
#: session states a lost session reaches by reconnecting
PAST_LOSS = frozenset({"reconnecting", "reconciling", "ready"})


def project(w: World) -> Observation:
    """The model state as the live system can show it."""
    sessions = []
    fcomms: list[tuple[str, ...] | None] = []
    flate = []
    for fe in w.frontends:
        if fe.proc is Proc.IDLE:
            sessions.append("idle")
        elif fe.proc is Proc.DEAD:
            sessions.append("dead")
        else:
            assert fe.session is not None
            sessions.append(fe.session.value)
        dead = fe.proc is Proc.DEAD
        fcomms.append(None if dead else tuple(s.value for s in fe.comms))
        flate.append(0 if dead else fe.late_replies)
    requests: list[str | None] = []
    for req in w.requests:
        if req is None:
            requests.append(None)
        elif (
            req.kind is Kind.FRONTEND_TO_KERNEL
            and w.frontends[req.party].proc is Proc.DEAD
        ):
            requests.append(GONE)
        else:
            requests.append(req.state.value)
    k = w.kernel
    return Observation(
        sessions=tuple(sessions),
        presence=k.presence.value,
        subscribers=sum(k.peers),
        kernel_comms=tuple(kc.state.value for kc in k.comms),
        frontend_comms=tuple(fcomms),
        requests=tuple(requests),
        kernel_late=k.late_replies,
        frontend_late=tuple(flate),
    )


def _race_outcome(q: World, before: World, r: int, order: RaceOrder) -> bool:
    """Whether quiescent state ``q`` is an outcome the race ``order`` can end in."""
    req = q.requests[r]
    if order in (RaceOrder.REPLY_FIRST, RaceOrder.QUEUED):
        return req is not None and req.state is RequestState.RESOLVED
    if order is RaceOrder.IOPUB_FIRST:
        return (
            req is not None
            and req.state is RequestState.INVALIDATED
            and q.kernel.late_replies == before.kernel.late_replies + 1
        )
    return True


#: session states in which a frontend adopts a request on a comm it does not hold yet
#: (it waits for the comm_info_reply that decides whether it holds the comm)
_REATTACHING = SESSION.dests(SessionEvent.RECONNECT) | SESSION.sources(SessionEvent.RECONCILED)


def _only_owner_answers(w: World, c: int, owner: int) -> bool:
    """Whether no other frontend can receive a request on comm slot ``c`` and answer it.

    A bystander holding the comm answers it too, and its answer can resolve the request
    before the owner's IOPub goes (or arrive late as well): the orders would not decide
    the outcome any more. A bystander is harmless when the request cannot reach it (its
    subscription is not live), or it neither holds the comm, nor is about to adopt it
    (a comm_open on its way, a reconnect being reconciled)."""
    for g, fe in enumerate(w.frontends):
        if g == owner or not fe.sub_live:
            continue
        if (
            fe.comms[c] is FrontendCommState.OPEN
            or fe.session in _REATTACHING
            or (Msg.OPEN, c) in fe.iopub
        ):
            return False
    return True


# =========================================================================
# the harness
# =========================================================================


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


@dataclass
class StepRecord:
    action: Action
    seconds: float
    states: int  # model states kept after it


class Harness:
    def __init__(
        self,
        adapter: KernelAdapter,
        bounds: Bounds = MBT_BOUNDS,
        *,
        options: FrontendOptions = MBT_OPTIONS,
        coverage: Coverage | None = None,
        step_timeout: float = STEP_TIMEOUT,
        quiet: float = QUIET,
        supported: Iterable[str] | None = None,
        pool: FrontendPool | None = None,
    ) -> None:
        self.adapter = adapter
        self.bounds = bounds
        self.model = SystemModel(bounds)
        self.options = options
        self.step_timeout = step_timeout
        self.quiet = quiet
        self.supported = (
            frozenset(supported) if supported is not None else default_supported(bounds)
        )
        self.recorder = Recorder(coverage)
        self.states: frozenset[World] = frozenset({self.model.initial()})
        self._enabled: tuple[frozenset[World] | None, list[Action]] = (None, [])
        self.frontends: list[_LiveFrontend | None] = [None] * bounds.frontends
        self.comm_ids: list[str | None] = [None] * bounds.comms
        self.requests: list[_LiveRequest | None] = [None] * bounds.requests
        self.program: list[Action] = []
        self.steps: list[StepRecord] = []
        self.connection: ConnectionInfo | None = None
        #: frontend processes: a pool given is the caller's to close, else ours
        self._own_pool = pool is None
        self._pool = pool
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Harness:
        self._started = True
        if self._pool is None:
            self._pool = FrontendPool()
        self.adapter.start(self.recorder)
        # read once: the file may go when the kernel shuts down, frontends may start later
        self.connection = read_connection_file(self.adapter.connection_file)
        return self

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

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what may happen -----------------------------------------------------

    def enabled(self) -> list[Action]:
        """Environment actions the model enables in some kept state, in a stable order."""
        if self._enabled[0] is not self.states:  # asked by every rule's precondition
            self._enabled = (self.states, self._enabled_now())
        return list(self._enabled[1])

    def _enabled_now(self) -> list[Action]:
        seen: dict[Action, None] = {}
        for w in sorted(self.states, key=repr):
            for step, _ in self._env_steps(w):
                seen.setdefault(step.action, None)
            if self._race_orders():
                for action in self._races(w):
                    seen.setdefault(action, None)
        return list(seen)

    def _races(self, w: World) -> list[Race]:
        """Race(c, r, order) where kernel_request(c, r) would reach one live frontend
        that may still crash afterwards."""
        out: list[Race] = []
        if w.faults_left < 1:
            return out
        orders = self._race_orders()
        for step, _ in self.model.successors(w):
            if not isinstance(step.action, KernelRequest):
                continue
            c, r = step.action.comm, step.action.request
            kc = w.kernel.comms[c]
            owner = kc.owner
            if (
                kc.state is KernelCommState.OPEN
                and 0 <= owner < len(w.frontends)
                and w.kernel.peers[owner]
                and w.frontends[owner].proc is Proc.RUNNING
                and w.frontends[owner].comms[c] is FrontendCommState.OPEN
                and _only_owner_answers(w, c, owner)
            ):
                out.extend(Race(c, r, order) for order in orders)
        return out

    def _race_orders(self) -> list[RaceOrder]:
        """The race orders to offer: ``race`` in ``supported`` means all of them,
        ``race_<order>`` one; ``queued`` only if the adapter can hold its inbound queues."""
        can_hold = callable(getattr(self.adapter, "hold_inbound", None))
        return [
            o for o in RaceOrder
            if (Race.name in self.supported or rule_name(o) in self.supported)
            and (o is not RaceOrder.QUEUED or can_hold)
        ]

    def enabled_named(self, name: str) -> list[Action]:
        return [a for a in self.enabled() if a.name == name]

    def _env_steps(self, w: World) -> list[tuple[Step, World]]:
        return [
            (step, succ)
            for step, succ in self.model.successors(w)
            if step.kind is StepKind.ENVIRONMENT
            and step.action.name in self.supported
            and self._live_can(step.action, w)
        ]

    @staticmethod
    def _live_can(action: Action, w: World) -> bool:
        """Whether the live system can make ``action`` happen as the model means it.

        A freeze is the kernel's heartbeat dropping a stopped frontend, so it needs a
        running kernel that counts the frontend among its subscribers (the model lets a
        frontend still connecting to a kernel that shut down freeze too).
        """
        if isinstance(action, Freeze):
            return w.kernel.up and w.kernel.peers[action.frontend]
        return True

    # -- one step ----------------------------------------------------------------

    def apply(self, action: Action) -> None:
        began = time.monotonic()
        self.program.append(action)
        if isinstance(action, Race):
            quiescent = self._race_model(action)
            mark = self.recorder.mark()
            self._live(action, mark)
        else:
            nexts = [succ for w in self.states for step, succ in self._env_steps(w)
                     if step.action == action]
            if not nexts:
                raise MbtFailure(f"the model does not enable {action} here")
            mark = self.recorder.mark()
            self._live(action, mark)
            quiescent = set()
            for w in nexts:
                quiescent |= self._quiesce(w)
        options = {project(q): q for q in quiescent}
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
            raise MbtFailure(self._mismatch(action, options))
        obs = matched[-1]
        self.states = frozenset(q for q in quiescent if project(q) == obs)
        self._check_invariants()
        self.steps.append(StepRecord(action, time.monotonic() - began, len(self.states)))

    def _reconnect_where_the_model_does(
        self, options: dict[Observation, World], chosen: set[int]
    ) -> None:
        """Reconnect is a protocol step of the model, taken while the reconnect budget
        lasts: a live frontend whose session is lost reconnects (once per loss) when a
        state the model may be in has it past ``lost``. The budget is shared, so each
        reconnect made in this step (``chosen``) narrows the states the next one may
        rely on."""
        for f, fe in enumerate(self.frontends):
            if fe is None or not fe.alive:
                continue
            lost = self.recorder.get(fe.name, "session", fe.session_id, "") == "lost"
            if not lost or fe.reconnects >= self.recorder.losses[fe.name]:
                continue
            allowed = [o for o in options
                       if all(o.sessions[g] in PAST_LOSS for g in (*chosen, f))]
            if allowed:
                chosen.add(f)
                fe.reconnects += 1
                fe.process.call("reconnect")

    def _race_model(self, race: Race) -> set[World]:
        """kernel_request(c, r); the owner's answer and its crash in the order the race
        makes; then quiescence. Crashes are taken at any point of the protocol's progress
        and the outcomes kept are those the order forces: the request resolved
        (reply_first, queued), invalidated with the answer arriving late (iopub_first),
        or anything (together)."""
        c, r = race.comm, race.request
        out: set[World] = set()
        for w in self.states:
            if race not in self._races(w):
                continue
            crash = Crash(w.kernel.comms[c].owner)
            for step, after in self.model.successors(w):
                if step.action != KernelRequest(c, r):
                    continue
                for mid in self._reachable(after):
                    for then, gone in self.model.successors(mid):
                        if then.action == crash:
                            out |= {q for q in self._quiesce(gone)
                                    if _race_outcome(q, w, r, race.order)}
        if not out:
            raise MbtFailure(f"the model does not enable {race} here")
        return out

    def _reachable(self, start: World) -> set[World]:
        """Every state protocol steps reach from ``start`` (``start`` included)."""
        seen = {start}
        frontier = [start]
        while frontier:
            nxt: list[World] = []
            for w in frontier:
                for step, s in self.model.successors(w):
                    if step.kind is StepKind.PROTOCOL and s not in seen:
                        seen.add(s)
                        nxt.append(s)
            if len(seen) > QUIESCE_LIMIT:
                raise MbtFailure(f"more than {QUIESCE_LIMIT} model states in a race")
            frontier = nxt
        return seen

    def _quiesce(self, start: World) -> set[World]:
        seen = {start}
        frontier = [start]
        out: set[World] = set()
        while frontier:
            nxt: list[World] = []
            for w in frontier:
                try:
                    succs = [s for step, s in self.model.successors(w)
                             if step.kind is StepKind.PROTOCOL]
                except InvalidTransition as e:
                    raise MbtFailure(f"the model itself fired an undeclared event: {e}") from e
                if not succs:
                    out.add(w)
                for s in succs:
                    if s not in seen:
                        seen.add(s)
                        nxt.append(s)
                if len(seen) > QUIESCE_LIMIT:
                    raise MbtFailure(
                        f"more than {QUIESCE_LIMIT} model states before quiescence")
            frontier = nxt
        return out

    def _mismatch(self, action: Action, options: dict[Observation, World]) -> str:
        obs = self.observe()
        lines = [f"after {action}: the live system reached no state the model allows "
                 f"(waited up to {self.step_timeout} s, quiet for {self.quiet} s)",
                 f"  live:  {obs}"]
        ranked = sorted(options, key=lambda o: len(obs.diff(o)))
        for o in ranked[:3]:
            lines.append("  model option, differing in:")
            lines.extend(f"    {d}" for d in obs.diff(o))
        if not options:
            lines.append("  (the model has no quiescent state here)")
        lines.append("  program so far: " + repr(self.program))
        return "\n".join(lines)

    # -- the live side -------------------------------------------------------------

    def _live(self, action: Action, mark: int) -> None:
        match action:
            case Start(frontend=f):
                self._start_frontend(f)
            case FrontendOpen(frontend=f, comm=c, target=target):
                self.comm_ids[c] = self._fe(f).process.call("open", target=TARGETS[target.value])
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
                self._live_race(c, r, order, mark)
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

    def _live_race(self, c: int, r: int, order: RaceOrder, mark: int) -> None:
        owners = {w.kernel.comms[c].owner for w in self.states}
        if len(owners) != 1:
            raise MbtFailure(f"comm slot {c} has no single owner: {owners}")
        f = owners.pop()
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

        def kernel_request(state: str | None = None) -> Callable[[], bool]:
            def reached() -> bool:
                now = self.recorder.get("kernel", "request", lr.msg_id, "new")
                return now != "pending" if state is None else now == state
            return reached

        def wait(predicate: Callable[[], bool], what: str) -> None:
            if not self.recorder.wait_until(predicate, self.step_timeout, self.quiet):
                raise MbtFailure(f"race {order.value}: {what}")

        if order is RaceOrder.REPLY_FIRST:
            proc.call("release", slot=r)
            wait(kernel_request(), f"kernel request {r} never ended after its answer")
        elif order is RaceOrder.IOPUB_FIRST:
            proc.call("drop_iopub")
            wait(kernel_request(), f"kernel request {r} never ended after frontend {f}'s "
                 "IOPub went")
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
            wait(kernel_request(), f"kernel request {r} never ended")
        else:  # together
            proc.call("release", slot=r)
        fe.alive = False
        proc.kill()

    def _fe(self, f: int) -> _LiveFrontend:
        fe = self.frontends[f]
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

    def _futures_caught_up(self) -> bool:
        """Every request the trace shows ended has its future done (a frontend process
        reports the outcome just after the transition)."""
        for lr in self.requests:
            if lr is not None and not lr.future.done():
                state = self.recorder.get(lr.endpoint, lr.machine, lr.msg_id, "new")
                if state not in ("new", "pending") and (
                    lr.kind is not Kind.FRONTEND_TO_KERNEL or self._alive(lr.party)
                ):
                    return False
        return True

    def _alive(self, f: int) -> bool:
        fe = self.frontends[f]
        return fe is not None and fe.alive

    # -- checks --------------------------------------------------------------------

    def _check_invariants(self) -> None:
        for w in self.states:
            bad = state_violations(w)
            if bad:
                raise MbtFailure(f"model property {bad[0][0]} fails: {bad[0][1]}")
        for key, n in self.recorder.outcomes.items():
            if n > 1:
                raise MbtFailure(f"{key} ended {n} times")
        for r, lr in enumerate(self.requests):
            if lr is None:
                continue
            state = self.recorder.get(lr.endpoint, lr.machine, lr.msg_id, "new")
            if state in ("new", "pending"):
                continue
            if not lr.future.done():
                raise MbtFailure(f"request {r} is {state} but its future is not done")
            delivered = lr.future.exception() is None
            if delivered != (state in (RequestState.RESOLVED.value, "replied")):
                raise MbtFailure(
                    f"request {r} is {state} but its future "
                    f"{'holds a result' if delivered else 'failed'}"
                )

    def check(self) -> None:
        """The checks of one step, on demand (the state machine's invariant)."""
        self.recorder.require_conformance()
        self._check_invariants()
