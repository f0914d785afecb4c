"""The Jupyter wire format, through ``jupyter_client.session.Session``.

Session signs, verifies and rejects replays (it keeps a history of the
signatures it has accepted); this module adds what an endpoint needs around
it: one place that turns every way a frame can be bad into a typed
:class:`~commspec.impl.errors.BadMessage` with a reason, so the endpoint logs
one line, counts the reason, and moves no state.

Checks, in order: size (before any parsing), the ``<IDS|MSG>`` delimiter and
the four signed frames (truncated), signature (mis-signed / replayed, by
Session), JSON (malformed), then the fields a message must have.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from jupyter_client.session import DELIM, Session

from .errors import BadMessage, BadMessageReason

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "Codec", "Received", "Wire"]

PROTOCOL_VERSION = "5.5"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Message = dict[str, Any]


@dataclass(frozen=True)
class Received:
    """A verified, parsed message and the routing frames in front of it."""

    identities: list[bytes]
    msg: Message

    @property
    def msg_type(self) -> str:
        value: str = self.msg["header"]["msg_type"]
        return value

    @property
    def msg_id(self) -> str:
        value: str = self.msg["header"]["msg_id"]
        return value

    @property
    def content(self) -> Any:
        return self.msg["content"]

    @property
    def parent_msg_id(self) -> str | None:
        value = self.msg["parent_header"].get("msg_id")
        return value if isinstance(value, str) else None


class Wire:
    """Builds, signs, sends, receives and verifies messages for one endpoint."""

    def __init__(
        self,
        key: bytes,
        *,
        signature_scheme: str = "hmac-sha256",
        username: str = "commspec",
        session_id: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        digest_history_size: int = 2**16,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        kwargs: dict[str, Any] = {
            "key": key,
            "signature_scheme": signature_scheme,
            "username": username,
            "digest_history_size": digest_history_size,
            # The endpoint may be built before a fork in tests; signing must not stop then.
            "check_pid": False,
        }
        if session_id is not None:
            kwargs["session"] = session_id
        self.session = Session(**kwargs)
        self.max_message_bytes = max_message_bytes

    @property
    def session_id(self) -> str:
        value: str = self.session.session
        return value

    # -- sending ----------------------------------------------------------------

    def message(
        self,
        msg_type: str,
        content: Any,
        parent: Message | None = None,
        metadata: Message | None = None,
    ) -> Message:
        """A new message (its ``msg_id`` known before it is sent)."""
        msg: Message = self.session.msg(msg_type, content, parent=parent, metadata=metadata)
        msg["header"]["version"] = PROTOCOL_VERSION
        return msg

    def send(
        self,
        socket: zmq.Socket[bytes],
        msg: Message,
        identities: Sequence[bytes] = (),
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        """Sign and send; zmq errors (EHOSTUNREACH...) reach the caller as raised."""
        self.session.send(
            socket, msg, ident=list(identities) or None, buffers=list(buffers) if buffers else None
        )

    # -- receiving --------------------------------------------------------------

    def recv(self, socket: zmq.Socket[bytes], channel: str) -> Received | None:
        """The next message, None if none is queued; BadMessage if it is bad."""
        try:
            frames = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        return self.parse(frames, channel)

    def parse(self, frames: list[bytes], channel: str) -> Received:
        def bad(reason: BadMessageReason, detail: str) -> BadMessage:
            return BadMessage(reason, detail, channel)

        size = sum(len(f) for f in frames)
        if size > self.max_message_bytes:
            raise bad(
                BadMessageReason.OVERSIZED, f"{size} bytes, the limit is {self.max_message_bytes}"
            )
        try:
            cut = frames.index(DELIM)
        except ValueError:
            raise bad(BadMessageReason.TRUNCATED, "no <IDS|MSG> delimiter") from None
        identities, signed = frames[:cut], frames[cut + 1 :]
        if len(signed) < 5:
            raise bad(
                BadMessageReason.TRUNCATED,
                f"{len(signed)} frames after the delimiter, at least 5 needed",
            )
        try:
            msg = self.session.deserialize(signed, content=True, copy=True)
        except json.JSONDecodeError as e:
            raise bad(BadMessageReason.MALFORMED_JSON, str(e)) from None
        except ValueError as e:
            text = str(e)
            if text.startswith("Duplicate Signature"):
                raise bad(BadMessageReason.REPLAYED, "signature seen before") from None
            if text.startswith(("Invalid Signature", "Unsigned Message")):
                raise bad(BadMessageReason.MISSIGNED, text.split(":")[0]) from None
            raise bad(BadMessageReason.MALFORMED_JSON, text) from None
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise bad(BadMessageReason.MISSING_FIELDS, f"{type(e).__name__}: {e}") from None
        problem = _missing_fields(msg)
        if problem:
            raise bad(BadMessageReason.MISSING_FIELDS, problem)
        return Received(identities, msg)


def _missing_fields(msg: Message) -> str:
    header = msg.get("header")
    if not isinstance(header, dict):
        return "header is not an object"
    for key in ("msg_id", "msg_type"):
        if not isinstance(header.get(key), str) or not header[key]:
            return f"header.{key} is missing or not a string"
    for key in ("parent_header", "metadata", "content"):
        if not isinstance(msg.get(key), dict):
            return f"{key} is not an object"
    return ""


class Codec:
    """Encode and decode signed Jupyter messages, no sockets (a stand-in over Session
    until the fast codec lands; same API)."""

    def __init__(
        self,
        key: bytes,
        *,
        signature_scheme: str = "hmac-sha256",
        session_id: str | None = None,
        username: str = "commspec",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        replay_window: int = 2**16,
    ) -> None:
        self._wire = Wire(key, signature_scheme=signature_scheme, username=username,
                          session_id=session_id, max_message_bytes=max_message_bytes,
                          digest_history_size=replay_window)
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._count = itertools.count(1)

    @property
    def session_id(self) -> str:
        return self._wire.session_id

    def new_msg_id(self) -> str:
        return f"{self._prefix}{next(self._count)}"

    def encode(self, msg_id: str, msg_type: str, content: Any,
               parent: Mapping[str, Any] | None = None,
               metadata: Mapping[str, Any] | None = None) -> list[bytes]:
        session = self._wire.session
        header = session.msg_header(msg_type)
        header["msg_id"] = msg_id
        header["version"] = PROTOCOL_VERSION
        msg = session.msg(msg_type, content, parent=dict(parent) if parent else None,
                          header=header, metadata=dict(metadata) if metadata else None)
        frames: list[bytes] = session.serialize(msg)
        return frames

    def decode(self, frames: Sequence[Any], channel: str) -> Received:
        return self._wire.parse([bytes(f) for f in frames], channel)
