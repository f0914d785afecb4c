"""In-process scenarios for the declared transitions the system model never takes.

Rules:
- The lockstep takes what the model's actions produce; the model leaves some rows
  out on purpose (SPEC.md, "What the model leaves out": no deadlines, no no_reply,
  no unknown targets, no interrupts, nobody answers twice) and the session's
  transient rows are left sideways only at a moment timing decides. The live
  scenarios (:mod:`.edges`, :mod:`.session_edges`) take those rows over ZeroMQ;
  these take every one of them in the in-process system
  (:mod:`.simulation`), where the timing is the scenario's: it holds a delivery
  back, lets virtual time pass, or puts a message on the wire that no endpoint
  would send (a second answer), and the cores trace what they do with it.
- Each scenario asserts its outcome (the typed exception), the exact moves of the
  objects it is about, and that the trace checker found no deviation. Nothing
  here needs cleaning up: no socket, thread or process is made.
- ``run_simulated_edges`` runs them all, each counted into the caller's coverage;
  the default test run and ``commspec mbt`` use it for full coverage in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from commspec.impl.comm import Comm, Deferred
from commspec.impl.core.events import Channel, Send
from commspec.impl.core.jsonrpc import rpc_result
from commspec.impl.errors import (
    CommClosed,
    Disconnected,
    Interrupted,
    NoReply,
    RemoteError,
    RequestFailed,
    TimedOut,
    Unreachable,
)
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.model.machines import SessionState

from .errors import expect, failure
from .live import MBT_OPTIONS
from .recorder import Coverage, Move, Recorder
from .simulation import Delivery, DeliveryKind, SimFrontend, Simulation, message

__all__ = ["SIMULATED_EDGES", "run_simulated_edges"]

Scenario = Callable[["_Scene"], None]

TARGETS = [ECHO, ECHO_PERSISTENT]
SENT: Move = ("new", "sent", "pending")
OPENED: Move = ("new", "opened_by_frontend", "open")
CONNECTED: Move = ("connecting", "welcomed", "ready")
LOST: Move = ("ready", "link_lost", "lost")
RECONNECT: Move = ("lost", "reconnect", "reconnecting")
REWELCOMED: Move = ("reconnecting", "welcomed", "reconciling")
#: a frontend subscribes two topics (the empty one and its peer topic), and the kernel
#: welcomes each: the first proves it, the second reaches it proven
READY_WELCOMED: Move = ("ready", "welcomed", "ready")
RECONCILING_WELCOMED: Move = ("reconciling", "welcomed", "reconciling")


class _Scene:
    """One scenario's simulation, traced into one recorder."""

    def __init__(self, coverage: Coverage | None) -> None:
        self.recorder = Recorder(coverage)
        self.sim = Simulation(1, options=MBT_OPTIONS, sink=self.recorder)

    def frontend(self) -> SimFrontend:
        fe = self.sim.start(0, "edge0", TARGETS)
        self.sim.run()
        expect("session", fe.core.state, SessionState.READY)
        return fe

    def echo(self, fe: SimFrontend) -> Comm:
        comm = fe.open(ECHO)
        self.sim.run()
        return comm

    def kernel_comm(self, comm_id: str) -> Comm:
        return self.sim.kernel.app.comms[comm_id]

    def moves(self, endpoint: str, machine: str, obj: str, expected: list[Move]) -> None:
        self.recorder.require_conformance()
        expect(f"{endpoint} {machine} {obj}", self.recorder.moves(endpoint, machine, obj),
                expected)

    def session(self, fe: SimFrontend, expected: list[Move]) -> None:
        self.moves(fe.core.name, "session", fe.session_id, expected)

    def kernel_says_again(self, fe: SimFrontend, comm_id: str, parent: str, result: Any) -> None:
        """The kernel publishes one more reply (``result``) to request ``parent``, which no
        endpoint would."""
        data = rpc_result(parent, result)
        fe.iopub_down.append(message(Send(
            Channel.IOPUB, (), "dup-" + parent, "comm_msg",
            {"comm_id": comm_id, "data": data}, {"msg_id": parent, "msg_type": "comm_msg"},
        ), self.sim.kernel.core.session_id))
        self.sim.run()

    def frontend_says_again(self, fe: SimFrontend, parent: str, msg_type: str,
                            content: dict[str, Any]) -> None:
        """The frontend sends one more stdin reply to ``parent`` (no endpoint would)."""
        fe.stdin_up.append(message(Send(
            Channel.STDIN, (), "dup-" + parent, msg_type, content,
            {"msg_id": parent, "msg_type": "input_request"}), fe.session_id))
        self.sim.run()


