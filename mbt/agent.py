"""A frontend in a process of its own, driven by the harness over stdin and stdout.

Rules:
- Why a process: the model's faults are a crash (SIGKILL) and a freeze (SIGSTOP
  until the kernel's heartbeat gives up), and only a process of its own can be
  killed or stopped like that. The frontend is the reference
  :class:`~commspec.impl.frontend.FrontendEndpoint`, unchanged.
- The protocol is one JSON object per line. In (stdin): ``{"id": n, "op": ..., ...}``.
  Out (stdout): ``{"id": n, "ok": value}`` or ``{"id": n, "error": "..."}`` for each
  command, in order; ``{"trace": <TraceEvent JSON>}`` for every transition the
  frontend takes; ``{"outcome": n, "ok": true}`` or ``{"outcome": n, "error": type}``
  when the request sent by command ``n`` ends; ``{"held": slot}`` when a kernel
  request is held (see ``hold``). One lock orders the lines: the I/O thread traces
  while the main thread answers.
- Every outcome line follows the trace event of that outcome, so a reader that
  saw the outcome has seen the transition.
- The kernel's ``ask`` requests are answered at once, unless ``hold`` is on: then
  the answer waits for ``release`` (the race rules choose when it goes). Its
  ``input_request`` s are answered at once, unless ``hold_input`` is on: then
  never (a frontend that dies with a stdin request pending).
- ``{"seen": slot}`` once the frontend has handled an IOPub ``ask`` request (whatever
  it did with it). While ``hold_replies`` is on, a comm_info_reply that arrives is
  held back before the frontend sees it (``{"reply_held": true}``); turning it off
  hands the held ones on, in order (the reconcile races: a kernel request must reach
  a reconciling frontend first).
- ``connect`` may name a broken variant of the frontend's reconcile rules
  (``policies``: the module, class name and folder of a
  :class:`~commspec.impl.core.frontend_policies.FrontendPolicies`), for the tests that
  show the model-based test catches it: the frontend is the reference endpoint, built
  with ``policies=`` those rules.
- A frontend can ``close`` (its session, cleanly) and ``connect`` again in the same
  process; ``sub`` / ``close_sub`` add a bare SUB socket beside it (the benchmarks
  compare the kernel's view of a departure with a raw XPUB's). ``close`` and
  ``close_sub`` answer the ``time.perf_counter()`` taken just before the close
  (CLOCK_MONOTONIC: one clock for every process of the machine).
- The same protocol serves the model-based tests, the kernel tests that kill or
  freeze a frontend, and the disconnect benchmark.
- The process ends after ``exit`` or when its stdin closes: a harness that dies
  leaves no frontend behind.
- ``--zygote FD`` makes this process a zygote instead: it forks ready frontends
  on request (see :func:`zygote`), so a frontend starts in milliseconds.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TextIO

import zmq

from commspec.impl.comm import Comm, Deferred
from commspec.impl.core.events import Channel, Input, Message, Received
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions, FrontendPolicies
from commspec.model.trace import TraceEvent

__all__ = ["Agent", "main", "serve", "zygote"]

JsonDict = dict[str, Any]


def _policies_of(spec: JsonDict) -> FrontendPolicies:
    """The rules ``connect`` names (see ``processes.policies_spec``)."""
    path = str(spec["path"])
    if path not in sys.path:
        sys.path.append(path)
    policies = getattr(importlib.import_module(str(spec["module"])), str(spec["name"]))
    if not (isinstance(policies, type) and issubclass(policies, FrontendPolicies)):
        raise TypeError(f"{spec} is not a FrontendPolicies")
    return policies()


class _Endpoint(FrontendEndpoint):
    """The reference endpoint, with one hook for the tests: comm_info replies held back."""

    def __init__(self, *args: Any, on_held: Callable[[], None], **kwargs: Any) -> None:
        self.holding_replies = False
        self._held_replies: list[Received] = []
        self._on_held = on_held
        super().__init__(*args, **kwargs)

    def feed(self, event: Input) -> None:  # the I/O thread
        if self.holding_replies and isinstance(event, Received) \
                and event.channel is Channel.SHELL \
                and event.msg.get("msg_type") == "comm_info_reply":
            self._held_replies.append(event)
            self._on_held()
            return
        super().feed(event)

    def hold_replies(self, on: bool) -> None:
        """Hold comm_info replies back from now on, or stop and hand on those held (on
        the I/O thread, in order)."""
        if on:
            self.holding_replies = True
            return

        def release() -> None:
            self.holding_replies = False
            held, self._held_replies = self._held_replies, []
            for event in held:
                self.feed(event)

        self.call_later(0.0, release)


class Agent:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._holding = False
        self._held: dict[int, Deferred] = {}
        self._hold_lock = threading.Lock()
        self._holding_input = False
        self.endpoint: _Endpoint | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None

    def write(self, line: JsonDict) -> None:
        text = json.dumps(line, separators=(",", ":"))
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def _trace(self, event: TraceEvent) -> None:
        self.write({"trace": event.to_json()})

    # -- commands (main thread) ----------------------------------------------

    def handle(self, command: JsonDict) -> bool:
        """Run one command and answer it; False once the agent should end."""
        n = command.get("id")
        op = command.get("op")
        handler: Callable[[JsonDict, Any], Any] | None = getattr(self, f"op_{op}", None)
        if handler is None:
            self.write({"id": n, "error": f"unknown op {op!r}"})
            return True
        try:
            value = handler(command, n)
        except Exception as e:  # answered, never fatal: the harness decides
            self.write({"id": n, "error": f"{type(e).__name__}: {e}"})
            return True
        self.write({"id": n, "ok": value})
        return op != "exit"

    def _ep(self) -> _Endpoint:
        if self.endpoint is None:
            raise RuntimeError("connect first")
        return self.endpoint

    def _comm(self, comm_id: str) -> Comm:
        comm = self._ep().comms().get(comm_id)
        if comm is None:
            raise KeyError(f"no comm {comm_id} held")
        return comm

    def op_connect(self, command: JsonDict, n: Any) -> str:
        if self.endpoint is not None:
            raise RuntimeError("already connected")
        policies = command.get("policies")
        endpoint = _Endpoint(
            command["connection"],
            sink=self._trace,
            options=FrontendOptions(**command["options"]),
            session_id=command["session_id"],
            policies=_policies_of(policies) if policies else None,
            on_held=lambda: self.write({"reply_held": True}),
        )
        self.endpoint = endpoint
        for target in command["targets"]:
            endpoint.register_target(target, lambda comm, data: self._serve(comm))
        endpoint.on_input_request(self._input)
        endpoint.on_iopub(self._seen)
        return endpoint.name

    def op_wait_ready(self, command: JsonDict, n: Any) -> None:
        self._ep().wait_ready(float(command.get("timeout", 10.0)))

    def op_open(self, command: JsonDict, n: Any) -> str:
        comm = self._ep().open_comm(command["target"])
        self._serve(comm)
        return comm.comm_id

    def op_request(self, command: JsonDict, n: Any) -> None:
        future = self._comm(command["comm_id"]).request(command["method"], command["params"])
        future.add_done_callback(lambda f: self._report(n, f))

    def op_adopt(self, command: JsonDict, n: Any) -> None:
        # The adopted comms are served as the targets' comms are (their handler runs);
        # the harness waits for the system to settle, not for this future.
        self._ep().adopt_comms()

    def op_close_comm(self, command: JsonDict, n: Any) -> None:
        self._comm(command["comm_id"]).close()

    def op_hold(self, command: JsonDict, n: Any) -> None:
        with self._hold_lock:
            self._holding = bool(command["on"])

    def op_release(self, command: JsonDict, n: Any) -> None:
        with self._hold_lock:
            deferred = self._held.pop(int(command["slot"]))
        deferred.resolve({"answered": command["slot"]})

    def op_drop_iopub(self, command: JsonDict, n: Any) -> None:
        self._ep().drop_iopub()

    def op_reconnect(self, command: JsonDict, n: Any) -> None:
        self._ep().reconnect()

    def op_hold_replies(self, command: JsonDict, n: Any) -> None:
        self._ep().hold_replies(bool(command["on"]))

    def op_hold_input(self, command: JsonDict, n: Any) -> None:
        self._holding_input = bool(command["on"])

    def op_close(self, command: JsonDict, n: Any) -> float:
        endpoint, self.endpoint = self._ep(), None
        closed_at = time.perf_counter()
        endpoint.close()
        return closed_at

    def op_sub(self, command: JsonDict, n: Any) -> None:
        if self._context is None:
            self._context = zmq.Context()
        sub = self._context.socket(zmq.SUB)
        sub.linger = 0
        for topic in ("", *command.get("topics", ())):
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sub.connect(command["url"])
        self._sub = sub

    def op_close_sub(self, command: JsonDict, n: Any) -> float:
        sub, self._sub = self._sub, None
        if sub is None:
            raise RuntimeError("no sub socket")
        closed_at = time.perf_counter()
        sub.close(linger=0)
        return closed_at

    def op_exit(self, command: JsonDict, n: Any) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
        if self._sub is not None:
            self._sub.close(linger=0)
        if self._context is not None:
            self._context.term()

    # -- the frontend's side (its threads) ------------------------------------

    def _report(self, n: Any, future: Future[Any]) -> None:
        error = future.exception()
        if error is None:
            self.write({"outcome": n, "ok": True})
        else:
            self.write({"outcome": n, "error": type(error).__name__})

    def _seen(self, msg: Message) -> None:
        data = msg["content"].get("data") if msg["msg_type"] == "comm_msg" else None
        if isinstance(data, dict) and data.get("method") == "ask":
            params = data.get("params")
            if isinstance(params, dict) and isinstance(params.get("slot"), int):
                self.write({"seen": params["slot"]})

    def _input(self, prompt: str, password: bool) -> str | Future[str]:
        if self._holding_input:
            return Future()  # never answered: the test ends the frontend with it pending
        return f"answer to {prompt}"

    def _serve(self, comm: Comm) -> None:
        def ask(params: Any) -> Any:
            with self._hold_lock:
                if self._holding:
                    deferred = Deferred()
                    slot = int(params["slot"])
                    self._held[slot] = deferred
                    self.write({"held": slot})
                    return deferred
            return {"answered": params}

        comm.on_request("ask", ask)


def serve(rfile: TextIO, wfile: TextIO) -> None:
    """Be one frontend: read commands from ``rfile`` until ``exit`` or its end."""
    agent = Agent(wfile)
    agent.write({"ready": True})
    try:
        for line in rfile:
            if line.strip() and not agent.handle(json.loads(line)):
                break
    finally:
        if agent.endpoint is not None:
            agent.endpoint.close()


def zygote(control: socket.socket) -> None:
    """Fork one frontend per ``fork`` line read from ``control``.

    Starting Python and importing the frontend costs a few hundred milliseconds of
    CPU; a fork of this process, which has imported it and holds no thread and no
    ZeroMQ context, costs a few. For each child: a socket pair, one end the child's
    stdin and stdout, the other sent back over ``control`` (SCM_RIGHTS) with the
    child's pid. Children are reaped by the kernel (SIGCHLD ignored); the zygote
    ends when ``control`` closes.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in control.makefile("r", encoding="utf-8"):
        if line.strip() != "fork":
            continue
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the child: a frontend, nothing of the zygote kept
            control.close()
            ours.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                serve(theirs.makefile("r", encoding="utf-8"),
                      theirs.makefile("w", encoding="utf-8"))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        socket.send_fds(control, [str(pid).encode() + b"\n"], [ours.fileno()])
        ours.close()
        theirs.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--zygote"]:
        zygote(socket.socket(fileno=int(args[1])))
    else:
        serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
