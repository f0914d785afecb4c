"""A frontend whose link drops and comes back (SPEC, "Requirements on a frontend" 5,
"Adoption and the detached bound"): comm_info tells it what the kernel kept."""

from __future__ import annotations

import time

from commspec.model.messages import ADOPT_METHOD

from ..context import CheckContext
from ..peer import PeerError, start_peer
from ..registry import Failed, Finding, check
from .departure import ECHO, PERSISTENT, duration, require_listed, wait_closed


@check("reconnect_reconcile", "a frontend that reconnects finds what the kernel kept in "
       "comm_info, and uses it", rule="Adoption and the detached bound",
       prop="reconciled_view, adopted_comm_answerable", needs={"targets"})
def reconnect_reconcile(ctx: CheckContext) -> Finding:
    observer = ctx.client("observer")
    ctx.setup_targets(observer)
    frontend = start_peer(ctx, "frontend", iopub="peer")
    kept = frontend.call("open", ctx.timeouts.reply, target=PERSISTENT)["comm_id"]
    default = frontend.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    require_listed(ctx, observer, kept, default)
    since = time.monotonic()
    frontend.call("drop", ctx.timeouts.reply)
    # Back only once the kernel acted on the drop: a link that returned before the
    # kernel saw it go is no departure at all.
    took = wait_closed(ctx, observer, default, since, "the frontend closed its sockets")
    frontend.call("reconnect", ctx.timeouts.start)
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
    return Finding(f"dropped: default comm closed {duration(took)} after; back: the persistent "
                   "one listed, adopted and answering")
