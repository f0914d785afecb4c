"""Live-only scenarios: declared transitions the system model's environment never takes.

**Reference-only.** These scenarios reach into the reference kernel (its endpoint, a
deadline, an interrupt, a second answer put on the wire): they hold the reference
implementation to the rows no model action takes, and do not run against another
kernel. ``commspec mbt --cmd``/``--kernelspec`` skips them (and :mod:`.session_edges`)
and says so; another kernel is held to the model's actions and the directed programs.

Rules:
- The lockstep harness (:mod:`.harness`) only applies the system model's environment
  actions, and the model leaves some declared rows out on purpose (SPEC.md, "What the
  model leaves out"): its kernel always answers or closes the comm first (no
  ``no_reply``), its callers set no deadlines (no ``timed_out``), its frontends open
  only registered targets (no ``rejected``), nobody interrupts, and nobody answers
  twice. Some rows need an order the model cannot choose either: a reply that reaches a
  frontend after the request ended there, an answer on shell after only IOPub went.
  Each of those rows is taken here, on purpose, by a short live program (the session's
  transient rows are :mod:`.session_edges`').
- A scenario runs the reference kernel through
  :class:`~commspec.mbt.adapter.ReferenceKernel` (the ``KernelAdapter`` interface where
  it has what the scenario needs; ``adapter.kernel``, the ``KernelEndpoint``, where it
  does not, each time said in a comment) and real
  :class:`~commspec.impl.frontend.FrontendEndpoint` s, over loopback (127.0.0.1) only.
  Where a scenario needs a message no endpoint would send (a duplicate answer), a raw
  piece sends it on the wire, signed with the connection's key: the endpoints then
  trace what they do with it. No trace event is ever fabricated.
- Every endpoint's trace sink is one :class:`~commspec.mbt.recorder.Recorder` per
  scenario, sharing the caller's :class:`~commspec.mbt.recorder.Coverage`: each
  transition is checked against the declared machines as it happens and counted.
- Scenarios wait on the trace (``Recorder.wait_until``), on futures or on events set by
  handlers, always bounded; never on a guessed sleep. The only times under test are a
  request's deadline and the no-reply grace.
- Each scenario asserts its outcome (the typed exception of
  :mod:`commspec.impl.errors`), the traced transitions of the objects it is about, in
  order, and that the trace checker found no deviation; it releases every endpoint,
  socket, context, thread and file in ``finally``, failed or not.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import zmq
from jupyter_client.session import Session

from commspec.impl.comm import METHOD_NOT_FOUND, Comm, Deferred, rpc_result
from commspec.impl.connection import ConnectionInfo, read_connection_file
from commspec.impl.errors import (
    CommClosed,
    Disconnected,
    Interrupted,
    NoReply,
    RemoteError,
    TimedOut,
    Unreachable,
)
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.impl.kernel import KernelEndpoint
from commspec.impl.targets import ECHO
from commspec.model.trace import TraceEvent

from .adapter import ReferenceKernel
from .errors import expect, failure
from .live import MBT_OPTIONS
from .recorder import Coverage, Move, Recorder, Row

__all__ = ["EDGES", "ROWS", "KernelFactory", "Scenario", "run_edges"]

KernelFactory = Callable[[], ReferenceKernel]
Scenario = Callable[[Coverage | None, KernelFactory], None]

#: the rows these scenarios exist for: each is taken at least once by ``run_edges``
ROWS: tuple[Row, ...] = (
    ("kernel_comm", "new", "rejected", "closed"),
    ("request", "pending", "error", "errored"),
    ("request", "pending", "deadline", "timed_out"),
    ("request", "pending", "idle_without_reply", "no_reply"),
    ("request", "resolved", "late_reply", "resolved"),
    ("request", "errored", "late_reply", "errored"),
    ("request", "timed_out", "late_reply", "timed_out"),
    ("request", "no_reply", "late_reply", "no_reply"),
    ("request", "cancelled", "late_reply", "cancelled"),
    ("request", "invalidated", "late_reply", "invalidated"),
    ("stdin_request", "pending", "peer_lost", "unreachable"),
    ("stdin_request", "pending", "interrupt", "interrupted"),
    ("stdin_request", "replied", "late_reply", "replied"),
    ("stdin_request", "unreachable", "late_reply", "unreachable"),
    ("stdin_request", "interrupted", "late_reply", "interrupted"),
)

#: a bound on every wait; each live step takes milliseconds
WAIT = 5.0
#: the deadline under test, and a sleep the kernel takes well past it (the margin is
#: how long the frontend's I/O thread may stall before the reply could win the race)
DEADLINE = 0.05
SLOW = 0.5
#: a stdin request sent before the kernel's ROUTER has the frontend's stdin connection
#: fails at once (EHOSTUNREACH); being ready proves IOPub, not stdin, so ask again
STDIN_ATTEMPTS = 100
UNKNOWN_TARGET = "commspec.edges.no-such-target"

SENT: Move = ("new", "sent", "pending")
OPENED: Move = ("new", "opened_by_frontend", "open")


# =========================================================================
# the live system of one scenario
# =========================================================================


class _Scene:
    """One scenario's endpoints, one Recorder for all, and everything to release."""

    def __init__(self, coverage: Coverage | None, kernel: KernelFactory | None) -> None:
        self.recorder = Recorder(coverage)
        self.adapter = kernel() if kernel is not None else None
        self.info: ConnectionInfo | None = None
        self._frontends: list[FrontendEndpoint] = []
        self._cleanups: list[Callable[[], None]] = []

    def __enter__(self) -> _Scene:
        try:
            if self.adapter is not None:
                self.adapter.start(self.recorder)
                self.info = read_connection_file(self.adapter.connection_file)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close()
        if exc_type is None:
            # after the teardown, so its transitions are checked too
            self.recorder.require_conformance()

    def close(self) -> None:
        """Frontends first (their departure is traced at a live kernel), then the rest."""
        errors: list[BaseException] = []
        steps = [fe.close for fe in reversed(self._frontends)]
        steps += list(reversed(self._cleanups))
        if self.adapter is not None:
            steps.append(self.adapter.stop)
        self._frontends, self._cleanups = [], []
        for step in steps:
            try:
                step()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    # -- parts ----------------------------------------------------------------

    @property
    def kut(self) -> ReferenceKernel:
        """The kernel under test, through the KernelAdapter interface."""
        assert self.adapter is not None, "this scenario runs no kernel"
        return self.adapter

    @property
    def kernel(self) -> KernelEndpoint:
        """The KernelEndpoint itself, for what the adapter interface lacks."""
        assert self.adapter is not None and self.adapter.kernel is not None
        return self.adapter.kernel

    def frontend(
        self,
        options: FrontendOptions = MBT_OPTIONS,
        *,
        info: ConnectionInfo | None = None,
        ready: bool = True,
    ) -> FrontendEndpoint:
        connection = info or self.info
        assert connection is not None, "no kernel to connect to"
        fe = FrontendEndpoint(connection, sink=self.recorder, options=options)
        self._frontends.append(fe)
        if ready:
            fe.wait_ready(WAIT)
        return fe

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def open_echo(self, fe: FrontendEndpoint) -> Comm:
        """A default comm, open on both sides."""
        comm = fe.open_comm(ECHO)
        self.wait_moves("kernel", "kernel_comm", comm.comm_id, [OPENED])
        return comm

    def publish_reply(self, comm_id: str, msg_id: str, payload: dict[str, Any]) -> None:
        """The kernel publishes one more reply to request ``msg_id`` on IOPub.

        The adapter has no such action: this uses the KernelEndpoint's test hook. The
        frontend routes a reply by its parent's msg_id alone, so that is all the parent
        header holds.
        """
        self.kernel.inject_iopub("comm_msg", {"comm_id": comm_id, "data": payload},
                                 {"msg_id": msg_id, "msg_type": "comm_msg"})

    def held_stdin(self, fe: FrontendEndpoint) -> tuple[_HeldInput, Future[Any], str]:
        """A kernel stdin request ``fe`` has received and holds unanswered: the holder,
        the kernel's future and the request's msg_id."""
        held = _HeldInput()
        fe.on_input_request(held)
        future, msg_id = self.ask_stdin(fe)
        held.wait()
        return held, future, msg_id

    def ask_stdin(self, fe: FrontendEndpoint) -> tuple[Future[Any], str]:
        """A pending kernel stdin request to ``fe``: its future and msg_id."""
        for _ in range(STDIN_ATTEMPTS):
            mark = self.recorder.mark()
            future = self.kut.stdin_request(fe.session_id.encode())
            msg_id = self.started("kernel", "stdin_request", mark)
            if self.recorder.moves("kernel", "stdin_request", msg_id)[0] == SENT:
                return future, msg_id
        raise AssertionError(f"the kernel's stdin never reached {fe.name}")

    # -- the trace ------------------------------------------------------------

    def wait_moves(self, endpoint: str, machine: str, obj: str, expected: Sequence[Move]) -> None:
        """Wait until the object has taken as many transitions as ``expected``; they must
        be exactly those, in that order."""
        self.recorder.wait_until(
            lambda: len(self.recorder.moves(endpoint, machine, obj)) >= len(expected), WAIT
        )
        got = self.recorder.moves(endpoint, machine, obj)
        if got != list(expected):
            raise AssertionError(
                f"{endpoint} {machine} {obj}: expected {list(expected)}, traced {got}"
            )

    def wait_for(self, what: str, predicate: Callable[[TraceEvent], bool]) -> TraceEvent:
        found: list[TraceEvent] = []

        def seen() -> bool:
            found[:] = [e for e in self.recorder.since(0) if predicate(e)]
            return bool(found)

        if not self.recorder.wait_until(seen, WAIT):
            last = [(e.endpoint, e.machine, e.source, e.event, e.dest)
                    for e in self.recorder.since(0)[-8:]]
            raise AssertionError(f"no trace event for {what} within {WAIT} s; last: {last}")
        return found[0]

    def started(self, endpoint: str, machine: str, mark: int) -> str:
        """The object id of the first ``machine`` object ``endpoint`` started after ``mark``."""
        obj = self.recorder.started(endpoint, machine, mark, WAIT)
        if obj is None:
            raise AssertionError(f"{endpoint} started no {machine} within {WAIT} s")
        return obj


