"""Scenarios through the adapter: kernel-side rows the random programs rarely or never
take, for any kernel (the reference one, or another through
:class:`~commspec.mbt.external.ExternalKernel`).

Rules:
- Only the :class:`~commspec.mbt.adapter.KernelAdapter` interface is used on the
  kernel's side, so a kernel in another process is held to these rows too (the
  scenarios of :mod:`.edges` reach into the reference kernel and are reference-only).
- The frontend is a reference :class:`~commspec.impl.frontend.FrontendEndpoint` in this
  process, traced to the same :class:`~commspec.mbt.recorder.Recorder` as the kernel,
  so every transition is checked against its machine as it arrives and counted.
- A second answer, one the reference frontend would never send (after it answered,
  after it left, after its comm closed), comes from a raw client of the test's own
  (:class:`~commspec.conform.client.Client` without IOPub, so never a subscriber),
  signed with the connection file's key: replies are correlated by the request's
  ``msg_id`` (SPEC, "The late-reply race"), so the kernel must count it late.
- Each scenario waits on the trace or on futures, always bounded; it asserts the
  kernel's traced transition and the request's outcome, and releases the frontend, the
  raw client and the kernel in ``finally``. Each one ends in a verdict of its own
  (:class:`Verdict`).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from commspec.conform.client import Client
from commspec.impl.comm import Comm, Deferred
from commspec.impl.errors import RequestFailed
from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.targets import ECHO_PERSISTENT

from .adapter import KernelAdapter
from .errors import MbtFailure
from .live import MBT_OPTIONS, STEP_TIMEOUT
from .recorder import Coverage, Recorder, Row
from .scenarios import Verdict

__all__ = ["ADAPTER_EDGES", "FRONTEND_ONLY_ROWS", "AdapterEdge", "run_adapter_edges"]

#: a target no kernel serves: the kernel must refuse the open
UNKNOWN_TARGET = "commspec.mbt.no-such-target"
#: a stdin identity no frontend ever had: a stdin request to it is unreachable at once
NOBODY = b"commspec-mbt-nobody"


@dataclass
class Scene:
    kernel: KernelAdapter
    recorder: Recorder
    frontend: FrontendEndpoint
    timeout: float
    _raw: Client | None = field(default=None, init=False)

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def answer_again(self, channel: str, msg_type: str, content: dict[str, Any],
                     request: str) -> None:
        """Send the kernel one more answer to its request ``request`` (a msg_id), from
        the raw client (made on first use)."""
        if self._raw is None:
            info = json.loads(self.kernel.connection_file.read_text())
            self._raw = Client(info, name="second-answer")
        self._raw.send(channel, msg_type, content,
                       parent={"msg_id": request, "msg_type": _ASKED[msg_type]})

    def late_comm_answer(self, comm_id: str, request: str) -> None:
        """Answer the kernel's comm request once more: the kernel must count it late."""
        late = self.kernel.late_replies
        self.answer_again("shell", "comm_msg", {"comm_id": comm_id, "data": {
            "jsonrpc": "2.0", "id": "again", "result": "again"}}, request)
        self.counted_late("request", request, late)

    def late_stdin_answer(self, request: str) -> None:
        """Answer the kernel's stdin request once more: the kernel must count it late."""
        late = self.kernel.late_replies
        self.answer_again("stdin", "input_reply", {"value": "again"}, request)
        self.counted_late("stdin_request", request, late)

    def counted_late(self, machine: str, request: str, before: int) -> None:
        """The kernel counted one more late reply than ``before`` and traced it on
        ``request``'s machine."""
        if not self.recorder.wait_until(lambda: self.kernel.late_replies > before,
                                        self.timeout):
            state = self.recorder.get("kernel", machine, request, "unknown")
            raise MbtFailure(f"an answer to {machine} {request}, which had ended "
                             f"{state}, was never counted late")
        self.kernel_move(machine, request, "late_reply")

    def pended(self, machine: str, msg_id: str, what: str) -> None:
        """Wait for the kernel's ``machine`` object ``msg_id`` to be pending."""
        if not self.recorder.wait_until(
                lambda: self.recorder.get("kernel", machine, msg_id, "") == "pending",
                self.timeout):
            raise MbtFailure(f"{what} {msg_id} never pended")

    def kernel_move(self, machine: str, obj: str, event: str) -> None:
        """Wait for the kernel to trace ``event`` on ``obj`` (MbtFailure if it never does)."""
        def moved() -> bool:
            return any(e.endpoint == "kernel" and e.machine == machine and e.object == obj
                       and e.event == event for e in self.recorder.since(0))

        if not self.recorder.wait_until(moved, self.timeout):
            seen = [f"{e.source} --{e.event}--> {e.dest}" for e in self.recorder.since(0)
                    if e.endpoint == "kernel" and e.object == obj]
            raise MbtFailure(f"the kernel never traced {machine} {obj} --{event}-->; it "
                             f"traced {seen or 'nothing for it'}")

    def request_on_new_comm(self, answer: Callable[[Any], Any],
                            deadline: float | None = None) -> tuple[str, Future[Any]]:
        """A comm the kernel opens for the frontend, which answers ``ask`` with
        ``answer``; and a kernel request on it (with ``deadline`` if given), once the
        frontend holds the comm."""
        held: Future[Comm] = Future()

        def taken(comm: Comm, data: Any) -> None:
            comm.on_request("ask", answer)
            held.set_result(comm)

        self.frontend.register_target(ECHO_PERSISTENT, taken)
        comm_id = self.kernel.open_comm(ECHO_PERSISTENT, True, self.frontend.session_id)
        held.result(self.timeout)
        if deadline is None:
            return comm_id, self.kernel.comm_request(comm_id, "ask", {"edge": True})
        return comm_id, self.kernel.comm_request(comm_id, "ask", {"edge": True},
                                                 timeout=deadline)  # type: ignore[call-arg]

    def ends(self, future: Future[Any], outcome: str, what: str) -> None:
        """MbtFailure unless the request ``what`` ends ``outcome`` in time ("resolved"
        for a result, comm or stdin)."""
        try:
            future.result(self.timeout)
        except FutureTimeout:
            raise MbtFailure(f"{what} had not ended {self.timeout:g} s later (the model: "
                             f"{outcome})") from None
        except RequestFailed as e:
            ended = e.state
        else:
            ended = "resolved"
        if ended != outcome:
            raise MbtFailure(f"{what} ended {ended}, not {outcome}")

    def request_id(self, mark: int) -> str:
        msg_id = self.recorder.started("kernel", "request", mark, self.timeout)
        if msg_id is None:
            raise MbtFailure("the kernel traced no request it made")
        return msg_id


