"""``commspec check``: explore the bounded system model and prove its properties.

With no bound given, every rung of the ladder of bounds (``commspec.model.ladder``),
cheapest first; with any ``--frontends``/``--comms``/... given, that one bound (the
others at their defaults). Exit 0 if every property holds, 1 with the shortest
counterexample of the first bound that breaks one, 2 for bad arguments, 3 when a
bound does not fit in memory (``--max-memory``: what was explored and a lower bound of
what it would take), 130 when interrupted (after a summary of what was explored).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from commspec.chart import render_chart
from commspec.helptext import plain
from commspec.model.checker import Result, Stats, Violation, check, peak_memory_mib
from commspec.model.ladder import LADDER, Rung
from commspec.model.properties import BY_NAME, PROPERTIES
from commspec.model.system import Bounds, SystemModel

DEFAULTS = Bounds()
BOUND_NAMES = ("frontends", "comms", "requests", "reconnects", "faults", "adoptions", "detached",
               "stock", "relinks")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check", help="explore the bounded system model exhaustively",
        description=plain(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, meaning in zip(BOUND_NAMES, (
        "frontend processes",
        "comm slots (each opened as a persistent or a default target)",
        "request slots (comm RPCs either way, stdin requests)",
        "reconnects, in all",
        "crashes, clean exits and freezes, in all",
        "restores (a ready frontend asks comm_info to adopt what it does not hold), in all",
        "detached comms the kernel keeps before it evicts the longest detached",
        "of the frontends, how many are stock ones (no peer topic, no reconnect rules)",
        "dropped connections libzmq re-establishes by itself, in all",
    ), strict=True):
        p.add_argument(
            f"--{name}",
            type=int,
            default=None,
            metavar="N",
            help=f"{meaning} (default {getattr(DEFAULTS, name)} when another bound is given)",
        )
    p.add_argument("--jobs", type=int, default=min(2, len(os.sched_getaffinity(0))),
                   metavar="N", help="explore up to N rungs of the ladder at once, each in "
                   "a process of its own (default: %(default)s, the CPUs here, at most 2)")
    p.add_argument("--max-memory", type=float, default=None, metavar="MIB",
                   help="stop a rung whose exploration passes MIB of memory (default: "
                   "three quarters of this machine's memory, shared by the --jobs)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--chart", metavar="FILE", type=Path, default=None,
                   help="on a violation, draw its counterexample as a message sequence "
                   "chart (SVG) into FILE")


def run(args: argparse.Namespace) -> int:
    given = {n: getattr(args, n) for n in BOUND_NAMES if getattr(args, n, None) is not None}
    try:
        rungs = [Rung("given", dataclasses.replace(DEFAULTS, **given), "")] if given \
            else list(LADDER)
    except ValueError as e:
        print(f"commspec check: {e}", file=sys.stderr)
        return 2
    jobs = getattr(args, "jobs", 1)
    if jobs < 1:
        print(f"commspec check: --jobs must be at least 1, got {jobs}", file=sys.stderr)
        return 2
    parallel = jobs > 1 and len(rungs) > 1
    limit = getattr(args, "max_memory", None)
    if limit is None:
        limit = _memory_mib() * 0.75 / (min(jobs, len(rungs)) if parallel else 1)
    done: list[tuple[Rung, Result]] = []
    start = time.monotonic()
    progress = _Progress(show=not args.quiet)
    results = (_in_parallel(rungs, jobs, progress, limit) if parallel
               else _in_order(rungs, progress, limit))
    try:
        for n, rung in enumerate(rungs, 1):
            b = rung.bounds
            where = f"rung {n}/{len(rungs)} {rung.name}: " if not given else ""
            print(f"commspec check: {where}{b.frontends} frontends, {b.comms} comms, "
                  f"{b.requests} requests, {b.reconnects} reconnects, {b.faults} faults, "
                  f"{b.adoptions} adoptions, keeps {b.detached} detached, {b.stock} stock, "
                  f"{b.relinks} relinks",
                  flush=True)
            progress.watch(n - 1)
            result = next(results)
            done.append((rung, result))
            report(result)
            if result.too_large is not None:
                break
            if result.violation is not None:
                chart = getattr(args, "chart", None)
                if chart is not None:
                    _draw(chart, result.violation, b, rung.name)
                break
    except KeyboardInterrupt:
        _summary(done, interrupted=progress.latest())
        return 130
    finally:
        results.close()  # a parallel run's workers end here, finished or not
    if not given:
        _summary(done, wall=time.monotonic() - start, jobs=min(jobs, len(rungs)))
    if any(r.too_large is not None for _, r in done):
        return 3
    return 0 if all(r.ok for _, r in done) else 1


class _Progress:
    """The latest figures of each rung being explored; those of the rung being
    reported are printed (unless quiet) and kept for an interrupted run's summary."""

    def __init__(self, *, show: bool) -> None:
        self.show = show
        self.watched = 0
        self._latest: dict[int, tuple[Stats, float]] = {}

    def watch(self, rung: int) -> None:
        self.watched = rung

    def latest(self) -> tuple[Stats, float]:
        """The watched rung's figures and the memory of the process exploring it."""
        return self._latest.get(self.watched, (Stats(), peak_memory_mib()))

    def record(self, rung: int, s: Stats, rss_mib: float) -> None:
        self._latest[rung] = (Stats(s.states, s.transitions, s.frontier, s.depth, s.seconds),
                              rss_mib)
        if self.show and rung == self.watched:
            print(
                f"  ... {s.states:>9,} states  frontier {s.frontier:>8,}  depth {s.depth:>3}  "
                f"{s.rate:>8,.0f} states/s  {rss_mib:>6,.0f} MiB",
                file=sys.stderr,
                flush=True,
            )

    def of(self, rung: int) -> Callable[[Stats], None]:
        return lambda s: self.record(rung, s, peak_memory_mib())