class _Held:
    """A comm request handler that answers only when the scenario says (a Deferred)."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answers: list[Deferred] = []

    def __call__(self, params: Any) -> Deferred:
        answer = Deferred()
        self.answers.append(answer)
        self.asked.set()
        return answer

    def wait(self) -> Deferred:
        if not self.asked.wait(WAIT):
            raise AssertionError(f"the request never reached its handler within {WAIT} s")
        return self.answers[0]


class _HeldInput:
    """A frontend's input_request handler that answers only when the scenario says."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answer: Future[str] = Future()

    def __call__(self, prompt: str, password: bool) -> Future[str]:
        self.asked.set()
        return self.answer

    def wait(self) -> None:
        if not self.asked.wait(WAIT):
            raise AssertionError(f"the stdin request never reached the frontend within {WAIT} s")


class _RawStdin:
    """A bare DEALER on the kernel's stdin, signing with the connection's key: it sends
    an answer nobody else would (a second one), from an identity of its own."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.session = Session(
            key=info.key.encode(), signature_scheme=info.signature_scheme,
            session=f"edges-{uuid.uuid4().hex[:12]}", username="edges", check_pid=False,
        )
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        try:
            self.socket.linger = 0
            self.socket.setsockopt(zmq.IDENTITY, self.session.bsession)
            self.socket.connect(info.url("stdin"))
        except BaseException:
            self.close()
            raise

    def reply(self, msg_type: str, content: dict[str, Any], parent_msg_id: str) -> None:
        # the kernel matches a stdin reply by its parent's msg_id alone
        self.session.send(self.socket, msg_type, content, parent={"msg_id": parent_msg_id})

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


def _result(future: Future[Any]) -> Any:
    try:
        return future.result(WAIT)
    except Exception as e:
        raise AssertionError(f"expected a result, got {type(e).__name__}: {e}") from e


# =========================================================================
# the scenarios
# =========================================================================


def rejected_open(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """A frontend opens a comm on a target the kernel does not know: the kernel rejects
    it and answers comm_close, which closes the frontend's comm."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = fe.open_comm(UNKNOWN_TARGET)
        scene.wait_moves("kernel", "kernel_comm", comm.comm_id, [("new", "rejected", "closed")])
        scene.wait_moves(fe.name, "frontend_comm", comm.comm_id,
                         [OPENED, ("open", "closed_by_kernel", "closed")])
        expect("kernel comms", scene.kut.comm_states(), {})


