"""The Jupyter wire format: build, sign, verify and parse messages.

A message on the wire is ``[routing ids | topic], <IDS|MSG>, signature, header,
parent_header, metadata, content, *buffers``; the signature is the hex HMAC of the
four JSON frames, buffers are unsigned. :class:`Codec` does this with orjson and a
pre-keyed HMAC, and produces what ``jupyter_client.session.Session`` accepts and
accepts what Session produces (``tests/impl/test_wire.py`` holds the one against the
other). :class:`Wire` is the endpoint-facing wrapper the kernel and frontend use.

Every way a frame can be bad becomes a typed :class:`~commspec.impl.errors.BadMessage`
with a reason, so an endpoint logs one line, counts the reason, and moves no state.
Checks, in order: size (before any parsing), the delimiter and the four signed frames
(truncated), the signature (mis-signed, replayed), JSON (malformed), then the fields a
message must have.

Where this differs from Session, on purpose:
- the header's ``date`` is a string on both sides (never a datetime), written once
  per millisecond;
- only a *valid* signature enters the replay history (Session records every
  signature it is shown, so forged ones could push real ones out), and the history
  forgets the oldest first rather than a random tenth;
- content JSON cannot carry raises instead of being coerced (Session turns sets and
  tuples into lists and bytes into base64, and falls back to its ``json_clean``);
  NaN and infinities become ``null`` and integers beyond 64 bits raise, as with
  Session's own orjson packer (its default when orjson is installed).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import orjson
import zmq

from .core.events import Channel, Message, Received
from .errors import BadMessage, BadMessageReason

if TYPE_CHECKING:
    from jupyter_client.session import Session

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DELIMITER",
    "PROTOCOL_VERSION",
    "Codec",
    "Frame",
    "Received",
    "Wire",
]

PROTOCOL_VERSION = "5.5"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DELIMITER = b"<IDS|MSG>"

JsonDict = dict[str, Any]
#: what a receive hands over: bytes from ``recv_multipart()``, Frames with ``copy=False``
Frame: TypeAlias = "bytes | zmq.Frame | memoryview"

_EMPTY = b"{}"
# Tried only when the plain dump fails (a TypeError): non-str keys cost about 40% more
# per dump with the option set, and almost no message has them.
_LENIENT = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
_MORE = int(zmq.SNDMORE)  # plain ints: an enum.Flag per frame costs ~0.7 us in pyzmq


def _json_reason(error: orjson.JSONDecodeError) -> BadMessageReason:
    # orjson stops at 1,024 levels and says so; Python's json would raise RecursionError.
    if error.msg.startswith("depth limit exceeded"):
        return BadMessageReason.TOO_DEEP
    return BadMessageReason.MALFORMED_JSON


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    except TypeError:
        return orjson.dumps(value, option=_LENIENT)


# A codec built before a fork would hand the child the parent's id prefix and count:
# the child gets fresh prefixes (the only thread there is the forking one).
_LIVE_CODECS: weakref.WeakSet[Codec] = weakref.WeakSet()


def _renew_prefixes_after_fork() -> None:
    for codec in list(_LIVE_CODECS):
        codec._renew_prefix()


os.register_at_fork(after_in_child=_renew_prefixes_after_fork)


class _UtcDate:
    """ISO 8601 UTC date strings as jupyter_client writes them, made once per millisecond.

    Thread-safe without a lock: each cache is one tuple, replaced whole.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second: tuple[int, str] = (-1, "")
        self._milli: tuple[int, str] = (-1, "")

    def now(self) -> str:
        milli = int(self._clock() * 1000)
        cached = self._milli
        if cached[0] == milli:
            return cached[1]
        second, rest = divmod(milli, 1000)
        prefix = self._second
        if prefix[0] != second:
            prefix = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = prefix
        text = f"{prefix[1]}.{rest:03d}000Z"
        self._milli = (milli, text)
        return text