#: the request each answer's parent is (a raw answer's parent header names it)
_ASKED = {"comm_msg": "comm_msg", "input_reply": "input_request"}


def _rejected(scene: Scene) -> None:
    """A frontend opens a target the kernel does not serve: refused with comm_close."""
    comm = scene.frontend.open_comm(UNKNOWN_TARGET)
    scene.kernel_move("kernel_comm", comm.comm_id, "rejected")


def _resolved(scene: Scene) -> None:
    """The frontend answers the kernel's request; an answer after that one is late."""
    mark = scene.recorder.mark()
    comm_id, future = scene.request_on_new_comm(lambda params: params)
    msg_id = scene.request_id(mark)
    scene.ends(future, "resolved", "a request its frontend answered")
    scene.kernel_move("request", msg_id, "result")
    scene.late_comm_answer(comm_id, msg_id)


def _errored(scene: Scene) -> None:
    """The frontend answers the kernel's request with an error; an answer after is late."""
    def fails(params: Any) -> Any:
        raise ValueError("this frontend refuses")

    mark = scene.recorder.mark()
    comm_id, future = scene.request_on_new_comm(fails)
    msg_id = scene.request_id(mark)
    scene.ends(future, "errored", "a request its frontend answered with an error")
    scene.kernel_move("request", msg_id, "error")
    scene.late_comm_answer(comm_id, msg_id)


def _held_request(scene: Scene) -> tuple[str, str, Future[Any]]:
    """A kernel request the frontend holds unanswered: its comm, msg_id and future."""
    mark = scene.recorder.mark()
    comm_id, future = scene.request_on_new_comm(lambda params: Deferred())  # held
    msg_id = scene.request_id(mark)
    scene.pended("request", msg_id, "kernel request")
    return comm_id, msg_id, future


def _cancelled(scene: Scene) -> None:
    """The kernel closes a comm while its own request on it is pending; the answer that
    comes after is late."""
    comm_id, msg_id, future = _held_request(scene)
    scene.kernel.close_comm(comm_id)
    scene.ends(future, "cancelled", "a request whose comm the kernel closed")
    scene.kernel_move("request", msg_id, "comm_closed")
    scene.late_comm_answer(comm_id, msg_id)


def _invalidated(scene: Scene) -> None:
    """The frontend leaves while the kernel's request to it is pending: invalidated, and
    its answer after is late; a request on the comm it left detached is undeliverable."""
    comm_id, msg_id, future = _held_request(scene)
    scene.frontend.close()
    scene.ends(future, "invalidated", "a request whose frontend left")
    scene.kernel_move("request", msg_id, "peer_lost")
    scene.late_comm_answer(comm_id, msg_id)
    mark = scene.recorder.mark()
    again = scene.kernel.comm_request(comm_id, "ask", {})
    scene.ends(again, "undeliverable", "a request on a comm whose frontend had left")
    scene.kernel_move("request", scene.request_id(mark), "no_receiver")


