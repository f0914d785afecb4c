"""Errors of the reference implementation, typed by cause.

A request ends in exactly one outcome (see the ``request`` and ``stdin_request``
machines). A result is a value; every other outcome is one of the exceptions
below, set on the request's future. ``failure_for`` maps a terminal state to its
exception, so both endpoints fail requests the same way.

Other errors here: ``BadMessage`` (a frame the wire layer refused, with the
reason it is counted under) and ``InsecureConnection`` (an empty key nobody
asked for).
"""

from __future__ import annotations

from enum import Enum

from commspec.model.errors import CommspecError
from commspec.model.machines import RequestState, StdinRequestState

__all__ = [
    "BadMessage",
    "BadMessageReason",
    "CannotSend",
    "CommClosed",
    "CommRefused",
    "Disconnected",
    "EndpointClosed",
    "InsecureConnection",
    "Interrupted",
    "KernelCallFailed",
    "NoFrontend",
    "NoReply",
    "RemoteError",
    "RequestFailed",
    "TimedOut",
    "Undeliverable",
    "Unreachable",
    "failure_for",
    "failure_type",
]


class RequestFailed(CommspecError):
    """A request ended without a result. ``state`` is the terminal state's value."""

    #: what the outcome means, for the message; subclasses override
    cause = "failed"

    def __init__(
        self,
        msg_id: str,
        comm_id: str | None,
        method: str | None,
        state: str,
        detail: str = "",
    ) -> None:
        self.msg_id = msg_id
        self.comm_id = comm_id
        self.method = method
        self.state = state
        self.detail = detail
        # The message is built only when shown: failing 100k requests at once must be cheap.
        # What BaseException.__init__ would store, without the call (a quarter of the cost).
        self.args = (msg_id, comm_id, method, state, detail)

    def __str__(self) -> str:
        what = f"request {self.method!r}" if self.method else "request"
        where = f" on comm {self.comm_id}" if self.comm_id else ""
        tail = f": {self.detail}" if self.detail else ""
        return f"{what}{where} (msg_id {self.msg_id}) {self.cause} [{self.state}]{tail}"


class RemoteError(RequestFailed):
    """The peer answered with a JSON-RPC error."""

    cause = "was answered with an error"

    def __init__(
        self,
        msg_id: str,
        comm_id: str | None,
        method: str | None,
        state: str,
        code: int,
        message: str,
    ) -> None:
        RequestFailed.__init__(self, msg_id, comm_id, method, state, f"{code} {message}")
        self.code = code
        self.message = message
        self.args = (msg_id, comm_id, method, state, code, message)


class Disconnected(RequestFailed):
    """The only party that could answer went away while the request was pending."""

    cause = "was invalidated: the peer went away"


class CommClosed(RequestFailed):
    """The comm closed (from either side, or at shutdown) under the pending request."""

    cause = "was cancelled: its comm closed"


class TimedOut(RequestFailed):
    """The caller's own deadline passed."""

    cause = "timed out"


class NoReply(RequestFailed):
    """The kernel went idle on the request without answering it."""

    cause = "got no reply: the kernel went idle without answering"


class Undeliverable(RequestFailed):
    """Nobody could receive the request when it was made; it never pended."""

    cause = "was undeliverable: nobody could receive it"


class CommRefused(RequestFailed):
    """The kernel answered the comm's comm_open with comm_close: it has no such target
    (SPEC, "Requirements on a kernel"). Requests made on the comm, before the refusal
    arrived or after, end with this; ``state`` says whether one was pending then
    (``cancelled``) or never went out (``undeliverable``)."""

    cause = "failed: the kernel refused its comm"


class Unreachable(RequestFailed):
    """A stdin request's frontend is gone (EHOSTUNREACH, or it left while we waited)."""

    cause = "is unreachable: its frontend is gone"


class Interrupted(RequestFailed):
    """A stdin request was ended by interrupt_request or shutdown."""

    cause = "was interrupted"


_BY_STATE: dict[Enum, type[RequestFailed]] = {
    RequestState.INVALIDATED: Disconnected,
    RequestState.CANCELLED: CommClosed,
    RequestState.TIMED_OUT: TimedOut,
    RequestState.NO_REPLY: NoReply,
    RequestState.UNDELIVERABLE: Undeliverable,
    StdinRequestState.UNREACHABLE: Unreachable,
    StdinRequestState.INTERRUPTED: Interrupted,
}


def failure_type(state: RequestState | StdinRequestState) -> type[RequestFailed]:
    """The exception class for a failure outcome other than *errored* (which has a code)."""
    try:
        return _BY_STATE[state]
    except KeyError:
        raise ValueError(f"{state.value!r} is not a failure outcome without a code") from None


def failure_for(
    state: RequestState | StdinRequestState,
    *,
    msg_id: str,
    comm_id: str | None = None,
    method: str | None = None,
    code: int | None = None,
    message: str = "",
    detail: str = "",
) -> RequestFailed:
    """The exception for a request that ended in ``state`` (not a success state)."""
    if state is RequestState.ERRORED:
        return RemoteError(
            msg_id, comm_id, method, state.value, code if code is not None else -32603, message
        )
    return failure_type(state)(msg_id, comm_id, method, state.value, detail)


class CannotSend(CommspecError):
    """A comm message could not go out: the comm is closed, or the link is lost.

    Notifications are fire-and-forget, so they are not held across a loss: the
    caller learns at once that the kernel will not see this one.
    """

    def __init__(self, comm_id: str, why: str) -> None:
        super().__init__(f"comm {comm_id}: cannot send, {why}")
        self.comm_id = comm_id
        self.why = why


class KernelCallFailed(CommspecError):
    """A plain kernel request (kernel_info, execute...) that cannot get its reply any more."""

    def __init__(self, msg_id: str, msg_type: str, why: str) -> None:
        super().__init__(f"{msg_type} {msg_id}: {why}")
        self.msg_id = msg_id
        self.msg_type = msg_type
        self.why = why


class EndpointClosed(CommspecError):
    """Work was handed to an endpoint that has stopped (or never started)."""


class NoFrontend(CommspecError):
    """The kernel was asked to open a comm while no frontend is subscribed to see it."""


class InsecureConnection(CommspecError):
    """A connection file has an empty key, and ``insecure=True`` was not asked for."""


class BadMessageReason(Enum):
    """Why an incoming frame was refused; the endpoint counts bad input by these."""

    MISSIGNED = "missigned"
    REPLAYED = "replayed"
    TRUNCATED = "truncated"
    MALFORMED_JSON = "malformed_json"
    #: JSON nested deeper than the parser's limit (1,024 levels): not a real message
    TOO_DEEP = "too_deep"
    MISSING_FIELDS = "missing_fields"
    OVERSIZED = "oversized"


class BadMessage(CommspecError):
    """A frame the wire layer refused before any state saw it."""

    def __init__(self, reason: BadMessageReason, detail: str, channel: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.channel = channel
        where = f" on {channel}" if channel else ""
        super().__init__(f"bad message{where} ({reason.value}): {detail}")
