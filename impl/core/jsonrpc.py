"""JSON-RPC inside comm_msg data, as Positron and ark use it (SPEC.md, "Message formats").

Rules, in this order:
- data with ``result`` or ``error`` is a reply. It is correlated by the Jupyter
  ``parent_header.msg_id``, which must name a request its receiver sent; ``id``,
  ``jsonrpc`` and ``method`` may be present (ark's replies carry ``method`` and no
  ``id``; Positron's carry all three) and are never used for correlation.
- otherwise, data without ``id`` is a notification (application data included);
- otherwise, data with a string ``method`` and an ``id`` that is a string or a
  number (JSON-RPC 2.0; booleans are not numbers) is a request. Its ``id`` is the
  caller's own: the receiver echoes it and never relies on it being unique.
- anything else is invalid; one that carries an ``id`` is answered -32600, with
  that ``id`` if it is a valid one and ``null`` otherwise (JSON-RPC 2.0): an invalid
  id is never echoed, so no peer can make the answer itself unsendable (a list
  nested 1,000 deep decodes, but orjson encodes at most 255 levels).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from commspec.model.machines import RequestState
from commspec.model.messages import (
    FAILURE_CODES,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
)

__all__ = [
    "COMM_CLOSED_CODE",
    "INTERNAL_ERROR",
    "INVALID_REQUEST",
    "JSONRPC",
    "METHOD_NOT_FOUND",
    "MessageKind",
    "classify",
    "is_valid_id",
    "parse_reply",
    "reply_id",
    "rpc_error",
    "rpc_notification",
    "rpc_request",
    "rpc_result",
]

JSONRPC = "2.0"
#: the answer to a request on a comm its receiver does not hold (the registry's -32003)
COMM_CLOSED_CODE = FAILURE_CODES[RequestState.CANCELLED.value]

JsonDict = dict[str, Any]


class MessageKind(Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    REPLY = "reply"
    INVALID = "invalid"


def classify(data: Any) -> MessageKind:
    """What a comm_msg's data is, by the rules above (a reply first)."""
    if not isinstance(data, dict):
        return MessageKind.INVALID
    if "result" in data or "error" in data:
        return MessageKind.REPLY
    if "id" not in data:
        return MessageKind.NOTIFICATION
    if isinstance(data.get("method"), str) and is_valid_id(data["id"]):
        return MessageKind.REQUEST
    return MessageKind.INVALID


def is_valid_id(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def reply_id(data: JsonDict) -> str | int | float | None:
    """The id an answer to ``data`` carries: its own if valid, else null."""
    value = data.get("id")
    return value if is_valid_id(value) else None


def rpc_request(request_id: str | int, method: str, params: Any = None) -> JsonDict:
    data: JsonDict = {"jsonrpc": JSONRPC, "id": request_id, "method": method}
    if params is not None:
        data["params"] = params
    return data


def rpc_notification(method: str, params: Any = None) -> JsonDict:
    data: JsonDict = {"jsonrpc": JSONRPC, "method": method}
    if params is not None:
        data["params"] = params
    return data


def rpc_result(request_id: Any, result: Any) -> JsonDict:
    return {"jsonrpc": JSONRPC, "id": request_id, "result": result}


def rpc_error(request_id: Any, code: int, message: str) -> JsonDict:
    return {"jsonrpc": JSONRPC, "id": request_id, "error": {"code": code, "message": message}}


def parse_reply(content: Any) -> tuple[bool, Any] | None:
    """(True, result), (False, (code, message)), or None if it is neither."""
    if not isinstance(content, dict):
        return None
    if "result" in content and "error" not in content:
        return (True, content["result"])
    error = content.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message", "")
        if isinstance(code, int) and not isinstance(code, bool):
            return (False, (code, str(message)))
    return None
