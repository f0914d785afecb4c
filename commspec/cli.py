"""The ``commspec`` command: check the spec, draw it, run the reference kernel."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each subcommand is a module in commspec.commands with ``add_parser`` and ``run``.
COMMANDS: tuple[str, ...] = ("check", "diagrams", "spec", "kernel", "demo", "trace-check", "mbt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="commspec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"commspec.commands.{name.replace('-', '_')}")
        module.add_parser(sub)
        modules[name] = module
    args = parser.parse_args(argv)
    code: int = modules[args.command].run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
