"""``commspec mbt``: the model-based test: Hypothesis drives the model and the kernel.

Runs the Hypothesis state machine of ``commspec.mbt`` against the reference
kernel, in-process by default (its protocol core and the frontends' on a
simulated network; Hypothesis also draws the delivery orders) or ``--live``
(the kernel in this process over ZeroMQ, each frontend in a process of its own),
with a progress bar; then the directed programs and the scenarios for the rows no
model action takes, and a summary (examples, steps, steps per second, transition
coverage per machine). On failure it prints the shrunk program as a standalone
pytest test that replays it. Exit status 0 when the system always matched the
model, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from commspec.helptext import summary
from commspec.mbt.adapter import ReferenceKernel
from commspec.mbt.edges import run_edges
from commspec.mbt.harness import MBT_BOUNDS, default_supported
from commspec.mbt.recorder import Coverage
from commspec.mbt.scenarios import run_directed
from commspec.mbt.session_edges import run_session_edges
from commspec.mbt.simulated_edges import run_simulated_edges
from commspec.model.system import Bounds

if TYPE_CHECKING:
    from commspec.mbt.machine import RunResult

BAR = 30


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mbt",
        help="model-based test: Hypothesis drives the model and the kernel in lockstep",
        description=summary(__doc__),
    )
    p.add_argument("--examples", type=int, default=50, metavar="N",
                   help="programs to run (default 50)")
    p.add_argument("--steps", type=int, default=20, metavar="N",
                   help="at most N actions per program (default 20)")
    p.add_argument("--frontends", type=int, default=MBT_BOUNDS.frontends, metavar="N",
                   help=f"frontends (default {MBT_BOUNDS.frontends})")
    p.add_argument("--reconnects", type=int, default=MBT_BOUNDS.reconnects, metavar="N",
                   help="reconnects the model allows in one program "
                   f"(default {MBT_BOUNDS.reconnects})")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="Hypothesis seed, to repeat a run")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--in-process", dest="live", action="store_false",
                       help="the protocol cores on a simulated network (the default)")
    where.add_argument("--live", dest="live", action="store_true",
                       help="the kernel over ZeroMQ, frontends as processes")
    p.set_defaults(live=False)


def run(args: argparse.Namespace) -> int:
    # Hypothesis is a test dependency: import it only for this command, so every
    # other command works from a plain `pip install .`.
    try:
        import hypothesis  # noqa: F401
    except ModuleNotFoundError:
        print("commspec mbt: needs Hypothesis; install the test extra: "
              "python -m pip install 'commspec[test]'", file=sys.stderr)
        return 2
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.examples < 1 or args.steps < 1 or args.frontends < 1 or args.reconnects < 0:
        print("commspec mbt: --examples, --steps and --frontends must be >= 1, "
              "--reconnects >= 0", file=sys.stderr)
        return 2
    b = MBT_BOUNDS
    bounds = Bounds(args.frontends, b.comms, b.requests, args.reconnects, b.faults)
    supported = default_supported(bounds)
    coverage = Coverage()
    system = "live" if args.live else "in-process"
    print(f"commspec mbt ({system}): {args.examples} examples of up to {args.steps} steps, "
          f"{bounds.frontends} frontend(s), {bounds.comms} comm slots, {bounds.requests} "
          f"request slots, {bounds.faults} faults, {bounds.reconnects} reconnects; "
          f"seed {args.seed}")
    result = _mbt_run(bounds, args, coverage, supported)
    if result.ok:
        try:
            directed = run_directed(coverage=coverage, in_process=not args.live)
            edges = ([name for name, _ in run_edges(coverage) + run_session_edges(coverage)]
                     if args.live else run_simulated_edges(coverage))
        except AssertionError as e:
            print(f"FAILED: {e}")
            return 1
        print(f"directed programs: {len(directed)} passed; scenarios for the rows no model "
              f"action takes: {len(edges)} passed")
    _summary(result, coverage, args.live)
    if result.ok:
        print(f"OK: the {system} system matched the model at every step")
        return 0
    print(f"FAILED: {type(result.failure).__name__}")
    print(str(result.failure))
    shrunk = result.shrunk
    if shrunk is not None:
        print(f"\nshrunk program ({len(shrunk.actions)} steps), which failed with:\n"
              f"{shrunk.failure}\n\nas a pytest test:\n")
        from commspec.mbt.machine import program_as_test

        print(program_as_test(shrunk.actions, bounds, supported,
                              choices=None if args.live else shrunk.choices))
    return 1


def _mbt_run(
    bounds: Bounds, args: argparse.Namespace, coverage: Coverage, supported: frozenset[str]
) -> RunResult:
    tty = sys.stderr.isatty()

    def progress(r: RunResult) -> None:
        done = min(r.examples, args.examples)
        filled = BAR * done // args.examples
        line = (f"  [{'#' * filled}{'.' * (BAR - filled)}] {r.examples} examples, "
                f"{r.steps} steps")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr,
              flush=True)

    from commspec.mbt import machine

    result = machine.run(ReferenceKernel, bounds, in_process=not args.live,
                         examples=args.examples, steps=args.steps, seed=args.seed,
                         coverage=coverage, supported=supported, progress=progress)
    if tty:
        print(file=sys.stderr)
    return result


def _summary(result: RunResult, coverage: Coverage, live: bool) -> None:
    overall = result.steps / result.seconds if result.seconds > 0 else 0.0
    if live:
        print(f"examples {result.examples}, steps {result.steps}, {result.seconds:.1f} s, "
              f"{result.steps_per_second:,.0f} live steps/s ({overall:,.0f} steps/s with "
              "kernel start/stop and Hypothesis; "
              f"{result.steps_per_second_without_freezes:,.0f} live steps/s leaving out "
              "freezes, which wait out the kernel's heartbeat timeout)")
    else:
        print(f"examples {result.examples}, steps {result.steps}, {result.seconds:.1f} s, "
              f"{result.steps_per_second:,.0f} steps/s in the lockstep ({overall:,.0f} "
              "steps/s with Hypothesis)")
    print(f"{'machine':<16}{'transitions taken':>20}")
    for name, (taken, declared) in coverage.per_machine().items():
        print(f"{name:<16}{taken:>12} / {declared:<6}")
    missing = coverage.uncovered()
    if missing:
        print(f"not taken ({len(missing)}):")
        for m, s, e, d in missing:
            print(f"  {m}: {s} --{e}--> {d}")
