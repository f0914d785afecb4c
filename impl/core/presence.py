"""Who listens on the kernel's IOPub: the topics held, commspec peers named.

Rules (the ``presence`` machine, plus per-peer presence; SPEC.md, "Per-peer
presence" and "Security considerations"):
- The IOPub XPUB runs with XPUB_VERBOSE, not VERBOSER: libzmq passes every
  subscribe (each one is welcomed) and reports a topic's unsubscribe only when
  the last connection holding it ends. libzmq keeps one entry per (connection,
  topic), so the kernel keeps the *set* of topics held, never a count: a client
  that subscribes twice cannot leave a count that never returns to zero.
- Only libzmq's own unsubscribes are departures. Those libzmq makes when a
  connection ends carry no ZMQ metadata; an unsubscribe a peer sent carries its
  connection's metadata (``Socket-Type``, ``Peer-Address``) and is refused as bad
  input: frames are not signed, and libzmq passes one even for a topic that peer
  never held, so a client without the key could otherwise fake any departure.
- A commspec frontend also holds its peer topic ``commspec.peer/<session>/<tag>``,
  the tag being the first 32 hex digits of HMAC-SHA256(key, ``commspec.peer/`` +
  session): that topic's unsubscribe says *which* frontend left. A peer topic
  whose tag does not verify is refused, so a client without the key can neither
  hold another frontend's topic (hiding its departure) nor make one up. The
  topic is never published: its welcome goes out under the untagged name.
- A frontend that reconnects with the same session id holds its peer topic on
  two connections for a while; libzmq reports the unsubscribe only when the last
  one ends, so it stays present throughout.
"""

from __future__ import annotations

import hashlib
import hmac
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
    "peer_name",
    "peer_tag",
    "peer_topic",
]

PEER_TOPIC_PREFIX = b"commspec.peer/"
PRESENCE_OBJECT = "iopub"
#: hex digits of the HMAC kept in a peer topic's tag (128 bits)
TAG_LENGTH = 32


def peer_tag(key: bytes, identity: bytes) -> bytes:
    """The tag that proves a peer topic was made by someone holding the key."""
    mac = hmac.new(key, PEER_TOPIC_PREFIX + identity, hashlib.sha256).hexdigest()
    return mac[:TAG_LENGTH].encode()


def peer_topic(session_id: str | bytes, key: str | bytes) -> bytes:
    """The per-peer presence topic of the frontend whose session id (identity) is given."""
    identity = session_id.encode() if isinstance(session_id, str) else session_id
    secret = key.encode() if isinstance(key, str) else key
    return peer_name(identity) + b"/" + peer_tag(secret, identity)


def peer_name(session_id: str | bytes) -> bytes:
    """A peer topic's public name, without its tag: what its welcome shows."""
    identity = session_id.encode() if isinstance(session_id, str) else session_id
    return PEER_TOPIC_PREFIX + identity


class SubscriptionFrameError(ValueError):
    """An XPUB frame that is not a subscription change we can account for."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        #: the bad-input reason it is counted under
        self.reason = reason


@dataclass(frozen=True)
class PresenceChange:
    """What one XPUB frame changed."""

    subscribed: bool
    topic: bytes
    #: the identity named by a peer topic, else None
    peer: bytes | None
    #: this frame made ``peer`` present
    peer_arrived: bool
    #: this frame made ``peer`` absent
    peer_departed: bool
    #: topics held after this frame
    remaining: int

    @property
    def emptied(self) -> bool:
        """The last topic went: nothing published reaches anyone now."""
        return not self.subscribed and self.remaining == 0


class Presence:
    def __init__(self, endpoint: str, sink: TraceSink = discard,
                 clock: Callable[[], float] = lambda: 0.0, *, key: bytes = b"") -> None:
        self.tracked: Tracked[PresenceState, PresenceEvent] = Tracked(
            PRESENCE, PRESENCE_OBJECT, endpoint=endpoint, sink=sink, clock=clock
        )
        self._key = key
        self._topics: set[bytes] = set()
        self._live_peers: set[bytes] = set()
        self._known_peers: set[bytes] = set()

    # -- reading ------------------------------------------------------------

    @property
    def state(self) -> PresenceState:
        return self.tracked.state

    @property
    def subscriptions(self) -> int:
        """The topics held, peer topics included: 0 means nobody receives anything."""
        return len(self._topics)

    @property
    def subscriber_count(self) -> int:
        """Frontends known to listen: one per live peer; one while only peerless
        subscribers hold ordinary topics (libzmq does not say how many they are)."""
        ordinary = len(self._topics) > len(self._live_peers)
        return max(len(self._live_peers), 1 if ordinary else 0)

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

    # -- topics -------------------------------------------------------------

    @staticmethod
    def parse(frame: bytes) -> tuple[bool, bytes]:
        if not frame or frame[0] not in (0, 1):
            raise SubscriptionFrameError("iopub_frame", f"not a subscription frame: {frame[:40]!r}")
        return frame[0] == 1, frame[1:]

    def peer_of(self, topic: bytes) -> bytes | None:
        """The identity a peer topic names, None for any other topic; a peer topic
        whose tag does not verify raises SubscriptionFrameError."""
        if not topic.startswith(PEER_TOPIC_PREFIX):
            return None
        identity, _, tag = topic[len(PEER_TOPIC_PREFIX):].rpartition(b"/")
        if not identity or not hmac.compare_digest(tag, peer_tag(self._key, identity)):
            raise SubscriptionFrameError("unauthenticated_peer_topic",
                                         f"peer topic {topic[:60]!r}: its tag does not verify")
        return identity

    @staticmethod
    def public_name(topic: bytes) -> bytes:
        """What a welcome may show of ``topic``: a peer topic without its tag."""
        if topic.startswith(PEER_TOPIC_PREFIX):
            return topic.rpartition(b"/")[0]
        return topic

    # -- input --------------------------------------------------------------

    def apply(self, frame: bytes, *, sent_by_peer: bool) -> PresenceChange:
        """One XPUB frame; SubscriptionFrameError (and no change) if it cannot be applied.

        ``sent_by_peer``: the frame carried its connection's ZMQ metadata. Every
        subscribe does; an unsubscribe that does was not libzmq's and is refused.
        """
        subscribed, topic = self.parse(frame)
        peer = self.peer_of(topic)
        if subscribed:
            self.tracked.fire(PresenceEvent.SUBSCRIBE)
            arrived = peer is not None and peer not in self._live_peers
            self._topics.add(topic)
            if peer is not None:
                self._live_peers.add(peer)
                self._known_peers.add(peer)
            return PresenceChange(True, topic, peer, arrived, False, len(self._topics))
        if sent_by_peer:
            raise SubscriptionFrameError(
                "explicit_unsubscribe", f"unsubscribe from {topic[:40]!r} sent by a peer: "
                "only libzmq's own, when a connection ends, is a departure")
        if topic not in self._topics:
            raise SubscriptionFrameError("unknown_unsubscribe",
                                         f"unsubscribe from {topic[:40]!r}, never subscribed")
        remaining = len(self._topics) - 1
        self.tracked.fire(
            PresenceEvent.UNSUBSCRIBE, {PresenceFact.OTHERS_REMAIN: remaining > 0}
        )
        self._topics.discard(topic)
        departed = peer is not None and peer in self._live_peers
        if peer is not None:
            self._live_peers.discard(peer)
        return PresenceChange(False, topic, peer, False, departed, remaining)