def resolved_then_duplicate(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """A request resolves; the kernel then publishes a second reply to it: dropped,
    counted and traced as a late reply."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = scene.open_echo(fe)
        mark = scene.recorder.mark()
        expect("echo", _result(comm.request("echo", {"n": 1})), {"n": 1})
        msg_id = scene.started(fe.name, "request", mark)
        scene.publish_reply(comm.comm_id, msg_id, rpc_result(msg_id, "again"))
        scene.wait_moves(fe.name, "request", msg_id, [
            SENT, ("pending", "result", "resolved"), ("resolved", "late_reply", "resolved"),
        ])
        expect("frontend late replies", fe.late_replies, 1)


def errored_then_late(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """A request for a method the comm lacks is answered -32601 (errored); a reply the
    kernel publishes after that is a late reply."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = scene.open_echo(fe)
        error = failure(comm.request("no_such_method"), RemoteError, WAIT)
        expect("error code", error.code, METHOD_NOT_FOUND)
        scene.publish_reply(comm.comm_id, error.msg_id, rpc_result(error.msg_id, "after all"))
        scene.wait_moves(fe.name, "request", error.msg_id, [
            SENT, ("pending", "error", "errored"), ("errored", "late_reply", "errored"),
        ])
        expect("frontend late replies", fe.late_replies, 1)


def deadline_then_slow_reply(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """The demo ``sleep`` outlasts the caller's deadline: timed out; the kernel's reply,
    when its sleep ends, is a late reply."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = scene.open_echo(fe)
        timed_out = failure(comm.request("sleep", {"seconds": SLOW}, timeout=DEADLINE),
                             TimedOut, WAIT)
        scene.wait_moves(fe.name, "request", timed_out.msg_id, [
            SENT, ("pending", "deadline", "timed_out"),
            ("timed_out", "late_reply", "timed_out"),
        ])
        expect("frontend late replies", fe.late_replies, 1)


def idle_without_reply(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """The kernel goes idle on a request without a reply the frontend can use: after the
    grace, no_reply; a valid reply published after that is a late reply.

    The reference kernel always replies before its idle, so a handler's bug stands in
    for a buggy kernel: it answers a JSON-RPC error whose code is not an integer, which
    the frontend drops as malformed input.
    """
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = scene.open_echo(fe)
        # a handler on the kernel's side of this comm: the adapter has no such action
        kernel_comm = scene.kernel.comm(comm.comm_id)
        assert kernel_comm is not None

        def malformed(params: Any) -> Deferred:
            answer = Deferred()
            code: Any = "not-an-integer"
            answer.reject(code, "a kernel bug")
            return answer

        kernel_comm.on_request("malformed", malformed)
        no_reply = failure(comm.request("malformed"), NoReply, WAIT)
        expect("frontend bad input", fe.bad_input.get("malformed_reply"), 1)
        scene.publish_reply(comm.comm_id, no_reply.msg_id, rpc_result(no_reply.msg_id, "late"))
        scene.wait_moves(fe.name, "request", no_reply.msg_id, [
            SENT, ("pending", "idle_without_reply", "no_reply"),
            ("no_reply", "late_reply", "no_reply"),
        ])
        expect("frontend late replies", fe.late_replies, 1)


def cancelled_then_reply(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """The frontend closes its comm with a request pending (cancelled); the kernel had
    already answered it, so the reply arrives late.

    The request and the close are made in one go on the frontend's I/O thread (a
    done-callback of an earlier request), so the reply cannot be read in between, and
    go out on shell in that order, so the kernel answers before it reads the close.
    """
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = scene.open_echo(fe)
        held = _Held()
        comm.on_request("ask", held)
        # the demo call_frontend waits on the frontend's (held) answer: `first` is pending
        first = comm.request("call_frontend", {"method": "ask"})
        answer = held.wait()
        second: list[Future[Any]] = []

        def request_and_close(done: Future[Any]) -> None:
            second.append(comm.request("echo", "too late"))
            comm.close()

        first.add_done_callback(request_and_close)
        answer.resolve("answered")
        expect("call_frontend", _result(first), "answered")
        scene.wait_for("the comm closing under a request",
                       lambda e: e.endpoint == fe.name and e.event == "comm_closed")
        cancelled = failure(second[0], CommClosed, WAIT)
        scene.wait_moves(fe.name, "request", cancelled.msg_id, [
            SENT, ("pending", "comm_closed", "cancelled"),
            ("cancelled", "late_reply", "cancelled"),
        ])
        scene.wait_moves("kernel", "kernel_comm", comm.comm_id,
                         [OPENED, ("open", "closed_by_frontend", "closed")])
        expect("frontend late replies", fe.late_replies, 1)


def invalidated_then_answer(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """A kernel request; its frontend closes only its IOPub socket, so the kernel sees it
    leave and invalidates the request; the frontend's answer on shell arrives late."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        comm = scene.open_echo(fe)
        held = _Held()
        comm.on_request("ask", held)
        mark = scene.recorder.mark()
        future = scene.kut.comm_request(comm.comm_id, "ask", {"q": 1})
        msg_id = scene.started("kernel", "request", mark)
        answer = held.wait()
        fe.drop_iopub()
        failure(future, Disconnected, WAIT)
        answer.resolve("answered after leaving")
        scene.wait_moves("kernel", "request", msg_id, [
            SENT, ("pending", "peer_lost", "invalidated"),
            ("invalidated", "late_reply", "invalidated"),
        ])
        scene.wait_moves("kernel", "kernel_comm", comm.comm_id,
                         [OPENED, ("open", "frontend_lost", "closed")])
        expect("kernel late replies", scene.kut.late_replies, 1)


def stdin_replied_then_duplicate(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """A stdin request is answered; a second input_reply to it is a late reply."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        fe.on_input_request(lambda prompt, password: "typed")
        future, msg_id = scene.ask_stdin(fe)
        expect("input", _result(future), "typed")
        assert scene.info is not None
        raw = _RawStdin(scene.info)
        scene.on_close(raw.close)
        raw.reply("input_reply", {"value": "typed again"}, msg_id)
        scene.wait_moves("kernel", "stdin_request", msg_id, [
            SENT, ("pending", "reply", "replied"), ("replied", "late_reply", "replied"),
        ])
        expect("kernel late replies", scene.kut.late_replies, 1)


def stdin_peer_lost_then_answer(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """A stdin request to a frontend that leaves (its IOPub closes) before answering:
    unreachable; the answer it sends afterwards on stdin is a late reply."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        held, future, msg_id = scene.held_stdin(fe)
        fe.drop_iopub()
        failure(future, Unreachable, WAIT)
        held.answer.set_result("typed after leaving")
        scene.wait_moves("kernel", "stdin_request", msg_id, [
            SENT, ("pending", "peer_lost", "unreachable"),
            ("unreachable", "late_reply", "unreachable"),
        ])
        expect("kernel late replies", scene.kut.late_replies, 1)


def stdin_interrupted_then_answer(coverage: Coverage | None, kernel: KernelFactory) -> None:
    """interrupt_request on control ends a pending stdin request (interrupted); the
    answer the user typed anyway is a late reply."""
    with _Scene(coverage, kernel) as scene:
        fe = scene.frontend()
        held, future, msg_id = scene.held_stdin(fe)
        reply = _result(fe.kernel_request("interrupt_request", {}, channel="control"))
        expect("interrupt reply", reply["msg_type"], "interrupt_reply")
        failure(future, Interrupted, WAIT)
        held.answer.set_result("typed anyway")
        scene.wait_moves("kernel", "stdin_request", msg_id, [
            SENT, ("pending", "interrupt", "interrupted"),
            ("interrupted", "late_reply", "interrupted"),
        ])
        expect("kernel late replies", scene.kut.late_replies, 1)


#: (name, scenario), in the order ``run_edges`` runs them
EDGES: tuple[tuple[str, Scenario], ...] = (
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
)


def run_edges(
    coverage: Coverage | None = None,
    *,
    kernel: KernelFactory = ReferenceKernel,
    only: Iterable[str] | None = None,
    done: Callable[[str], None] | None = None,
) -> list[tuple[str, float]]:
    """Run every scenario (or those named in ``only``); (name, seconds) for each.
    ``done`` hears each scenario's name as it passes (a progress display).

    ``kernel`` makes the kernel under test (a broken variant of the reference kernel in
    the tests). The first failure is raised as an AssertionError naming its scenario.
    """
    wanted = set(only) if only is not None else None
    if wanted is not None and not wanted <= {name for name, _ in EDGES}:
        raise ValueError(f"no such scenario: {sorted(wanted - {n for n, _ in EDGES})}")
    out: list[tuple[str, float]] = []
    for name, scenario in EDGES:
        if wanted is not None and name not in wanted:
            continue
        began = time.monotonic()
        try:
            scenario(coverage, kernel)
        except Exception as e:
            raise AssertionError(f"edge scenario {name!r}: {type(e).__name__}: {e}") from e
        out.append((name, time.monotonic() - began))
        if done is not None:
            done(name)
    return out
