"""The system model: one kernel, N frontends and the network, as pure actions.

Rules (SPEC.md, "System model and checker", says why):
- Every component state moves through its declared machine (``spec.step``); this
  module only decides *which* event each party fires when.
- An action is anything one party or the network can do, as data
  (:mod:`.actions`). Nondeterminism is explicit: each enabled action is one
  successor. Actions are *protocol* steps
  (deliveries, processing, answering, heartbeat timeouts, reconnects) or
  *environment* steps (a user opens, closes, asks; a process starts, crashes,
  freezes, resumes; the kernel shuts down). The liveness property may only use
  protocol steps.
- Policies the kernel applies, in the order the reference kernel applies them:
  * the drain rule: before it acts on an unsubscribe, the kernel applies the
    messages already received on shell and stdin that settle a request or a comm
    (replies, comm_close); the others wait, in order, until after;
  * per-peer presence: an unsubscribe names the frontend that left (its peer
    topic); comms that frontend owns are lost: persistent ones detach, default
    ones close; requests only it could answer are invalidated;
  * a request made while its answerer is absent is undeliverable, at once;
  * whenever the kernel closes a comm it publishes comm_close, so every other
    frontend holding it learns;
  * a reply for an ended request is a late reply: counted, never delivered.
- Hooks the broken variants in the tests override are the methods whose names
  start with ``_policy``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeGuard

from .actions import (
    Action,
    Answer,
    Crash,
    DeliverIopub,
    DeliverShellReply,
    DeliverStdin,
    Exit,
    Freeze,
    FrontendAdopt,
    FrontendClose,
    FrontendOpen,
    FrontendRequest,
    HeartbeatTimeout,
    KernelAnswer,
    KernelClose,
    KernelOpen,
    KernelRequest,
    KernelShell,
    KernelStdinReply,
    KernelStdinRequest,
    KernelSubscribe,
    KernelUnsubscribe,
    LibzmqRelink,
    NoticeLinkLost,
    Reconnect,
    Shutdown,
    Start,
    StepKind,
)
from .machines import (
    ALIVE,
    FRONTEND_COMM,
    HELD,
    KERNEL_COMM,
    LINKED,
    PRESENCE,
    REQUEST,
    SESSION,
    STDIN_REQUEST,
    FrontendCommEvent,
    FrontendCommState,
    KernelCommEvent,
    KernelCommFact,
    KernelCommState,
    PresenceEvent,
    PresenceFact,
    RequestEvent,
    RequestState,
    SessionEvent,
    SessionState,
    StdinRequestEvent,
    StdinRequestState,
)
from .world import (
    NO_ARG,
    OWNER_ALL,
    CloseCause,
    Frontend,
    Kernel,
    KernelComm,
    Kind,
    Message,
    Msg,
    Proc,
    Request,
    Target,
    World,
    initial_world,
)

OPENABLE = (Target.PERSISTENT, Target.DEFAULT)
#: a reconciling frontend's comms whose fate the comm_info_reply decides
UNDECIDED = FRONTEND_COMM.sources(FrontendCommEvent.CONFIRMED)


@dataclass(frozen=True)
class Bounds:
    """How much of everything the checker may use. The default explores a few hundred
    thousand states in well under a minute on two cores; every added unit multiplies
    that (``--reconnects 1``: about 1.2 million states)."""

    frontends: int = 2
    comms: int = 1
    requests: int = 1
    reconnects: int = 0
    faults: int = 1
    #: restores (a ready frontend asks comm_info to adopt what it does not hold)
    adoptions: int = 0
    #: how many detached comms the kernel keeps before it evicts the longest detached
    detached: int = 1
    #: how many of the frontends are stock ones (no peer topic, no reconnect)
    stock: int = 0
    #: dropped connections libzmq re-establishes by itself (before the frontend acts)
    relinks: int = 0

    def __post_init__(self) -> None:
        for name in ("frontends", "comms", "requests", "reconnects", "faults", "adoptions",
                     "detached", "stock", "relinks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name} must be a whole number >= 0, got {value!r}")
        if self.frontends < 1:
            raise ValueError("--frontends must be at least 1")
        if self.stock > self.frontends:
            raise ValueError(f"--stock must be at most --frontends ({self.frontends}), "
                             f"got {self.stock}")


class Step(NamedTuple):
    #: what happened, as data: one of :mod:`.actions`
    action: Action
    text: str
    #: requests whose replies the kernel had received and drained in this step
    drained: tuple[int, ...] = ()

    @property
    def kind(self) -> StepKind:
        return self.action.kind


_FRONTEND_FIELD = {name: i for i, name in enumerate(Frontend._fields)}


class Draft:
    """A mutable copy of a World for the duration of one action."""

    __slots__ = ("adoptions_left", "faults_left", "fe", "kcomms", "keep_detached", "kernel",
                 "reconnects_left", "relinks_left", "req", "targets", "world")

    def __init__(self, w: World) -> None:
        self.world = w
        self.kernel = w.kernel
        self.kcomms = list(w.kernel.comms)
        self.fe = list(w.frontends)
        self.req = list(w.requests)
        self.targets = list(w.targets)
        self.reconnects_left = w.reconnects_left
        self.faults_left = w.faults_left
        self.adoptions_left = w.adoptions_left
        self.relinks_left = w.relinks_left
        self.keep_detached = w.keep_detached

    def freeze(self) -> World:
        # Parts a step left as they were are the parent's own tuples (equal element by
        # element, which is identity here): less memory, and step_violations can tell.
        w = self.world
        k = self.kernel
        comms = tuple(self.kcomms)
        if comms == k.comms:
            comms = k.comms
        fe = tuple(self.fe)
        if fe == w.frontends:
            fe = w.frontends
        req = tuple(self.req)
        if req == w.requests:
            req = w.requests
        # the detached list forgets comms that re-attached or closed since
        detached = k.detached and tuple(
            c for c in k.detached if comms[c].state is KernelCommState.DETACHED
        )
        kernel = Kernel(k.up, k.presence, k.peers, comms, k.owed, k.late_replies, detached)
        return World(
            kernel,
            fe,
            req,
            tuple(self.targets),
            self.reconnects_left,
            self.faults_left,
            self.adoptions_left,
            self.relinks_left,
            self.keep_detached,
        )

    # -- small mutators ----------------------------------------------------

    def set_fe(self, f: int, **changes: Any) -> None:
        # NamedTuple._replace is the checker's hottest call; this does the same, faster.
        values = list(self.fe[f])
        for name, value in changes.items():
            values[_FRONTEND_FIELD[name]] = value
        self.fe[f] = tuple.__new__(Frontend, values)

    def set_req(self, r: int, state: RequestState | StdinRequestState, delivered: int = 0) -> None:
        old = self.req[r]
        assert old is not None
        self.req[r] = old._replace(state=state, delivered=old.delivered + delivered)

    def publish(self, msg: Message, only: int | None = None, skip: int | None = None) -> None:
        """IOPub: reaches each frontend whose current subscription is live, else dropped."""
        for f, fe in enumerate(self.fe):
            if fe.sub_live and (only is None or f == only) and f != skip:
                self.set_fe(f, iopub=(*fe.iopub, msg))


def _without(items: tuple[int, ...], drop: int) -> tuple[int, ...]:
    return tuple(i for i in items if i != drop)


class SystemModel:
    """Successor function of the composed system, for the checker and the MBT."""

    def __init__(self, bounds: Bounds = Bounds()) -> None:
        self.bounds = bounds

    def initial(self) -> World:
        b = self.bounds
        return initial_world(b.frontends, b.comms, b.requests, b.reconnects, b.faults,
                             b.adoptions, b.detached, b.stock, b.relinks)

    # =====================================================================
    # enumeration
    # =====================================================================

    def successors(self, w: World) -> Iterator[tuple[Step, World]]:
        for f, fe in enumerate(w.frontends):
            if fe.proc is Proc.IDLE:
                yield self._start(w, f)
            elif fe.proc is Proc.RUNNING:
                yield from self._frontend(w, f, fe)
            elif fe.proc is Proc.FROZEN:
                yield from self._heartbeat_timeout(w, f)
        if w.kernel.up:
            yield from self._kernel(w)

    def _frontend(self, w: World, f: int, fe: Frontend) -> Iterator[tuple[Step, World]]:
        if fe.iopub:
            yield self._frontend_iopub(w, f, fe)
        if fe.shell_down:
            yield self._frontend_shell_reply(w, f, fe)
        if fe.stdin_down:
            d = Draft(w)
            (_, s) = fe.stdin_down[0]
            assert isinstance(s, int)
            d.set_fe(f, stdin_down=fe.stdin_down[1:], owes=(*fe.owes, s))
            yield (
                Step(DeliverStdin(f), f"frontend {f} receives stdin request {s}"),
                d.freeze(),
            )
        if fe.linked:
            for r in fe.owes:
                if _answerable(w.requests[r], fe.comms):
                    yield self._frontend_answer(w, f, fe, r)
        if fe.session in LINKED and (
            not fe.linked or (fe.relinked and self._policy_acts_on_relinked_drop())
        ):
            yield self._frontend_link_lost(w, f, fe)
        if not fe.linked and fe.session in LINKED and w.kernel.up and w.relinks_left > 0:
            # before the frontend acts on the drop, libzmq may have reconnected by itself
            yield self._libzmq_relink(w, f, fe)
        if fe.session is SessionState.LOST and w.reconnects_left > 0 and not fe.stock:
            yield self._frontend_reconnect(w, f, fe)
        if fe.session is SessionState.READY and fe.linked:
            # A restore is what a page does as it loads: before it holds any comm.
            if (w.adoptions_left > 0 and not fe.adopting and not fe.stock
                    and all(c is FrontendCommState.NEW for c in fe.comms)):
                yield self._frontend_adopt(w, f, fe)
            unused = _unused_comm(w)
            for c, state in enumerate(fe.comms):
                if c == unused:
                    for target in OPENABLE:
                        yield self._frontend_open(w, f, fe, c, target)
                elif state is FrontendCommState.OPEN:
                    yield self._frontend_close(w, f, fe, c)
                    slot = _free_slot(w)
                    if slot is not None:
                        yield self._frontend_request(w, f, fe, c, slot)
        if w.faults_left > 0:
            if fe.session is not SessionState.CLOSED:
                yield self._frontend_goes(w, f, fe, clean=True)
            yield self._frontend_goes(w, f, fe, clean=False)
            if fe.linked:
                yield self._frontend_freezes(w, f)

    def _kernel(self, w: World) -> Iterator[tuple[Step, World]]:
        k = w.kernel
        for f, fe in enumerate(w.frontends):
            if fe.sub_up:
                yield from self._kernel_subscription(w, f, fe)
            if fe.shell:
                d = Draft(w)
                msg = fe.shell[0]
                d.set_fe(f, shell=fe.shell[1:])
                self._kernel_shell(d, f, msg)
                yield (
                    Step(
                        KernelShell(f),
                        f"kernel processes {_show(msg, w)} from frontend {f}",
                    ),
                    d.freeze(),
                )
            if fe.stdin_up:
                yield self._kernel_stdin_reply(w, f, fe)
        for r in k.owed:
            yield self._kernel_answer(w, r)
        unused = _unused_comm(w)
        for c, kc in enumerate(k.comms):
            if c == unused:
                for f in range(len(w.frontends)):
                    if k.peers[f]:
                        for target in OPENABLE:
                            yield self._kernel_open(w, c, f, target)
            elif kc.state in ALIVE:
                yield self._kernel_close(w, c)
                slot = _free_slot(w)
                if slot is not None:
                    yield self._kernel_request(w, c, slot)
        slot = _free_slot(w)
        if slot is not None:
            for f, fe in enumerate(w.frontends):
                if fe.proc is not Proc.IDLE:
                    yield self._kernel_stdin_request(w, f, slot)
        yield self._kernel_shutdown(w)

    # =====================================================================
    # frontend actions
    # =====================================================================

    def _start(self, w: World, f: int) -> tuple[Step, World]:
        d = Draft(w)
        d.set_fe(
            f,
            proc=Proc.RUNNING,
            session=SessionState.CONNECTING,
            linked=True,
            sub_up=(*w.frontends[f].sub_up, (Msg.SUB, NO_ARG)),
        )
        return Step(Start(f), f"frontend {f} starts and subscribes to IOPub"), d.freeze()

    def _frontend_freezes(self, w: World, f: int) -> tuple[Step, World]:
        # A freeze that ends before the heartbeat timeout is only a slow frontend,
        # which the interleavings already cover; so a freeze lasts until the timeout.
        d = Draft(w)
        d.set_fe(f, proc=Proc.FROZEN)
        d.faults_left -= 1
        return Step(
            Freeze(f), f"frontend {f} freezes (SIGSTOP or half-open link)"
        ), d.freeze()

    def _frontend_iopub(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        msg = fe.iopub[0]
        d.set_fe(f, iopub=fe.iopub[1:])
        kind, arg = msg
        assert isinstance(arg, int)
        note = ""
        if kind is Msg.WELCOME:
            assert fe.session is not None
            session = SESSION.step(fe.session, SessionEvent.WELCOMED)
            d.set_fe(f, session=session)
            if fe.session is SessionState.RECONNECTING:
                d.set_fe(f, shell=(*d.fe[f].shell, (Msg.INFO, NO_ARG)))
                note = "; it asks comm_info to reconcile"
        elif kind is Msg.OPEN:
            if fe.comms[arg] is FrontendCommState.NEW:
                comms = list(fe.comms)
                comms[arg] = FRONTEND_COMM.step(comms[arg], FrontendCommEvent.OPENED_BY_KERNEL)
                d.set_fe(f, comms=tuple(comms))
            else:
                note = " (already adopted through comm_info: ignored)"
        elif kind is Msg.CLOSE:
            if fe.comms[arg] is FrontendCommState.NEW and not self._policy_remember_unseen_close():
                note = " (a comm it never saw: forgotten)"
            elif fe.comms[arg] is not FrontendCommState.CLOSED:
                self._frontend_comm_closed(d, f, arg, FrontendCommEvent.CLOSED_BY_KERNEL)
            else:
                note = " (already closed: ignored)"
        elif kind is Msg.REQUEST:
            req = w.requests[arg]
            assert req is not None
            if fe.comms[req.comm] is FrontendCommState.OPEN or (
                fe.session is SessionState.RECONCILING
                and fe.comms[req.comm] in self._policy_held_while_reconciling()
            ):
                # While reconciling, a request on an unknown or stale comm waits for the
                # comm_info_reply, which decides whether this frontend holds it.
                d.set_fe(f, owes=(*fe.owes, arg))
            else:
                note = " (a comm it does not hold: ignored)"
        elif kind is Msg.REPLY:
            self._caller_gets_reply(d, arg, frontend=f)
        else:  # pragma: no cover - the model never publishes anything else
            raise AssertionError(msg)
        return Step(
            DeliverIopub(f), f"frontend {f} receives {_show(msg, w)}{note}"
        ), d.freeze()

    def _frontend_shell_reply(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        (_, alive) = fe.shell_down[0]
        assert isinstance(alive, tuple)
        d.set_fe(f, shell_down=fe.shell_down[1:])
        reconciling = fe.session is SessionState.RECONCILING
        if not reconciling and not fe.adopting:
            return Step(
                DeliverShellReply(f), f"frontend {f} drops an outdated comm_info_reply"
            ), d.freeze()
        comms = list(fe.comms)
        adopted = []
        for c, state in enumerate(comms):
            if state is FrontendCommState.NEW and c in alive:
                adopted.append(c)
            if (state is FrontendCommState.STALE and reconciling) or (
                state is FrontendCommState.NEW and c in alive
            ):
                event = FrontendCommEvent.CONFIRMED if c in alive else FrontendCommEvent.NOT_FOUND
                comms[c] = FRONTEND_COMM.step(state, event)
        owes = tuple(r for r in fe.owes if _answerable(d.req[r], comms))
        # An adopted comm is announced, so the kernel makes this frontend its owner.
        shell = (*fe.shell, *((Msg.ADOPT, c) for c in adopted))
        if reconciling and self._policy_resend_close():
            # A comm it holds closed that the kernel still lists: its comm_close may
            # have been lost with the link, so it goes again.
            shell = (*shell, *((Msg.CLOSE, c) for c in alive
                               if comms[c] is FrontendCommState.CLOSED))
        d.set_fe(f, comms=tuple(comms), owes=owes, shell=shell, adopting=False)
        listed = ", ".join(str(c) for c in alive) or "none"
        if not reconciling:
            return Step(
                DeliverShellReply(f),
                f"frontend {f} adopts from comm_info_reply (comms: {listed})",
            ), d.freeze()
        d.set_fe(f, session=SESSION.step(SessionState.RECONCILING, SessionEvent.RECONCILED))
        return Step(
            DeliverShellReply(f),
            f"frontend {f} reconciles against comm_info_reply (comms: {listed})",
        ), d.freeze()

    def _frontend_adopt(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        d.adoptions_left -= 1
        d.set_fe(f, adopting=True, shell=(*fe.shell, (Msg.INFO, NO_ARG)))
        return Step(
            FrontendAdopt(f), f"frontend {f} asks comm_info to adopt the comms it does not hold"
        ), d.freeze()

    def _frontend_answer(self, w: World, f: int, fe: Frontend, r: int) -> tuple[Step, World]:
        d = Draft(w)
        req = w.requests[r]
        assert req is not None
        d.set_fe(f, owes=_without(fe.owes, r))
        if req.kind is Kind.STDIN:
            d.set_fe(f, stdin_up=(*fe.stdin_up, (Msg.STDIN_REPLY, r)))
        else:
            d.set_fe(f, shell=(*fe.shell, (Msg.REPLY, r)))
        return Step(Answer(f, r), f"frontend {f} answers {req.kind.value} {r}"), d.freeze()

    def _frontend_link_lost(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        assert fe.session is not None
        comms = tuple(
            FRONTEND_COMM.step(s, FrontendCommEvent.LINK_LOST)
            if s in HELD
            else s
            for s in fe.comms
        )
        d.set_fe(
            f,
            session=SESSION.step(fe.session, SessionEvent.LINK_LOST),
            comms=comms,
            adopting=False,
            owes=(),
            iopub=(),
            shell_down=(),
            stdin_down=(),
        )
        if fe.relinked:
            # The connection libzmq re-established is closed too: a reconnect is the
            # frontend's own, and reconciles.
            d.set_fe(f, linked=False, relinked=False, sub_live=False,
                     sub_up=(*fe.sub_up, (Msg.UNSUB, NO_ARG)))
        for r, req in enumerate(w.requests):
            if _pending(req) and req.kind is Kind.FRONTEND_TO_KERNEL and req.party == f:
                d.set_req(r, REQUEST.step(RequestState.PENDING, RequestEvent.PEER_LOST))
        return Step(
            NoticeLinkLost(f), f"frontend {f} notices its link is lost (heartbeat)"
        ), d.freeze()

    def _libzmq_relink(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        d.relinks_left -= 1
        d.set_fe(f, linked=True, relinked=True, sub_up=(*fe.sub_up, (Msg.SUB, NO_ARG)))
        return Step(
            LibzmqRelink(f),
            f"libzmq reconnects frontend {f}'s dropped sockets by itself and subscribes "
            "again",
        ), d.freeze()

    def _policy_acts_on_relinked_drop(self) -> bool:
        """A frontend treats any disconnect its monitor reported as a lost link, even one
        libzmq re-established by itself (SPEC frontend 4)."""
        return True

    def _frontend_reconnect(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        d.reconnects_left -= 1
        d.set_fe(
            f,
            session=SESSION.step(SessionState.LOST, SessionEvent.RECONNECT),
            linked=True,
            sub_up=(*fe.sub_up, (Msg.SUB, NO_ARG)),
        )
        return Step(
            Reconnect(f), f"frontend {f} reconnects and subscribes again"
        ), d.freeze()

    def _frontend_open(
        self, w: World, f: int, fe: Frontend, c: int, target: Target
    ) -> tuple[Step, World]:
        d = Draft(w)
        d.targets[c] = target
        comms = list(fe.comms)
        comms[c] = FRONTEND_COMM.step(comms[c], FrontendCommEvent.OPENED_BY_FRONTEND)
        d.set_fe(f, comms=tuple(comms), shell=(*fe.shell, (Msg.OPEN, c)))
        return Step(
            FrontendOpen(f, c, target), f"frontend {f} opens {_comm(c, d.targets)}"
        ), d.freeze()

    def _frontend_close(self, w: World, f: int, fe: Frontend, c: int) -> tuple[Step, World]:
        d = Draft(w)
        self._frontend_comm_closed(d, f, c, FrontendCommEvent.CLOSED_BY_FRONTEND)
        d.set_fe(f, shell=(*fe.shell, (Msg.CLOSE, c)))
        return Step(
            FrontendClose(f, c), f"frontend {f} closes {_comm(c, w.targets)}"
        ), d.freeze()

    def _frontend_comm_closed(self, d: Draft, f: int, c: int, event: FrontendCommEvent) -> None:
        fe = d.fe[f]
        comms = list(fe.comms)
        comms[c] = FRONTEND_COMM.step(comms[c], event)
        owes = tuple(r for r in fe.owes if not _on_comm(d.req[r], c))
        d.set_fe(f, comms=tuple(comms), owes=owes)
        for r, req in enumerate(d.req):
            if (
                _pending(req)
                and req.kind is Kind.FRONTEND_TO_KERNEL
                and req.party == f
                and req.comm == c
            ):
                d.set_req(r, REQUEST.step(RequestState.PENDING, RequestEvent.COMM_CLOSED))

    def _frontend_request(
        self, w: World, f: int, fe: Frontend, c: int, r: int
    ) -> tuple[Step, World]:
        d = Draft(w)
        d.req[r] = Request(
            Kind.FRONTEND_TO_KERNEL, c, f, REQUEST.step(RequestState.NEW, RequestEvent.SENT), 0
        )
        d.set_fe(f, shell=(*fe.shell, (Msg.REQUEST, r)))
        return Step(
            FrontendRequest(f, c, r),
            f"frontend {f} sends request {r} on {_comm(c, w.targets)}",
        ), d.freeze()

    def _frontend_goes(self, w: World, f: int, fe: Frontend, clean: bool) -> tuple[Step, World]:
        d = Draft(w)
        d.faults_left -= 1
        if clean:
            assert fe.session is not None
            comms = tuple(
                FRONTEND_COMM.step(s, FrontendCommEvent.SESSION_CLOSED)
                if s in HELD
                else s
                for s in fe.comms
            )
            d.set_fe(f, session=SESSION.step(fe.session, SessionEvent.CLOSE), comms=comms)
            for r, req in enumerate(w.requests):
                if _pending(req) and req.kind is Kind.FRONTEND_TO_KERNEL and req.party == f:
                    d.set_req(r, REQUEST.step(RequestState.PENDING, RequestEvent.COMM_CLOSED))
        sub_up = (*fe.sub_up, (Msg.UNSUB, NO_ARG)) if fe.linked else fe.sub_up
        # Nothing a dead process held can matter again: forget it, so the futures
        # of a crash and of a clean exit are one set of states. What it sent stays.
        d.set_fe(
            f,
            proc=Proc.DEAD,
            session=None,
            linked=False,
            relinked=False,
            sub_live=False,
            sub_up=sub_up,
            comms=(FrontendCommState.NEW,) * len(fe.comms),
            owes=(),
            iopub=(),
            shell_down=(),
            stdin_down=(),
            late_replies=0,
        )
        what = "closes its session and exits" if clean else "crashes (SIGKILL)"
        return Step(Exit(f) if clean else Crash(f), f"frontend {f} {what}"), d.freeze()

    def _heartbeat_timeout(self, w: World, f: int) -> Iterator[tuple[Step, World]]:
        fe = w.frontends[f]
        # What the frontend had written into the connection and the kernel had not read
        # is lost with it: any prefix of its shell queue (the rest was still queued in
        # its socket, and goes out on the next connection).
        for lost in range(len(fe.shell) + 1):
            d = Draft(w)
            d.set_fe(
                f,
                proc=Proc.RUNNING,
                linked=False,
                sub_live=False,
                sub_up=(*fe.sub_up, (Msg.UNSUB, NO_ARG)),
                shell=fe.shell[lost:],
                iopub=(),
                shell_down=(),
                stdin_down=(),
            )
            note = f"; {lost} shell message{'s' * (lost != 1)} in flight lost" if lost else ""
            yield Step(
                HeartbeatTimeout(f, lost),
                f"the kernel's ZMTP heartbeat to frozen frontend {f} times out; libzmq "
                f"drops the connection{note}, and the frontend later resumes",
            ), d.freeze()

    # =====================================================================
    # kernel actions
    # =====================================================================

    def _kernel_subscription(self, w: World, f: int, fe: Frontend) -> Iterator[tuple[Step, World]]:
        (kind, _) = fe.sub_up[0]
        if kind is Msg.SUB:
            yield self._kernel_subscribe(w, f, fe)
            return
        # Which shell messages had reached the kernel's socket by now: any prefix
        # of each frontend's queue; and in which order the drain reads the frontends'
        # batches: any (the socket fair-queues between connections). Every order, so
        # that no frontend's number decides anything (the checker's symmetry needs it).
        # The same for stdin replies.
        for received in itertools.product(*(range(len(x.shell) + 1) for x in w.frontends)):
            for stdin in itertools.product(*(range(len(x.stdin_up) + 1) for x in w.frontends)):
                batches = [g for g, (n, m) in enumerate(zip(received, stdin, strict=True))
                           if n or m]
                for order in (itertools.permutations(batches) if len(batches) > 1
                              else (batches,)):
                    yield self._kernel_unsubscribe(w, f, fe, received, stdin, tuple(order))

    def _kernel_subscribe(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        d.set_fe(f, sub_up=fe.sub_up[1:])
        k = w.kernel
        presence = PRESENCE.step(k.presence, PresenceEvent.SUBSCRIBE)
        peers = list(k.peers)
        peers[f] = True
        d.kernel = k._replace(presence=presence, peers=tuple(peers))
        d.set_fe(f, sub_live=fe.linked)
        d.publish((Msg.WELCOME, NO_ARG), only=f)
        for c, kc in enumerate(d.kcomms):
            if kc.state is KernelCommState.DETACHED and kc.owner in (f, OWNER_ALL):
                d.kcomms[c] = kc._replace(
                    state=KERNEL_COMM.step(kc.state, KernelCommEvent.FRONTEND_BACK)
                )
        return Step(
            KernelSubscribe(f),
            f"kernel's XPUB sees frontend {f} subscribe; it publishes a welcome",
        ), (d.freeze())

    def _kernel_unsubscribe(
        self,
        w: World,
        f: int,
        fe: Frontend,
        received: tuple[int, ...],
        stdin: tuple[int, ...],
        order: tuple[int, ...],
    ) -> tuple[Step, World]:
        d = Draft(w)
        d.set_fe(f, sub_up=fe.sub_up[1:])
        replies = tuple(
            arg
            for g in order
            for kind, arg in (*w.frontends[g].shell[: received[g]],
                              *w.frontends[g].stdin_up[: stdin[g]])
            if kind in (Msg.REPLY, Msg.STDIN_REPLY) and isinstance(arg, int)
        )
        self._policy_drain(d, received, stdin, order)
        k = d.kernel
        others = sum(k.peers) > 1
        presence = PRESENCE.step(
            k.presence, PresenceEvent.UNSUBSCRIBE, {PresenceFact.OTHERS_REMAIN: others}
        )
        peers = list(k.peers)
        peers[f] = False
        d.kernel = k._replace(presence=presence, peers=tuple(peers))
        # A stock frontend never named itself: the kernel cannot tell who left, only
        # (per connection) whose stdin requests can no longer be answered.
        self._policy_frontend_lost(d, f, stdin_only=w.frontends[f].stock)
        if not others:
            self._policy_everyone_lost(d)
        n = sum(received) + sum(stdin)
        note = f" (after draining {n} received message{'s' * (n != 1)})" if n else ""
        if len(order) > 1:
            note = note[:-1] + ", frontend " + " then ".join(str(g) for g in order) + ")"
        return Step(
            KernelUnsubscribe(f, received, order, stdin),
            f"kernel's XPUB sees frontend {f} unsubscribe{note}; it applies the "
            "disconnection policy",
            replies,
        ), d.freeze()

    def _policy_drain(
        self, d: Draft, received: tuple[int, ...], stdin: tuple[int, ...], order: tuple[int, ...]
    ) -> None:
        """The drain rule: of the messages already received on shell and stdin, apply
        those that settle a request or a comm (replies, a comm_close for a comm the
        kernel holds), each frontend's batch in ``order``; the rest stay queued, in
        their order, for after the departure (a kernel whose handler is busy never has
        to run one to act on a departure)."""
        for g in order:
            queue = d.fe[g].shell
            kept = []
            for msg in queue[: received[g]]:
                if self._settles(d, msg):
                    self._kernel_shell(d, g, msg)
                else:
                    kept.append(msg)
            replies = d.fe[g].stdin_up
            d.set_fe(g, shell=(*kept, *queue[received[g]:]), stdin_up=replies[stdin[g]:])
            for msg in replies[: stdin[g]]:
                self._kernel_stdin(d, msg)

    def _settles(self, d: Draft, msg: Message) -> bool:
        kind, arg = msg
        return kind is Msg.REPLY or (
            kind is Msg.CLOSE and isinstance(arg, int) and d.kcomms[arg].state in ALIVE
        )

    def _policy_frontend_lost(self, d: Draft, f: int, stdin_only: bool = False) -> None:
        for c, kc in enumerate(d.kcomms):
            if kc.owner == f and kc.state is KernelCommState.OPEN and not stdin_only:
                self._policy_comm_lost(d, c)
        for r, req in enumerate(d.req):
            if (
                _pending(req)
                and req.kind is Kind.KERNEL_TO_FRONTEND
                and (d.kcomms[req.comm].owner == f)
                and not stdin_only
            ):
                d.set_req(r, REQUEST.step(RequestState.PENDING, RequestEvent.PEER_LOST))
            elif (
                req is not None
                and req.kind is Kind.STDIN
                and req.party == f
                and (req.state is StdinRequestState.PENDING)
            ):
                d.set_req(r, STDIN_REQUEST.step(req.state, StdinRequestEvent.PEER_LOST))

    def _policy_everyone_lost(self, d: Draft) -> None:
        """The last subscriber left: the comms every subscriber owns (stock frontends')
        are lost, with their requests. (Stdin requests go by connection, not here.)"""
        for c, kc in enumerate(d.kcomms):
            if kc.owner == OWNER_ALL and kc.state is KernelCommState.OPEN:
                self._policy_comm_lost(d, c)
        for r, req in enumerate(d.req):
            if (_pending(req) and req.kind is Kind.KERNEL_TO_FRONTEND
                    and d.kcomms[req.comm].owner == OWNER_ALL):
                d.set_req(r, REQUEST.step(RequestState.PENDING, RequestEvent.PEER_LOST))

    def _policy_comm_lost(self, d: Draft, c: int) -> None:
        """A comm's owner is gone: persistent comms detach, default comms close."""
        kc = d.kcomms[c]
        persistent = d.targets[c] is Target.PERSISTENT
        state = KERNEL_COMM.step(
            kc.state, KernelCommEvent.FRONTEND_LOST, {KernelCommFact.PERSISTENT: persistent}
        )
        if state is KernelCommState.CLOSED:
            self._kernel_comm_closed(d, c, CloseCause.LOST, RequestEvent.PEER_LOST, state)
            return
        d.kcomms[c] = kc._replace(state=state)
        detached = [x for x in d.kernel.detached if d.kcomms[x].state is KernelCommState.DETACHED]
        detached.append(c)
        while len(detached) > self._policy_keep_detached(d):
            self._evict(d, detached.pop(0))
        d.kernel = d.kernel._replace(detached=tuple(detached))

    def _policy_keep_detached(self, d: Draft) -> int:
        """How many detached comms the kernel keeps: past that, the longest detached is
        evicted."""
        return d.keep_detached

    def _evict(self, d: Draft, c: int) -> None:
        state = KERNEL_COMM.step(d.kcomms[c].state, KernelCommEvent.EVICTED)
        self._kernel_comm_closed(d, c, CloseCause.EVICTED, RequestEvent.COMM_CLOSED, state)

    def _kernel_comm_closed(
        self,
        d: Draft,
        c: int,
        cause: CloseCause,
        request_event: RequestEvent,
        state: KernelCommState,
        skip: int | None = None,
    ) -> None:
        d.kcomms[c] = d.kcomms[c]._replace(state=state, cause=cause)
        for r, req in enumerate(d.req):
            if _pending(req) and req.kind is Kind.KERNEL_TO_FRONTEND and req.comm == c:
                d.set_req(r, REQUEST.step(RequestState.PENDING, request_event))
        d.kernel = d.kernel._replace(
            owed=tuple(r for r in d.kernel.owed if not _on_comm(d.req[r], c))
        )
        d.publish((Msg.CLOSE, c), skip=skip)

    def _kernel_shell(self, d: Draft, f: int, msg: Message) -> None:
        kind, arg = msg
        k = d.kernel
        if kind is Msg.OPEN:
            assert isinstance(arg, int)
            kc = d.kcomms[arg]
            d.kcomms[arg] = kc._replace(
                state=KERNEL_COMM.step(kc.state, KernelCommEvent.OPENED_BY_FRONTEND),
                owner=OWNER_ALL if d.fe[f].stock else f,
            )
            if not (any(k.peers) if d.fe[f].stock else k.peers[f]):
                # The owner left before its comm_open was read: lost at once.
                self._policy_comm_lost(d, arg)
        elif kind is Msg.CLOSE:
            assert isinstance(arg, int)
            kc = d.kcomms[arg]
            if kc.state in ALIVE:
                state = KERNEL_COMM.step(kc.state, KernelCommEvent.CLOSED_BY_FRONTEND)
                self._kernel_comm_closed(
                    d, arg, CloseCause.FRONTEND, RequestEvent.COMM_CLOSED, state, skip=f
                )
        elif kind is Msg.REQUEST:
            assert isinstance(arg, int)
            req = d.req[arg]
            assert req is not None
            if d.kcomms[req.comm].state in ALIVE:
                d.kernel = k._replace(owed=(*k.owed, arg))
        elif kind is Msg.REPLY:
            assert isinstance(arg, int)
            self._caller_gets_reply(d, arg, frontend=None)
        elif kind is Msg.ADOPT:
            assert isinstance(arg, int)
            if d.kcomms[arg].state is KernelCommState.DETACHED and k.peers[f]:
                # ghost state for adopted_comm_answerable: f is now the adopter
                for g, x in enumerate(d.fe):
                    if arg in x.adopted:
                        d.set_fe(g, adopted=_without(x.adopted, arg))
                d.set_fe(f, adopted=(*d.fe[f].adopted, arg))
                self._policy_adopt(d, f, arg)
        elif kind is Msg.INFO:
            if d.fe[f].linked:
                alive = tuple(c for c, kc in enumerate(d.kcomms) if kc.state in ALIVE)
                d.set_fe(f, shell_down=(*d.fe[f].shell_down, (Msg.INFO_REPLY, alive)))
        else:  # pragma: no cover
            raise AssertionError(msg)

    def _policy_adopt(self, d: Draft, f: int, c: int) -> None:
        """A frontend adopted a detached comm: it becomes the owner, the comm re-attaches."""
        kc = d.kcomms[c]
        d.kcomms[c] = kc._replace(
            state=KERNEL_COMM.step(kc.state, KernelCommEvent.ADOPTED), owner=f
        )

    def _caller_gets_reply(self, d: Draft, r: int, frontend: int | None) -> None:
        req = d.req[r]
        assert req is not None
        if req.state is RequestState.PENDING:
            d.set_req(r, REQUEST.step(req.state, RequestEvent.RESULT), delivered=1)
        else:
            self._policy_late_reply(d, r, frontend)

    def _policy_late_reply(self, d: Draft, r: int, frontend: int | None) -> None:
        """A reply for an ended request: counted, traced, never delivered."""
        req = d.req[r]
        assert req is not None
        d.set_req(r, REQUEST.step(req.state, RequestEvent.LATE_REPLY))  # type: ignore[arg-type]
        if frontend is None:
            d.kernel = d.kernel._replace(late_replies=d.kernel.late_replies + 1)
        else:
            d.set_fe(frontend, late_replies=d.fe[frontend].late_replies + 1)

    def _kernel_stdin_reply(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        d = Draft(w)
        msg = fe.stdin_up[0]
        d.set_fe(f, stdin_up=fe.stdin_up[1:])
        late = self._kernel_stdin(d, msg)
        note = " (late: dropped and counted)" if late else ""
        return Step(
            KernelStdinReply(f), f"kernel receives the stdin reply to request {msg[1]}{note}"
        ), d.freeze()

    def _kernel_stdin(self, d: Draft, msg: Message) -> bool:
        """Applies a stdin reply; whether it was late."""
        (_, s) = msg
        assert isinstance(s, int)
        req = d.req[s]
        assert req is not None
        if req.state is StdinRequestState.PENDING:
            d.set_req(s, STDIN_REQUEST.step(req.state, StdinRequestEvent.REPLY), delivered=1)
            return False
        d.set_req(s, STDIN_REQUEST.step(req.state, StdinRequestEvent.LATE_REPLY))  # type: ignore[arg-type]
        d.kernel = d.kernel._replace(late_replies=d.kernel.late_replies + 1)
        return True

    def _kernel_answer(self, w: World, r: int) -> tuple[Step, World]:
        d = Draft(w)
        req = w.requests[r]
        assert req is not None
        d.kernel = w.kernel._replace(owed=_without(w.kernel.owed, r))
        d.publish((Msg.REPLY, r), only=req.party)
        return Step(
            KernelAnswer(r), f"kernel publishes its reply to frontend request {r}"
        ), d.freeze()

    def _kernel_open(self, w: World, c: int, owner: int, target: Target) -> tuple[Step, World]:
        d = Draft(w)
        d.targets[c] = target
        kc = w.kernel.comms[c]
        d.kcomms[c] = kc._replace(
            state=KERNEL_COMM.step(kc.state, KernelCommEvent.OPENED_BY_KERNEL),
            owner=OWNER_ALL if w.frontends[owner].stock else owner,
        )
        d.publish((Msg.OPEN, c))
        return Step(
            KernelOpen(c, owner, target),
            f"kernel opens {_comm(c, d.targets)} for frontend {owner}'s request",
        ), (d.freeze())

    def _kernel_close(self, w: World, c: int) -> tuple[Step, World]:
        d = Draft(w)
        state = KERNEL_COMM.step(w.kernel.comms[c].state, KernelCommEvent.CLOSED_BY_KERNEL)
        self._kernel_comm_closed(d, c, CloseCause.KERNEL, RequestEvent.COMM_CLOSED, state)
        return Step(KernelClose(c), f"kernel closes {_comm(c, w.targets)}"), d.freeze()

    def _kernel_request(self, w: World, c: int, r: int) -> tuple[Step, World]:
        d = Draft(w)
        kc = w.kernel.comms[c]
        receiver = self._policy_receiver_present(w, kc)
        event = RequestEvent.SENT if receiver else RequestEvent.NO_RECEIVER
        d.req[r] = Request(Kind.KERNEL_TO_FRONTEND, c, -1, REQUEST.step(RequestState.NEW, event), 0)
        if receiver:
            d.publish((Msg.REQUEST, r))
            return Step(
                KernelRequest(c, r), f"kernel sends request {r} on {_comm(c, w.targets)}"
            ), d.freeze()
        return Step(
            KernelRequest(c, r),
            f"kernel tries request {r} on {_comm(c, w.targets)}: nobody can "
            "receive it, undeliverable",
        ), d.freeze()

    # -- the frontend's reconcile rules (SPEC.md, frontend requirement 5) ---------------

    def _policy_remember_unseen_close(self) -> bool:
        """A comm_close for a comm never seen is remembered (the comm is closed here), so
        an outdated comm_info_reply, which travels on shell, cannot make it adopted."""
        return True

    def _policy_resend_close(self) -> bool:
        """While reconciling, a comm the frontend holds closed that comm_info_reply lists
        gets its comm_close again: the first may have been lost with the link."""
        return True

    def _policy_held_while_reconciling(self) -> frozenset[FrontendCommState]:
        """The comms on which a kernel request waits for comm_info_reply while the
        frontend reconciles: those it cannot yet say it holds or not."""
        return UNDECIDED

    def _policy_receiver_present(self, w: World, kc: KernelComm) -> bool:
        if kc.owner == OWNER_ALL:
            return kc.state is KernelCommState.OPEN and any(w.kernel.peers)
        return kc.state is KernelCommState.OPEN and w.kernel.peers[kc.owner]

    def _kernel_stdin_request(self, w: World, f: int, s: int) -> tuple[Step, World]:
        d = Draft(w)
        reachable = w.frontends[f].linked
        event = StdinRequestEvent.SENT if reachable else StdinRequestEvent.HOST_UNREACHABLE
        d.req[s] = Request(Kind.STDIN, -1, f, STDIN_REQUEST.step(StdinRequestState.NEW, event), 0)
        if reachable:
            d.set_fe(f, stdin_down=(*w.frontends[f].stdin_down, (Msg.STDIN_REQUEST, s)))
            return Step(
                KernelStdinRequest(f, s),
                f"kernel sends stdin request {s} to frontend {f}",
            ), d.freeze()
        return Step(
            KernelStdinRequest(f, s),
            f"kernel sends stdin request {s} to frontend {f}: EHOSTUNREACH",
        ), (d.freeze())

    def _kernel_shutdown(self, w: World) -> tuple[Step, World]:
        d = Draft(w)
        for c, kc in enumerate(w.kernel.comms):
            if kc.state in ALIVE:
                state = KERNEL_COMM.step(kc.state, KernelCommEvent.KERNEL_SHUTDOWN)
                self._kernel_comm_closed(d, c, CloseCause.SHUTDOWN, RequestEvent.COMM_CLOSED, state)
        for r, req in enumerate(d.req):
            if (
                req is not None
                and req.kind is Kind.STDIN
                and (req.state is StdinRequestState.PENDING)
            ):
                d.set_req(r, STDIN_REQUEST.step(req.state, StdinRequestEvent.INTERRUPT))
        d.kernel = d.kernel._replace(up=False, owed=())
        for f in range(len(d.fe)):
            # The kernel process exits: every connection ends; what was sent stays sent.
            d.set_fe(f, linked=False, relinked=False, sub_live=False, sub_up=(), shell=(),
                     stdin_up=())
        return Step(Shutdown(), "kernel shuts down"), d.freeze()


# =========================================================================
# helpers
# =========================================================================


def _unused_comm(w: World) -> int | None:
    """The comm slot the next comm opened takes: slots are used in order, so slot order
    is the order comms were opened in (the kernel's tie-break when several detach at
    once), and unused slots, which are all alike, are not told apart for nothing."""
    for c, target in enumerate(w.targets):
        if target is Target.UNUSED:
            return c
    return None


def _free_slot(w: World) -> int | None:
    for r, req in enumerate(w.requests):
        if req is None:
            return r
    return None


def _pending(req: Request | None) -> TypeGuard[Request]:
    return req is not None and req.state is RequestState.PENDING


def _on_comm(req: Request | None, c: int) -> bool:
    return req is not None and req.kind is not Kind.STDIN and req.comm == c


def _answerable(
    req: Request | None, comms: tuple[FrontendCommState, ...] | list[FrontendCommState]
) -> bool:
    """Stdin requests always; comm requests once their comm is open here."""
    assert req is not None
    return req.kind is Kind.STDIN or comms[req.comm] is FrontendCommState.OPEN


def _comm(c: int, targets: tuple[Target, ...] | list[Target]) -> str:
    return f"{targets[c].value} comm {c}"


def _show(msg: Message, w: World) -> str:
    kind, arg = msg
    if kind in (Msg.OPEN, Msg.CLOSE, Msg.ADOPT):
        assert isinstance(arg, int)
        return f"{kind.value} of {_comm(arg, w.targets)}"
    if kind in (Msg.REQUEST, Msg.REPLY):
        req = w.requests[arg] if isinstance(arg, int) else None
        what = req.kind.value if req is not None else "request"
        return f"{'the reply to ' if kind is Msg.REPLY else ''}{what} {arg}"
    return str(kind.value)


__all__ = ["Action", "Bounds", "Draft", "Step", "StepKind", "SystemModel"]
