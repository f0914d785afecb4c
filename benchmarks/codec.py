"""The wire codec alone: microseconds of CPU per message, ours against jupyter_client's Session.

The message is a comm_msg of real size (a JSON-RPC echo request with a 200-byte
parameter, parented to a request header). *encode + sign*: a new message to its six
signed frames (ours: ``Codec.encode``; Session: ``Session.msg`` then
``serialize``). *verify + decode*: the frames, with a routing id in front, to a
verified message dict (ours: ``Codec.decode``; Session: ``feed_identities`` then
``deserialize``, the path jupyter_client and ipykernel take), from bytes and from
``zmq.Frame`` lists (a ``copy=False`` receive; Session with ``copy=False``). Every message
decoded is a distinct one (a signature seen twice is a replay) and each repeat
starts with a fresh codec and Session, so the replay histories hold the same.

Timed with ``time.process_time`` (CPU of this one thread): the machine is shared,
and time spent descheduled is not the codec's. Ours and Session alternate in every
repeat; the median of the repeats is printed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from jupyter_client.session import Session

from commspec.impl.wire import Codec

from .common import PAYLOAD, median

KEY = uuid.uuid4().hex.encode()


@dataclass
class CodecCost:
    what: str
    #: CPU microseconds per message, medians of the repeats
    ours: float
    session: float


def _content() -> dict[str, Any]:
    return {"comm_id": uuid.uuid4().hex, "data": {
        "jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": "echo", "params": PAYLOAD}}


def _per_message(run: Callable[[], None], n: int) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) / n * 1e6


def _encode_once(n: int) -> tuple[float, float]:
    codec = Codec(KEY)
    session = Session(key=KEY, check_pid=False)
    parent = session.msg_header("comm_msg")
    content = _content()

    def ours() -> None:
        encode, new_id = codec.encode, codec.new_msg_id
        for _ in range(n):
            encode(new_id(), "comm_msg", content, parent)

    def theirs() -> None:
        msg, serialize = session.msg, session.serialize
        for _ in range(n):
            serialize(msg("comm_msg", content, parent=parent))

    return _per_message(ours, n), _per_message(theirs, n)


def _decode_once(n: int, as_frames: bool) -> tuple[float, float]:
    sender = Codec(KEY)
    parent = sender.header(sender.new_msg_id(), "comm_msg")
    content = _content()
    messages: list[list[Any]] = [
        [b"routing-id", *sender.encode(sender.new_msg_id(), "comm_msg", content, parent)]
        for _ in range(n)]
    if as_frames:
        messages = [[zmq.Frame(f) for f in m] for m in messages]
    decode = Codec(KEY).decode  # fresh replay histories, both sides
    session = Session(key=KEY, check_pid=False)
    copy = not as_frames

    def ours() -> None:
        for m in messages:
            decode(m, "iopub")

    def theirs() -> None:
        feed, deserialize = session.feed_identities, session.deserialize
        for m in messages:
            deserialize(feed(m, copy=copy)[1], copy=copy)

    return _per_message(ours, n), _per_message(theirs, n)


ROWS: dict[str, Callable[[int], tuple[float, float]]] = {
    "encode + sign": _encode_once,
    "verify + decode": lambda n: _decode_once(n, as_frames=False),
    "verify + decode, zmq.Frame": lambda n: _decode_once(n, as_frames=True),
}


def measure(n: int, repeats: int) -> list[CodecCost]:
    """``n`` messages per repeat and row: at most Session's replay history (65,536), so
    Session never culls it. The rows alternate within each repeat."""
    if n > 2**16:
        raise ValueError("n must not exceed Session's digest history (65,536)")
    samples: dict[str, list[tuple[float, float]]] = {what: [] for what in ROWS}
    for _ in range(repeats):
        for what, run in ROWS.items():
            samples[what].append(run(n))
    return [CodecCost(what, median([s[0] for s in got]), median([s[1] for s in got]))
            for what, got in samples.items()]
