"""The rules, each broken: the system model with one policy changed, as a buggy kernel or
frontend would have it.

Rules:
- Each variant replaces one ``_policy_*`` of :class:`~commspec.model.system.SystemModel`
  (or one reaction of a party) and nothing else; the checker must catch it, naming
  the property it breaks, with a short counterexample (``tests/model/test_checker.py``).
- The counterexamples of the named races are SPEC.md's sequence charts
  (:data:`RACES`, drawn by ``commspec diagrams``): each shows what goes wrong without
  the rule, from the model itself.
"""

from __future__ import annotations

from typing import NamedTuple

from .actions import DeliverShellReply
from .machines import (
    FrontendCommState,
    KernelCommState,
    RequestEvent,
    RequestState,
    SessionState,
)
from .system import Bounds, Draft, Step, SystemModel
from .world import OWNER_ALL, CloseCause, Frontend, KernelComm, Kind, Target, World

__all__ = [
    "DETACHED_BROKEN", "KERNEL_BROKEN", "RACES", "RECONCILE_BROKEN", "SESSION_BROKEN", "Race",
]


class PersistentClosedOnLoss(SystemModel):
    """Closes every comm whose frontend goes, persistent or not."""

    def _policy_comm_lost(self, d: Draft, c: int) -> None:
        self._kernel_comm_closed(
            d, c, CloseCause.LOST, RequestEvent.PEER_LOST, KernelCommState.CLOSED
        )


class LateReplyDelivered(SystemModel):
    """Hands a late reply to its caller as if the request were still pending."""

    def _policy_late_reply(self, d: Draft, r: int, frontend: int | None) -> None:
        req = d.req[r]
        assert req is not None
        d.req[r] = req._replace(delivered=req.delivered + 1)


class NoDrain(SystemModel):
    """Acts on an unsubscribe without first processing the shell messages received."""

    def _policy_drain(
        self, d: Draft, received: tuple[int, ...], stdin: tuple[int, ...], order: tuple[int, ...]
    ) -> None:
        return None


class NoStdinDrain(SystemModel):
    """Drains shell but not stdin: an input_reply already received is thrown away when
    its frontend's departure is read (the rule as SPEC v1 worded it)."""

    def _policy_drain(
        self, d: Draft, received: tuple[int, ...], stdin: tuple[int, ...], order: tuple[int, ...]
    ) -> None:
        super()._policy_drain(d, received, (0,) * len(stdin), order)


class DrainDiscardsTheRest(SystemModel):
    """Applies the settling messages of the drain batch and throws the others away
    instead of leaving them queued."""

    def _policy_drain(
        self, d: Draft, received: tuple[int, ...], stdin: tuple[int, ...], order: tuple[int, ...]
    ) -> None:
        for g in order:
            queue = d.fe[g].shell
            d.set_fe(g, shell=queue[received[g]:])
            for msg in queue[: received[g]]:
                if self._settles(d, msg):
                    self._kernel_shell(d, g, msg)
        super()._policy_drain(d, (0,) * len(received), stdin, order)


class AcceptedWithoutReceiver(SystemModel):
    """Lets a kernel request pend although nobody can receive it."""

    def _policy_receiver_present(self, w: object, kc: KernelComm) -> bool:
        return True


class DefaultCommKeptOnLoss(SystemModel):
    """Keeps a default comm open after its frontend went away."""

    def _policy_comm_lost(self, d: Draft, c: int) -> None:
        if d.targets[c] is Target.PERSISTENT:
            super()._policy_comm_lost(d, c)


class ForgetsUnseenClose(SystemModel):
    """Drops a comm_close for a comm it never saw instead of remembering it closed."""

    def _policy_remember_unseen_close(self) -> bool:
        return False


class DropsRequestsOnUnseenComms(SystemModel):
    """While reconciling, drops a kernel request on a comm not seen yet (the reference
    frontend's bug: only stale comms' requests were held)."""

    def _policy_held_while_reconciling(self) -> frozenset[FrontendCommState]:
        return frozenset({FrontendCommState.STALE})


class ForgetsItsLostClose(SystemModel):
    """Does not send comm_close again for a comm it closed that comm_info_reply still
    lists: a close lost with the link leaves the kernel holding the comm."""

    def _policy_resend_close(self) -> bool:
        return False


class TrustsLibzmqRelink(SystemModel):
    """Takes a connection libzmq re-established by itself for the old one and never acts
    on the drop (a frontend without a socket monitor, or one that ignores it)."""

    def _policy_acts_on_relinked_drop(self) -> bool:
        return False


class HoldsNothingWhileReconciling(SystemModel):
    """While reconciling, drops every kernel request on a comm not yet confirmed."""

    def _policy_held_while_reconciling(self) -> frozenset[FrontendCommState]:
        return frozenset()


class InvalidatesEveryonesRequests(SystemModel):
    """Fails every pending kernel request when any frontend leaves, not only those on
    the comms of the frontend that left (presence counted, not per peer)."""

    def _policy_frontend_lost(self, d: Draft, f: int, stdin_only: bool = False) -> None:
        super()._policy_frontend_lost(d, f, stdin_only)
        for r, req in enumerate(d.req):
            if (req is not None and req.kind is Kind.KERNEL_TO_FRONTEND
                    and req.state is RequestState.PENDING):
                d.set_req(r, RequestState.INVALIDATED)


