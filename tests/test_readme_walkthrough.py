"""README.md's "Use it" walkthrough runs as written, and each command does what its
comment says: the demo's traces check OK, and so does a kernel's that served a frontend.

The commands are read from the README itself, so the walkthrough cannot drift from
what works: its first block is run line by line in a fresh folder; in the second,
``commspec kernel`` runs in the background while a reference frontend uses it (as the
reader's own frontend would), is stopped, and the rest of the block runs after it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.targets import ECHO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package sits next to impl/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.common import Child  # noqa: E402

README = ROOT / "README.md"
#: a bound on each command (the demo and a small model-based run take seconds)
TIMEOUT = 120.0
WAIT = 20.0


def walkthrough_blocks() -> list[list[str]]:
    """The shell blocks (4-space indented) of the "Use it" section, comments dropped."""
    section = README.read_text(encoding="utf-8").split("\n## Use it\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks: list[list[str]] = []
    previous_blank = True
    fenced = False  # inside a ``` block (the Python example), not a shell block
    for line in section.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            previous_blank = False
        elif line.startswith("    ") and not fenced:
            command = line.split("  #", 1)[0].strip()
            if previous_blank:
                blocks.append([])
            blocks[-1].append(command)
            previous_blank = False
        else:
            previous_blank = not line.strip()
    return blocks


def run_as_written(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One walkthrough line, through the shell (it may use globs), in ``cwd``."""
    assert command.startswith("commspec "), command
    # the commspec script installed next to this Python, activated or not
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", f"set -e; {command}"], cwd=cwd, capture_output=True, text=True,
        timeout=TIMEOUT, check=False, env={**os.environ, "PATH": path},
    )
    assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n" \
        f"{done.stderr}"
    return done


def test_the_walkthrough_has_the_blocks_this_test_runs() -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) == 2, blocks
    assert blocks[1][0].startswith("commspec kernel "), blocks[1]


def test_the_demo_block_runs_as_written(tmp_path: Path) -> None:
    first, _ = walkthrough_blocks()
    outputs = [run_as_written(command, tmp_path).stdout for command in first]
    checked = [o for c, o in zip(first, outputs, strict=True) if " trace-check " in f" {c}"]
    assert checked, "the block checks a trace"
    for out in checked:
        assert "OK" in out and " 0 events" not in out, out


def test_the_kernel_block_runs_as_written(tmp_path: Path) -> None:
    _, (kernel_command, *after) = walkthrough_blocks()
    # the kernel's connection file goes to Jupyter's runtime folder: one under tmp_path
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    kernel = Child(subprocess.Popen(
        [sys.executable, "-m", "commspec", *shlex.split(kernel_command)[1:]],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ))
    try:
        connection_file = kernel.read_line(WAIT)
        with FrontendEndpoint(connection_file) as frontend:  # the reader's own frontend
            frontend.wait_ready(WAIT)
            assert frontend.open_comm(ECHO).request("echo", 1).result(WAIT) == 1
        kernel.signal(signal.SIGTERM)
        assert kernel.process.wait(WAIT) == 0
    finally:
        kernel.end()
    assert after, "the block checks the kernel's trace once it has stopped"
    for command in after:
        out = run_as_written(command, tmp_path).stdout
        if " trace-check " in f" {command}":
            assert re.search(r"OK.* [1-9]\d* events", out), out

