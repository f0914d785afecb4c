"""Smoke test of the benchmark command: ``--quick`` runs and prints every row, positive.

It asserts nothing about speed: the figures and their targets are for BENCHMARKS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "ours": 2,
    "stock ipykernel": 2,
    "raw pyzmq": 2,
    "Jupyter wire floor": 2,
    "codec wire floor": 2,
    "raw four-message floor": 2,
    "ratio ours / Jupyter wire floor": 2,
    "ratio ours / ipykernel": 2,
    "ratio ours / codec wire floor": 2,
    "ratio ours / raw four-message floor": 2,
    "ratio ours / raw": 2,
    "encode + sign": 3,
    "verify + decode": 3,
    "verify + decode, zmq.Frame": 3,
    "close": 5,
    "kill": 5,
    "stop": 5,
    "1,000": 6,
    "10,000": 6,
}


def _number(cell: str) -> float:
    return float(cell.replace(",", "").removesuffix("x"))


def test_quick_run_prints_every_row_with_positive_numbers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| target")
    ]
    for label, numbers in ROWS.items():
        # the row of that name, else the first it begins (a stack's name runs on)
        found = ([r for r in rows if r[0] == label]
                 or [r for r in rows if r[0].startswith(label + " ")])
        assert found, f"no row {label!r} in:\n{done.stdout}"
        cells = found[0][1:]
        assert len(cells) == numbers, found[0]
        assert all(_number(c) > 0 for c in cells), found[0]
    verdicts = {r[0]: r[-1] for r in rows if r[-1] in ("met", "NOT met")}
    for target in ("1 in flight >= 8x ipykernel", "1 in flight >= 0.6x raw four-message floor",
                   "64 in flight >= 15x ipykernel"):
        assert target in verdicts, done.stdout
    assert len(verdicts) >= 7, done.stdout
    departures = [r for r in rows if r[0].startswith("500 pending, ") and len(r) == 5]
    assert len(departures) == 2, done.stdout
    assert sum(v.startswith("500 pending, ") for v in verdicts) == 2, done.stdout
