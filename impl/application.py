"""What the kernel's and the frontend's application layers share.

The protocol cores decide; an application layer carries out what they decide for
application code: it keeps the :class:`~commspec.impl.comm.Comm` object of each
comm (whose state it reads from the core), turns a comm's lost and closed
effects into its handlers, answers an incoming request through an
:class:`~commspec.impl.comm.AnswerChannel` whose answer goes back to the core as
``Answer``, and completes each request's future from the ``RequestEnded`` the
core emits. Each side adds its own effects (``kernel/application.py``,
``frontend/application.py``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from .comm import NO_ANSWER, AnswerChannel, Comm, CommTransport, ReplyChannel
from .core.events import Answer, CommClosed, CommData, CommLost, Effect, RequestEnded
from .errors import EndpointClosed
from .runner import CoreRunner

__all__ = ["SETTLE_SLICE", "Application"]

#: how many futures one input settles at once; the rest are settled a slice per loop
#: round, so that a departure failing 10,000 requests (each future's callbacks are
#: application code) does not hold up every other frontend's messages meanwhile
SETTLE_SLICE = 128

JsonDict = dict[str, Any]


class _Core(Protocol):
    def comm_state(self, comm_id: str) -> Any: ...


class Application:
    def __init__(self, core: _Core, runner: CoreRunner, transport: CommTransport,
                 log: logging.Logger) -> None:
        self.runner = runner
        self._core = core
        self._transport = transport
        self._log = log
        #: the comms application code holds, by id (the core says which state each is in)
        self.comms: dict[str, Comm] = {}
        self._requests: dict[str, Future[Any]] = {}
        #: RequestEnded beyond the slice of the input that produced them, in order
        self._unsettled: deque[RequestEnded] = deque()
        self._settled_in_input = 0
        self.effects: dict[type, Callable[[Any], None]] = {
            CommLost: self._comm_lost,
            CommClosed: self._comm_closed,
            RequestEnded: self._request_ended,
        }

    def carry_out(self, effect: Effect) -> bool:
        """Do ``effect`` if it is the application's; False if it is not."""
        handler = self.effects.get(type(effect))
        if handler is None:
            return False
        handler(effect)
        return True

    def new_comm(self, comm_id: str, target_name: str, persistent: bool) -> Comm:
        comm = Comm(comm_id, target_name, persistent=persistent,
                    state=lambda: self._core.comm_state(comm_id), transport=self._transport)
        self.comms[comm_id] = comm
        return comm

    def new_request(self) -> tuple[str, Future[Any]]:
        """A msg_id for a request, and its future (running: its outcome comes from the
        machine, never from ``Future.cancel``)."""
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        msg_id = self.runner.new_msg_id()
        self._requests[msg_id] = future
        return msg_id, future

    def forget_request(self, msg_id: str) -> None:
        """A request that could not be handed to the core: nobody completes its future."""
        self._requests.pop(msg_id, None)

    def channel(self, effect: CommData) -> ReplyChannel:
        """Where the answer to ``effect``'s request goes (nowhere for a notification)."""
        if effect.exchange is None:
            return NO_ANSWER
        return AnswerChannel(self._answer, effect.exchange)

    def _answer(self, exchange: int, payload: JsonDict) -> None:
        try:
            self.runner.submit(Answer(exchange, payload))
        except EndpointClosed:
            # The endpoint stopped first: nobody is left to answer, and the handler's
            # thread must not fail because of it.
            self._log.info("an answer was dropped: the endpoint has stopped")

    def _comm_lost(self, effect: CommLost) -> None:
        comm = self.comms.get(effect.comm_id)
        if comm is not None:
            comm.handle_disconnected()

    def _comm_closed(self, effect: CommClosed) -> None:
        comm = self.comms.pop(effect.comm_id, None)
        if comm is not None:
            comm.handle_closed(effect.data if isinstance(effect.data, dict) else {})

    def input_done(self) -> None:
        """The runner has carried out all the effects of one input (and of those its
        handlers fed in turn): the next input settles a slice of its own."""
        self._settled_in_input = 0

    def _request_ended(self, effect: RequestEnded) -> None:
        if self._unsettled or self._settled_in_input >= SETTLE_SLICE:
            self._unsettled.append(effect)
            if len(self._unsettled) == 1:
                self.runner.call_later(0.0, self._settle_slice)
            return
        self._settled_in_input += 1
        self._settle(effect)

    def _settle_slice(self) -> None:
        unsettled = self._unsettled
        for _ in range(min(SETTLE_SLICE, len(unsettled))):
            self._settle(unsettled[0])
            unsettled.popleft()  # after: a RequestEnded its callbacks cause queues behind
        if unsettled:
            self.runner.call_later(0.0, self._settle_slice)

    def _settle(self, effect: RequestEnded) -> None:
        future = self._requests.pop(effect.msg_id, None)
        if future is None:
            return
        if effect.error is None:
            future.set_result(effect.result)
        else:
            future.set_exception(effect.error)
