"""The in-process system: the sans-IO cores on a simulated network, driven by the lockstep.

Rules:
- :class:`InProcessSystem` is a :class:`~commspec.mbt.harness.System` over
  :class:`~commspec.mbt.simulation.Simulation`: the reference kernel's protocol
  core (with a broken variant's policies, if given) and one reference frontend
  core per frontend slot, each with the application layer the endpoints use,
  joined by the model's own network. No socket, no thread, no wall clock: a
  step takes microseconds, and the same choices replay the same run.
- Everything the live system leaves to the wire is the chooser's: which message
  is delivered next, how much of each shell queue had reached the kernel when it
  acts on an unsubscribe, and, in ``race_together``, whether the answer or the
  departure comes first. The Hypothesis rules draw it, so it shrinks.
- Slots map to objects as in the live system; observations are read from the
  same trace (a :class:`~commspec.mbt.recorder.Recorder`), so the two systems are
  compared with the model by the same code, and count into the same coverage.
- A crash ends the frontend core where it stands; a freeze silences it until the
  kernel's heartbeat drops it (a delivery of the network), then it resumes and
  notices; shutdown is the kernel core's, then every connection to it ends.
- The reconcile races (:mod:`.reconcile`) run their phases one after the other, each
  delivered to its end: the reconnect waits until the frontend has noticed its loss
  (and the kernel opened the unseen comm), and the frontend's shell replies are
  withheld from the reconnect until the kernel request has reached it.
- The frontends' reconcile rules are the reference ones, or a broken variant's
  (``frontend_policies``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.impl.core.policies import KernelPolicies
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
from commspec.model.machines import SessionState
from commspec.model.system import Bounds
from commspec.model.world import Kind, Target, World

from .adapter import TARGETS
from .errors import MbtFailure
from .harness import Chooser, Mismatch
from .live import MBT_OPTIONS
from .projection import PAST_LOSS, Observation
from .race import Race, RaceOrder
from .reconcile import ReconcileRace, UnseenRequest
from .recorder import Coverage, Recorder
from .simulation import Delivery, DeliveryKind, SimFrontend, Simulation
from .slots import Slots

__all__ = ["InProcessSystem"]


class InProcessSystem:
    """The reference cores, or a broken variant's, on the simulated network."""

    def __init__(
        self,
        policies: type[KernelPolicies] = KernelPolicies,
        *,
        options: FrontendOptions = MBT_OPTIONS,
        coverage: Coverage | None = None,
        frontend_policies: type[FrontendPolicies] = FrontendPolicies,
    ) -> None:
        self.policies = policies
        self.frontend_policies = frontend_policies
        self.options = options
        self.recorder = Recorder(coverage)
        self.slots = Slots(self.recorder)
        self.sim: Simulation | None = None
        self._fes: list[SimFrontend | None] = []

    # -- lifecycle -------------------------------------------------------------------

    def start(self, bounds: Bounds) -> None:
        self.sim = Simulation(bounds.frontends, policies=self.policies(),
                              options=self.options, sink=self.recorder,
                              frontend_policies=self.frontend_policies,
                              max_detached=bounds.detached)
        self.slots.start(bounds)
        self._fes = [None] * bounds.frontends

    def close(self) -> None:
        self.sim = None  # nothing to release: no socket, thread or process

    def _sim(self) -> Simulation:
        if self.sim is None:
            raise MbtFailure("the in-process system has not started")
        return self.sim

    # -- what it can do --------------------------------------------------------------

    def can(self, action: Action, world: World) -> bool:
        """As the live system: a freeze is the kernel's heartbeat dropping a frontend
        it counts, so it needs a running kernel that has the frontend's subscription."""
        if isinstance(action, Freeze):
            return world.kernel.up and world.kernel.peers[action.frontend]
        return True

    def perform(self, action: Action, choose: Chooser | None = None) -> None:
        sim = self._sim()
        slots = self.slots
        mark = self.recorder.mark()
        match action:
            case Start(frontend=f):
                session_id = f"sim{f}-{slots.starts}"
                fe = sim.start(f, session_id, sorted(TARGETS.values()))
                self._fes[f] = fe
                slots.started_frontend(f, fe.core.name, session_id)
            case FrontendOpen(frontend=f, comm=c, target=target):
                comm = self._fe(f).open(TARGETS[target.value])
                slots.opened(c, comm.comm_id, f)
            case FrontendRequest(frontend=f, comm=c, request=r):
                fe = self._fe(f)
                future = fe.app.comms[slots.cid(c)].request("echo", {"slot": r})
                slots.bind(r, Kind.FRONTEND_TO_KERNEL, f, future, fe.core.name, "request", mark)
            case FrontendClose(frontend=f, comm=c):
                self._fe(f).app.comms[slots.cid(c)].close()
            case FrontendAdopt(frontend=f):
                self._fe(f).app.adopt_comms(None)  # settles with the comm_info_reply
            case Exit(frontend=f):
                slots.gone(f)
                sim.exit(f)
            case Crash(frontend=f):
                slots.gone(f)
                sim.crash(f)
            case Freeze(frontend=f):
                sim.freeze(f)
            case KernelOpen(comm=c, owner=owner, target=target):
                self._kernel_open(c, owner, target)
            case KernelClose(comm=c):
                self._kernel_comm(slots.cid(c)).close()
            case KernelRequest(comm=c, request=r):
                self._kernel_request(c, r, mark)
            case KernelStdinRequest(frontend=f, request=s):
                future = sim.kernel.app.stdin_request(
                    "input_request", {"prompt": "mbt?", "password": False},
                    identity=slots.session_id(f).encode())
                slots.bind(s, Kind.STDIN, f, future, "kernel", "stdin_request", mark)
            case Shutdown():
                sim.shutdown()
            case Race(comm=c, request=r, order=order):
                self._race(c, r, order, choose, mark)
            case ReconcileRace():
                self._reconcile_race(action, choose)
            case _:
                raise MbtFailure(f"no in-process counterpart for {action}")

    def _kernel_open(self, c: int, owner: int, target: Target) -> None:
        comm = self._sim().kernel.app.open_comm(
            TARGETS[target.value], None, persistent=target is Target.PERSISTENT,
            comm_id=None, owner=self._fe(owner).identity)
        comm.on_request("echo", lambda params: params)
        self.slots.opened(c, comm.comm_id, owner)

    def _kernel_request(self, c: int, r: int, mark: int) -> None:
        future = self._kernel_comm(self.slots.cid(c)).request("ask", {"slot": r})
        self.slots.bind(r, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request", mark)

    def _reconcile_race(self, race: ReconcileRace, choose: Chooser | None) -> None:
        """The phases of :mod:`.reconcile`, each delivered to its end."""
        sim = self._sim()
        f = race.frontend
        fe = self._fe(f)
        sim.freeze(f)
        sim.run(choose)
        if _session(fe) is not SessionState.LOST:
            raise MbtFailure(f"frozen frontend {f} is {_session(fe).value}, not lost")
        if isinstance(race, UnseenRequest):
            self._kernel_open(race.comm, race.owner, race.target)
            sim.run(choose)
        withheld = Delivery(DeliveryKind.FRONTEND_SHELL, f)
        sim.withheld.add(withheld)
        try:
            self.slots.reconnected(f)
            sim.reconnect(f)
            sim.run(choose)
            if _session(fe) is not SessionState.RECONCILING or not fe.shell_down:
                raise MbtFailure(f"frontend {f} is {_session(fe).value}, not reconciling "
                                 "with its comm_info_reply arrived")
            self._kernel_request(race.comm, race.request, self.recorder.mark())
            sim.run(choose)
            if fe.iopub_down or _session(fe) is not SessionState.RECONCILING:
                raise MbtFailure(f"frontend {f} did not receive kernel request "
                                 f"{race.request} while reconciling")
        finally:
            sim.withheld.discard(withheld)

    def _race(self, c: int, r: int, order: RaceOrder, choose: Chooser | None,
              mark: int) -> None:
        """A kernel request on comm slot ``c``; its owner receives it and holds the
        answer; then answer and departure in ``order``."""
        sim = self._sim()
        slots = self.slots
        f = slots.owner(c)
        fe = self._fe(f)
        fe.holding = True
        future = self._kernel_comm(slots.cid(c)).request("ask", {"slot": r})
        slots.bind(r, Kind.KERNEL_TO_FRONTEND, -1, future, "kernel", "request", mark)
        sim.run(choose)
        fe.holding = False
        if r not in fe.held:
            raise MbtFailure(f"frontend {f} never received kernel request {r}")
        if order is RaceOrder.REPLY_FIRST:
            fe.release(r)
            sim.run(choose)
        elif order is RaceOrder.IOPUB_FIRST:
            fe.drop_iopub()
            sim.run(choose)
            fe.release(r)
            sim.run(choose)
        elif order is RaceOrder.QUEUED:
            # the answer and the unsubscribe both queued before the kernel looks: the
            # kernel reads the unsubscribe with the answer in its drain batch
            fe.release(r)
            fe.drop_iopub()
            sim.deliver(Delivery(DeliveryKind.KERNEL_SUBSCRIPTIONS, f))
        else:  # together: whichever the chooser delivers first
            fe.release(r)
        slots.gone(f)
        sim.crash(f)

    def _fe(self, f: int) -> SimFrontend:
        fe = self._fes[f] if 0 <= f < len(self._fes) else None
        if fe is None or not self.slots.alive(f):
            raise MbtFailure(f"frontend {f} is not running")
        return fe

    def _kernel_comm(self, comm_id: str) -> Any:
        comm = self._sim().kernel.app.comms.get(comm_id)
        if comm is None:
            raise MbtFailure(f"the kernel has no comm {comm_id}")
        return comm

    # -- settling --------------------------------------------------------------------

    def settle(
        self, options: Mapping[Observation, World], choose: Chooser | None = None
    ) -> Observation | Mismatch:
        """Deliver until nothing is left, reconnecting where the model does; the system
        is then quiescent, so what it shows is final."""
        sim = self._sim()
        chosen: set[int] = set()
        while True:
            sim.run(choose)
            if not self._reconnect_where_the_model_does(options, chosen):
                break
        observed = self.observe()
        if observed in options:
            return observed
        return Mismatch(observed, f"quiescent after {sim.deliveries} deliveries")

    def _reconnect_where_the_model_does(self, options: Mapping[Observation, World],
                                        chosen: set[int]) -> bool:
        """As the live system: a lost frontend reconnects (once per loss) when a state
        the model may be in has it past ``lost``."""
        sim = self._sim()
        reconnected = False
        for f, fe in enumerate(self._fes):
            if fe is None or not self.slots.alive(f) or not self.slots.lost_unanswered(f):
                continue
            allowed = [o for o in options
                       if all(o.sessions[g] in PAST_LOSS for g in (*chosen, f))]
            if allowed:
                chosen.add(f)
                self.slots.reconnected(f)
                sim.reconnect(f)
                reconnected = True
        return reconnected

    # -- observing ------------------------------------------------------------------

    def observe(self) -> Observation:
        core = self._sim().kernel.core
        return self.slots.observe(
            subscribers=core.presence.subscriber_count,
            kernel_late=core.requests.late_replies + core.stdin.late_replies,
        )

    def check(self) -> None:
        self.slots.check()


def _session(fe: SimFrontend) -> SessionState:
    """Its session's state now (a function, so no check narrows it for the next)."""
    return fe.core.state
