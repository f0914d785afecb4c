"""``commspec mbt``: the model-based test: Hypothesis drives the model and the kernel.

Runs the Hypothesis state machine of ``commspec.mbt`` against the reference
kernel, in-process by default (its protocol core and the frontends' on a
simulated network; Hypothesis also draws the delivery orders) or ``--live``
(the kernel in this process over ZeroMQ, each frontend in a process of its own),
then the directed programs and the scenarios for the rows no model action takes,
each phase with a progress bar; and a summary (programs, steps and seconds per
phase, steps per second, transition coverage per machine). ``--examples N`` runs N
random programs; without ``--seed`` one is drawn and printed, and ``--seed`` with it
repeats the run. The bad input the kernel and frontends drop, as the model allows
(some scenarios send it on purpose), is counted instead of logged. On failure it
prints the shrunk program as a standalone pytest test that replays it. Exit status 0
when the system always matched the model, 1 otherwise, 2 on bad arguments.

``--cmd '... {connection_file}'`` or ``--kernelspec NAME`` tests another kernel, live and
out of process, through its trace file (``COMMSPEC_TRACE``) and its control socket
(``COMMSPEC_CONTROL``; SPEC.md, "A kernel in any language"): each program starts it
afresh; the directed programs each end in a verdict (skipped when they need an action
left out with ``--skip``, or what the started kernel says it lacks: ``hold_inbound``);
the scenarios are those through the adapter; a failure is printed as a test that
replays it against that kernel. The freezes need the kernel's ZMTP heartbeat to drop a
stopped frontend within ``--step-timeout``: for commspec kernel,
``--heartbeat-timeout 0.25``; for commspec.ipykernel,
``c.CommspecKernelApp.heartbeat_interval = 0.05`` and
``c.CommspecKernelApp.heartbeat_timeout = 0.25`` in an IPython profile's
``ipython_config.py`` (``$IPYTHONDIR/profile_default``), or the same options on its
command line.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from commspec.conform.kernel import KernelSource
from commspec.helptext import plain
from commspec.impl.core.badinput import BAD_INPUT
from commspec.mbt.adapter import KernelAdapter, ReferenceKernel
from commspec.mbt.adapter_edges import ADAPTER_EDGES, run_adapter_edges
from commspec.mbt.adapters import ADAPTERS
from commspec.mbt.edges import EDGES, run_edges
from commspec.mbt.external import CONTROL_TIMEOUT, START_TIMEOUT, ExternalKernel, as_code
from commspec.mbt.harness import MBT_BOUNDS, default_supported, without
from commspec.mbt.live import QUIET, STEP_TIMEOUT
from commspec.mbt.recorder import Coverage
from commspec.mbt.scenarios import DIRECTED, Verdict, directed_verdicts
from commspec.mbt.session_edges import SESSION_EDGES, run_session_edges
from commspec.mbt.simulated_edges import SIMULATED_EDGES, run_simulated_edges
from commspec.model.system import Bounds

if TYPE_CHECKING:
    from commspec.mbt.machine import RunResult

BAR = 30


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mbt",
        help="model-based test: Hypothesis drives the model and the kernel in lockstep",
        description=plain(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--examples", type=int, default=50, metavar="N",
                   help="random programs to run (default 50)")
    p.add_argument("--steps", type=int, default=20, metavar="N",
                   help="at most N actions per program (default 20)")
    p.add_argument("--frontends", type=int, default=MBT_BOUNDS.frontends, metavar="N",
                   help=f"frontends (default {MBT_BOUNDS.frontends})")
    p.add_argument("--reconnects", type=int, default=MBT_BOUNDS.reconnects, metavar="N",
                   help="reconnects the model allows in one program "
                   f"(default {MBT_BOUNDS.reconnects})")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="Hypothesis seed, to repeat a run (default: drawn, and printed)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--in-process", dest="live", action="store_false",
                       help="the protocol cores on a simulated network (the default)")
    where.add_argument("--live", dest="live", action="store_true",
                       help="the kernel over ZeroMQ, frontends as processes")
    p.set_defaults(live=False)
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument("--cmd", default=None, metavar="'... {connection_file}'",
                        help="test this kernel, started from this command line (live, out "
                        "of process: it must take COMMSPEC_TRACE and COMMSPEC_CONTROL, "
                        "SPEC.md 'A kernel in any language')")
    kernel.add_argument("--kernelspec", default=None, metavar="NAME",
                        help="test the kernel of this kernelspec (as --cmd)")
    p.add_argument("--adapter", default=None, choices=sorted(ADAPTERS),
                   help="test a kernel without commspec's trace and control socket through "
                   "this adapter: ipykernel (a shim it runs, reading ipykernel's internals; "
                   "kernelspec python3 unless named; what it cannot do is skipped)")
    p.add_argument("--skip", default="", metavar="ACTIONS",
                   help="leave these actions out, comma-separated (freeze, shutdown, "
                   "race_queued...): for a kernel that cannot make them happen")
    p.add_argument("--step-timeout", type=_seconds, default=STEP_TIMEOUT, metavar="S",
                   help=f"the longest a live step may take to settle (default {STEP_TIMEOUT:g})")
    p.add_argument("--quiet", type=_seconds, default=QUIET, metavar="S",
                   help="a live step whose trace was silent this long without matching "
                   f"has failed (default {QUIET:g})")
    p.add_argument("--start-timeout", type=_seconds, default=START_TIMEOUT, metavar="S",
                   help="how long a --cmd or --kernelspec kernel may take to start "
                   f"(default {START_TIMEOUT:g})")
    p.add_argument("--control-timeout", type=_seconds, default=CONTROL_TIMEOUT, metavar="S",
                   help="how long such a kernel may take to answer its control socket "
                   f"(default {CONTROL_TIMEOUT:g})")
    p.add_argument("--max-shrinks", type=int, default=None, metavar="N",
                   help="stop shrinking a failure after N programs (default: no bound)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], not {text!r}")
    return value


@dataclass(frozen=True)
class KernelChoice:
    """The kernel under test: the reference one (in-process or live), or another kernel
    in a process of its own (``source``)."""

    source: KernelSource | None
    start_timeout: float = START_TIMEOUT
    control_timeout: float = CONTROL_TIMEOUT
    #: the adapter of commspec.mbt.adapters it is tested through (None: ExternalKernel)
    adapter: str | None = None

    @property
    def external(self) -> bool:
        return self.source is not None

    def factory(self) -> Callable[[], KernelAdapter]:
        if self.source is None:
            return ReferenceKernel
        made_by = ADAPTERS[self.adapter] if self.adapter else ExternalKernel
        return functools.partial(made_by, self.source, self.start_timeout,
                                 self.control_timeout)

    def skipped(self) -> tuple[str, ...]:
        """The actions its adapter says the kernel cannot make happen."""
        return ADAPTERS[self.adapter].skipped if self.adapter else ()

    def describe(self) -> str:
        if self.source is None:
            return "the reference kernel"
        through = f" through the {self.adapter} adapter" if self.adapter else ""
        return self.source.describe() + through

    def as_code(self) -> tuple[str, list[tuple[str, str]]] | None:
        if self.source is not None and self.adapter:
            return ADAPTERS[self.adapter](self.source).as_code()
        return None if self.source is None else as_code(self.source)

    def repeat_args(self) -> str:
        if self.source is None:
            return ""
        if self.adapter:
            return f"--adapter {self.adapter} " + KernelChoice(self.source).repeat_args()
        if self.source.kernelspec is not None:
            return f"--kernelspec {shlex.quote(self.source.kernelspec)} "
        return f"--cmd {shlex.quote(self.source.cmd or '')} "


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


# -- display ---------------------------------------------------------------------------


class Bar:
    """One phase's progress on stderr: redrawn in place on a terminal; otherwise a line
    each time the bar grows, so a log shows the run's pace without a line per program."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._shown = -1
        self._pending = False  # a terminal line drawn and not yet ended

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        filled = BAR * min(done, self.total) // max(self.total, 1)
        if not (self.tty or force or filled != self._shown):
            return
        self._shown = filled
        line = (f"  [{'#' * filled}{'.' * (BAR - filled)}] {self.label} "
                f"{done}/{self.total}{detail}")
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            self._pending = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def interrupt(self) -> None:
        """End a half-drawn line, so that something else can be printed below it."""
        if self._pending:
            self.stream.write("\n")
            self.stream.flush()
            self._pending = False

    def advance(self) -> Callable[[str], None]:
        """A ``done`` callback for the scenario runners: one step per name heard."""
        count = 0

        def done(name: str) -> None:
            nonlocal count
            count += 1
            self.update(count, force=count == self.total)

        return done


