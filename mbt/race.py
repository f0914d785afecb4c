"""The reply/departure race: an action of the tests, not of the model.

Rules:
- ``Race(comm, request, order)``: the kernel sends request ``request`` on comm slot
  ``comm``; its owner answers and is SIGKILLed, in the ``order`` the test chooses.
  The model has no such action: it is ``kernel_request``, then protocol steps and a
  crash in every interleaving (:func:`outcomes`); the order narrows the model's
  quiescent states to those it allows.
- A race is offered (:func:`races`) where the kernel request would reach one running
  frontend that holds the comm open and may still crash afterwards, and no other
  frontend could answer it (a bystander's answer would decide the outcome instead
  of the order).
- The orders (``RaceOrder``): ``reply_first``, the kernel resolves the request, then
  the frontend goes. ``iopub_first``, the frontend's IOPub goes, the kernel
  invalidates the request, and only then does the answer leave its still-open shell
  (a late reply, dropped and counted). ``together``, answer and SIGKILL back to back,
  on the wire's luck: the model allows either outcome and the live one must be one
  of them. ``queued``, the kernel is held until both the answer and the unsubscribe
  are queued, so the answer had arrived first and the drain rule must deliver it
  (only for systems that can hold their kernel's inbound queues).
- This module is the race's model side; how a system makes each order happen is
  the system's (:mod:`.live`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from commspec.model.actions import Crash, EnvironmentAction, KernelRequest
from commspec.model.declaration import Name
from commspec.model.explore import quiescent, reachable
from commspec.model.machines import (
    SESSION,
    FrontendCommState,
    KernelCommState,
    RequestState,
    SessionEvent,
)
from commspec.model.system import SystemModel
from commspec.model.world import Msg, Proc, World


class RaceOrder(Name):
    REPLY_FIRST = "reply_first"
    IOPUB_FIRST = "iopub_first"
    TOGETHER = "together"
    QUEUED = "queued"


#: what each order makes the system do, in a sentence (the rule's docstring)
DESCRIPTIONS: dict[RaceOrder, str] = {
    RaceOrder.REPLY_FIRST: "A kernel request; the kernel resolves its answer; then the "
    "frontend dies.",
    RaceOrder.IOPUB_FIRST: "A kernel request; the frontend's IOPub goes, then its answer "
    "(late).",
    RaceOrder.TOGETHER: "A kernel request; the answer and the SIGKILL back to back.",
    RaceOrder.QUEUED: "A kernel request; answer and unsubscribe both queued before the "
    "kernel looks.",
}


@dataclass(frozen=True, slots=True, repr=False)
class Race(EnvironmentAction):
    """A kernel request, then its frontend's answer and its departure in ``order``."""

    name: ClassVar[str] = "race"
    comm: int
    request: int
    order: RaceOrder

    @property
    def rule(self) -> str:
        """The name of the rule (and of the ``supported`` entry) for this order."""
        return rule_name(self.order)


def rule_name(order: RaceOrder) -> str:
    return f"race_{order.value}"


def races(model: SystemModel, w: World, orders: Iterable[RaceOrder]) -> list[Race]:
    """The races ``w`` offers, in ``orders``: one per kernel request the model enables
    that would reach one running frontend that may still crash afterwards."""
    out: list[Race] = []
    if w.faults_left < 1:
        return out
    orders = tuple(orders)
    for step, _ in model.successors(w):
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


def outcomes(model: SystemModel, w: World, race: Race, limit: int | None = None) -> set[World]:
    """The quiescent states ``race`` can end in from ``w``: kernel_request(c, r), then
    the owner's crash at any point of the protocol's progress, then quiescence; kept
    are those the order forces: the request resolved (reply_first, queued),
    invalidated with the answer arriving late (iopub_first), or anything (together)."""
    request = KernelRequest(race.comm, race.request)
    crash = Crash(w.kernel.comms[race.comm].owner)
    out: set[World] = set()
    for step, after in model.successors(w):
        if step.action != request:
            continue
        for mid in reachable(model, after, limit):
            gone = [succ for then, succ in model.successors(mid) if then.action == crash]
            out.update(q for q in quiescent(model, gone, limit) if _allows(race, w, q))
    return out


def _allows(race: Race, before: World, q: World) -> bool:
    """Whether quiescent state ``q`` is an outcome ``race``'s order can end in."""
    req = q.requests[race.request]
    if race.order in (RaceOrder.REPLY_FIRST, RaceOrder.QUEUED):
        return req is not None and req.state is RequestState.RESOLVED
    if race.order is RaceOrder.IOPUB_FIRST:
        return (
            req is not None
            and req.state is RequestState.INVALIDATED
            and q.kernel.late_replies == before.kernel.late_replies + 1
        )
    return True


__all__ = ["DESCRIPTIONS", "Race", "RaceOrder", "outcomes", "races", "rule_name"]
