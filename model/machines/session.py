"""A frontend's session with one kernel.

Rules:
- A session is *connecting* until its IOPub subscription is proven live by an
  iopub_welcome (JEP 65); only then may it send requests, so no reply can fall
  into the slow-joiner gap. Any welcome proves it, even one published for
  another subscriber (frames never say which peer). For a kernel that does not
  advertise ``iopub_welcome``, an IOPub message parented to one of the
  frontend's own kernel_info requests proves it the same way.
- The link is *lost* when the heartbeat channel stops echoing or a socket
  monitor reports the disconnect; pending requests fail and comms turn stale.
- *Reconnecting* re-creates the sockets and re-subscribes; after the welcome the
  session is *reconciling*: one comm_info round trip settles every stale comm,
  and the session is *ready* again.
- Closing is allowed from anywhere and ends the session.
"""

from __future__ import annotations

from ..declaration import MachineSpec, Name, Transition


class SessionState(Name):
    CONNECTING = "connecting"
    READY = "ready"
    LOST = "lost"
    RECONNECTING = "reconnecting"
    RECONCILING = "reconciling"
    CLOSED = "closed"


class SessionEvent(Name):
    WELCOMED = "welcomed"
    LINK_LOST = "link_lost"
    RECONNECT = "reconnect"
    RECONCILED = "reconciled"
    CLOSE = "close"


S, E = SessionState, SessionEvent

SESSION = MachineSpec(
    name="session",
    title="Frontend session",
    summary="A frontend's connection to one kernel: connecting, ready, lost, back.",
    states=S,
    events=E,
    initial=S.CONNECTING,
    terminal=frozenset({S.CLOSED}),
    transitions=(
        Transition(S.CONNECTING, E.WELCOMED, S.READY,
                   "the subscription is live: requests may go out"),
        Transition(S.CONNECTING, E.LINK_LOST, S.LOST,
                   "the kernel never answered or went away while we connected"),
        Transition(S.READY, E.WELCOMED, S.READY,
                   "a welcome for another subscriber: nothing to do"),
        Transition(S.READY, E.LINK_LOST, S.LOST,
                   "heartbeat or socket monitor says the kernel is gone: fail pending requests"),
        Transition(S.LOST, E.RECONNECT, S.RECONNECTING,
                   "new sockets, new subscription"),
        Transition(S.RECONNECTING, E.WELCOMED, S.RECONCILING,
                   "subscribed again: ask comm_info to settle the stale comms"),
        Transition(S.RECONNECTING, E.LINK_LOST, S.LOST,
                   "the reconnect failed"),
        Transition(S.RECONCILING, E.WELCOMED, S.RECONCILING,
                   "a welcome for another subscriber: nothing to do"),
        Transition(S.RECONCILING, E.RECONCILED, S.READY,
                   "comm_info_reply settled every stale comm"),
        Transition(S.RECONCILING, E.LINK_LOST, S.LOST,
                   "lost again before the comm_info_reply"),
        *(Transition(s, E.CLOSE, S.CLOSED, "the frontend closed the session")
          for s in (S.CONNECTING, S.READY, S.LOST, S.RECONNECTING, S.RECONCILING)),
    ),
)

#: states with sockets to the kernel: a loss of the link can happen
LINKED = SESSION.sources(E.LINK_LOST)
#: states whose subscription a welcome has proven: comm traffic may go out
PROVEN = SESSION.dests(E.WELCOMED)
#: states that wait for a welcome before any comm traffic
AWAITING_WELCOME = SESSION.sources(E.WELCOMED) - PROVEN
