"""Bad input: each kind sent once, then the kernel must still answer on shell and control
(SPEC, "Requirements on a kernel" 12: refused before any state moves, counted, and
every other message still answered)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from ..client import Client, NoAnswer
from ..context import CheckContext
from ..registry import Failed, Finding, check

RULE = "Requirements on a kernel"
PROP = "bad input moves no state"


def _header() -> bytes:
    return json.dumps({"msg_id": uuid.uuid4().hex, "msg_type": "kernel_info_request",
                       "session": uuid.uuid4().hex, "username": "conform", "version": "5.3",
                       "date": "2026-01-01T00:00:00Z"}).encode()


def _survives(ctx: CheckContext, what: str, send: Callable[[Client], None]) -> Finding:
    # The attacker's connections are up before it sends, and it asks again on them
    # after: ZeroMQ keeps one connection's messages in order, so the kernel reads the
    # bad message first. (Another connection's question alone may be read before it,
    # and pass a kernel that then hangs on it: xeus-python did, in some runs.)
    attacker = ctx.client("attacker")
    observer = ctx.client("observer")
    _answers(ctx, attacker, "before any bad input")
    send(attacker)
    _answers(ctx, attacker, f"after {what}")
    _answers(ctx, observer, f"after {what}")
    return Finding("answered on shell and control after it")


def _answers(ctx: CheckContext, client: Client, when: str) -> None:
    for channel in ("shell", "control"):
        try:
            client.kernel_info(ctx.timeouts.reply, channel=channel)
        except NoAnswer:
            alive = "still running" if ctx.kernel.alive() else "its process has exited"
            raise Failed(f"{when}, no kernel_info_reply to the {client.name} on {channel} "
                         f"within {ctx.timeouts.reply:g} s ({alive})", ctx.evidence()) from None


@check("bad_missigned", "a message signed with another key is dropped", rule=RULE, prop=PROP)
def bad_missigned(ctx: CheckContext) -> Finding:
    def send(attacker: Client) -> None:
        parts = [_header(), b"{}", b"{}", b"{}"]
        frames = attacker.signed(parts)
        frames[1] = b"0" * len(frames[1])
        attacker.send_frames("shell", frames, "kernel_info_request with a wrong signature")
    return _survives(ctx, "a mis-signed message", send)


def _truncated(channel: str) -> Callable[[CheckContext], Finding]:
    def run(ctx: CheckContext) -> Finding:
        return _survives(ctx, f"a truncated message on {channel}", lambda attacker:
                         attacker.send_frames(channel, [b"<IDS|MSG>", b"nonsense"],
                                              "<IDS|MSG>, 'nonsense' (truncated)"))
    return run


check("bad_truncated_shell", "a truncated message on shell is dropped",
      rule=RULE, prop=PROP)(_truncated("shell"))
check("bad_truncated_control", "a truncated message on control is dropped",
      rule=RULE, prop=PROP)(_truncated("control"))


@check("bad_no_delimiter", "a message without <IDS|MSG> is dropped", rule=RULE, prop=PROP)
def bad_no_delimiter(ctx: CheckContext) -> Finding:
    return _survives(ctx, "a message without a delimiter", lambda attacker:
                     attacker.send_frames("shell", [b"no delimiter at all"],
                                          "one frame, no <IDS|MSG>"))


@check("bad_signed_non_json", "a correctly signed message that is not JSON is dropped",
       rule=RULE, prop=PROP)
def bad_signed_non_json(ctx: CheckContext) -> Finding:
    return _survives(ctx, "a signed non-JSON message", lambda attacker:
                     attacker.send_frames("shell", attacker.signed(
                         [b"{not json", b"{}", b"{}", b"{}"]), "signed, header not JSON"))
