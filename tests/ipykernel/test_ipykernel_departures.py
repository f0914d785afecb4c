"""Frontends leaving commspec.ipykernel: what becomes of their comms, requests and input().

Each test starts its own kernel (``python -m commspec.ipykernel`` through its
kernelspec, heartbeat 0.5 s / 2 s so a frozen frontend is cut off quickly, its trace
written to ``COMMSPEC_TRACE``). Frontends that are SIGKILLed or SIGSTOPped are
processes of their own: conform's child frontend (``commspec.conform.peer``); the
ones that stay, ask or come back are conform's ``Client`` in this process. The tests
synchronise on what the kernel says (IOPub, replies) and on its trace (followed with
mbt's ``TraceFollower``), never on sleeps; every wait is bounded.

Cases (the issue's "Done when"):
- the only commspec frontend leaves (SIGKILL, clean close, SIGSTOP past the
  heartbeat) while the kernel asks it something on its default and its persistent
  comm: both requests end invalidated (the asker on the persistent comm is answered
  -32002; the default comm closes under the other asker's request, whose idle then
  comes with no reply, as from the reference kernel), the default comm is closed, the
  persistent one detached, and a new frontend lists, adopts and uses it;
- one of two frontends leaves: only what it owns is lost;
- ``input()`` addressed to a frontend that is SIGKILLed ends in FrontendGone, and the
  kernel answers the frontend that stayed (a commspec frontend: its peer topic goes; a
  stock one: only its connections end), its reply to the one that left logging no
  error; a control: input() to a frontend that stays gets its answer;
- ipywidgets: a widget survives its page going (its state is there for the next
  page, which can change it), a default ``comm`` package comm closes and runs its
  ``on_close``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from commspec.conform.client import Client, IopubMode, Message, NoAnswer
from commspec.conform.peer import PeerProcess
from commspec.impl.tracing import ListSink, match
from commspec.mbt.external import TraceFollower
from commspec.model.messages import ADOPT_METHOD, FAILURE_CODES
from commspec.model.trace import TraceEvent

ECHO = "commspec.echo"
PERSISTENT = "commspec.echo.persistent"
WIDGET = "jupyter.widget"
#: the kernel's ZMTP heartbeat (seconds): short, so a SIGSTOP costs little
HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 2.0
#: a reply, an IOPub message, a child's command
WAIT = 10.0
#: a kernel, or a fresh interpreter holding a frontend, starting on a loaded machine
START = 60.0
#: from a frontend's going to the kernel acting on it (the heartbeat timeout included)
DEPARTURE = HEARTBEAT_TIMEOUT + 15.0
INVALIDATED = FAILURE_CODES["invalidated"]
TRACE_ENV = "COMMSPEC_TRACE"


# =========================================================================
# the kernel and its frontends
# =========================================================================


@dataclass
class Kernel:
    """One commspec.ipykernel, its trace, and the frontends a test made for it."""

    manager: KernelManager
    info: dict[str, Any]
    trace: ListSink
    log_path: Path
    children: list[PeerProcess] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    stock_clients: list[BlockingKernelClient] = field(default_factory=list)

    @property
    def connection_file(self) -> str:
        return str(self.manager.connection_file)

    def client(self, name: str, iopub: IopubMode = "stock") -> Client:
        """A frontend in this process; with IOPub, once the kernel has heard it."""
        made = Client(self.info, iopub=iopub, name=name)
        self.clients.append(made)
        if iopub != "none":
            self.wait_heard(made)
        return made

    def wait_heard(self, client: Client) -> None:
        """Until the kernel hears ``client``'s IOPub; at once if the kernel has exited."""
        deadline = time.monotonic() + START
        while not client.wait_heard(1.0):
            if not self.manager.is_alive():
                raise RuntimeError(f"{client.name}: the kernel process has exited (its "
                                   "stderr is the test's captured stderr)")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{client.name}: the kernel did not hear its IOPub "
                                   f"within {START} s")

    def child(self, name: str, iopub: IopubMode = "peer") -> PeerProcess:
        """A frontend in a process of its own (conform's), connected and heard."""
        peer = PeerProcess.start(name)
        self.children.append(peer)
        peer.call("connect", START, info=self.info, iopub=iopub, name=name)
        return peer

    def stock(self) -> BlockingKernelClient:
        """A stock jupyter_client client, with a session id (DEALER identity) of its own.
        The manager's own client (its ``wait_for_ready`` asks the process whether the
        kernel is alive: a manager-less one asks the heartbeat, whose first beat a loaded
        machine may miss, and says the kernel died)."""
        manager = self.manager
        session = Session(key=manager.session.key, username="test",
                          signature_scheme=manager.session.signature_scheme)
        client: BlockingKernelClient = manager.client(session=session)
        client.start_channels()
        self.stock_clients.append(client)
        return client

    def wait_trace(self, predicate: Callable[[TraceEvent], bool], what: str,
                   timeout: float = DEPARTURE) -> TraceEvent:
        try:
            return self.trace.wait_for(predicate, timeout=timeout)
        except TimeoutError as e:
            raise AssertionError(f"the kernel's trace never showed {what}: {e}") from None

    def comm_fate(self, comm_id: str, timeout: float = DEPARTURE) -> TraceEvent:
        """The kernel_comm transition its owner's departure made (``frontend_lost``)."""
        return self.wait_trace(match(machine="kernel_comm", object=comm_id,
                                     event="frontend_lost"),
                               f"comm {comm_id} losing its frontend", timeout)

    def log(self) -> str:
        """What the kernel wrote to its stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def evidence(self) -> str:
        lines = [line for c in self.clients for line in c.log[-8:]]
        lines += [line for p in self.children for line in p.log[-8:]]
        return "\n  ".join(lines)

    def end(self) -> None:
        for peer in self.children:
            peer.end()  # SIGCONT if stopped, SIGKILL, reaped (its own pid only)
        for client in self.clients:
            client.close()
        for stock in self.stock_clients:
            stock.stop_channels()


@pytest.fixture
def kernel(kernelspecs: dict[str, str], tmp_path: Path) -> Iterator[Kernel]:
    trace_path = tmp_path / "trace.jsonl"
    trace_path.touch()
    log_path = tmp_path / "kernel.log"
    sink = ListSink()
    follower = TraceFollower(trace_path, sink)
    manager = KernelManager(kernel_name=kernelspecs["commspec"])
    made: Kernel | None = None
    try:
        with log_path.open("wb") as log:
            manager.start_kernel(
                extra_arguments=[f"--CommspecKernelApp.heartbeat_interval={HEARTBEAT_INTERVAL}",
                                 f"--CommspecKernelApp.heartbeat_timeout={HEARTBEAT_TIMEOUT}"],
                env={**os.environ, TRACE_ENV: str(trace_path)}, cwd=str(tmp_path), stderr=log)
        info = json.loads(Path(manager.connection_file).read_text(encoding="utf-8"))
        made = Kernel(manager, info, sink, log_path)
        yield made
    finally:
        try:
            if made is not None:
                made.end()
        finally:
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
            manager.cleanup_resources()
            follower.close()
            if log_path.exists():  # shown with a failure (pytest's captured stderr)
                sys.stderr.write(f"-- the kernel's stderr:\n{log_path.read_text()}")


# -- small waits ----------------------------------------------------------------------


def answer_of(client: Client, request: Message, timeout: float = WAIT) -> dict[str, Any]:
    """The JSON-RPC answer (result or error) to ``request`` on IOPub."""
    reply = client.rpc_reply(request, timeout)
    data: dict[str, Any] = reply["content"]["data"]
    return data


def comm_close_of(client: Client, comm_id: str, timeout: float = DEPARTURE) -> Message:
    return client.iopub(lambda m: m["msg_type"] == "comm_close"
                        and m["content"].get("comm_id") == comm_id,
                        timeout, f"comm_close of {comm_id}")


def is_idle_of(m: Message, request: Message) -> bool:
    return bool(m["msg_type"] == "status" and m["content"].get("execution_state") == "idle"
                and m["parent_header"].get("msg_id") == request["header"]["msg_id"])


def in_order_until(client: Client, predicate: Callable[[Message], bool], what: str,
                   timeout: float = DEPARTURE) -> list[Message]:
    """Every IOPub message not yet taken, in the order it came, up to the first that
    ``predicate`` accepts (included)."""
    seen: list[Message] = []

    def note(m: Message) -> bool:
        seen.append(m)
        return predicate(m)

    client.iopub(note, timeout, what)
    return seen


def adopt_and_echo(client: Client, comm_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """SPEC's adoption (``commspec/adopt``), then an echo on the comm: its answer."""
    client.send("shell", "comm_msg", {"comm_id": comm_id,
                                      "data": {"jsonrpc": "2.0", "method": ADOPT_METHOD}})
    return answer_of(client, client.rpc(comm_id, "echo", params))


