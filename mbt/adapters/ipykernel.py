"""Grey box: stock ipykernel held against the model, through a shim it runs itself.

Stock ipykernel writes no commspec trace and serves no control socket. This adapter
starts it as :class:`~commspec.mbt.external.ExternalKernel` starts any kernel (a
kernelspec or a command line, with ``COMMSPEC_TRACE`` and ``COMMSPEC_CONTROL`` in its
environment), then, before the harness's first ``state``, sends it one execute_request
whose code is :mod:`.ipykernel_shim`: the kernel then traces and serves the control
socket from the inside, by reading its own internals, without changing what it does.
The model-based test then fails where ipykernel breaks a rule, naming it: a crashed
frontend's default comm stays open (``no_unobserved_default_comm``), a kernel request
to a departed frontend stays pending... Run it with ``commspec mbt --adapter ipykernel``
(kernelspec ``python3`` unless ``--kernelspec`` or ``--cmd`` names another).

**It depends on ipykernel's internals** (none of them public API), as found in each
version it is tested on, :data:`TESTED_VERSIONS` (ipykernel 7.4.0 with comm 0.2.3,
pyzmq 27.3, jupyter_client 8.10, Python 3.11):

- ``Kernel.instance()`` is the running kernel; its ``session``, ``io_loop`` (the main
  thread's tornado loop, where shell handlers run), ``stdin_socket`` (a ROUTER used
  only while code calls ``input()``), ``shell_handlers["comm_open"|"comm_close"]`` (the
  comm manager's bound methods) and ``control_handlers["shutdown_request"]`` (a
  coroutine function, run on the control thread).
- ``kernel.iopub_socket`` is a ``BackgroundSocket`` whose ``io_thread`` (an
  ``IOPubThread``, since 6.0) has ``_xpub_stream`` (a ZMQStream on the XPUB, since
  7.0; ipykernel 6 bound a PUB, so no presence there), ``_handle_subscription(frames)``
  (the welcome, since 7.0) and ``io_loop``. ipykernel sets no ``XPUB_VERBOSE``.
  Checked by hand on ipykernel 6.29.5 (``pip install --target``, on ``PYTHONPATH``):
  the shim refuses to load, saying there is no XPUB stream (:class:`ShimNotLoaded`).
- ``comm.get_comm_manager()`` is ipykernel's ``CommManager``, whose ``comms`` dict holds
  the open comms, and ``comm.create_comm`` makes an ipykernel ``Comm`` (``comm_id``,
  ``topic``, ``on_msg``, ``close``).

Where ipykernel cannot do what the model asks, the harness has nothing to test and the
actions are left out (:data:`SKIPPED`): a **freeze** needs the kernel's ZMTP heartbeat
to drop a stopped frontend, and ipykernel sets none (heartbeat options work only before
bind, so the shim cannot add them); ``hold_inbound`` is not offered (no
``race_queued``). Its detached bound is vacuous (ipykernel never detaches a comm): the
shim reports the one asked for.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any, ClassVar

from commspec.conform.client import Client, NoAnswer
from commspec.conform.kernel import KernelSource
from commspec.mbt.external import CONTROL_TIMEOUT, START_TIMEOUT, ExternalKernel, as_code
from commspec.model.errors import CommspecError

__all__ = ["SKIPPED", "TESTED_VERSIONS", "IpykernelAdapter", "ShimNotLoaded", "shim_code"]

log = logging.getLogger("commspec.mbt.ipykernel")

#: the ipykernel versions whose internals the shim was tested against (see above)
TESTED_VERSIONS = ("7.4.0",)
#: the model actions stock ipykernel cannot make happen (see the module docstring)
SKIPPED = ("freeze", "race_queued", "race_stale_request", "race_unseen_request")
#: how long the kernel may take to run the shim
SHIM_TIMEOUT = 20.0


class ShimNotLoaded(CommspecError):
    """The kernel did not run the shim: its answer to the execute_request says why."""

    def __init__(self, kernel: str, why: str) -> None:
        super().__init__(f"{kernel}: the ipykernel shim did not load: {why}")
        self.kernel = kernel
        self.why = why


def shim_code() -> str:
    """The code an execute_request runs to load the shim: its source, executed as a
    module of its own (nothing lands in the user's namespace but the shim's handle)."""
    source = resources.files(__package__).joinpath("ipykernel_shim.py").read_text("utf-8")
    return ("def _commspec_load_shim(source):\n"
            "    import types\n"
            "    module = types.ModuleType('commspec_ipykernel_shim')\n"
            "    exec(compile(source, 'commspec_ipykernel_shim.py', 'exec'), module.__dict__)\n"
            "    return module.install()\n"
            f"_commspec_shim = _commspec_load_shim({source!r})\n"
            "del _commspec_load_shim\n")


class IpykernelAdapter(ExternalKernel):
    """Stock ipykernel (a kernelspec, ``python3`` by default, or a command line) with
    the shim loaded right after it starts (see the module docstring)."""

    #: not offered: the harness leaves the queued race out (ExternalKernel asks the
    #: kernel for it; ipykernel cannot hold its queues)
    hold_inbound = None  # type: ignore[assignment]
    #: the kernel started when none is named, and the actions it cannot make happen
    default_source: ClassVar[KernelSource] = KernelSource(kernelspec="python3")
    skipped: ClassVar[tuple[str, ...]] = SKIPPED
    #: not offered: ipykernel ignores SIGINT while idle, and the shim's stdin requests
    #: belong to no execution, so an interrupt could not end them (the scenario is
    #: skipped, not failed on something ipykernel never claims)
    interrupt = None  # type: ignore[assignment]

    def __init__(self, source: KernelSource | None = None,
                 start_timeout: float = START_TIMEOUT,
                 control_timeout: float = CONTROL_TIMEOUT) -> None:
        super().__init__(source or self.default_source, start_timeout,
                         control_timeout)
        #: ipykernel's version, as the shim read it (None before start)
        self.version: str | None = None
        #: where the shim serves the control socket (None before start)
        self.control_endpoint: str | None = None

    def describe(self) -> str:
        return f"IpykernelAdapter({self.source.describe()})"

    def as_code(self) -> tuple[str, list[tuple[str, str]]]:
        code, imports = as_code(self.source)
        return (code.replace("ExternalKernel(", "IpykernelAdapter(", 1),
                [("commspec.mbt.adapters.ipykernel", "IpykernelAdapter"),
                 *(i for i in imports if i[1] != "ExternalKernel")])

    def _first_state(self, control: Any, endpoint: str) -> dict[str, Any]:
        """Load the shim (the kernel has answered kernel_info), then ask the first
        ``state`` as for any kernel."""
        running = self._kernel
        assert running is not None, "called by start, once the kernel runs"
        implementation = running.kernel_info.get("implementation")
        if implementation != "ipython":
            raise ShimNotLoaded(self.source.describe(), f"it is not ipykernel (its "
                                f"kernel_info says implementation {implementation!r})")
        self.control_endpoint = endpoint
        self.version = self._load_shim(dict(running.info))
        if self.version not in TESTED_VERSIONS:
            log.warning("ipykernel %s: the shim was tested on %s only; it reads internals "
                        "that may have changed", self.version, ", ".join(TESTED_VERSIONS))
        return super()._first_state(control, endpoint)

    def control(self, method: str, params: dict[str, Any] | None = None,
                timeout: float = CONTROL_TIMEOUT) -> Any:
        """One control request's result, for what the adapter interface does not ask
        (``state`` also counts ``bad_messages``, the control messages dropped)."""
        return self._c().call(method, params, timeout)

    def _load_shim(self, info: dict[str, Any]) -> str:
        """Run the shim in the kernel; ipykernel's version (kernel_info names IPython's)."""
        with Client(info, name="commspec-shim-loader") as client:
            try:
                reply = client.request("execute_request", {
                    "code": shim_code(), "silent": False, "store_history": False,
                    "allow_stdin": False,
                    "user_expressions": {"version": "__import__('ipykernel').__version__"},
                }, SHIM_TIMEOUT)
            except NoAnswer:
                raise ShimNotLoaded(self.source.describe(), f"no execute_reply within "
                                    f"{SHIM_TIMEOUT:g} s") from None
        content = reply["content"]
        if content.get("status") != "ok":
            raise ShimNotLoaded(self.source.describe(),
                                f"{content.get('ename')}: {content.get('evalue')}")
        version = content.get("user_expressions", {}).get("version", {})
        return str(version.get("data", {}).get("text/plain", "?")).strip("'\"")

