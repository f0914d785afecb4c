"""The kernel's comms: who owns each one, and what a departure does to it.

Rules (the ``kernel_comm`` machine, plus ownership):
- A comm opened by a frontend (comm_open on shell from identity X), or by the
  kernel while it handled X's request, is owned by X *if X is a commspec peer*
  (it announced ``commspec.peer/X`` at some point). A comm the kernel opened on
  its own, or one owned by a stock frontend (which never names itself), is
  owned by every subscriber. Ownership is decided when it is needed, not at
  open, so a peer topic that lands just after the comm_open still counts.
- When its owner leaves, an open comm fires FRONTEND_LOST with the fact
  PERSISTENT: persistent comms detach (state kept), default ones close.
  Comms owned by every subscriber are lost only when the last subscription goes.
- A detached comm fires FRONTEND_BACK when its owner subscribes again (for
  comms owned by every subscriber: when anyone subscribes).
- A detached comm fires ADOPTED when a commspec peer that is present adopts it
  (``commspec/adopt``): from then on that peer is its owner, whoever opened it,
  so the kernel's requests reach it and its departure detaches the comm again.
- The kernel keeps a bounded number of detached comms (``max_detached``): when
  one more detaches, the one detached longest (by its latest detach) fires
  EVICTED and closes (``evict_beyond``), so frontends that never come back cannot
  make the kernel hold their comms forever.
- Closed comms are removed, and their ids remembered (bounded), so traffic for
  a comm that just closed is told apart from traffic for a comm that never
  existed, and an id is never reused for a second comm.

No I/O: methods fire transitions and return what happened; the kernel core
turns that into effects (comm_close published, requests failed, handlers told).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from commspec.model.machines import (
    KERNEL_COMM,
    KernelCommEvent,
    KernelCommFact,
    KernelCommState,
)
from commspec.model.trace import TraceSink, discard
from commspec.model.tracked import Tracked

from .bounded import BoundedSet

__all__ = ["DEFAULT_MAX_DETACHED", "CommRecord", "KernelComms", "check_max_detached"]

#: how many detached comms a kernel keeps unless told otherwise (SPEC.md)
DEFAULT_MAX_DETACHED = 64


def check_max_detached(value: object) -> int:
    """``value`` if it is a valid bound on detached comms (an int >= 0), else raise."""
    # bool is an int to Python, but True as a count is a mistake, not a 1
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"max_detached (how many detached comms the kernel keeps) must be an "
                        f"int >= 0, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"max_detached (how many detached comms the kernel keeps) must be "
                         f"an int >= 0, got {value}")
    return value

KernelCommTracked = Tracked[KernelCommState, KernelCommEvent]


@dataclass(eq=False)
class CommRecord:
    comm_id: str
    target_name: str
    persistent: bool
    tracked: KernelCommTracked
    #: the frontend it belongs to: the one that opened it, or for whose request the
    #: kernel opened it; None when the kernel opened it on its own
    opener: bytes | None
    #: the frontend that adopted it (``commspec/adopt``) while it was detached: its
    #: owner from then on, in place of the opener
    adopter: bytes | None = None

    @property
    def state(self) -> KernelCommState:
        return self.tracked.state

    @property
    def closed(self) -> bool:
        return self.tracked.state is KernelCommState.CLOSED


class KernelComms:
    def __init__(self, endpoint: str, sink: TraceSink = discard,
                 clock: Callable[[], float] = lambda: 0.0, remember_closed: int = 10_000) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.clock = clock
        self._alive: dict[str, CommRecord] = {}
        self._closed: BoundedSet[str] = BoundedSet(remember_closed)
        #: the detached comms, the one detached longest first (insertion order is age)
        self._detached: dict[str, CommRecord] = {}

    # -- reading ------------------------------------------------------------

    def get(self, comm_id: str) -> CommRecord | None:
        """An open or detached comm."""
        return self._alive.get(comm_id)

    def recently_closed(self, comm_id: str) -> bool:
        return comm_id in self._closed

    def known(self, comm_id: str) -> bool:
        return comm_id in self._alive or comm_id in self._closed

    def __iter__(self) -> Iterator[CommRecord]:
        return iter(list(self._alive.values()))

    def __len__(self) -> int:
        return len(self._alive)

    @property
    def detached(self) -> list[CommRecord]:
        """The detached comms, the one detached longest first."""
        return list(self._detached.values())

    @staticmethod
    def owner(record: CommRecord, is_known_peer: Callable[[bytes], bool]) -> bytes | None:
        """The one frontend that owns the comm, or None when every subscriber does."""
        if record.adopter is not None:
            # Only a peer that was present can adopt, and a known peer stays known, so
            # the adopter is always a peer: it owns the comm, not the opener (who may come
            # back under its session id and no longer re-attaches it).
            return record.adopter
        if record.opener is not None and is_known_peer(record.opener):
            return record.opener
        return None

    # -- opening ------------------------------------------------------------

    def new(self, comm_id: str, target_name: str, persistent: bool,
            opener: bytes | None) -> CommRecord:
        """A record in state ``new``; ValueError if the id is in use or was used recently."""
        if self.known(comm_id):
            raise ValueError(f"comm id {comm_id} is already in use or was used recently")
        tracked: KernelCommTracked = Tracked(
            KERNEL_COMM, comm_id, endpoint=self.endpoint, sink=self.sink, clock=self.clock
        )
        return CommRecord(comm_id, target_name, persistent, tracked, opener)

    def reject(self, record: CommRecord, msg_id: str | None) -> None:
        """comm_open for a target nobody registered: the comm never opens."""
        record.tracked.fire(KernelCommEvent.REJECTED, msg_id=msg_id)
        self._closed.add(record.comm_id)

    def opened(self, record: CommRecord, msg_id: str | None, *, by_kernel: bool) -> None:
        event = (
            KernelCommEvent.OPENED_BY_KERNEL if by_kernel
            else KernelCommEvent.OPENED_BY_FRONTEND
        )
        record.tracked.fire(event, msg_id=msg_id)
        self._alive[record.comm_id] = record

    # -- closing ------------------------------------------------------------

    def close(self, record: CommRecord, event: KernelCommEvent, msg_id: str | None) -> None:
        """CLOSED_BY_FRONTEND, CLOSED_BY_KERNEL or KERNEL_SHUTDOWN."""
        record.tracked.fire(event, msg_id=msg_id)
        self._forget(record)

    def lose(self, record: CommRecord, *, persistent: bool, msg_id: str | None = None) -> None:
        """Its owner left: FRONTEND_LOST (detach if ``persistent``, close if not)."""
        record.tracked.fire(
            KernelCommEvent.FRONTEND_LOST, {KernelCommFact.PERSISTENT: persistent}, msg_id=msg_id
        )
        if record.closed:
            self._forget(record)
        else:
            self._detached[record.comm_id] = record

    def adopt(self, record: CommRecord, adopter: bytes, msg_id: str | None = None) -> None:
        """A detached comm adopted by ``adopter`` (a peer that is present): ADOPTED, and
        ``adopter`` owns it from now on."""
        record.tracked.fire(KernelCommEvent.ADOPTED, msg_id=msg_id)
        record.adopter = adopter
        self._detached.pop(record.comm_id, None)

    def evict_beyond(self, keep: int) -> list[CommRecord]:
        """While more than ``keep`` comms are detached, the one detached longest fires
        EVICTED (closed); the evicted ones, oldest first."""
        evicted: list[CommRecord] = []
        while len(self._detached) > keep:
            record = next(iter(self._detached.values()))
            record.tracked.fire(KernelCommEvent.EVICTED)
            self._forget(record)
            evicted.append(record)
        return evicted

    def owned_by(self, peer: bytes | None,
                 is_known_peer: Callable[[bytes], bool]) -> list[CommRecord]:
        """The open comms ``peer`` owns (None: every open comm, the last subscriber left)."""
        return [
            r for r in self
            if r.state is KernelCommState.OPEN
            and (peer is None or self.owner(r, is_known_peer) == peer)
        ]

    def back(self, peer: bytes | None, is_known_peer: Callable[[bytes], bool]) -> list[CommRecord]:
        """Detached comms that re-attach because ``peer`` (or, if None, anyone) subscribed.

        A subscription by anyone re-attaches the comms every subscriber owns; a
        peer's own topic also re-attaches the comms that peer owns.
        """
        back: list[CommRecord] = []
        for r in self:
            if r.state is not KernelCommState.DETACHED:
                continue
            owner = self.owner(r, is_known_peer)
            if owner is None or (peer is not None and owner == peer):
                r.tracked.fire(KernelCommEvent.FRONTEND_BACK)
                self._detached.pop(r.comm_id, None)
                back.append(r)
        return back

    def _forget(self, record: CommRecord) -> None:
        self._alive.pop(record.comm_id, None)
        self._detached.pop(record.comm_id, None)
        self._closed.add(record.comm_id)
