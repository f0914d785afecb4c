"""``commspec trace-check FILE``: replay a recorded JSON-lines trace against the machines.

Exit status: 0 when every event is a declared transition from the state its
object was in; 1 at the first event the model does not allow (printed with the
object's preceding events); 2 when the file cannot be read or a line is not a
trace event.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from commspec.helptext import summary
from commspec.model.trace_check import TraceFormatError, check_lines


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace-check",
        help="check a recorded JSON-lines trace against the declared machines",
        description=summary(__doc__),
    )
    p.add_argument("file", type=Path, help="a JSON-lines trace (JsonLinesSink output)")
    p.add_argument(
        "--context", type=int, default=5, metavar="N",
        help="preceding events of the offending object to show (default 5)",
    )


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    if args.context < 0:
        print("commspec trace-check: --context must be >= 0", file=sys.stderr)
        return 2
    try:
        with path.open(encoding="utf-8") as lines:
            report = check_lines(lines, context=args.context)
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
    print(f"{path}: OK, every event is a declared transition: {report.summary()}")
    return 0
