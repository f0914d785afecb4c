"""Frontends leaving: what the kernel does with their comms and its requests to them
(SPEC, "Disconnection": "Per-peer presence", "The disconnection policy").

How these checks see it: the frontend that leaves is a child process holding real
sockets (conform.peer), SIGKILLed, SIGSTOPped or closed; what the kernel kept is read
by an *observer* on shell only (comm_info), which no kernel counts as a subscriber, so
an only frontend is really the only one. What the kernel publishes (a comm_close, an
answer) is seen only by a frontend that stays subscribed, so those checks keep one.
Every wait is bounded by the run's departure timeout (the kernel's heartbeat timeout
included); the figure is how long the kernel took.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from commspec.model.messages import ADOPT_METHOD, FAILURE_CODES

from ..client import Client, Message, NoAnswer
from ..context import CheckContext
from ..peer import PeerError, PeerProcess, start_peer
from ..registry import Failed, Finding, NotApplicable, check

ECHO = "commspec.echo"
PERSISTENT = "commspec.echo.persistent"
POLICY = "The disconnection policy"
#: how often comm_info is asked while waiting for a departure's effect
POLL = 0.02


def duration(seconds: float) -> str:
    """A measured delay as the scorecard shows it."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def listed(ctx: CheckContext, asker: Client, comm_id: str) -> bool:
    return comm_id in asker.comm_info(ctx.timeouts.reply)


def require_listed(ctx: CheckContext, asker: Client, *comm_ids: str) -> None:
    comms = asker.comm_info(ctx.timeouts.reply)
    missing = [c for c in comm_ids if c not in comms]
    if missing:
        raise Failed(f"comm_info does not list the comm(s) {missing} just opened (it lists "
                     f"{sorted(comms)}): nothing to hold a departure to", ctx.evidence())


def unlisted_within(ctx: CheckContext, asker: Client, comm_id: str,
                    since: float) -> float | None:
    """Seconds from ``since`` until comm_info no longer lists ``comm_id``; None if it
    still does when the departure timeout has passed."""
    deadline = since + ctx.timeouts.departure
    first = len(asker.log)
    try:
        while listed(ctx, asker, comm_id):
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)
        return time.monotonic() - since
    finally:
        # The evidence shows the last answer, not each of hundreds before it.
        earlier = (len(asker.log) - 2 - first) // 2
        if earlier > 1:
            asker.log[first:-2] = [f"{asker.name}: {earlier} comm_info requests in "
                                   f"{duration(time.monotonic() - since)}, each answered "
                                   f"listing {comm_id}"]


def wait_closed(ctx: CheckContext, asker: Client, comm_id: str, since: float,
                after: str) -> float:
    took = unlisted_within(ctx, asker, comm_id, since)
    if took is None:
        raise Failed(f"comm_info still lists the default comm {ctx.timeouts.departure:g} s "
                     f"after {after}: the kernel kept a comm nobody can close (it does not act "
                     "on the departure)", ctx.evidence())
    return took


# -- the only frontend leaves ---------------------------------------------------------------


def _only_frontend_leaves(ctx: CheckContext, leave: Callable[[PeerProcess], None],
                          after: str) -> Finding:
    observer = ctx.client("observer")
    ctx.setup_targets(observer)
    frontend = start_peer(ctx, "frontend")
    comm_id = frontend.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    require_listed(ctx, observer, comm_id)
    since = time.monotonic()
    leave(frontend)
    took = wait_closed(ctx, observer, comm_id, since, after)
    # Nobody is subscribed to see the comm_close itself: per_peer checks that one.
    return Finding(f"default comm closed {duration(took)} after {after}")


@check("departure_sigkill", "only frontend SIGKILLed: its default comm is closed",
       rule=POLICY, prop="no_unobserved_default_comm", needs={"targets"})
def departure_sigkill(ctx: CheckContext) -> Finding:
    return _only_frontend_leaves(ctx, PeerProcess.kill, "SIGKILL")


@check("departure_close", "only frontend closes its sockets: its default comm is closed",
       rule=POLICY, prop="no_unobserved_default_comm", needs={"targets"})
def departure_close(ctx: CheckContext) -> Finding:
    def close(frontend: PeerProcess) -> None:
        frontend.call("close", ctx.timeouts.reply)

    return _only_frontend_leaves(ctx, close, "a clean close")


