"""The kernel's disconnection rules as named, replaceable pieces.

SPEC.md ("Disconnection") states these rules; each is one method here, named
after the system model's hook for the same rule (``SystemModel._policy_<name>``):

- ``drain``: before acting on a departure, handle the shell and stdin messages
  already received that settle a request or a comm (``KernelProtocol.settles``);
  the others are handled after, in their order;
- ``frontend_lost``: a frontend left (or, for ``None``, the last subscriber):
  the comms it owns are lost, the requests only it could answer fail;
- ``comm_lost``: a comm's owner is gone: persistent comms detach, default ones
  close (comm_close published, cleanup handlers run);
- ``keep_detached``: how many detached comms the kernel keeps; past that, the
  one detached longest is evicted (closed as if the kernel closed it);
- ``adopt``: a present commspec peer adopted a detached comm (``commspec/adopt``):
  it becomes the owner and the comm re-attaches;
- ``receiver_present``: whether a kernel request on a comm can reach anyone;
  if not, it is undeliverable at once;
- ``late_reply``: a reply for a request that already ended is dropped and
  counted, never delivered.

A broken variant of the kernel (the tests hold several against the model)
subclasses :class:`KernelPolicies` and replaces one method, as its model twin
replaces one hook: no private attribute of the implementation is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from commspec.model.machines import KernelCommState, RequestEvent, StdinRequestEvent

from .comms import CommRecord
from .events import Received, Refused

if TYPE_CHECKING:
    from .kernel import KernelProtocol

__all__ = ["KernelPolicies"]

log = logging.getLogger("commspec.kernel")


class KernelPolicies:
    def drain(self, kernel: KernelProtocol, received: Sequence[Received | Refused],
              act: Callable[[], None]) -> None:
        """The drain rule: what had already arrived and settles something is handled
        first, then ``act``, then the rest of what had arrived, in its order."""
        later: list[Received | Refused] = []
        for item in received:
            if kernel.settles(item):
                kernel.take(item)
            else:
                later.append(item)
        act()
        for item in later:
            kernel.take(item)

    def frontend_lost(self, kernel: KernelProtocol, peer: bytes | None) -> None:
        if peer is not None:
            log.info("kernel: frontend %s left", peer.decode("utf-8", "replace"))
            for record in kernel.comms.owned_by(peer, kernel.presence.is_known_peer):
                self.comm_lost(kernel, record)
            kernel.stdin.fail_peer(peer, "its frontend left (its presence topic was unsubscribed)")
            return
        log.info("kernel: the last IOPub subscriber left")
        for record in kernel.comms.owned_by(None, kernel.presence.is_known_peer):
            self.comm_lost(kernel, record)
        kernel.requests.fail_all(RequestEvent.PEER_LOST, "no frontend is subscribed any more")
        kernel.stdin.fail_all(StdinRequestEvent.PEER_LOST, "no frontend is subscribed any more")

    def comm_lost(self, kernel: KernelProtocol, record: CommRecord) -> None:
        kernel.lose_comm(record, persistent=record.persistent)

    def keep_detached(self, kernel: KernelProtocol) -> int:
        return kernel.max_detached

    def adopt(self, kernel: KernelProtocol, record: CommRecord, adopter: bytes,
              msg_id: str | None) -> None:
        kernel.comms.adopt(record, adopter, msg_id)
        log.info("kernel: comm %s adopted by frontend %s", record.comm_id,
                 adopter.decode("utf-8", "replace"))

    def receiver_present(self, kernel: KernelProtocol, record: CommRecord) -> bool:
        if record.state is not KernelCommState.OPEN:
            return False
        owner = kernel.comms.owner(record, kernel.presence.is_known_peer)
        if owner is None:
            return kernel.presence.subscriptions > 0
        return kernel.presence.is_live_peer(owner)

    def late_reply(self, kernel: KernelProtocol, msg_id: str, data: Any) -> None:
        kernel.requests.reply(msg_id, data)  # not pending: fires LATE_REPLY and counts it
        log.info("kernel: late reply to request %s dropped (it had ended)", msg_id)
