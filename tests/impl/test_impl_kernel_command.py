"""``commspec kernel`` as a user meets it: its errors, its signals, where its file goes.

Usage errors name what the user gave and say what is wrong (exit 2); SIGINT
interrupts (pending stdin requests end interrupted) and SIGTERM stops; with no
``--connection-file`` the file goes to Jupyter's runtime directory, where
``jupyter console --existing`` looks. Kernels run as subprocesses ended by pid.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_client import find_connection_file
from ki_jupyter import START_WAIT, interrupt_ends_a_pending_stdin_request, wait_until_answering
from ki_peers import WAIT, stock_client

from commspec.cli import main
from commspec.commands import kernel as kernel_command
from commspec.impl.connection import (
    ConnectionFileError,
    ConnectionInfo,
    new_connection_info,
    read_connection_file,
    write_connection_file,
)
from commspec.impl.errors import InsecureConnection

# -- usage errors ------------------------------------------------------------------


def parse_kernel_args(*argv: str) -> argparse.Namespace:
    """Only argparse's part of ``commspec kernel``: nothing starts."""
    parser = argparse.ArgumentParser(prog="commspec")
    kernel_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["kernel", *argv])


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e300"])
@pytest.mark.parametrize("option", ["--heartbeat-interval", "--heartbeat-timeout"])
def test_a_bad_heartbeat_option_says_which_and_what_it_wants(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_kernel_args(option, value)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a positive number of seconds" in err, err
    assert repr(value) in err and "_positive" not in err


def test_a_good_heartbeat_option_is_taken() -> None:
    args = parse_kernel_args("--heartbeat-interval", "0.5", "--heartbeat-timeout", "30")
    assert (args.heartbeat_interval, args.heartbeat_timeout) == (0.5, 30.0)


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """``commspec kernel`` run in this process must leave its signal handlers as they were;
    put them back anyway so a failing test does not take pytest's Ctrl-C with it."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = {s for s, handler in before.items() if signal.getsignal(s) is not handler}
    for s, handler in before.items():
        signal.signal(s, handler)
    assert not changed, f"commspec kernel left its handlers for {changed} in place"


def run_kernel_expecting_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["kernel", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "no connection file was written, so none is printed"
    return captured.err


def test_a_connection_file_in_a_missing_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signal_handlers: None
) -> None:
    given = tmp_path / "no-such-folder" / "kernel.json"
    err = run_kernel_expecting_error(capsys, "--connection-file", str(given))
    assert f"connection file {given}: its folder {given.parent} does not exist" in err, err
    assert ".commspec-" not in err, "the temporary file is no business of the user's"
    assert not given.parent.exists()


def test_a_connection_file_that_is_not_json_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signal_handlers: None
) -> None:
    given = tmp_path / "kernel.json"
    given.write_text('{"shell_port": 1,')
    err = run_kernel_expecting_error(capsys, "--connection-file", str(given))
    assert f"connection file {given}: not valid JSON" in err, err
    assert given.read_text() == '{"shell_port": 1,', "the user's file is left as it was"


def test_a_connection_file_whose_port_is_taken_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signal_handlers: None
) -> None:
    given = tmp_path / "kernel.json"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        write_connection_file(given, ConnectionInfo(taken.getsockname()[1], 0, 0, 0, 0, key="k"))
        err = run_kernel_expecting_error(capsys, "--connection-file", str(given))
    assert f"connection file {given}: cannot listen on its ports (Address already in use" in err


def test_a_trace_file_that_cannot_be_opened_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signal_handlers: None
) -> None:
    trace = tmp_path / "no-such-folder" / "trace.jsonl"
    err = run_kernel_expecting_error(capsys, "--trace", str(trace))
    assert f"trace file {trace}: cannot be opened (No such file or directory)" in err, err


# -- reading and writing connection files --------------------------------------------


def _valid() -> dict[str, object]:
    return new_connection_info().to_dict()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{oops", "not valid JSON (Expecting property name enclosed in double quotes"),
        ("[1, 2]", "holds a JSON array, not an object"),
        ("[" * 100_000, "not valid JSON (nested too deeply)"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        ({k: v for k, v in _valid().items() if k not in ("shell_port", "hb_port")},
         "missing shell_port, hb_port"),
        (dict(_valid(), iopub_port="5555"), "iopub_port must be a port number"),
        (dict(_valid(), iopub_port=True), "iopub_port must be a port number"),
        (dict(_valid(), control_port=70_000), "control_port must be a port number"),
        (dict(_valid(), transport="ipc"), "only tcp transport is supported, not 'ipc'"),
        (dict(_valid(), key=7), "key must be a string"),
    ],
    ids=["bad-json", "array", "deep", "not-utf8", "missing", "port-text", "port-bool",
         "port-range", "transport", "key"],
)
def test_a_bad_connection_file_names_itself_and_the_problem(
    tmp_path: Path, content: object, problem: str
) -> None:
    path = tmp_path / "kernel.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConnectionFileError) as raised:
        read_connection_file(path)
    assert raised.value.path == path
    assert str(raised.value).startswith(f"connection file {path}: {problem}"), raised.value


def test_a_missing_or_folder_connection_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError, match="no such file"):
        read_connection_file(tmp_path / "absent.json")
    with pytest.raises(ConnectionFileError, match=f"connection file {tmp_path}: is a folder"):
        read_connection_file(tmp_path)
    with pytest.raises(ConnectionFileError, match=f"connection file {tmp_path}: is a folder"):
        write_connection_file(tmp_path, new_connection_info())
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == [], "no temporary file is left"


def test_an_empty_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "k.json", ConnectionInfo(1, 2, 3, 4, 5, key=""))
    with pytest.raises(InsecureConnection, match=f"^connection file {path}: .*empty key"):
        read_connection_file(path)


# -- signals and the runtime directory -------------------------------------------------


@dataclass
class KernelCommand:
    process: subprocess.Popen[bytes]
    connection_file: Path

    def end(self) -> None:
        """SIGKILL the kernel we started, if it is still there, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Jupyter's runtime directory for this test only (not made yet: the kernel makes it)."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    return runtime


@pytest.fixture
def kernel_command_process(runtime_dir: Path) -> Iterator[KernelCommand]:
    """``commspec kernel`` with no options, once it printed its connection file."""
    process = subprocess.Popen([sys.executable, "-m", "commspec", "kernel"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    started = KernelCommand(process, Path())
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_WAIT)
        line = process.stdout.readline().decode().strip() if ready else ""
        assert line, "commspec kernel printed no connection file"
        started.connection_file = Path(line)
        yield started
    finally:
        started.end()


def test_the_connection_file_goes_to_jupyters_runtime_directory(
    kernel_command_process: KernelCommand, runtime_dir: Path
) -> None:
    path = kernel_command_process.connection_file
    assert path.parent == runtime_dir and path.name.startswith("kernel-"), path
    # What `jupyter console --existing NAME` does to find it:
    assert Path(find_connection_file(path.name)) == path
    assert read_connection_file(path).key, "a fresh key"


def test_a_runtime_directory_that_cannot_be_made_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(a_file / "runtime"))
    done = subprocess.run([sys.executable, "-m", "commspec", "kernel"], capture_output=True,
                          text=True, timeout=START_WAIT, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert "cannot make Jupyter's runtime directory" in done.stderr, done.stderr
    assert "give one with --connection-file" in done.stderr


def test_sigint_interrupts_and_sigterm_stops(kernel_command_process: KernelCommand) -> None:
    process = kernel_command_process.process
    client = stock_client(str(kernel_command_process.connection_file))
    try:
        wait_until_answering(client)
        interrupt_ends_a_pending_stdin_request(client, lambda: process.send_signal(signal.SIGINT))
        reply = client.kernel_info(reply=True, timeout=WAIT)
        assert reply["content"]["status"] == "ok", "an interrupted kernel answers on"
        assert process.poll() is None
    finally:
        client.stop_channels()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=WAIT) == 0
    assert not kernel_command_process.connection_file.exists(), "the file it made is removed"
