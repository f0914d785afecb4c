"""One module per ``commspec`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``."""
