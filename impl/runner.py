"""What the application layer needs of whoever drives a protocol core.

Two things drive the cores: the endpoints, over sockets and an I/O thread, and
the model-based tests' in-process simulation, with no thread at all. Comm
objects, futures and handlers (``kernel/application.py``,
``frontend/application.py``) are the same code over either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .core.events import Input
from .targets import Cancellable

__all__ = ["CoreRunner"]


class CoreRunner(Protocol):
    """What the application needs of whoever drives the core (sockets or simulation)."""

    def submit(self, event: Input) -> None:
        """Hand an input to the core: handled now on the core's thread, else posted
        (in order); EndpointClosed once it has stopped."""

    def call(self, event: Input) -> None:
        """Handle an input now (waiting for the core's thread), raising what it raised."""

    def in_core_thread(self) -> bool: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` on the core's thread after ``delay`` seconds."""

    def new_msg_id(self) -> str: ...
