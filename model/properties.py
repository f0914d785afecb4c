"""The system properties the checker proves, each with the reason it matters.

A *state* property must hold in every reachable state; a *step* property must hold
for every transition of the system (it sees the state before and after); the
*liveness* property is checked on the explored graph after the search.
The predicates live in :mod:`commspec.model.system`; this module names them so
SPEC.md, the checker's report and the tests speak of the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PropertyKind(Enum):
    STATE = "state"
    STEP = "step"
    LIVENESS = "liveness"


@dataclass(frozen=True)
class Property:
    name: str
    kind: PropertyKind
    statement: str
    why: str


PROPERTIES: tuple[Property, ...] = (
    Property(
        "one_outcome",
        PropertyKind.STEP,
        "A request ends in at most one outcome and never leaves it.",
        "The caller acts on the outcome (shows a plot, reports an error). A second "
        "outcome would be a second, contradictory answer to one question.",
    ),
    Property(
        "reply_only_while_pending",
        PropertyKind.STATE,
        "A reply reaches its caller only while the request is pending: every request "
        "delivers at most one reply, and only as its resolved or errored outcome.",
        "This is the late-reply race of ark issue 841: a reply the frontend sent just "
        "before it left can reach the kernel after the request was already failed. "
        "It must be dropped and counted, never handed to a caller that has moved on.",
    ),
    Property(
        "no_unobserved_default_comm",
        PropertyKind.STATE,
        "While no frontend is subscribed, no default comm is open, and no default comm "
        "stays open whose owning frontend the kernel knows is gone.",
        "Nobody is left to close such a comm: it would hold kernel resources for the "
        "rest of the session. Persistent comms are exempt by design: they detach.",
    ),
    Property(
        "persistent_comm_survives",
        PropertyKind.STATE,
        "A persistent comm is never closed by a disconnection: only by a close from "
        "either side, by shutdown, or by eviction past the kernel's bound on detached "
        "comms.",
        "Persistent comms (plots) hold state the frontend re-attaches to after it "
        "comes back; closing them on a disconnect loses that state for good.",
    ),
    Property(
        "reconciled_view",
        PropertyKind.STATE,
        "A ready frontend on a live link holds a comm open only if the kernel has it "
        "too, up to the comm_open and comm_close messages still in flight between them.",
        "After a reconnect the frontend's comms are stale; comm_info reconciliation is "
        "what makes the two sides agree again, so no UI pane talks to a dead comm.",
    ),
    Property(
        "drained_reply_wins",
        PropertyKind.STEP,
        "No request, comm RPC or stdin, is invalidated when the kernel has already "
        "received its reply.",
        "The drain rule: a reply that reached the kernel (on shell or stdin) before "
        "the disconnect was acted on must resolve its request, or a correct answer is "
        "thrown away.",
    ),
    Property(
        "no_false_invalidation",
        PropertyKind.STEP,
        "A request is invalidated only when its answering party has gone: the "
        "frontend that owns its comm, or that was asked on stdin, is no longer counted "
        "by the kernel; for a frontend's own request, the frontend's link is lost.",
        "Per-peer presence exists so that one frontend leaving fails only what that "
        "frontend could answer. Failing another frontend's requests turns a departure "
        "into a spurious error in a window that is still open.",
    ),
    Property(
        "no_comm_leak",
        PropertyKind.STATE,
        "Once every frontend has gone for good (each dead or never started, nothing "
        "of theirs left in flight to the kernel), the kernel holds no open comm: "
        "default comms are closed and persistent ones detached.",
        "An open comm tells the kernel's code that someone is listening: a plot keeps "
        "rendering, a variables pane keeps being refreshed, for a session with nobody "
        "in it.",
    ),
    Property(
        "adopted_comm_answerable",
        PropertyKind.STATE,
        "A comm whose adoption by a frontend the kernel has read (while it was "
        "detached, and nobody adopted it since) is open and owned by that frontend "
        "for as long as the frontend is counted: the kernel's requests on it reach it.",
        "A new session (a reloaded page) that adopts a plot left by a dead one talks to "
        "it; if the kernel still took it for detached, every request the kernel made "
        "on it would fail as undeliverable while someone is there to answer.",
    ),
    Property(
        "detached_bounded",
        PropertyKind.STATE,
        "The kernel never holds more detached comms than its bound: past it, the comm "
        "detached longest is closed (evicted).",
        "Detached comms wait for a frontend that may never come: 200 dead frontends "
        "would otherwise leave 200 plots' state in the kernel for good.",
    ),
    Property(
        "stock_requests_end_with_the_last",
        PropertyKind.STATE,
        "A kernel request on a comm that every subscriber owns (a stock frontend's, "
        "which never names itself) is never pending once nobody is subscribed: it ends, "
        "at the latest, when the last subscriber leaves.",
        "This is what stock frontends get, and all they can get: the kernel cannot tell "
        "which of them left, so nothing_waits_forever exempts such a request while "
        "anyone is still subscribed, and this property says when it does end.",
    ),
    Property(
        "nothing_waits_forever",
        PropertyKind.LIVENESS,
        "From every reachable state, every pending request can still end through "
        "protocol steps alone (deliveries, replies, heartbeat timeouts, reconnects), "
        "with no further crash, close, freeze or shutdown; except a request on a comm "
        "every subscriber owns (a stock frontend's) while anyone is subscribed.",
        "Timeouts are not a fix: an RPC may legitimately take minutes. A request whose "
        "only possible answerer has departed must be failed by the protocol itself.",
    ),
    Property(
        "drops_acted_on",
        PropertyKind.LIVENESS,
        "From every reachable state, a frontend whose connection the kernel dropped, "
        "and libzmq re-established by itself, can still act on the drop (treat it as a "
        "lost link, then reconnect and reconcile) through protocol steps alone.",
        "libzmq re-subscribes a dropped SUB within about 150 ms and a fresh welcome "
        "arrives, but the kernel has already applied its departure: a frontend that "
        "trusts the new link keeps comms and requests the kernel has closed or failed.",
    ),
    Property(
        "reconciling_finishes",
        PropertyKind.LIVENESS,
        "From every reachable state, a frontend that is reconciling can finish (be "
        "ready again, or lose its link) through protocol steps alone.",
        "A reconciling frontend holds the kernel's requests on comms it has not "
        "decided and sends none of its own on stale ones: a reconcile that never ends "
        "is a frontend that silently stopped working.",
    ),
)

BY_NAME: dict[str, Property] = {p.name: p for p in PROPERTIES}
