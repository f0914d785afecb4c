"""The reconcile races: a kernel request reaches a reconnected frontend before its
comm_info_reply. Actions of the tests, not of the model.

Rules:
- SPEC.md (frontend requirement 5): while a frontend reconciles (welcomed after a
  reconnect, comm_info_reply not yet arrived) a kernel request on a comm it has not
  seen, or holds stale, is held until comm_info_reply says whether the frontend holds
  the comm. The model checker shows the rule is needed (``model/broken.py``: dropped,
  the request waits forever); in the lockstep the interleaving never happens by
  itself, since every action starts from a quiescent state and a reconnect
  reconciles before the next one. These actions make it happen.
- ``UnseenRequest(frontend f, comm c, request r, owner g, target)``: ``f`` freezes
  until the kernel's heartbeat drops it, and notices it is lost; while it is away the
  kernel opens comm slot ``c`` for frontend ``g`` (``f`` never hears its comm_open);
  ``f`` reconnects, and its comm_info_reply is held back once it has arrived; the
  kernel sends request ``r`` on ``c``, which ``f`` receives while still reconciling;
  then the comm_info_reply goes through. ``f`` must adopt the comm and answer (``g``
  answers too: one of the two answers is late).
- ``StaleRequest(frontend f, comm c, request r)``: the same on comm slot ``c``, which
  ``f`` holds open (stale after the loss), with no comm opened meanwhile. Offered
  where the kernel still has the comm with a present owner once ``f`` is back: a
  persistent comm of ``f`` (detached, then back), or a comm of another frontend.
- The model has no such actions: each is a sequence of phases of the model's own
  steps (:func:`outcomes`). Each phase is one environment step or the reconnect,
  followed by every protocol step save the one the system withholds until the next
  phase (``f``'s reconnect while away, its comm_info_reply while it reconciles), to
  the states where nothing else can happen; the last phase runs to quiescence. A
  system makes the same phases happen in the same order, waiting for each
  (:mod:`.inprocess`, :mod:`.live`).
- Offered (:func:`reconcile_races`) where the phases can all happen: the kernel up,
  a fault and a reconnect left, ``f`` ready and counted by the kernel, a request slot
  free (and for ``UnseenRequest`` a comm slot free and another ready frontend).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from commspec.model.actions import (
    Action,
    DeliverShellReply,
    EnvironmentAction,
    Freeze,
    KernelOpen,
    KernelRequest,
    Reconnect,
)
from commspec.model.explore import Search, quiescent
from commspec.model.machines import (
    FrontendCommState,
    KernelCommState,
    RequestState,
    SessionState,
)
from commspec.model.system import Step, StepKind, SystemModel
from commspec.model.world import Proc, Target, World

__all__ = [
    "RECONCILE_RACES",
    "ReconcileRace",
    "StaleRequest",
    "UnseenRequest",
    "outcomes",
    "reconcile_races",
]


class ReconcileRace(EnvironmentAction):
    """A kernel request that reaches frontend ``frontend``, reconnected, before its
    comm_info_reply."""

    __slots__ = ()
    frontend: int
    comm: int
    request: int


@dataclass(frozen=True, slots=True, repr=False)
class UnseenRequest(ReconcileRace):
    """A frontend away; the kernel opens a comm for another; the frontend reconnects and
    gets a kernel request on that comm before its comm_info_reply."""

    name: ClassVar[str] = "race_unseen_request"
    frontend: int
    comm: int
    request: int
    owner: int
    target: Target


@dataclass(frozen=True, slots=True, repr=False)
class StaleRequest(ReconcileRace):
    """A frontend away and back; it gets a kernel request on a comm it holds stale before
    its comm_info_reply."""

    name: ClassVar[str] = "race_stale_request"
    frontend: int
    comm: int
    request: int


#: the reconcile races' action classes, one rule (and one ``supported`` name) each
RECONCILE_RACES: tuple[type[ReconcileRace], ...] = (UnseenRequest, StaleRequest)

_OPENABLE = (Target.PERSISTENT, Target.DEFAULT)


def reconcile_races(model: SystemModel, w: World,
                    kinds: Iterable[type[ReconcileRace]]) -> list[ReconcileRace]:
    """The reconcile races of ``kinds`` that quiescent state ``w`` offers."""
    kinds = tuple(kinds)
    k = w.kernel
    if not kinds or not k.up or w.faults_left < 1 or w.reconnects_left < 1:
        return []
    r = next((i for i, req in enumerate(w.requests) if req is None), None)
    if r is None:
        return []
    ready = [f for f, fe in enumerate(w.frontends)
             if fe.proc is Proc.RUNNING and fe.session is SessionState.READY and fe.linked
             and fe.sub_live and k.peers[f]]
    out: list[ReconcileRace] = []
    for f in ready:
        if UnseenRequest in kinds:
            # the comm the kernel opens takes the first unused slot, as every open does
            free = [c for c, target in enumerate(w.targets) if target is Target.UNUSED][:1]
            out.extend(UnseenRequest(f, c, r, g, target)
                       for c in free for g in ready if g != f for target in _OPENABLE)
        if StaleRequest in kinds:
            for c, kc in enumerate(k.comms):
                if w.frontends[f].comms[c] is not FrontendCommState.OPEN or \
                        kc.state is not KernelCommState.OPEN:
                    continue
                back = w.targets[c] is Target.PERSISTENT if kc.owner == f else kc.owner in ready
                if back:
                    out.append(StaleRequest(f, c, r))
    return out


Allowed = Callable[[Step], bool]


def _settled(model: SystemModel, starts: Iterable[World], allowed: Allowed,
             limit: int | None) -> list[World]:
    """The states protocol steps ``allowed`` reach from ``starts`` in which none of
    them is enabled: where the phase rests until the system lets the next one begin."""
    def edges(w: World) -> Iterator[tuple[Step, World]]:
        return ((s, n) for s, n in model.successors(w)
                if s.kind is StepKind.PROTOCOL and allowed(s))

    search = Search(starts, edges, limit)
    return [search.states[i] for i, out in search.expansions() if not out]


def _then(model: SystemModel, states: Iterable[World], action: Action) -> list[World]:
    """Each state's successors by ``action``."""
    return [n for w in states for s, n in model.successors(w) if s.action == action]


def outcomes(model: SystemModel, w: World, race: ReconcileRace,
             limit: int | None = None) -> set[World]:
    """The quiescent states ``race`` can end in from ``w``, phase by phase (see the
    module docstring)."""
    f = race.frontend
    reconnect, reply = Reconnect(f), DeliverShellReply(f)

    def away(step: Step) -> bool:  # until the phase that reconnects it
        return step.action != reconnect

    def held(step: Step) -> bool:  # until the kernel request has reached it
        return step.action != reply

    states = _settled(model, _then(model, [w], Freeze(f)), away, limit)
    states = [q for q in states if q.frontends[f].session is SessionState.LOST]
    if isinstance(race, UnseenRequest):
        opened = _then(model, states, KernelOpen(race.comm, race.owner, race.target))
        states = _settled(model, opened, away, limit)
    states = _settled(model, _then(model, states, Reconnect(f)), held, limit)
    # reconciling, with the comm_info_reply arrived and held back
    states = [q for q in states if q.frontends[f].session is SessionState.RECONCILING
              and q.frontends[f].shell_down]
    asked = [q for q in _then(model, states, KernelRequest(race.comm, race.request))
             if (req := q.requests[race.request]) is not None
             and req.state is RequestState.PENDING]
    # every protocol step but the comm_info_reply: the request reaches the frontend first
    states = _settled(model, asked, held, limit)
    return set(quiescent(model, states, limit))
