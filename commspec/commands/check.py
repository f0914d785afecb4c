"""``commspec check``: explore the bounded system model and prove its properties.

With no bound given, every rung of the ladder of bounds (``commspec.model.ladder``),
cheapest first; with any ``--frontends``/``--comms``/... given, that one bound (the
others at their defaults). Exit 0 if every property holds, 1 with the shortest
counterexample of the first bound that breaks one, 2 for bad arguments, 130 when
interrupted (after a summary of what was explored).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
from collections.abc import Callable
from pathlib import Path

from commspec.chart import render_chart
from commspec.model.checker import Result, Stats, Violation, check
from commspec.model.ladder import LADDER, Rung
from commspec.model.properties import BY_NAME, PROPERTIES
from commspec.model.system import Bounds, SystemModel

DEFAULTS = Bounds()
BOUND_NAMES = ("frontends", "comms", "requests", "reconnects", "faults")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check", help="explore the bounded system model exhaustively", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, meaning in zip(BOUND_NAMES, (
        "frontend processes",
        "comm slots (each opened as a persistent or a default target)",
        "request slots (comm RPCs either way, stdin requests)",
        "reconnects, in all",
        "crashes, clean exits and freezes, in all",
    ), strict=True):
        p.add_argument(
            f"--{name}",
            type=int,
            default=None,
            metavar="N",
            help=f"{meaning} (default {getattr(DEFAULTS, name)} when another bound is given)",
        )
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
    done: list[tuple[Rung, Result]] = []
    current: list[Stats] = []
    try:
        for n, rung in enumerate(rungs, 1):
            b = rung.bounds
            where = f"rung {n}/{len(rungs)} {rung.name}: " if not given else ""
            print(f"commspec check: {where}{b.frontends} frontends, {b.comms} comms, "
                  f"{b.requests} requests, {b.reconnects} reconnects, {b.faults} faults",
                  flush=True)
            current[:] = []
            result = check(SystemModel(b), progress=_progress(current, show=not args.quiet))
            done.append((rung, result))
            report(result)
            if result.violation is not None:
                chart = getattr(args, "chart", None)
                if chart is not None:
                    _draw(chart, result.violation, b, rung.name)
                break
    except KeyboardInterrupt:
        _summary(done, interrupted=current[-1] if current else Stats())
        return 130
    if not given:
        _summary(done)
    return 0 if all(r.ok for _, r in done) else 1


def _draw(path: Path, violation: Violation, bounds: Bounds, rung: str) -> None:
    title = f"{violation.property}: shortest counterexample ({rung})"
    try:
        path.write_text(render_chart(violation.steps, bounds.frontends, title))
    except OSError as e:
        print(f"commspec check: cannot write the chart to {path}: {e}", file=sys.stderr)
        return
    print(f"chart of the counterexample: {path}")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _progress(seen: list[Stats], *, show: bool) -> Callable[[Stats], None]:
    """Keeps the latest figures in ``seen`` (for an interrupted run's summary, quiet or
    not) and prints them unless ``show`` is off."""
    def record(s: Stats) -> None:
        seen[:] = [Stats(s.states, s.transitions, s.frontier, s.depth, s.seconds)]
        if not show:
            return
        print(
            f"  ... {s.states:>9,} states  frontier {s.frontier:>8,}  depth {s.depth:>3}  "
            f"{s.rate:>8,.0f} states/s  {_rss_mib():>6,.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return record


def _summary(done: list[tuple[Rung, Result]], interrupted: Stats | None = None) -> None:
    print("\nrung                       states   transitions  seconds  verdict")
    for rung, result in done:
        s = result.stats
        v = result.violation
        verdict = "held" if v is None else f"VIOLATED {v.property}"
        print(f"{rung.name:<24} {s.states:>9,} {s.transitions:>13,} {s.seconds:>8.1f}  {verdict}")
    if interrupted is not None:
        print(f"{'(interrupted)':<24} {interrupted.states:>9,} {interrupted.transitions:>13,} "
              f"{interrupted.seconds:>8.1f}  not finished: {_rss_mib():,.0f} MiB so far")
        print("INTERRUPTED: nothing is proven for the rung that did not finish")
        return
    total = sum(r.stats.seconds for _, r in done)
    states = sum(r.stats.states for _, r in done)
    print(f"{'all':<24} {states:>9,} {'':>13} {total:>8.1f}")
    if all(r.ok for _, r in done):
        print(f"OK: every property holds on all {len(done)} rungs of the ladder")


def report(result: Result) -> None:
    s = result.stats
    print(
        f"explored {s.states:,} states, {s.transitions:,} transitions, depth {s.depth}, "
        f"in {s.seconds:.1f} s ({s.rate:,.0f} states/s)"
    )
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