def execute(client: Client, code: str, expressions: dict[str, str] | None = None
            ) -> dict[str, Any]:
    """Run ``code``; the execute_reply's content (status ok asserted)."""
    reply = client.request("execute_request", {
        "code": code, "silent": False, "store_history": False,
        "user_expressions": expressions or {}, "allow_stdin": False}, WAIT)
    content: dict[str, Any] = reply["content"]
    assert content["status"] == "ok", f"{code!r} failed: {content}"
    return content


def stock_iopub_until(client: BlockingKernelClient, predicate: Callable[[Message], bool],
                      what: str, timeout: float = WAIT) -> list[Message]:
    """A stock client's IOPub messages, in order, up to the first ``predicate`` accepts."""
    deadline = time.monotonic() + timeout
    seen: list[Message] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg: Message = client.get_iopub_msg(timeout=left)
        except queue.Empty:
            break
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"no {what} on IOPub within {timeout} s; seen "
                         f"{[m['msg_type'] for m in seen[-10:]]}")


def expression(client: Client, expr: str) -> str:
    """``expr``'s repr in the kernel (user_expressions)."""
    content = execute(client, "", {"x": expr})
    value = content["user_expressions"]["x"]
    assert value["status"] == "ok", f"{expr!r}: {value}"
    text: str = value["data"]["text/plain"]
    return text


