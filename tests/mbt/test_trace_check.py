"""``commspec trace-check``: a trace recorded from a real run conforms; corrupted copies fail
at the right line, and unreadable lines are a format error (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from commspec.cli import main
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.impl.tracing import JsonLinesSink, ListSink, Tee, match
from commspec.model.trace_check import TraceFormatError, check_lines

WAIT = 15.0
OPTIONS = FrontendOptions(heartbeat_interval=0.2, heartbeat_timeout=2.0, probe_interval=0.05)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A trace of a real run: two frontends, both comm kinds, requests, a departure."""
    path = tmp_path_factory.mktemp("trace") / "run.jsonl"
    listen = ListSink()
    with JsonLinesSink(path) as sink:
        tee = Tee(sink, listen)
        kernel = KernelEndpoint(
            sink=tee, config=KernelConfig(heartbeat=HeartbeatSettings(0.2, 3.0), stop_linger=0.2)
        ).start()
        a = b = None
        try:
            a = FrontendEndpoint(kernel.connection_file, sink=tee, options=OPTIONS)
            b = FrontendEndpoint(kernel.connection_file, sink=tee, options=OPTIONS)
            a.wait_ready(WAIT)
            b.wait_ready(WAIT)
            plain = a.open_comm(ECHO)
            kept = a.open_comm(ECHO_PERSISTENT)
            assert plain.request("echo", 1).result(WAIT) == 1
            assert kept.request("echo", 2).result(WAIT) == 2
            assert b.open_comm(ECHO).request("echo", 3).result(WAIT) == 3
            mark = listen.mark()
            a.close()
            listen.wait_for(
                match(endpoint="kernel", machine="kernel_comm", event="frontend_lost",
                      dest="detached"), WAIT, since=mark)
        finally:
            for fe in (a, b):
                if fe is not None:
                    fe.close()
            kernel.stop()
    yield path


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _find(lines: list[str], **wanted: str) -> int:
    for i, line in enumerate(lines):
        d = json.loads(line)
        if all(d[k] == v for k, v in wanted.items()):
            return i
    raise AssertionError(f"no line with {wanted}")


def test_recorded_trace_conforms(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = check_lines(_lines(recorded))
    assert report.ok, report.deviation and report.deviation.describe()
    # the run exercised every machine but stdin, on both sides
    assert set(report.machines) >= {"kernel_comm", "frontend_comm", "request", "presence",
                                    "session"}
    assert ("kernel_comm", "open", "frontend_lost", "detached") in report.rows
    assert main(["trace-check", str(recorded)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"{report.events} events" in out


@pytest.mark.parametrize(
    ("where", "change", "reason"),
    [
        ({"machine": "request", "event": "result"}, {"event": "peer_lost"}, "no row"),
        ({"machine": "kernel_comm", "event": "frontend_lost"}, {"from": "new"}, "'from' is"),
        ({"machine": "session", "event": "welcomed"}, {"machine": "sessions"},
         "unknown machine"),
        ({"machine": "presence", "event": "subscribe"}, {"to": "lost"}, "no state 'lost'"),
    ],
    ids=["event-changed", "from-changed", "unknown-machine", "unknown-state"],
)
def test_corrupted_copy_fails_at_the_right_line(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    where: dict[str, str], change: dict[str, str], reason: str,
) -> None:
    lines = _lines(recorded)
    i = _find(lines, **where)
    d = json.loads(lines[i])
    d.update(change)
    lines[i] = json.dumps(d)
    bad = _write(tmp_path / "bad.jsonl", lines)
    report = check_lines(_lines(bad))
    assert report.deviation is not None
    assert report.deviation.line == i + 1
    assert reason in report.deviation.reason
    assert report.events == i  # every event before it conformed
    assert main(["trace-check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"line {i + 1}:" in out and reason in out


def test_context_shows_the_objects_preceding_events(recorded: Path, tmp_path: Path) -> None:
    lines = _lines(recorded)
    i = _find(lines, machine="kernel_comm", event="frontend_lost")
    obj = json.loads(lines[i])["object"]
    d = json.loads(lines[i])
    d["event"] = "rejected"
    lines[i] = json.dumps(d)
    report = check_lines(lines, context=3)
    assert report.deviation is not None
    ctx = report.deviation.context
    assert ctx and all(e.object == obj for _, e in ctx)
    assert [e.event for _, e in ctx][-1] == "opened_by_frontend"
    assert "preceding events" in report.deviation.describe()


def test_dropped_event_is_caught(recorded: Path) -> None:
    # Removing an object's first transition leaves its next one starting from a wrong state.
    lines = _lines(recorded)
    i = _find(lines, machine="request", event="sent")
    obj = json.loads(lines[i])["object"]
    del lines[i]
    report = check_lines(lines)
    assert report.deviation is not None
    assert report.deviation.event.object == obj
    assert "'from' is 'pending' but the object is in 'new'" in report.deviation.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [("{not json", "not JSON"), ("[1, 2]", "not an object"),
     ('{"endpoint": "k", "machine": "request"}', "missing key"),
     ('{"endpoint": "k", "machine": "request", "object": "o", "from": "new", '
      '"event": "sent", "to": "pending", "time": "soon"}', "'time' is not a number")],
)
def test_malformed_line_is_exit_2_naming_the_line(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, reason: str
) -> None:
    lines = [*_lines(recorded)[:4], text, *_lines(recorded)[4:]]
    bad = _write(tmp_path / "malformed.jsonl", lines)
    with pytest.raises(TraceFormatError) as raised:
        check_lines(_lines(bad))
    assert raised.value.line == 5 and reason in raised.value.reason
    assert main(["trace-check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 5" in err and reason in err


def test_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace-check", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_reused_id_after_terminal_state_is_a_new_incarnation() -> None:
    def ev(src: str, event: str, dst: str) -> str:
        return json.dumps({"endpoint": "frontend:x", "machine": "session", "object": "x",
                           "from": src, "event": event, "to": dst, "time": 0.0})

    lines = [ev("connecting", "welcomed", "ready"), ev("ready", "close", "closed"),
             ev("connecting", "welcomed", "ready")]
    assert check_lines(lines).ok
    # but not from a non-terminal state
    lines = [ev("connecting", "welcomed", "ready"), ev("connecting", "welcomed", "ready")]
    report = check_lines(lines)
    assert report.deviation is not None and report.deviation.line == 2