@check("departure_sigstop", "only frontend SIGSTOPped past the heartbeat: its default comm "
       "is closed", rule="Detecting it", prop="no_unobserved_default_comm (a frozen peer is "
       "cut off by the ZMTP heartbeat)", needs={"targets"})
def departure_sigstop(ctx: CheckContext) -> Finding:
    return _only_frontend_leaves(ctx, PeerProcess.freeze, "SIGSTOP (heartbeat timeout "
                                 "included)")


# -- what the kernel keeps ------------------------------------------------------------------


@check("persistent_kept", "a persistent comm outlives its frontend and a new one uses it",
       rule=POLICY, prop="persistent comms are detached, not closed, and re-attach",
       needs={"targets"})
def persistent_kept(ctx: CheckContext) -> Finding:
    observer = ctx.client("observer")
    ctx.setup_targets(observer)
    frontend = start_peer(ctx, "frontend")
    kept = frontend.call("open", ctx.timeouts.reply, target=PERSISTENT)["comm_id"]
    default = frontend.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    require_listed(ctx, observer, kept, default)
    since = time.monotonic()
    frontend.kill()
    # The default comm's close shows the departure was acted on: only then does the
    # persistent comm's staying mean anything.
    took = unlisted_within(ctx, observer, default, since)
    seen = (f"departure acted on {duration(took)} after SIGKILL" if took is not None else
            f"no sign the kernel saw the departure: its default comm was still listed "
            f"{ctx.timeouts.departure:g} s after SIGKILL")
    newcomer = ctx.frontend("new frontend")
    comms = newcomer.comm_info(ctx.timeouts.reply)
    if kept not in comms:
        raise Failed(f"{seen}; the new frontend's comm_info no longer lists the persistent "
                     f"comm {kept}: the kernel closed it", ctx.evidence())
    newcomer.send("shell", "comm_msg", {"comm_id": kept,
                                        "data": {"jsonrpc": "2.0", "method": ADOPT_METHOD}})
    try:
        reply = newcomer.rpc_reply(newcomer.rpc(kept, "echo", {"kept": True}),
                                   ctx.timeouts.reply)
    except NoAnswer as e:
        raise Failed(f"{seen}; listed, but an echo on it was not answered: {e}",
                     ctx.evidence()) from None
    data = reply["content"]["data"]
    if data.get("result") != {"kept": True}:
        raise Failed(f"{seen}; the echo on it was answered {data!r}", ctx.evidence())
    return Finding(f"{seen}; the persistent comm listed and answered a new frontend")


@check("per_peer", "A leaves, B stays: A's default comm closes, B's stays and answers",
       rule="Per-peer presence", prop="a frontend's departure loses only what it owns",
       needs={"targets"})
def per_peer(ctx: CheckContext) -> Finding:
    stays = ctx.frontend("B", iopub="peer")
    ctx.setup_targets(stays)
    leaves = start_peer(ctx, "A", iopub="peer")
    a_comm = leaves.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    b_comm = stays.open_comm_handled(ECHO, ctx.timeouts.reply)
    require_listed(ctx, stays, a_comm, b_comm)
    since = time.monotonic()
    leaves.kill()
    try:
        stays.iopub(lambda m: m["msg_type"] == "comm_close"
                    and m["content"].get("comm_id") == a_comm,
                    ctx.timeouts.departure, "comm_close for A's comm")
    except NoAnswer:
        raise Failed(f"no comm_close for A's default comm {ctx.timeouts.departure:g} s after "
                     "A was SIGKILLed while B stayed: the kernel does not tell which frontend "
                     "left (a kernel without per-peer presence sees only that '' is still "
                     "held)", ctx.evidence()) from None
    took = time.monotonic() - since
    closed_b = [m for m in stays.drain_iopub() if m["msg_type"] == "comm_close"
                and m["content"].get("comm_id") == b_comm]
    comms = stays.comm_info(ctx.timeouts.reply)
    if closed_b or b_comm not in comms or a_comm in comms:
        raise Failed(f"after A left: comm_close for B's comm {'published' if closed_b else 'not'}"
                     f" published; comm_info lists {sorted(comms)} (want B's {b_comm} only of "
                     "the two)", ctx.evidence())
    try:
        reply = stays.rpc_reply(stays.rpc(b_comm, "echo", {"b": 1}), ctx.timeouts.reply)
    except NoAnswer as e:
        raise Failed(f"B's comm is listed but its echo was not answered: {e}",
                     ctx.evidence()) from None
    if reply["content"]["data"].get("result") != {"b": 1}:
        raise Failed(f"B's echo was answered {reply['content']['data']!r}", ctx.evidence())
    return Finding(f"A's comm closed {duration(took)} after SIGKILL; B's stayed and answered")