def _msg_id(future: Future[Any]) -> str:
    error = future.exception()
    assert isinstance(error, RequestFailed)
    return error.msg_id


# =========================================================================
# requests and comms
# =========================================================================


def rejected_open(scene: _Scene) -> None:
    """An open for a target the kernel does not know: rejected, answered comm_close."""
    fe = scene.frontend()
    comm = fe.open("commspec.edges.no-such-target")
    scene.sim.run()
    scene.moves("kernel", "kernel_comm", comm.comm_id, [("new", "rejected", "closed")])
    scene.moves(fe.core.name, "frontend_comm", comm.comm_id,
                [OPENED, ("open", "closed_by_kernel", "closed")])


def resolved_then_duplicate(scene: _Scene) -> None:
    """A resolved request; a second reply to it is late."""
    fe = scene.frontend()
    comm = scene.echo(fe)
    future = comm.request("echo", {"n": 1})
    scene.sim.run()
    expect("echo", future.result(0), {"n": 1})
    msg_id = _last_request(scene, fe)
    scene.kernel_says_again(fe, comm.comm_id, msg_id, "again")
    scene.moves(fe.core.name, "request", msg_id, [
        SENT, ("pending", "result", "resolved"), ("resolved", "late_reply", "resolved")])


def _last_request(scene: _Scene, fe: SimFrontend) -> str:
    return [e.object for e in scene.recorder.events
            if e.endpoint == fe.core.name and e.machine == "request"][-1]


def errored_then_late(scene: _Scene) -> None:
    """A method the comm lacks: errored (-32601); a reply after that is late."""
    fe = scene.frontend()
    comm = scene.echo(fe)
    future = comm.request("no_such_method")
    scene.sim.run()
    msg_id = failure(future, RemoteError, 0).msg_id
    scene.kernel_says_again(fe, comm.comm_id, msg_id, 1)
    scene.moves(fe.core.name, "request", msg_id, [
        SENT, ("pending", "error", "errored"), ("errored", "late_reply", "errored")])


def deadline_then_slow_reply(scene: _Scene) -> None:
    """``sleep`` outlasts the caller's deadline: timed out; the reply, when the sleep
    ends, is late. Virtual time passes: nobody waits."""
    fe = scene.frontend()
    comm = scene.echo(fe)
    future = comm.request("sleep", {"seconds": 0.5}, timeout=0.05)
    scene.sim.advance(1.0)
    msg_id = failure(future, TimedOut, 0).msg_id
    scene.moves(fe.core.name, "request", msg_id, [
        SENT, ("pending", "deadline", "timed_out"), ("timed_out", "late_reply", "timed_out")])


def idle_without_reply(scene: _Scene) -> None:
    """The kernel goes idle without a reply the frontend can use (a handler's bug: a
    JSON-RPC error whose code is not an integer): no_reply after the grace; a valid
    reply after that is late."""
    fe = scene.frontend()
    comm = scene.echo(fe)

    def malformed(params: Any) -> Deferred:
        answer = Deferred()
        code: Any = "not-an-integer"
        answer.reject(code, "a kernel bug")
        return answer

    scene.kernel_comm(comm.comm_id).on_request("malformed", malformed)
    future = comm.request("malformed")
    scene.sim.run()  # the grace (50 ms) is within the run's horizon
    msg_id = failure(future, NoReply, 0).msg_id
    expect("frontend bad input", fe.core.bad.counts().get("malformed_reply"), 1)
    scene.kernel_says_again(fe, comm.comm_id, msg_id, "late")
    scene.moves(fe.core.name, "request", msg_id, [
        SENT, ("pending", "idle_without_reply", "no_reply"),
        ("no_reply", "late_reply", "no_reply")])


def cancelled_then_reply(scene: _Scene) -> None:
    """A request, then the comm closed before the kernel's reply arrived: cancelled; the
    kernel had answered first (its shell is ordered), so the reply arrives late."""
    fe = scene.frontend()
    comm = scene.echo(fe)
    future = comm.request("echo", "too late")
    comm.close()  # both on the wire before anything comes back
    scene.sim.run()
    msg_id = failure(future, CommClosed, 0).msg_id
    scene.moves(fe.core.name, "request", msg_id, [
        SENT, ("pending", "comm_closed", "cancelled"), ("cancelled", "late_reply", "cancelled")])
    scene.moves("kernel", "kernel_comm", comm.comm_id,
                [OPENED, ("open", "closed_by_frontend", "closed")])


