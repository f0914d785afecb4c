"""The application side of commspec inside ipykernel: commspec's comms and the
``comm`` package's, both carried by the one protocol core.

Rules:
- A comm whose target is in commspec's registry (``register_target``) is the
  reference kernel's :class:`~commspec.impl.comm.Comm`, handled by the reference
  kernel's application code (``KernelApplication``), unchanged.
- Every other comm is the ``comm`` package's (ipywidgets, and any library written
  on ``comm``): a :class:`PackageComm` that ipykernel's comm manager keeps, with
  the package's callbacks (``on_msg``, ``on_close``) and its conventions (a target
  is ``f(comm, open_msg)``; ``close()`` runs no callback of one's own). Its
  messages still go through the core, so the disconnection policy applies to it:
  a target named in ``persistent_comm_targets`` (``jupyter.widget`` by default) is
  persistent (detached when its owner leaves, re-attached when it is back), any
  other is default (closed, its ``on_close`` callback run as the cleanup).
- A JSON-RPC request on a package comm is answered by the comm's own ``send`` of a
  reply carrying the request's ``id``: that send becomes the request's answer (and
  its idle follows), as the reference kernel's answer does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import comm as comm_package
from comm.base_comm import BaseComm

from commspec.impl.core.events import (
    Answer,
    CloseComm,
    CommClosed,
    CommData,
    CommLost,
    CommOpened,
    Header,
    OpenComm,
    SendCommData,
)
from commspec.impl.core.jsonrpc import MessageKind, classify
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.errors import NoFrontend
from commspec.impl.kernel.application import KernelApplication, _Current
from commspec.impl.targets import TargetRegistry

if TYPE_CHECKING:
    from .bridge import KernelBridge

__all__ = ["IPyKernelApplication", "PackageComm", "PackageComms"]

log = logging.getLogger("commspec.ipykernel")

JsonDict = dict[str, Any]


class PackageComms:
    """Which ``comm`` package targets exist (ipykernel's comm manager) and their kind."""

    def __init__(self, persistent_targets: frozenset[str]) -> None:
        self.persistent_targets = persistent_targets

    @staticmethod
    def manager() -> Any:
        return comm_package.get_comm_manager()

    def kind(self, target_name: str) -> bool | None:
        """Persistent?; None if no package target has the name."""
        if target_name not in self.manager().targets:
            return None
        return target_name in self.persistent_targets


class PackageComm(BaseComm):
    """A ``comm`` package comm whose messages the protocol core carries."""

    def __init__(self, *args: Any, app: IPyKernelApplication, **kwargs: Any) -> None:
        self._app = app
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type: str, data: JsonDict | None = None,
                    metadata: JsonDict | None = None, buffers: Sequence[Any] | None = None,
                    **keys: Any) -> None:
        from ipykernel.jsonutil import json_clean  # ipykernel's cleaning, as its comms do

        self._app.publish_package(self, msg_type, json_clean(data or {}),
                                  tuple(bytes(b) for b in buffers or ()))