# -- a kernel request to a frontend that leaves ----------------------------------------------


def answer_or_close(ctx: CheckContext, asker: Client, request: Message,
                    comm_id: str) -> Message:
    """The answer to ``request`` (call_frontend on F's persistent comm), or the comm's
    comm_close if that comes first (a kernel that closes a persistent comm when its
    owner leaves, where it should detach it: the request ends cancelled, unanswered);
    NoAnswer after the departure timeout."""
    asked = request["header"]["msg_id"]

    def ended(m: Message) -> bool:
        data = m["content"].get("data")
        answer = (m["msg_type"] == "comm_msg" and m["parent_header"].get("msg_id") == asked
                  and isinstance(data, dict) and bool({"result", "error"} & data.keys()))
        closed = m["msg_type"] == "comm_close" and m["content"].get("comm_id") == comm_id
        return answer or closed

    return asker.iopub(ended, ctx.timeouts.departure, "call_frontend's answer")


CLOSED_PERSISTENT = ("the kernel closed F's persistent comm when F left: call_frontend "
                     "ends cancelled by the close, unanswered (a persistent comm detaches "
                     "when its owner leaves)")


@check("kernel_request_invalidated", "a kernel request on a comm ends invalidated when "
       "its frontend leaves", rule=POLICY, prop="one_outcome (invalidated, -32002)",
       needs={"targets", "kernel_request"})
def kernel_request_invalidated(ctx: CheckContext) -> Finding:
    # The asker must stay subscribed to see the answer; so the frontend that leaves
    # is a commspec peer (a kernel can tell it left while the asker holds ''), and
    # its comm is persistent: its requests fail as invalidated and the comm detaches,
    # so the kernel still answers on it (a default comm closes under the asker's
    # request too, and cancelled may come first).
    asker = ctx.frontend("asker")
    ctx.setup_targets(asker)
    owner = start_peer(ctx, "F", iopub="peer")
    comm_id = owner.call("open", ctx.timeouts.reply, target=PERSISTENT)["comm_id"]
    request = asker.rpc(comm_id, "call_frontend",
                        {"method": "conform.never_answered", "params": {}})
    try:
        owner.call("wait_kernel_request", ctx.timeouts.reply, comm_id=comm_id)
    except PeerError as e:
        raise Failed(f"F never got the kernel's request on its comm: {e.why}",
                     ctx.evidence()) from None
    since = time.monotonic()
    owner.kill()
    try:
        reply = answer_or_close(ctx, asker, request, comm_id)
    except NoAnswer:
        raise Failed(f"the kernel's request to F did not end {ctx.timeouts.departure:g} s "
                     "after F was SIGKILLed: call_frontend is still waiting for a frontend "
                     "that is gone", ctx.evidence()) from None
    took = time.monotonic() - since
    if reply["msg_type"] == "comm_close":
        raise Failed(CLOSED_PERSISTENT, ctx.evidence())
    error = reply["content"]["data"].get("error")
    want = FAILURE_CODES["invalidated"]
    if not isinstance(error, dict) or error.get("code") != want:
        raise Failed(f"call_frontend was answered {reply['content']['data']!r}: want an "
                     f"error with code {want} (invalidated)", ctx.evidence())
    return Finding(f"ended invalidated ({want}) {duration(took)} after SIGKILL")


@check("kernel_request_undeliverable", "a kernel request nobody can receive fails at once "
       "as undeliverable", rule="Undeliverable requests",
       prop="one_outcome (undeliverable, -32001; it never pends)",
       needs={"targets", "kernel_request"})
