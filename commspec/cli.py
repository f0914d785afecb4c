"""The ``commspec`` command: check the spec, draw it, run the reference kernel."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from commspec import __version__
from commspec.helptext import summary

# Each subcommand is a module in commspec.commands with ``add_parser`` and ``run``.
COMMANDS: tuple[str, ...] = ("check", "diagrams", "spec", "kernel", "install", "demo",
                             "trace-check", "mbt", "conform")


def _module(name: str) -> Any:
    return importlib.import_module(f"commspec.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    """``commspec`` and every subcommand's parser (importing each command's module)."""
    parser = argparse.ArgumentParser(prog="commspec", description=summary(__doc__))
    parser.add_argument("--version", action="version", version=f"commspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = _module(args.command).run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
