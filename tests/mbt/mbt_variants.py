"""Deliberately broken variants of the reference kernel and frontend, for the model-based
test to catch.

Each kernel variant breaks one rule of SPEC.md ("Disconnection") by replacing one
piece of :class:`~commspec.impl.core.policies.KernelPolicies`, the seam the kernel's
protocol core is built around; the implementation's files stay untouched and no
private attribute is patched. Each piece has a twin of the same name in the
system model (``SystemModel._policy_<name>``), which the checker's broken
variants replace (tests/model/test_checker.py).

Each frontend variant breaks one reconcile rule (SPEC.md, frontend requirement 5),
as the model's ``RECONCILE_BROKEN`` do, by replacing one piece of
:class:`~commspec.impl.core.frontend_policies.FrontendPolicies` the way its model
twin replaces one hook. The model-based test takes them as ``frontend_policies``: the
reference core in the simulation and, live, the reference endpoint of each frontend
process, built with ``policies=`` those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from commspec.impl.core.comms import CommRecord
from commspec.impl.core.events import Received, Refused
from commspec.impl.core.frontend import FrontendProtocol
from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.core.policies import KernelPolicies
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.harness import MbtFailure
from commspec.model.machines import FrontendCommState, RequestEvent


class ClosesPersistent(KernelPolicies):
    """comm_lost: persistent comms are treated as default ones, closed when their owner
    leaves."""

    def comm_lost(self, kernel: KernelProtocol, record: CommRecord) -> None:
        kernel.lose_comm(record, persistent=False)


class AlwaysPresent(KernelPolicies):
    """receiver_present: a kernel request is sent (and pends) even when nobody can
    receive it."""

    def receiver_present(self, kernel: KernelProtocol, record: CommRecord) -> bool:
        return True


class IgnoresDepartures(KernelPolicies):
    """frontend_lost: the kernel counts unsubscribes but, like ark today, acts on none."""

    def frontend_lost(self, kernel: KernelProtocol, peer: bytes | None) -> None:
        return None


class NoDrain(KernelPolicies):
    """drain: the unsubscribe is acted on first; what had already been received is
    handled after, so a request whose answer had arrived is invalidated anyway."""

    def drain(self, kernel: KernelProtocol, received: Sequence[Received | Refused],
              act: Callable[[], None]) -> None:
        act()
        for item in received:
            kernel.take(item)


class DeliversLateReplies(KernelPolicies):
    """late_reply: a reply for a request that already ended is handed to it as if it
    were still pending (its machine refuses, so it is never counted as late)."""

    def late_reply(self, kernel: KernelProtocol, msg_id: str, data: Any) -> None:
        record = kernel.requests.get(msg_id)
        assert record is not None
        record.tracked.fire(RequestEvent.RESULT, msg_id=msg_id)


def _variant(name: str, policies: type[KernelPolicies]) -> type[ReferenceKernel]:
    return type(name, (ReferenceKernel,), {"policies": policies, "__doc__": policies.__doc__})


VARIANTS: dict[str, type[ReferenceKernel]] = {
    "persistent_closed_on_disconnect": _variant("PersistentClosedOnDisconnect",
                                                ClosesPersistent),
    "accepts_without_subscriber": _variant("AcceptsWithoutSubscriber", AlwaysPresent),
    "ignores_unsubscribes": _variant("IgnoresUnsubscribes", IgnoresDepartures),
    "no_drain_before_invalidating": _variant("NoDrainBeforeInvalidating", NoDrain),
    "late_reply_resolves": _variant("LateReplyResolves", DeliversLateReplies),
}

#: where each variant may be caught, after shrinking: the last action's name (and for a
#: race its order). A step that breaks the variant's rule, not some unrelated one: for
#: the rules about departures, any step in which a frontend departs (a crash, or a race,
#: whose frontend leaves too); which one a hunt shrinks to depends on its search.
DEPARTS: frozenset[tuple[str, ...]] = frozenset(
    {("crash",), ("race", "iopub_first"), ("race", "queued"), ("race", "reply_first")})
CAUGHT_AT: dict[str, frozenset[tuple[str, ...]]] = {
    "persistent_closed_on_disconnect": DEPARTS,
    "accepts_without_subscriber": frozenset({("kernel_request",)}),
    "ignores_unsubscribes": DEPARTS,
    "no_drain_before_invalidating": frozenset({("race", "queued")}),
    "late_reply_resolves": frozenset({("race", "iopub_first")}),
}


class HoldsOnStaleOnly(FrontendPolicies):
    """held_while_reconciling: a kernel request on a comm not seen yet is dropped, as on a
    comm not held, instead of held until comm_info_reply decides (the reference
    frontend's first bug; the model's ``DropsRequestsOnUnseenComms``)."""

    def held_while_reconciling(self, frontend: FrontendProtocol
                               ) -> frozenset[FrontendCommState]:
        return frozenset({FrontendCommState.STALE})


class HoldsNothing(FrontendPolicies):
    """held_while_reconciling: a kernel request on a comm not seen yet or held stale is
    dropped (the model's ``HoldsNothingWhileReconciling``)."""

    def held_while_reconciling(self, frontend: FrontendProtocol
                               ) -> frozenset[FrontendCommState]:
        return frozenset()


FRONTEND_VARIANTS: dict[str, type[FrontendPolicies]] = {
    "drops_unseen_while_reconciling": HoldsOnStaleOnly,
    "drops_undecided_while_reconciling": HoldsNothing,
}

#: where each frontend variant is caught: the reconcile race that makes its interleaving
FRONTEND_CAUGHT_AT: dict[str, frozenset[str]] = {
    "drops_unseen_while_reconciling": frozenset({"race_unseen_request"}),
    "drops_undecided_while_reconciling": frozenset({"race_unseen_request",
                                                    "race_stale_request"}),
}


def replay_printed(source: str, variant: object, tmp_path: Path, *, fails: bool) -> None:
    """Run a program printed as a test (``program_as_test``), with ``Variant`` naming
    ``variant``: it must fail with MbtFailure if ``fails``, else pass."""
    namespace: dict[str, object] = {"Variant": variant}
    exec(compile(source, str(tmp_path / "test_replay.py"), "exec"), namespace)
    replay = namespace["test_shrunk_program"]
    assert callable(replay)
    if fails:
        with pytest.raises(MbtFailure):
            replay()
    else:
        replay()
