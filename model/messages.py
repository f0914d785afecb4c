"""The message formats' registries (SPEC.md, "Message formats"): negotiation, error codes.

Rules:
- A kernel that keeps this specification says so in ``kernel_info_reply``:
  ``"commspec"`` in ``supported_features``, and ``commspec: {version,
  peer_topic_prefix}``. A frontend applies the rules only such a kernel promises
  (``no_reply``: a reply always precedes its request's idle) to no other.
- A request that fails without an answer from its peer ends in one failure outcome
  (a terminal state of the ``request`` or ``stdin_request`` machine). Where that
  outcome must travel as a JSON-RPC error (a kernel handler that forwarded the
  request to a frontend answers its own caller with it), it carries the one code
  registered for that outcome here, in JSON-RPC's server-error range.
- The JSON-RPC codes keep their JSON-RPC 2.0 meaning.
- SPEC.md's table is generated from :data:`ERROR_CODES`, so the two cannot differ.
"""

from __future__ import annotations

from typing import NamedTuple

from .machines import RequestState, StdinRequestState

__all__ = ["ADOPT_METHOD", "ERROR_CODES", "FAILURE_CODES", "FEATURE", "INTERNAL_ERROR",
           "INVALID_PARAMS", "INVALID_REQUEST", "METHOD_NOT_FOUND", "SPEC_VERSION", "ErrorCode",
           "advertises"]

#: what a kernel that keeps this specification lists in ``supported_features``
FEATURE = "commspec"
#: the version of the specification it keeps, in ``kernel_info_reply.commspec.version``
SPEC_VERSION = "2.0"
#: the JSON-RPC notification a frontend sends on a comm it adopted through comm_info,
#: so that the kernel makes it the comm's owner (a detached comm re-attaches to it)
ADOPT_METHOD = "commspec/adopt"


def advertises(kernel_info: object) -> bool:
    """Whether a ``kernel_info_reply`` content says the kernel keeps this specification."""
    if not isinstance(kernel_info, dict):
        return False
    features = kernel_info.get("supported_features")
    return isinstance(features, list) and FEATURE in features


class ErrorCode(NamedTuple):
    code: int
    name: str
    meaning: str
    #: the failure outcome it reports, for the commspec codes
    outcome: RequestState | StdinRequestState | None = None


INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode(INVALID_REQUEST, "invalid request",
              "JSON-RPC: the data has an `id` but is neither a request nor a reply "
              "(no string `method`, or an `id` that is not a string or a number)."),
    ErrorCode(METHOD_NOT_FOUND, "method not found",
              "JSON-RPC: the comm's handler has no such method, or the frontend no "
              "handler for an `rpc_request`."),
    ErrorCode(INVALID_PARAMS, "invalid params", "JSON-RPC: the method refused its params."),
    ErrorCode(INTERNAL_ERROR, "internal error",
              "JSON-RPC: the handler failed, or its result cannot be encoded as JSON."),
    ErrorCode(-32001, "undeliverable", "Nobody could receive the request: it never pended.",
              RequestState.UNDELIVERABLE),
    ErrorCode(-32002, "invalidated", "The peer that had to answer went away.",
              RequestState.INVALIDATED),
    ErrorCode(-32003, "comm closed",
              "The request's comm closed, or is not open: also the answer to a request "
              "on a comm the receiver does not hold.", RequestState.CANCELLED),
    ErrorCode(-32004, "timed out", "The caller's deadline passed.", RequestState.TIMED_OUT),
    ErrorCode(-32005, "no reply", "The kernel went idle on the request without answering.",
              RequestState.NO_REPLY),
    ErrorCode(-32006, "unreachable", "A stdin request's frontend is gone.",
              StdinRequestState.UNREACHABLE),
    ErrorCode(-32007, "interrupted", "A stdin request ended by interrupt or shutdown.",
              StdinRequestState.INTERRUPTED),
)

#: the code of each failure outcome, by the terminal state's value
FAILURE_CODES: dict[str, int] = {
    e.outcome.value: e.code for e in ERROR_CODES if e.outcome is not None
}
