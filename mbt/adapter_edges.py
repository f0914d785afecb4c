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
- Each scenario waits on the trace or on futures, always bounded; it asserts the
  kernel's traced transition and the request's outcome, and releases the frontend and
  the kernel in ``finally``. Each one ends in a verdict of its own (:class:`Verdict`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from commspec.impl.comm import Comm, Deferred
from commspec.impl.errors import RequestFailed
from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.targets import ECHO_PERSISTENT

from .adapter import KernelAdapter
from .errors import MbtFailure
from .live import MBT_OPTIONS, STEP_TIMEOUT
from .recorder import Coverage, Recorder
from .scenarios import Verdict

__all__ = ["ADAPTER_EDGES", "run_adapter_edges"]

#: a target no kernel serves: the kernel must refuse the open
UNKNOWN_TARGET = "commspec.mbt.no-such-target"


@dataclass
class Scene:
    kernel: KernelAdapter
    recorder: Recorder
    frontend: FrontendEndpoint
    timeout: float

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

    def request_on_new_comm(self, answer: Callable[[Any], Any]) -> tuple[str, Future[Any]]:
        """A comm the kernel opens for the frontend, which answers ``ask`` with
        ``answer``; and a kernel request on it, once the frontend holds the comm."""
        held: Future[Comm] = Future()

        def taken(comm: Comm, data: Any) -> None:
            comm.on_request("ask", answer)
            held.set_result(comm)

        self.frontend.register_target(ECHO_PERSISTENT, taken)
        comm_id = self.kernel.open_comm(ECHO_PERSISTENT, True, self.frontend.session_id)
        held.result(self.timeout)
        return comm_id, self.kernel.comm_request(comm_id, "ask", {"edge": True})

    def request_id(self, mark: int) -> str:
        msg_id = self.recorder.started("kernel", "request", mark, self.timeout)
        if msg_id is None:
            raise MbtFailure("the kernel traced no request it made")
        return msg_id


def _outcome(future: Future[Any], timeout: float) -> str:
    """The state a request's future ended in ("resolved" for a result)."""
    try:
        future.result(timeout)
    except RequestFailed as e:
        return e.state
    return "resolved"


def _rejected(scene: Scene) -> None:
    """A frontend opens a target the kernel does not serve: refused with comm_close."""
    comm = scene.frontend.open_comm(UNKNOWN_TARGET)
    scene.kernel_move("kernel_comm", comm.comm_id, "rejected")


def _errored(scene: Scene) -> None:
    """The frontend answers the kernel's request with an error."""
    def fails(params: Any) -> Any:
        raise ValueError("this frontend refuses")

    mark = scene.recorder.mark()
    _, future = scene.request_on_new_comm(fails)
    msg_id = scene.request_id(mark)
    outcome = _outcome(future, scene.timeout)
    if outcome != "errored":
        raise MbtFailure(f"a request its frontend answered with an error ended {outcome}")
    scene.kernel_move("request", msg_id, "error")


def _cancelled(scene: Scene) -> None:
    """The kernel closes a comm while its own request on it is pending."""
    mark = scene.recorder.mark()
    comm_id, future = scene.request_on_new_comm(lambda params: Deferred())  # held
    msg_id = scene.request_id(mark)
    if not scene.recorder.wait_until(
            lambda: scene.recorder.get("kernel", "request", msg_id, "") == "pending",
            scene.timeout):
        raise MbtFailure(f"kernel request {msg_id} never pended")
    scene.kernel.close_comm(comm_id)
    outcome = _outcome(future, scene.timeout)
    if outcome != "cancelled":
        raise MbtFailure(f"a request whose comm the kernel closed ended {outcome}")
    scene.kernel_move("request", msg_id, "comm_closed")


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
    if not scene.recorder.wait_until(
            lambda: scene.recorder.get("kernel", "stdin_request", msg_id, "") == "pending",
            scene.timeout):
        raise MbtFailure(f"stdin request {msg_id} never pended")
    return msg_id, future, answer


def _unreachable(scene: Scene) -> None:
    """The frontend asked on stdin leaves without answering."""
    msg_id, future, _ = _held_stdin(scene)
    scene.frontend.close()
    outcome = _outcome(future, scene.timeout)
    if outcome != "unreachable":
        raise MbtFailure(f"a stdin request whose frontend left ended {outcome}")
    scene.kernel_move("stdin_request", msg_id, "peer_lost")


def _interrupted(scene: Scene) -> None:
    """An interrupt ends a pending stdin request; the answer that comes after is late."""
    interrupt = getattr(scene.kernel, "interrupt", None)
    if not callable(interrupt):
        raise Unsupported("the adapter cannot interrupt the kernel (interrupt)")
    msg_id, future, answer = _held_stdin(scene)
    interrupt()
    outcome = _outcome(future, scene.timeout)
    if outcome != "interrupted":
        raise MbtFailure(f"a stdin request pending at an interrupt ended {outcome}")
    scene.kernel_move("stdin_request", msg_id, "interrupt")
    late = scene.kernel.late_replies
    answer.set_result("too late")
    if not scene.recorder.wait_until(lambda: scene.kernel.late_replies > late,
                                     scene.timeout):
        raise MbtFailure("the answer after the interrupt was never counted late")
    scene.kernel_move("stdin_request", msg_id, "late_reply")


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

    held: Future[Comm] = Future()

    def taken(comm: Comm, data: Any) -> None:
        comm.on_request("ask", hold)
        held.set_result(comm)

    scene.frontend.register_target(ECHO_PERSISTENT, taken)
    comm_id = scene.kernel.open_comm(ECHO_PERSISTENT, True, scene.frontend.session_id)
    held.result(scene.timeout)
    mark = scene.recorder.mark()
    future = scene.kernel.comm_request(comm_id, "ask", {}, timeout=DEADLINE)  # type: ignore[call-arg]
    msg_id = scene.request_id(mark)
    outcome = _outcome(future, scene.timeout)
    if outcome != "timed_out":
        raise MbtFailure(f"a request past its deadline ended {outcome}")
    scene.kernel_move("request", msg_id, "deadline")
    if not answered:
        raise MbtFailure("the frontend never received the request")
    late = scene.kernel.late_replies
    answered[0].resolve("too late")
    if not scene.recorder.wait_until(lambda: scene.kernel.late_replies > late,
                                     scene.timeout):
        raise MbtFailure("the answer after the deadline was never counted late")
    scene.kernel_move("request", msg_id, "late_reply")


class Unsupported(Exception):
    """The kernel under test cannot make this scenario happen: it is skipped."""


#: (name, scenario): each takes the kernel-side rows its docstring names
ADAPTER_EDGES: tuple[tuple[str, Callable[[Scene], None]], ...] = (
    ("a frontend opens a target the kernel does not serve: rejected", _rejected),
    ("the frontend answers the kernel's request with an error: errored", _errored),
    ("the kernel closes a comm its own request is pending on: cancelled", _cancelled),
    ("the frontend asked on stdin leaves unanswering: unreachable", _unreachable),
    ("an interrupt ends a stdin request, whose answer is then late", _interrupted),
    ("the kernel's request passes its deadline, whose answer is then late", _timed_out),
)


def run_adapter_edges(
    adapter_factory: Callable[[], KernelAdapter],
    coverage: Coverage | None = None,
    *,
    done: Callable[[str], None] | None = None,
    timeout: float = STEP_TIMEOUT,
) -> list[Verdict]:
    """Every scenario against a fresh kernel of its own, each to its verdict."""
    out: list[Verdict] = []
    for name, scenario in ADAPTER_EDGES:
        out.append(_run(name, scenario, adapter_factory, coverage, timeout))
        if done is not None:
            done(name)
    return out


def _run(name: str, scenario: Callable[[Scene], None],
         adapter_factory: Callable[[], KernelAdapter], coverage: Coverage | None,
         timeout: float) -> Verdict:
    began = time.monotonic()
    recorder = Recorder(coverage)
    kernel = adapter_factory()
    frontend: FrontendEndpoint | None = None
    try:
        kernel.start(recorder)
        frontend = FrontendEndpoint(kernel.connection_file, sink=recorder,
                                    options=MBT_OPTIONS)
        frontend.wait_ready(timeout)
        # the kernel counts the frontend before it opens a comm for it
        if not recorder.wait_until(lambda: kernel.subscriber_count >= 1, timeout):
            raise MbtFailure("the kernel never counted the frontend as a subscriber")
        scenario(Scene(kernel, recorder, frontend, timeout))
        recorder.require_conformance()
    except Unsupported as e:
        return Verdict(name, "skipped", str(e))
    except Exception as e:  # a scenario's failure, or a kernel that failed to answer
        what = "" if isinstance(e, AssertionError) else f"{type(e).__name__}: "
        return Verdict(name, "failed", f"{what}{e}", time.monotonic() - began)
    finally:
        if frontend is not None:
            frontend.close()  # twice is safe: a scenario may have closed it
        kernel.stop()
    return Verdict(name, "passed", "", time.monotonic() - began)

