"""The in-process system: the sans-IO protocol cores joined by a simulated network.

Rules:
- One kernel core and up to N frontend cores, each with the same application
  layer the endpoints use (Comm objects, futures, handlers), driven from one
  thread with a virtual clock: no sockets, no threads, no wall clock. Given the
  same choices, a run is the same run, so every failure replays and shrinks.
- The network is the system model's (``model/world.py``): per frontend, the
  subscription frames its connection produces at the kernel's XPUB, its shell
  and stdin messages to the kernel, and the kernel's IOPub publications, shell
  replies and stdin requests to it. Each channel is ordered; no two channels
  are ordered against each other. A publication reaches a frontend only while
  the kernel holds its current subscription.
- What happens next is a *delivery*: one message taken from one channel, a
  frozen frontend dropped by the kernel's heartbeat, a lost link noticed, a
  timer that is due. ``run(choose)`` takes deliveries until none is left;
  ``choose(n)`` picks one of the ``n`` enabled ones (the tests' Hypothesis
  draws it), and also, when the kernel acts on an unsubscribe, how much of each
  frontend's shell and stdin queue had already arrived (the drain rule's batch).
  Without a chooser the first is taken: the network as fast and as fair as it
  can be.
- Timers fire only when no message is in flight, and only those due within
  ``horizon`` seconds of virtual time from the start of the run (probes, the
  no-reply grace, a handler's sleep); longer ones (the connect deadline) only
  when a test advances the clock past them.
- Faults are the model's: a crash ends a frontend (its connections close, what
  it had sent stays sent); a freeze silences it until the kernel's heartbeat
  drops its connection, then it resumes and notices; shutdown ends the kernel.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from commspec.impl.comm import Comm, Deferred
from commspec.impl.core.comms import DEFAULT_MAX_DETACHED
from commspec.impl.core.events import (
    Channel,
    CloseLink,
    CloseSession,
    Connect,
    Disconnect,
    DropIopub,
    Input,
    LinkLost,
    Message,
    OpenLink,
    Received,
    Reconnect,
    Send,
    Sent,
    SessionChanged,
    Shutdown,
    ShutdownRequested,
    SubscriptionFrames,
    WatchHeartbeat,
)
from commspec.impl.core.frontend import FrontendOptions, FrontendProtocol
from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.core.policies import KernelPolicies
from commspec.impl.core.presence import peer_topic
from commspec.impl.frontend.application import FrontendApplication
from commspec.impl.kernel.application import KernelApplication
from commspec.impl.runner import EffectRunner
from commspec.impl.targets import DEFAULT_TARGETS, TargetRegistry
from commspec.model.trace import TraceSink, discard

__all__ = [
    "Chooser", "Delivery", "DeliveryKind", "SimFrontend", "SimKernel", "Simulation", "message",
]

#: picks one of ``n`` alternatives: 0 <= choose(n) < n
Chooser = Callable[[int], int]

#: timers due within this many virtual seconds fire when the network is quiet
HORIZON = 5.0
#: the connection key: it signs nothing here, but proves the frontends' peer topics
KEY = b"sim-key"
#: a bound on the deliveries of one run, so a livelock fails instead of hanging
RUN_LIMIT = 100_000

JsonDict = dict[str, Any]


def _first(n: int) -> int:
    return 0


class DeliveryKind(Enum):
    KERNEL_SUBSCRIPTIONS = "kernel reads a frontend's subscription frames"
    KERNEL_SHELL = "kernel receives a shell message"
    KERNEL_STDIN = "kernel receives a stdin reply"
    FRONTEND_IOPUB = "frontend receives an IOPub message"
    FRONTEND_SHELL = "frontend receives a shell reply"
    FRONTEND_STDIN = "frontend receives a stdin request"
    HEARTBEAT_TIMEOUT = "the kernel's heartbeat drops a frozen frontend"
    NOTICE_LOST = "a frontend notices its link is gone"
    TIMER = "a timer is due"


@dataclass(frozen=True)
class Delivery:
    kind: DeliveryKind
    frontend: int = -1


class Proc(Enum):
    RUNNING = "running"
    FROZEN = "frozen"
    DEAD = "dead"


def _copy(value: Any) -> Any:
    """What the wire does to content: JSON out, JSON in (nothing shared between parties)."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def message(send: Send, session: str) -> Message:
    header = {"msg_id": send.msg_id, "msg_type": send.msg_type, "username": "sim",
              "session": session, "date": "", "version": "5.5"}
    return {"header": header, "parent_header": dict(send.parent) if send.parent else {},
            "metadata": {}, "content": _copy(send.content), "buffers": list(send.buffers),
            "msg_id": send.msg_id, "msg_type": send.msg_type}


