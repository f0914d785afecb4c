"""``commspec diagrams``: write every machine's state diagram (DOT, SVG, PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from commspec import chart, diagrams


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in diagrams.FORMATS]
    if not formats or unknown:
        raise argparse.ArgumentTypeError(
            f"formats are a comma-separated subset of {','.join(diagrams.FORMATS)}"
        )
    return formats


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diagrams",
        help="draw the declared machines",
        description="Write <machine>.<format> for every declared machine, and "
        "<race>.svg, the message sequence chart of each named race of SPEC.md. DOT and "
        "the charts need no system Graphviz; a machine's SVG/PNG needs pygraphviz "
        "(pip install 'commspec[render]') or Graphviz's dot program. Every DOT is written "
        "before anything is rendered.",
    )
    p.add_argument("--out", type=Path, default=Path("diagrams"),
                   help="output folder (default diagrams)")
    p.add_argument("--format", type=_formats, default=("dot", "svg"),
                   help="comma-separated: dot,svg,png (default dot,svg)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a committed .dot differs from the model")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.check:
        stale = [out / f"{name}.dot" for name in diagrams.stale(out)]
        stale += [out / f"{name}.svg" for name in chart.stale_races(out)]
        for path in stale:
            print(f"{path} is out of date: run `commspec diagrams`", file=sys.stderr)
        return 1 if stale else 0
    written = chart.write_races(out)  # pure Python: no Graphviz needed
    try:
        written += diagrams.write(out, args.format)
    except diagrams.RenderError as e:
        for path in written + e.written:
            print(path)
        print(f"commspec diagrams: wrote {len(written + e.written)} files, but {e}",
              file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