class Screen:
    """The progress bars of one run, one phase after another: the latest is the one a
    log line must not cut in half."""

    def __init__(self) -> None:
        self.latest: Bar | None = None

    def bar(self, label: str, total: int) -> Bar:
        self.latest = Bar(label, total)
        return self.latest

    def interrupt(self) -> None:
        if self.latest is not None:
            self.latest.interrupt()


@dataclass
class PhaseTime:
    name: str
    what: str
    seconds: float


@contextlib.contextmanager
def counted_bad_input(before_other: Callable[[], None]) -> Iterator[Counter[str]]:
    """While the run lasts, the bad-input warnings of the commspec loggers are counted
    by reason instead of printed (the scenarios send bad input on purpose, and the
    random programs' races make it too, as the model allows: the lockstep, not the log,
    judges them). Every other record goes on to the usual handlers, after
    ``before_other`` (which ends a half-drawn progress line)."""
    reasons: Counter[str] = Counter()
    root = logging.getLogger()

    class Sorter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reason = getattr(record, BAD_INPUT, None)
            if reason is not None:
                reasons[str(reason)] += 1
                return
            before_other()
            root.handle(record)

    logger = logging.getLogger("commspec")
    sorter = Sorter()
    propagate = logger.propagate
    logger.addHandler(sorter)
    logger.propagate = False
    try:
        yield reasons
    finally:
        logger.propagate = propagate
        logger.removeHandler(sorter)


