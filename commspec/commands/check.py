"""``commspec check``: explore the bounded system model and prove its properties."""

from __future__ import annotations

import argparse
import sys

from commspec.model.checker import Result, Stats, check
from commspec.model.properties import BY_NAME, PROPERTIES
from commspec.model.system import Bounds, SystemModel

DEFAULTS = Bounds()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check", help="explore the bounded system model exhaustively", description=__doc__
    )
    for name, meaning in (
        ("frontends", "frontend processes"),
        ("comms", "comm slots (each opened as a persistent or a default target)"),
        ("requests", "request slots (comm RPCs either way, stdin requests)"),
        ("reconnects", "reconnects, in all"),
        ("faults", "crashes, clean exits and freezes, in all"),
    ):
        p.add_argument(
            f"--{name}",
            type=int,
            default=getattr(DEFAULTS, name),
            metavar="N",
            help=f"{meaning} (default {getattr(DEFAULTS, name)})",
        )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    try:
        bounds = Bounds(args.frontends, args.comms, args.requests, args.reconnects, args.faults)
    except ValueError as e:
        print(f"commspec check: {e}", file=sys.stderr)
        return 2
    print(
        f"commspec check: {bounds.frontends} frontends, {bounds.comms} comms, "
        f"{bounds.requests} requests, {bounds.reconnects} reconnects, {bounds.faults} faults"
    )
    result = check(SystemModel(bounds), progress=None if args.quiet else _progress)
    report(result)
    return 0 if result.ok else 1


def _progress(s: Stats) -> None:
    print(
        f"  ... {s.states:>9,} states  frontier {s.frontier:>8,}  depth {s.depth:>3}  "
        f"{s.rate:>8,.0f} states/s",
        file=sys.stderr,
        flush=True,
    )


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