def _held_stdin(scene: Scene) -> tuple[str, Future[Any], Future[str]]:
    """A kernel stdin request the frontend holds unanswered: its msg_id, its future, and
    the answer the frontend gives once the test sets it."""
    answer: Future[str] = Future()
    scene.frontend.on_input_request(lambda prompt, password: answer)
    mark = scene.recorder.mark()
    future = scene.kernel.stdin_request(scene.frontend.session_id.encode())
    msg_id = scene.recorder.started("kernel", "stdin_request", mark, scene.timeout)
    if msg_id is None:
        raise MbtFailure("the kernel traced no stdin request")
    scene.pended("stdin_request", msg_id, "stdin request")
    return msg_id, future, answer


def _replied(scene: Scene) -> None:
    """The frontend answers the kernel on stdin; an answer after that one is late."""
    msg_id, future, answer = _held_stdin(scene)
    answer.set_result("first")
    # a result: the stdin machine's replied
    scene.ends(future, "resolved", "a stdin request its frontend answered")
    scene.kernel_move("stdin_request", msg_id, "reply")
    scene.late_stdin_answer(msg_id)


def _unreachable(scene: Scene) -> None:
    """The frontend asked on stdin leaves without answering: unreachable, and its answer
    after is late; a stdin request to an identity nobody has is unreachable at once."""
    msg_id, future, _ = _held_stdin(scene)
    scene.frontend.close()
    scene.ends(future, "unreachable", "a stdin request whose frontend left")
    scene.kernel_move("stdin_request", msg_id, "peer_lost")
    scene.late_stdin_answer(msg_id)
    mark = scene.recorder.mark()
    scene.ends(scene.kernel.stdin_request(NOBODY), "unreachable",
               "a stdin request to an identity nobody has")
    asked = scene.recorder.started("kernel", "stdin_request", mark, scene.timeout)
    if asked is None:
        raise MbtFailure("the kernel traced no stdin request to an identity nobody has")
    scene.kernel_move("stdin_request", asked, "host_unreachable")


def _interrupted(scene: Scene) -> None:
    """An interrupt ends a pending stdin request; the answer that comes after is late."""
    interrupt = getattr(scene.kernel, "interrupt", None)
    if not callable(interrupt):
        raise Unsupported("the adapter cannot interrupt the kernel (interrupt)")
    msg_id, future, answer = _held_stdin(scene)
    interrupt()
    scene.ends(future, "interrupted", "a stdin request pending at an interrupt")
    scene.kernel_move("stdin_request", msg_id, "interrupt")
    late = scene.kernel.late_replies
    answer.set_result("too late")
    scene.counted_late("stdin_request", msg_id, late)


#: the deadline of the timed-out scenario's request, seconds: short, the test waits it out
DEADLINE = 0.2


def _timed_out(scene: Scene) -> None:
    """The kernel's request passes its deadline; the answer that comes after is late."""
    if "timeout" not in inspect.signature(scene.kernel.comm_request).parameters:
        raise Unsupported("the adapter's comm_request takes no timeout")
    answered: list[Deferred] = []

    def hold(params: Any) -> Deferred:
        answered.append(Deferred())
        return answered[-1]

    mark = scene.recorder.mark()
    _, future = scene.request_on_new_comm(hold, deadline=DEADLINE)
    msg_id = scene.request_id(mark)
    scene.ends(future, "timed_out", "a request past its deadline")
    scene.kernel_move("request", msg_id, "deadline")
    if not answered:
        raise MbtFailure("the frontend never received the request")
    late = scene.kernel.late_replies
    answered[0].resolve("too late")
    scene.counted_late("request", msg_id, late)


class Unsupported(Exception):
    """The kernel under test cannot make this scenario happen: it is skipped."""


@dataclass(frozen=True)
class AdapterEdge:
    """A scenario through the adapter and the kernel-side rows it is there to take: it
    passes only if the kernel traced each of them."""

    name: str
    run: Callable[[Scene], None]
    rows: frozenset[Row]


def _rows(machine: str, *moves: str) -> frozenset[Row]:
    """``machine``'s rows, each move written "source event dest"."""
    out: set[Row] = set()
    for move in moves:
        source, event, dest = move.split()
        out.add((machine, source, event, dest))
    return frozenset(out)


