"""Comm targets: what a kernel does when a frontend opens a comm, and the demo targets.

A target is a name, a factory and a kind (persistent or default). When a
comm_open for the name arrives, the kernel makes the Comm and calls
``factory(comm, open_data, kernel)``; the factory registers the comm's
handlers. An open for a name no registry knows is refused with comm_close.

Registries chain: each kernel has its own, which falls back to the
module-level default one that ``register_target`` fills.

The demo targets ``commspec.echo`` (default) and ``commspec.echo.persistent``
(persistent) answer:
- ``echo``: returns its params;
- ``sleep`` ``{"seconds": s}``: answers ``{"slept": s}`` after s seconds, from a
  kernel timer: nothing blocks meanwhile;
- ``call_frontend`` ``{"method", "params"}``: the kernel asks the frontend the same
  question on this comm and answers with the frontend's result, or with its own
  request's failure as a JSON-RPC error (the code registered for its outcome,
  :data:`commspec.model.messages.FAILURE_CODES`);
- ``ask_stdin`` ``{"prompt"}`` or ``{"method", "params"}``: the kernel sends an
  ``input_request`` (or ark's ``rpc_request``) on stdin to the frontend that
  made this request, and answers with the reply.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from commspec.model.messages import FAILURE_CODES

from .comm import INTERNAL_ERROR, Comm, Deferred
from .errors import RemoteError, RequestFailed

__all__ = [
    "DEFAULT_TARGETS",
    "ECHO",
    "ECHO_PERSISTENT",
    "KernelServices",
    "Target",
    "TargetFactory",
    "TargetRegistry",
    "register_target",
]

ECHO = "commspec.echo"
ECHO_PERSISTENT = "commspec.echo.persistent"



class Cancellable(Protocol):
    def cancel(self) -> None: ...


class KernelServices(Protocol):
    """What a target's handlers may ask of the kernel."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` on the I/O thread after ``delay`` seconds (thread-safe)."""

    def current_identity(self) -> bytes | None:
        """The identity of the frontend whose shell request is being handled."""

    def stdin_request(
        self, msg_type: str, content: dict[str, Any], identity: bytes | None = None
    ) -> Future[Any]:
        """Ask one frontend on stdin (default: the one whose request is current)."""


TargetFactory = Callable[[Comm, dict[str, Any], KernelServices], None]


@dataclass(frozen=True)
class Target:
    name: str
    factory: TargetFactory
    persistent: bool


class TargetRegistry:
    def __init__(self, parent: TargetRegistry | None = None) -> None:
        self._targets: dict[str, Target] = {}
        self._parent = parent
        self._lock = threading.Lock()

    def register(self, name: str, factory: TargetFactory, persistent: bool = False) -> Target:
        target = Target(name, factory, persistent)
        with self._lock:
            self._targets[name] = target
        return target

    def unregister(self, name: str) -> None:
        with self._lock:
            self._targets.pop(name, None)

    def get(self, name: str) -> Target | None:
        with self._lock:
            target = self._targets.get(name)
        if target is None and self._parent is not None:
            return self._parent.get(name)
        return target

    def kind(self, name: str) -> bool | None:
        """Whether the target is persistent; None if no registry here knows it."""
        target = self.get(name)
        return None if target is None else target.persistent

    def names(self) -> list[str]:
        with self._lock:
            own = set(self._targets)
        inherited = set(self._parent.names()) if self._parent is not None else set()
        return sorted(own | inherited)


DEFAULT_TARGETS = TargetRegistry()


def register_target(name: str, factory: TargetFactory, persistent: bool = False) -> Target:
    """Register a target in the default registry every kernel falls back to."""
    return DEFAULT_TARGETS.register(name, factory, persistent)


# -- the demo targets ---------------------------------------------------------------


def _settle_from(future: Future[Any], deferred: Deferred) -> None:
    """Complete ``deferred`` with what ``future`` ended in (a failure becomes an error)."""
    try:
        deferred.resolve(future.result())
    except RemoteError as e:
        deferred.reject(e.code, e.message)
    except RequestFailed as e:
        deferred.reject(FAILURE_CODES.get(e.state, INTERNAL_ERROR), str(e))
    except Exception as e:
        deferred.reject(INTERNAL_ERROR, f"{type(e).__name__}: {e}")


def echo_target(comm: Comm, open_data: dict[str, Any], kernel: KernelServices) -> None:
    @comm.on_request("echo")
    def echo(params: Any) -> Any:
        return params

    @comm.on_request("sleep")
    def sleep(params: Any) -> Deferred:
        seconds = float(params["seconds"])
        if not 0 <= seconds <= 3600:
            raise ValueError("seconds must be within [0, 3600]")
        deferred = Deferred()

        def wake() -> None:
            deferred.resolve({"slept": seconds})

        timer = kernel.call_later(seconds, wake)
        deferred.on_cancel(timer.cancel)
        return deferred

    @comm.on_request("call_frontend")
    def call_frontend(params: Any) -> Deferred:
        method = params["method"]
        if not isinstance(method, str):
            raise TypeError("method must be a string")
        timeout = params.get("timeout")
        deferred = Deferred()
        future = comm.request(method, params.get("params"), timeout=timeout)
        future.add_done_callback(lambda f: _settle_from(f, deferred))
        return deferred

    @comm.on_request("ask_stdin")
    def ask_stdin(params: Any) -> Deferred:
        params = params or {}
        if "method" in params:
            # ark's shape (SPEC.md, "Message formats"): {method, params}
            future = kernel.stdin_request(
                "rpc_request", {"method": params["method"], "params": params.get("params")}
            )
        else:
            future = kernel.stdin_request(
                "input_request", {"prompt": str(params.get("prompt", "")), "password": False}
            )
        deferred = Deferred()
        future.add_done_callback(lambda f: _settle_from(f, deferred))
        return deferred


register_target(ECHO, echo_target)
register_target(ECHO_PERSISTENT, echo_target, persistent=True)
