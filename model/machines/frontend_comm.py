"""The frontend's view of one comm.

Rules:
- A comm opens when the frontend sends comm_open or receives one from the kernel.
- Either side may close it; a comm_close from the kernel for a comm the frontend
  just opened is also how an unknown target is refused.
- When the link to the kernel is lost, the frontend cannot know what the kernel
  did meanwhile (it may have closed default comms on its own), so every open comm
  becomes *stale* until the frontend reconciles it against comm_info_reply:
  comms the kernel still has are re-attached, the others close locally, and
  comms the kernel lists that this frontend never saw are adopted (their
  comm_open was published while its subscription was already dead).
- comm_info_reply (shell) and comm_close (IOPub) race: a comm_close for a comm
  the frontend never held is remembered as closed, so an outdated
  comm_info_reply cannot revive it.
- Closing the session closes every comm.
"""

from __future__ import annotations

from ..declaration import MachineSpec, Name, Transition


class FrontendCommState(Name):
    NEW = "new"
    OPEN = "open"
    STALE = "stale"
    CLOSED = "closed"


class FrontendCommEvent(Name):
    OPENED_BY_FRONTEND = "opened_by_frontend"
    OPENED_BY_KERNEL = "opened_by_kernel"
    CLOSED_BY_FRONTEND = "closed_by_frontend"
    CLOSED_BY_KERNEL = "closed_by_kernel"
    LINK_LOST = "link_lost"
    CONFIRMED = "confirmed"
    NOT_FOUND = "not_found"
    SESSION_CLOSED = "session_closed"


S, E = FrontendCommState, FrontendCommEvent

FRONTEND_COMM = MachineSpec(
    name="frontend_comm",
    title="Frontend-side comm",
    summary="The frontend's record of one comm: open, stale (until reconciled), closed.",
    states=S,
    events=E,
    initial=S.NEW,
    terminal=frozenset({S.CLOSED}),
    transitions=(
        Transition(S.NEW, E.OPENED_BY_FRONTEND, S.OPEN,
                   "the frontend sent comm_open"),
        Transition(S.NEW, E.OPENED_BY_KERNEL, S.OPEN,
                   "comm_open from the kernel arrived on IOPub"),
        Transition(S.NEW, E.CONFIRMED, S.OPEN,
                   "comm_info_reply lists a comm we never saw (its comm_open was lost): adopt"),
        Transition(S.NEW, E.CLOSED_BY_KERNEL, S.CLOSED,
                   "comm_close for a comm never seen: remember it so reconciling cannot adopt it"),
        Transition(S.OPEN, E.CLOSED_BY_FRONTEND, S.CLOSED,
                   "the frontend sent comm_close; its pending requests are cancelled"),
        Transition(S.OPEN, E.CLOSED_BY_KERNEL, S.CLOSED,
                   "comm_close from the kernel (also the answer to an unknown target)"),
        Transition(S.OPEN, E.LINK_LOST, S.STALE,
                   "the kernel may have changed the comm while we could not hear it"),
        Transition(S.OPEN, E.SESSION_CLOSED, S.CLOSED,
                   "closing the session closes its comms"),
        Transition(S.STALE, E.CONFIRMED, S.OPEN,
                   "comm_info_reply lists the comm: re-attach it"),
        Transition(S.STALE, E.NOT_FOUND, S.CLOSED,
                   "comm_info_reply omits the comm: the kernel closed it, close it here too"),
        Transition(S.STALE, E.LINK_LOST, S.STALE,
                   "lost again before reconciling: still unknown"),
        Transition(S.STALE, E.CLOSED_BY_FRONTEND, S.CLOSED,
                   "the frontend may close a stale comm; the kernel ignores an unknown id"),
        Transition(S.STALE, E.CLOSED_BY_KERNEL, S.CLOSED,
                   "a comm_close that arrives after the welcome settles the comm early"),
        Transition(S.STALE, E.SESSION_CLOSED, S.CLOSED,
                   "closing the session closes its comms"),
    ),
)

#: the comms a frontend holds (open, or stale until reconciled): what closing it closes
HELD = FRONTEND_COMM.sources(E.SESSION_CLOSED)
