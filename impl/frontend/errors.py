"""Errors only the frontend raises (the shared ones live in :mod:`commspec.impl.errors`)."""

from __future__ import annotations

from commspec.model.errors import CommspecError


class CannotSend(CommspecError):
    """A comm message could not go out: the comm is closed, or the link is lost.

    Notifications are fire-and-forget, so they are not held across a loss: the
    caller learns at once that the kernel will not see this one.
    """

    def __init__(self, comm_id: str, why: str) -> None:
        super().__init__(f"comm {comm_id}: cannot send, {why}")
        self.comm_id = comm_id
        self.why = why
