"""Smoke test of ``python -m benchmarks.ipykernel_rpc``: a tiny run prints a row per
kernel (ours, stock ipykernel, the reference kernel) and the two ratio rows, every
figure positive, and the load average at the start and the end. And the client's
check: a kernel whose echo answers something else fails the run.

It asserts nothing about speed: the figures are for BENCHMARKS.md.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks package sits next to impl/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import ipykernel_rpc  # noqa: E402
from benchmarks.common import child_env  # noqa: E402

#: the run's budget; a start on a loaded machine is seconds per kernel
RUN_TIMEOUT = 120.0
ROWS = ("ours: commspec.ipykernel", "stock ipykernel", "reference kernel (commspec kernel)",
        "ratio ours / stock ipykernel", "ratio ours / reference kernel")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The benchmark in a child; on timeout SIGTERM (its cleanup ends its kernels),
    then SIGKILL."""
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.ipykernel_rpc", *args],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"the benchmark did not end within {RUN_TIMEOUT} s:\n{out}\n{err[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def rows(stdout: str) -> dict[str, list[str]]:
    """Each table row's cells after the first, by its first cell: the first table's
    (the rates; the CPU table after it repeats the kernels' names)."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            found.setdefault(cells[0], cells[1:])
    return found


def _number(cell: str) -> float:
    return float(cell.replace(",", "").removesuffix("x"))


def check(stdout: str) -> None:
    """A row per kernel and per ratio, a positive figure per window; both loads."""
    table = rows(stdout)
    for label in ROWS:
        assert label in table, f"no row {label!r} in:\n{stdout}"
        cells = table[label]
        assert len(cells) == len(ipykernel_rpc.WINDOWS), (label, cells)
        assert all(_number(c) > 0 for c in cells), (label, cells)
    assert "load average at the start " in stdout, stdout
    assert "load average at the end " in stdout, stdout


def test_a_tiny_run_prints_a_positive_row_per_kernel_and_the_ratios() -> None:
    done = _run("--trips", "20", "--rounds", "1", "--warmup", "5")
    assert done.returncode == 0, done.stderr[-4000:]
    check(done.stdout)


GOOD = """load average at the start 1.00 / 1.00 / 1.00
| comm RPC echo, round trips/s (one client) | 1 in flight | 64 in flight |
|---|---|---|
| ours: commspec.ipykernel | 700 | 800 |
| stock ipykernel | 700 | 900 |
| reference kernel (commspec kernel) | 1,800 | 4,000 |
| ratio ours / stock ipykernel | 1.00x | 0.89x |
| ratio ours / reference kernel | 0.39x | 0.20x |
(run took 1 s; load average at the end 1.00 / 1.00 / 1.00)
"""


@pytest.mark.parametrize("broken", [
    GOOD.replace("| stock ipykernel | 700 | 900 |\n", ""),
    GOOD.replace("| 1,800 | 4,000 |", "| 0 | 4,000 |"),
    GOOD.replace("| 0.39x | 0.20x |", "| 0.39x |"),
    GOOD.replace("load average at the end", "load"),
])
def test_the_check_fails_on_a_broken_output(broken: str) -> None:
    check(GOOD)
    with pytest.raises(AssertionError):
        check(broken)


BROKEN = ipykernel_rpc.REGISTER.replace('"result": data.get("params")', '"result": "wrong"')


def test_the_client_fails_a_kernel_whose_echo_answers_wrong() -> None:
    assert BROKEN != ipykernel_rpc.REGISTER
    stock = next(k for k in ipykernel_rpc.KINDS if k.key == "stock")
    broken = ipykernel_rpc.KernelKind("stock", "broken echo", stock.argv, stock.target, BROKEN)
    with tempfile.TemporaryDirectory(prefix="commspec-test-ipk-rpc-") as folder:
        work = Path(folder)
        specs = ipykernel_rpc.write_specs(work / "kernels")
        kernel = ipykernel_rpc.BenchKernel(broken, specs, work)
        try:
            kernel.start(dict(child_env(), IPYTHONDIR=str(work / "ipython")))
            with pytest.raises(RuntimeError, match="echo answered"):
                kernel.connect()  # its first echo is checked
        finally:
            kernel.close()
