"""Requests the reference kernel answers but does not serve (SPEC, "Requirements on a
kernel": every shell and control request ends in exactly one reply).

Rules:
- The standard Jupyter requests a code-running kernel serves (execute, complete,
  inspect, history, is_complete) get their own reply type with ``status: "error"``,
  an ``ename`` that says this kernel runs no code and an ``evalue`` that says what it
  is for. Each reply also carries the fields its type always has, empty
  (``matches``, ``found``, ``history``...): stock clients read them without looking
  at ``status`` first (jupyter_console's completer does).
- ``is_complete_request`` is answered ``status: "unknown"``, the protocol's answer
  for a kernel that cannot tell; an ``error`` there makes jupyter_console warn that
  the status is invalid.
- An ``execute_request`` also publishes the error on IOPub (as a kernel whose code
  raised does), so a console prints why; its ``execution_count`` counts on.
- Any other ``*_request`` is unknown: an error reply of type ``*_reply``, and it is
  counted as bad input by the caller. A message that is not a request gets no reply.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NO_CODE", "UNSERVED", "error_content", "reply_type"]

JsonDict = dict[str, Any]

NO_CODE = "NoCodeExecution"
_WHAT_FOR = (
    "this is the commspec reference kernel: it runs no code. It serves comm RPCs on the "
    "targets commspec.echo and commspec.echo.persistent, to show how a comm RPC ends "
    "when a frontend goes away; `commspec demo` drives it."
)


def _cursor(content: JsonDict) -> int:
    pos = content.get("cursor_pos")
    return pos if isinstance(pos, int) and not isinstance(pos, bool) else 0


def _empty_fields(msg_type: str, content: JsonDict, count: int) -> JsonDict:
    """The fields each reply type always carries, empty."""
    if msg_type == "execute_request":
        return {"execution_count": count, "payload": [], "user_expressions": {}}
    if msg_type == "complete_request":
        pos = _cursor(content)
        return {"matches": [], "cursor_start": pos, "cursor_end": pos, "metadata": {}}
    if msg_type == "inspect_request":
        return {"found": False, "data": {}, "metadata": {}}
    if msg_type == "history_request":
        return {"history": []}
    return {}


#: the standard requests answered without being served
UNSERVED = frozenset(
    {"execute_request", "complete_request", "inspect_request", "history_request",
     "is_complete_request"}
)


def reply_type(msg_type: str) -> str:
    return msg_type.removesuffix("_request") + "_reply"


def error_content(msg_type: str, content: JsonDict, count: int) -> JsonDict:
    """The reply to a request of ``msg_type`` this kernel does not serve."""
    if msg_type == "is_complete_request":
        return {"status": "unknown"}
    if msg_type in UNSERVED:
        ename, evalue = NO_CODE, f"{msg_type}: {_WHAT_FOR}"
    else:
        ename, evalue = "UnknownMessageType", f"this kernel does not know {msg_type!r}"
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": [evalue],
            **_empty_fields(msg_type, content, count)}
