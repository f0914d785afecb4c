"""``commspec install --ipykernel``: a kernelspec for commspec.ipykernel, and its refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from commspec.cli import main


@pytest.fixture
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("JUPYTER_PREFER_ENV_PATH", raising=False)
    return tmp_path


def test_install_ipykernel_writes_python3_commspec(
    prefix: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "--ipykernel", "--prefix", str(prefix)]) == 0
    where = prefix / "share" / "jupyter" / "kernels" / "python3-commspec"
    assert str(where) in capsys.readouterr().out
    spec = KernelSpecManager().get_kernel_spec("python3-commspec")
    assert spec.argv == [sys.executable, "-m", "commspec.ipykernel", "-f", "{connection_file}"]
    assert spec.display_name == "Python 3 (commspec)"
    assert spec.language == "python"
    assert spec.interrupt_mode == "signal", "ipykernel's own: SIGINT interrupts it"
    assert sorted(p.name for p in where.glob("logo-*.png")) == ["logo-32x32.png",
                                                                "logo-64x64.png"]


def test_install_ipykernel_takes_name_and_display_name(prefix: Path) -> None:
    assert main(["install", "--ipykernel", "--user", "--name", "py-cs",
                 "--display-name", "Mine"]) == 0
    written = json.loads((prefix / "data" / "kernels" / "py-cs" / "kernel.json").read_text())
    assert written["display_name"] == "Mine" and written["argv"][2] == "commspec.ipykernel"


def test_install_ipykernel_with_an_unsupported_ipykernel_says_what_to_do(
    prefix: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("commspec.ipykernel")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr("ipykernel._version.version_info", (7, 1, 0))
    assert main(["install", "--ipykernel", "--prefix", str(prefix)]) == 2
    err = capsys.readouterr().err
    assert "supports ipykernel 7.4" in err and "pip install" in err, err
    assert not (prefix / "share").exists(), "nothing is written"
