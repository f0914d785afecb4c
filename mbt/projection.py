"""What the system under test and the model can both show, compared after every step.

Rules:
- An :class:`Observation` is the part of a state both sides can show: per frontend
  its session and comms, the kernel's presence, subscriber count and comms, each
  request slot's state, and late-reply counts. The model's is :func:`project` of a
  world; a system under test builds its own from its trace and its queries.
- States are their machines' state names (strings), so an observation reads the
  same whichever side made it, and prints as the SPEC.md tables name things.
- What neither side can know is folded: a dead frontend shows no comms, and a
  frontend request whose caller died is ``GONE`` whatever became of it.
"""

from __future__ import annotations

from typing import NamedTuple

from commspec.model.machines import LINKED, SESSION
from commspec.model.world import Kind, Proc, World

__all__ = ["GONE", "PAST_LOSS", "Observation", "project"]


class Observation(NamedTuple):
    sessions: tuple[str, ...]  # per frontend: idle, dead, or its session state
    presence: str
    subscribers: int
    kernel_comms: tuple[str, ...]  # per comm slot
    frontend_comms: tuple[tuple[str, ...] | None, ...]  # per frontend (None: dead)
    requests: tuple[str | None, ...]  # per request slot: its state (None: unused)
    kernel_late: int
    frontend_late: tuple[int, ...]

    def diff(self, other: Observation) -> list[str]:
        return [
            f"{name}: system {a!r}, model {b!r}"
            for name, a, b in zip(self._fields, self, other, strict=True)
            if a != b
        ]


#: a frontend request whose caller died: its outcome is nobody's to see
GONE = "caller gone"
#: session states a lost session reaches by reconnecting: linked again, and never the
#: first connect's state
PAST_LOSS = frozenset(s.value for s in LINKED - {SESSION.initial})


def project(w: World) -> Observation:
    """The model state as the live system can show it."""
    sessions = []
    fcomms: list[tuple[str, ...] | None] = []
    flate = []
    for fe in w.frontends:
        if fe.proc is Proc.IDLE:
            sessions.append("idle")
        elif fe.proc is Proc.DEAD:
            sessions.append("dead")
        else:
            assert fe.session is not None
            sessions.append(fe.session.value)
        dead = fe.proc is Proc.DEAD
        fcomms.append(None if dead else tuple(s.value for s in fe.comms))
        flate.append(0 if dead else fe.late_replies)
    requests: list[str | None] = []
    for req in w.requests:
        if req is None:
            requests.append(None)
        elif (
            req.kind is Kind.FRONTEND_TO_KERNEL
            and w.frontends[req.party].proc is Proc.DEAD
        ):
            requests.append(GONE)
        else:
            requests.append(req.state.value)
    k = w.kernel
    return Observation(
        sessions=tuple(sessions),
        presence=k.presence.value,
        subscribers=sum(k.peers),
        kernel_comms=tuple(kc.state.value for kc in k.comms),
        frontend_comms=tuple(fcomms),
        requests=tuple(requests),
        kernel_late=k.late_replies,
        frontend_late=tuple(flate),
    )
