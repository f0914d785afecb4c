"""Directed programs: fixed action sequences run through the same harness.

Hypothesis explores at random; these make sure every run takes the transitions
that matter most (a persistent comm detached and then closed, the races, a stdin
request to a departed frontend, a kernel request before comm_info_reply...),
whatever the random programs did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from .errors import MbtFailure
from .harness import MBT_BOUNDS, SUPPORTED, Harness, System
from .inprocess import InProcessSystem
from .live import QUIET, STEP_TIMEOUT, LiveSystem
from .race import Race, RaceOrder
from .reconcile import StaleRequest, UnseenRequest
from .recorder import Coverage

__all__ = ["DIRECTED", "ONE_FRONTEND", "Verdict", "directed_verdicts", "run_directed",
           "unsupported", "unsupported_once_started"]

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


@dataclass(frozen=True)
class Verdict:
    """What one directed program came to: ``passed``, ``failed`` (``detail`` says how) or
    ``skipped`` (``detail`` says what the kernel under test cannot do)."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    steps: int = 0


def unsupported(program: tuple[Action, ...], bounds: Bounds, supported: frozenset[str],
                adapter: object) -> str | None:
    """Why the kernel under test cannot run ``program``, or None if it can."""
    for action in program:
        names = {action.name} | ({action.rule} if isinstance(action, Race) else set())
        if not names & supported:
            return f"{action.name if not isinstance(action, Race) else action.rule} " \
                   "is skipped"
        if isinstance(action, Race) and action.order is RaceOrder.QUEUED \
                and not callable(getattr(adapter, "hold_inbound", None)):
            return "the kernel cannot hold its inbound queues (hold_inbound)"
    if bounds.detached < bounds.comms and not callable(getattr(adapter, "keep_detached",
                                                               None)):
        return f"the kernel cannot be told to keep at most {bounds.detached} detached comms"
    return None


def unsupported_once_started(program: tuple[Action, ...], system: System) -> str | None:
    """Why the started ``system`` cannot run ``program``, or None: what only a running
    kernel can say (a kernel in another process tells at start whether it serves
    ``hold_inbound``; the adapter always has the method)."""
    holds = getattr(system, "holds_inbound", None)
    if callable(holds) and not holds() and any(
            isinstance(a, Race) and a.order is RaceOrder.QUEUED for a in program):
        return "the kernel cannot hold its inbound queues (its state says hold_inbound false)"
    return None


def directed_verdicts(
    adapter_factory: Callable[[], KernelAdapter] = ReferenceKernel,
    coverage: Coverage | None = None,
    *,
    in_process: bool = False,
    done: Callable[[str], None] | None = None,
    supported: frozenset[str] = SUPPORTED,
    step_timeout: float = STEP_TIMEOUT,
    quiet: float = QUIET,
    programs: Sequence[tuple[str, Bounds, tuple[Action, ...]]] = DIRECTED,
) -> list[Verdict]:
    """Run every directed program (of ``programs``), live or ``in_process`` (the
    reference kernel's core with the adapter's policies), each to its own verdict: a
    failure does not stop the programs after it, and a program with an action the kernel
    cannot make happen (not in ``supported``, or needing what its adapter lacks, or what
    the started kernel says it cannot do) is skipped, not failed. ``done`` hears each
    program's name as it ends (a progress display)."""
    out: list[Verdict] = []
    for name, bounds, program in programs:
        out.append(_directed(name, bounds, program, adapter_factory, coverage, in_process,
                             supported, step_timeout, quiet))
        if done is not None:
            done(name)
    return out


def _directed(name: str, bounds: Bounds, program: tuple[Action, ...],
              adapter_factory: Callable[[], KernelAdapter], coverage: Coverage | None,
              in_process: bool, supported: frozenset[str], step_timeout: float,
              quiet: float) -> Verdict:
    if in_process:
        system: System = InProcessSystem(getattr(adapter_factory, "policies"),  # noqa: B009
                                         coverage=coverage)
    else:
        adapter = adapter_factory()
        why = unsupported(program, bounds, supported, adapter)
        if why is not None:
            return Verdict(name, "skipped", why)
        system = LiveSystem(adapter, coverage=coverage, step_timeout=step_timeout,
                            quiet=quiet)
    began = time.monotonic()
    harness = Harness(system, bounds, supported=supported)
    try:
        with harness:
            why = unsupported_once_started(program, system)
            if why is not None:
                return Verdict(name, "skipped", why)
            for action in program:
                harness.apply(action)
                harness.check()
    except Exception as e:  # a mismatch, or a kernel that failed to start or answer
        what = "" if isinstance(e, AssertionError) else f"{type(e).__name__}: "
        return Verdict(name, "failed", f"at step {len(harness.program)} of {len(program)}, "
                       f"{what}{e}", time.monotonic() - began, len(harness.program))
    return Verdict(name, "passed", "", sum(s.seconds for s in harness.steps),
                   len(harness.steps))


def run_directed(
    adapter_factory: Callable[[], KernelAdapter] = ReferenceKernel,
    coverage: Coverage | None = None,
    *,
    in_process: bool = False,
    done: Callable[[str], None] | None = None,
) -> list[tuple[str, float, int]]:
    """Every directed program (:func:`directed_verdicts`); MbtFailure naming each one
    that failed, once all have run.

    Returns (name, seconds, steps) per program."""
    verdicts = directed_verdicts(adapter_factory, coverage, in_process=in_process,
                                 done=done)
    failed = [v for v in verdicts if v.status != "passed"]
    if failed:
        raise MbtFailure("\n".join(f"directed program {v.name!r} {v.status}: {v.detail}"
                                    for v in failed))
    return [(v.name, v.seconds, v.steps) for v in verdicts]
