"""The kernel as stock Jupyter frontends run it: installed as a kernelspec, started and
interrupted by jupyter_client's KernelManager (as JupyterLab's and Positron's buttons
do), and used from ``jupyter console --existing``.

Jupyter's paths are this test's own (JUPYTER_DATA_DIR, JUPYTER_PATH,
JUPYTER_RUNTIME_DIR, JUPYTER_CONFIG_DIR, IPYTHONDIR under tmp_path): nothing is
installed or read where the user's kernels are. Every kernel is ended by the
KernelManager that started it, the console by pid.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from ki_jupyter import (
    START_WAIT,
    interrupt_ends_a_pending_stdin_request,
    is_welcome,
    wait_until_answering,
)
from ki_peers import WAIT, stock_client, stock_wait_iopub

from commspec.cli import main

NAME = "commspec-test"


@dataclass(frozen=True)
class JupyterDirs:
    data: Path  # --user installs here (JUPYTER_DATA_DIR)
    prefix: Path  # --prefix installs under it; on JUPYTER_PATH
    runtime: Path  # connection files (JUPYTER_RUNTIME_DIR)


@pytest.fixture
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JupyterDirs:
    dirs = JupyterDirs(tmp_path / "data", tmp_path / "prefix", tmp_path / "runtime")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(dirs.data))
    monkeypatch.setenv("JUPYTER_PATH", str(dirs.prefix / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(dirs.runtime))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("JUPYTER_PREFER_ENV_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    return dirs


def install(*argv: str) -> int:
    return main(["install", *argv])


# -- commspec install --------------------------------------------------------------------


def test_install_prefix_writes_a_kernelspec_jupyter_finds(
    jupyter_dirs: JupyterDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install("--prefix", str(jupyter_dirs.prefix), "--name", NAME) == 0
    where = jupyter_dirs.prefix / "share" / "jupyter" / "kernels" / NAME
    assert str(where) in capsys.readouterr().out
    spec = KernelSpecManager().get_kernel_spec(NAME)
    assert Path(spec.resource_dir) == where
    assert spec.argv == [sys.executable, "-m", "commspec", "kernel",
                         "--connection-file", "{connection_file}"]
    assert spec.interrupt_mode == "signal", "SIGINT interrupts, so Jupyter may send it"
    assert spec.language == "commspec" and "commspec" in spec.display_name


def test_install_user_writes_to_jupyters_data_dir(jupyter_dirs: JupyterDirs) -> None:
    assert install("--user") == 0
    written = json.loads((jupyter_dirs.data / "kernels" / "commspec" / "kernel.json").read_text())
    assert written["interrupt_mode"] == "signal"
    assert KernelSpecManager().get_kernel_spec("commspec").argv == written["argv"]


def test_install_sys_prefix_writes_under_this_pythons_prefix(
    jupyter_dirs: JupyterDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "prefix", str(jupyter_dirs.prefix))  # not the real venv
    assert install("--sys-prefix", "--name", NAME) == 0
    assert KernelSpecManager().get_kernel_spec(NAME).interrupt_mode == "signal"
    assert (jupyter_dirs.prefix / "share" / "jupyter" / "kernels" / NAME / "kernel.json").exists()


def test_install_again_replaces_the_kernelspec(jupyter_dirs: JupyterDirs) -> None:
    assert install("--user", "--name", NAME) == 0
    spec_file = jupyter_dirs.data / "kernels" / NAME / "kernel.json"
    spec_file.write_text("{}")
    assert install("--user", "--name", NAME) == 0
    assert json.loads(spec_file.read_text())["interrupt_mode"] == "signal"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--user", "--name", "a/b"], "--name: 'a/b' is not a kernel name"),
        (["--user", "--name", ""], "--name: '' is not a kernel name"),
        (["--user", "--prefix", "p"], "not allowed with argument"),
        (["--sys-prefix", "--user"], "not allowed with argument"),
    ],
)
def test_install_refuses_bad_options_and_writes_nothing(
    jupyter_dirs: JupyterDirs, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        install(*argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
    assert not jupyter_dirs.data.exists() and not jupyter_dirs.prefix.exists()


def test_install_into_a_prefix_it_cannot_write_says_so(
    jupyter_dirs: JupyterDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    assert install("--prefix", str(a_file)) == 2
    err = capsys.readouterr().err
    assert f"commspec install: cannot install the kernelspec under {a_file}" in err, err


# -- KernelManager: start, interrupt, shut down ------------------------------------------


@pytest.fixture
def kernel_manager(jupyter_dirs: JupyterDirs, tmp_path: Path) -> Iterator[KernelManager]:
    """The installed kernelspec, started by jupyter_client as JupyterLab starts kernels.
    The kernel's log is printed at the end (pytest shows it if the test failed)."""
    assert install("--prefix", str(jupyter_dirs.prefix), "--name", NAME) == 0
    # Where Jupyter Server puts its kernels' files, so --existing finds them by name.
    jupyter_dirs.runtime.mkdir()
    runtime_file = jupyter_dirs.runtime / f"kernel-{uuid.uuid4()}.json"
    manager = KernelManager(kernel_name=NAME, connection_file=str(runtime_file))
    log_path = tmp_path / "kernel.log"
    with open(log_path, "wb") as log:
        manager.start_kernel(stdout=log, stderr=log, extra_arguments=["--log-level", "INFO"])
    try:
        yield manager
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
        manager.cleanup_resources()
        print(f"-- the kernel's log:\n{log_path.read_text(errors='replace')}")


