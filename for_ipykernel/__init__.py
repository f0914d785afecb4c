"""commspec for ipykernel: an IPython kernel that keeps commspec's spec.

It is ipykernel (``CommspecIPythonKernel`` subclasses ``IPythonKernel``,
``CommspecKernelApp`` subclasses ``IPKernelApp``) whose comms, IOPub presence and
stdin requests are run by commspec's protocol core, the reference kernel's
(``commspec.impl.core``): a frontend that leaves is seen (its IOPub unsubscribe,
ZMTP heartbeats), its comms follow the disconnection policy, requests to it end, and
``input()`` addressed to it raises :class:`FrontendGone` instead of hanging.

Start it with ``python -m commspec.ipykernel -f CONNECTION_FILE``, or install its
kernelspec: ``commspec install --ipykernel``.

For a kernel-side library (a plot pane, a variables pane):

- :func:`register_target` ``(name, handler, persistent=False)``: ``handler(comm,
  open_msg)`` runs when a frontend opens a comm for ``name`` (the ``comm`` package's
  convention); ``comm`` is a :class:`commspec.impl.Comm`: ``comm.request(method,
  params, timeout=None)`` returns a future with exactly one outcome,
  ``comm.notify``, ``comm.on_request``, ``comm.on_notification``, ``comm.on_close``
  (the cleanup callback: it runs however the comm ends), ``comm.on_disconnect`` (a
  persistent comm detached: its frontend left and may come back).
- :func:`open_comm` ``(target_name, data=None, persistent=False)``: open one from the
  kernel, owned by the frontend whose request is running.
- The ``comm`` package (``comm.create_comm``, ipywidgets) works as on ipykernel; its
  comms are carried by the same core (``application.py`` says how).
"""

from __future__ import annotations

# isort: off
from .supported import SUPPORTED  # first: it refuses an ipykernel this is not built on

# isort: on
from typing import Any

from commspec.impl.comm import Comm
from commspec.impl.targets import Target

from .kernel import TARGETS, CommspecIPythonKernel, FrontendGone

__all__ = ["SUPPORTED", "CommspecIPythonKernel", "CommspecKernelApp", "FrontendGone",
           "current_kernel", "open_comm", "register_target"]

Handler = Any  # Callable[[Comm, dict[str, Any]], None]


def register_target(name: str, handler: Handler, persistent: bool = False) -> Target:
    """``handler(comm, open_msg)`` sets up each comm a frontend opens for ``name``.
    ``persistent``: its comms are detached, not closed, when their frontend leaves, and
    re-attached when it is back."""

    def factory(comm: Comm, data: dict[str, Any], _kernel: Any) -> None:
        handler(comm, {"content": {"comm_id": comm.comm_id, "target_name": name,
                                   "data": data}})

    return TARGETS.register(name, factory, persistent)


def current_kernel() -> CommspecIPythonKernel:
    """The running kernel; RuntimeError outside one."""
    if not CommspecIPythonKernel.initialized():
        raise RuntimeError("no commspec ipykernel is running in this process")
    kernel = CommspecIPythonKernel.instance()
    assert isinstance(kernel, CommspecIPythonKernel)
    return kernel


def open_comm(target_name: str, data: dict[str, Any] | None = None, *,
              persistent: bool = False) -> Comm:
    """Open a comm from kernel code; NoFrontend if nobody is subscribed."""
    return current_kernel().bridge.open_comm(target_name, data, persistent=persistent)


def __getattr__(name: str) -> Any:
    # the app imports ipykernel's kernelapp (heavy): only when asked for
    if name == "CommspecKernelApp":
        from .app import CommspecKernelApp

        return CommspecKernelApp
    raise AttributeError(name)
