"""The reply/departure race: an action of the tests, not of the model.

Rules:
- ``Race(comm, request, order)``: the kernel sends request ``request`` on comm slot
  ``comm``; its owner answers and is SIGKILLed, in the ``order`` the test chooses.
  The model has no such action: it is ``kernel_request``, then protocol steps and a
  crash in every interleaving; the order narrows the model's outcomes to those it
  allows (:func:`allows`).
- The orders (``RaceOrder``): ``reply_first``, the kernel resolves the request, then
  the frontend goes. ``iopub_first``, the frontend's IOPub goes, the kernel
  invalidates the request, and only then does the answer leave its still-open shell
  (a late reply, dropped and counted). ``together``, answer and SIGKILL back to back,
  on the wire's luck: the model allows either outcome and the live one must be one
  of them. ``queued``, the kernel is held until both the answer and the unsubscribe
  are queued, so the answer had arrived first and the drain rule must deliver it
  (only for systems that can hold their kernel's inbound queues).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from commspec.model.actions import EnvironmentAction
from commspec.model.declaration import Name


class RaceOrder(Name):
    REPLY_FIRST = "reply_first"
    IOPUB_FIRST = "iopub_first"
    TOGETHER = "together"
    QUEUED = "queued"


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


__all__ = ["Race", "RaceOrder", "rule_name"]
