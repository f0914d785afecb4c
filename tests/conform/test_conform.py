"""``commspec conform`` can fail: the reference kernel passes every check, each broken
variant (variant_kernel.py, a kernel process of its own) fails exactly the checks of
the rule it breaks, stock ipykernel gets the verdicts it earns, and bad usage exits 2
saying what was wrong.

Each run goes through the CLI in-process (``commspec.cli.main``), its kernels through
jupyter_client's KernelManager, which ends them all. A variant is run with ``--only``
the checks that must catch it plus one that must still pass, so the module stays quick.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from variant_kernel import VARIANTS

import commspec.conform.checks  # noqa: F401 -- registers them
from commspec.cli import main
from commspec.conform import CHECKS, select

HERE = Path(__file__).resolve().parent
PYTHON = shlex.quote(sys.executable)
#: short heartbeats, so a departure is seen in seconds; long enough for a loaded machine
HEARTBEAT = "--heartbeat-interval 0.2 --heartbeat-timeout 3"
REFERENCE = f"{PYTHON} -m commspec kernel --connection-file {{connection_file}} {HEARTBEAT}"
#: the waits of a run where checks must fail (a failing check waits this long): an
#: answer due at once, and what a departure causes (past the heartbeat's 3 s)
QUICK = ("--reply-timeout", "3", "--departure-timeout", "6")


def variant_cmd(name: str) -> str:
    return (f"{PYTHON} {shlex.quote(str(HERE / 'variant_kernel.py'))} {name} "
            f"--connection-file {{connection_file}} {HEARTBEAT}")


def conform(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``commspec conform`` with ``args``; its exit status and its JSON verdicts."""
    out = tmp_path / "verdicts.json"
    code = main(["conform", *args, "--json", str(out)])
    return code, json.loads(out.read_text())


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["outcome"] for c in report["checks"]}


def failing(report: dict[str, Any]) -> set[str]:
    return {name for name, outcome in outcomes(report).items() if outcome == "FAIL"}


# -- the reference kernel -------------------------------------------------------------


def test_the_reference_kernel_passes_every_check(tmp_path: Path) -> None:
    # The default waits: a passing check does not wait them out, and a loaded machine
    # must not turn a slow PASS into a FAIL.
    code, report = conform(tmp_path, "--cmd", REFERENCE)
    assert failing(report) == set(), report["summary"]
    assert set(outcomes(report)) == set(CHECKS), "every check ran"
    assert set(outcomes(report).values()) == {"PASS"}, "none N/A: it has every capability"
    assert code == 0


# -- the broken variants ----------------------------------------------------------------

#: variant -> (the checks run, the ones that must fail); the others must pass
CAUGHT_BY: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    # the policy variants (tests/mbt/mbt_variants.py): disconnection rules
    "persistent_closed_on_disconnect": (
        ("persistent_kept", "kernel_request_invalidated", "reconnect_reconcile",
         "departure_sigkill"),
        frozenset({"persistent_kept", "kernel_request_invalidated", "reconnect_reconcile"})),
    "accepts_without_subscriber": (("kernel_request_undeliverable", "kernel_request_invalidated"),
                                   frozenset({"kernel_request_undeliverable"})),
    "ignores_unsubscribes": (("departure_sigkill", "per_peer", "stdin_departed"),
                             frozenset({"departure_sigkill", "per_peer"})),
    # the wire variants: what one frontend sees
    "welcomes_first_only": (("iopub_welcome", "unknown_target"),
                            frozenset({"iopub_welcome"})),
    "keeps_unknown_target_open": (("unknown_target", "comm_info_lists"),
                                  frozenset({"unknown_target"})),
    "advertises_nothing": (("iopub_welcome", "spec_feature", "kernel_info"),
                           frozenset({"iopub_welcome", "spec_feature"})),
    "replies_after_idle": (("echo_rpc", "comm_info_lists"), frozenset({"echo_rpc"})),
    "replies_unparented": (("echo_rpc", "comm_info_lists"), frozenset({"echo_rpc"})),
    "dies_on_bad_control": (("bad_truncated_control", "bad_truncated_shell"),
                            frozenset({"bad_truncated_control"})),
}


@pytest.mark.parametrize("variant", sorted(CAUGHT_BY))
def test_a_broken_variant_fails_exactly_its_checks(tmp_path: Path, variant: str) -> None:
    run, caught = CAUGHT_BY[variant]
    # The profile is named: one variant hides the flag the profile is chosen by.
    code, report = conform(tmp_path, "--cmd", variant_cmd(variant), "--profile", "commspec",
                           "--only", ",".join(run), *QUICK)
    assert set(outcomes(report)) == set(run)
    assert failing(report) == caught, report["summary"]
    assert {outcomes(report)[name] for name in set(run) - caught} == {"PASS"}
    assert code == 1


#: the policy variants that the wire does not show for certain, so conform passes them
#: and the model-based tests (tests/mbt, white box: the kernel's trace held to the model)
#: catch them: a late reply handed to a request that had ended changes only the kernel's
#: count of late replies; a departure acted on before an answer already received shows
#: only when both reach the kernel in one read (drain_answer_wins tries: it caught
#: no_drain_before_invalidating in 1 of 3 runs here at load 3, so it is not run on it)
WHITE_BOX_ONLY = {
    "late_reply_resolves": ("kernel_request_invalidated", "drain_answer_wins", "echo_rpc"),
    "no_drain_before_invalidating": ("kernel_request_invalidated", "departure_sigkill"),
}


