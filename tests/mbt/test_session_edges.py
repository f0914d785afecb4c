"""The session machine's transient transitions, taken live (``commspec.mbt.session_edges``).

- Every row the lockstep harness cannot stop at is taken by the real frontend.
- The checks can fail: a wrong expectation fails its scenario by name (releasing
  everything), and an undeclared event fed to the Recorder is a deviation.
- Nothing is left behind: no thread, no connection file.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from commspec.mbt import session_edges
from commspec.mbt.harness import Coverage, Recorder
from commspec.mbt.session_edges import (
    CONNECT_DEADLINE,
    EXPECTED,
    SESSION_EDGES,
    assert_session,
    run_session_edges,
)
from commspec.model.trace import TraceEvent

#: the rows these scenarios exist for: (machine, source, event, dest)
ROWS = (
    ("session", "connecting", "link_lost", "lost"),
    ("session", "reconnecting", "link_lost", "lost"),
    ("session", "reconnecting", "close", "closed"),
    ("session", "reconciling", "welcomed", "reconciling"),
    ("session", "reconciling", "link_lost", "lost"),
    ("session", "reconciling", "close", "closed"),
    ("session", "ready", "welcomed", "ready"),
    ("frontend_comm", "stale", "closed_by_frontend", "closed"),
    ("frontend_comm", "stale", "closed_by_kernel", "closed"),
    ("frontend_comm", "stale", "link_lost", "stale"),
)


@dataclass
class EdgeRun:
    coverage: Coverage
    timings: list[tuple[str, float]]
    seconds: float
    threads_left: list[threading.Thread]
    files_left: list[Path]


def _threads_left(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeRun]:
    # the reference kernel writes its connection file into the temporary directory:
    # a private one shows whether it is removed
    tmp = tmp_path_factory.mktemp("edges")
    before = set(threading.enumerate())
    coverage = Coverage()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        began = time.monotonic()
        timings = run_session_edges(coverage)
        seconds = time.monotonic() - began
    yield EdgeRun(coverage, timings, seconds, _threads_left(before), sorted(tmp.iterdir()))


def test_every_transient_row_is_taken(edge_run: EdgeRun) -> None:
    for name, seconds in edge_run.timings:
        print(f"{seconds:6.3f} s  {name}")
    missing = [row for row in ROWS if edge_run.coverage.taken[row] == 0]
    for row in missing:
        print("not taken:", row)
    assert not missing, missing
    assert [name for name, _ in edge_run.timings] == [name for name, _ in SESSION_EDGES]
    assert edge_run.seconds < 10.0, edge_run.timings


def test_nothing_is_left_behind(edge_run: EdgeRun) -> None:
    assert edge_run.threads_left == [], edge_run.threads_left
    assert edge_run.files_left == [], edge_run.files_left


def test_a_wrong_expectation_fails_its_scenario_and_releases_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (scenario,) = [entry for entry in SESSION_EDGES if entry[0] == CONNECT_DEADLINE]
    monkeypatch.setattr(session_edges, "SESSION_EDGES", (scenario,))
    # the live frontend is lost when the deadline passes; claim it got ready instead
    wrong = (("connecting", "welcomed", "ready"), ("ready", "close", "closed"))
    monkeypatch.setitem(EXPECTED, CONNECT_DEADLINE, wrong)
    before = set(threading.enumerate())
    with pytest.raises(AssertionError) as failed:
        run_session_edges()
    text = str(failed.value)
    assert CONNECT_DEADLINE in text
    assert "('connecting', 'link_lost', 'lost')" in text  # what the live trace holds
    assert _threads_left(before) == []


def test_an_undeclared_event_is_a_deviation() -> None:
    coverage = Coverage()
    recorder = Recorder(coverage)
    endpoint, session = "frontend:s1", "s1"

    def feed(source: str, event: str, dest: str) -> None:
        recorder(TraceEvent(endpoint, "session", session, source, event, dest, time.monotonic()))

    feed("connecting", "welcomed", "ready")
    assert recorder.checker.report.deviation is None
    # the session table has no reconciled from ready: comm_info settles only a reconnect
    feed("ready", "reconciled", "ready")
    deviation = recorder.checker.report.deviation
    assert deviation is not None and "no row ready --reconciled--> ready" in deviation.reason
    with pytest.raises(AssertionError, match="does not declare"):
        assert_session(recorder, endpoint, (("connecting", "welcomed", "ready"),))
