"""The kernel's view of its IOPub subscribers.

Rules:
- The kernel's IOPub is an XPUB with XPUB_VERBOSE (not VERBOSER): it hears every
  subscribe, and a topic's unsubscribe when the last connection holding it ends,
  disconnected, crashed or dropped for missing its ZMTP heartbeats (ZeroMQ RFC 29).
  Frames never say which peer, and a peer may send any: the kernel keeps the set
  of topics held, and only libzmq's own unsubscribes (no ZMQ metadata) count.
- *never subscribed* until the first subscribe; *connected* while a topic is held;
  *disconnected* when none is. How many are held is a guard (``others_remain``),
  not a state.
- The last topic going is the disconnection event for everything owned by every
  subscriber; a frontend's own departure is told by the unsubscribe of its peer
  topic (``commspec.peer/<session id>/<tag>``). Both act after the drain rule.
"""

from __future__ import annotations

from ..declaration import MachineSpec, Name, Transition


class PresenceState(Name):
    NEVER_SUBSCRIBED = "never_subscribed"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class PresenceEvent(Name):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class PresenceFact(Name):
    OTHERS_REMAIN = "others_remain"


S, E, F = PresenceState, PresenceEvent, PresenceFact

PRESENCE = MachineSpec(
    name="presence",
    title="Kernel presence",
    summary="Whether any IOPub topic is held: never yet, some, none any more.",
    states=S,
    events=E,
    facts=(F.OTHERS_REMAIN,),
    initial=S.NEVER_SUBSCRIBED,
    terminal=frozenset(),
    transitions=(
        Transition(S.NEVER_SUBSCRIBED, E.SUBSCRIBE, S.CONNECTED,
                   "the first subscriber arrived; it is welcomed"),
        Transition(S.CONNECTED, E.SUBSCRIBE, S.CONNECTED,
                   "another subscribe; every one is welcomed (JEP 65)"),
        Transition(S.CONNECTED, E.UNSUBSCRIBE, S.CONNECTED,
                   "a topic's last holder left, other topics are still held",
                   guard=F.OTHERS_REMAIN),
        Transition(S.CONNECTED, E.UNSUBSCRIBE, S.DISCONNECTED,
                   "the last topic went: nothing published now reaches anyone",
                   guard=F.OTHERS_REMAIN, guard_holds=False),
        Transition(S.DISCONNECTED, E.SUBSCRIBE, S.CONNECTED,
                   "a frontend came back; detached comms re-attach"),
    ),
)
