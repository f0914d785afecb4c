"""Deliberately broken variants of the reference kernel, for the model-based test to catch.

Each subclasses :class:`~commspec.mbt.adapter.ReferenceKernel` and breaks one rule
of SPEC.md by overriding ``make`` (the implementation's files stay untouched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commspec.impl.kernel import KernelEndpoint
from commspec.impl.targets import DEFAULT_TARGETS, ECHO_PERSISTENT, TargetRegistry, echo_target
from commspec.mbt.adapter import ReferenceKernel
from commspec.model.machines import RequestEvent
from commspec.model.trace import TraceSink


class PersistentClosedOnDisconnect(ReferenceKernel):
    """Persistent comms are treated as default ones: closed when their frontend leaves."""

    def make(self, sink: TraceSink) -> KernelEndpoint:
        registry = TargetRegistry(DEFAULT_TARGETS)
        registry.register(ECHO_PERSISTENT, echo_target, persistent=False)
        kernel = super().make(sink)
        kernel.targets = registry
        kernel._core.targets = registry
        return kernel


class AcceptsWithoutSubscriber(ReferenceKernel):
    """A kernel request is sent (and pends) even when nobody can receive it."""

    def make(self, sink: TraceSink) -> KernelEndpoint:
        kernel = super().make(sink)
        kernel._core._receiver_present = lambda record: True  # type: ignore[method-assign]
        return kernel


class IgnoresUnsubscribes(ReferenceKernel):
    """The kernel counts unsubscribes but, like ark today, acts on none of them."""

    def make(self, sink: TraceSink) -> KernelEndpoint:
        kernel = super().make(sink)
        core = kernel._core
        core._peer_left = lambda peer: None  # type: ignore[method-assign]
        core._everyone_left = lambda: None  # type: ignore[method-assign]
        return kernel


class NoDrainBeforeInvalidating(ReferenceKernel):
    """An unsubscribe is acted on at once: replies already received on shell are not
    handled first, so a request whose answer had arrived is invalidated anyway."""

    def make(self, sink: TraceSink) -> KernelEndpoint:
        kernel = super().make(sink)
        kernel.drain_inbound = lambda: 0  # type: ignore[method-assign]
        return kernel


class LateReplyResolves(ReferenceKernel):
    """Requests are not failed when their frontend leaves, so an answer arriving after
    the departure resolves its request instead of being dropped as late."""

    def make(self, sink: TraceSink) -> KernelEndpoint:
        kernel = super().make(sink)
        pending = kernel._core.pending
        fail_comm, fail_all = pending.fail_comm, pending.fail_all

        def keep_on_loss(fail: Callable[..., int]) -> Callable[..., int]:
            def broken(*args: Any, **kwargs: Any) -> int:
                if RequestEvent.PEER_LOST in args or kwargs.get("event") is RequestEvent.PEER_LOST:
                    return 0
                return fail(*args, **kwargs)
            return broken

        pending.fail_comm = keep_on_loss(fail_comm)  # type: ignore[method-assign]
        pending.fail_all = keep_on_loss(fail_all)  # type: ignore[method-assign]
        return kernel


VARIANTS: dict[str, type[ReferenceKernel]] = {
    "persistent_closed_on_disconnect": PersistentClosedOnDisconnect,
    "accepts_without_subscriber": AcceptsWithoutSubscriber,
    "ignores_unsubscribes": IgnoresUnsubscribes,
    "no_drain_before_invalidating": NoDrainBeforeInvalidating,
    "late_reply_resolves": LateReplyResolves,
}

#: the step each variant must fail at, after shrinking: the action's name, and for a
#: race its order
CAUGHT_AT: dict[str, tuple[str, ...]] = {
    "persistent_closed_on_disconnect": ("crash",),
    "accepts_without_subscriber": ("kernel_request",),
    "ignores_unsubscribes": ("crash",),
    "no_drain_before_invalidating": ("race", "queued"),
    "late_reply_resolves": ("race", "iopub_first"),
}
