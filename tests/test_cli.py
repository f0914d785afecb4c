"""The ``commspec`` command as a newcomer meets it: its help, its version, and each
subcommand saying plainly what it did (an empty trace, a missing renderer, the
examples and the seed of a model-based run)."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import commspec
from commspec import cli, diagrams
from commspec.cli import main
from commspec.model import MACHINES

# -- help and version -----------------------------------------------------------------


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """The top-level parser and every subcommand's, as ``commspec`` builds them."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"commspec": parser, **sub.choices}


def test_every_subcommand_is_reachable() -> None:
    assert set(_parsers()) == {"commspec", *cli.COMMANDS}


@pytest.mark.parametrize("name", ["commspec", *cli.COMMANDS])
def test_help_is_plain_text(name: str) -> None:
    text = _parsers()[name].format_help()
    markup = re.findall(r"``|`[^`\s][^`]*`|:[a-z]+:`", text)
    assert not markup, f"{name} --help shows markup: {markup}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"commspec {commspec.__version__}"
    assert commspec.__version__ == importlib.metadata.version("commspec"), "one version"


# -- trace-check -----------------------------------------------------------------------


def test_an_empty_trace_is_not_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")  # a blank line is no event either
    assert main(["trace-check", str(empty)]) == 1
    out = capsys.readouterr()
    assert "OK" not in out.out
    assert "no events" in out.err and "--allow-empty" in out.err


def test_an_empty_trace_can_be_allowed(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert main(["trace-check", "--allow-empty", str(empty)]) == 0
    assert "no events" in capsys.readouterr().out


def test_several_traces_are_checked_each(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").touch()
    missing = tmp_path / "missing.jsonl"
    assert main(["trace-check", str(tmp_path / "empty.jsonl"), str(missing)]) == 2
    err = capsys.readouterr().err
    assert "empty.jsonl" in err and "cannot read" in err and "missing.jsonl" in err


# -- diagrams --------------------------------------------------------------------------


def test_diagrams_without_a_renderer_write_every_dot_and_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pygraphviz", None)  # as in a plain install
    monkeypatch.setattr(diagrams.shutil, "which", lambda _: None)
    assert main(["diagrams", "--out", str(tmp_path)]) == 2
    assert sorted(p.name for p in tmp_path.glob("*.dot")) == sorted(
        f"{m.name}.dot" for m in MACHINES)
    out = capsys.readouterr()
    assert "pip install 'commspec[render]'" in out.err
    for m in MACHINES:
        assert str(tmp_path / f"{m.name}.dot") in out.out


def test_the_renderer_s_known_fontconfig_warning_is_dropped_and_others_kept(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with diagrams.renderer_stderr():
        os.write(2, b'Fontconfig warning: "/etc/fonts/x.conf", line 6: unknown element '
                    b'"reset-dirs"\n')
        os.write(2, b"Warning: something else\n")
    err = capfd.readouterr().err
    assert "Fontconfig" not in err
    assert "Warning: something else" in err


def test_diagrams_print_no_fontconfig_warning(tmp_path: Path) -> None:
    pytest.importorskip("pygraphviz")
    done = subprocess.run(
        [sys.executable, "-m", "commspec", "diagrams", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# -- mbt -------------------------------------------------------------------------------


def _mbt(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(["mbt", *argv]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_mbt_runs_the_examples_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    # Hypothesis counts only valid examples: this run once took 21 programs for 20
    out, _ = _mbt(capsys, "--examples", "20", "--steps", "5", "--seed", "1")
    assert re.search(r"^random programs\s+20 programs", out, re.MULTILINE), out


def test_mbt_prints_the_seed_it_drew_and_the_seed_repeats_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, _ = _mbt(capsys, "--examples", "8", "--steps", "6")
    seed = re.search(r"seed (\d+)", first)
    assert seed, first
    again, _ = _mbt(capsys, "--examples", "8", "--steps", "6", "--seed", seed.group(1))

    def programs(out: str) -> str:
        found = re.search(r"^random programs.*steps", out, re.MULTILINE)
        assert found, out
        return found.group(0)

    assert programs(again) == programs(first)
    assert f"seed {seed.group(1)}" in again


def test_mbt_shows_every_phase_and_its_times_add_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, err = _mbt(capsys, "--examples", "3", "--steps", "3")
    for phase in ("random programs", "directed programs", "scenarios"):
        assert re.search(rf"\[#+\] {phase}", err), err
    rows = dict(re.findall(r"^(random programs|directed programs|scenarios|total)\b.*?"
                           r"([\d.]+) s$", out, re.MULTILINE))
    assert set(rows) == {"random programs", "directed programs", "scenarios", "total"}, out
    parts = sum(float(rows[p]) for p in ("random programs", "directed programs", "scenarios"))
    assert round(parts, 1) == float(rows["total"]), out


def test_mbt_keeps_expected_bad_input_quiet_but_not_other_warnings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from commspec.commands import mbt as mbt_command

    real = mbt_command.run_simulated_edges

    def with_a_surprise(*args: Any, **kwargs: Any) -> Any:
        logging.getLogger("commspec.kernel").warning("something nobody expected")
        return real(*args, **kwargs)

    monkeypatch.setattr(mbt_command, "run_simulated_edges", with_a_surprise)
    caplog.set_level(logging.WARNING)
    out, _ = _mbt(capsys, "--examples", "3", "--steps", "3")
    # what reached the root logger's handlers (on a terminal: stderr)
    logged = [r.getMessage() for r in caplog.records]
    assert not [m for m in logged if "dropped bad input" in m], logged
    assert "something nobody expected" in logged
    assert re.search(r"bad input dropped as the model allows: \d+", out), out


def test_a_run_without_a_seed_returns_the_seed_it_drew_which_repeats_it() -> None:
    from commspec.mbt import machine

    def run(seed: int | None) -> machine.RunResult:
        return machine.run(in_process=True, examples=6, steps=6, seed=seed)

    first = run(None)
    assert isinstance(first.seed, int)
    again = run(first.seed)
    assert again.seed == first.seed and again.examples == first.examples == 6
    assert [p.actions for p in again.programs] == [p.actions for p in first.programs]