def kernel_request_undeliverable(ctx: CheckContext) -> Finding:
    asker = ctx.frontend("asker")
    ctx.setup_targets(asker)
    owner = start_peer(ctx, "F", iopub="peer")
    detached = owner.call("open", ctx.timeouts.reply, target=PERSISTENT)["comm_id"]
    default = owner.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    since = time.monotonic()
    owner.kill()
    # The default comm's close shows the kernel acted on F's departure: its persistent
    # comm is detached from then on, and the kernel's requests on it reach nobody.
    try:
        asker.iopub(lambda m: m["msg_type"] == "comm_close"
                    and m["content"].get("comm_id") == default,
                    ctx.timeouts.departure, "comm_close for F's default comm")
    except NoAnswer:
        raise Failed(f"no comm_close for F's default comm {ctx.timeouts.departure:g} s after "
                     "F was SIGKILLed: the kernel did not act on F's departure, so nothing "
                     "shows its persistent comm detached", ctx.evidence()) from None
    if not listed(ctx, asker, detached):
        raise Failed("the kernel closed F's persistent comm when F left, where it should "
                     "detach it (persistent_kept's rule): no detached comm to ask on",
                     ctx.evidence())
    request = asker.rpc(detached, "call_frontend",
                        {"method": "conform.nobody_there", "params": {}})
    asked = time.monotonic()
    try:
        reply = asker.rpc_reply(request, ctx.timeouts.reply)
    except NoAnswer:
        raise Failed(f"call_frontend on F's detached comm got no answer within "
                     f"{ctx.timeouts.reply:g} s: the kernel's request to nobody pends instead "
                     "of failing at once", ctx.evidence()) from None
    error = reply["content"]["data"].get("error")
    want = FAILURE_CODES["undeliverable"]
    if not isinstance(error, dict) or error.get("code") != want:
        raise Failed(f"call_frontend on F's detached comm was answered "
                     f"{reply['content']['data']!r}: want an error with code {want} "
                     "(undeliverable)", ctx.evidence())
    return Finding(f"F's departure acted on {duration(asked - since)} after SIGKILL; then "
                   f"undeliverable ({want}) {duration(time.monotonic() - asked)} after asking")


#: the size of the echo that keeps the kernel busy while a frontend answers and leaves:
#: encoding its reply takes the kernel about 0.1 s, a hundred times what the frontend
#: takes to answer and close
BALLAST = 16 << 20


@check("drain_answer_wins", "an answer that reached the kernel before its frontend left "
       "resolves the request", rule="The drain rule",
       prop="one_outcome (a received answer wins over the departure)",
       needs={"targets", "kernel_request"})
def drain_answer_wins(ctx: CheckContext) -> Finding:
    asker = ctx.frontend("asker")
    ctx.setup_targets(asker)
    owner = start_peer(ctx, "F", iopub="peer")
    comm_id = owner.call("open", ctx.timeouts.reply, target=PERSISTENT)["comm_id"]
    ballast_comm = asker.open_comm_handled(ECHO, ctx.timeouts.reply)
    request = asker.rpc(comm_id, "call_frontend", {"method": "conform.answered", "params": {}})
    try:
        owner.call("wait_kernel_request", ctx.timeouts.reply, comm_id=comm_id)
    except PeerError as e:
        raise Failed(f"F never got the kernel's request on its comm: {e.why}",
                     ctx.evidence()) from None
    # F answers and leaves while the kernel is busy with a large echo, so that F's
    # answer and its departure are both waiting when the kernel next reads: the drain
    # rule says the answer is read first.
    ballast = asker.rpc(ballast_comm, "echo", {"ballast": "x" * BALLAST})
    busy = ballast["header"]["msg_id"]
    asker.iopub(lambda m: m["msg_type"] == "status" and m["parent_header"].get("msg_id") == busy,
                ctx.timeouts.reply, "busy for the large echo")
    owner.call("answer_and_close", ctx.timeouts.reply, comm_id=comm_id,
               result={"answered": True})
    asker.rpc_reply(ballast, ctx.timeouts.reply)
    try:
        reply = answer_or_close(ctx, asker, request, comm_id)
    except NoAnswer:
        raise Failed(f"call_frontend got no answer {ctx.timeouts.departure:g} s after F "
                     "answered and left", ctx.evidence()) from None
    if reply["msg_type"] == "comm_close":
        # Whether F's answer went out before that close is a race in such a kernel:
        # it says nothing of the drain rule (persistent_kept fails it).
        raise NotApplicable(f"{CLOSED_PERSISTENT}; the drain rule cannot be read from it")
    data = reply["content"]["data"]
    if data.get("result") != {"answered": True}:
        raise Failed(f"F answered {{'answered': True}} before it left, but call_frontend was "
                     f"answered {data!r}: the kernel acted on the departure before reading "
                     "an answer it had already received", ctx.evidence())
    return Finding("F answered and left at once while the kernel was busy: its answer "
                   "resolved the request")
