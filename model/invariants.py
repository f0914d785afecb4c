"""The predicates behind the state and step properties of :mod:`.properties`.

Each returns a list of ``(property name, what is wrong)``; empty means it holds.
The liveness property needs the whole explored graph and lives in the checker.
"""

from __future__ import annotations

from .machines import (
    ALIVE,
    REQUEST,
    STDIN_REQUEST,
    FrontendCommState,
    KernelCommState,
    RequestEvent,
    RequestState,
    SessionState,
    StdinRequestEvent,
    StdinRequestState,
)
from .world import OWNER_ALL, CloseCause, Kind, Msg, Proc, Request, Target, World

Violation = tuple[str, str]

#: the states a request is in once its reply was handed to its caller
DELIVERING = (
    REQUEST.dests(RequestEvent.RESULT)
    | REQUEST.dests(RequestEvent.ERROR)
    | STDIN_REQUEST.dests(StdinRequestEvent.REPLY)
)


#: the outcomes of a request whose answering party left, and where they come from
INVALIDATED = (
    REQUEST.dests(RequestEvent.PEER_LOST) | STDIN_REQUEST.dests(StdinRequestEvent.PEER_LOST)
)
INVALIDATED_FROM = (
    REQUEST.sources(RequestEvent.PEER_LOST) | STDIN_REQUEST.sources(StdinRequestEvent.PEER_LOST)
)


#: frontends that hold no comm: gone for good, or not started (a later one is a new
#: session, which owns nothing it did not open or adopt)
GONE_OR_NOT_COME = (Proc.DEAD, Proc.IDLE)


def _terminal(req: Request) -> bool:
    spec = STDIN_REQUEST if req.kind is Kind.STDIN else REQUEST
    return req.state in spec.terminal


def step_violations(before: World, after: World, drained: tuple[int, ...] = ()) -> list[Violation]:
    """``drained``: requests whose replies the kernel received and drained in this step."""
    out: list[Violation] = []
    if before.requests is after.requests:  # the step changed no request (Draft.freeze)
        return out
    for r, (old, new) in enumerate(zip(before.requests, after.requests, strict=True)):
        if old is not None and _terminal(old) and (new is None or new.state != old.state):
            now = "gone" if new is None else new.state.value
            out.append(
                (
                    "one_outcome",
                    f"{old.kind.value} {r} left its outcome {old.state.value} for {now}",
                )
            )
        elif (
            old is not None
            and new is not None
            and old.state in INVALIDATED_FROM
            and new.state in INVALIDATED
            and r in drained
        ):
            out.append(
                (
                    "drained_reply_wins",
                    f"{old.kind.value} {r} was invalidated although the kernel had "
                    "already received its reply",
                )
            )
        if (
            old is not None
            and new is not None
            and old.state in INVALIDATED_FROM
            and new.state in INVALIDATED
            and not _answerer_gone(after, new)
        ):
            out.append(
                (
                    "no_false_invalidation",
                    f"{old.kind.value} {r} was invalidated while its answering party is "
                    "still there",
                )
            )
    return out


def _answerer_gone(w: World, req: Request) -> bool:
    k = w.kernel
    if req.kind is Kind.FRONTEND_TO_KERNEL:
        return not w.frontends[req.party].linked
    if req.kind is Kind.STDIN:
        return not k.peers[req.party]
    return _owner_gone(w, k.comms[req.comm].owner)


def _owner_gone(w: World, owner: int) -> bool:
    """The kernel knows the comm's owner is gone: for a comm every subscriber owns, once
    nobody is subscribed."""
    return not any(w.kernel.peers) if owner == OWNER_ALL else not w.kernel.peers[owner]