# =========================================================================
# 1-3: the only commspec frontend leaves with a kernel request pending on it
# =========================================================================


def _sigkill(peer: PeerProcess) -> None:
    peer.kill()


def _close(peer: PeerProcess) -> None:
    peer.call("close", WAIT)


def _sigstop(peer: PeerProcess) -> None:
    peer.freeze()  # the fixture continues and kills it


@pytest.mark.parametrize("leave", [_sigkill, _close, _sigstop],
                         ids=["sigkill", "clean_close", "sigstop_past_heartbeat"])
def test_only_commspec_frontend_leaves_with_kernel_requests_pending(
        kernel: Kernel, leave: Callable[[PeerProcess], None]) -> None:
    # The asker is a stock subscriber (no peer topic): the kernel counts it, but it is
    # not a commspec frontend, so F is the only one, and the asker sees what the kernel
    # publishes when F goes. It makes the kernel ask F on each of F's comms.
    asker = kernel.client("asker", iopub="stock")
    frontend = kernel.child("F", iopub="peer")
    default = frontend.call("open", WAIT, target=ECHO)["comm_id"]
    kept = frontend.call("open", WAIT, target=PERSISTENT)["comm_id"]
    asked = {comm_id: asker.rpc(comm_id, "call_frontend", {"method": "test.never_answered",
                                                           "params": {"on": comm_id}})
             for comm_id in (default, kept)}
    to_f = {comm_id: frontend.call("wait_kernel_request", WAIT, comm_id=comm_id)["data"]
            for comm_id in (default, kept)}

    leave(frontend)

    # the kernel's requests to F end invalidated (SPEC, kernel_comm: frontend_lost)
    for comm_id, request in to_f.items():
        ended = kernel.wait_trace(match(machine="request", object=str(request["id"]),
                                        event="peer_lost"),
                                  f"the kernel's request to F on {comm_id} ending peer_lost")
        assert ended.dest == "invalidated", ended.to_json()
    # on the persistent comm (detached, so still answering) the asker is told so
    try:
        answer = answer_of(asker, asked[kept], DEPARTURE)
    except NoAnswer:
        raise AssertionError(f"call_frontend on F's persistent comm got no answer "
                             f"{DEPARTURE} s after F left\n  {kernel.evidence()}") from None
    assert isinstance(answer.get("error"), dict), f"call_frontend answered {answer}"
    assert answer["error"].get("code") == INVALIDATED, (
        f"call_frontend's error is {answer['error']}: want code {INVALIDATED} (invalidated)")
    # the default comm closes under the asker's request: comm_close, then that
    # request's idle with no reply (the asker's request ends cancelled by the close)
    seen = in_order_until(asker, lambda m: is_idle_of(m, asked[default]),
                          "the idle of call_frontend on the default comm")
    closes = [i for i, m in enumerate(seen) if m["msg_type"] == "comm_close"
              and m["content"].get("comm_id") == default]
    replies = [m["content"] for m in seen if m["msg_type"] == "comm_msg"
               and m["parent_header"].get("msg_id") == asked[default]["header"]["msg_id"]
               and "method" not in m["content"]["data"]]
    assert closes and not replies, (
        f"before its idle, call_frontend on the default comm saw comm_close: "
        f"{bool(closes)}, replies: {replies} (want the close, no reply)")
    assert kernel.comm_fate(default).dest == "closed"
    assert kernel.comm_fate(kept).dest == "detached"

    newcomer = kernel.client("newcomer", iopub="peer")
    comms = newcomer.comm_info(WAIT)
    assert kept in comms and default not in comms, (
        f"the newcomer's comm_info lists {sorted(comms)}: want the persistent {kept} "
        f"and not the default {default}")
    assert comms[kept].get("target_name") == PERSISTENT
    answer = adopt_and_echo(newcomer, kept, {"back": True})
    assert answer.get("result") == {"back": True}, f"the adopted comm's echo: {answer}"