class PersistentStaysOpenOnLoss(SystemModel):
    """Leaves a persistent comm open when its frontend goes, instead of detaching it."""

    def _policy_comm_lost(self, d: Draft, c: int) -> None:
        if d.targets[c] is not Target.PERSISTENT:
            super()._policy_comm_lost(d, c)


class WaitsForHandlerOfUnseenComm(SystemModel):
    """While reconciling, sets aside a comm_info_reply that lists a comm it never saw,
    waiting for a handler for its target that never comes."""

    def _frontend_shell_reply(self, w: World, f: int, fe: Frontend) -> tuple[Step, World]:
        (_, alive) = fe.shell_down[0]
        assert isinstance(alive, tuple)
        if fe.session is SessionState.RECONCILING and any(
            fe.comms[c] is FrontendCommState.NEW for c in alive
        ):
            d = Draft(w)
            d.set_fe(f, shell_down=fe.shell_down[1:])
            return Step(DeliverShellReply(f), f"frontend {f} sets aside a comm_info_reply "
                        "listing a comm it never saw"), d.freeze()
        return super()._frontend_shell_reply(w, f, fe)


class IgnoresAdoption(SystemModel):
    """Reads commspec/adopt and does nothing: the comm stays detached, owned by the
    frontend that left (the reference kernel before SPEC v2)."""

    def _policy_adopt(self, d: Draft, f: int, c: int) -> None:
        return None


class KeepsEveryDetachedComm(SystemModel):
    """No bound on detached comms."""

    def _policy_keep_detached(self, d: Draft) -> int:
        return len(d.kcomms)


#: the kernel's broken rules, with the property each breaks at the two-frontend bound
KERNEL_BROKEN: tuple[tuple[type[SystemModel], str], ...] = (
    (PersistentClosedOnLoss, "persistent_comm_survives"),
    (LateReplyDelivered, "reply_only_while_pending"),
    (NoDrain, "drained_reply_wins"),
    (AcceptedWithoutReceiver, "nothing_waits_forever"),
    (DefaultCommKeptOnLoss, "no_unobserved_default_comm"),
    (InvalidatesEveryonesRequests, "no_false_invalidation"),
    (PersistentStaysOpenOnLoss, "no_comm_leak"),
    (NoStdinDrain, "drained_reply_wins"),
    (DrainDiscardsTheRest, "reconciled_view"),
)

#: the frontend's broken reconcile rules: each passes a bound without a reconnect (the
#: old default: 235,365 states each) and is caught with one
RECONCILE_BROKEN: tuple[tuple[type[SystemModel], str], ...] = (
    (ForgetsUnseenClose, "reconciled_view"),
    (DropsRequestsOnUnseenComms, "nothing_waits_forever"),
    (HoldsNothingWhileReconciling, "nothing_waits_forever"),
    (ForgetsItsLostClose, "reconciled_view"),
)

#: a broken rule that only a liveness property about sessions catches: with no request
#: slot, nothing waits forever, yet the frontend never finishes reconciling
NO_REQUESTS_RECONNECT = Bounds(frontends=1, comms=1, requests=0, reconnects=1, faults=1,
                               relinks=1)
SESSION_BROKEN: tuple[tuple[type[SystemModel], str], ...] = (
    (WaitsForHandlerOfUnseenComm, "reconciling_finishes"),
    (TrustsLibzmqRelink, "drops_acted_on"),
)

class KeepsRequestsOnEveryonesComms(SystemModel):
    """When the last subscriber leaves, loses the comms every subscriber owns but leaves
    the requests on a detached one pending (a kernel that fails requests only per peer)."""

    def _policy_everyone_lost(self, d: Draft) -> None:
        for c, kc in enumerate(d.kcomms):
            if kc.owner == OWNER_ALL and kc.state is KernelCommState.OPEN:
                self._policy_comm_lost(d, c)


#: rules of the rungs beyond the first ones, each broken, with the rung that catches it
DETACHED_BROKEN: tuple[tuple[type[SystemModel], str, str], ...] = (
    (IgnoresAdoption, "adopted_comm_answerable", "adoption"),
    (KeepsEveryDetachedComm, "detached_bounded", "two comms"),
    (KeepsRequestsOnEveryonesComms, "stock_requests_end_with_the_last",
     "two stock frontends"),
)


class Race(NamedTuple):
    """A named race of SPEC.md, charted from the counterexample of the rule it needs."""

    name: str
    caption: str
    variant: type[SystemModel]
    bounds: Bounds


ONE_FRONTEND = Bounds(frontends=1, comms=1, requests=1, reconnects=0, faults=1)
RECONNECT = Bounds(frontends=1, comms=1, requests=1, reconnects=1, faults=1)

RACES: tuple[Race, ...] = (
    Race("race-drain", "The drain rule: the answer was already received when the "
         "unsubscribe is read; without the rule it is thrown away.", NoDrain, ONE_FRONTEND),
    Race("race-late-reply", "The late-reply race: the answer arrives after the request "
         "ended; without the rule it is delivered a second outcome.", LateReplyDelivered,
         ONE_FRONTEND),
    Race("race-unseen-close", "Reconciling: a comm_close for a comm the frontend never "
         "saw overtakes an outdated comm_info_reply; without remembering it, the frontend "
         "adopts a closed comm.", ForgetsUnseenClose, RECONNECT),
    Race("race-unseen-request", "Reconciling: a kernel request on a comm not seen yet "
         "comes before comm_info_reply; without holding it, it waits forever.",
         DropsRequestsOnUnseenComms, RECONNECT),
)
