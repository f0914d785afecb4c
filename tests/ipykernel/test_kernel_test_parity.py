"""Parity with stock ipykernel on the public kernel test suite (``jupyter_kernel_test``).

``jupyter_kernel_test.KernelTests`` (with the Python snippets below, execution tests
included) and ``IopubWelcomeTests`` run as unittest suites against both kernelspecs
of the ``kernelspecs`` fixture; each test's outcome (and each subtest's) goes into an
outcome table per kernel. No test that passes on stock ipykernel may fail, error, be
skipped or be missing on commspec.ipykernel, and enough tests must have run on each
kernel that the comparison says something.

The suites start their kernels through jupyter_client (``JUPYTER_PATH`` is the
fixture's), each with an ``IPYTHONDIR`` of its own (a fresh history: the history
tests count matches). Waits are jupyter_kernel_test's own timeouts; the two reads it
makes without one (``get_shell_msg()`` in the completion and is-complete tests,
``get_iopub_msg()`` in the welcome test) are bounded here by the same ``TIMEOUT``, so
a kernel that does not answer fails a test instead of hanging the suite.
"""

from __future__ import annotations

import functools
import os
import time
import unittest
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import jupyter_kernel_test as jkt  # the module: pytest must not collect its TestCases
import pytest

#: an outcome of one test or subtest
PASS, FAIL, ERROR, SKIP, MISSING = "pass", "fail", "error", "skip", "missing"
#: test name ("KernelTests.test_history (hist_access_type='tail')") -> outcome
Outcomes = dict[str, str]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

#: method-level tests (subtests not counted) that must have run, not skipped, on each
#: kernel: all 12 of KernelTests and IopubWelcomeTests' one (every snippet is set)
MIN_RAN = 13
#: method-level tests that must pass on stock ipykernel (else there is little to compare)
MIN_STOCK_PASSED = 12


class PythonSnippets(jkt.KernelTests):
    """The Python snippets for ``KernelTests``; ``kernel_name`` is set per kernel."""

    __test__ = False  # run through run_suite(), against a kernelspec of the fixture's

    language_name = "python"
    file_extension = ".py"

    code_hello_world = "import sys; sys.stdout.write('hello, world\\n')"
    code_stderr = "print('to stderr', file=__import__('sys').stderr)"

    completion_samples = [  # noqa: RUF012 (jupyter_kernel_test's class attributes)
        {"text": "divm", "matches": {"divmod"}},
        {"text": "isinst", "matches": {"isinstance"}},
        {"text": "str.upp"},  # a well-formed reply is all that is checked
    ]

    complete_code_samples = [  # noqa: RUF012
        "x = 1",
        "print('done')",
        "class C:\n    pass\n\n\n",
    ]
    incomplete_code_samples = [  # noqa: RUF012
        "if True:",
        "x = [1,\n     2,",
        "s = '''open",
    ]
    invalid_code_samples = ["x === 2", "import = 3"]  # noqa: RUF012

    code_page_something = "divmod?"
    code_generate_error = "1 / 0"

    code_execute_result = [  # noqa: RUF012
        {"code": "2 ** 10", "result": "1024"},
        {"code": "'ab' * 2", "result": "'abab'"},
        {"code": "{'k': [1, 2]}", "result": "{'k': [1, 2]}"},
    ]
    #: an SQLite glob matching the first sample only (the unique search wants one match)
    code_history_pattern = "2 [*][*] 1*"
    #: not "range": ipykernel's reply names the current session 0, not the number its
    #: tail reply gave (which the range test asks for and compares with)
    supported_history_operations = ("tail", "search")

    code_display_data = [  # noqa: RUF012
        {"code": "from IPython.display import Markdown, display; display(Markdown('*m*'))",
         "mime": "text/markdown"},
        {"code": "from IPython.display import JSON, display; display(JSON({'a': 1}))",
         "mime": "application/json"},
        {"code": "from IPython.display import display; "
                 "display({'image/svg+xml': '<svg xmlns=\"http://www.w3.org/2000/svg\"/>'}, "
                 "raw=True)",
         "mime": "image/svg+xml"},
    ]

    code_inspect_sample = "divmod"
    code_clear_output = "import IPython.display as d; print('gone'); d.clear_output()"

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        bound_reads(cls.kc)


class WelcomeTests(jkt.IopubWelcomeTests):
    """``IopubWelcomeTests``: both kernels welcome a subscriber (ipykernel >= 7 does)."""

    __test__ = False

    support_iopub_welcome = True

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        bound_reads(cls.kc)