def _in_order(
    rungs: list[Rung], progress: _Progress, limit: float
) -> Generator[Result, None, None]:
    for n, rung in enumerate(rungs):
        yield check(SystemModel(rung.bounds), progress=progress.of(n), memory_limit_mib=limit)


# -- the ladder on several processes ------------------------------------------------
# Each rung is explored by a process of its own (forked, so it sees the parent's model
# classes), at most ``jobs`` at once; the costliest (the last: the ladder runs cheapest
# first) start first, so the run takes about as long as its largest rung. Results are
# reported in ladder order, as the sequential run reports them, and the first
# violation ends the run and its workers. Workers ignore SIGINT: a Ctrl-C is the
# parent's, which then ends them. A worker that dies without a result is an error.


def _worker(n: int, bounds: Bounds, limit: float, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = check(SystemModel(bounds), memory_limit_mib=limit,
                       progress=lambda s: out.put(("progress", n, s, peak_memory_mib())))
    except Exception as e:  # reported by the parent, which owns the terminal
        out.put(("failed", n, f"{type(e).__name__}: {e}"))
        return
    out.put(("done", n, result))


def _in_parallel(
    rungs: list[Rung], jobs: int, progress: _Progress, limit: float
) -> Generator[Result, None, None]:
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    waiting = list(range(len(rungs)))  # popped from the end: costliest first
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    results: dict[int, Result] = {}

    def start_more() -> None:
        while waiting and len(running) < jobs:
            n = waiting.pop()
            running[n] = context.Process(target=_worker, args=(n, rungs[n].bounds, limit, out),
                                         name=f"commspec check: {rungs[n].name}", daemon=True)
            running[n].start()

    try:
        start_more()
        for n in range(len(rungs)):
            while n not in results:
                try:
                    message = out.get(timeout=0.2)
                except queue_module.Empty:
                    for m, proc in running.items():
                        if not proc.is_alive() and m not in results:
                            raise RuntimeError(f"the process exploring rung {rungs[m].name!r} "
                                               f"ended without a result (exit code "
                                               f"{proc.exitcode})") from None
                    continue
                kind, m, *rest = message
                if kind == "progress":
                    progress.record(m, *rest)
                elif kind == "failed":
                    raise RuntimeError(f"rung {rungs[m].name!r}: {rest[0]}")
                else:
                    results[m] = rest[0]
                    running.pop(m).join()
                    start_more()
            yield results.pop(n)
    finally:
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.join()
        out.close()
        out.join_thread()


def _draw(path: Path, violation: Violation, bounds: Bounds, rung: str) -> None:
    title = f"{violation.property}: shortest counterexample ({rung})"
    try:
        path.write_text(render_chart(violation.steps, bounds.frontends, title))
    except OSError as e:
        print(f"commspec check: cannot write the chart to {path}: {e}", file=sys.stderr)
        return
    print(f"chart of the counterexample: {path}")


def _memory_mib() -> float:
    """This machine's memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def _summary(
    done: list[tuple[Rung, Result]],
    interrupted: tuple[Stats, float] | None = None,
    wall: float | None = None,
    jobs: int = 1,
) -> None:
    print("\nrung                       states   transitions  seconds  verdict")
    for rung, result in done:
        s = result.stats
        v = result.violation
        verdict = ("too large" if result.too_large is not None
                   else "held" if v is None else f"VIOLATED {v.property}")
        print(f"{rung.name:<24} {s.states:>9,} {s.transitions:>13,} {s.seconds:>8.1f}  {verdict}")
    if interrupted is not None:
        s, mib = interrupted
        print(f"{'(interrupted)':<24} {s.states:>9,} {s.transitions:>13,} "
              f"{s.seconds:>8.1f}  not finished: {mib:,.0f} MiB so far")
        print("INTERRUPTED: nothing is proven for the rung that did not finish")
        return
    total = sum(r.stats.seconds for _, r in done)
    states = sum(r.stats.states for _, r in done)
    print(f"{'all':<24} {states:>9,} {'':>13} {total:>8.1f}")
    if wall is not None:
        print(f"wall time {wall:.1f} s, {jobs} rung{'s' * (jobs != 1)} at a time")
    if all(r.ok for _, r in done):
        print(f"OK: every property holds on all {len(done)} rungs of the ladder")


def report(result: Result) -> None:
    s = result.stats
    print(
        f"explored {s.states:,} states, {s.transitions:,} transitions, depth {s.depth}, "
        f"in {s.seconds:.1f} s ({s.rate:,.0f} states/s)"
    )
    if result.too_large is not None:
        print(f"TOO LARGE for this machine: {result.too_large.describe(s)}")
        return
    v = result.violation
    if v is None:
        for p in PROPERTIES:
            print(f"  held  {p.name:<26} {p.statement}")
        print("OK: every property holds on this bound")
        return
    statement = (
        BY_NAME[v.property].statement
        if v.property in BY_NAME
        else ("every event is one its machine declares")
    )
    print(f"VIOLATED  {v.property}: {statement}")
    print(f"  {v.detail}")
    print(f"shortest counterexample ({len(v.steps)} steps):")
    for n, step in enumerate(v.steps, 1):
        print(f"  {n:>3}. {step.text}  [{step.kind.value}]")

