"""A frontend whose link drops and comes back (SPEC, "Requirements on a frontend" 5,
"Adoption and the detached bound"): comm_info tells it what the kernel kept, and it
adopts and uses the persistent comm. The link drops two ways: the frontend closes its
sockets and opens new ones with the same session id, or it is frozen (SIGSTOP) past
the kernel's heartbeat and continued (SIGCONT), its own sockets reconnecting."""

from __future__ import annotations

import time
from collections.abc import Callable

from commspec.model.messages import ADOPT_METHOD

from ..context import CheckContext
from ..peer import PeerError, PeerProcess, start_peer
from ..registry import Failed, Finding, check
from .departure import ECHO, PERSISTENT, duration, require_listed, wait_closed

RULE = "Adoption and the detached bound"
PROP = "reconciled_view, adopted_comm_answerable"


def _back_and_reconcile(ctx: CheckContext, leave: Callable[[PeerProcess], None],
                        come_back: Callable[[PeerProcess], None], how: str) -> Finding:
    observer = ctx.client("observer")
    ctx.setup_targets(observer)
    frontend = start_peer(ctx, "frontend", iopub="peer")
    kept = frontend.call("open", ctx.timeouts.reply, target=PERSISTENT)["comm_id"]
    default = frontend.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    require_listed(ctx, observer, kept, default)
    frontend.call("forget_iopub", ctx.timeouts.reply)
    since = time.monotonic()
    leave(frontend)
    # Back only once the kernel acted on the drop: a link that returned before the
    # kernel saw it go is no departure at all.
    took = wait_closed(ctx, observer, default, since, how)
    come_back(frontend)
    comms = frontend.call("comm_info", ctx.timeouts.reply)["comms"]
    if kept not in comms or default in comms:
        raise Failed(f"back with the same session, comm_info lists {sorted(comms)}: want "
                     f"the persistent comm {kept} and not the default {default}",
                     ctx.evidence())
    frontend.call("notify", ctx.timeouts.reply, comm_id=kept, method=ADOPT_METHOD)
    try:
        data = frontend.call("request", ctx.timeouts.reply, comm_id=kept, method="echo",
                             params={"back": True})["data"]
    except PeerError as e:
        raise Failed(f"the persistent comm is listed but its echo was not answered: {e.why}",
                     ctx.evidence()) from None
    if data.get("result") != {"back": True}:
        raise Failed(f"the echo on the adopted comm was answered {data!r}", ctx.evidence())
    return Finding(f"default comm closed {duration(took)} after {how}; back: the persistent "
                   "one listed, adopted and answering")


@check("reconnect_reconcile", "a frontend that reconnects finds what the kernel kept in "
       "comm_info, and uses it", rule=RULE, prop=PROP, needs={"targets"})
def reconnect_reconcile(ctx: CheckContext) -> Finding:
    def drop(frontend: PeerProcess) -> None:
        frontend.call("drop", ctx.timeouts.reply)

    def reconnect(frontend: PeerProcess) -> None:
        frontend.call("reconnect", ctx.timeouts.start)

    return _back_and_reconcile(ctx, drop, reconnect, "it closed its sockets")


@check("reconnect_after_freeze", "a frontend frozen past the heartbeat and continued finds "
       "what the kernel kept in comm_info, and uses it", rule=RULE, prop=PROP,
       needs={"targets"})
def reconnect_after_freeze(ctx: CheckContext) -> Finding:
    def resume(frontend: PeerProcess) -> None:
        frontend.resume()
        frontend.call("rejoin", ctx.timeouts.start)

    return _back_and_reconcile(ctx, PeerProcess.freeze, resume,
                               "SIGSTOP (heartbeat timeout included)")