def state_violations(w: World) -> list[Violation]:
    out: list[Violation] = []
    k = w.kernel
    for r, req in enumerate(w.requests):
        if req is None:
            continue
        if req.delivered > 1 or (req.delivered == 1 and req.state not in DELIVERING):
            out.append(
                (
                    "reply_only_while_pending",
                    f"{req.kind.value} {r} handed {req.delivered} repl"
                    f"{'y' if req.delivered == 1 else 'ies'} to its caller and is "
                    f"{req.state.value}",
                )
            )
    for c, kc in enumerate(k.comms):
        if w.targets[c] is Target.PERSISTENT:
            if kc.cause is CloseCause.LOST:
                out.append(
                    (
                        "persistent_comm_survives",
                        f"persistent comm {c} was closed by a disconnection",
                    )
                )
        elif kc.state is KernelCommState.OPEN and _owner_gone(w, kc.owner):
            out.append(
                (
                    "no_unobserved_default_comm",
                    f"default comm {c} is open but its frontend {kc.owner} is gone",
                )
            )
    if k.up and all(
        fe.proc in GONE_OR_NOT_COME and not fe.sub_up and not fe.shell for fe in w.frontends
    ):
        for c, kc in enumerate(k.comms):
            if kc.state is KernelCommState.OPEN:
                out.append(
                    (
                        "no_comm_leak",
                        f"every frontend has gone for good and {_comm(w, c)} is still open",
                    )
                )
    if k.up and not any(k.peers):
        for r, req in enumerate(w.requests):
            if (req is not None and req.kind is Kind.KERNEL_TO_FRONTEND
                    and req.state is RequestState.PENDING and k.comms[req.comm].owner == OWNER_ALL):
                out.append(("stock_requests_end_with_the_last", f"{req.kind.value} {r} on "
                            f"{_comm(w, req.comm)}, which every subscriber owns, is pending "
                            "and nobody is subscribed"))
    detached = [c for c, kc in enumerate(k.comms) if kc.state is KernelCommState.DETACHED]
    if len(detached) > w.keep_detached:
        out.append(("detached_bounded", f"{len(detached)} comms are detached, more than the "
                    f"{w.keep_detached} the kernel keeps"))
    for f, fe in enumerate(w.frontends):
        for c in fe.adopted:
            kc = k.comms[c]
            if k.peers[f] and kc.state in ALIVE and (
                kc.state is not KernelCommState.OPEN or kc.owner != f
            ):
                out.append((
                    "adopted_comm_answerable",
                    f"frontend {f} adopted {_comm(w, c)} and is still here, but the kernel "
                    f"has it {kc.state.value}, owned by frontend {kc.owner}",
                ))
    for f, fe in enumerate(w.frontends):
        # (a frontend libzmq relinked has yet to act on the drop: drops_acted_on)
        if (fe.session is not SessionState.READY or not fe.linked or fe.relinked
                or fe.proc is Proc.DEAD):
            continue
        outgoing = fe.shell
        for c, state in enumerate(fe.comms):
            alive = k.comms[c].state in ALIVE
            if (
                state is FrontendCommState.OPEN
                and not alive
                and ((Msg.CLOSE, c) not in fe.iopub and (Msg.OPEN, c) not in outgoing)
            ):
                out.append(
                    (
                        "reconciled_view",
                        f"ready frontend {f} holds comm {c} open, the kernel has it "
                        f"{k.comms[c].state.value}, and no message explains it",
                    )
                )
            elif state is FrontendCommState.CLOSED and alive and (Msg.CLOSE, c) not in outgoing:
                out.append(
                    (
                        "reconciled_view",
                        f"ready frontend {f} holds comm {c} closed, the kernel has it "
                        f"{k.comms[c].state.value}, and no message explains it",
                    )
                )
            elif state is FrontendCommState.STALE:
                out.append(("reconciled_view", f"ready frontend {f} still holds comm {c} stale"))
    return out


def _comm(w: World, c: int) -> str:
    return f"{w.targets[c].value} comm {c}"


def relinked_frontends(w: World) -> list[int]:
    """Frontends whose dropped connection libzmq re-established: each must act on it."""
    return [f for f, fe in enumerate(w.frontends) if fe.relinked and fe.proc is Proc.RUNNING]


def reconciling_frontends(w: World) -> list[int]:
    """Frontends reconciling on a live link: each must be able to finish."""
    return [
        f for f, fe in enumerate(w.frontends)
        if fe.session is SessionState.RECONCILING and fe.linked and fe.proc is Proc.RUNNING
    ]


def pending_requests(w: World) -> list[int]:
    """Requests still waiting whose caller is still there to wait."""
    out = []
    for r, req in enumerate(w.requests):
        if req is None or req.state not in (RequestState.PENDING, StdinRequestState.PENDING):
            continue
        if req.kind is Kind.FRONTEND_TO_KERNEL:
            # A caller that is dead or frozen is not waiting on anyone else.
            if w.frontends[req.party].proc in (Proc.DEAD, Proc.FROZEN):
                continue
        elif (req.kind is Kind.KERNEL_TO_FRONTEND and w.kernel.comms[req.comm].owner == OWNER_ALL
              and any(w.kernel.peers)):
            # What stock frontends get: the kernel cannot tell which of them left, so a
            # request on a comm they own ends when the last subscriber goes, which takes
            # more than protocol steps (stock_requests_end_with_the_last checks that it then does).
            continue
        elif not w.kernel.up:
            continue
        out.append(r)
    return out
