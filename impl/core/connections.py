"""Which connection carried each frontend's messages, so that its going ends its stdin requests.

A stock frontend (no peer topic) is seen leaving by nothing on IOPub while another
frontend stays subscribed. Its ROUTER connections do end, though, and libzmq says
so: every message a ROUTER delivers carries the file descriptor of the connection
it came by (``ZMQ_SRCFD``), and the socket monitor reports ``EVENT_ACCEPTED`` and
``EVENT_DISCONNECTED`` with the same fd. This module joins the two, with no I/O:
the kernel's shell reads the fds and the monitor, the core hands them here.

Rules (one map per kernel, for the shell and stdin ROUTERs):

- **Connections, not fds.** The OS reuses an fd as soon as it is closed, so each
  accepted connection gets a serial number of its own: ``(channel, fd)`` names the
  connection open on that fd now, if any. An identity is bound to a serial, never
  to an fd.
- **Bound only on proof.** A message binds its sender's identity to the connection
  open on its fd when it is handled. A message that does not say which connection
  carried it (``fd`` None), or whose fd names no open connection, or whose
  connection cannot be told apart (below), *unbinds* its identity: a connection
  lost later then ends nothing of that identity's. Wrongly ending a live frontend's
  request is the failure to avoid; missing a departure only leaves the slower
  rules (its presence topic, the last subscriber, ``EHOSTUNREACH``).
- **The order the shell guarantees.** libzmq queues a connection's accept event
  before that connection's first message, and its disconnect event after its last
  one. The shell reads a ROUTER message, then looks at that ROUTER's monitor: if
  nothing is queued there, the message's fd names the connection current in this
  map. If events are queued, it drains the ROUTERs, then the monitors, and again,
  until a drain is followed by an empty monitor, and hands over the events with
  the messages drained (``PeerConnections``). So every message handled later was
  queued after every event applied, and a message of a batch can only have come
  by a connection open on its fd before the batch or accepted in it.
- **Telling a batch's connections apart.** For a drained message on fd N, the
  candidates are the connection open on N before the batch and each one the batch
  accepts on N. Exactly one candidate: the message is bound to it (before the
  batch's events act, so a connection lost in the batch ends its senders). Two or
  more (N was closed and reused within one batch): the message is ambiguous and
  unbinds its identity.
- **Events act after the messages** (the drain rule): a reply that had arrived
  before its sender's connection was reported gone resolves its request first.
  A disconnect of (channel, N) ends the identities bound to the connection open on
  N; one for an fd with no open connection ends nothing. An accept on an fd whose
  connection was never reported lost (a monitor event dropped) proves that
  connection gone: its identities end too, then the new one opens.
- **Which requests end.** A stdin request addressed to X ends (``peer_lost``) when
  the connection X was last heard from on stdin *or on shell* is lost: a stock
  frontend sends nothing on stdin before it answers, so the shell connection that
  carried its request is the one known, and a Jupyter frontend's channels live and
  die with its process. Each channel is its own map: fds are the process's, but
  each monitor orders only its own socket's events.
- **Bounded.** At most ``capacity`` identities are bound, the least recently heard
  from forgotten first (a forgotten identity is simply unbound).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .events import Channel, PeerConnectionLost, PeerConnectionMade, Received, Refused

__all__ = ["WATCHED", "ConnectionGone", "PeerConnectionMap"]

#: the channels whose connections are watched (control carries no stdin business)
WATCHED = frozenset({Channel.SHELL, Channel.STDIN})

Change = PeerConnectionMade | PeerConnectionLost


@dataclass(frozen=True, slots=True)
class ConnectionGone:
    """A connection ended: the identities last heard from on it."""

    channel: Channel
    fd: int
    identities: tuple[bytes, ...]
    #: the accept of a new connection on the fd, not a disconnect, said so
    by_reuse: bool = False


class PeerConnectionMap:
    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._open: dict[tuple[Channel, int], int] = {}
        #: the fd of each open connection, by serial
        self._fds: dict[int, int] = {}
        self._where: OrderedDict[tuple[Channel, bytes], int] = OrderedDict()
        self._members: dict[int, set[bytes]] = {}
        self._serial = 0
        #: serials allocated by ``bind_batch`` for the accepts it saw, in order
        self._planned: dict[tuple[Channel, int], list[int]] = {}
        #: messages whose connection could not be told (ambiguous, or no fd)
        self.unbound = 0
        #: disconnects for an fd with no open connection (nothing to end)
        self.unmatched = 0

    # -- what is known ---------------------------------------------------------------

    def connection_of(self, channel: Channel, identity: bytes) -> int | None:
        """The serial of the connection ``identity`` was last heard from on, if proven."""
        return self._where.get((channel, identity))

    def open_on(self, channel: Channel, fd: int) -> int | None:
        return self._open.get((channel, fd))

    def fd_of(self, channel: Channel, identity: bytes) -> int | None:
        """The fd of the connection ``identity`` was last heard from on, if proven."""
        serial = self._where.get((channel, identity))
        return self._fds.get(serial) if serial is not None else None

    @property
    def bound(self) -> int:
        return len(self._where)

    # -- messages ----------------------------------------------------------------------

    def note(self, received: Received) -> None:
        """A message handled on its own (no monitor event was queued behind it)."""
        identity = received.identity
        if received.channel not in WATCHED or identity is None:
            return
        serial = self._open.get((received.channel, received.fd)) \
            if received.fd is not None else None
        self._bind(received.channel, identity, serial)

    def bind_batch(self, changes: Sequence[Change],
                   drained: Iterable[Received | Refused]) -> None:
        """Bind the senders of a batch's messages before its events act (rules above)."""
        self._planned = {}
        accepted: dict[tuple[Channel, int], list[int]] = {}
        for change in changes:
            if isinstance(change, PeerConnectionMade):
                self._serial += 1
                accepted.setdefault((change.channel, change.fd), []).append(self._serial)
        self._planned = {key: list(serials) for key, serials in accepted.items()}
        for item in drained:
            if not isinstance(item, Received) or item.channel not in WATCHED:
                continue
            identity = item.identity
            if identity is None:
                continue
            serial: int | None = None
            if item.fd is not None:
                key = (item.channel, item.fd)
                before = self._open.get(key)
                candidates = ([before] if before is not None else []) + accepted.get(key, [])
                if len(candidates) == 1:
                    serial = candidates[0]
            self._bind(item.channel, identity, serial)

    # -- monitor events ----------------------------------------------------------------

    def apply(self, change: Change) -> ConnectionGone | None:
        """One monitor event, in the order the monitor gave them."""
        key = (change.channel, change.fd)
        if isinstance(change, PeerConnectionLost):
            serial = self._open.pop(key, None)
            if serial is None:
                self.unmatched += 1
                return None
            self._fds.pop(serial, None)
            return ConnectionGone(change.channel, change.fd, self._end(change.channel, serial))
        gone: ConnectionGone | None = None
        old = self._open.pop(key, None)
        if old is not None:
            self._fds.pop(old, None)
            gone = ConnectionGone(change.channel, change.fd, self._end(change.channel, old),
                                  by_reuse=True)
        planned = self._planned.get(key)
        if planned:
            serial = planned.pop(0)
        else:
            self._serial += 1
            serial = self._serial
        self._open[key] = serial
        self._fds[serial] = change.fd
        return gone

    # -- the map -----------------------------------------------------------------------

    def _bind(self, channel: Channel, identity: bytes, serial: int | None) -> None:
        key = (channel, identity)
        old = self._where.pop(key, None)
        if old is not None and old != serial:
            self._leave(old, identity)
        if serial is None:
            self.unbound += 1
            return
        if self.capacity == 0:
            return
        self._where[key] = serial
        self._members.setdefault(serial, set()).add(identity)
        while len(self._where) > self.capacity:
            (_, evicted), where = self._where.popitem(last=False)
            self._leave(where, evicted)

    def _leave(self, serial: int, identity: bytes) -> None:
        members = self._members.get(serial)
        if members is not None:
            members.discard(identity)
            if not members:
                del self._members[serial]

    def _end(self, channel: Channel, serial: int) -> tuple[bytes, ...]:
        members = self._members.pop(serial, set())
        for identity in members:
            if self._where.get((channel, identity)) == serial:
                del self._where[(channel, identity)]
        return tuple(sorted(members))