@pytest.mark.parametrize("variant", sorted(WHITE_BOX_ONLY))
def test_a_variant_only_white_box_shows_passes_the_checks_near_its_rule(
        tmp_path: Path, variant: str) -> None:
    run = WHITE_BOX_ONLY[variant]
    code, report = conform(tmp_path, "--cmd", variant_cmd(variant), "--only", ",".join(run),
                           *QUICK)
    assert outcomes(report) == dict.fromkeys(run, "PASS"), report["summary"]
    assert code == 0


def test_every_variant_is_run_against_checks_that_exist() -> None:
    assert set(CAUGHT_BY).isdisjoint(WHITE_BOX_ONLY)
    unrun = set(VARIANTS) - set(CAUGHT_BY) - set(WHITE_BOX_ONLY)
    assert not unrun, f"variants no test runs conform against: {sorted(unrun)}"
    for run, caught in CAUGHT_BY.values():
        select(run)  # a ValueError names a check that does not exist
        assert caught and caught < set(run), "each run has one check that must still pass"
    for run in WHITE_BOX_ONLY.values():
        select(run)


# -- how a kernel is named, and what is written -----------------------------------------


@pytest.fixture
def jupyter_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Jupyter's data paths under tmp_path: kernelspecs installed here are found, and
    nothing is installed where the user's kernels are."""
    prefix = tmp_path / "prefix"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("JUPYTER_PREFER_ENV_PATH", raising=False)
    return prefix


def test_a_kernelspec_is_run_as_jupyter_runs_it(tmp_path: Path, jupyter_path: Path) -> None:
    assert main(["install", "--prefix", str(jupyter_path), "--name", "commspec-conform"]) == 0
    code, report = conform(tmp_path, "--kernelspec", "commspec-conform",
                           "--only", "kernel_info,spec_feature", *QUICK)
    assert report["kernel"] == "kernelspec commspec-conform"
    assert report["profile"] == "commspec", "chosen from the spec's feature flag"
    assert outcomes(report) == {"kernel_info": "PASS", "spec_feature": "PASS"}
    assert code == 0


def test_json_and_junit_say_what_failed_and_why(tmp_path: Path) -> None:
    junit = tmp_path / "verdicts.xml"
    code, report = conform(tmp_path, "--cmd", variant_cmd("advertises_nothing"),
                           "--profile", "commspec", "--only", "kernel_info,spec_feature",
                           "--junit", str(junit), *QUICK)
    assert code == 1
    assert report["summary"] == "1 of 2 applicable checks pass (0 N/A)"
    assert report["profile"] == "commspec" and report["implementation"] == "commspec 0.1.0"
    by_name = {c["check"]: c for c in report["checks"]}
    spec = by_name["spec_feature"]
    assert spec["outcome"] == "FAIL" and "does not declare" in spec["why"]
    assert spec["rule"] == "Negotiation" and spec["property"]
    assert by_name["kernel_info"]["figure"].startswith("protocol 5.5")
    suite = ElementTree.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"kernel_info", "spec_feature"}
    failure = cases["spec_feature"].find("failure")
    assert failure is not None and failure.get("message") == spec["why"]
    assert cases["kernel_info"].find("failure") is None


# -- stock ipykernel --------------------------------------------------------------------


def test_stock_ipykernel_gets_the_verdicts_it_earns(tmp_path: Path) -> None:
    """ipykernel 7.4: welcomes only its first subscriber, declares neither JEP 65's flag
    nor the spec, and keeps a comm whose frontend was SIGKILLed; its comms answer RPCs
    (through the python profile)."""
    code, report = conform(tmp_path, "--kernelspec", "python3", "--only",
                           "kernel_info,iopub_welcome,spec_feature,echo_rpc,departure_sigkill",
                           *QUICK)
    assert report["profile"] == "python"
    assert outcomes(report) == {"kernel_info": "PASS", "iopub_welcome": "FAIL",
                                "spec_feature": "FAIL", "echo_rpc": "PASS",
                                "departure_sigkill": "FAIL"}
    assert code == 1


# -- bad usage ---------------------------------------------------------------------------


def _usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    try:
        code = main(["conform", *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(("args", "says"), [
    (["--cmd", REFERENCE, "--only", "kernel_info,no_such_check"],
     "unknown check(s) no_such_check; known: kernel_info,"),
    (["--cmd", REFERENCE, "--profile", "cobol"], "unknown profile 'cobol'; known: commspec,"),
    (["--cmd", "commspec kernel"], "the command must contain {connection_file}"),
    (["--cmd", REFERENCE, "--reply-timeout", "0"], "--reply-timeout must be a positive"),
    ([], "give --kernelspec NAME or --cmd COMMAND"),
], ids=["unknown check", "unknown profile", "no connection file", "zero timeout",
        "no kernel"])
def test_bad_usage_exits_2_saying_what(capsys: pytest.CaptureFixture[str], args: list[str],
                                       says: str) -> None:
    assert says in _usage_error(capsys, *args)


def test_a_kernelspec_that_does_not_exist_is_named_with_those_that_do(
        capsys: pytest.CaptureFixture[str], jupyter_path: Path) -> None:
    assert main(["install", "--prefix", str(jupyter_path), "--name", "commspec-here"]) == 0
    capsys.readouterr()
    err = _usage_error(capsys, "--kernelspec", "no-such-kernel")
    assert "no kernelspec named 'no-such-kernel'" in err
    assert "commspec-here" in err, "the installed ones are listed"


def test_a_kernel_that_exits_at_once_is_reported_at_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    exits = f"{PYTHON} -c 'import sys; sys.exit(5)' {{connection_file}}"
    err = _usage_error(capsys, "--cmd", exits, "--start-timeout", "30")
    assert "exited with status 5 before answering kernel_info" in err


def test_list_needs_no_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conform", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(CHECKS)
