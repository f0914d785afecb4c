"""The README's first command needs only the runtime dependencies.

`python -m pip install . && commspec check` must work without the test extra, so
no command may import a test-only package (Hypothesis, pytest) when the CLI starts.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
for name in ("hypothesis", "pytest"):
    sys.modules[name] = None  # any import of them now fails, as in a plain install
from commspec.cli import main
assert main(["check", "--frontends", "1", "--comms", "0", "--requests", "1",
             "--reconnects", "0", "--faults", "0", "--quiet"]) == 0
assert main(["mbt"]) == 2  # refuses with a clear message instead of a traceback
"""


def test_cli_works_without_the_test_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "OK: every property holds" in done.stdout
    assert "install the test extra" in done.stderr


def test_the_check_fails_when_a_command_imports_a_test_package() -> None:
    # The same script against a CLI whose mbt command imports Hypothesis at the top
    # (as it once did) must fail: the test above can tell.
    broken = "import commspec.commands.mbt as m\nimport hypothesis\n"
    script = SCRIPT.replace(
        "from commspec.cli import main", broken + "from commspec.cli import main"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "hypothesis" in done.stderr
