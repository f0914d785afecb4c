"""``commspec demo`` end to end: real processes, expected outcome, exit status 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_shows_both_policies(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "commspec", "demo", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "expected outcome: yes" in out
    assert "persistent comm: open --frontend_lost--> detached" in out
    assert "default comm: open --frontend_lost--> closed" in out
    assert "persistent comm: detached --frontend_back--> open" in out
    # the traces it read back are kept where we asked
    assert {p.name for p in tmp_path.iterdir()} >= {
        "kernel.trace.jsonl",
        "frontend-a.trace.jsonl",
        "frontend-b.trace.jsonl",
    }
