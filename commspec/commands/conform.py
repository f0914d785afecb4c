"""``commspec conform``: hold any kernel to the spec's wire-observable rules.

The kernel is started as Jupyter frontends start it (jupyter_client's KernelManager,
from a kernelspec, or from a command line containing {connection_file}), once for
every check. Each check holds it to one rule of SPEC.md and prints PASS, FAIL or N/A
with a figure, the SPEC rule and the property it stands for, and on a failure the
evidence: what was sent and what came back. A profile is the code that gives a
kernel the targets the checks talk to (python: the comm package; commspec: none is
needed; none: skip what needs code).

Exit status: 0 only if every applicable check passes; 1 if one fails; 2 on a usage
error (an unknown check or profile, a kernelspec that does not exist) or a kernel that
does not start. CONFORMANCE.md, the scorecard of several kernels side by side, is
written by python -m commspec.conform.document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from commspec import __version__
from commspec.helptext import plain


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "conform", help="hold any kernel to the spec from outside: one verdict per rule",
        description=plain(__doc__ or ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()  # one of them, unless --list
    source.add_argument("--kernelspec", metavar="NAME", help="an installed kernelspec")
    source.add_argument("--cmd", metavar="COMMAND",
                        help="a command line that starts the kernel; must contain "
                        "{connection_file}")
    p.add_argument("--profile", default=None,
                   help="python, r, julia, commspec or none (default: commspec if the kernel "
                   "declares the spec, else the kernel's language if it has one, else none)")
    p.add_argument("--only", metavar="CHECKS",
                   help="comma-separated check names (default: all; --list shows them)")
    p.add_argument("--list", action="store_true",
                   help="list the checks and exit (no kernel is needed)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the verdicts as JSON")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    p.add_argument("--start-timeout", type=float, default=60.0, metavar="S",
                   help="how long a kernel may take to answer kernel_info (default 60)")
    p.add_argument("--reply-timeout", type=float, default=10.0, metavar="S",
                   help="how long an answer that should come at once may take (default 10)")
    p.add_argument("--departure-timeout", type=float, default=30.0, metavar="S",
                   help="how long what a departure causes may take (default 30)")


def run(args: argparse.Namespace) -> int:
    from commspec.conform import (
        PROFILES,
        KernelSource,
        KernelStartFailed,
        Timeouts,
        choose_profile,
        run_checks,
        scorecard,
        select,
    )

    try:
        checks = select(args.only.split(",") if args.only else None)
    except ValueError as e:
        print(f"commspec conform: {e}", file=sys.stderr)
        return 2
    if args.list:
        for c in checks:
            needs = f" (needs {', '.join(sorted(c.needs))})" if c.needs else ""
            print(f"{c.name:<24} {c.title}{needs}")
        return 0
    if args.kernelspec is None and args.cmd is None:
        print("commspec conform: give --kernelspec NAME or --cmd COMMAND (the kernel to "
              "check)", file=sys.stderr)
        return 2
    if args.profile is not None and args.profile not in PROFILES:
        print(f"commspec conform: unknown profile {args.profile!r}; known: "
              f"{', '.join(PROFILES)}", file=sys.stderr)
        return 2
    for name in ("start_timeout", "reply_timeout", "departure_timeout"):
        if not getattr(args, name) > 0:
            print(f"commspec conform: --{name.replace('_', '-')} must be a positive number "
                  "of seconds", file=sys.stderr)
            return 2
    try:
        source = KernelSource(kernelspec=args.kernelspec, cmd=args.cmd)
    except ValueError as e:
        print(f"commspec conform: {e}", file=sys.stderr)
        return 2
    timeouts = Timeouts(args.start_timeout, args.reply_timeout, args.departure_timeout)
    try:
        profile, info = choose_profile(source, args.profile, timeouts)
    except KernelStartFailed as e:
        print(f"commspec conform: {e}", file=sys.stderr)
        return 2
    implementation = f"{info.get('implementation', '?')} {info.get('implementation_version', '')}"
    print(f"commspec conform {__version__}: {source.describe()} ({implementation.strip()}), "
          f"profile {profile.name}, {len(checks)} checks", flush=True)

    def progress(verdict: Any) -> None:
        print(f"  {verdict.outcome.value:<4} {verdict.check.name} ({verdict.seconds:.1f} s)",
              flush=True)

    verdicts = run_checks(checks, source, profile, timeouts, progress)
    print()
    print(scorecard.as_text(verdicts))
    about = {"kernel": source.describe(), "implementation": implementation.strip(),
             "profile": profile.name, "commspec": __version__}
    if args.json is not None:
        args.json.write_text(scorecard.as_json(verdicts, about) + "\n")
    if args.junit is not None:
        args.junit.write_text(scorecard.as_junit(verdicts, f"commspec conform: "
                                                 f"{source.describe()}") + "\n")
    return scorecard.exit_code(verdicts)
