"""A frontend in a process of its own, for the checks in which a frontend goes away.

Rules:
- ``python -m commspec.conform.peer`` holds one :class:`~.client.Client` (raw sockets
  signed by jupyter_client's Session, so it works against any kernel). It is driven by
  JSON lines on its stdin, one command each (``{"id", "op", ...}``), and answers each
  with one JSON line on stdout: ``{"id", "ok": true, ...}`` or ``{"id", "ok": false,
  "error"}``, with the lines its client logged since the last answer (the check's
  evidence). Every wait in it is bounded by the timeout its command gives.
- It dies as a frontend dies: SIGKILL, SIGSTOP (frozen, its sockets silent), or a clean
  close of its sockets (``close``, or ``answer_and_close``: it answers the kernel's
  request, flushes that answer and leaves at once; then it exits). ``drop`` closes its
  sockets and ``reconnect`` opens new ones with the same session id, as a frontend
  whose link came back does; after a SIGSTOP and SIGCONT, ``rejoin`` waits until the
  kernel hears the same sockets again.
- The parent's :class:`PeerProcess` signals and ends it by its own pid only: SIGCONT
  first if it was stopped, then SIGKILL; it is reaped and its pipes closed. A child
  whose parent went away reads the end of its stdin and exits.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO, Any, cast

from .client import Client, IopubMode, Message
from .context import CheckContext

__all__ = ["PeerError", "PeerProcess", "start_peer"]

#: what a command may take beyond its own timeout (the child's bookkeeping)
MARGIN = 5.0
STDIN_REQUESTS = ("input_request", "rpc_request")


class PeerError(RuntimeError):
    """A child frontend refused a command, failed it, or went away before answering."""

    def __init__(self, name: str, op: str, why: str) -> None:
        super().__init__(f"{name}: {op}: {why}")
        self.name = name
        self.op = op
        self.why = why


# -- the parent's side ----------------------------------------------------------------


class PeerProcess:
    """One child frontend; ``log`` holds what its client sent and received."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self.name = name
        self.process = process
        self.log: list[str] = []
        self._stderr = stderr
        self._next = 0
        self.stopped = False

    @classmethod
    def start(cls, name: str) -> PeerProcess:
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen([sys.executable, "-m", "commspec.conform.peer"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=stderr)
        return cls(name, process, stderr)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"<frontend process {self.name} pid {self.pid}>"

    def call(self, op: str, timeout: float, **args: Any) -> dict[str, Any]:
        """Send one command and return its answer (PeerError if it failed, or none came
        within ``timeout`` and a margin)."""
        n = self._next
        self._next += 1
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps({"id": n, "op": op, "timeout": timeout, **args})
                         + "\n").encode())
            stdin.flush()
        except OSError as e:
            raise PeerError(self.name, op, f"the process has gone ({e})") from None
        answer = self._read_answer(op, timeout + MARGIN)
        self.log.extend(str(line) for line in answer.get("log", []))
        if answer.get("id") != n:
            raise PeerError(self.name, op, f"answered {answer!r} out of turn")
        if not answer.get("ok"):
            raise PeerError(self.name, op, str(answer.get("error")))
        return answer

    def _read_answer(self, op: str, timeout: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise PeerError(self.name, op, f"no answer within {timeout:g} s")
        line = stdout.readline()
        if not line:
            raise PeerError(self.name, op, f"the process exited (code {self.process.poll()})"
                            f"{self._stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
        return f": {' | '.join(tail)}" if tail else ""

    # -- how it goes away ---------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL, and wait until it is reaped: its sockets are gone with it."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.append(f"{self.name}: SIGKILLed (pid {self.pid})")

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)
        self.stopped = True
        self.log.append(f"{self.name}: SIGSTOPped (pid {self.pid})")

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.stopped = False
        self.log.append(f"{self.name}: SIGCONTinued (pid {self.pid})")

    def _signal(self, signum: int) -> None:
        if self.process.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass  # it ended meanwhile; wait() reaps it

    def end(self) -> None:
        """Continue it if stopped, SIGKILL it, reap it, close its pipes."""
        try:
            if self.process.poll() is None:
                self._signal(signal.SIGCONT)
                self._signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            for stream in (self.process.stdin, self.process.stdout, self._stderr):
                if stream is not None:
                    stream.close()


def start_peer(ctx: CheckContext, name: str, iopub: IopubMode = "stock") -> PeerProcess:
    """A child frontend connected to the check's kernel and heard on IOPub; the check's
    context ends it when the check ends, however it ends."""
    peer = PeerProcess.start(name)
    peer.log = ctx.journal  # its lines join the check's, in the order they come back
    ctx.track(peer)
    info = {k: v.decode() if isinstance(v, bytes) else v for k, v in ctx.kernel.info.items()}
    peer.call("connect", ctx.timeouts.start, info=info, iopub=iopub, name=name)
    return peer


# -- the child's side -------------------------------------------------------------------


class _Frontend:
    """What the child does for each command; ``client`` is None until ``connect``."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.shown = 0
        self.settings: dict[str, Any] = {}
        #: comm id -> the last kernel request seen on it (what ``answer_and_close`` answers)
        self.kernel_requests: dict[str, Message] = {}

    def held(self) -> Client:
        if self.client is None:
            raise RuntimeError("not connected (connect first, or it was dropped)")
        return self.client

    def new_log(self) -> list[str]:
        if self.client is None:
            return []
        lines = self.client.log[self.shown:]
        self.shown = len(self.client.log)
        return lines

    def _connect_client(self, timeout: float, session_id: str | None) -> dict[str, Any]:
        s = self.settings
        self.client = Client(s["info"], iopub=cast(IopubMode, s["iopub"]), name=s["name"],
                             session_id=session_id)
        self.shown = 0
        if self.client.iopub_mode != "none" and not self.client.wait_heard(timeout):
            raise TimeoutError(f"no IOPub message within {timeout:g} s")
        return {"session": self.client.session.session}

    # -- commands -------------------------------------------------------------

    def connect(self, timeout: float, info: dict[str, Any], iopub: str,
                name: str) -> dict[str, Any]:
        self.settings = {"info": info, "iopub": iopub, "name": name}
        return self._connect_client(timeout, None)

    def open(self, timeout: float, target: str) -> dict[str, Any]:
        client = self.held()
        comm_id, opened = client.open_comm(target)
        client.idle_of(opened, timeout)
        return {"comm_id": comm_id}

    def request(self, timeout: float, comm_id: str, method: str,
                params: Any = None) -> dict[str, Any]:
        client = self.held()
        reply = client.rpc_reply(client.rpc(comm_id, method, params), timeout)
        return {"data": reply["content"]["data"]}

    def send_request(self, timeout: float, comm_id: str, method: str,
                     params: Any = None) -> dict[str, Any]:
        return {"msg_id": self.held().rpc(comm_id, method, params)["header"]["msg_id"]}

    def notify(self, timeout: float, comm_id: str, method: str) -> dict[str, Any]:
        self.held().send("shell", "comm_msg", {"comm_id": comm_id,
                                               "data": {"jsonrpc": "2.0", "method": method}})
        return {}

    def execute(self, timeout: float, code: str, allow_stdin: bool) -> dict[str, Any]:
        msg = self.held().send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {},
            "allow_stdin": allow_stdin})
        return {"msg_id": msg["header"]["msg_id"]}

    def wait_stdin(self, timeout: float) -> dict[str, Any]:
        msg = self.held().wait("stdin", lambda m: m["msg_type"] in STDIN_REQUESTS, timeout,
                               "input_request or rpc_request")
        return {"msg_type": msg["msg_type"], "content": msg["content"]}

    def wait_kernel_request(self, timeout: float, comm_id: str) -> dict[str, Any]:
        def is_request(m: Message) -> bool:
            data = m["content"].get("data")
            return bool(m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == comm_id
                        and isinstance(data, dict) and "method" in data and "id" in data
                        and not {"result", "error"} & data.keys())

        msg = self.held().iopub(is_request, timeout, "kernel request on the comm")
        self.kernel_requests[comm_id] = msg
        return {"data": msg["content"]["data"]}

    def answer_and_close(self, timeout: float, comm_id: str, result: Any) -> dict[str, Any]:
        """Answer the kernel's last request on ``comm_id`` and leave at once: the answer
        is flushed to the kernel's shell before the sockets close (the drain rule's
        race), then the process exits."""
        client = self.held()
        request = self.kernel_requests[comm_id]
        client.send("shell", "comm_msg", {"comm_id": comm_id, "data": {
            "jsonrpc": "2.0", "id": request["content"]["data"]["id"], "result": result}},
            parent=request)
        client.sockets.pop("shell").close(linger=int(timeout * 1000))
        client.close()  # the context's term waits for the answer to be written
        client.log.append(f"{client.name}: answered and closed its sockets, exiting")
        return {}

    def comm_info(self, timeout: float) -> dict[str, Any]:
        return {"comms": self.held().comm_info(timeout)}

    def drop(self, timeout: float) -> dict[str, Any]:
        client = self.held()
        client.close()
        client.log.append(f"{client.name}: closed its sockets (session kept)")
        return {}

    def reconnect(self, timeout: float) -> dict[str, Any]:
        old = self.held()
        if old.sockets:
            raise RuntimeError("still connected: drop first")
        lines = old.log[self.shown:]
        answer = self._connect_client(timeout, old.session.session)
        assert self.client is not None
        self.client.log[:0] = [*lines, f"{self.client.name}: new sockets, same session"]
        return answer

    def forget_iopub(self, timeout: float) -> dict[str, Any]:
        """Drop what IOPub holds now, so that a later wait sees only what comes after."""
        return {"dropped": len(self.held().drain_iopub())}

    def rejoin(self, timeout: float) -> dict[str, Any]:
        """After a freeze: wait until the kernel hears this client's IOPub again (libzmq
        reconnects and re-subscribes the same sockets by itself)."""
        if not self.held().wait_heard(timeout):
            raise TimeoutError(f"no IOPub message within {timeout:g} s")
        return {}

    def close(self, timeout: float) -> dict[str, Any]:
        client = self.held()
        client.close()
        client.log.append(f"{client.name}: closed its sockets cleanly, exiting")
        return {}


def main() -> int:
    frontend = _Frontend()
    commands: dict[str, Callable[..., dict[str, Any]]] = {
        name: getattr(frontend, name) for name in (
            "connect", "open", "request", "send_request", "notify", "execute", "wait_stdin",
            "wait_kernel_request", "answer_and_close", "comm_info", "drop", "reconnect",
            "forget_iopub", "rejoin", "close")}
    for line in sys.stdin:
        command = json.loads(line)
        n, op = command.pop("id"), command.pop("op")
        try:
            answer = {"ok": True, **commands[op](**command)}
        except Exception as e:  # told to the parent, which decides what it means
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps({"id": n, **answer, "log": frontend.new_log()}), flush=True)
        if op in ("close", "answer_and_close") and answer["ok"]:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
