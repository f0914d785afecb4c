"""``commspec trace-check FILE...``: replay recorded JSON-lines traces against the machines.

Each file is checked on its own (one endpoint's trace each). Exit status: 0 when
every event of every file is a declared transition from the state its object was
in; 1 at a file's first event the model does not allow (printed with the object's
preceding events), or for a file with no events unless ``--allow-empty``; 2 when a
file cannot be read or a line is not a trace event. The worst status wins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from commspec.helptext import plain
from commspec.model.trace_check import TraceFormatError, check_lines


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace-check",
        help="check recorded JSON-lines traces against the declared machines",
        description=plain(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="a JSON-lines trace (JsonLinesSink output); each is checked on its own")
    p.add_argument(
        "--context", type=int, default=5, metavar="N",
        help="preceding events of the offending object to show (default 5)",
    )
    p.add_argument("--allow-empty", action="store_true",
                   help="a trace with no events passes (by default it fails: nothing was "
                   "checked)")


def run(args: argparse.Namespace) -> int:
    if args.context < 0:
        print("commspec trace-check: --context must be >= 0", file=sys.stderr)
        return 2
    # every file is checked and reported; the status is the worst: 2 over 1 over 0
    return max(check_file(path, args.context, args.allow_empty) for path in args.files)


def check_file(path: Path, context: int, allow_empty: bool) -> int:
    try:
        with path.open(encoding="utf-8") as lines:
            report = check_lines(lines, context=context)
    except OSError as e:
        print(f"commspec trace-check: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"commspec trace-check: {path} is not UTF-8 text: {e.reason}", file=sys.stderr)
        return 2
    except TraceFormatError as e:
        print(f"commspec trace-check: {path}: line {e.line}: not a trace event: {e.reason}",
              file=sys.stderr)
        return 2
    if report.deviation is not None:
        print(f"{path}: the model does not allow this event")
        print(report.deviation.describe())
        print(f"checked before it: {report.summary()}")
        return 1
    if report.events == 0:
        if allow_empty:
            print(f"{path}: no events (allowed by --allow-empty): nothing to check")
            return 0
        print(f"commspec trace-check: {path} has no events, so nothing was checked (was "
              "anything traced into it? --allow-empty lets an empty trace pass)",
              file=sys.stderr)
        return 1
    print(f"{path}: OK, every event is a declared transition: {report.summary()}")
    return 0