# =========================================================================
# 4: one of two frontends leaves
# =========================================================================


def test_one_of_two_frontends_leaving_loses_only_what_it_owns(kernel: Kernel) -> None:
    stays = kernel.client("B", iopub="peer")
    leaves = kernel.child("A", iopub="peer")
    a_default = leaves.call("open", WAIT, target=ECHO)["comm_id"]
    a_kept = leaves.call("open", WAIT, target=PERSISTENT)["comm_id"]
    b_default = stays.open_comm_handled(ECHO, WAIT)
    b_kept = stays.open_comm_handled(PERSISTENT, WAIT)
    # B's own request on its comm, held by B while A leaves: A's going must not end it
    b_asked = stays.rpc(b_default, "call_frontend", {"method": "test.b", "params": {}})
    b_request = stays.iopub(lambda m: m["msg_type"] == "comm_msg"
                            and m["content"].get("comm_id") == b_default
                            and m["content"]["data"].get("method") == "test.b",
                            WAIT, "the kernel's request to B")

    leaves.kill()

    comm_close_of(stays, a_default)
    assert kernel.comm_fate(a_kept).dest == "detached"
    closed = [m["content"]["comm_id"] for m in stays.drain_iopub()
              if m["msg_type"] == "comm_close"]
    assert b_default not in closed and b_kept not in closed, f"B's comms closed: {closed}"
    comms = stays.comm_info(WAIT)
    assert {b_default, b_kept, a_kept} <= comms.keys() and a_default not in comms, (
        f"comm_info lists {sorted(comms)} after A left: want B's {b_default} and "
        f"{b_kept}, A's detached {a_kept}, not A's default {a_default}")
    for comm_id in (b_default, b_kept):
        answer = answer_of(stays, stays.rpc(comm_id, "echo", {"b": comm_id}))
        assert answer.get("result") == {"b": comm_id}, f"B's echo on {comm_id}: {answer}"
    # B's held request is still B's to answer, and B's answer reaches its asker (B)
    stays.send("shell", "comm_msg", {"comm_id": b_default, "data": {
        "jsonrpc": "2.0", "id": b_request["content"]["data"]["id"], "result": "from B"}},
        parent=b_request)
    answer = answer_of(stays, b_asked)
    assert answer.get("result") == "from B", f"B's call_frontend was answered {answer}"
    ended = kernel.trace.find(match(machine="kernel_comm", event="frontend_lost"))
    assert {e.object for e in ended} == {a_default, a_kept}, (
        f"comms that lost their frontend: {[e.to_json() for e in ended]}")


# =========================================================================
# 5: input() to a frontend that is SIGKILLed
# =========================================================================


INPUT_CODE = """\
try:
    input("name? ")
except EOFError as e:
    print("input ended:", type(e).__name__, e)
    raise
"""


@pytest.mark.parametrize("iopub", ["peer", "stock"],
                         ids=["commspec_frontend", "stock_frontend"])
