"""JSON-RPC inside comm_msg data, as Positron and ark use it.

Rules:
- data with an ``id`` and a string ``method`` is a request; data without ``id``
  is a notification; data with an ``id`` and ``result`` or ``error`` is a reply.
  Replies are routed by the Jupyter msg_id of their parent, never by this id.
- Anything else is invalid: a request that carries an ``id`` is answered -32600.
- An id is a string or a number (JSON-RPC 2.0; booleans are not numbers).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_REQUEST",
    "JSONRPC",
    "METHOD_NOT_FOUND",
    "MessageKind",
    "classify",
    "is_valid_id",
    "parse_reply",
    "rpc_error",
    "rpc_notification",
    "rpc_request",
    "rpc_result",
]

JSONRPC = "2.0"
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603

JsonDict = dict[str, Any]


class MessageKind(Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    REPLY = "reply"
    INVALID = "invalid"


def classify(data: Any) -> MessageKind:
    """What a comm_msg's data is, by the presence of ``id``, ``method``, ``result``/``error``."""
    if not isinstance(data, dict):
        return MessageKind.INVALID
    if "id" not in data:
        return MessageKind.NOTIFICATION
    if "method" in data:
        if isinstance(data["method"], str) and is_valid_id(data["id"]):
            return MessageKind.REQUEST
        return MessageKind.INVALID
    if "result" in data or "error" in data:
        return MessageKind.REPLY
    return MessageKind.INVALID


def is_valid_id(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


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
