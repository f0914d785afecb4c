"""commspec.ipykernel from the stock tools: jupyter console, jupyter_client, and
jupyter_server (JupyterLab's backend: JupyterLab talks to kernels only through it).

The kernels are started from the kernelspec of ``kernelspecs`` (conftest.py), as each
tool starts kernels itself: ``jupyter console --kernel NAME``, ``KernelManager``,
``POST /api/kernels``. Every wait is bounded and on something the tools show (a
prompt, a reply, a websocket message, a process ending), never a sleep.

- jupyter console (pexpect, its plain prompt mode): ``1+1``, ``input()`` answered at
  the prompt, Ctrl-C during ``time.sleep(600)``, ``exit`` ending console and kernel;
- jupyter_client: complete, inspect, history, is_complete, ``interrupt_kernel()``,
  ``restart_kernel()``, shutdown;
- jupyter_server: a kernel started through the REST API, an ipywidgets slider made on
  one websocket (a page), the websocket closed and another opened with a new
  session_id (a page reload): the slider is listed, its state comes back, code runs.
  The kernel's trace (``COMMSPEC_TRACE``) says what the kernel saw of the reload.

Where a test fails on our kernel, stock ipykernel runs it too (parametrized "stock"):
it passes there, so the failure is the kernel's, not the test's.

Processes: each is ended by the handle this file has on it: the console by pexpect,
its kernel by a pidfd (its pid printed by the kernel), KernelManager's kernels by their
manager, the server by its Popen (SIGTERM, then SIGKILL), its kernel by DELETE
/api/kernels/<id> first.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pexpect
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from commspec.impl.tracing import ListSink, match
from commspec.mbt.external import TraceFollower
from commspec.model.trace import TraceEvent

Message = dict[str, Any]

#: a reply, an IOPub message, a prompt
WAIT = 15.0
#: a kernel, a console or a server starting on a loaded machine
START = 60.0
WIDGET = "jupyter.widget"
ECHO = "commspec.echo"
TRACE_ENV = "COMMSPEC_TRACE"
#: a kernel's exit after its shutdown_reply (stock ipykernel: a fraction of a second)
EXIT = 10.0
#: how often a server that refuses connections while it starts is asked again
RETRY = 0.1


# =========================================================================
# processes the tools started
# =========================================================================


class Process:
    """A process this test did not spawn itself (a kernel jupyter console or
    jupyter_server started), held by a pidfd: waited for and killed without a pid
    reused by another process ever being signalled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = os.pidfd_open(pid)

    def wait_gone(self, timeout: float) -> bool:
        """Whether the process has ended within ``timeout`` (the pidfd turns readable)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready)

    def end(self) -> None:
        """SIGKILL it if it still runs; close the pidfd."""
        try:
            if not self.wait_gone(0):
                signal.pidfd_send_signal(self.fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(self.fd)


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """os.environ (its JUPYTER_PATH: the kernelspecs fixture's) with Jupyter's and
    IPython's own folders under ``tmp_path``: nothing of the user's is read or written."""
    env = dict(os.environ)
    for name, folder in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                         ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")):
        (tmp_path / folder).mkdir(exist_ok=True)
        env[name] = str(tmp_path / folder)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    return env


# =========================================================================
# 1: jupyter console --kernel
# =========================================================================


@dataclass
class Console:
    child: pexpect.spawn
    kernel: Process | None = None

    def prompt(self, number: int) -> None:
        self.child.expect_exact(f"In [{number}]: ")

    def run(self, code: str, shows: str, then_prompt: int) -> None:
        """Type ``code``; ``shows`` appears, then the prompt ``In [then_prompt]``."""
        self.child.sendline(code)
        self.child.expect_exact(shows)
        self.prompt(then_prompt)


@pytest.fixture
def console(kernelspecs: dict[str, str], tmp_path: Path) -> Iterator[Console]:
    """``jupyter console --kernel NAME`` (it starts the kernel itself) in its plain
    prompt mode (the one jupyter_console's own tests use); the console and its
    kernel killed by pid if they did not end by themselves."""
    env = dict(isolated_env(tmp_path), JUPYTER_CONSOLE_TEST="1", TERM="dumb")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "jupyter_console", "--kernel", kernelspecs["commspec"], "--no-confirm-exit",
         f"--ZMQTerminalInteractiveShell.kernel_is_complete_timeout={WAIT}",
         f"--ZMQTerminalInteractiveShell.kernel_timeout={START}"],
        env=env, cwd=str(tmp_path), encoding="utf-8", timeout=WAIT,
    )
    made = Console(child)
    try:
        yield made
    finally:
        try:
            child.close(force=True)
        finally:
            if made.kernel is not None:
                made.kernel.end()
            print(f"-- what the console showed last:\n{child.before!r}")


def test_jupyter_console_runs_code_input_interrupt_and_exit(console: Console) -> None:
    child = console.child
    child.expect_exact("In [1]: ", timeout=START)  # the kernel started and answered
    console.run("1+1", "Out[1]: 2", 2)
    # The kernel's pid, to see it end on `exit` (the console does not say).
    child.sendline("import os; os.getpid()")
    child.expect(r"Out\[2\]: (\d+)")
    console.kernel = Process(int(child.match.group(1)))
    console.prompt(3)

    # input(): the prompt as the console shows it (not the typed line's echo), answered
    child.sendline('print("got", input("who" + " are you? "))')
    child.expect_exact("who are you? ")
    child.sendline("Ada")
    child.expect_exact("got Ada")
    console.prompt(4)

    # Ctrl-C while the cell runs: the console interrupts the kernel (a SIGINT, the
    # kernelspec's interrupt_mode); the cell ends in KeyboardInterrupt, the prompt is back
    child.sendline('import time; print("sl" + "eeping", flush=True); time.sleep(600)')
    child.expect_exact("sleeping")  # the cell's output: it runs
    child.sendintr()
    child.expect_exact("KeyboardInterrupt")
    console.prompt(5)
    console.run("2+3", "Out[5]: 5", 6)

    child.sendline("exit")
    child.expect_exact("Shutting down kernel")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, f"the console exited {child.exitstatus}/{child.signalstatus}"
    assert console.kernel.wait_gone(WAIT), (
        f"the kernel (pid {console.kernel.pid}) still runs {WAIT} s after `exit`")


# =========================================================================
# 2: jupyter_client (KernelManager and its client)
# =========================================================================


@dataclass
class Managed:
    manager: KernelManager
    client: BlockingKernelClient
    log_path: Path

    def execute(self, code: str, store_history: bool = False) -> tuple[Message, list[Message]]:
        """Run ``code``: its execute_reply and its IOPub messages up to its idle."""
        msg_id = self.client.execute(code, store_history=store_history)
        return self.reply_to(msg_id), iopub_until_idle(self.client, msg_id)

    def reply_to(self, msg_id: str, timeout: float = WAIT) -> Message:
        return shell_reply(self.client, msg_id, timeout)


def shell_reply(client: BlockingKernelClient, msg_id: str, timeout: float = WAIT) -> Message:
    """The shell reply to ``msg_id`` (others are dropped)."""
    while True:
        try:
            reply: Message = client.get_shell_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no shell reply to {msg_id} within {timeout} s") from None
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def iopub_until_idle(client: BlockingKernelClient, msg_id: str,
                     timeout: float = WAIT) -> list[Message]:
    """IOPub messages parented to ``msg_id``, up to its idle (included)."""
    seen: list[Message] = []
    while True:
        try:
            msg: Message = client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no idle for {msg_id} within {timeout} s; seen "
                                 f"{[m['msg_type'] for m in seen]}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen


def start_client(manager: KernelManager) -> BlockingKernelClient:
    """The manager's client, once the kernel answers and its IOPub is in (jupyter_client's
    wait_for_ready: a kernel_info_reply, then an IOPub message)."""
    client: BlockingKernelClient = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=START)
    except BaseException:
        client.stop_channels()
        raise
    return client


@pytest.fixture
def managed(kernelspecs: dict[str, str], tmp_path: Path,
            request: pytest.FixtureRequest) -> Iterator[Managed]:
    """Our kernel as JupyterLab's server and Positron start kernels: a KernelManager.
    Parametrized indirectly with "stock", stock ipykernel (the control where a test
    fails on ours: the same test passes on ipykernel)."""
    kind = getattr(request, "param", "commspec")
    manager = KernelManager(kernel_name=kernelspecs[kind])
    log_path = tmp_path / "kernel.log"
    client: BlockingKernelClient | None = None
    log = log_path.open("wb")  # open throughout: a restart starts the next kernel with it
    try:
        manager.start_kernel(env=isolated_env(tmp_path), cwd=str(tmp_path),
                             stdout=log, stderr=log)
        client = start_client(manager)
        made = Managed(manager, client, log_path)
        yield made
        client = made.client  # a restart replaces it
    finally:
        if client is not None:
            client.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
        manager.cleanup_resources()
        log.close()
        if log_path.exists():  # shown with a failure (pytest's captured stdout)
            print(f"-- the kernel's output:\n{log_path.read_text(errors='replace')}")


def test_complete_inspect_history_and_is_complete(managed: Managed) -> None:
    client = managed.client
    reply = managed.reply_to(client.complete("import o", 8))
    content = reply["content"]
    assert content["status"] == "ok", content
    assert "os" in content["matches"], f"complete('import o') matched {content['matches']}"
    assert (content["cursor_start"], content["cursor_end"]) == (7, 8), content

    content = managed.reply_to(client.inspect("print", 5))["content"]
    assert content["status"] == "ok" and content["found"] is True, content
    assert "print" in content["data"]["text/plain"], content["data"]

    reply, _ = managed.execute("answer = 6 * 7", store_history=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    content = managed.reply_to(client.history(hist_access_type="tail", n=10, raw=True,
                                              output=False))["content"]
    assert content["status"] == "ok", content
    inputs = [entry[2] for entry in content["history"]]
    assert "answer = 6 * 7" in inputs, f"the history's tail: {inputs}"

    for code, status in (("for i in range(3):", "incomplete"), ("1 + 1", "complete"),
                         ("1 +)", "invalid")):
        content = managed.reply_to(client.is_complete(code))["content"]
        assert content["status"] == status, f"is_complete({code!r}): {content}"
        if status == "incomplete":
            assert content["indent"] == "    ", content


def test_interrupt_kernel_ends_a_sleep_in_keyboard_interrupt(managed: Managed) -> None:
    client = managed.client
    msg_id = client.execute('import time; print("sleeping", flush=True); time.sleep(600)')
    # Interrupt only once the cell runs (its output): before, the SIGINT could come
    # while the kernel waits for it, which is another case.
    while True:
        try:
            msg = client.get_iopub_msg(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"the sleeping cell printed nothing in {WAIT} s") from None
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                and "sleeping" in msg["content"]["text"]):
            break
    managed.manager.interrupt_kernel()
    content = managed.reply_to(msg_id)["content"]
    assert content["status"] == "error", content
    assert content["ename"] == "KeyboardInterrupt", content
    errors = [m["content"]["ename"] for m in iopub_until_idle(client, msg_id)
              if m["msg_type"] == "error"]
    assert errors == ["KeyboardInterrupt"], f"the cell's error messages: {errors}"
    reply, _ = managed.execute("after = 1")
    assert reply["content"]["status"] == "ok", "the next cell did not run after the interrupt"


@pytest.mark.parametrize("managed", ["commspec", "stock"], indirect=True)
def test_restart_kernel_gives_a_new_process_without_the_old_variables(
        managed: Managed) -> None:
    reply, _ = managed.execute("before_restart = 'here'")
    assert reply["content"]["status"] == "ok", reply["content"]
    old: subprocess.Popen[bytes] = managed.manager.provisioner.process  # type: ignore[union-attr]
    managed.client.stop_channels()

    managed.manager.restart_kernel()  # a shutdown_request (restart), then a new process

    new: subprocess.Popen[bytes] = managed.manager.provisioner.process  # type: ignore[union-attr]
    assert new.pid != old.pid and new.poll() is None
    managed.client = start_client(managed.manager)
    reply, outputs = managed.execute("import os; print(os.getpid()); before_restart")
    printed = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
    assert printed.strip() == str(new.pid), f"the new kernel printed {printed!r}"
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "NameError", reply["content"]
    # KernelManager waits shutdown_wait_time / 2 for the old process to exit on its
    # shutdown_request, then SIGTERMs it (-15), then SIGKILLs it
    assert old.poll() == 0, (
        f"the old kernel (pid {old.pid}) ended {old.poll()}, not 0: it did not exit on its "
        f"shutdown_request (restart), KernelManager had to signal it")


@pytest.mark.parametrize("managed", ["commspec", "stock"], indirect=True)
def test_shutdown_request_is_answered_and_the_kernel_exits(managed: Managed) -> None:
    process: subprocess.Popen[bytes] = managed.manager.provisioner.process  # type: ignore[union-attr]
    client = managed.client
    msg_id = client.shutdown()  # on the control channel, as jupyter_client sends it
    try:
        reply = client.control_channel.get_msg(timeout=WAIT)
    except queue.Empty:
        raise AssertionError(f"no shutdown_reply within {WAIT} s") from None
    assert reply["parent_header"].get("msg_id") == msg_id
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"]["status"] == "ok" and reply["content"]["restart"] is False, (
        reply["content"])
    try:
        returncode = process.wait(timeout=EXIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the kernel still runs {EXIT} s after its shutdown_reply") from None
    assert returncode == 0, f"the kernel exited {returncode}"


# =========================================================================
# 3: jupyter_server, and a page reload
# =========================================================================


TOKEN = uuid.uuid4().hex


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    trace: ListSink
    output: list[str] = field(default_factory=list)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url(path), method=method, headers={"Authorization": f"token {TOKEN}"},
            data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(request, timeout=START) as response:
            text = response.read()
        return json.loads(text) if text else None

    def wait_answering(self, lines: queue.Queue[str | None]) -> None:
        """Until the server answers ``/api/status``. It says where it runs before it
        listens (its first loop callback binds the port), so a connection can be refused
        first: asked again at each line it writes, or every RETRY s."""
        deadline = time.monotonic() + START
        while True:
            try:
                self.rest("GET", "/api/status")
                return
            except urllib.error.URLError as e:
                if not isinstance(e.reason, ConnectionRefusedError):
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter_server refused connections for {START} s")
            try:
                if lines.get(timeout=RETRY) is None:
                    raise AssertionError(f"jupyter_server exited {self.process.wait()}: "
                                         f"{''.join(self.output)}")
            except queue.Empty:
                pass


def read_lines(stream: Any, into: list[str], lines: queue.Queue[str | None]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        into.append(line)
        lines.put(line)
    lines.put(None)


@pytest.fixture
def server(kernelspecs: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """``python -m jupyter_server`` on 127.0.0.1, a port of the system's choosing, a
    token of this run; its kernels write their trace to COMMSPEC_TRACE. Stopped by
    SIGTERM (it shuts its kernels down), then SIGKILL if it has not ended."""
    (tmp_path / "root").mkdir()
    trace_path = tmp_path / "trace.jsonl"
    trace_path.touch()
    sink = ListSink()
    follower = TraceFollower(trace_path, sink)
    env = dict(isolated_env(tmp_path), **{TRACE_ENV: str(trace_path)})
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.port=0", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={TOKEN}", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={tmp_path / 'root'}", "--ServerApp.terminals_enabled=False",
         "--allow-root"],  # the tests may run as root (containers)
        env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(process.stdout, output, lines),
                              daemon=True)
    reader.start()
    try:
        port = None
        while port is None:
            try:
                line = lines.get(timeout=START)
            except queue.Empty:
                raise AssertionError(f"jupyter_server did not say where it runs within "
                                     f"{START} s: {''.join(output)}") from None
            if line is None:
                raise AssertionError(f"jupyter_server exited {process.wait()}: "
                                     f"{''.join(output)}")
            if found := re.search(r"http://127\.0\.0\.1:(\d+)/", line):
                port = int(found.group(1))
        made = Server(process, port, sink, output)
        made.wait_answering(lines)
        yield made
    finally:
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=START)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            reader.join(timeout=WAIT)
            assert process.stdout is not None
            process.stdout.close()
            follower.close()
            print(f"-- jupyter_server's output:\n{''.join(output)}")


class Page:
    """A page of JupyterLab's, as far as the kernel goes: one websocket on
    ``/api/kernels/<id>/channels`` with a session_id of its own, JSON messages whose
    ``channel`` says the ZeroMQ channel (the server's legacy protocol)."""

    def __init__(self, ws: WebSocketClientConnection, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.seen: list[Message] = []  # every message received, in order

    @classmethod
    async def open(cls, server: Server, kernel_id: str) -> Page:
        session_id = uuid.uuid4().hex
        request = HTTPRequest(
            server.url(f"/api/kernels/{kernel_id}/channels?session_id={session_id}", "ws"),
            headers={"Authorization": f"token {TOKEN}"}, request_timeout=START,
            connect_timeout=START)
        ws = await asyncio.wait_for(websocket_connect(request), START)
        return cls(ws, session_id)

    def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test",
                       "session": self.session_id, "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
            "buffers": []}))
        return msg_id

    async def until(self, predicate: Callable[[Message], bool], what: str,
                    timeout: float = WAIT) -> Message:
        """The first message from now on that ``predicate`` accepts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                raw = await asyncio.wait_for(self.ws.read_message(), left)
            except TimeoutError:
                raise AssertionError(f"no {what} within {timeout} s; the page saw "
                                     f"{[describe(m) for m in self.seen[-12:]]}") from None
            if raw is None:
                raise AssertionError(f"the websocket closed while waiting for {what}")
            assert isinstance(raw, str), f"a binary websocket message: {raw[:80]!r}"
            msg: Message = json.loads(raw)
            self.seen.append(msg)
            if predicate(msg):
                return msg

    async def execute(self, code: str) -> tuple[Message, list[Message]]:
        """Run ``code``: its execute_reply and every message parented to it up to
        both the reply and the idle."""
        msg_id = self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        mine: list[Message] = []
        reply: Message | None = None
        idle = False
        while reply is None or not idle:
            msg = await self.until(lambda m: m["parent_header"].get("msg_id") == msg_id,
                                   f"the reply and idle of {code!r}")
            mine.append(msg)
            if msg["msg_type"] == "execute_reply":
                reply = msg
            idle = idle or (msg["msg_type"] == "status"
                            and msg["content"]["execution_state"] == "idle")
        return reply, mine

    def close(self) -> None:
        self.ws.close()


def describe(msg: Message) -> str:
    content = msg.get("content", {})
    extra = content.get("execution_state") or content.get("target_name") or ""
    return f"{msg.get('channel')}:{msg['msg_type']}{'(' + extra + ')' if extra else ''}"


SLIDER_CODE = """\
import ipywidgets
slider = ipywidgets.IntSlider(value=3, description="n")
slider
"""


def is_slider_open(m: Message) -> bool:
    state = (m["content"].get("data") or {}).get("state") or {}
    return bool(m["msg_type"] == "comm_open" and m["content"].get("target_name") == WIDGET
                and state.get("_model_name") == "IntSliderModel")


def reload_trace(events: list[TraceEvent], comms: dict[str, str]) -> list[str]:
    """What the kernel's trace says of presence and of ``comms`` (id: what it is)."""
    return [f"{e.machine} {comms.get(e.object, e.object)} {e.source} -{e.event}-> {e.dest}"
            for e in events if e.machine == "presence"
            or (e.machine == "kernel_comm" and e.object in comms)]