ADAPTER_EDGES: tuple[AdapterEdge, ...] = (
    AdapterEdge("a frontend opens a target the kernel does not serve: rejected",
                _rejected, _rows("kernel_comm", "new rejected closed")),
    AdapterEdge("the frontend answers the kernel's request, and again: resolved, then late",
                _resolved, _rows("request", "new sent pending", "pending result resolved",
                                 "resolved late_reply resolved")),
    AdapterEdge("the frontend answers the kernel's request with an error: errored, then "
                "late", _errored,
                _rows("request", "pending error errored", "errored late_reply errored")),
    AdapterEdge("the kernel closes a comm its own request is pending on: cancelled, then "
                "late", _cancelled, _rows("request", "pending comm_closed cancelled",
                                          "cancelled late_reply cancelled")),
    AdapterEdge("the frontend leaves while the kernel's request is pending: invalidated, "
                "then late; undeliverable after", _invalidated,
                _rows("request", "pending peer_lost invalidated",
                      "invalidated late_reply invalidated", "new no_receiver undeliverable")),
    AdapterEdge("the frontend answers on stdin, and again: replied, then late", _replied,
                _rows("stdin_request", "new sent pending", "pending reply replied",
                      "replied late_reply replied")),
    AdapterEdge("the frontend asked on stdin leaves unanswering: unreachable, then late; "
                "nobody: unreachable at once", _unreachable,
                _rows("stdin_request", "pending peer_lost unreachable",
                      "unreachable late_reply unreachable",
                      "new host_unreachable unreachable")),
    AdapterEdge("an interrupt ends a stdin request, whose answer is then late",
                _interrupted, _rows("stdin_request", "pending interrupt interrupted",
                                    "interrupted late_reply interrupted")),
    AdapterEdge("the kernel's request passes its deadline, whose answer is then late",
                _timed_out, _rows("request", "pending deadline timed_out",
                                  "timed_out late_reply timed_out")),
)

#: the rows of ``request`` only a frontend's request takes, never the kernel's: the
#: kernel's requests go out on IOPub, and no busy/idle brackets them, so none can end
#: no_reply (SPEC, "No reply")
FRONTEND_ONLY_ROWS = _rows("request", "pending idle_without_reply no_reply",
                           "no_reply late_reply no_reply")


def run_adapter_edges(
    adapter_factory: Callable[[], KernelAdapter],
    coverage: Coverage | None = None,
    *,
    done: Callable[[str], None] | None = None,
    timeout: float = STEP_TIMEOUT,
    scenarios: Sequence[AdapterEdge] = ADAPTER_EDGES,
) -> list[Verdict]:
    """Every scenario (of ``scenarios``) against a fresh kernel of its own, each to its
    verdict."""
    out: list[Verdict] = []
    for edge in scenarios:
        out.append(_run(edge, adapter_factory, coverage, timeout))
        if done is not None:
            done(edge.name)
    return out


def _require_rows(edge: AdapterEdge, recorder: Recorder) -> None:
    """MbtFailure naming the rows the scenario is there for that the kernel never
    traced."""
    missing = sorted(row for row in edge.rows
                     if row[1:] not in recorder.moves("kernel", row[0]))
    if missing:
        raise MbtFailure("the kernel never traced " + ", ".join(
            f"{m}: {s} --{e}--> {d}" for m, s, e, d in missing))


def _run(edge: AdapterEdge, adapter_factory: Callable[[], KernelAdapter],
         coverage: Coverage | None, timeout: float) -> Verdict:
    name = edge.name
    began = time.monotonic()
    recorder = Recorder(coverage)
    kernel = adapter_factory()
    frontend: FrontendEndpoint | None = None
    scene: Scene | None = None
    try:
        kernel.start(recorder)
        frontend = FrontendEndpoint(kernel.connection_file, sink=recorder,
                                    options=MBT_OPTIONS)
        frontend.wait_ready(timeout)
        # the kernel counts the frontend before it opens a comm for it
        if not recorder.wait_until(lambda: kernel.subscriber_count >= 1, timeout):
            raise MbtFailure("the kernel never counted the frontend as a subscriber")
        scene = Scene(kernel, recorder, frontend, timeout)
        edge.run(scene)
        recorder.require_conformance()
        _require_rows(edge, recorder)
    except Unsupported as e:
        return Verdict(name, "skipped", str(e))
    except Exception as e:  # a scenario's failure, or a kernel that failed to answer
        what = "" if isinstance(e, AssertionError) else f"{type(e).__name__}: "
        return Verdict(name, "failed", f"{what}{e}", time.monotonic() - began)
    finally:
        if scene is not None:
            scene.close()
        if frontend is not None:
            frontend.close()  # twice is safe: a scenario may have closed it
        kernel.stop()
    return Verdict(name, "passed", "", time.monotonic() - began)

