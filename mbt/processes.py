"""The harness's side of frontends that run as processes (see ``commspec.mbt.agent``).

Rules:
- A :class:`FrontendProcess` sends commands and waits for their answers (always
  bounded), feeds every trace line to the harness's sink as it arrives, and
  turns outcome lines into futures, so a frontend request in another process
  reads like one in this process.
- Faults are signals to a pid this module started: ``kill`` (SIGKILL), ``freeze``
  (SIGSTOP) and ``resume`` (SIGCONT). A frozen process is resumed before it is
  killed, so closing never leaves a stopped process behind.
- Starting Python and importing the frontend takes a few hundred milliseconds of
  CPU, so a :class:`FrontendPool` starts one zygote process (``commspec.mbt.agent
  --zygote``) and has it fork each frontend, in milliseconds. ``close`` ends every
  frontend it forked (SIGKILL by pid, unless already gone) and then the zygote,
  and joins every reader thread.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any

from commspec.impl.connection import ConnectionInfo
from commspec.impl.core.frontend import FrontendOptions
from commspec.impl.core.frontend_policies import FrontendPolicies
from commspec.model.trace import TraceEvent, TraceSink, discard

__all__ = ["AgentError", "FrontendPool", "FrontendProcess", "RequestEnded", "policies_spec"]

#: how long one command may take to be answered (each takes milliseconds)
ANSWER_TIMEOUT = 10.0


def policies_spec(policies: type[FrontendPolicies]) -> dict[str, str]:
    """How a frontend process imports ``policies`` (module, class, and the folder the
    module is in: a test's own module is not on the process's path)."""
    module = sys.modules[policies.__module__]
    folder = os.path.dirname(os.path.abspath(module.__file__ or os.curdir))
    return {"module": policies.__module__, "name": policies.__qualname__, "path": folder}


class AgentError(RuntimeError):
    """A frontend process refused a command, or went away before answering it."""


class RequestEnded(Exception):
    """A frontend request ended in a failure, in the frontend's process; ``kind``
    names the exception there (Disconnected, CommClosed...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class FrontendProcess:
    """One forked frontend: ``pid``, and ``channel``, its stdin and stdout."""

    def __init__(self, pid: int, channel: socket.socket, sink: TraceSink = discard) -> None:
        self.pid = pid
        self._channel = channel
        self.sink = sink
        self.frozen = False
        self._lock = threading.Condition()
        self._next = 0
        self._answers: dict[int, Future[Any]] = {}
        self._outcomes: dict[int, Future[Any]] = {}
        self._held: set[int] = set()
        self._seen: set[int] = set()
        self._replies_held = 0
        self._ready: Future[None] = Future()
        self._gone = False
        self._reader = threading.Thread(
            target=self._read, name=f"commspec-agent-{self.pid}", daemon=True
        )
        self._reader.start()

    # -- commands --------------------------------------------------------------

    def wait_ready(self, timeout: float = ANSWER_TIMEOUT) -> None:
        self._ready.result(timeout)

    def call(self, op: str, **args: Any) -> Any:
        """Send one command and wait for its answer."""
        future, _ = self._send(op, args, outcome=False)
        try:
            return future.result(ANSWER_TIMEOUT)
        except TimeoutError:
            raise AgentError(f"frontend process {self.pid}: no answer to {op}") from None

    def connect(self, connection: ConnectionInfo, session_id: str,
                options: FrontendOptions | None = None,
                targets: Sequence[str] = (),
                policies: type[FrontendPolicies] = FrontendPolicies) -> str:
        """Make the process's FrontendEndpoint (its trace name is returned); comms the
        kernel opens for ``targets`` are accepted and served. ``policies``: the
        frontend's reconcile rules, a broken variant's or the reference ones."""
        extra = ({} if policies is FrontendPolicies
                 else {"policies": policies_spec(policies)})
        name: str = self.call("connect", connection=connection.to_dict(),
                              session_id=session_id,
                              options=asdict(options or FrontendOptions()),
                              targets=list(targets), **extra)
        return name

    def request(self, comm_id: str, method: str, params: Any) -> Future[Any]:
        """A comm request sent by the frontend; the future ends when it ends there."""
        answered, outcome = self._send(
            "request", {"comm_id": comm_id, "method": method, "params": params}, outcome=True
        )
        answered.result(ANSWER_TIMEOUT)
        assert outcome is not None
        return outcome

    def wait_held(self, slot: int, timeout: float) -> bool:
        """True once the frontend holds its answer to the kernel request of ``slot``."""
        with self._lock:
            return self._lock.wait_for(lambda: slot in self._held or self._gone, timeout) and (
                slot in self._held
            )

    def wait_seen(self, slot: int, timeout: float) -> bool:
        """True once the frontend has handled the IOPub kernel request of ``slot``."""
        with self._lock:
            return self._lock.wait_for(lambda: slot in self._seen or self._gone, timeout) and (
                slot in self._seen
            )

    @property
    def replies_held(self) -> int:
        """How many comm_info replies the process has held back (``hold_replies``)."""
        with self._lock:
            return self._replies_held

    def wait_reply_held(self, before: int, timeout: float) -> bool:
        """True once more than ``before`` comm_info replies have been held back."""
        with self._lock:
            return self._lock.wait_for(lambda: self._replies_held > before or self._gone,
                                       timeout) and self._replies_held > before

    def _send(
        self, op: str, args: dict[str, Any], outcome: bool
    ) -> tuple[Future[Any], Future[Any] | None]:
        answer: Future[Any] = Future()
        ended: Future[Any] | None = Future() if outcome else None
        with self._lock:
            if self._gone:
                raise AgentError(f"frontend process {self.pid} has gone")
            n = self._next
            self._next += 1
            self._answers[n] = answer
            if ended is not None:
                self._outcomes[n] = ended
        try:
            self._channel.sendall((json.dumps({"id": n, "op": op, **args}) + "\n").encode())
        except OSError as e:
            raise AgentError(f"frontend process {self.pid} has gone: {e}") from e
        return answer, ended

    # -- signals ---------------------------------------------------------------

    @property
    def gone(self) -> bool:
        """The process has ended (its end of the channel closed)."""
        with self._lock:
            return self._gone

    def _wait_gone(self) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self._gone, ANSWER_TIMEOUT):
                raise AgentError(f"frontend process {self.pid} did not end")

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if not self.gone:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended on its own meanwhile
        self._wait_gone()
        self.frozen = False

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.frozen = False

    def exit(self) -> None:
        """A clean exit: the frontend closes its session, then the process ends."""
        self.call("exit")
        self._wait_gone()

    def close(self) -> None:
        """End the process whatever its state (resumed first if frozen), join the reader."""
        try:
            if not self.gone:
                if self.frozen:
                    self.resume()
                self.kill()
        finally:
            try:
                self._channel.shutdown(socket.SHUT_RDWR)  # wakes the reader, if still reading
            except OSError:
                pass  # already disconnected
            self._channel.close()
            self._reader.join(ANSWER_TIMEOUT)

    # -- the reader thread ---------------------------------------------------------

    def _read(self) -> None:
        try:
            for line in self._channel.makefile("r", encoding="utf-8"):
                self._line(json.loads(line))
        except (ValueError, OSError):
            pass  # a torn last line from a killed process, or our own close
        finally:
            with self._lock:
                self._gone = True
                pending = [*self._answers.values(), *self._outcomes.values()]
                self._answers.clear()
                self._outcomes.clear()
                self._lock.notify_all()
            gone = AgentError(f"frontend process {self.pid} has gone")
            for future in pending:
                if not future.done():
                    future.set_exception(gone)
            if not self._ready.done():
                self._ready.set_exception(gone)

    def _line(self, line: dict[str, Any]) -> None:
        if "trace" in line:
            self.sink(TraceEvent.from_json(line["trace"]))
        elif "outcome" in line:
            with self._lock:
                future = self._outcomes.pop(int(line["outcome"]))
            if "error" in line:
                future.set_exception(RequestEnded(str(line["error"])))
            else:
                future.set_result(True)
        elif "held" in line:
            with self._lock:
                self._held.add(int(line["held"]))
                self._lock.notify_all()
        elif "seen" in line:
            with self._lock:
                self._seen.add(int(line["seen"]))
                self._lock.notify_all()
        elif "reply_held" in line:
            with self._lock:
                self._replies_held += 1
                self._lock.notify_all()
        elif "ready" in line:
            self._ready.set_result(None)
        else:
            with self._lock:
                answer = self._answers.pop(int(line["id"]))
            if "error" in line:
                answer.set_exception(AgentError(str(line["error"])))
            else:
                answer.set_result(line.get("ok"))