# -- the run ---------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    if args.examples < 1 or args.steps < 1 or args.frontends < 1 or args.reconnects < 0 \
            or (args.max_shrinks is not None and args.max_shrinks < 0):
        print("commspec mbt: --examples, --steps and --frontends must be >= 1, "
              "--reconnects and --max-shrinks >= 0", file=sys.stderr)
        return 2
    try:
        kernel = _kernel_choice(args)
        skipped = [n.strip() for n in args.skip.split(",") if n.strip()]
        skipped += [n for n in kernel.skipped() if n not in skipped]
        supported = without(default_supported(MBT_BOUNDS), skipped)
    except ValueError as e:
        print(f"commspec mbt: {e}", file=sys.stderr)
        return 2
    args.live = args.live or kernel.external  # another kernel is always live
    from commspec.mbt.machine import random_seed

    b = MBT_BOUNDS
    bounds = Bounds(args.frontends, b.comms, b.requests, args.reconnects, b.faults)
    coverage = Coverage()
    seed = args.seed if args.seed is not None else random_seed()
    system = "live" if args.live else "in-process"
    print(f"commspec mbt ({system}): {kernel.describe()}; {args.examples} random programs "
          f"of up to {args.steps} steps, {bounds.frontends} frontend(s), {bounds.comms} "
          f"comm slots, {bounds.requests} request slots, {bounds.faults} faults, "
          f"{bounds.reconnects} reconnects; seed {seed} (--seed {seed} repeats the run)"
          + (f"; skipping {', '.join(skipped)}" if skipped else ""), flush=True)
    if kernel.external and not _preflight(kernel):
        return 1
    screen = Screen()
    times: list[PhaseTime] = []
    with counted_bad_input(screen.interrupt) as reasons:
        began = time.monotonic()
        result = _random_programs(bounds, args, seed, coverage, supported, kernel,
                                  screen.bar("random programs", args.examples))
        times += _search_times(result, time.monotonic() - began)
        passed = result.ok and _scenarios(args.live, kernel, supported, coverage, times,
                                          screen)
    _summary(result, coverage, args.live, times, reasons)
    if passed:
        print(f"OK: the {system} system ({kernel.describe()}) matched the model at every "
              "step")
        return 0
    if not result.ok:
        _report_failure(result, bounds, supported, args.live, kernel)
    skip = f"--skip {shlex.quote(args.skip)} " if args.skip.strip() else ""
    print(f"to repeat: commspec mbt {kernel.repeat_args()}{skip}"
          f"{'--live ' if args.live and not kernel.external else ''}--examples "
          f"{args.examples} --steps {args.steps} --frontends {args.frontends} "
          f"--reconnects {args.reconnects} --seed {seed}")
    return 1