def test_input_to_a_frontend_that_stays_gets_its_answer(kernel: Kernel,
                                                        iopub: IopubMode) -> None:
    """The control for the next test: input() waits for its frontend's input_reply
    (it does not end on its own), and a second frontend does not change that."""
    other = kernel.stock()
    other.wait_for_ready(timeout=START)
    asker = kernel.client("A", iopub=iopub)
    executed = asker.send("shell", "execute_request", {
        "code": 'print("got", input("name? "))',
        "silent": False, "store_history": False, "user_expressions": {},
        "allow_stdin": True})
    asked = asker.wait("stdin", lambda m: m["msg_type"] == "input_request", WAIT,
                       "input_request")
    asker.send("stdin", "input_reply", {"value": "Ada"}, parent=asked)
    reply = asker.reply_to(executed, WAIT)
    seen = in_order_until(asker, lambda m: is_idle_of(m, executed), "the cell's idle", WAIT)
    printed = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream"
                      and m["parent_header"].get("msg_id") == executed["header"]["msg_id"])
    assert reply["content"]["status"] == "ok", (
        f"input() to a {iopub} frontend that stayed did not get its answer: {reply['content']}"
        f"; printed {printed}; the stdin requests' trace: "
        f"{[e.to_json() for e in kernel.trace.find(match(machine='stdin_request'))]}")
    assert printed == "got Ada\n", f"the cell printed {printed!r}"


def input_to_a_killed_frontend(kernel: Kernel, iopub: IopubMode) -> BlockingKernelClient:
    """A (a child frontend) runs input() and is SIGKILLed while it waits; B (stock
    jupyter_client, subscribed throughout) is answered afterwards and sees A's cell end
    in FrontendGone. Returns B."""
    stays = kernel.stock()
    stays.wait_for_ready(timeout=START)
    leaves = kernel.child("A", iopub=iopub)
    executed = leaves.call("execute", WAIT, code=INPUT_CODE, allow_stdin=True)["msg_id"]
    asked = leaves.call("wait_stdin", WAIT)
    assert asked["msg_type"] == "input_request" and asked["content"]["prompt"] == "name? "
    sent = kernel.wait_trace(match(machine="stdin_request", event="sent"),
                             "the input_request sent", WAIT)

    killed_at = time.monotonic()
    leaves.kill()

    # the main thread is free again: B's shell request is answered
    probe = stays.kernel_info(reply=False)
    try:
        reply = stays.get_shell_msg(timeout=DEPARTURE)
        while reply["parent_header"].get("msg_id") != probe:
            reply = stays.get_shell_msg(timeout=DEPARTURE)
    except queue.Empty as e:
        stdin = [e.to_json() for e in kernel.trace.find(match(machine="stdin_request"))]
        raise AssertionError(
            f"B's kernel_info_request was not answered {DEPARTURE} s after A (a {iopub} "
            f"frontend) was SIGKILLed while input() waited for it: input() still blocks "
            f"the kernel ({type(e).__name__}); the stdin request's trace: {stdin}") from None
    assert reply["msg_type"] == "kernel_info_reply"

    # everything A's execute published, up to its idle
    outputs = [m for m in stock_iopub_until(
        stays, lambda m: m["msg_type"] == "status" and m["parent_header"].get("msg_id")
        == executed and m["content"]["execution_state"] == "idle", "the idle of A's execute")
        if m["parent_header"].get("msg_id") == executed]
    errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
    printed = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
    assert [e["ename"] for e in errors] == ["FrontendGone"], (
        f"A's execute published errors {errors}: want FrontendGone")
    assert "input ended: FrontendGone" in printed, f"the cell printed {printed!r}"
    ended = kernel.wait_trace(lambda e: e.machine == "stdin_request"
                              and e.object == sent.object and e.event != "sent",
                              "the input_request's end", WAIT)
    assert (ended.event, ended.dest) == ("peer_lost", "unreachable"), ended.to_json()
    # The trace's time is the kernel's time.monotonic(), the clock of this process too:
    # the request ended because A was killed, not on its own before.
    assert ended.time >= killed_at, (
        f"the input_request ended {killed_at - ended.time:.3f} s before A was killed: "
        f"{ended.to_json()}")
    return stays


@pytest.mark.parametrize("iopub", ["peer", "stock"],
                         ids=["commspec_frontend", "stock_frontend"])
def test_input_to_a_killed_frontend_raises_frontend_gone(kernel: Kernel,
                                                         iopub: IopubMode) -> None:
    input_to_a_killed_frontend(kernel, iopub)