class IPyKernelApplication(KernelApplication):
    def __init__(self, core: KernelProtocol, runner: KernelBridge, targets: TargetRegistry,
                 services: KernelBridge, package: PackageComms) -> None:
        super().__init__(core, runner, targets, services)
        self.bridge = runner
        self.package = package
        self.package_comms: dict[str, PackageComm] = {}
        #: (comm id, JSON-RPC id) -> exchange, of the requests on package comms unanswered
        self._package_requests: dict[tuple[str, Any], int] = {}
        self._lock = threading.Lock()

    def new_package_comm(self, *args: Any, **kwargs: Any) -> PackageComm:
        """``comm.create_comm`` in this kernel."""
        return PackageComm(*args, app=self, **kwargs)

    # -- the core's effects (main thread) ----------------------------------------------

    def _comm_opened(self, effect: CommOpened) -> None:
        if self.targets.get(effect.target_name) is not None:
            super()._comm_opened(effect)
            return
        manager = self.package.manager()
        target = manager.targets.get(effect.target_name)
        comm = PackageComm(comm_id=effect.comm_id, primary=False,
                           target_name=effect.target_name, app=self)
        manager.register_comm(comm)
        self.package_comms[effect.comm_id] = comm
        current = _Current(effect.identity, effect.request["header"]) if effect.request else None
        try:
            if target is None:
                raise LookupError(f"comm target {effect.target_name!r} was unregistered")
            with self._serving(current):
                target(comm, effect.request)
        except Exception as e:
            log.exception("commspec: comm target %r failed to set up comm %s",
                          effect.target_name, effect.comm_id)
            self._forget_package(effect.comm_id)
            self.runner.submit(CloseComm(effect.comm_id, {"error": f"{type(e).__name__}: {e}"}))

    def _comm_data(self, effect: CommData) -> None:
        comm = self.package_comms.get(effect.comm_id)
        if comm is None:
            super()._comm_data(effect)
            return
        if effect.exchange is not None:
            with self._lock:
                self._package_requests[(effect.comm_id, effect.data.get("id"))] = effect.exchange
        with self._serving(_Current(effect.identity, effect.request["header"])):
            try:
                comm.handle_msg(dict(effect.request))
            except Exception:
                log.exception("commspec: comm %s: its on_msg callback failed", effect.comm_id)

    def _comm_lost(self, effect: CommLost) -> None:
        if effect.comm_id not in self.package_comms:
            super()._comm_lost(effect)
        # a package comm has no callback for it: detached, it waits; default, it closes

    def _comm_closed(self, effect: CommClosed) -> None:
        comm = self._forget_package(effect.comm_id)
        if comm is None:
            super()._comm_closed(effect)
            return
        data = effect.data if isinstance(effect.data, dict) else {}
        msg = {"header": {}, "parent_header": {}, "metadata": {}, "buffers": [],
               "content": {"comm_id": effect.comm_id, "data": data}}
        try:
            comm.handle_close(msg)
        except Exception:
            log.exception("commspec: comm %s: its on_close callback failed", effect.comm_id)

    def _forget_package(self, comm_id: str, *, unregister: bool = True) -> PackageComm | None:
        comm = self.package_comms.pop(comm_id, None)
        if comm is None:
            return None
        comm._closed = True
        manager = self.package.manager()
        if unregister and manager.comms.get(comm_id) is comm:
            manager.unregister_comm(comm)
        with self._lock:
            for key in [k for k in self._package_requests if k[0] == comm_id]:
                del self._package_requests[key]
        return comm

    # -- a package comm's calls (any thread) ------------------------------------------

    def publish_package(self, comm: PackageComm, msg_type: str, data: JsonDict,
                        buffers: tuple[bytes, ...]) -> None:
        if msg_type == "comm_open":
            self._open_package(comm, data)
        elif msg_type == "comm_msg":
            self._send_package(comm, data, buffers)
        elif msg_type == "comm_close":
            # its own close: no callback of its own runs (the comm package's convention);
            # BaseComm.close unregisters it from the manager itself
            if self._forget_package(comm.comm_id, unregister=False) is not None:
                self.runner.submit(CloseComm(comm.comm_id, data))
        else:
            raise ValueError(f"a comm publishes comm_open, comm_msg or comm_close, "
                             f"not {msg_type!r}")

    def _open_package(self, comm: PackageComm, data: JsonDict) -> None:
        self.package_comms[comm.comm_id] = comm
        event = OpenComm(comm.comm_id, comm.target_name, data,
                         comm.target_name in self.package.persistent_targets,
                         self.bridge.kernel_caller(), self._parent())
        if not self.runner.in_core_thread():
            self.runner.submit(event)
            return
        try:
            self.runner.call(event)
        except NoFrontend as e:
            # a widget made with nobody listening must not fail the user's code: the
            # comm exists for the comm package, the core drops what it sends
            self.package_comms.pop(comm.comm_id, None)
            log.warning("commspec: comm %s (%s) opened with no frontend: %s", comm.comm_id,
                        comm.target_name, e)

    def _send_package(self, comm: PackageComm, data: JsonDict,
                      buffers: tuple[bytes, ...]) -> None:
        exchange = None
        if classify(data) is MessageKind.REPLY:
            with self._lock:
                exchange = self._package_requests.pop((comm.comm_id, data.get("id")), None)
        if exchange is not None:
            self.runner.submit(Answer(exchange, data))
        else:
            self.runner.submit(SendCommData(comm.comm_id, data, buffers, self._parent()))

    def _parent(self) -> Header | None:
        """What a package comm's message answers to: the request a handler serves, else
        the cell running (ipykernel's parent), else nothing."""
        header = self.current_header()
        if header is not None or not self.runner.in_core_thread():
            return header
        parent = self.bridge.kernel.get_parent()
        return parent.get("header") or None if isinstance(parent, dict) else None
