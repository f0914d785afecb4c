"""The kernel under test, as the model-based tests see it.

The harness (``commspec.mbt.harness``) drives a live kernel and live frontends
in lockstep with the system model. Frontends are always the reference
:class:`~commspec.impl.frontend.FrontendEndpoint`; the *kernel* is whatever an
adapter wraps, so another kernel (ark, ipykernel with the spec's rules, a
broken variant of the reference kernel) can be held against the same model by
writing one adapter. An adapter is a :class:`KernelAdapter`:

- ``start(sink)`` starts the kernel with every transition it takes reported to
  ``sink`` (a :data:`~commspec.model.trace.TraceSink`: the trace format of
  SPEC.md, with ``endpoint`` set to ``"kernel"``); ``stop()`` shuts it down
  (every comm closed, every request failed) and releases every socket, thread
  and file, and must be safe to call twice or after a failed start.
- ``connection_file``: the Jupyter connection file frontends connect with.
  The kernel must serve the demo targets ``commspec.echo`` (a default comm)
  and ``commspec.echo.persistent`` (a persistent comm), whose ``echo`` method
  returns its params.
- Actions the harness asks of the kernel itself (the model's kernel-side
  environment steps): ``open_comm(target, persistent, owner)`` returns the new comm's
  id (the comm is owned by the frontend whose session id is ``owner``, as if the
  kernel opened it while handling that frontend's request, and answers ``echo`` too);
  ``close_comm(comm_id)``;
  ``comm_request(comm_id, method, params)`` and ``stdin_request(identity)``
  return a ``concurrent.futures.Future`` that ends in exactly one outcome.
- ``keep_detached(n)``: optional, called before ``start``: keep at most ``n``
  detached comms (SPEC.md, *the detached bound*), the bound the model assumes. An
  adapter without it is tested only with bounds whose comms never exceed its own.
- ``hold_inbound()``: optional (not part of the protocol), for the drain rule's
  race. Hold the kernel's I/O until both an IOPub subscription change and a
  shell message are queued, so the kernel finds both when it looks. Return only
  once the hold is in place; the future is True once both were queued (False
  after a timeout). An adapter without it is
  still tested; the harness then skips the ``queued`` race.
- Observations the harness compares with the model, readable from any thread
  at any time (also after ``stop``): ``subscriber_count`` (frontends known to
  listen: one per live peer topic, or one while only peerless ones do) and
  ``late_replies`` (replies, comm and stdin, for requests that had already ended).

That is all the harness reads of an adapter (:data:`ADAPTER_NEEDS`, tested). Everything
else it compares (each request's outcome, each comm's state on each side, each session's
state) it reads from the trace, so a kernel that reports its transitions faithfully and
exposes these two numbers can be tested. :class:`ReferenceKernel` wraps
:class:`~commspec.impl.KernelEndpoint` (and offers more, ``comm_states()``,
``pending_count``..., which the reference-only scenarios of :mod:`.edges` read); the tests'
broken variants subclass it and replace one of its ``policies``. A kernel in another
process that writes commspec's trace and serves the control socket needs no adapter of
its own: :class:`~commspec.mbt.external.ExternalKernel`.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from commspec.impl.core.policies import KernelPolicies
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.model.trace import TraceSink

__all__ = ["ADAPTER_NEEDS", "ADAPTER_OPTIONAL", "MBT_HEARTBEAT", "KernelAdapter",
           "ReferenceKernel"]

#: ZMTP heartbeats of the kernel under test: short, so a departed peer is noticed fast
MBT_HEARTBEAT = HeartbeatSettings(interval=0.05, timeout=0.25)


@runtime_checkable
class KernelAdapter(Protocol):
    """What the harness needs of a kernel under test (see the module docstring)."""

    def start(self, sink: TraceSink) -> None: ...

    def stop(self) -> None: ...

    @property
    def connection_file(self) -> Path: ...

    def open_comm(self, target: str, persistent: bool, owner: str | None = None) -> str: ...

    def close_comm(self, comm_id: str) -> None: ...

    def comm_request(self, comm_id: str, method: str, params: Any) -> Future[Any]: ...

    def stdin_request(self, identity: bytes) -> Future[Any]: ...

    @property
    def subscriber_count(self) -> int: ...

    @property
    def late_replies(self) -> int: ...


#: what the harness reads of an adapter: KernelAdapter's members, and the optional ones
ADAPTER_NEEDS = frozenset({"start", "stop", "connection_file", "open_comm", "close_comm",
                           "comm_request", "stdin_request", "subscriber_count",
                           "late_replies"})
ADAPTER_OPTIONAL = frozenset({"keep_detached", "hold_inbound", "supports_hold_inbound",
                              "check_trace", "interrupt"})


class ReferenceKernel:
    """The reference :class:`KernelEndpoint`, in this process. A broken variant
    replaces one of its disconnection rules: ``policies``."""

    #: the kernel's disconnection rules; the tests' broken variants replace one
    policies: type[KernelPolicies] = KernelPolicies

    def __init__(self, heartbeat: HeartbeatSettings = MBT_HEARTBEAT) -> None:
        self.heartbeat = heartbeat
        self.kernel: KernelEndpoint | None = None
        self.max_detached = KernelConfig.max_detached

    def keep_detached(self, n: int) -> None:
        self.max_detached = n

    def make(self, sink: TraceSink) -> KernelEndpoint:
        """The endpoint to start."""
        return KernelEndpoint(
            sink=sink, config=KernelConfig(heartbeat=self.heartbeat, stop_linger=0.2,
                                           max_detached=self.max_detached),
            policies=self.policies(),
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self, sink: TraceSink) -> None:
        if self.kernel is not None:
            raise RuntimeError("already started")
        self.kernel = self.make(sink)
        self.kernel.start()

    def stop(self) -> None:
        if self.kernel is not None:
            self.kernel.stop()

    def _k(self) -> KernelEndpoint:
        if self.kernel is None:
            raise RuntimeError("the kernel under test has not started")
        return self.kernel

    @property
    def connection_file(self) -> Path:
        return self._k().connection_file

    @property
    def running(self) -> bool:
        return self.kernel is not None and self.kernel.running

    # -- actions -----------------------------------------------------------

    def open_comm(self, target: str, persistent: bool, owner: str | None = None) -> str:
        comm = self._k().open_comm(
            target, persistent=persistent, owner=owner.encode() if owner else None
        )
        # the demo targets' factory runs for frontend opens only: serve echo here too
        comm.on_request("echo", lambda params: params)
        return comm.comm_id

    def close_comm(self, comm_id: str) -> None:
        comm = self._k().comm(comm_id)
        if comm is None:
            raise KeyError(f"the kernel has no comm {comm_id}")
        comm.close()

    def comm_request(self, comm_id: str, method: str, params: Any,
                     timeout: float | None = None) -> Future[Any]:
        comm = self._k().comm(comm_id)
        if comm is None:
            raise KeyError(f"the kernel has no comm {comm_id}")
        return comm.request(method, params, timeout=timeout)

    def stdin_request(self, identity: bytes) -> Future[Any]:
        return self._k().stdin_request(
            "input_request", {"prompt": "mbt?", "password": False}, identity=identity
        )

    def hold_inbound(self) -> Future[bool]:
        return self._k().hold_until_queued(["iopub", "shell"])

    def interrupt(self) -> None:
        self._k().interrupt()

    # -- observations -------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return self._k().subscriber_count

    def comm_states(self) -> dict[str, str]:
        return self._k().comm_states()

    @property
    def late_replies(self) -> int:
        return self._k().late_replies

    @property
    def pending_count(self) -> int:
        return self._k().pending_count

    @property
    def stdin_pending_count(self) -> int:
        return self._k().stdin_pending_count


#: the targets an adapter's kernel must serve, by the model's comm kind
TARGETS = {"default": ECHO, "persistent": ECHO_PERSISTENT}
