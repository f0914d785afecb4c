"""The application side of a frontend: Comm objects, targets, futures, stdin answers.

The protocol core (``commspec.impl.core.frontend``) decides; this module carries
out what it decides for application code and turns application calls into
core inputs, through a :class:`~commspec.impl.kernel.application.CoreRunner`:
- ``CommOpened`` (a kernel-opened or adopted comm) runs the target's handler
  on a new :class:`Comm`; ``CommData`` runs the comm's handlers, whose answer
  goes back as ``Answer``; ``CommLost``/``CommClosed`` run its handlers.
- ``RequestEnded``, ``CallEnded`` and ``CommsAdopted`` complete futures.
- ``StdinArrived`` is answered by the stdin handlers (``stdin.py``), now or later.
- ``IopubSeen`` goes to the observers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from commspec.impl.application import Application
from commspec.impl.comm import Comm, check_json
from commspec.impl.core.events import (
    AdoptComms,
    AnswerStdin,
    CallEnded,
    CallKernel,
    Channel,
    CloseComm,
    CommData,
    CommOpened,
    CommsAdopted,
    IopubSeen,
    Message,
    OpenComm,
    RegisterTarget,
    SendCommData,
    StartRequest,
    StdinArrived,
)
from commspec.impl.core.frontend import FrontendProtocol
from commspec.impl.errors import EndpointClosed, KernelCallFailed
from commspec.impl.runner import CoreRunner

from .stdin import StdinAnswers

__all__ = ["CommOpenHandler", "FrontendApplication"]

log = logging.getLogger("commspec.frontend")

CommOpenHandler = Callable[[Comm, Any], None]
JsonDict = dict[str, Any]


class FrontendApplication(Application):
    def __init__(self, core: FrontendProtocol, runner: CoreRunner) -> None:
        super().__init__(core, runner, self, log)
        self.core = core
        self.targets: dict[str, CommOpenHandler] = {}
        self.stdin = StdinAnswers()
        self.observers: list[Callable[[Message], None]] = []
        self._calls: dict[str, tuple[str, Future[Message]]] = {}
        self._adoptions: dict[str, Future[list[Comm]]] = {}
        self.effects.update({
            CommOpened: self._comm_opened,
            CommData: self._comm_data,
            CallEnded: self._call_ended,
            CommsAdopted: self._comms_adopted,
            StdinArrived: self._stdin_arrived,
            IopubSeen: self._iopub_seen,
        })

    # -- carrying out the core's effects (the core's thread) ---------------------------



    def _comm_opened(self, effect: CommOpened) -> None:
        comm = self.new_comm(effect.comm_id, effect.target_name, effect.persistent)
        handler = self.targets.get(effect.target_name)
        if handler is not None:
            _guarded(f"the handler of target {effect.target_name!r}",
                     functools.partial(handler, comm, effect.data))

    def _comm_data(self, effect: CommData) -> None:
        comm = self.comms.get(effect.comm_id)
        if comm is None:  # pragma: no cover - the core only sends data for comms it holds
            raise LookupError(f"no comm {effect.comm_id} for its data")
        comm.handle_data(effect.data, self.channel(effect))





    def _call_ended(self, effect: CallEnded) -> None:
        entry = self._calls.pop(effect.msg_id, None)
        if entry is None:
            return
        msg_type, future = entry
        if effect.reply is not None:
            future.set_result(effect.reply)
        else:
            future.set_exception(KernelCallFailed(effect.msg_id, msg_type, effect.failure))

    def _comms_adopted(self, effect: CommsAdopted) -> None:
        future = self._adoptions.pop(effect.msg_id, None)
        if future is None:
            return
        if effect.failure:
            future.set_exception(KernelCallFailed(effect.msg_id, "comm_info_request",
                                                  effect.failure))
        else:
            future.set_result([self.comms[i] for i in effect.comm_ids if i in self.comms])

    def _stdin_arrived(self, effect: StdinArrived) -> None:
        def send(reply_type: str, content: JsonDict) -> None:
            try:
                self.runner.submit(AnswerStdin(effect.request, effect.link, reply_type,
                                               content))
            except EndpointClosed:
                log.debug("frontend closed: a stdin answer was dropped")

        self.stdin.answer(effect.request, send)

    def _iopub_seen(self, effect: IopubSeen) -> None:
        for observer in self.observers:
            _guarded("an IOPub observer", functools.partial(observer, effect.msg))

    # -- application calls (any thread) ----------------------------------------------

    def open_comm(self, target_name: str, data: Any, persistent: bool) -> Comm:
        check_json(data)
        comm_id = self.runner.new_msg_id()
        comm = self.new_comm(comm_id, target_name, persistent)
        try:
            self.runner.call(OpenComm(comm_id, target_name, data, persistent))
        except BaseException:
            self.comms.pop(comm_id, None)
            raise
        return comm

    def register_target(self, target_name: str, handler: CommOpenHandler) -> None:
        self.targets[target_name] = handler
        self.runner.call(RegisterTarget(target_name))

    def adopt_comms(self, target_name: str | None) -> Future[list[Comm]]:
        future: Future[list[Comm]] = Future()
        msg_id = self.runner.new_msg_id()
        self._adoptions[msg_id] = future
        self.runner.call(AdoptComms(msg_id, target_name))
        return future

    def kernel_request(self, msg_type: str, content: JsonDict,
                       channel: Channel) -> Future[Message]:
        future: Future[Message] = Future()
        msg_id = self.runner.new_msg_id()
        self._calls[msg_id] = (msg_type, future)
        try:
            self.runner.call(CallKernel(msg_id, msg_type, content, channel))
        except BaseException:
            self._calls.pop(msg_id, None)
            raise
        return future

    # -- CommTransport (any thread) -----------------------------------------------------

    def comm_send(self, comm: Comm, data: JsonDict, buffers: Sequence[bytes] | None = None
                  ) -> None:
        check_json(data)
        self.runner.call(SendCommData(comm.comm_id, data, tuple(buffers or ())))

    def comm_request(self, comm: Comm, method: str, params: Any = None,
                     timeout: float | None = None) -> Future[Any]:
        """The future at once; the request goes out (or is held, or fails) in order with
        the rest of this thread's calls, without waiting for the I/O thread."""
        check_json(params)
        msg_id, future = self.new_request()
        try:
            self.runner.submit(StartRequest(msg_id, comm.comm_id, method, params, timeout))
        except BaseException:
            self.forget_request(msg_id)
            raise
        return future

    def comm_close(self, comm: Comm, data: JsonDict | None = None) -> None:
        self.runner.call(CloseComm(comm.comm_id, data))


def _guarded(what: str, fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        log.exception("frontend: %s failed", what)
