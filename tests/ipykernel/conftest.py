"""Kernelspecs for commspec for ipykernel and for stock ipykernel, in a folder of the
tests' own, found through ``JUPYTER_PATH`` (jupyter_client, ``commspec conform
--kernelspec`` and ``jupyter console --kernel`` all read it)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import pytest

from commspec.commands.install import ipykernel_spec

#: the kernelspec names the tests install
COMMSPEC = "commspec-ipykernel-test"
STOCK = "stock-ipykernel-test"


@pytest.fixture(scope="session")
def kernelspecs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """{"commspec": name, "stock": name}, installed under a JUPYTER_PATH of the tests'."""
    root = tmp_path_factory.mktemp("jupyter")
    kernels = root / "kernels"
    specs = {
        COMMSPEC: ipykernel_spec("Python 3 (commspec, tests)"),
        STOCK: {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (stock ipykernel, tests)", "language": "python",
                "interrupt_mode": "signal", "metadata": {"debugger": True}},
    }
    for name, spec in specs.items():
        folder = kernels / name
        folder.mkdir(parents=True)
        (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(root), *([previous] if previous else [])])
    try:
        yield {"commspec": COMMSPEC, "stock": STOCK}
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous

