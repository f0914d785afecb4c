"""ipykernel's IPython kernel, with commspec's protocol core for comms and stdin.

Rules (what changes against stock ipykernel; everything else is ipykernel's):
- Comms: ``comm_open``, ``comm_msg``, ``comm_close`` and ``comm_info_request`` go to
  the core (``bridge.py``), not to ipykernel's comm manager, so comms follow the
  disconnection policy; ``comm.create_comm`` makes comms the core carries
  (``application.py``). ipykernel's busy/idle for these are the core's.
- Presence: the IOPub thread's subscription frames go to the core (``app.py``
  installs the IOPub thread that hands them over, and welcomes every subscriber).
- ``kernel_info_reply`` says so: ``iopub_welcome`` and commspec's feature.
- ``input()`` / ``getpass()`` are the core's stdin requests: one addressed to a
  frontend that has left, or that leaves while it waits, ends ``unreachable`` /
  ``peer_lost`` and the user's code gets :class:`FrontendGone` (an ``EOFError``, what
  ``input()`` raises when its stdin is gone); Ctrl-C ends it ``interrupted``.
- Shutdown closes every comm (``kernel_shutdown``) and ends every request first.
- Before every shell message, the subscriptions the IOPub thread has seen are
  handed to the core (a frontend's first request finds it subscribed).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from typing import Any

import comm as comm_package
from ipykernel.ipkernel import IPythonKernel
from ipykernel.thread import SHELL_CHANNEL_THREAD_NAME
from traitlets import Integer, List, Unicode

from commspec.impl.control import CONTROL_ENV, ControlServer, max_detached_from_env
from commspec.impl.core.comms import DEFAULT_MAX_DETACHED
from commspec.impl.core.kernel import KERNEL_INFO
from commspec.impl.errors import Disconnected, Interrupted, RequestFailed, Unreachable
from commspec.impl.targets import DEFAULT_TARGETS, TargetRegistry
from commspec.impl.tracing import JsonLinesSink
from commspec.model.messages import FEATURE
from commspec.model.trace import TraceSink, discard

from .bridge import CORE_TYPES, BridgeConfig, KernelBridge
from .shell_channel import ShellChannelWatch, marker_number

__all__ = ["TARGETS", "TRACE_ENV", "CommspecIPythonKernel", "FrontendGone"]

#: the ``comm`` package's logger, and the one pyzmq's streams log send errors to
COMM_LOGGER = "Comm"
TORNADO_LOGGER = "tornado.general"
#: the environment variable naming the trace file (SPEC.md, "Trace export")
TRACE_ENV = "COMMSPEC_TRACE"

#: commspec targets every kernel of this process knows (``register_target``); it falls
#: back to the reference kernel's demo targets (``commspec.echo`` and its persistent twin)
TARGETS = TargetRegistry(DEFAULT_TARGETS)

_concurrent: contextvars.ContextVar[bool] = contextvars.ContextVar("commspec_concurrent",
                                                                  default=False)
_shell_fd: contextvars.ContextVar[int | None] = contextvars.ContextVar("commspec_shell_fd",
                                                                      default=None)


class FrontendGone(EOFError):
    """``input()`` cannot be answered: the frontend it asked has left (or could not be
    reached). An EOFError, as when a program's stdin is closed; ``__cause__`` is the
    request's typed failure (``Disconnected``, ``Unreachable``)."""


