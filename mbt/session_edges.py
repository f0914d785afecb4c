"""Live-only scenarios for the frontend session machine's transient transitions.

Rules:
- The lockstep harness (:mod:`.harness`) compares the live system with the model
  only at *quiescent* points, where no protocol step is left. The transitions
  here leave a transient session state (connecting, reconnecting, reconciling)
  sideways, at a moment only timing decides: a connect deadline passing (the
  harness's frontends wait 120 s), a welcome or a loss arriving while a
  ``comm_info_reply`` is still awaited, a close issued in between. A comparison
  sees only where the session settled, never the move that left sideways, so
  the harness cannot stop at them; ``ready --welcomed--> ready`` it takes only
  by chance. Comms left stale by such moves are here too. Each is taken
  here on purpose, by a scenario that controls the timing.
- A scenario runs a real :class:`~commspec.impl.frontend.FrontendEndpoint` over
  loopback (127.0.0.1) against the reference kernel
  (:class:`~commspec.mbt.adapter.ReferenceKernel`) or a :class:`ScriptedKernel`
  (a kernel's sockets and nothing else: the scenario sends every message, or
  withholds it). Every endpoint's trace sink is one
  :class:`~commspec.mbt.recorder.Recorder`, so each transition the implementation
  takes is checked against the declared machines as it happens and counted in the
  :class:`~commspec.mbt.recorder.Coverage`. No event is ever fabricated.
- Scenarios wait on the trace (``Recorder.wait_until``) or on the scripted
  kernel's bounded socket polls, never on a guessed sleep. The only times under
  test are a connect deadline (``connect_timeout``) and the heartbeat timeout.
- Each scenario asserts the exact session transitions of its frontends, in
  order, and that the trace checker found no deviation; it releases every
  endpoint, socket, context, thread and file on the way out, failed or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from commspec.impl.connection import ConnectionInfo
from commspec.impl.core.events import Message
from commspec.impl.core.presence import peer_name
from commspec.impl.frontend import FrontendEndpoint, FrontendOptions
from commspec.model.machines import SESSION

from .adapter import ReferenceKernel
from .fakes import PROBES, ScriptedKernel
from .recorder import Coverage, Move, Recorder

__all__ = [
    "EXPECTED",
    "SESSION_EDGES",
    "Move",
    "ScriptedKernel",
    "assert_session",
    "run_session_edges",
    "session_moves",
]

Scenario = Callable[[Coverage | None], None]

LOOPBACK = "tcp://127.0.0.1"
#: the bound on every wait of a scenario that works (each takes milliseconds)
WAIT = 5.0

#: the connect deadline is under test: nobody welcomes the frontend within it
DEADLINE_OPTIONS = FrontendOptions(
    heartbeat_interval=0.05, heartbeat_timeout=0.4, probe_interval=0.05, connect_timeout=0.3
)
#: no deadline under test: a scenario closes or welcomes long before this one passes
STEADY_OPTIONS = replace(DEADLINE_OPTIONS, connect_timeout=30.0)

# -- the session moves the scenarios expect ----------------------------------------------

CONNECTED: Move = ("connecting", "welcomed", "ready")
CONNECT_FAILED: Move = ("connecting", "link_lost", "lost")
READY_WELCOMED: Move = ("ready", "welcomed", "ready")
LOST: Move = ("ready", "link_lost", "lost")
RECONNECT: Move = ("lost", "reconnect", "reconnecting")
RECONNECT_FAILED: Move = ("reconnecting", "link_lost", "lost")
REWELCOMED: Move = ("reconnecting", "welcomed", "reconciling")
RECONCILING_WELCOMED: Move = ("reconciling", "welcomed", "reconciling")
RECONCILED: Move = ("reconciling", "reconciled", "ready")
RECONCILING_LOST: Move = ("reconciling", "link_lost", "lost")


def closed(state: str) -> Move:
    return (state, "close", "closed")


#: reconnect() from ready: the old link is dropped first, then new sockets
_TO_RECONCILING = (CONNECTED, LOST, RECONNECT, REWELCOMED)

CONNECT_DEADLINE = "connecting: nobody welcomes before the connect deadline"
CLOSE_RECONNECTING = "reconnecting: closed while the new subscription awaits its welcome"
SECOND_WELCOME = "reconciling: a second welcome while comm_info_reply is awaited, then at ready"
LOST_RECONCILING = "reconciling: the heartbeat stops before comm_info_reply"
CLOSE_RECONCILING = "reconciling: closed before comm_info_reply"
WELCOMES_AT_READY = "ready: welcomes for other subscribers (reference kernel, two frontends)"
KERNEL_GONE = "reconnecting: reconnect to a reference kernel that went away"
STALE_COMMS = "stale comms: closed by the frontend, closed by the kernel, lost again"

#: the exact session moves of each scripted scenario's frontend (the reference kernel's
#: scenarios compute theirs: how many welcomes reach a ready frontend depends on what
#: proved its subscription, which the frontend reports)
EXPECTED: dict[str, tuple[Move, ...]] = {
    CONNECT_DEADLINE: (CONNECT_FAILED, closed("lost")),
    CLOSE_RECONNECTING: (CONNECTED, LOST, RECONNECT, closed("reconnecting")),
    SECOND_WELCOME: (
        *_TO_RECONCILING, RECONCILING_WELCOMED, RECONCILED, READY_WELCOMED, closed("ready")
    ),
    LOST_RECONCILING: (*_TO_RECONCILING, RECONCILING_LOST, closed("lost")),
    CLOSE_RECONCILING: (*_TO_RECONCILING, closed("reconciling")),
    STALE_COMMS: (*_TO_RECONCILING, RECONCILING_LOST, closed("lost")),
}

#: the comm moves of STALE_COMMS, per comm: (source, event, dest)
STALE_MOVES: tuple[tuple[Move, ...], ...] = (
    (("new", "opened_by_frontend", "open"), ("open", "link_lost", "stale"),
     ("stale", "closed_by_frontend", "closed")),
    (("new", "opened_by_frontend", "open"), ("open", "link_lost", "stale"),
     ("stale", "closed_by_kernel", "closed")),
    (("new", "opened_by_frontend", "open"), ("open", "link_lost", "stale"),
     ("stale", "link_lost", "stale"), ("stale", "session_closed", "closed")),
)


# =========================================================================
# checking the trace
# =========================================================================


def session_moves(recorder: Recorder, endpoint: str) -> list[Move]:
    """The session transitions ``endpoint`` traced so far, in order."""
    return recorder.moves(endpoint, SESSION.name)


def assert_session(recorder: Recorder, endpoint: str, expected: tuple[Move, ...]) -> None:
    """The trace checker found nothing, and ``endpoint``'s session took exactly ``expected``."""
    recorder.require_conformance()
    moves = session_moves(recorder, endpoint)
    if tuple(moves) != expected:
        raise AssertionError(
            f"{endpoint}: session moves differ\n  expected: {list(expected)}\n  traced:   {moves}"
        )


def _await_moves(
    recorder: Recorder, endpoint: str, done: Callable[[list[Move]], bool], what: str
) -> None:
    """Wait on the trace until ``endpoint``'s session moves satisfy ``done`` (bounded)."""
    if not recorder.wait_until(lambda: done(session_moves(recorder, endpoint)), WAIT):
        recorder.require_conformance()
        raise AssertionError(
            f"{endpoint}: {what} not traced within {WAIT} s; "
            f"session moves so far: {session_moves(recorder, endpoint)}"
        )
    recorder.require_conformance()


def _await_move(recorder: Recorder, endpoint: str, move: Move, times: int = 1) -> None:
    _await_moves(recorder, endpoint, lambda moves: moves.count(move) >= times,
                 f"{' --'.join(move[:2])}--> {move[2]} (x{times})")


# =========================================================================
# the scenarios
# =========================================================================


def _frontend(
    stack: ExitStack,
    connection: ConnectionInfo | Path,
    recorder: Recorder,
    options: FrontendOptions,
) -> FrontendEndpoint:
    fe = FrontendEndpoint(connection, sink=recorder, options=options)
    stack.callback(fe.close)
    return fe


def _scripted(stack: ExitStack) -> ScriptedKernel:
    kernel = ScriptedKernel()
    stack.callback(kernel.close)
    return kernel


def _reference(stack: ExitStack, recorder: Recorder) -> ReferenceKernel:
    kernel = ReferenceKernel()
    stack.callback(kernel.stop)
    kernel.start(recorder)
    return kernel


def _connect(kernel: ScriptedKernel, fe: FrontendEndpoint, recorder: Recorder) -> None:
    """The scripted kernel welcomes the frontend's first subscription: ready."""
    kernel.wait_subscribed(b"")
    kernel.welcome()
    _await_move(recorder, fe.name, CONNECTED)


def _to_reconciling(
    kernel: ScriptedKernel, fe: FrontendEndpoint, recorder: Recorder, connected: bool = False
) -> tuple[list[bytes], Message]:
    """Connect (unless ``connected``), reconnect, welcome the new subscription; the
    comm_info_request it sends is returned unanswered, so the session stays reconciling."""
    if not connected:
        _connect(kernel, fe, recorder)
    fe.reconnect()
    kernel.wait_subscribed(b"")  # the new socket's: the first one's was read above
    kernel.welcome()
    asked = kernel.expect("shell", "comm_info_request", skip=PROBES)
    _await_move(recorder, fe.name, REWELCOMED)
    return asked


def connect_deadline(coverage: Coverage | None) -> None:
    """A kernel that binds its sockets but never welcomes nor answers the probe:
    the connect deadline passes, the session is lost."""
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _scripted(stack)
        fe = _frontend(stack, kernel.info, recorder, DEADLINE_OPTIONS)
        kernel.wait_subscribed(b"")  # the subscription landed; nobody welcomes it
        _await_move(recorder, fe.name, CONNECT_FAILED)
        fe.close()
        assert_session(recorder, fe.name, EXPECTED[CONNECT_DEADLINE])


def close_reconnecting(coverage: Coverage | None) -> None:
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _scripted(stack)
        fe = _frontend(stack, kernel.info, recorder, STEADY_OPTIONS)
        _connect(kernel, fe, recorder)
        fe.reconnect()
        kernel.wait_subscribed(b"")  # the new subscription landed; no welcome for it
        fe.close()
        assert_session(recorder, fe.name, EXPECTED[CLOSE_RECONNECTING])


def second_welcome(coverage: Coverage | None) -> None:
    """While comm_info_reply is withheld, the kernel welcomes another subscription (the
    frontend's peer topic); then the reply settles it; then a welcome reaches it ready."""
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _scripted(stack)
        fe = _frontend(stack, kernel.info, recorder, STEADY_OPTIONS)
        identities, request = _to_reconciling(kernel, fe, recorder)
        kernel.welcome(peer_name(fe.session_id))
        _await_move(recorder, fe.name, RECONCILING_WELCOMED)
        kernel.reply("shell", identities, request, "comm_info_reply",
                     {"status": "ok", "comms": {}})
        _await_move(recorder, fe.name, RECONCILED)
        kernel.welcome()  # as for a frontend subscribing elsewhere
        _await_move(recorder, fe.name, READY_WELCOMED)
        fe.close()
        assert_session(recorder, fe.name, EXPECTED[SECOND_WELCOME])


def lost_reconciling(coverage: Coverage | None) -> None:
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _scripted(stack)
        fe = _frontend(stack, kernel.info, recorder, STEADY_OPTIONS)
        _to_reconciling(kernel, fe, recorder)
        kernel.stop_echoing()  # comm_info_reply withheld, and now the heartbeat too
        _await_move(recorder, fe.name, RECONCILING_LOST)
        fe.close()
        assert_session(recorder, fe.name, EXPECTED[LOST_RECONCILING])


def close_reconciling(coverage: Coverage | None) -> None:
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _scripted(stack)
        fe = _frontend(stack, kernel.info, recorder, STEADY_OPTIONS)
        _to_reconciling(kernel, fe, recorder)
        fe.close()
        assert_session(recorder, fe.name, EXPECTED[CLOSE_RECONCILING])


def _own_welcomes_at_ready(fe: FrontendEndpoint) -> int:
    """How many of the reference kernel's welcomes for ``fe``'s own two subscriptions (the
    empty topic and its peer topic) reach it ready: one proved it, unless a kernel_info
    probe's status got there first (then both)."""
    return 1 if fe.proven_by == "iopub_welcome" else 2