def _preflight(kernel: KernelChoice) -> bool:
    """Start the kernel under test once and stop it: one that cannot start, or does not
    serve the control socket, is said so once, instead of failing every program (and
    the shrinking's) the same way."""
    from commspec.impl.tracing import ListSink

    adapter = kernel.factory()()
    try:
        adapter.start(ListSink())
    except Exception as e:  # a kernel that did not start: its cause is the message
        print(f"FAILED ({kernel.describe()}): the kernel cannot be tested this way: {e}")
        return False
    finally:
        adapter.stop()
    return True


def _kernel_choice(args: argparse.Namespace) -> KernelChoice:
    """The kernel to test; ValueError if the command line cannot start one."""
    if args.cmd is None and args.kernelspec is None:
        if args.adapter is None:
            return KernelChoice(None)
        return KernelChoice(ADAPTERS[args.adapter].default_source, args.start_timeout,
                            args.control_timeout, args.adapter)
    return KernelChoice(KernelSource(kernelspec=args.kernelspec, cmd=args.cmd),
                        args.start_timeout, args.control_timeout, args.adapter)


def _search_times(result: RunResult, seconds: float) -> list[PhaseTime]:
    """The random programs' phase (set-up included), and the shrinking's if any."""
    search = result.search_seconds + (seconds - result.seconds)
    times = [PhaseTime("random programs",
                       f"{result.searched} programs, {result.searched_steps} steps", search)]
    if result.shrinks:
        times.append(PhaseTime("shrinking", f"{result.shrinks} programs, "
                               f"{result.steps - result.searched_steps} steps",
                               seconds - search))
    return times


def _random_programs(
    bounds: Bounds, args: argparse.Namespace, seed: int, coverage: Coverage,
    supported: frozenset[str], kernel: KernelChoice, bar: Bar,
) -> RunResult:
    def progress(r: RunResult) -> None:
        if not r.found_failure:
            bar.update(r.examples, f", {r.steps} steps", force=r.examples == args.examples)
        else:  # a program failed: what follows is the shrinking
            bar.update(r.searched, f": one FAILED; shrinking it, {r.shrinks} programs "
                       "tried", force=r.shrinks % 10 == 0)

    from commspec.mbt import machine

    try:
        return machine.run(kernel.factory(), bounds, in_process=not args.live,
                           examples=args.examples, steps=args.steps, seed=seed,
                           coverage=coverage, supported=supported, progress=progress,
                           quiet=args.quiet, step_timeout=args.step_timeout,
                           max_shrinks=args.max_shrinks)
    finally:
        bar.interrupt()


def _scenarios(
    live: bool, kernel: KernelChoice, supported: frozenset[str], coverage: Coverage,
    times: list[PhaseTime], screen: Screen,
) -> bool:
    """The directed programs, each to its verdict, then the scenarios; whether none
    failed."""
    began = time.monotonic()
    directed = screen.bar("directed programs", len(DIRECTED))
    verdicts = directed_verdicts(kernel.factory(), coverage, in_process=not live,
                                 done=directed.advance(), supported=supported)
    directed.interrupt()
    ran = [v for v in verdicts if v.status != "skipped"]
    times.append(PhaseTime("directed programs",
                           f"{len(ran)} programs, {sum(v.steps for v in ran)} steps",
                           time.monotonic() - began))
    for v in verdicts:
        if v.status != "passed":
            print(f"directed program {v.status.upper()}: {v.name}: {v.detail}")
    failed = [v for v in verdicts if v.status == "failed"]
    if failed:
        _directed_reproducer(failed[0], supported, live, kernel)
        return False
    if kernel.external:
        return _adapter_scenarios(kernel, coverage, times, screen)
    began = time.monotonic()
    total = len(EDGES) + len(SESSION_EDGES) if live else len(SIMULATED_EDGES)
    scenes = screen.bar("scenarios", total)
    done = scenes.advance()
    try:
        if live:
            passed = len(run_edges(coverage, done=done) + run_session_edges(coverage, done=done))
        else:
            passed = len(run_simulated_edges(coverage, done=done))
    except AssertionError as e:
        scenes.interrupt()
        print(f"FAILED: {e}")
        return False
    scenes.interrupt()
    times.append(PhaseTime("scenarios", f"{passed} for the rows no model action takes",
                           time.monotonic() - began))
    return True