def bound_reads(client: Any) -> None:
    """Make the client's reads that have no timeout wait ``jkt.TIMEOUT`` at most."""
    for name in ("get_shell_msg", "get_iopub_msg", "get_stdin_msg"):
        read: Callable[..., Any] = getattr(client, name)

        @functools.wraps(read)
        def bounded(*args: Any, _read: Callable[..., Any] = read, **kwargs: Any) -> Any:
            if not args and kwargs.get("timeout") is None:
                kwargs["timeout"] = jkt.TIMEOUT
            return _read(*args, **kwargs)

        setattr(client, name, bounded)


class Recorder(unittest.TestResult):
    """Records one outcome per test and per subtest, named ``SUITE.test (params)``;
    a class fixture's error is ``SUITE.setUpClass`` / ``SUITE.tearDownClass``."""

    def __init__(self, suite: str) -> None:
        super().__init__()
        self.suite = suite
        self.outcomes: Outcomes = {}
        self.details: dict[str, str] = {}
        self._subtests: dict[str, list[str]] = {}

    def _name(self, test: unittest.TestCase) -> str:
        case = getattr(test, "test_case", None)  # a subtest
        if isinstance(case, unittest.TestCase):
            method = case.id().rsplit(".", 1)[-1]
            return f"{self.suite}.{method}{test.id()[len(case.id()):]}"
        if not hasattr(test, "_testMethodName"):  # _ErrorHolder: "setUpClass (mod.Class)"
            return f"{self.suite}.{test.id().split()[0]}"
        return f"{self.suite}.{test.id().rsplit('.', 1)[-1]}"

    def _record(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        name = self._name(test)
        self.outcomes[name] = outcome
        if detail:
            self.details[name] = detail
        case = getattr(test, "test_case", None)
        if isinstance(case, unittest.TestCase):
            self._subtests.setdefault(self._name(case), []).append(outcome)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, PASS)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, FAIL, self._exc_info_to_string(err, test))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._record(test, ERROR, self._exc_info_to_string(err, test))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, SKIP, reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, FAIL, self._exc_info_to_string(err, test))

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, FAIL, "unexpected success")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase,
                   err: ExcInfo | None) -> None:
        super().addSubTest(test, subtest, err)
        if err is None:
            self._record(subtest, PASS)
        elif issubclass(err[0], test.failureException):
            self._record(subtest, FAIL, self._exc_info_to_string(err, test))
        else:
            self._record(subtest, ERROR, self._exc_info_to_string(err, test))

    def stopTest(self, test: unittest.TestCase) -> None:
        """A test with subtests that failed or were skipped gets no outcome of its own
        from unittest: it is its subtests' (failed, errored, passed, or skipped)."""
        super().stopTest(test)
        name = self._name(test)
        if name in self.outcomes:
            return
        parts = self._subtests.get(name, [])
        for outcome in (FAIL, ERROR, PASS):
            if outcome in parts:
                self.outcomes[name] = outcome
                return
        self.outcomes[name] = SKIP if parts else MISSING

    def finish(self) -> Outcomes:
        """The table, with the class fixtures that raised nothing as passed."""
        for fixture in ("setUpClass", "tearDownClass"):
            self.outcomes.setdefault(f"{self.suite}.{fixture}", PASS)
        return self.outcomes


def run_suite(base: type[unittest.TestCase], suite: str, kernel_name: str,
              ) -> tuple[Outcomes, dict[str, str]]:
    """Run ``base``'s tests against ``kernel_name``; (outcomes, failure details)."""
    case = type(f"{base.__name__}_{kernel_name}", (base,), {"kernel_name": kernel_name})
    recorder = Recorder(suite)
    unittest.TestLoader().loadTestsFromTestCase(case).run(recorder)
    return recorder.finish(), recorder.details


def regressions(stock: Outcomes, ours: Outcomes) -> list[str]:
    """Every test that passes on stock and does not pass on ours (a missing one too)."""
    return sorted(name for name, outcome in stock.items()
                  if outcome == PASS and ours.get(name, MISSING) != PASS)


def method_level(outcomes: Outcomes) -> Outcomes:
    """The tests' own outcomes: no subtests, no class fixtures."""
    return {name: outcome for name, outcome in outcomes.items()
            if " " not in name and not name.endswith(("setUpClass", "tearDownClass"))}


