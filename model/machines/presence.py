"""The kernel's view of its IOPub subscribers.

Rules:
- The kernel's IOPub is an XPUB with XPUB_VERBOSER, so it hears *every*
  subscribe and *every* unsubscribe, including the implicit one libzmq produces
  when a subscriber disconnects, crashes, or misses its ZMTP heartbeats
  (ZeroMQ RFC 29). Frames never say which peer: the kernel can only count.
- *never subscribed* until the first subscribe; *connected* while the count is
  above zero; *disconnected* when it drops to zero. The count is a guard
  (``others_remain``), not a state per count.
- Dropping to zero is the disconnection event for everything owned by every
  subscriber; a frontend's own departure is told by the unsubscribe of its peer
  topic (``commspec.peer/<session id>``). Both act after the drain rule.
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
    summary="How many IOPub subscribers the kernel has: never, some, none any more.",
    states=S,
    events=E,
    facts=(F.OTHERS_REMAIN,),
    initial=S.NEVER_SUBSCRIBED,
    terminal=frozenset(),
    transitions=(
        Transition(S.NEVER_SUBSCRIBED, E.SUBSCRIBE, S.CONNECTED,
                   "the first subscriber arrived; it is welcomed"),
        Transition(S.CONNECTED, E.SUBSCRIBE, S.CONNECTED,
                   "another subscriber arrived; every one is welcomed (JEP 65)"),
        Transition(S.CONNECTED, E.UNSUBSCRIBE, S.CONNECTED,
                   "one subscriber left, others still listen", guard=F.OTHERS_REMAIN),
        Transition(S.CONNECTED, E.UNSUBSCRIBE, S.DISCONNECTED,
                   "the last subscriber left: nothing published now reaches anyone",
                   guard=F.OTHERS_REMAIN, guard_holds=False),
        Transition(S.DISCONNECTED, E.SUBSCRIBE, S.CONNECTED,
                   "a frontend came back; detached comms re-attach"),
    ),
)