class CommspecIPythonKernel(IPythonKernel):
    """An IPython kernel whose comms, presence and stdin keep commspec's spec."""

    max_detached = Integer(
        DEFAULT_MAX_DETACHED * 16,
        help="How many detached comms (persistent, their frontend gone) are kept; past "
             "that the one detached longest is closed. Widgets count: a notebook's "
             "widgets all detach when its last tab closes.").tag(config=True)
    remember = Integer(10_000, help="How many ended requests and closed comm ids are "
                       "remembered, to tell a late reply from an unknown one").tag(config=True)
    persistent_comm_targets = List(
        Unicode(), default_value=["jupyter.widget"],
        help="`comm` package targets whose comms are persistent: detached, not closed, "
             "when their frontend leaves, and usable again when one is back (a widget "
             "survives a page reload). Comms of other targets close and run their "
             "on_close callback.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path = os.environ.get(TRACE_ENV)
        sink: TraceSink = JsonLinesSink(path) if path else discard
        # the harness's bound, if it set one (SPEC.md, "A kernel in any language")
        from_env = max_detached_from_env()
        if from_env is not None:
            self.max_detached = from_env
        self.bridge = KernelBridge(self, TargetRegistry(TARGETS), BridgeConfig(
            max_detached=self.max_detached, remember=self.remember,
            persistent_comm_targets=frozenset(self.persistent_comm_targets), sink=sink))
        for msg_type in CORE_TYPES:
            self.shell_handlers[msg_type] = self._to_core
        comm_package.create_comm = self.bridge.app.new_package_comm
        logging.getLogger(COMM_LOGGER).addFilter(_RoutingLookupFilter())
        logging.getLogger(TORNADO_LOGGER).addFilter(_DepartedReplyFilter())
        self.control_server: ControlServer | None = None
        endpoint = os.environ.get(CONTROL_ENV)
        if endpoint:
            self.control_server = ControlServer(self.bridge, endpoint).start()

    # -- ipykernel's hooks ------------------------------------------------------------

    def start(self) -> None:
        super().start()
        from zmq.eventloop.zmqstream import ZMQStream

        bridge = self.bridge
        # ipykernel 7.4 reads shell on a thread of its own and forwards to this one
        manager = self.shell_channel_thread.manager
        bridge.shell_out = manager.get_subshell_to_shell_channel_socket(None)
        bridge.shell_watch = ShellChannelWatch(
            self, bridge, getattr(self.parent, "shell_monitor", None), CORE_TYPES)
        bridge.shell_watch.start()
        # stdin replies while no input() waits (a target's stdin request, the control
        # socket's); input() reads the socket itself (bridge.wait)
        self._stdin_stream = ZMQStream(self.stdin_socket, self.io_loop)
        self._stdin_stream.on_recv(bridge.on_stdin_frames, copy=False)
        bridge.stdin_monitor = getattr(self.parent, "stdin_monitor", None)
        if bridge.stdin_monitor is not None:
            self._stdin_monitor_stream = ZMQStream(bridge.stdin_monitor, self.io_loop)
            self._stdin_monitor_stream.on_recv(bridge.on_stdin_monitor)
        self.iopub_thread.attach_presence(bridge.on_xpub)

    # -- the shell channel thread -----------------------------------------------------

    async def shell_channel_thread_main(self, msg: Any) -> None:
        watch = self.bridge.shell_watch
        if watch is None:  # read while start() was still setting the watch up
            await super().shell_channel_thread_main(msg)
            return
        watch.before_forward(msg)
        await super().shell_channel_thread_main(msg)
        watch.after_forward()

    async def forward_shell(self, msg: Any) -> None:
        """Forward a shell message as ipykernel does (the drain's, shell_channel.py)."""
        await super().shell_channel_thread_main(msg)

    # -- the main thread ------------------------------------------------------------

    async def shell_main(self, subshell_id: str | None, msg: Any) -> None:
        number = marker_number(msg)
        if number is not None:
            # an ordered input (a departure, a connection event): taken here, in order
            # with the shell messages before it, even while a cell holds the shell
            self.bridge.take_ordered(number)
            return
        await super().shell_main(subshell_id, msg)

    async def dispatch_shell(self, msg: Any, /, subshell_id: str | None = None, *,
                             concurrent: bool = False) -> None:
        # ``concurrent``: a comm message ipykernel dispatches while a cell holds the
        # shell, with no busy/idle of its own
        self.bridge.pump()
        watch = self.bridge.shell_watch
        # this task's, read by _to_core and should_handle
        _concurrent.set(concurrent)
        _shell_fd.set(watch.fd_of(msg) if watch is not None else None)
        await super().dispatch_shell(msg, subshell_id=subshell_id, concurrent=concurrent)

    def should_handle(self, stream: Any, msg: Any, idents: Any) -> Any:
        # ipykernel calls this once for each shell message it handles, deserialized
        if msg["header"].get("msg_type") not in CORE_TYPES:
            self.bridge.overheard([_as_bytes(i) for i in idents], msg, _shell_fd.get())
        return super().should_handle(stream, msg, idents)

    def _to_core(self, stream: Any, idents: Any, msg: dict[str, Any]) -> None:
        if msg["header"].get("msg_type") == "comm_open" \
                or self.bridge.core.presence.subscriptions == 0:
            # its sender's subscription first (presence first): a comm_open whose sender
            # seems gone is lost at once. A round trip to the IOPub thread (65-130 us),
            # so only where presence decides (BENCHMARKS.md)
            self.iopub_thread.read_now()
            self.bridge.pump()  # dispatch_shell pumped already: only what read_now posted
        self.bridge.handle_shell(stream, [_as_bytes(i) for i in idents], msg,
                                 _shell_fd.get(), concurrent=_concurrent.get())

    def _publish_status(self, status: str, channel: str, parent: Any = None) -> None:
        shown = parent or self.get_parent(channel)
        if channel == "shell" and isinstance(shown, dict) \
                and (shown.get("header") or {}).get("msg_type") in CORE_TYPES:
            return  # the core brackets these itself (an RPC's idle follows its answer)
        super()._publish_status(status, channel, parent)

    @property
    def kernel_info(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(super().kernel_info)
        features = list(info.get("supported_features", []))
        info["supported_features"] = features + [
            f for f in KERNEL_INFO["supported_features"] if f not in features]
        info[FEATURE] = KERNEL_INFO[FEATURE]
        return info

    def _input_request(self, prompt: str, ident: Any, parent: Any,
                       password: bool = False) -> str:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        identity = _as_bytes(ident[0]) if ident else None
        header = parent.get("header") if isinstance(parent, dict) else None
        self.iopub_thread.read_now()
        self.bridge.pump()
        future = self.bridge.app.stdin_request(
            "input_request", {"prompt": prompt, "password": password}, identity,
            parent=header or None)
        self.bridge.wait(future)
        try:
            value: str = future.result()
        except Interrupted:
            raise KeyboardInterrupt("Interrupted by user") from None
        except (Disconnected, Unreachable) as e:
            raise FrontendGone(f"no answer can come: {e}") from e
        except RequestFailed as e:  # pragma: no cover - a stdin request ends in the above
            raise FrontendGone(str(e)) from e
        if value == "\x04":
            raise EOFError
        return value

    def do_shutdown(self, restart: bool) -> Any:
        self.bridge.shut_down()
        if self.control_server is not None:
            self.control_server.stop()
        return super().do_shutdown(restart)

    def caller_identity(self) -> bytes | None:
        """The frontend whose shell request the main thread is running, if any."""
        ident = self._get_shell_context_var(self._shell_parent_ident)
        return _as_bytes(ident[0]) if ident else None


class _RoutingLookupFilter(logging.Filter):
    """ipykernel looks every comm_msg's comm up in the ``comm`` package's manager, on
    its shell channel thread (to route it to a subshell), and the package warns "No
    such comm" on the user's stderr for each one it does not hold. The comms are the
    core's, not the manager's: that lookup's warning says nothing (the core itself
    counts a message for a comm it does not hold)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "No such comm: %s"
                    and record.threadName == SHELL_CHANNEL_THREAD_NAME)


class _DepartedReplyFilter(logging.Filter):
    """A reply ipykernel sends on shell or control to a frontend that has left fails
    with EHOSTUNREACH (``ROUTER_MANDATORY``), and pyzmq's stream logs that as an ERROR
    in every server log: it is the frontend being gone, not a failure (SPEC)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "SEND Error: %s" and "Host unreachable" in str(record.args):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = ("a reply to a frontend that has left was not sent "
                                       "(EHOSTUNREACH)"), ()
        return True


def _as_bytes(value: Any) -> bytes:
    return value.bytes if hasattr(value, "bytes") else bytes(value)