class _ReplayHistory:
    """The last ``size`` accepted signatures; the oldest is forgotten first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def __contains__(self, signature: bytes) -> bool:
        return signature in self._seen

    def add(self, signature: bytes) -> None:
        if self._size == 0:  # as Session with digest_history_size 0: remember nothing
            return
        if len(self._order) >= self._size:
            self._seen.discard(self._order.popleft())
        self._seen.add(signature)
        self._order.append(signature)


class Codec:
    """Encodes and decodes signed Jupyter messages for one endpoint.

    ``encode`` and ``new_msg_id`` may be called from several threads; ``decode`` keeps
    the replay history, so one thread decodes (each endpoint's I/O thread does).
    """

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
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        if replay_window < 0:
            raise ValueError("replay_window must not be negative")
        algorithm = signature_scheme.removeprefix("hmac-")
        if algorithm == signature_scheme or algorithm not in hashlib.algorithms_available:
            raise ValueError(f"signature scheme {signature_scheme!r} is not hmac-<hash>")
        # Keyed once; each message signs on a copy, which skips re-deriving the pads.
        self._hmac = hmac.new(key, digestmod=algorithm) if key else None
        self.key = key
        self.signature_scheme = signature_scheme
        self.username = username
        self.max_message_bytes = max_message_bytes
        self._session_id = session_id if session_id is not None else uuid.uuid4().hex
        self._header: JsonDict = {
            "msg_id": "", "msg_type": "", "username": username,
            "session": self._session_id, "date": "", "version": PROTOCOL_VERSION,
        }
        self._date = _UtcDate()
        self._history = _ReplayHistory(replay_window)
        self._count = itertools.count()  # next() on it is atomic under the GIL
        self._prefix = ""
        self._renew_prefix()
        _LIVE_CODECS.add(self)

    @property
    def session_id(self) -> str:
        return self._session_id

    def _renew_prefix(self) -> None:
        self._prefix = uuid.uuid4().hex + "_"

    def new_msg_id(self) -> str:
        return self._prefix + str(next(self._count))

    # -- encoding ---------------------------------------------------------------

    def header(self, msg_id: str, msg_type: str) -> JsonDict:
        """A fresh header dict, dated now, in the key order jupyter_client writes."""
        header = self._header.copy()
        header["msg_id"] = msg_id
        header["msg_type"] = msg_type
        header["date"] = self._date.now()
        return header

    def encode(
        self,
        msg_id: str,
        msg_type: str,
        content: Any,
        parent: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[bytes]:
        """``[<IDS|MSG>, signature, header, parent_header, metadata, content]``.

        ``parent`` is the parent's header. Content JSON cannot carry raises TypeError
        or ValueError before anything is returned.
        """
        return self.sign_parts(
            _dumps(self.header(msg_id, msg_type)),
            _dumps(parent) if parent else _EMPTY,
            _dumps(metadata) if metadata else _EMPTY,
            _EMPTY if content is None else _dumps(content),
        )

    def encode_message(self, msg: Mapping[str, Any]) -> list[bytes]:
        """The same frames for a message dict (``header`` etc.), its header sent as it is."""
        parent = msg.get("parent_header")
        metadata = msg.get("metadata")
        content = msg.get("content")
        return self.sign_parts(
            _dumps(msg["header"]),
            _dumps(parent) if parent else _EMPTY,
            _dumps(metadata) if metadata else _EMPTY,
            _EMPTY if content is None else _dumps(content),
        )

    def sign_parts(
        self, header: bytes, parent: bytes, metadata: bytes, content: bytes
    ) -> list[bytes]:
        """Delimiter, signature and the four JSON frames given, already serialised."""
        return [DELIMITER, self.signature(header, parent, metadata, content),
                header, parent, metadata, content]

    def signature(self, *parts: bytes | memoryview) -> bytes:
        """The hex HMAC of ``parts`` in order; ``b""`` with an empty key."""
        if self._hmac is None:
            return b""
        h = self._hmac.copy()
        h.update(b"".join(parts))  # one update of a join beats four updates here
        return h.hexdigest().encode()

    # -- decoding ---------------------------------------------------------------

    def decode(self, frames: Sequence[Frame], channel: str, fd: int | None = None) -> Received:
        """Verify and parse one received message; BadMessage (with its reason) if bad.
        ``fd``: the connection it came by (``ZMQ_SRCFD``), if the caller read it."""
        plain = type(frames) is list and set(map(type, frames)) == _ALL_BYTES
        size = sum(map(len, frames)) if plain else sum(map(_nbytes, frames))
        if size > self.max_message_bytes:
            raise BadMessage(BadMessageReason.OVERSIZED,
                             f"{size} bytes, the limit is {self.max_message_bytes}", channel)
        views = cast("list[bytes | memoryview]", frames) if plain else _byte_views(frames)
        try:
            cut = views.index(DELIMITER)  # the first one, as Session.feed_identities
        except ValueError:
            raise BadMessage(BadMessageReason.TRUNCATED, "no <IDS|MSG> delimiter",
                             channel) from None
        signed = len(views) - cut - 1
        if signed < 5:
            raise BadMessage(BadMessageReason.TRUNCATED,
                             f"{signed} frames after the delimiter, at least 5 needed", channel)
        parts = views[cut + 2 : cut + 6]
        loads = orjson.loads
        if self._hmac is not None:
            self._verify(bytes(views[cut + 1]), parts, channel)
        try:
            # "{}" (most metadata, many parents) needs no parser, only a fresh dict
            header, parent, metadata, content = [
                {} if part == _EMPTY else loads(part) for part in parts]
        except orjson.JSONDecodeError as e:
            raise BadMessage(_json_reason(e), str(e), channel) from None
        problem = _missing_fields(header, parent, metadata, content)
        if problem:
            raise BadMessage(BadMessageReason.MISSING_FIELDS, problem, channel)
        msg: Message = {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": header["msg_type"],
            "parent_header": parent,
            "metadata": metadata,
            "content": content,
            "buffers": [memoryview(b) for b in views[cut + 6 :]],
        }
        return Received(Channel(channel), tuple(bytes(f) for f in views[:cut]), msg, fd)

    def _verify(self, signature: bytes, parts: list[bytes | memoryview], channel: str) -> None:
        if not signature:
            raise BadMessage(BadMessageReason.MISSIGNED, "Unsigned Message", channel)
        if signature in self._history:
            raise BadMessage(BadMessageReason.REPLAYED, "signature seen before", channel)
        if not hmac.compare_digest(signature, self.signature(*parts)):
            raise BadMessage(BadMessageReason.MISSIGNED, "Invalid Signature", channel)
        self._history.add(signature)


_ALL_BYTES = {bytes}


def _nbytes(frame: Frame) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def _byte_views(frames: Sequence[Frame]) -> list[bytes | memoryview]:
    """Frames, memoryviews or a mix as bytes and flat byte views (``==`` compares bytes).

    The frames up to the last JSON one are copied (small, and orjson reads them whole
    anyway: a Frame's cached ``bytes`` is cheaper than a view of it); the buffers after
    it are views, not copies.
    """
    views: list[bytes | memoryview] = []
    copy_until = len(frames)
    for index, frame in enumerate(frames):
        if index < copy_until:
            data = _copy(frame)
            if copy_until == len(frames) and data == DELIMITER:
                copy_until = index + 6  # the signature and the four JSON frames
            views.append(data)
        else:
            views.append(_view(frame))
    return views


def _copy(frame: Frame) -> bytes:
    if type(frame) is bytes:
        return frame
    if isinstance(frame, zmq.Frame):
        data: bytes = frame.bytes
        return data
    return bytes(frame)


def _view(frame: Frame) -> memoryview:
    if isinstance(frame, zmq.Frame):
        view: memoryview = frame.buffer
        return view
    return memoryview(frame).cast("B")


def _missing_fields(header: Any, parent: Any, metadata: Any, content: Any) -> str:
    if not isinstance(header, dict):
        return "header is not an object"
    for key in ("msg_id", "msg_type"):
        value = header.get(key)
        if not isinstance(value, str) or not value:
            return f"header.{key} is missing or not a string"
    for name, value in (("parent_header", parent), ("metadata", metadata),
                        ("content", content)):
        if not isinstance(value, dict):
            return f"{name} is not an object"
    return ""


def _parent_header(parent: Mapping[str, Any] | None) -> JsonDict:
    """A parent given as a whole message or as its header, as Session.msg takes it."""
    if not parent:
        return {}
    header = parent.get("header", parent)
    if "header" not in parent and "msg_id" not in parent:
        raise KeyError("parent is neither a message nor a header (no msg_id)")
    return header if isinstance(header, dict) else dict(header)


class Wire:
    """Builds, signs, sends, receives and verifies messages for one endpoint, on a Codec."""

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
        self.codec = Codec(
            key, signature_scheme=signature_scheme, session_id=session_id,
            username=username, max_message_bytes=max_message_bytes,
            replay_window=digest_history_size,
        )
        self.max_message_bytes = max_message_bytes
        self._session: Session | None = None

    @property
    def session_id(self) -> str:
        return self.codec.session_id

    @property
    def session(self) -> Session:
        """A jupyter_client Session with this wire's key, scheme and session id.

        For callers that still sign or serialise with it; built on first use (it is
        slow to build, and most endpoints never ask for it).
        """
        if self._session is None:
            from jupyter_client.session import Session

            codec = self.codec
            self._session = Session(
                key=codec.key, signature_scheme=codec.signature_scheme,
                username=codec.username, session=codec.session_id, check_pid=False,
            )
        return self._session

    # -- sending ----------------------------------------------------------------

    def message(
        self,
        msg_type: str,
        content: Any,
        parent: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """A new message (its ``msg_id`` known before it is sent), shaped as Session.msg's.

        ``parent`` is the parent message or its header.
        """
        header = self.codec.header(self.codec.new_msg_id(), msg_type)
        return {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": msg_type,
            "parent_header": _parent_header(parent),
            "content": {} if content is None else content,
            "metadata": dict(metadata) if metadata else {},
        }

    def send(
        self,
        socket: zmq.Socket[bytes],
        msg: Mapping[str, Any],
        identities: Sequence[bytes] = (),
        buffers: Sequence[bytes | memoryview] | None = None,
    ) -> None:
        """Sign and send; zmq errors (EHOSTUNREACH...) reach the caller as raised.

        Nothing is sent if the message cannot be encoded (TypeError / ValueError).
        """
        frames = [*identities, *self.codec.encode_message(msg)]
        extra = buffers or msg.get("buffers") or ()
        for index, buffer in enumerate(extra):  # checked before any frame goes out
            if not memoryview(buffer).contiguous:
                raise ValueError(f"buffer {index} is not contiguous")
        send = socket.send
        last = len(frames) - 1
        for index, frame in enumerate(frames):
            send(frame, _MORE if index < last or extra else 0)
        last = len(extra) - 1
        for index, buffer in enumerate(extra):
            # pyzmq copies small frames anyway; large buffers go without a copy.
            send(buffer, _MORE if index < last else 0, copy=False)

    # -- receiving --------------------------------------------------------------

    def recv(self, socket: zmq.Socket[bytes], channel: str) -> Received | None:
        """The next message, None if none is queued; BadMessage if it is bad."""
        try:
            frames = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        return self.codec.decode(frames, channel)

    def parse(self, frames: Sequence[Frame], channel: str) -> Received:
        return self.codec.decode(frames, channel)
