"""Plain kernel requests (kernel_info, execute, comm_info...) awaiting their reply.

These are Jupyter request/reply pairs on shell or control, not comm RPCs: they
have no machine of their own. A reply is matched by its parent msg_id; a lost
link fails every one of them, since their reply can no longer arrive.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

Message = dict[str, Any]


class KernelCallFailed(Exception):
    """A plain kernel request that cannot get its reply any more."""

    def __init__(self, msg_id: str, msg_type: str, why: str) -> None:
        super().__init__(f"{msg_type} {msg_id}: {why}")
        self.msg_id = msg_id
        self.msg_type = msg_type
        self.why = why


class KernelCalls:
    def __init__(self) -> None:
        self._waiting: dict[str, tuple[str, Future[Message]]] = {}

    def add(self, msg_id: str, msg_type: str) -> Future[Message]:
        future: Future[Message] = Future()
        self._waiting[msg_id] = (msg_type, future)
        return future

    def reply(self, msg: Message) -> bool:
        """Resolve the call this reply answers; false if it answers none of ours."""
        entry = self._waiting.pop(msg["parent_header"].get("msg_id", ""), None)
        if entry is None:
            return False
        _, future = entry
        if not future.done():
            future.set_result(msg)
        return True

    def fail_all(self, why: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for msg_id, (msg_type, future) in waiting.items():
            if not future.done():
                future.set_exception(KernelCallFailed(msg_id, msg_type, why))

    def __len__(self) -> int:
        return len(self._waiting)