def counts(outcomes: Outcomes) -> dict[str, int]:
    found: dict[str, int] = {}
    for outcome in outcomes.values():
        found[outcome] = found.get(outcome, 0) + 1
    return dict(sorted(found.items()))


def table(stock: Outcomes, ours: Outcomes) -> str:
    """Both outcome tables side by side, one test a line."""
    names = sorted(set(stock) | set(ours))
    width = min(max((len(name) for name in names), default=4), 72)  # longer ones overflow
    lines = [f"{'test':<{width}}  {'stock':<7}  commspec"]
    for name in names:
        flag = "  <-- regression" if name in regressions(stock, ours) else ""
        lines.append(f"{name:<{width}}  {stock.get(name, MISSING):<7}  "
                     f"{ours.get(name, MISSING)}{flag}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def outcomes(kernelspecs: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, tuple[Outcomes, dict[str, str]]]]:
    """{"stock": ..., "commspec": ...}: each kernel's outcomes and failure details."""
    previous = os.environ.get("IPYTHONDIR")
    found: dict[str, tuple[Outcomes, dict[str, str]]] = {}
    started = time.monotonic()
    try:
        for label in ("stock", "commspec"):
            os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp(f"ipython-{label}"))
            table_: Outcomes = {}
            details: dict[str, str] = {}
            for base, suite in ((PythonSnippets, "KernelTests"),
                                (WelcomeTests, "IopubWelcomeTests")):
                got, why = run_suite(base, suite, kernelspecs[label])
                table_.update(got)
                details.update(why)
            found[label] = (table_, details)
    finally:
        if previous is None:
            os.environ.pop("IPYTHONDIR", None)
        else:
            os.environ["IPYTHONDIR"] = previous
    print(f"\njupyter_kernel_test on both kernels: {time.monotonic() - started:.1f} s")
    for label, (got, _) in found.items():
        print(f"{label}: tests {counts(method_level(got))}, with subtests {counts(got)}")
    yield found


@pytest.mark.ipykernel
def test_everything_that_passes_on_stock_passes_on_commspec(
        outcomes: dict[str, tuple[Outcomes, dict[str, str]]]) -> None:
    stock, _ = outcomes["stock"]
    ours, details = outcomes["commspec"]
    lost = regressions(stock, ours)
    assert not lost, (
        f"passes on stock ipykernel, not on commspec.ipykernel: {lost}\n\n"
        f"{table(stock, ours)}\n\n"
        + "\n".join(f"--- {name} on commspec:\n{details.get(name, '(no detail)')}"
                    for name in lost))


@pytest.mark.ipykernel
def test_enough_tests_ran_on_each_kernel(
        outcomes: dict[str, tuple[Outcomes, dict[str, str]]]) -> None:
    stock, _ = outcomes["stock"]
    ours, _ = outcomes["commspec"]
    for label, got in (("stock", stock), ("commspec", ours)):
        ran = [name for name, outcome in method_level(got).items()
               if outcome not in (SKIP, MISSING)]
        assert len(ran) >= MIN_RAN, (
            f"only {len(ran)} tests ran on {label} (want {MIN_RAN}):\n{table(stock, ours)}")
    passed = [name for name, outcome in method_level(stock).items() if outcome == PASS]
    assert len(passed) >= MIN_STOCK_PASSED, (
        f"only {len(passed)} tests pass on stock ipykernel (want {MIN_STOCK_PASSED}), "
        f"too few to compare:\n{table(stock, ours)}")


# -- the comparison and the recorder, on made-up inputs (no kernel) -----------------

def test_regressions_names_a_test_that_passes_on_stock_only() -> None:
    stock = {"S.test_a": PASS, "S.test_b": PASS, "S.test_c": FAIL, "S.test_d": SKIP,
             "S.test_e": PASS, "S.test_f": PASS, "S.test_g (k=1)": PASS}
    ours = {"S.test_a": PASS, "S.test_b": FAIL, "S.test_c": PASS, "S.test_d": FAIL,
            "S.test_e": SKIP, "S.test_g (k=1)": ERROR}
    assert regressions(stock, ours) == ["S.test_b", "S.test_e", "S.test_f", "S.test_g (k=1)"]
    assert regressions(stock, stock) == []
    rows = {line.split()[0]: line.split()[1:] for line in table(stock, ours).splitlines()}
    assert rows["S.test_b"] == [PASS, FAIL, "<--", "regression"]
    assert rows["S.test_c"] == [FAIL, PASS]
    with pytest.raises(AssertionError, match=r"S\.test_b"):
        test_everything_that_passes_on_stock_passes_on_commspec(
            {"stock": (stock, {}), "commspec": (ours, {"S.test_b": "AssertionError: 1 != 2"})})
    test_everything_that_passes_on_stock_passes_on_commspec(
        {"stock": (stock, {}), "commspec": (stock, {})})


