"""Stdin requests (SPEC, "Stdin request", "Per-connection departure for stdin requests",
"Stdin messages"): one to a frontend that dies must not hang the kernel, and ark's
``rpc_request`` has ark's shape."""

from __future__ import annotations

import time

from commspec.model.messages import FAILURE_CODES

from ..client import Message, NoAnswer
from ..context import CheckContext
from ..peer import PeerError, PeerProcess, start_peer
from ..registry import Failed, Finding, check
from .departure import ECHO, duration


def _ask_for_input(ctx: CheckContext, frontend: PeerProcess) -> str:
    """Make the kernel ask ``frontend`` for input; the msg_id of the request that
    asked. Code that reads a line where the profile has it, else the targets'
    ``ask_stdin``."""
    if ctx.profile.stdin_code is not None:
        return str(frontend.call("execute", ctx.timeouts.reply, code=ctx.profile.stdin_code,
                                 allow_stdin=True)["msg_id"])
    comm_id = frontend.call("open", ctx.timeouts.reply, target=ECHO)["comm_id"]
    return str(frontend.call("send_request", ctx.timeouts.reply, comm_id=comm_id,
                             method="ask_stdin", params={"prompt": "commspec conform: "})
               ["msg_id"])


@check("stdin_departed", "a stdin request to a frontend that dies does not hang the kernel",
       rule="Per-connection departure for stdin requests",
       prop="one_outcome (the stdin request ends unreachable)", needs={"stdin"})
def stdin_departed(ctx: CheckContext) -> Finding:
    observer = ctx.client("observer")
    # A stock frontend that stays (a notebook tab, while a console dies): it sees how
    # the request that asked for input ends, and it keeps '' held, so only the dying
    # frontend's own connections tell the kernel it left.
    watcher = ctx.frontend("watcher")
    if ctx.profile.stdin_code is None:
        ctx.setup_targets(observer)
    frontend = start_peer(ctx, "frontend")
    asking = _ask_for_input(ctx, frontend)
    try:
        asked = frontend.call("wait_stdin", ctx.timeouts.reply)
    except PeerError as e:
        raise Failed(f"the kernel never asked the frontend for input: {e.why}",
                     ctx.evidence()) from None
    since = time.monotonic()
    frontend.kill()
    try:
        observer.kernel_info(ctx.timeouts.departure)
    except NoAnswer:
        raise Failed(f"no kernel_info_reply on shell {ctx.timeouts.departure:g} s after the "
                     f"frontend it asked for input ({asked['msg_type']}) was SIGKILLed: the "
                     "kernel still waits for an answer that cannot come", ctx.evidence()
                     ) from None
    answered = time.monotonic() - since

    def ended(m: Message) -> bool:
        return bool(m["parent_header"].get("msg_id") == asking and m["msg_type"] == "status"
                    and m["content"].get("execution_state") == "idle")

    left = max(0.0, since + ctx.timeouts.departure - time.monotonic())
    try:
        watcher.iopub(ended, left, "idle of the request that asked for input")
    except NoAnswer:
        raise Failed(f"shell answers, but the request that asked for input never ended "
                     f"(no idle for it {ctx.timeouts.departure:g} s after SIGKILL): its stdin "
                     "request still pends", ctx.evidence()) from None
    took = time.monotonic() - since
    replies = [m for m in watcher.drain_iopub() if m["msg_type"] == "comm_msg"
               and m["parent_header"].get("msg_id") == asking]
    if ctx.profile.stdin_code is None:
        code = FAILURE_CODES["unreachable"]
        errors = [m["content"]["data"].get("error") for m in replies]
        if not any(isinstance(e, dict) and e.get("code") == code for e in errors):
            raise Failed(f"ask_stdin ended without the unreachable error ({code}) its stdin "
                         f"request should end in: {errors!r}", ctx.evidence())
    return Finding(f"shell answered {duration(answered)} and the asking request ended "
                   f"{duration(took)} after SIGKILL")


@check("ark_rpc", "ark's rpc_request on stdin has ark's shape, and its reply resolves it",
       rule="Stdin messages", prop="one_outcome (replied)", needs={"ark_rpc"})
def ark_rpc(ctx: CheckContext) -> Finding:
    frontend = ctx.frontend("frontend")
    ctx.setup_targets(frontend)
    comm_id = frontend.open_comm_handled(ECHO, ctx.timeouts.reply)
    params = {"question": "commspec conform", "n": 1}
    request = frontend.rpc(comm_id, "ask_stdin", {"method": "conform.ark_call",
                                                  "params": params})
    try:
        asked = frontend.wait("stdin", lambda m: m["msg_type"] in ("rpc_request",
                                                                  "input_request"),
                              ctx.timeouts.reply, "rpc_request")
    except NoAnswer as e:
        raise Failed(str(e), ctx.evidence()) from None
    content = asked["content"]
    if asked["msg_type"] != "rpc_request" or content.get("method") != "conform.ark_call" \
            or content.get("params") != params:
        raise Failed(f"the kernel asked {asked['msg_type']} {content!r}: want rpc_request "
                     f"{{'method': 'conform.ark_call', 'params': {params!r}}} (ark's shape)",
                     ctx.evidence())
    frontend.send("stdin", "rpc_reply", {"result": {"answered": True}}, parent=asked)
    try:
        reply = frontend.rpc_reply(request, ctx.timeouts.reply)
    except NoAnswer as e:
        raise Failed(f"the rpc_reply did not resolve the request: {e}", ctx.evidence()
                     ) from None
    if reply["content"]["data"].get("result") != {"answered": True}:
        raise Failed(f"the request that asked was answered {reply['content']['data']!r}: want "
                     "the rpc_reply's result {'answered': True}", ctx.evidence())
    return Finding("rpc_request {method, params}; the rpc_reply's result came back")
