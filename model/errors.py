"""Errors of the specification layer, typed by cause."""

from __future__ import annotations


class CommspecError(Exception):
    """Base of every error commspec raises on purpose."""


class SpecError(CommspecError):
    """A machine declaration contradicts itself (a bug in the spec, not in its input)."""


class InvalidTransition(CommspecError):
    """An event arrived that the machine does not allow in its current state."""

    def __init__(self, machine: str, state: str, event: str, object_id: str | None = None):
        self.machine = machine
        self.state = state
        self.event = event
        self.object_id = object_id
        where = f" ({object_id})" if object_id else ""
        super().__init__(
            f"{machine}{where}: event {event!r} is not allowed in state {state!r}"
        )
