"""``commspec spec``: regenerate SPEC.md's generated blocks, or check they are current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from commspec import specdoc


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "spec",
        help="regenerate the tables in SPEC.md from the model",
        description="Rewrite the GENERATED blocks of SPEC.md in place (prose is left "
        "untouched). With --check, write nothing and exit 1 with a diff if it is stale.",
    )
    p.add_argument("--file", type=Path, default=Path("SPEC.md"), help="default: ./SPEC.md")
    p.add_argument("--check", action="store_true",
                   help="exit 1 and print a unified diff if the file is out of date")


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        if args.check:
            patch = specdoc.diff(path)
            if patch:
                sys.stdout.write(patch)
                print(f"{path} is out of date: run `commspec spec`", file=sys.stderr)
                return 1
            return 0
        changed = specdoc.rewrite(path)
    except (OSError, specdoc.SpecDocError) as e:
        print(f"commspec spec: {e}", file=sys.stderr)
        return 2
    print(f"{path}: {'updated' if changed else 'already up to date'}")
    return 0
