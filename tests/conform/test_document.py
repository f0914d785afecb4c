"""CONFORMANCE.md's generator: one command writes the table, each kernel's scorecard,
the versions, the date and the command itself; it runs here on two checks only.
commspec for ipykernel's column comes from a kernelspec the command writes to a
temporary folder of its own (``temporary_kernelspecs``)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shlex
import sys
from pathlib import Path

import pytest

from commspec.conform.document import main

HERE = Path(__file__).resolve().parent
BROKEN = (f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'variant_kernel.py'))} "
          "advertises_nothing --connection-file {connection_file}")


def test_one_command_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "CONFORMANCE.md"
    jupyter_path = os.environ.get("JUPYTER_PATH")
    assert main(["--out", str(out), "--only", "kernel_info,spec_feature",
                 "--reply-timeout", "3", "--kernel", f"broken=cmd:{BROKEN}"]) == 0
    text = out.read_text()
    assert "python -m commspec.conform.document" in text and "--kernel 'broken=cmd:" in text
    assert datetime.date.today().isoformat() in text
    assert f"jupyter_client {importlib.metadata.version('jupyter_client')}" in text
    assert f"ipykernel {importlib.metadata.version('ipykernel')}" in text
    # commspec for ipykernel beside stock ipykernel, from the kernelspec the run wrote
    assert ("| check | SPEC rule | commspec | ipykernel | commspec.ipykernel | broken |"
            in text)
    assert "| commspec.ipykernel | kernelspec python3-commspec | ipython " in text
    row = next(line for line in text.splitlines() if line.startswith("| `spec_feature` |"))
    commspec, ipykernel, ours, broken = [cell.strip() for cell in row.split("|")[3:7]]
    assert commspec.startswith("PASS") and ipykernel.startswith("FAIL")
    assert ours.startswith("PASS") and broken.startswith("FAIL")
    assert text.count("```text\n") == 4, "each kernel's scorecard as commspec conform prints it"
    assert "1 of 2 applicable checks pass (0 N/A)" in text
    assert os.environ.get("JUPYTER_PATH") == jupyter_path, "JUPYTER_PATH as it was"
    assert "pip install xeus-python" in text, "how to add the column this run lacks"


@pytest.mark.parametrize(("args", "says"), [
    (["--kernel", "no-kind-here"], "want LABEL=kernelspec:NAME or LABEL=cmd:COMMAND"),
    (["--kernel", "x=cmd:commspec kernel"], "must contain {connection_file}"),
    (["--only", "nope"], "unknown check(s) nope"),
])
def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           args: list[str], says: str) -> None:
    out = tmp_path / "CONFORMANCE.md"
    assert main(["--out", str(out), *args]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists(), "nothing is written"
