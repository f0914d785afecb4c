"""Who listens on the kernel's IOPub: subscriptions counted, commspec peers named.

Rules (the ``presence`` machine, plus per-peer presence):
- The IOPub XPUB runs with XPUB_VERBOSER, so each subscription frame
  (``b"\\x01" + topic``) and each unsubscription frame (``b"\\x00" + topic``),
  including the implicit ones of a peer that disconnected or missed its
  heartbeats, is one input. Each fires SUBSCRIBE or UNSUBSCRIBE on the one
  presence object, with the fact OTHERS_REMAIN (subscriptions left > 0).
- Frames never say which peer sent them. A commspec frontend therefore also
  subscribes to ``b"commspec.peer/" + session_id``: that topic's unsubscribe
  says *which* frontend left (its session id is its DEALER identity).
- Subscriptions are a multiset per topic: a frontend that reconnects with the
  same session id subscribes again before its old connection's unsubscribe
  arrives, and stays present until the last of its peer topics is gone.
- An unsubscribe for a topic nobody subscribed, or a frame that is neither,
  is bad input: refused, nothing changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from commspec.model.machines import PRESENCE, PresenceEvent, PresenceFact, PresenceState
from commspec.model.trace import TraceSink, discard
from commspec.model.tracked import Tracked

__all__ = [
    "PEER_TOPIC_PREFIX",
    "Presence",
    "PresenceChange",
    "SubscriptionFrameError",
    "peer_of_topic",
    "peer_topic",
]

PEER_TOPIC_PREFIX = b"commspec.peer/"
PRESENCE_OBJECT = "iopub"


def peer_topic(session_id: str | bytes) -> bytes:
    """The per-peer presence topic of a frontend whose session id (identity) is given."""
    return PEER_TOPIC_PREFIX + (session_id.encode() if isinstance(session_id, str) else session_id)


def peer_of_topic(topic: bytes) -> bytes | None:
    """The identity a presence topic names, or None for any other topic."""
    if topic.startswith(PEER_TOPIC_PREFIX) and len(topic) > len(PEER_TOPIC_PREFIX):
        return topic[len(PEER_TOPIC_PREFIX) :]
    return None


class SubscriptionFrameError(ValueError):
    """An XPUB frame that is not a subscription change we can account for."""


@dataclass(frozen=True)
class PresenceChange:
    """What one XPUB frame changed."""

    subscribed: bool
    topic: bytes
    #: the identity named by a peer topic, else None
    peer: bytes | None
    #: this frame made ``peer`` present (its first live peer topic)
    peer_arrived: bool
    #: this frame made ``peer`` absent (its last live peer topic went)
    peer_departed: bool
    #: subscriptions left after this frame
    remaining: int

    @property
    def emptied(self) -> bool:
        """The last subscription went: nothing published reaches anyone now."""
        return not self.subscribed and self.remaining == 0


class Presence:
    def __init__(self, endpoint: str, sink: TraceSink = discard,
                 clock: Callable[[], float] = lambda: 0.0) -> None:
        self.tracked: Tracked[PresenceState, PresenceEvent] = Tracked(
            PRESENCE, PRESENCE_OBJECT, endpoint=endpoint, sink=sink, clock=clock
        )
        self._topics: Counter[bytes] = Counter()
        self._live_peers: Counter[bytes] = Counter()
        self._known_peers: set[bytes] = set()

    # -- reading ------------------------------------------------------------

    @property
    def state(self) -> PresenceState:
        return self.tracked.state

    @property
    def subscriptions(self) -> int:
        """Every live subscription, peer topics included."""
        return self._topics.total()

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions to ordinary topics (one per stock or commspec frontend)."""
        return self._topics.total() - self._live_peers.total()

    @property
    def live_peers(self) -> frozenset[bytes]:
        return frozenset(self._live_peers)

    def is_live_peer(self, identity: bytes) -> bool:
        return identity in self._live_peers

    def is_known_peer(self, identity: bytes) -> bool:
        """The identity announced a peer topic at some point (it may have left since)."""
        return identity in self._known_peers

    def has_departed(self, identity: bytes) -> bool:
        return identity in self._known_peers and identity not in self._live_peers

    # -- input --------------------------------------------------------------

    @staticmethod
    def parse(frame: bytes) -> tuple[bool, bytes]:
        if not frame or frame[0] not in (0, 1):
            raise SubscriptionFrameError(f"not a subscription frame: {frame[:40]!r}")
        return frame[0] == 1, frame[1:]

    def apply(self, frame: bytes) -> PresenceChange:
        """One XPUB frame; SubscriptionFrameError (and no change) if it cannot be applied."""
        subscribed, topic = self.parse(frame)
        peer = peer_of_topic(topic)
        if subscribed:
            self.tracked.fire(PresenceEvent.SUBSCRIBE)
            self._topics[topic] += 1
            arrived = False
            if peer is not None:
                arrived = self._live_peers[peer] == 0
                self._live_peers[peer] += 1
                self._known_peers.add(peer)
            return PresenceChange(True, topic, peer, arrived, False, self.subscriptions)
        if self._topics[topic] == 0:
            del self._topics[topic]
            raise SubscriptionFrameError(f"unsubscribe from {topic[:40]!r}, never subscribed")
        remaining = self.subscriptions - 1
        self.tracked.fire(
            PresenceEvent.UNSUBSCRIBE, {PresenceFact.OTHERS_REMAIN: remaining > 0}
        )
        _decrement(self._topics, topic)
        departed = False
        if peer is not None:
            _decrement(self._live_peers, peer)
            departed = peer not in self._live_peers
        return PresenceChange(False, topic, peer, False, departed, remaining)


def _decrement(counter: Counter[bytes], key: bytes) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
