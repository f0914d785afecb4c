"""Proving that our IOPub subscription is live before any request goes out.

JEP 65: the kernel publishes ``iopub_welcome`` on each subscribe, and any
welcome proves ours (frames never say for whom). Kernels that never welcome, or
that welcome only their first subscriber (ipykernel 7.4), get the older proof:
we send kernel_info_request on shell, and an IOPub message parented to one of
them (its ``status: busy``) shows the subscription was live when the kernel
published it. A probe goes out at once, then one per ``interval`` as long as the
kernel answers the previous one (a kernel still starting up is not flooded, and
one that never answers is left to the connect deadline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commspec.impl.loop import IoLoop, Timer

Message = dict[str, Any]


class SubscriptionProbe:
    def __init__(
        self,
        loop: IoLoop,
        *,
        send_probe: Callable[[], str],
        on_proven: Callable[[str], None],
        on_gave_up: Callable[[], None],
        interval: float,
        deadline: float,
    ) -> None:
        self._loop = loop
        self._send_probe = send_probe
        self._on_proven = on_proven
        self._on_gave_up = on_gave_up
        self._interval = interval
        self._deadline = deadline
        self._probes: set[str] = set()
        self._unanswered: str | None = None
        self._deadline_timer: Timer | None = None
        self._next_timer: Timer | None = None
        self.active = False
        #: what the kernel said in its kernel_info_reply, if it answered a probe
        self.kernel_info: dict[str, Any] | None = None
        #: what proved the subscription: "iopub_welcome" or "kernel_info"
        self.proven_by: str | None = None

    def start(self) -> None:
        self.active = True
        self._deadline_timer = self._loop.call_later(self._deadline, self._give_up)
        self._probe()

    def stop(self) -> None:
        self.active = False
        for timer in (self._deadline_timer, self._next_timer):
            if timer is not None:
                timer.cancel()
        self._deadline_timer = self._next_timer = None

    @property
    def probe_ids(self) -> frozenset[str]:
        return frozenset(self._probes)

    def is_probe(self, msg_id: str) -> bool:
        return msg_id in self._probes

    # -- inputs -------------------------------------------------------------------

    def on_iopub(self, msg: Message) -> bool:
        """Feed every IOPub message; true if it proved the subscription."""
        if not self.active:
            return False
        if msg["msg_type"] == "iopub_welcome":
            self.proven_by = "iopub_welcome"
        elif msg["parent_header"].get("msg_id") in self._probes:
            self.proven_by = "kernel_info"
        else:
            return False
        self.stop()
        self._on_proven(msg["msg_id"])
        return True

    def on_probe_reply(self, msg: Message) -> None:
        """A kernel_info_reply to one of our probes arrived on shell."""
        self.kernel_info = msg["content"]
        if self._unanswered == msg["parent_header"].get("msg_id"):
            self._unanswered = None

    # -- internals ---------------------------------------------------------------

    def _probe(self) -> None:
        if not self.active:
            return
        if self._unanswered is None:
            msg_id = self._send_probe()
            self._probes.add(msg_id)
            self._unanswered = msg_id
        self._next_timer = self._loop.call_later(self._interval, self._probe)

    def _give_up(self) -> None:
        if self.active:
            self.stop()
            self._on_gave_up()
