"""What a check works with: its own kernel, clients it opens, bounded waits, evidence.

Rules:
- Every client a check opens through ``client()`` is closed when the check ends, and
  its log is the check's evidence; so is every child process it starts through
  ``track()`` (ended by its own pid, SIGCONT first if it was stopped).
- Timeouts are the run's, sized for kernels that take seconds to start: ``reply`` for
  an answer that should come at once, ``departure`` for what a departure should cause
  (the kernel's heartbeat timeout included), ``start`` for a kernel to answer at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq

from .client import Client, IopubMode
from .kernel import RunningKernel
from .profiles import Profile
from .registry import Failed, NotApplicable

__all__ = ["CheckContext", "Timeouts"]


@dataclass(frozen=True)
class Timeouts:
    start: float = 60.0
    reply: float = 10.0
    departure: float = 30.0


class Ends(Protocol):
    def end(self) -> None: ...


@dataclass
class CheckContext:
    kernel: RunningKernel
    profile: Profile
    timeouts: Timeouts
    context: zmq.Context[zmq.Socket[bytes]] = field(default_factory=zmq.Context)
    clients: list[Client] = field(default_factory=list)
    children: list[Ends] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: what every client and child frontend of the check sent and received, in order
    journal: list[str] = field(default_factory=list)

    # -- what a check opens ----------------------------------------------------------

    def client(self, name: str, iopub: IopubMode = "none") -> Client:
        made = Client(self.kernel.info, iopub=iopub, name=name, context=self.context,
                      log=self.journal)
        self.clients.append(made)
        return made

    def frontend(self, name: str, iopub: IopubMode = "stock") -> Client:
        """A subscribed client, ready: its subscription reached the kernel (a welcome,
        or, from a kernel without JEP 65, an IOPub message parented to its probe)."""
        made = self.client(name, iopub)
        self.wait_subscribed(made)
        return made

    def wait_subscribed(self, client: Client) -> None:
        if client.wait_heard(self.timeouts.start):
            return
        raise Failed(f"{client.name}: no IOPub message within {self.timeouts.start:g} s",
                     client.log[-10:])

    def track(self, child: Ends) -> Ends:
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in reversed(self.children):
            try:
                child.end()
            except Exception as e:  # one child that will not end must not keep the rest
                self.notes.append(f"ending {child!r} failed: {e!r}")
        for made in self.clients:
            made.close()
        self.context.term()

    # -- what a check needs --------------------------------------------------------

    def evidence(self, last: int = 40) -> list[str]:
        return [*self.notes, *self.journal[-last:]]

    def setup_targets(self, client: Client) -> None:
        """Run the profile's setup code (nothing for a kernel with its own targets)."""
        if "targets" not in self.profile.capabilities:
            raise NotApplicable(f"profile {self.profile.name} registers no targets")
        if self.profile.setup is None:
            return
        reply = client.execute(self.profile.setup, self.timeouts.reply)
        if reply["content"].get("status") != "ok":
            raise Failed(f"profile {self.profile.name}: its setup code failed: "
                         f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}",
                         self.evidence())

    def eventually(self, condition: Callable[[], Any], timeout: float, what: str,
                   every: float = 0.05) -> Any:
        """Poll ``condition`` until it returns something true; Failed naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise Failed(f"{what}: not so within {timeout:g} s", self.evidence())
            time.sleep(every)