def test_too_few_tests_ran_fails() -> None:
    full = {f"S.test_{i}": PASS for i in range(MIN_RAN)}
    test_enough_tests_ran_on_each_kernel({"stock": (full, {}), "commspec": (full, {})})
    # a kernel that never started: only its setUpClass error, no test at all
    dead = {"S.setUpClass": ERROR, "S.tearDownClass": PASS}
    with pytest.raises(AssertionError, match="only 0 tests ran on commspec"):
        test_enough_tests_ran_on_each_kernel({"stock": (full, {}), "commspec": (dead, {})})
    skipped = {name: SKIP for name in full}
    with pytest.raises(AssertionError, match="only 0 tests ran on stock"):
        test_enough_tests_ran_on_each_kernel({"stock": (skipped, {}), "commspec": (full, {})})


class _Sample(unittest.TestCase):
    """Made-up tests with every outcome the recorder tells apart."""

    __test__ = False

    def test_pass(self) -> None:
        self.assertTrue(True)

    def test_fail(self) -> None:
        self.assertEqual(1, 2)

    def test_error(self) -> None:
        raise RuntimeError("boom")

    def test_skip(self) -> None:
        raise unittest.SkipTest("nothing to test")

    def test_subtests(self) -> None:
        with self.subTest(part="good"):
            pass
        with self.subTest(part="bad"):
            self.assertIn("x", "y")
        with self.subTest(part="skipped"):
            raise unittest.SkipTest("not supported")

    def test_subtests_skipped(self) -> None:
        with self.subTest(part="ok"):
            pass
        with self.subTest(part="skipped"):
            raise unittest.SkipTest("not supported")


class _BrokenFixture(unittest.TestCase):
    __test__ = False

    @classmethod
    def setUpClass(cls) -> None:
        raise RuntimeError("the kernel did not start")

    def test_never_runs(self) -> None:
        pass


def test_recorder_tells_every_outcome_apart() -> None:
    recorder = Recorder("S")
    unittest.TestLoader().loadTestsFromTestCase(_Sample).run(recorder)
    assert recorder.finish() == {
        "S.test_pass": PASS, "S.test_fail": FAIL, "S.test_error": ERROR, "S.test_skip": SKIP,
        "S.test_subtests (part='good')": PASS, "S.test_subtests (part='bad')": FAIL,
        "S.test_subtests (part='skipped')": SKIP, "S.test_subtests": FAIL,
        "S.test_subtests_skipped (part='ok')": PASS,
        "S.test_subtests_skipped (part='skipped')": SKIP, "S.test_subtests_skipped": PASS,
        "S.setUpClass": PASS, "S.tearDownClass": PASS,
    }
    assert "1 != 2" in recorder.details["S.test_fail"]
    assert "boom" in recorder.details["S.test_error"]

    broken = Recorder("B")
    unittest.TestLoader().loadTestsFromTestCase(_BrokenFixture).run(broken)
    got = broken.finish()
    assert got == {"B.setUpClass": ERROR, "B.tearDownClass": PASS}
    assert "did not start" in broken.details["B.setUpClass"]
    # a kernel whose suite could not start loses every test stock passes
    assert regressions({"B.setUpClass": PASS, "B.test_never_runs": PASS}, got) == [
        "B.setUpClass", "B.test_never_runs"]


def test_bound_reads_gives_a_timeout_to_reads_without_one() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class Client:
        def get_shell_msg(self, *args: Any, **kwargs: Any) -> None:
            seen.append((args, kwargs))

        get_iopub_msg = get_stdin_msg = get_shell_msg

    client = Client()
    bound_reads(client)
    client.get_shell_msg()
    client.get_iopub_msg(timeout=None)
    client.get_stdin_msg(timeout=1)
    client.get_shell_msg(True, 2)
    assert seen == [((), {"timeout": jkt.TIMEOUT}), ((), {"timeout": jkt.TIMEOUT}),
                    ((), {"timeout": 1}), ((True, 2), {})]
