"""The checks, one module per part of SPEC.md; importing this registers them, in the
scorecard's order (the order of ``MODULES``)."""

import importlib

MODULES = ("basics", "badinput", "departure", "stdin", "reconnect")

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