def welcomes_at_ready(coverage: Coverage | None) -> None:
    """Frontend A is ready; B subscribes, and the reference kernel welcomes both of B's
    subscriptions to every subscriber: A takes ready --welcomed--> ready for each."""
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _reference(stack, recorder)
        a = _frontend(stack, kernel.connection_file, recorder, STEADY_OPTIONS)
        _await_move(recorder, a.name, CONNECTED)
        own_a = _own_welcomes_at_ready(a)
        _await_move(recorder, a.name, READY_WELCOMED, own_a)
        b = _frontend(stack, kernel.connection_file, recorder, STEADY_OPTIONS)
        _await_move(recorder, b.name, CONNECTED)
        own_b = _own_welcomes_at_ready(b)
        _await_move(recorder, b.name, READY_WELCOMED, own_b)
        _await_move(recorder, a.name, READY_WELCOMED, own_a + 2)
        b.close()
        a.close()
        assert_session(recorder, a.name,
                       (CONNECTED, *[READY_WELCOMED] * (own_a + 2), closed("ready")))
        assert_session(recorder, b.name, (CONNECTED, *[READY_WELCOMED] * own_b, closed("ready")))


def kernel_gone(coverage: Coverage | None) -> None:
    """The reference kernel stops: the frontend is lost; reconnect() finds nobody, and the
    connect deadline passes while reconnecting."""
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _reference(stack, recorder)
        fe = _frontend(stack, kernel.connection_file, recorder, DEADLINE_OPTIONS)
        _await_move(recorder, fe.name, CONNECTED)
        own = _own_welcomes_at_ready(fe)
        _await_move(recorder, fe.name, READY_WELCOMED, own)
        kernel.stop()
        _await_move(recorder, fe.name, LOST)
        fe.reconnect()
        _await_move(recorder, fe.name, RECONNECT_FAILED)
        fe.close()
        assert_session(
            recorder, fe.name,
            (CONNECTED, *[READY_WELCOMED] * own, LOST, RECONNECT, RECONNECT_FAILED,
             closed("lost")),
        )


def stale_comms(coverage: Coverage | None) -> None:
    """Three comms go stale when the link drops (reconnect() drops it first). While the
    session reconciles, with comm_info_reply withheld: the user closes the first; the
    kernel's comm_close for the second arrives; the heartbeat stops, and the third,
    still stale, is lost again; closing the session closes it."""
    recorder = Recorder(coverage)
    with ExitStack() as stack:
        kernel = _scripted(stack)
        fe = _frontend(stack, kernel.info, recorder, STEADY_OPTIONS)
        _connect(kernel, fe, recorder)
        comms = [fe.open_comm("commspec.scripted") for _ in range(3)]
        for _ in comms:
            kernel.expect("shell", "comm_open", skip=PROBES)
        _to_reconciling(kernel, fe, recorder, connected=True)
        comms[0].close()
        gone = comms[1].comm_id
        close = kernel.wire.message("comm_close", {"comm_id": gone, "data": {}})
        kernel.wire.send(kernel.sockets["iopub"], close, identities=[b"comm_close"])
        if not recorder.wait_until(
            lambda: recorder.get(fe.name, "frontend_comm", gone, "") == "closed", WAIT
        ):
            raise AssertionError(f"the kernel's comm_close never closed comm {gone}")
        kernel.stop_echoing()
        _await_move(recorder, fe.name, RECONCILING_LOST)
        fe.close()
        assert_session(recorder, fe.name, EXPECTED[STALE_COMMS])
        for comm, expected in zip(comms, STALE_MOVES, strict=True):
            moves = recorder.moves(fe.name, "frontend_comm", comm.comm_id)
            if tuple(moves) != expected:
                raise AssertionError(f"comm {comm.comm_id}: took {moves}, expected {expected}")


SESSION_EDGES: tuple[tuple[str, Scenario], ...] = (
    (CONNECT_DEADLINE, connect_deadline),
    (CLOSE_RECONNECTING, close_reconnecting),
    (SECOND_WELCOME, second_welcome),
    (LOST_RECONCILING, lost_reconciling),
    (CLOSE_RECONCILING, close_reconciling),
    (WELCOMES_AT_READY, welcomes_at_ready),
    (KERNEL_GONE, kernel_gone),
    (STALE_COMMS, stale_comms),
)


def run_session_edges(
    coverage: Coverage | None = None, *, done: Callable[[str], None] | None = None
) -> list[tuple[str, float]]:
    """Run every scenario; AssertionError naming the first that fails. ``done`` hears
    each scenario's name as it passes (a progress display).

    Returns (name, seconds) per scenario."""
    out: list[tuple[str, float]] = []
    for name, scenario in SESSION_EDGES:
        began = time.monotonic()
        try:
            scenario(coverage)
        except Exception as e:
            raise AssertionError(f"session edge {name!r}: {e}") from e
        out.append((name, time.monotonic() - began))
        if done is not None:
            done(name)
    return out
