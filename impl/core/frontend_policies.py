"""The frontend's reconcile rules as named, replaceable pieces.

SPEC.md (frontend requirement 5) states the rules by which a reconnected
frontend settles its comms against ``comm_info_reply``; the two that decide
what it does with the kernel's messages meanwhile are methods here, named after
the system model's hooks for the same rules (``SystemModel._policy_<name>``):

- ``held_while_reconciling``: the comm states on which a kernel ``comm_msg``
  that arrives after a reconnect, before ``comm_info_reply``, is held until the
  reply decides whether this frontend holds the comm (a comm not seen yet counts
  as ``new``): every state ``confirmed`` can leave, since only the reply can say;
- ``remember_unseen_close``: a ``comm_close`` for a comm never seen is
  remembered (the comm is closed here), so an outdated ``comm_info_reply``,
  which travels on shell, unordered with IOPub, cannot make it adopted.

A broken variant of the frontend (the tests hold some against the model)
subclasses :class:`FrontendPolicies` and replaces one method, as its model twin
replaces one hook (``model/broken.py``): no private part of the core is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from commspec.model.machines import FRONTEND_COMM, FrontendCommEvent, FrontendCommState

if TYPE_CHECKING:
    from .frontend import FrontendProtocol

__all__ = ["UNDECIDED", "FrontendPolicies"]

#: a reconciling frontend's comm states whose fate only comm_info_reply decides
UNDECIDED: frozenset[FrontendCommState] = FRONTEND_COMM.sources(FrontendCommEvent.CONFIRMED)


class FrontendPolicies:
    def held_while_reconciling(self, frontend: FrontendProtocol) -> frozenset[FrontendCommState]:
        """Where a kernel message waits for comm_info_reply; on any other comm that is not
        open here it is dropped, as on a comm this frontend does not hold."""
        return UNDECIDED

    def remember_unseen_close(self, frontend: FrontendProtocol) -> bool:
        """Whether a comm_close for a comm never seen is remembered as closed."""
        return True