@dataclass
class _Link:
    number: int
    up: bool = True
    #: the kernel's XPUB holds its subscription: publications reach it
    sub_live: bool = False
    iopub_open: bool = True


class _Cancellable:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


# =========================================================================
# the parties
# =========================================================================


class _Party(EffectRunner):
    """What the kernel and a frontend share: a core, an application, timers on the
    virtual clock, and the runner the application talks to. Strict: an effect that
    fails is a bug the test must see."""

    strict = True
    log = logging.getLogger("commspec.mbt.simulation")

    def __init__(self, net: Simulation, name: str) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.sink = net.sink
        self.effects[Send] = self.send
        self._heap: list[tuple[float, int, _Cancellable, Callable[[], None]]] = []
        self._ids = itertools.count(1)
        self._seq = itertools.count()

    # -- CoreRunner and EffectRunner ----------------------------------------------------

    def submit(self, event: Input) -> None:
        self.feed(event)

    def call(self, event: Input) -> None:
        self.feed(event)

    def in_core_thread(self) -> bool:
        return True

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Cancellable:
        return self.run_at(self.net.clock + max(0.0, delay), callback)

    def new_msg_id(self) -> str:
        return f"{self.name}-{next(self._ids)}"

    def now(self) -> float:
        return self.net.clock

    def run_at(self, when: float, callback: Callable[[], None]) -> _Cancellable:
        handle = _Cancellable()
        heapq.heappush(self._heap, (when, next(self._seq), handle, callback))
        return handle

    # -- the virtual clock ------------------------------------------------------------

    def next_timer(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_timer(self) -> None:
        when, _, handle, callback = heapq.heappop(self._heap)
        self.net.clock = max(self.net.clock, when)
        if not handle.cancelled:
            callback()

    def send(self, effect: Send) -> None:
        raise NotImplementedError


class SimKernel(_Party):
    """The kernel core and its application, reached through the simulated network."""

    def __init__(self, net: Simulation, policies: KernelPolicies,
                 targets: TargetRegistry, max_detached: int) -> None:
        super().__init__(net, "kernel")
        self.core: KernelProtocol = KernelProtocol(
            session_id="sim-kernel", key=KEY, targets=targets.kind, new_msg_id=self.new_msg_id,
            policies=policies, tracing=net.sink is not discard, max_detached=max_detached,
        )
        self.app: KernelApplication = KernelApplication(self.core, self, targets, self)
        self.effects[ShutdownRequested] = self._shutdown_requested
        self.up = True

    # KernelServices, for the targets' handlers
    def current_identity(self) -> bytes | None:
        return self.app.current_identity()

    def stdin_request(self, msg_type: str, content: JsonDict,
                      identity: bytes | None = None) -> Future[Any]:
        return self.app.stdin_request(msg_type, content, identity)

    def send(self, effect: Send) -> None:
        net = self.net
        if effect.channel is Channel.IOPUB:
            for fe in net.frontends:
                link = fe.link if fe is not None else None
                if fe is not None and link is not None and link.up and link.sub_live \
                        and link.iopub_open:
                    fe.iopub_down.append(message(effect, self.core.session_id))
            return
        fe = net.by_identity(effect.to[0]) if effect.to else None
        reached = fe is not None and fe.link is not None and fe.link.up
        if reached:
            assert fe is not None
            queue = fe.stdin_down if effect.channel is Channel.STDIN else fe.shell_down
            queue.append(message(effect, self.core.session_id))
        if effect.confirm:
            self.feed(Sent(effect.msg_id, reached, "" if reached else "EHOSTUNREACH"))

    def _shutdown_requested(self, effect: ShutdownRequested) -> None:
        self.net.pending_shutdown = True


class SimFrontend(_Party):
    """A frontend core and its application, with the channels between it and the kernel."""

    def __init__(self, net: Simulation, index: int, session_id: str,
                 options: FrontendOptions, targets: list[str],
                 policies: type[FrontendPolicies] = FrontendPolicies) -> None:
        super().__init__(net, f"fe{index}")
        self.index = index
        self.session_id = session_id
        self.options = options
        self.core: FrontendProtocol = FrontendProtocol(
            session_id=session_id, new_msg_id=self.new_msg_id, options=options,
            policies=policies(), tracing=net.sink is not discard,
        )
        self.app: FrontendApplication = FrontendApplication(self.core, self)
        self.effects.update({
            OpenLink: self._open_link,
            CloseLink: lambda effect: self.drop_link(),
            DropIopub: self._drop_iopub,
            WatchHeartbeat: lambda effect: None,  # heartbeats are the network's deliveries
            SessionChanged: lambda effect: None,
        })
        self.proc = Proc.RUNNING
        self.link: _Link | None = None
        #: a lost link the frontend has yet to notice (monitor, heartbeat)
        self.unnoticed = False
        self.sub_up: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self.shell_up: deque[tuple[Channel, Message]] = deque()
        self.stdin_up: deque[Message] = deque()
        self.iopub_down: deque[Message] = deque()
        self.shell_down: deque[Message] = deque()
        self.stdin_down: deque[Message] = deque()
        #: the answers to the kernel's "ask" requests are held while this is on
        self.holding = False
        self.held: dict[int, Deferred] = {}
        for target in targets:
            self.app.register_target(target, lambda comm, data: self.serve(comm))
        self.app.stdin.input_handler = lambda prompt, password: f"answer to {prompt}"
        self.feed(Connect())

    @property
    def identity(self) -> bytes:
        return self.session_id.encode()

    def serve(self, comm: Comm) -> None:
        def ask(params: Any) -> Any:
            if self.holding:
                deferred = Deferred()
                self.held[int(params["slot"])] = deferred
                return deferred
            return {"answered": params}

        comm.on_request("ask", ask)

    def disconnect(self) -> None:
        """Drop the link on purpose (as a sleeping laptop would)."""
        self.feed(Disconnect())

    def close_session(self) -> None:
        self.feed(CloseSession())

    def drop_iopub(self) -> None:
        """Close the IOPub socket alone (the late-reply race)."""
        self.feed(DropIopub())

    def open(self, target: str, persistent: bool = False) -> Comm:
        """Open a comm as a user would; the kernel's "ask" requests on it are served."""
        comm = self.app.open_comm(target, None, persistent)
        self.serve(comm)
        return comm

    def release(self, slot: int) -> None:
        self.held.pop(slot).resolve({"answered": slot})

    # -- effects --------------------------------------------------------------------

    def send(self, effect: Send) -> None:
        link = self.link
        ok = link is not None and link.up
        if ok and self.net.kernel.up:
            msg = message(effect, self.session_id)
            if effect.channel is Channel.STDIN:
                self.stdin_up.append(msg)
            else:
                self.shell_up.append((effect.channel, msg))
        if effect.confirm:
            self.feed(Sent(effect.msg_id, ok, "" if ok else "no live link to the kernel"))

    def _open_link(self, effect: OpenLink) -> None:
        self.link = _Link(effect.link)
        self.unnoticed = False
        if self.net.kernel.up:
            frames = (b"\x01", b"\x01" + peer_topic(self.session_id, KEY)) \
                if self.options.presence_topic else (b"\x01",)
            self.sub_up.append((effect.link, frames))
        # else: a connect that never completes; nothing happens

    def _drop_iopub(self, effect: DropIopub) -> None:
        link = self.link
        if link is not None and link.iopub_open:
            link.iopub_open = False
            self._unsubscribe(link)
            self.iopub_down.clear()

    def _unsubscribe(self, link: _Link) -> None:
        """libzmq's unsubscribes when this link's connection ends: with XPUB_VERBOSE, one
        for each topic no other connection holds (every frontend holds b"")."""
        link.sub_live = False
        if not self.net.kernel.up:
            return
        frames: tuple[bytes, ...] = (b"\x00" + peer_topic(self.session_id, KEY),) \
            if self.options.presence_topic else ()
        if not self.net.holds_iopub(besides=self):
            frames += (b"\x00",)
        if frames:
            self.sub_up.append((link.number, frames))

    def drop_link(self) -> None:
        """The current connection ends (closed, killed, or dropped by the kernel)."""
        link = self.link
        if link is None or not link.up:
            return
        link.up = False
        if link.iopub_open:
            self._unsubscribe(link)
        self.iopub_down.clear()
        self.shell_down.clear()
        self.stdin_down.clear()


# =========================================================================
# the network
# =========================================================================


class Simulation:
    def __init__(
        self,
        frontends: int,
        *,
        policies: KernelPolicies | None = None,
        options: FrontendOptions | None = None,
        sink: TraceSink = discard,
        targets: TargetRegistry | None = None,
        horizon: float = HORIZON,
        frontend_policies: type[FrontendPolicies] = FrontendPolicies,
        max_detached: int = DEFAULT_MAX_DETACHED,
    ) -> None:
        self.clock = 0.0
        #: the frontends' reconcile rules: the reference ones, or a broken variant
        self.frontend_policies = frontend_policies
        self.sink = sink
        self.options = options or FrontendOptions()
        self.horizon = horizon
        self.kernel = SimKernel(self, policies or KernelPolicies(),
                                targets or TargetRegistry(DEFAULT_TARGETS), max_detached)
        self.frontends: list[SimFrontend | None] = [None] * frontends
        self.pending_shutdown = False
        self.deliveries = 0
        #: deliveries a test withholds for now (a reply it wants to arrive later)
        self.withheld: set[Delivery] = set()

    def holds_iopub(self, besides: SimFrontend) -> bool:
        """Whether a connection other than ``besides``'s holds b"" on the kernel's XPUB."""
        return any(fe is not None and fe is not besides and fe.proc is not Proc.DEAD
                   and fe.link is not None and fe.link.up and fe.link.iopub_open
                   for fe in self.frontends)

    def by_identity(self, identity: bytes) -> SimFrontend | None:
        for fe in self.frontends:
            if fe is not None and fe.proc is not Proc.DEAD and fe.identity == identity:
                return fe
        return None

    def frontend(self, f: int) -> SimFrontend:
        fe = self.frontends[f]
        if fe is None or fe.proc is Proc.DEAD:
            raise RuntimeError(f"frontend {f} is not running")
        return fe

    # -- environment --------------------------------------------------------------------

    def start(self, f: int, session_id: str, targets: list[str]) -> SimFrontend:
        if self.frontends[f] is not None and self.frontends[f].proc is not Proc.DEAD:  # type: ignore[union-attr]
            raise RuntimeError(f"frontend {f} is running already")
        fe = SimFrontend(self, f, session_id, self.options, targets, self.frontend_policies)
        self.frontends[f] = fe
        return fe

    def crash(self, f: int) -> None:
        """SIGKILL: its connections end; what it had sent stays sent."""
        fe = self.frontend(f)
        fe.drop_link()
        fe.proc = Proc.DEAD

    def exit(self, f: int) -> None:
        """A clean exit: the session closes, then the process ends."""
        fe = self.frontend(f)
        fe.feed(CloseSession())
        self.crash(f)

    def freeze(self, f: int) -> None:
        """SIGSTOP (or a half-open link): silent until the kernel's heartbeat drops it."""
        self.frontend(f).proc = Proc.FROZEN

    def reconnect(self, f: int) -> None:
        self.frontend(f).feed(Reconnect())

    def shutdown(self) -> None:
        """The kernel shuts down and exits: every connection to it ends."""
        kernel = self.kernel
        if not kernel.up:
            return
        kernel.feed(Shutdown())
        kernel.up = False
        for fe in self.frontends:
            if fe is None or fe.proc is Proc.DEAD:
                continue
            fe.sub_up.clear()
            fe.shell_up.clear()
            fe.stdin_up.clear()
            if fe.link is not None and fe.link.up:
                fe.link.sub_live = False
                fe.link.up = False
                fe.shell_down.clear()
                fe.stdin_down.clear()
                fe.unnoticed = True

    # -- deliveries ---------------------------------------------------------------------

    def enabled(self, until: float | None = None) -> list[Delivery]:
        """What can happen next, in a fixed order: messages first, then the timers due
        by ``until`` (default: ``horizon`` from now)."""
        out: list[Delivery] = []
        kernel_up = self.kernel.up
        for f, fe in enumerate(self.frontends):
            if fe is None:
                continue
            if kernel_up:
                if fe.sub_up:
                    out.append(Delivery(DeliveryKind.KERNEL_SUBSCRIPTIONS, f))
                if fe.shell_up:
                    out.append(Delivery(DeliveryKind.KERNEL_SHELL, f))
                if fe.stdin_up:
                    out.append(Delivery(DeliveryKind.KERNEL_STDIN, f))
            if fe.proc is Proc.RUNNING:
                if fe.iopub_down:
                    out.append(Delivery(DeliveryKind.FRONTEND_IOPUB, f))
                if fe.shell_down:
                    out.append(Delivery(DeliveryKind.FRONTEND_SHELL, f))
                if fe.stdin_down:
                    out.append(Delivery(DeliveryKind.FRONTEND_STDIN, f))
                if fe.unnoticed:
                    out.append(Delivery(DeliveryKind.NOTICE_LOST, f))
            elif fe.proc is Proc.FROZEN and kernel_up and fe.link is not None and fe.link.up:
                out.append(Delivery(DeliveryKind.HEARTBEAT_TIMEOUT, f))
        if self.withheld:
            out = [d for d in out if d not in self.withheld]
        if self.pending_shutdown:
            out.append(Delivery(DeliveryKind.TIMER, -2))
        if not out:
            party = self._due_timer(self.clock + self.horizon if until is None else until)
            if party is not None:
                out.append(Delivery(DeliveryKind.TIMER, party))
        return out

    def _parties(self) -> list[tuple[int, _Party]]:
        parties: list[tuple[int, _Party]] = [(-1, self.kernel)] if self.kernel.up else []
        parties += [(f, fe) for f, fe in enumerate(self.frontends)
                    if fe is not None and fe.proc is Proc.RUNNING]
        return parties

    def _due_timer(self, until: float) -> int | None:
        best: tuple[float, int] | None = None
        for index, party in self._parties():
            when = party.next_timer()
            if when is not None and when <= until and (
                    best is None or when < best[0]):
                best = (when, index)
        return None if best is None else best[1]

    def run(self, choose: Chooser | None = None) -> int:
        """Take deliveries until none is left; how many were taken."""
        pick = choose or _first
        until = self.clock + self.horizon
        taken = 0
        while True:
            options = self.enabled(until)
            if not options:
                return taken
            taken += 1
            if taken > RUN_LIMIT:
                raise RuntimeError(f"more than {RUN_LIMIT} deliveries without quiescence")
            self.deliver(options[pick(len(options))], pick)

    def advance(self, seconds: float, choose: Chooser | None = None) -> None:
        """Let ``seconds`` of virtual time pass, firing every timer due meanwhile."""
        until = self.clock + seconds
        self.run(choose)
        while True:
            due = [(w, i, p) for i, p in self._parties()
                   if (w := p.next_timer()) is not None and w <= until]
            if not due:
                break
            _, _, party = min(due, key=lambda d: (d[0], d[1]))
            party.fire_timer()
            self.run(choose)
        self.clock = until

    def deliver(self, delivery: Delivery, choose: Chooser = _first) -> None:
        self.deliveries += 1
        kind, f = delivery.kind, delivery.frontend
        kernel = self.kernel
        if kind is DeliveryKind.TIMER:
            if f == -2:
                self.pending_shutdown = False
                self.shutdown()
            elif f == -1:
                kernel.fire_timer()
            else:
                self.frontend(f).fire_timer()
            return
        fe = self.frontends[f]
        assert fe is not None
        if kind is DeliveryKind.KERNEL_SUBSCRIPTIONS:
            number, frames = fe.sub_up.popleft()
            drained: list[Received] = []
            if any(frame[:1] == b"\x00" for frame in frames):
                drained = self._drained(choose)
            link = fe.link
            if link is not None and link.number == number and link.up \
                    and frames[0][:1] == b"\x01":
                link.sub_live = True
            # a subscribe came from the frontend; an unsubscribe from libzmq itself
            kernel.feed(SubscriptionFrames(frames, tuple(f[:1] == b"\x01" for f in frames),
                                           tuple(drained)))
        elif kind is DeliveryKind.KERNEL_SHELL:
            channel, msg = fe.shell_up.popleft()
            kernel.feed(Received(channel, (fe.identity,), msg))
        elif kind is DeliveryKind.KERNEL_STDIN:
            kernel.feed(Received(Channel.STDIN, (fe.identity,), fe.stdin_up.popleft()))
        elif kind is DeliveryKind.FRONTEND_IOPUB:
            fe.feed(Received(Channel.IOPUB, (), fe.iopub_down.popleft()))
        elif kind is DeliveryKind.FRONTEND_SHELL:
            fe.feed(Received(Channel.SHELL, (), fe.shell_down.popleft()))
        elif kind is DeliveryKind.FRONTEND_STDIN:
            fe.feed(Received(Channel.STDIN, (), fe.stdin_down.popleft()))
        elif kind is DeliveryKind.HEARTBEAT_TIMEOUT:
            fe.drop_link()
            fe.proc = Proc.RUNNING
            fe.unnoticed = True
        elif kind is DeliveryKind.NOTICE_LOST:
            fe.unnoticed = False
            fe.feed(LinkLost("the kernel's end of the connection is gone"))

    def _drained(self, choose: Chooser) -> list[Received]:
        """The drain rule's batch: how much of each frontend's shell and stdin queue had
        already reached the kernel's sockets (chosen; the first choice, all of it), in the
        order the kernel reads them."""
        shell: list[Received] = []
        stdin: list[Received] = []
        for fe in self.frontends:
            if fe is None:
                continue
            n = len(fe.shell_up) - choose(len(fe.shell_up) + 1) if fe.shell_up else 0
            for _ in range(n):
                channel, msg = fe.shell_up.popleft()
                shell.append(Received(channel, (fe.identity,), msg))
            n = len(fe.stdin_up) - choose(len(fe.stdin_up) + 1) if fe.stdin_up else 0
            for _ in range(n):
                stdin.append(Received(Channel.STDIN, (fe.identity,), fe.stdin_up.popleft()))
        return shell + stdin