def _adapter_scenarios(kernel: KernelChoice, coverage: Coverage, times: list[PhaseTime],
                       screen: Screen) -> bool:
    """Another kernel's scenarios: those through the adapter. The others reach into the
    reference kernel (its endpoint, a scripted kernel) and are reference-only."""
    print("scenarios of commspec.mbt.edges and session_edges: skipped, reference-only "
          "(they drive the reference kernel's internals)")
    began = time.monotonic()
    scenes = screen.bar("scenarios through the adapter", len(ADAPTER_EDGES))
    verdicts = run_adapter_edges(kernel.factory(), coverage, done=scenes.advance())
    scenes.interrupt()
    for v in verdicts:
        if v.status != "passed":
            print(f"scenario {v.status.upper()}: {v.name}: {v.detail}")
    passed = [v for v in verdicts if v.status == "passed"]
    times.append(PhaseTime("scenarios", f"{len(passed)} of {len(verdicts)} through the "
                           "adapter", time.monotonic() - began))
    return len(passed) == len(verdicts)


def _directed_reproducer(verdict: Verdict, supported: frozenset[str], live: bool,
                         kernel: KernelChoice) -> None:
    """The first failed directed program as a pytest test that replays it live against
    the kernel that failed (in-process, its delivery orders are not kept: live)."""
    from commspec.mbt.machine import program_as_test

    bounds, program = next((b, p) for name, b, p in DIRECTED if name == verdict.name)
    print(f"\nthe directed program {verdict.name!r} as a pytest test (against "
          f"{kernel.describe()}, live):\n")
    print(program_as_test(list(program), bounds, supported, adapter=kernel.as_code()))


# -- output ----------------------------------------------------------------------------


def _summary(result: RunResult, coverage: Coverage, live: bool, times: list[PhaseTime],
             reasons: Counter[str]) -> None:
    for t in times:
        print(f"{t.name:<19} {t.what}, {t.seconds:.1f} s")
    # the phases follow one another: the total is their sum, of the figures as shown
    print(f"{'total':<19} {sum(round(t.seconds, 1) for t in times):.1f} s")
    overall = result.steps / result.seconds if result.seconds > 0 else 0.0
    if live:
        print(f"speed: {result.steps_per_second:,.0f} live steps/s "
              f"({overall:,.0f} steps/s with kernel start/stop and Hypothesis; "
              f"{result.steps_per_second_without_freezes:,.0f} live steps/s leaving out "
              "freezes, which wait out the kernel's heartbeat timeout)")
    else:
        print(f"speed: {result.steps_per_second:,.0f} steps/s in the lockstep "
              f"({overall:,.0f} steps/s with Hypothesis)")
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
    allowed = " as the model allows" if result.ok else ""  # a failed run proves nothing
    print(f"bad input dropped{allowed}: {sum(reasons.values())} warnings"
          + (f" ({counts})" if counts else ""))
    print(f"{'machine':<16}{'transitions taken':>20}")
    for name, (taken, declared) in coverage.per_machine().items():
        print(f"{name:<16}{taken:>12} / {declared:<6}")
    missing = coverage.uncovered()
    if missing:
        print(f"not taken ({len(missing)}):")
        for m, s, e, d in missing:
            print(f"  {m}: {s} --{e}--> {d}")


def _report_failure(result: RunResult, bounds: Bounds, supported: frozenset[str],
                    live: bool, kernel: KernelChoice) -> None:
    print(f"FAILED ({kernel.describe()}): {type(result.failure).__name__}")
    print(str(result.failure))
    shrunk = result.shrunk
    if shrunk is not None:
        print(f"\nshrunk program ({len(shrunk.actions)} steps), which failed with:\n"
              f"{shrunk.failure}\n\nas a pytest test (against {kernel.describe()}):\n")
        from commspec.mbt.machine import program_as_test

        print(program_as_test(shrunk.actions, bounds, supported,
                              choices=None if live else shrunk.choices,
                              adapter=kernel.as_code()))