def invalidated_then_answer(scene: _Scene) -> None:
    """A kernel request; its frontend's IOPub closes alone, so the kernel sees it leave
    and invalidates the request; the answer on the still-open shell arrives late."""
    fe = scene.frontend()
    comm = scene.echo(fe)
    fe.holding = True
    future = scene.kernel_comm(comm.comm_id).request("ask", {"slot": 0})
    scene.sim.run()
    fe.drop_iopub()
    scene.sim.run()
    msg_id = failure(future, Disconnected, 0).msg_id
    fe.release(0)
    scene.sim.run()
    scene.moves("kernel", "request", msg_id, [
        SENT, ("pending", "peer_lost", "invalidated"),
        ("invalidated", "late_reply", "invalidated")])
    scene.moves("kernel", "kernel_comm", comm.comm_id,
                [OPENED, ("open", "frontend_lost", "closed")])


# =========================================================================
# stdin
# =========================================================================


def _held_input(fe: SimFrontend) -> list[Future[str]]:
    held: list[Future[str]] = []

    def handler(prompt: str, password: bool) -> Future[str]:
        answer: Future[str] = Future()
        held.append(answer)
        return answer

    fe.app.stdin.input_handler = handler
    return held


def _ask_stdin(scene: _Scene, fe: SimFrontend) -> tuple[Future[Any], str]:
    future = scene.sim.kernel.app.stdin_request(
        "input_request", {"prompt": "name?", "password": False}, identity=fe.identity)
    msg_id = [e.object for e in scene.recorder.events
              if e.endpoint == "kernel" and e.machine == "stdin_request"][-1]
    scene.sim.run()
    return future, msg_id


def stdin_replied_then_duplicate(scene: _Scene) -> None:
    fe = scene.frontend()
    future, msg_id = _ask_stdin(scene, fe)
    expect("input", future.result(0), "answer to name?")
    scene.frontend_says_again(fe, msg_id, "input_reply", {"value": "again"})
    scene.moves("kernel", "stdin_request", msg_id, [
        SENT, ("pending", "reply", "replied"), ("replied", "late_reply", "replied")])


def stdin_peer_lost_then_answer(scene: _Scene) -> None:
    """A stdin request to a frontend whose IOPub closes before it answers: unreachable;
    its answer on stdin afterwards is late."""
    fe = scene.frontend()
    held = _held_input(fe)
    future, msg_id = _ask_stdin(scene, fe)
    fe.drop_iopub()
    scene.sim.run()
    failure(future, Unreachable, 0)
    held[0].set_result("typed after leaving")
    scene.sim.run()
    scene.moves("kernel", "stdin_request", msg_id, [
        SENT, ("pending", "peer_lost", "unreachable"),
        ("unreachable", "late_reply", "unreachable")])


def stdin_interrupted_then_answer(scene: _Scene) -> None:
    """interrupt_request on control ends a pending stdin request; the answer typed
    anyway is late."""
    fe = scene.frontend()
    held = _held_input(fe)
    future, msg_id = _ask_stdin(scene, fe)
    reply = fe.app.kernel_request("interrupt_request", {}, Channel.CONTROL)
    scene.sim.run()
    expect("interrupt reply", reply.result(0)["msg_type"], "interrupt_reply")
    failure(future, Interrupted, 0)
    held[0].set_result("typed anyway")
    scene.sim.run()
    scene.moves("kernel", "stdin_request", msg_id, [
        SENT, ("pending", "interrupt", "interrupted"),
        ("interrupted", "late_reply", "interrupted")])


# =========================================================================
# the session's transient states, and stale comms
# =========================================================================


def connect_deadline(scene: _Scene) -> None:
    """Nobody welcomes the frontend (the kernel is gone) before the connect deadline."""
    scene.sim.shutdown()
    fe = scene.sim.start(0, "edge0", TARGETS)
    scene.sim.advance(MBT_OPTIONS.connect_timeout + 1)
    fe.close_session()
    scene.session(fe, [("connecting", "link_lost", "lost"), ("lost", "close", "closed")])