def test_kernel_manager_interrupts_and_shuts_down_the_kernel(
    kernel_manager: KernelManager,
) -> None:
    process: Any = kernel_manager.provisioner.process  # type: ignore[union-attr]
    client = stock_client(kernel_manager.connection_file)
    try:
        wait_until_answering(client)
        # What the Interrupt button does: SIGINT (interrupt_mode "signal").
        interrupt_ends_a_pending_stdin_request(client, kernel_manager.interrupt_kernel)
        assert kernel_manager.is_alive()
        assert client.kernel_info(reply=True, timeout=WAIT)["content"]["status"] == "ok"
    finally:
        client.stop_channels()
    kernel_manager.shutdown_kernel()
    assert not kernel_manager.is_alive()
    assert process.returncode == 0, "it stopped on the shutdown_request, not by a kill"


# -- jupyter console --existing ------------------------------------------------------------

#: the request types jupyter console 6 sends a kernel while a user types ``1 + 1``,
#: Tab and Enter (its startup, completion, is_complete check and execution)
CONSOLE_REQUESTS: dict[str, dict[str, Any]] = {
    "kernel_info_request": {},
    "history_request": {"hist_access_type": "tail", "n": 1000, "raw": True, "output": False},
    "complete_request": {"code": "1 + ", "cursor_pos": 4},
    "is_complete_request": {"code": "1 + 1"},
    "execute_request": {"code": "1 + 1", "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": True, "stop_on_error": True},
    "inspect_request": {"code": "echo", "cursor_pos": 4, "detail_level": 0},
}

#: is_complete_reply says how complete the code is, not whether it went well
REPLY_STATUSES = {"is_complete_request": ("complete", "incomplete", "invalid", "unknown")}


def test_every_request_jupyter_console_sends_is_answered(
    kernel_manager: KernelManager,
) -> None:
    client = stock_client(kernel_manager.connection_file)
    try:
        wait_until_answering(client)
        for msg_type, content in CONSOLE_REQUESTS.items():
            request = client.session.msg(msg_type, content)
            client.shell_channel.send(request)
            reply = client.get_shell_msg(timeout=WAIT)
            assert reply["parent_header"]["msg_id"] == request["header"]["msg_id"], msg_type
            assert reply["msg_type"] == msg_type.replace("_request", "_reply")
            statuses = REPLY_STATUSES.get(msg_type, ("ok", "error"))
            assert reply["content"].get("status") in statuses, reply["content"]
    finally:
        client.stop_channels()


@pytest.fixture
def iopub_observer(kernel_manager: KernelManager) -> Iterator[BlockingKernelClient]:
    """A stock client subscribed to everything before the console starts: the kernel's
    welcome for the console's subscription (published on the topic everyone takes)
    reaches it too, and tells when the console's IOPub is in."""
    client = stock_client(kernel_manager.connection_file)
    try:
        wait_until_answering(client)
        yield client
    finally:
        client.stop_channels()


@pytest.fixture
def console(kernel_manager: KernelManager,
            iopub_observer: BlockingKernelClient) -> Iterator[pexpect.spawn]:
    """``jupyter console --existing NAME`` on the kernel (NAME found in the runtime
    directory), in its plain prompt mode (the one jupyter_console's own tests use),
    ended by pid if it did not end by itself."""
    env = dict(os.environ, JUPYTER_CONSOLE_TEST="1", TERM="dumb")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "jupyter_console", "--existing", Path(kernel_manager.connection_file).name,
         "--no-confirm-exit",
         # Answered at once; only a kernel that never answers waits this long.
         f"--ZMQTerminalInteractiveShell.kernel_is_complete_timeout={START_WAIT}"],
        env=env, encoding="utf-8", timeout=START_WAIT,
    )
    try:
        yield child
    finally:
        child.close(force=True)


def test_jupyter_console_gets_an_answer_to_everything(
    console: pexpect.spawn, kernel_manager: KernelManager, iopub_observer: BlockingKernelClient
) -> None:
    console.expect_exact("commspec reference kernel")  # kernel_info_reply's banner
    console.expect_exact("In [1]: ")
    # jupyter console does not wait for its IOPub subscription (nor for any kernel's
    # welcome): an idle published before it is in never reaches it, and it would wait
    # for that idle forever. Type once the subscription is in, as a person would.
    stock_wait_iopub(iopub_observer, is_welcome, timeout=START_WAIT, what="console's welcome")
    console.sendline("1 + 1")  # is_complete_request, then execute_request
    index = console.expect([r"In \[\d+\]: ", "did not respond", pexpect.TIMEOUT])
    assert index == 0, f"no next prompt: {console.before!r}"
    console.sendeof()
    console.expect_exact("keeping kernel alive")
    console.expect(pexpect.EOF)
    console.close()
    assert console.exitstatus == 0
    assert kernel_manager.is_alive(), "a console on an existing kernel leaves it running"