async def widget_across_a_page_reload(server: Server, kernel_id: str) -> None:
    page = await Page.open(server, kernel_id)
    reply, mine = await page.execute(SLIDER_CODE)
    assert reply["content"]["status"] == "ok", reply["content"]
    opens = [m for m in mine if is_slider_open(m)]
    assert opens, f"no comm_open of the slider among {[describe(m) for m in mine]}"
    slider = opens[0]["content"]["comm_id"]
    shown = [m for m in mine if m["msg_type"] == "execute_result"]
    assert shown and shown[0]["content"]["data"]["application/vnd.jupyter.widget-view+json"][
        "model_id"] == slider, f"the slider was not displayed: {shown}"
    # and a default comm of the page's (commspec's demo target): closed if the kernel
    # sees the page go; what becomes of it is printed for the report, not asserted
    echo = uuid.uuid4().hex
    opened = page.send("shell", "comm_open", {"comm_id": echo, "target_name": ECHO,
                                              "data": {}})
    await page.until(lambda m: m["msg_type"] == "status" and m["parent_header"].get("msg_id")
                     == opened and m["content"]["execution_state"] == "idle",
                     "the idle of the page's comm_open")
    named = {slider: "slider", echo: "echo (default)"}
    before_reload = server.trace.mark()

    page.close()  # the page reloads: its websocket goes, another comes
    reloaded = await Page.open(server, kernel_id)
    assert reloaded.session_id != page.session_id

    msg_id = reloaded.send("shell", "comm_info_request", {"target_name": WIDGET})
    info = await reloaded.until(lambda m: m["msg_type"] == "comm_info_reply"
                                and m["parent_header"].get("msg_id") == msg_id,
                                "comm_info_reply")
    comms = info["content"]["comms"]
    assert slider in comms, (
        f"after the reload comm_info(target_name={WIDGET!r}) lists {sorted(comms)}, not the "
        f"slider {slider}; the kernel's trace: "
        f"{reload_trace(server.trace.events[before_reload:], named)}")
    assert comms[slider]["target_name"] == WIDGET

    msg_id = reloaded.send("shell", "comm_msg", {"comm_id": slider,
                                                 "data": {"method": "request_state"}})
    state = await reloaded.until(
        lambda m: m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == slider
        and m["content"]["data"].get("method") == "update"
        and m["parent_header"].get("msg_id") == msg_id,
        "the slider's state (comm_msg update) for request_state")
    assert state["content"]["data"]["state"]["value"] == 3, state["content"]
    # the reloaded page changes it, the kernel sees the change
    reloaded.send("shell", "comm_msg", {"comm_id": slider, "data": {
        "method": "update", "state": {"value": 7}, "buffer_paths": []}})
    reply, mine = await reloaded.execute("1+1, slider.value")
    assert reply["content"]["status"] == "ok", reply["content"]
    results = [m["content"]["data"]["text/plain"] for m in mine
               if m["msg_type"] == "execute_result"]
    assert results == ["(2, 7)"], f"`1+1, slider.value` showed {results}"
    msg_id = reloaded.send("shell", "comm_info_request", {})
    info = await reloaded.until(lambda m: m["msg_type"] == "comm_info_reply"
                                and m["parent_header"].get("msg_id") == msg_id,
                                "comm_info_reply (every target)")
    listed = {named.get(c, c) for c in info["content"]["comms"]}
    reloaded.close()

    # For the report: what the kernel saw (a departure or not); the slider must not
    # have been closed whatever it saw.
    seen = reload_trace(server.trace.events[before_reload:], named)
    print("-- the kernel's trace across the reload:\n  " + "\n  ".join(seen or ["nothing"])
          + f"\n-- comms listed after it: {sorted(listed)}")
    assert not server.trace.find(match(machine="kernel_comm", object=slider, dest="closed")), (
        f"the slider's comm was closed: {seen}")


def test_jupyter_server_widget_stays_usable_across_a_page_reload(
        server: Server, kernelspecs: dict[str, str]) -> None:
    started = server.rest("POST", "/api/kernels", {"name": kernelspecs["commspec"]})
    kernel_id = started["id"]
    try:
        assert started["name"] == kernelspecs["commspec"]
        asyncio.run(widget_across_a_page_reload(server, kernel_id))
    finally:
        server.rest("DELETE", f"/api/kernels/{kernel_id}")
    assert kernel_id not in [k["id"] for k in server.rest("GET", "/api/kernels")]
