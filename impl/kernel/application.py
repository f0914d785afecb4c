"""The application side of a kernel: Comm objects, targets, futures, handlers.

The protocol core (``commspec.impl.core.kernel``) decides; this module carries
out what it decides for application code, and turns application calls into
core inputs:
- ``CommOpened`` runs the target's factory on a new :class:`Comm`; a factory
  that raises closes the comm again.
- ``CommData`` runs the comm's handlers; their answer (now, or later from any
  thread through a Deferred) goes back as ``Answer``.
- ``CommLost`` / ``CommClosed`` run disconnect and close handlers;
  ``RequestEnded`` completes the request's future.
- ``Comm.send/request/close``, ``open_comm`` and ``stdin_request`` become
  inputs, handed to the runner: at once on the core's thread, else posted.

While a handler runs, the request it serves is *current*: a comm the handler
opens belongs to that request's frontend, and what it sends is parented to it.
It is the same code whether the core runs over sockets (``KernelEndpoint``) or
in the model-based tests' simulation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..application import Application
from ..comm import Comm, check_json
from ..core.events import (
    CloseComm,
    CommData,
    CommOpened,
    Header,
    OpenComm,
    SendCommData,
    StartRequest,
    StartStdinRequest,
)
from ..core.kernel import KernelProtocol
from ..core.requests import STDIN_KINDS
from ..runner import CoreRunner
from ..targets import KernelServices, TargetRegistry

__all__ = ["KernelApplication"]

log = logging.getLogger("commspec.kernel")

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Current:
    identity: bytes | None
    header: Header


class KernelApplication(Application):
    def __init__(self, core: KernelProtocol, runner: CoreRunner, targets: TargetRegistry,
                 services: KernelServices) -> None:
        super().__init__(core, runner, self, log)
        self.core = core
        self.targets = targets
        self.services = services
        self.current: _Current | None = None
        self.effects.update({CommOpened: self._comm_opened, CommData: self._comm_data})

    # -- carrying out the core's effects (the core's thread) ---------------------------



    def _comm_opened(self, effect: CommOpened) -> None:
        target = self.targets.get(effect.target_name)
        comm = self.new_comm(effect.comm_id, effect.target_name, effect.persistent)
        current = _Current(effect.identity, effect.request["header"]) if effect.request else None
        try:
            if target is None:
                raise LookupError(f"target {effect.target_name!r} is gone from the registry")
            with self._serving(current):
                target.factory(comm, effect.data, self.services)
        except Exception as e:
            log.exception("kernel: target %r failed to set up comm %s",
                          effect.target_name, effect.comm_id)
            self.runner.submit(CloseComm(effect.comm_id, {"error": f"{type(e).__name__}: {e}"}))

    def _comm_data(self, effect: CommData) -> None:
        comm = self.comms.get(effect.comm_id)
        if comm is None:  # pragma: no cover - the core only sends data for comms it has
            raise LookupError(f"no comm {effect.comm_id} for its data")
        with self._serving(_Current(effect.identity, effect.request["header"])):
            comm.handle_data(effect.data, self.channel(effect))




    def _serving(self, current: _Current | None) -> _Serving:
        return _Serving(self, current)


    # -- the current request -----------------------------------------------------------

    def current_identity(self) -> bytes | None:
        """The frontend whose request a handler is serving (None off the core's thread)."""
        current = self.current if self.runner.in_core_thread() else None
        return current.identity if current is not None else None

    def current_header(self) -> Header | None:
        current = self.current if self.runner.in_core_thread() else None
        return current.header if current is not None else None

    # -- application calls (any thread) ----------------------------------------------

    def open_comm(self, target_name: str, data: JsonDict | None, *, persistent: bool,
                  comm_id: str | None, owner: bytes | None) -> Comm:
        check_json(data)
        comm_id = comm_id or self.runner.new_msg_id()
        owner = owner if owner is not None else self.current_identity()
        if comm_id in self.comms:
            raise ValueError(f"comm id {comm_id} is already in use")
        # Made first: the frontend may answer the comm_open before this call returns.
        comm = self.new_comm(comm_id, target_name, persistent)
        try:
            self.runner.call(OpenComm(comm_id, target_name, data or {}, persistent, owner,
                                      self.current_header()))
        except BaseException:
            self.comms.pop(comm_id, None)
            raise
        return comm

    def comm_send(self, comm: Comm, data: JsonDict, buffers: Sequence[bytes] | None) -> None:
        check_json(data)
        self.runner.submit(SendCommData(comm.comm_id, data, tuple(buffers or ()),
                                        self.current_header()))

    def comm_request(self, comm: Comm, method: str, params: Any,
                     timeout: float | None) -> Future[Any]:
        check_json(params)
        msg_id, future = self.new_request()
        try:
            self.runner.submit(StartRequest(msg_id, comm.comm_id, method, params, timeout,
                                            self.current_header()))
        except BaseException:
            self.forget_request(msg_id)
            raise
        return future

    def comm_close(self, comm: Comm, data: JsonDict | None) -> None:
        self.runner.submit(CloseComm(comm.comm_id, data or {}))

    def stdin_request(self, msg_type: str, content: JsonDict, identity: bytes | None = None,
                      parent: Header | None = None) -> Future[Any]:
        """``parent``: the header it answers to (default: the current request's)."""
        if msg_type not in STDIN_KINDS:
            raise ValueError(f"not a stdin request: {msg_type!r}")
        check_json(content)
        target = identity or self.current_identity() or self.core.last_sender
        if target is None:
            raise ValueError("no frontend to address the stdin request to")
        msg_id, future = self.new_request()
        self.runner.submit(StartStdinRequest(msg_id, msg_type, content, target,
                                             parent or self.current_header()))
        return future


class _Serving:
    """While a handler runs: the request it serves is current (nested: restored after)."""

    __slots__ = ("_app", "_current", "_previous")

    def __init__(self, app: KernelApplication, current: _Current | None) -> None:
        self._app = app
        self._current = current
        self._previous: _Current | None = None

    def __enter__(self) -> None:
        self._previous, self._app.current = self._app.current, self._current

    def __exit__(self, *exc: object) -> None:
        self._app.current = self._previous
