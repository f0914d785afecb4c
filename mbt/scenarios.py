"""Directed programs: fixed action sequences run through the same harness.

Hypothesis explores at random; these make sure every run takes the transitions
that matter most (a persistent comm detached and then closed, the races, a stdin
request to a departed frontend...), whatever the random programs did.
"""

from __future__ import annotations

from collections.abc import Callable

from commspec.model.system import Bounds

from .adapter import KernelAdapter, ReferenceKernel
from .harness import MBT_BOUNDS, Action, Coverage, Harness

__all__ = ["DIRECTED", "ONE_FRONTEND", "run_directed"]

ONE_FRONTEND = Bounds(frontends=1, comms=2, requests=2, reconnects=0, faults=1)
#: room for two freezes and an exit, one reconnect
FREEZES = Bounds(frontends=1, comms=2, requests=2, reconnects=1, faults=3)

#: (name, bounds, program)
DIRECTED: tuple[tuple[str, Bounds, tuple[Action, ...]], ...] = (
    ("persistent detaches, default closes, then the kernel closes the detached one",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "persistent"), ("frontend_open", 0, 1, "default"),
      ("frontend_request", 0, 0, 0), ("crash", 0), ("kernel_close", 0))),
    ("a request nobody can receive, a detached comm at shutdown, a lost session closes",
     MBT_BOUNDS,
     (("start", 0), ("start", 1), ("frontend_open", 0, 0, "persistent"), ("exit", 0),
      ("kernel_request", 0, 0), ("shutdown",), ("exit", 1))),
    ("the other frontend hears of a default comm it never held closing",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "default"), ("start", 1), ("crash", 0))),
    ("stdin: answered, then to a frontend that left",
     MBT_BOUNDS,
     (("start", 0), ("start", 1), ("kernel_stdin_request", 0, 0), ("exit", 0),
      ("kernel_stdin_request", 0, 1))),
    ("a frontend starts after shutdown and gives up connecting",
     MBT_BOUNDS, (("shutdown",), ("start", 0), ("exit", 0))),
    ("everyone leaves, someone comes back, then shutdown closes an open comm",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "default"), ("crash", 0), ("start", 1),
      ("frontend_open", 1, 1, "persistent"), ("shutdown",))),
    ("race: the reply is resolved before the frontend leaves",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "default"), ("race", 0, 0, "reply_first"))),
    ("race: the answer and the departure back to back",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "persistent"), ("race", 0, 0, "together"))),
    ("race: IOPub goes first, the answer arrives late on the open shell",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "default"), ("race", 0, 0, "iopub_first"))),
    ("race: the answer and the unsubscribe both queued, the drain delivers the answer",
     MBT_BOUNDS,
     (("start", 0), ("frontend_open", 0, 0, "persistent"), ("race", 0, 0, "queued"))),
    ("freeze, reconnect and reconcile; freeze again, stay lost, exit",
     FREEZES,
     (("start", 0), ("frontend_open", 0, 0, "persistent"), ("frontend_open", 0, 1, "default"),
      ("freeze", 0), ("frontend_request", 0, 0, 0), ("freeze", 0), ("exit", 0),
      ("kernel_close", 0))),
    ("a frontend that reconnects adopts a comm opened before it first came",
     MBT_BOUNDS,
     (("start", 1), ("kernel_open", 0, 1, "persistent"), ("start", 0), ("freeze", 0))),
    ("a bystander closes a comm the kernel holds detached for its departed owner",
     MBT_BOUNDS,
     (("start", 0), ("start", 1), ("kernel_open", 0, 0, "persistent"), ("crash", 0),
      ("frontend_close", 1, 0))),
    ("the kernel opens a comm; the frontend closes it; the kernel closes another",
     ONE_FRONTEND,
     (("start", 0), ("kernel_open", 0, 0, "persistent"), ("kernel_request", 0, 0),
      ("frontend_close", 0, 0), ("kernel_open", 1, 0, "default"), ("kernel_close", 1))),
)


def run_directed(
    adapter_factory: Callable[[], KernelAdapter] = ReferenceKernel,
    coverage: Coverage | None = None,
) -> list[tuple[str, float, int]]:
    """Run every directed program; MbtFailure (naming it) on the first that fails.

    Returns (name, live seconds, steps) per program."""
    out: list[tuple[str, float, int]] = []
    for name, bounds, program in DIRECTED:
        with Harness(adapter_factory(), bounds, coverage=coverage) as harness:
            for action in program:
                try:
                    harness.apply(action)
                    harness.check()
                except AssertionError as e:
                    raise type(e)(f"directed program {name!r}: {e}") from e
            out.append((name, sum(s.seconds for s in harness.steps), len(harness.steps)))
    return out
