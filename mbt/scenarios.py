"""Directed programs: fixed action sequences run through the same harness.

Hypothesis explores at random; these make sure every run takes the transitions
that matter most (a persistent comm detached and then closed, the races, a stdin
request to a departed frontend, a kernel request before comm_info_reply...),
whatever the random programs did.
"""

from __future__ import annotations

from collections.abc import Callable

from commspec.model.actions import (
    Action,
    Crash,
    Exit,
    Freeze,
    FrontendAdopt,
    FrontendClose,
    FrontendOpen,
    FrontendRequest,
    KernelClose,
    KernelOpen,
    KernelRequest,
    KernelStdinRequest,
    Shutdown,
    Start,
)
from commspec.model.system import Bounds
from commspec.model.world import Target

from .adapter import KernelAdapter, ReferenceKernel
from .harness import MBT_BOUNDS, Harness, System
from .inprocess import InProcessSystem
from .live import LiveSystem
from .race import Race, RaceOrder
from .reconcile import StaleRequest, UnseenRequest
from .recorder import Coverage

__all__ = ["DIRECTED", "ONE_FRONTEND", "run_directed"]

ONE_FRONTEND = Bounds(frontends=1, comms=2, requests=2, reconnects=0, faults=1)
#: room for two freezes and an exit, one reconnect
FREEZES = Bounds(frontends=1, comms=2, requests=2, reconnects=1, faults=3)
#: one detached comm kept: the second to detach evicts the first
EVICTS = Bounds(frontends=1, comms=2, requests=2, reconnects=0, faults=1, detached=1)

#: (name, bounds, program)
DIRECTED: tuple[tuple[str, Bounds, tuple[Action, ...]], ...] = (
    ("persistent detaches, default closes, then the kernel closes the detached one",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.PERSISTENT), FrontendOpen(0, 1, Target.DEFAULT),
      FrontendRequest(0, 0, 0), Crash(0), KernelClose(0))),
    ("two persistent comms detach past the bound of one: the longest detached is evicted",
     EVICTS,
     (Start(0), FrontendOpen(0, 0, Target.PERSISTENT), FrontendOpen(0, 1, Target.PERSISTENT),
      Crash(0))),
    ("a new session adopts the comm a departed one left detached, and answers on it",
     MBT_BOUNDS,
     (Start(0), Start(1), FrontendOpen(0, 0, Target.PERSISTENT), Crash(0), FrontendAdopt(1),
      KernelRequest(0, 0))),
    ("a request nobody can receive, a detached comm at shutdown, a lost session closes",
     MBT_BOUNDS,
     (Start(0), Start(1), FrontendOpen(0, 0, Target.PERSISTENT), Exit(0),
      KernelRequest(0, 0), Shutdown(), Exit(1))),
    ("the other frontend hears of a default comm it never held closing",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.DEFAULT), Start(1), Crash(0))),
    ("stdin: answered, then to a frontend that left",
     MBT_BOUNDS,
     (Start(0), Start(1), KernelStdinRequest(0, 0), Exit(0),
      KernelStdinRequest(0, 1))),
    ("a frontend starts after shutdown and gives up connecting",
     MBT_BOUNDS, (Shutdown(), Start(0), Exit(0))),
    ("everyone leaves, someone comes back, then shutdown closes an open comm",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.DEFAULT), Crash(0), Start(1),
      FrontendOpen(1, 1, Target.PERSISTENT), Shutdown())),
    ("race: the reply is resolved before the frontend leaves",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.DEFAULT), Race(0, 0, RaceOrder.REPLY_FIRST))),
    ("race: the answer and the departure back to back",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.PERSISTENT), Race(0, 0, RaceOrder.TOGETHER))),
    ("race: IOPub goes first, the answer arrives late on the open shell",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.DEFAULT), Race(0, 0, RaceOrder.IOPUB_FIRST))),
    ("race: the answer and the unsubscribe both queued, the drain delivers the answer",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.PERSISTENT), Race(0, 0, RaceOrder.QUEUED))),
    ("freeze, reconnect and reconcile; freeze again, stay lost, exit",
     FREEZES,
     (Start(0), FrontendOpen(0, 0, Target.PERSISTENT), FrontendOpen(0, 1, Target.DEFAULT),
      Freeze(0), FrontendRequest(0, 0, 0), Freeze(0), Exit(0),
      KernelClose(0))),
    ("a frontend that reconnects adopts a comm opened before it first came",
     MBT_BOUNDS,
     (Start(1), KernelOpen(0, 1, Target.PERSISTENT), Start(0), Freeze(0))),
    ("a bystander closes a comm the kernel holds detached for its departed owner",
     MBT_BOUNDS,
     (Start(0), Start(1), KernelOpen(0, 0, Target.PERSISTENT), Crash(0),
      FrontendClose(1, 0))),
    ("reconcile: a request on a comm opened while the frontend was away comes before "
     "comm_info_reply; the frontend adopts the comm, answers, and uses it",
     MBT_BOUNDS,
     (Start(0), Start(1), UnseenRequest(0, 0, 0, 1, Target.PERSISTENT),
      FrontendRequest(0, 0, 1))),
    ("reconcile: a request on a comm the frontend holds stale comes before "
     "comm_info_reply; it is answered",
     MBT_BOUNDS,
     (Start(0), FrontendOpen(0, 0, Target.PERSISTENT), StaleRequest(0, 0, 0),
      FrontendRequest(0, 0, 1))),
    ("the kernel opens a comm; the frontend closes it; the kernel closes another",
     ONE_FRONTEND,
     (Start(0), KernelOpen(0, 0, Target.PERSISTENT), KernelRequest(0, 0),
      FrontendClose(0, 0), KernelOpen(1, 0, Target.DEFAULT), KernelClose(1))),
)


def run_directed(
    adapter_factory: Callable[[], KernelAdapter] = ReferenceKernel,
    coverage: Coverage | None = None,
    *,
    in_process: bool = False,
    done: Callable[[str], None] | None = None,
) -> list[tuple[str, float, int]]:
    """Run every directed program, live or ``in_process`` (the reference kernel's core
    with the adapter's policies); MbtFailure (naming it) on the first that fails.
    ``done`` hears each program's name as it passes (a progress display).

    Returns (name, seconds, steps) per program."""
    out: list[tuple[str, float, int]] = []
    for name, bounds, program in DIRECTED:
        system: System = (
            InProcessSystem(getattr(adapter_factory, "policies"), coverage=coverage)  # noqa: B009
            if in_process else LiveSystem(adapter_factory(), coverage=coverage))
        with Harness(system, bounds) as harness:
            for action in program:
                try:
                    harness.apply(action)
                    harness.check()
                except AssertionError as e:
                    raise type(e)(f"directed program {name!r}: {e}") from e
            out.append((name, sum(s.seconds for s in harness.steps), len(harness.steps)))
        if done is not None:
            done(name)
    return out
