"""Broken variants of the reference kernel, each a kernel process of its own, for
``commspec conform`` to catch.

    python tests/conform/variant_kernel.py NAME --connection-file FILE [commspec kernel's options]

serves like ``commspec kernel`` (its options, signals and exit statuses: it is that
command, given another endpoint) until SIGTERM or a shutdown_request.

Two kinds of variant, each breaking one rule and replacing one public seam, so
impl/ stays untouched:
- the model-based tests' policy variants (tests/mbt/mbt_variants.py): the endpoint
  is built with ``policies=`` one of them; they break disconnection rules;
- wire variants: a subclass of :class:`KernelEndpoint` that wraps one entry of its
  effect table (``effects[Send]``: what goes out) or its input (``feed``: what comes
  in); they break the rules one frontend can see.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# The policy variants live beside the model-based tests that hold them to the model.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mbt"))

from mbt_variants import (  # after the path it is found on
    AlwaysPresent,
    ClosesPersistent,
    DeliversLateReplies,
    IgnoresDepartures,
    NoDrain,
)

from commspec.commands import kernel as kernel_command
from commspec.impl.core.events import Channel, Input, Refused, Send
from commspec.impl.kernel import KernelEndpoint
from commspec.model.messages import FEATURE

__all__ = ["VARIANTS", "main"]

#: the exit status of the variant that dies on bad input
DIED = 3


class SendFilter(KernelEndpoint):
    """A kernel whose outgoing messages pass through ``outgoing`` first: it calls
    ``send`` for each message it lets out (changed or not), any number of times."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_now = self.effects[Send]
        self.effects[Send] = lambda effect: self.outgoing(effect, self._send_now)

    def outgoing(self, effect: Send, send: Callable[[Send], None]) -> None:
        send(effect)


def _is_comm_reply(effect: Send) -> bool:
    data = effect.content.get("data")
    return (effect.channel is Channel.IOPUB and effect.msg_type == "comm_msg"
            and effect.parent is not None and effect.parent.get("msg_type") == "comm_msg"
            and isinstance(data, dict) and bool({"result", "error"} & data.keys()))


class WelcomesFirstOnly(SendFilter):
    """iopub_welcome to the first subscriber only (stock ipykernel 7.4)."""

    welcomed = False

    def outgoing(self, effect: Send, send: Callable[[Send], None]) -> None:
        if effect.msg_type == "iopub_welcome":
            if self.welcomed:
                return
            self.welcomed = True
        send(effect)


class KeepsUnknownTargetOpen(SendFilter):
    """A comm_open for a target nobody registered gets no comm_close: the frontend's
    comm stays open with nobody behind it."""

    def outgoing(self, effect: Send, send: Callable[[Send], None]) -> None:
        refusal = (effect.msg_type == "comm_close" and effect.parent is not None
                   and effect.parent.get("msg_type") == "comm_open")
        if not refusal:
            send(effect)


class AdvertisesNothing(SendFilter):
    """kernel_info_reply without supported_features or the spec's own field."""

    def outgoing(self, effect: Send, send: Callable[[Send], None]) -> None:
        if effect.msg_type == "kernel_info_reply":
            content = {k: v for k, v in effect.content.items()
                       if k not in ("supported_features", FEATURE)}
            effect = dataclasses.replace(effect, content=content)
        send(effect)


class RepliesAfterIdle(SendFilter):
    """A comm RPC's reply goes out after its request's idle, not before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: dict[str, Send] = {}  # request msg_id -> its reply, held

    def outgoing(self, effect: Send, send: Callable[[Send], None]) -> None:
        if _is_comm_reply(effect):
            assert effect.parent is not None
            self.held[effect.parent["msg_id"]] = effect
            return
        send(effect)
        if effect.msg_type == "status" and effect.content.get("execution_state") == "idle" \
                and effect.parent is not None:
            reply = self.held.pop(effect.parent.get("msg_id"), None)
            if reply is not None:
                send(reply)


class RepliesUnparented(SendFilter):
    """A comm RPC's reply goes out with no parent header."""

    def outgoing(self, effect: Send, send: Callable[[Send], None]) -> None:
        send(dataclasses.replace(effect, parent=None) if _is_comm_reply(effect) else effect)


class DiesOnBadControl(KernelEndpoint):
    """The process exits on a message on control it cannot read (xeus-python 0.19)."""

    def feed(self, event: Input) -> None:
        if isinstance(event, Refused) and event.channel is Channel.CONTROL:
            print(f"variant kernel: {event.reason} on control; exiting", file=sys.stderr,
                  flush=True)
            os._exit(DIED)
        super().feed(event)


#: variant name -> what makes its endpoint (called as commspec kernel calls KernelEndpoint)
VARIANTS: dict[str, Callable[..., KernelEndpoint]] = {
    "persistent_closed_on_disconnect": partial(KernelEndpoint, policies=ClosesPersistent()),
    "accepts_without_subscriber": partial(KernelEndpoint, policies=AlwaysPresent()),
    "ignores_unsubscribes": partial(KernelEndpoint, policies=IgnoresDepartures()),
    "no_drain_before_invalidating": partial(KernelEndpoint, policies=NoDrain()),
    "late_reply_resolves": partial(KernelEndpoint, policies=DeliversLateReplies()),
    "welcomes_first_only": WelcomesFirstOnly,
    "keeps_unknown_target_open": KeepsUnknownTargetOpen,
    "advertises_nothing": AdvertisesNothing,
    "replies_after_idle": RepliesAfterIdle,
    "replies_unparented": RepliesUnparented,
    "dies_on_bad_control": DiesOnBadControl,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="variant_kernel.py", description="a broken variant of the reference kernel; "
        "the other options are commspec kernel's")
    parser.add_argument("variant", choices=sorted(VARIANTS))
    known, rest = parser.parse_known_args(argv)
    commands = argparse.ArgumentParser(prog="variant_kernel.py")
    kernel_command.add_parser(commands.add_subparsers(dest="command", required=True))
    args = commands.parse_args(["kernel", *rest])
    return kernel_command.run(args, endpoint=VARIANTS[known.variant])


if __name__ == "__main__":
    sys.exit(main())