def _to_reconciling(scene: _Scene, fe: SimFrontend) -> None:
    """Ready; the link dropped on purpose; reconnected and welcomed; comm_info_reply
    held back."""
    fe.disconnect()
    scene.sim.withheld.add(Delivery(DeliveryKind.FRONTEND_SHELL, 0))
    scene.sim.reconnect(0)
    scene.sim.run()
    expect("session", fe.core.state, SessionState.RECONCILING)


def reconnect_fails(scene: _Scene) -> None:
    """A reconnect to a kernel that has gone: the connect deadline passes."""
    fe = scene.frontend()
    fe.disconnect()
    scene.sim.shutdown()
    scene.sim.reconnect(0)
    scene.sim.advance(MBT_OPTIONS.connect_timeout + 1)
    scene.session(fe, [CONNECTED, READY_WELCOMED, LOST, RECONNECT,
                       ("reconnecting", "link_lost", "lost")])


def lost_reconciling(scene: _Scene) -> None:
    """The link goes again while comm_info_reply is awaited; the stale comm stays stale
    through the second loss, and closing it (the frontend) closes it."""
    fe = scene.frontend()
    comm = scene.echo(fe)
    _to_reconciling(scene, fe)
    fe.disconnect()
    comm.close()
    scene.session(fe, [CONNECTED, READY_WELCOMED, LOST, RECONNECT, REWELCOMED,
                       RECONCILING_WELCOMED, ("reconciling", "link_lost", "lost")])
    scene.moves(fe.core.name, "frontend_comm", comm.comm_id, [
        OPENED, ("open", "link_lost", "stale"), ("stale", "link_lost", "stale"),
        ("stale", "closed_by_frontend", "closed")])


def stale_closed_by_kernel(scene: _Scene) -> None:
    """While comm_info_reply is awaited, the kernel closes a comm the frontend holds
    stale (a persistent one, kept detached meanwhile): the comm_close, arriving after
    the welcome, settles it early."""
    fe = scene.frontend()
    comm = fe.open(ECHO_PERSISTENT, persistent=True)
    scene.sim.run()
    _to_reconciling(scene, fe)
    scene.kernel_comm(comm.comm_id).close()
    scene.sim.run()
    scene.moves(fe.core.name, "frontend_comm", comm.comm_id, [
        OPENED, ("open", "link_lost", "stale"), ("stale", "closed_by_kernel", "closed")])


def close_reconciling(scene: _Scene) -> None:
    """Closed before comm_info_reply came."""
    fe = scene.frontend()
    _to_reconciling(scene, fe)
    fe.close_session()
    scene.session(fe, [CONNECTED, READY_WELCOMED, LOST, RECONNECT, REWELCOMED,
                       RECONCILING_WELCOMED, ("reconciling", "close", "closed")])


#: (name, scenario), in the order ``run_simulated_edges`` runs them
SIMULATED_EDGES: tuple[tuple[str, Scenario], ...] = (
    ("rejected_open", rejected_open),
    ("resolved_then_duplicate", resolved_then_duplicate),
    ("errored_then_late", errored_then_late),
    ("deadline_then_slow_reply", deadline_then_slow_reply),
    ("idle_without_reply", idle_without_reply),
    ("cancelled_then_reply", cancelled_then_reply),
    ("invalidated_then_answer", invalidated_then_answer),
    ("stdin_replied_then_duplicate", stdin_replied_then_duplicate),
    ("stdin_peer_lost_then_answer", stdin_peer_lost_then_answer),
    ("stdin_interrupted_then_answer", stdin_interrupted_then_answer),
    ("connect_deadline", connect_deadline),
    ("reconnect_fails", reconnect_fails),
    ("lost_reconciling", lost_reconciling),
    ("stale_closed_by_kernel", stale_closed_by_kernel),
    ("close_reconciling", close_reconciling),
)


def run_simulated_edges(
    coverage: Coverage | None = None, *, done: Callable[[str], None] | None = None
) -> list[str]:
    """Run every scenario; the first failure is raised naming its scenario. ``done``
    hears each scenario's name as it passes (a progress display)."""
    passed: list[str] = []
    for name, scenario in SIMULATED_EDGES:
        try:
            scenario(_Scene(coverage))
        except Exception as e:
            raise AssertionError(f"simulated edge {name!r}: {type(e).__name__}: {e}") from e
        passed.append(name)
        if done is not None:
            done(name)
    return passed
