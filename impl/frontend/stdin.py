"""Answering the kernel's stdin requests: input_request, and ark's rpc_request.

The kernel addresses them to the frontend whose shell request it is handling
(our DEALER identity is the session id). Every one gets exactly one answer, at
once or later from any thread through a ``concurrent.futures.Future``:
- input_request ``{prompt, password}`` -> input_reply ``{value}``; with no
  handler registered, or a failing one, the value is empty (an input_reply
  cannot carry an error, and a kernel left waiting would wait forever);
- rpc_request ``{method, params}`` (ark's shape; the older ``{request: {method,
  params}}`` is read too) -> rpc_reply ``{result}`` or ``{error: {code, message}}``
  (-32601 with no handler, -32600 without a method, -32603 when the handler fails).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from commspec.impl.comm import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND
from commspec.impl.core.events import Message

log = logging.getLogger(__name__)

InputHandler = Callable[[str, bool], "str | Future[str]"]
RpcHandler = Callable[[str, Any], Any]
#: sends (reply msg_type, reply content) for the request it was made for
Answer = Callable[[str, dict[str, Any]], None]


class StdinAnswers:
    def __init__(self) -> None:
        self.input_handler: InputHandler | None = None
        self.rpc_handler: RpcHandler | None = None

    def answer(self, request: Message, send: Answer) -> bool:
        """Answer ``request`` through ``send`` (now or later); False if it is no stdin request."""
        kind = request["msg_type"]
        content = request["content"]
        if kind == "input_request":
            self._answer_input(content, send)
        elif kind == "rpc_request":
            self._answer_rpc(content, send)
        else:
            return False
        return True

    def _answer_input(self, content: dict[str, Any], send: Answer) -> None:
        def reply(value: object) -> None:
            send("input_reply", {"value": value if isinstance(value, str) else ""})

        handler = self.input_handler
        if handler is None:
            reply("")
            return
        try:
            value = handler(str(content.get("prompt", "")), bool(content.get("password", False)))
        except Exception:
            log.exception("the input_request handler failed; answering an empty value")
            reply("")
            return
        if isinstance(value, Future):
            value.add_done_callback(lambda f: reply("" if f.exception() else f.result()))
        else:
            reply(value)

    def _answer_rpc(self, content: dict[str, Any], send: Answer) -> None:
        def error(code: int, message: str) -> None:
            send("rpc_reply", {"error": {"code": code, "message": message}})

        request = content.get("request", content)
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            error(INVALID_REQUEST, "rpc_request without a method")
            return
        method: str = request["method"]
        handler = self.rpc_handler
        if handler is None:
            error(METHOD_NOT_FOUND, f"method not found: {method}")
            return
        try:
            value = handler(method, request.get("params"))
        except Exception as e:
            error(INTERNAL_ERROR, f"{type(e).__name__}: {e}")
            return

        def settle(f: Future[Any]) -> None:
            failure = f.exception()
            if failure is not None:
                error(INTERNAL_ERROR, f"{type(failure).__name__}: {failure}")
            else:
                send("rpc_reply", {"result": f.result()})

        if isinstance(value, Future):
            value.add_done_callback(settle)
        else:
            send("rpc_reply", {"result": value})