def test_reply_to_a_departed_frontend_logs_no_error(kernel: Kernel) -> None:
    """A's execute_reply goes to nobody (ROUTER_MANDATORY: EHOSTUNREACH). SPEC, kernel
    requirement 4: "treat that failure as the frontend being gone, not as a fatal
    error"; a frontend leaving is ordinary, so nothing is logged as an ERROR."""
    stays = input_to_a_killed_frontend(kernel, "peer")
    # B's next reply leaves the same shell stream after A's: by then A's was tried
    stays.kernel_info(reply=True, timeout=WAIT)
    errors_logged = [line for line in kernel.log().splitlines() if "ERROR" in line]
    assert not errors_logged, (
        f"the kernel logged errors for its reply to A, a frontend that left: {errors_logged}")


# =========================================================================
# 6: ipywidgets and comm-package comms across a page reload
# =========================================================================


WIDGET_CODE = """\
import comm
import ipywidgets
slider = ipywidgets.IntSlider(value=3, description="n")
demo_closed = []
demo_comms = []
def demo_target(c, open_msg):
    demo_comms.append(c.comm_id)
    c.on_close(lambda msg: demo_closed.append(c.comm_id))
comm.get_comm_manager().register_target("demo", demo_target)
slider
"""


def _is_slider_open(m: Message) -> bool:
    content = m["content"]
    state = (content.get("data") or {}).get("state") or {}
    return bool(m["msg_type"] == "comm_open" and content.get("target_name") == WIDGET
                and state.get("_model_name") == "IntSliderModel")


@pytest.mark.parametrize("mode", ["stock", "peer"], ids=["stock_page", "commspec_page"])
def test_widget_survives_a_page_reload_and_a_default_comm_closes(kernel: Kernel,
                                                                 mode: IopubMode) -> None:
    page = kernel.client("page", iopub=mode)
    content = execute(page, WIDGET_CODE)
    assert content["status"] == "ok"
    opened = page.iopub(_is_slider_open, WAIT, "the slider's comm_open")
    slider = opened["content"]["comm_id"]
    assert opened["content"]["data"]["state"]["value"] == 3
    demo = page.open_comm_handled("demo", WAIT)
    assert expression(page, "demo_comms") == repr([demo])
    widgets = page.comm_info(WAIT, target_name=WIDGET)
    assert slider in widgets, f"comm_info(jupyter.widget) lists {sorted(widgets)}"

    page.close()  # the page goes: the only frontend
    kernel.clients.remove(page)

    assert kernel.comm_fate(demo).dest == "closed"
    assert kernel.comm_fate(slider).dest == "detached"

    reloaded = kernel.client("reloaded page", iopub=mode)
    assert expression(reloaded, "demo_closed") == repr([demo]), "demo's on_close did not run"
    widgets = reloaded.comm_info(WAIT, target_name=WIDGET)
    assert slider in widgets, (
        f"the reloaded page's comm_info(target_name={WIDGET!r}) lists {sorted(widgets)}: "
        f"the slider {slider} is gone")
    assert demo not in reloaded.comm_info(WAIT)
    if mode == "peer":  # a commspec page takes its comms over (SPEC, adoption)
        reloaded.send("shell", "comm_msg", {"comm_id": slider, "data": {
            "jsonrpc": "2.0", "method": ADOPT_METHOD}})
        back = "adopted"
    else:  # a stock page's comms are every subscriber's: back with the next one
        back = "frontend_back"
    kernel.wait_trace(match(machine="kernel_comm", object=slider, event=back),
                      f"the slider's comm {back}", WAIT)

    asked = reloaded.send("shell", "comm_msg", {"comm_id": slider,
                                                "data": {"method": "request_state"}})
    msg_id = asked["header"]["msg_id"]
    state = reloaded.iopub(lambda m: m["msg_type"] == "comm_msg"
                           and m["content"].get("comm_id") == slider
                           and m["content"]["data"].get("method") == "update"
                           and m["parent_header"].get("msg_id") == msg_id,
                           WAIT, "the slider's state (update) for request_state")
    assert state["content"]["data"]["state"]["value"] == 3, state["content"]

    reloaded.send("shell", "comm_msg", {"comm_id": slider, "data": {
        "method": "update", "state": {"value": 7}, "buffer_paths": []}})
    assert expression(reloaded, "slider.value") == "7"