class FrontendPool:
    """Frontend processes, forked by one zygote process this pool starts."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self._control = ours
        self._lock = threading.Lock()
        self._forked: list[FrontendProcess] = []
        self._closed = False
        try:
            self._zygote = subprocess.Popen(
                [sys.executable, "-m", "commspec.mbt.agent", "--zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()

    @property
    def pid(self) -> int:
        """The zygote's."""
        return self._zygote.pid

    def take(self, sink: TraceSink) -> FrontendProcess:
        """A new frontend process, ready for ``connect``, tracing to ``sink``."""
        with self._lock:
            if self._closed:
                raise AgentError("the pool is closed")
            self._control.settimeout(ANSWER_TIMEOUT)
            try:
                self._control.sendall(b"fork\n")
                data, fds, _, _ = socket.recv_fds(self._control, 64, 1)
            except OSError as e:
                raise AgentError(f"the frontend zygote failed: {e}") from e
            if not fds:
                raise AgentError("the frontend zygote has gone")
            proc = FrontendProcess(int(data), socket.socket(fileno=fds[0]), sink)
            self._forked.append(proc)
        proc.wait_ready()
        return proc

    def release(self, procs: list[FrontendProcess]) -> None:
        """End processes taken from the pool (a harness is done with them)."""
        try:
            for proc in procs:
                proc.close()
        finally:
            with self._lock:
                self._forked = [p for p in self._forked if p not in procs]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs, self._forked = self._forked, []
        errors: list[BaseException] = []
        for proc in procs:
            try:
                proc.close()
            except Exception as e:  # every process is ended before reporting
                errors.append(e)
        self._control.close()  # the zygote ends at the end of its input
        try:
            self._zygote.wait(ANSWER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._zygote.kill()
            self._zygote.wait()
        if errors:
            raise errors[0]

    def __enter__(self) -> FrontendPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
