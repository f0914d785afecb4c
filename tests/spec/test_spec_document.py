"""SPEC.md's generated blocks match the model, and the drift check notices when they do not."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from commspec import specdoc
from commspec.cli import COMMANDS
from commspec.commands import spec as spec_command
from commspec.model import MACHINES

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "SPEC.md"


def run_spec(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    spec_command.add_parser(parser.add_subparsers())
    return spec_command.run(parser.parse_args(["spec", *argv]))


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "SPEC.md"
    copy.write_text(SPEC.read_text(encoding="utf-8"), encoding="utf-8")
    return copy


def test_committed_spec_md_is_current() -> None:
    patch = specdoc.diff(SPEC)
    assert patch == "", "SPEC.md is out of date: run `commspec spec`\n" + patch


def test_the_commands_are_registered() -> None:
    assert {"diagrams", "spec"} <= set(COMMANDS)


def test_check_fails_on_an_altered_generated_block(
    spec_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = spec_copy.read_text(encoding="utf-8")
    row = "| `pending` | `peer_lost` |  | `invalidated` |"
    assert row in text
    spec_copy.write_text(text.replace(row, "| `pending` | `peer_lost` |  | `resolved` |"),
                         encoding="utf-8")
    assert run_spec("--check", "--file", str(spec_copy)) == 1
    out = capsys.readouterr().out
    assert "-| `pending` | `peer_lost` |  | `resolved` |" in out
    assert "+" + row in out
    # and `commspec spec` repairs it
    assert run_spec("--file", str(spec_copy)) == 0
    assert spec_copy.read_text(encoding="utf-8") == text
    assert run_spec("--check", "--file", str(spec_copy)) == 0


def test_check_fails_on_an_emptied_block(spec_copy: Path) -> None:
    """A model change (here: a whole block gone stale) is drift too."""
    text = spec_copy.read_text(encoding="utf-8")
    start = text.index("<!-- BEGIN GENERATED properties -->")
    end = text.index(specdoc.END, start)
    spec_copy.write_text(text[: start] + "<!-- BEGIN GENERATED properties -->\n" + text[end:],
                         encoding="utf-8")
    assert specdoc.diff(spec_copy)
    assert run_spec("--check", "--file", str(spec_copy)) == 1


def test_prose_is_left_untouched(spec_copy: Path) -> None:
    text = spec_copy.read_text(encoding="utf-8")
    edited = text.replace("## Actors and sockets\n", "## Actors and sockets\n\nA new remark.\n")
    assert edited != text
    spec_copy.write_text(edited, encoding="utf-8")
    assert specdoc.diff(spec_copy) == ""
    assert specdoc.update(edited) == edited


def test_every_machine_has_its_block_diagram_and_rows() -> None:
    text = SPEC.read_text(encoding="utf-8")
    for spec in MACHINES:
        assert f"<!-- BEGIN GENERATED machine:{spec.name} -->" in text
        assert f"(diagrams/{spec.name}.svg)" in text
        block = specdoc.render_machine(spec)
        assert block in text
        # one table row per transition, plus one per state
        rows = [line for line in block.splitlines() if line.startswith("| `")]
        assert len(rows) == len(spec.transitions) + len(spec.states)


def test_the_system_model_section_is_left_to_its_author() -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert "## System model and checker" in text
    assert "<!-- system-model prose: owned by the model author -->" in text
    assert "## Properties" in text


def _without_block(text: str, key: str) -> str:
    start = text.index(f"<!-- BEGIN GENERATED {key} -->")
    end = text.index(specdoc.END, start) + len(specdoc.END)
    return text[:start] + text[end:]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(lambda t: _without_block(t, "trace-event"),
                     "missing generated blocks: trace-event", id="missing"),
        pytest.param(lambda t: t.replace("<!-- BEGIN GENERATED trace-event -->\n", "", 1),
                     "END GENERATED without a BEGIN", id="stray end"),
        pytest.param(lambda t: t + "\n<!-- BEGIN GENERATED nonsense -->\n<!-- END GENERATED -->\n",
                     "unknown generated block 'nonsense'", id="unknown"),
        pytest.param(lambda t: t + "\n<!-- BEGIN GENERATED properties -->\n"
                     "<!-- END GENERATED -->\n", "appears twice", id="duplicate"),
        pytest.param(lambda t: t.replace("<!-- BEGIN GENERATED trace-event -->\n",
                                         "<!-- BEGIN GENERATED trace-event -->\n"
                                         "<!-- BEGIN GENERATED properties -->\n", 1),
                     "BEGIN inside block 'trace-event'", id="nested"),
        pytest.param(lambda t: t.rsplit(specdoc.END, 1)[0], "has no", id="unterminated"),
    ],
)
def test_malformed_markers_are_refused(edit: object, message: str) -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert callable(edit)
    with pytest.raises(specdoc.SpecDocError, match=message):
        specdoc.update(edit(text))


def test_a_refused_file_exits_2_and_is_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "SPEC.md"
    broken.write_text("# nothing generated here\n", encoding="utf-8")
    assert run_spec("--file", str(broken)) == 2
    assert "missing generated blocks" in capsys.readouterr().err
    assert broken.read_text(encoding="utf-8") == "# nothing generated here\n"


def test_trace_fields_are_documented() -> None:
    block = specdoc.render_trace_event()
    for key in ("endpoint", "machine", "object", "from", "event", "to", "time", "msg_id"):
        assert f"| `{key}` |" in block
    assert "| `source` |" not in block
