"""The committed diagrams match the model; the DOT is deterministic and drawn as specified."""

from __future__ import annotations

import argparse
import builtins
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from commspec import diagrams
from commspec.commands import diagrams as diagrams_command
from commspec.model import MACHINES, MachineSpec
from commspec.model.machines import KERNEL_COMM

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "diagrams"
ALL = pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)


def run_diagrams(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    diagrams_command.add_parser(parser.add_subparsers())
    return diagrams_command.run(parser.parse_args(["diagrams", *argv]))


def node_attrs(dot: str, name: str) -> str:
    m = re.search(rf"^\t{re.escape(name)} \[(.*)\]$", dot, re.MULTILINE)
    assert m, f"no node {name}"
    return m.group(1)


@ALL
def test_committed_dot_is_current(spec: MachineSpec[Any, Any]) -> None:
    path = COMMITTED / f"{spec.name}.dot"
    assert path.is_file(), f"{path} missing: run `commspec diagrams`"
    assert path.read_text(encoding="utf-8") == diagrams.to_dot(spec), (
        f"{path} is out of date: run `commspec diagrams`"
    )
    assert (COMMITTED / f"{spec.name}.svg").is_file()


def test_drift_check_fails_on_an_altered_copy(tmp_path: Path) -> None:
    for spec in MACHINES:
        shutil.copy(COMMITTED / f"{spec.name}.dot", tmp_path)
    for race in COMMITTED.glob("race-*.svg"):
        shutil.copy(race, tmp_path)
    assert diagrams.stale(tmp_path) == []
    assert run_diagrams("--check", "--out", str(tmp_path)) == 0
    altered = tmp_path / "kernel_comm.dot"
    altered.write_text(altered.read_text(encoding="utf-8").replace(
        "frontend_lost [persistent]", "frontend_lost"), encoding="utf-8")
    (tmp_path / "session.dot").unlink()
    assert diagrams.stale(tmp_path) == ["kernel_comm", "session"]
    assert run_diagrams("--check", "--out", str(tmp_path)) == 1


def test_dot_is_identical_across_processes() -> None:
    """Hash randomisation, set order and dict order must not leak into the DOT."""
    code = ("from commspec.diagrams import to_dot\nfrom commspec.model import MACHINES\n"
            "print('\\n'.join(to_dot(m) for m in MACHINES))")
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
        for seed in ("0", "1", "4242")
    }
    assert len(outs) == 1
    assert outs.pop() == "\n".join(diagrams.to_dot(m) for m in MACHINES) + "\n"


@ALL
def test_every_state_and_row_is_drawn(spec: MachineSpec[Any, Any]) -> None:
    dot = diagrams.to_dot(spec)
    for state in spec.states:
        node_attrs(dot, state.value)
    edges = {
        (m["src"], m["dst"]): m["label"].strip('"').split("\\n")
        for m in re.finditer(r"^\t(?P<src>\w+) -> (?P<dst>\w+) \[label=(?P<label>.*)\]$",
                             dot, re.MULTILINE)
    }
    drawn = 0
    for t in spec.transitions:
        label = t.event.value + (f" {t.guard_label}" if t.guard_label else "")
        assert label in edges[(t.source.value, t.dest.value)], label
        drawn += 1
    # nothing drawn that the table does not have (the start arrow aside)
    assert sum(len(v) for k, v in edges.items() if k[0] != diagrams.START_NODE) == drawn


def test_guards_are_shown_on_both_sides() -> None:
    dot = diagrams.to_dot(KERNEL_COMM)
    assert "frontend_lost [persistent]" in dot
    assert "frontend_lost [!persistent]" in dot


@ALL
def test_terminal_states_are_set_apart_and_nothing_is_highlighted(
    spec: MachineSpec[Any, Any]
) -> None:
    dot = diagrams.to_dot(spec)
    # transitions paints the model's current state red/darksalmon: not in a spec diagram
    for colour in ("color=red", "darksalmon", "color=blue", "azure"):
        assert colour not in dot
    for state in spec.states:
        attrs = node_attrs(dot, state.value)
        is_terminal = "peripheries=2" in attrs
        assert is_terminal == (state in spec.terminal), state
    # the initial state is drawn like any other state of its kind
    initial = node_attrs(dot, spec.initial.value)
    assert initial == f'label="{spec.initial.value}\\l"'


@ALL
def test_the_initial_state_has_a_start_marker(spec: MachineSpec[Any, Any]) -> None:
    dot = diagrams.to_dot(spec)
    assert "shape=point" in node_attrs(dot, diagrams.START_NODE)
    starts = re.findall(rf"^\t{diagrams.START_NODE} -> (\w+)", dot, re.MULTILINE)
    assert starts == [spec.initial.value]


def test_dot_needs_no_system_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "")
    written = diagrams.write(tmp_path, ["dot"])
    assert sorted(p.name for p in written) == sorted(f"{m.name}.dot" for m in MACHINES)


def test_svg_renders(tmp_path: Path) -> None:
    pytest.importorskip("pygraphviz")
    [path] = diagrams.write(tmp_path, ["svg"], [KERNEL_COMM])
    svg = path.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "frontend_lost [!persistent]" in svg


def test_rendering_without_graphviz_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_pygraphviz(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pygraphviz":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pygraphviz)
    monkeypatch.setattr(diagrams.shutil, "which", lambda _: None)
    with pytest.raises(diagrams.RenderError, match=r"pip install 'commspec\[render\]'"):
        diagrams.render(diagrams.to_dot(KERNEL_COMM), "svg")
    assert run_diagrams("--out", str(tmp_path), "--format", "svg") == 2
    assert "pip install 'commspec[render]'" in capsys.readouterr().err


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(SystemExit):
        run_diagrams("--format", "gif")
