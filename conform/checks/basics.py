"""What a kernel must do with one frontend there: negotiation, welcomes, one comm RPC."""

from __future__ import annotations

import uuid

from commspec.model.messages import FEATURE, SPEC_VERSION

from ..client import Message, NoAnswer
from ..context import CheckContext
from ..registry import Failed, Finding, check

ECHO = "commspec.echo"


@check("kernel_info", "kernel_info answered on shell and on control",
       rule="Actors and sockets", prop="every request ends in one outcome")
def kernel_info(ctx: CheckContext) -> Finding:
    observer = ctx.client("observer")
    shell = observer.kernel_info(ctx.timeouts.reply)["content"]
    try:
        observer.kernel_info(ctx.timeouts.reply, channel="control")
    except NoAnswer as e:
        raise Failed(f"kernel_info_request on control: {e}", ctx.evidence()) from None
    return Finding(f"protocol {shell.get('protocol_version')}, "
                   f"{shell.get('implementation')} {shell.get('implementation_version')}")


@check("iopub_welcome", "iopub_welcome to every subscriber, and the feature flag",
       rule="Requirements on a kernel", prop="a frontend knows when it is heard (JEP 65)")
def iopub_welcome(ctx: CheckContext) -> Finding:
    features = ctx.kernel.kernel_info.get("supported_features", [])
    welcomed = 0
    for n in range(2):
        frontend = ctx.client(f"subscriber {n + 1}", iopub="stock")
        try:
            welcome = frontend.iopub(lambda m: m["msg_type"] == "iopub_welcome",
                                     ctx.timeouts.reply, "iopub_welcome")
        except NoAnswer:
            raise Failed(f"subscriber {n + 1} of 2 got no iopub_welcome ({welcomed} "
                         "welcomed)", ctx.evidence(), figure=f"{welcomed} of 2") from None
        if welcome["content"].get("subscription") != "":
            raise Failed(f"welcome names subscription {welcome['content'].get('subscription')!r},"
                         " not the one made ('')", ctx.evidence())
        welcomed += 1
    if "iopub_welcome" not in features:
        raise Failed(f"2 of 2 welcomed, but supported_features is {features!r}: no "
                     "'iopub_welcome'", ctx.evidence())
    return Finding("2 of 2 subscribers welcomed; 'iopub_welcome' advertised")


@check("spec_feature", "the spec's feature flag and version in kernel_info_reply",
       rule="Negotiation", prop="no_reply applies only to a kernel that promises it")
def spec_feature(ctx: CheckContext) -> Finding:
    info = ctx.kernel.kernel_info
    features = info.get("supported_features", [])
    declared = info.get(FEATURE)
    if FEATURE not in features or not isinstance(declared, dict):
        raise Failed(f"supported_features {features!r} and {FEATURE!r} {declared!r}: the "
                     "kernel does not declare this specification")
    if declared.get("version") != SPEC_VERSION:
        raise Failed(f"declares version {declared.get('version')!r}, this checker holds "
                     f"kernels to {SPEC_VERSION}")
    return Finding(f"{FEATURE} {declared.get('version')}")


@check("echo_rpc", "a comm RPC's reply is parented to its request, between busy and idle",
       rule="Comm messages", prop="one_outcome", needs={"targets"})
def echo_rpc(ctx: CheckContext) -> Finding:
    frontend = ctx.frontend("frontend")
    ctx.setup_targets(frontend)
    comm_id = frontend.open_comm_handled(ECHO, ctx.timeouts.reply)
    request = frontend.rpc(comm_id, "echo", {"n": 42}, request_id=7)
    msg_id = request["header"]["msg_id"]
    got: list[Message] = []
    try:
        while not (got and got[-1]["msg_type"] == "status"
                   and got[-1]["content"].get("execution_state") == "idle"):
            got.append(frontend.iopub(lambda m: m["parent_header"].get("msg_id") == msg_id,
                                      ctx.timeouts.reply, "message parented to the request"))
    except NoAnswer as e:
        raise Failed(str(e), ctx.evidence()) from None
    kinds = [m["content"].get("execution_state") if m["msg_type"] == "status"
             else m["msg_type"] for m in got]
    replies = [m for m in got if m["msg_type"] == "comm_msg"
               and {"result", "error"} & m["content"].get("data", {}).keys()]
    if kinds[:1] != ["busy"] or len(replies) != 1:
        raise Failed(f"parented to the request, in order: {kinds} (want busy, the reply, "
                     "idle)", ctx.evidence())
    data = replies[0]["content"]["data"]
    if data.get("id") != 7 or data.get("result") != {"n": 42}:
        raise Failed(f"the reply's data is {data!r}: want id 7 and result {{'n': 42}}",
                     ctx.evidence())
    return Finding("busy, reply, idle, all parented to the request")


@check("comm_info_lists", "comm_info lists a comm a frontend opened",
       rule="Requirements on a kernel", prop="reconciled_view", needs={"targets"})
def comm_info_lists(ctx: CheckContext) -> Finding:
    frontend = ctx.frontend("frontend")
    ctx.setup_targets(frontend)
    comm_id = frontend.open_comm_handled(ECHO, ctx.timeouts.reply)
    comms = frontend.comm_info(ctx.timeouts.reply)
    listed = comms.get(comm_id)
    if not isinstance(listed, dict) or listed.get("target_name") != ECHO:
        raise Failed(f"comm_info_reply lists {sorted(comms)} (want {comm_id} with target "
                     f"{ECHO})", ctx.evidence())
    return Finding(f"listed with target {ECHO} ({len(comms)} comm(s))")


@check("unknown_target", "a comm_open for a target nobody registered is answered comm_close",
       rule="Requirements on a kernel", prop="no comm without a handler stays open")
def unknown_target(ctx: CheckContext) -> Finding:
    frontend = ctx.frontend("frontend")
    comm_id, _ = frontend.open_comm(f"commspec.conform.nobody.{uuid.uuid4().hex[:8]}")
    try:
        frontend.iopub(lambda m: m["msg_type"] == "comm_close"
                       and m["content"].get("comm_id") == comm_id,
                       ctx.timeouts.reply, "comm_close for the refused comm")
    except NoAnswer as e:
        raise Failed(f"{e}: the frontend's comm stays open with nobody behind it",
                     ctx.evidence()) from None
    return Finding("comm_close published for it")
