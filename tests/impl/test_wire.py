"""The wire codec against jupyter_client's Session, the compatibility reference.

Session must accept every message we produce (same key), we must accept every message
Session produces with equal content, and bad messages are refused where Session
refuses them, with the reason the endpoints count. The checkers used here are plain
functions, so the last tests can run them on deliberately broken codecs and show
them failing.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.jsonutil import extract_dates
from jupyter_client.session import Session

from commspec.impl import wire
from commspec.impl.errors import BadMessage, BadMessageReason
from commspec.impl.wire import DELIMITER, PROTOCOL_VERSION, Codec, Received, Wire

KEY = b"a test key, not a secret"
SCHEMES = ("hmac-sha256", "hmac-sha512", "hmac-md5")
R = BadMessageReason
Frames = list[bytes]

relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(key: bytes = KEY, scheme: str = "hmac-sha256", **kwargs: Any) -> Session:
    return Session(key=key, signature_scheme=scheme, check_pid=False, **kwargs)


def comm_msg_content() -> dict[str, Any]:
    """A comm_msg of real size: a JSON-RPC echo request with a 200-byte parameter."""
    return {"comm_id": uuid.uuid4().hex, "data": {
        "jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": "echo", "params": "x" * 200}}


def reason_of(codec: Codec, frames: list[Any]) -> BadMessageReason | None:
    try:
        codec.decode(frames, "shell")
    except BadMessage as e:
        assert e.channel == "shell"
        return e.reason
    return None


def session_refuses(session: Session, frames: Frames) -> bool:
    _, signed = session.feed_identities(frames)
    try:
        session.deserialize(signed)
    except (ValueError, TypeError, KeyError):
        return True
    return False


def comparable(msg: dict[str, Any]) -> dict[str, Any]:
    """What Session.deserialize returns, made comparable: dates parsed, buffers as bytes."""
    return {
        "header": extract_dates(dict(msg["header"])),
        "parent_header": extract_dates(dict(msg["parent_header"])),
        "msg_id": msg["msg_id"],
        "msg_type": msg["msg_type"],
        "metadata": msg["metadata"],
        "content": msg["content"],
        "buffers": [bytes(b) for b in msg["buffers"]],
    }


# -- strategies -------------------------------------------------------------------

# JSON both sides carry exactly: orjson's integers are 64-bit, NaN is not JSON, and
# Hypothesis's text leaves out lone surrogates (not UTF-8).
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=16,
)
objects = st.dictionaries(st.text(max_size=10), values, max_size=5)
msg_types = st.sampled_from(["comm_msg", "comm_open", "status", "execute_request"]) | st.text(
    min_size=1, max_size=12)
buffers = st.lists(st.binary(max_size=64), max_size=3)
identities = st.lists(st.binary(min_size=1, max_size=16).filter(lambda b: b != DELIMITER),
                      max_size=2)


PARENT_MAKER = reference()


@st.composite
def parents(draw: st.DrawFn) -> dict[str, Any] | None:
    kind = draw(st.sampled_from(["none", "session", "ours"]))
    if kind == "none":
        return None
    if kind == "session":
        header: dict[str, Any] = PARENT_MAKER.msg_header(draw(msg_types))
        return header
    codec = Codec(KEY)
    return codec.header(codec.new_msg_id(), draw(msg_types))


# -- checkers (also run on broken codecs at the end) ------------------------------


def check_session_accepts_ours(make: Callable[..., Codec], scheme: str = "hmac-sha256") -> None:
    codec = make(KEY, signature_scheme=scheme, session_id="s-1", username="u")
    content = comm_msg_content()
    parent = reference().msg_header("comm_msg")
    msg_id = codec.new_msg_id()
    frames = codec.encode(msg_id, "comm_msg", content, parent, {"m": [1]})
    assert len(frames) == 6 and frames[0] == DELIMITER
    got = reference(scheme=scheme).deserialize([*frames[1:], b"buf"])
    assert got["header"]["msg_id"] == msg_id
    assert got["header"]["msg_type"] == "comm_msg"
    assert got["header"]["session"] == "s-1"
    assert got["header"]["username"] == "u"
    assert got["header"]["version"] == PROTOCOL_VERSION
    assert isinstance(got["header"]["date"], datetime)
    assert got["parent_header"] == parent
    assert got["metadata"] == {"m": [1]}
    assert got["content"] == content
    assert [bytes(b) for b in got["buffers"]] == [b"buf"]


def check_we_accept_session(make: Callable[..., Codec], scheme: str = "hmac-sha256") -> None:
    session = reference(scheme=scheme)
    sent = session.msg("comm_msg", comm_msg_content(), parent=session.msg_header("x"),
                       metadata={"k": "v"})
    frames = [b"route", *session.serialize(sent), b"buffer"]
    received = make(KEY, signature_scheme=scheme).decode(frames, "shell")
    assert received.identities == (b"route",)
    expected = reference(scheme=scheme).deserialize(frames[2:])
    assert comparable(received.msg) == comparable(expected)
    assert received.content == sent["content"]


def check_refusals(make: Callable[..., Codec]) -> None:
    """Unsigned, mis-signed and tampered messages are refused, as Session refuses them."""
    good = reference().serialize(reference().msg("status", {"execution_state": "busy"}))
    assert reason_of(make(KEY), good) is None
    for bad, _ in tampered(good):
        assert session_refuses(reference(), bad)
        assert reason_of(make(KEY), bad) is R.MISSIGNED


def check_replays(make: Callable[..., Codec]) -> None:
    frames = reference().serialize(reference().msg("status", {"execution_state": "idle"}))
    codec, session = make(KEY), reference()
    assert reason_of(codec, frames) is None and not session_refuses(session, frames)
    assert reason_of(codec, frames) is R.REPLAYED and session_refuses(session, frames)


def check_fields(make: Callable[..., Codec]) -> None:
    for parts, _ in missing_fields():
        assert reason_of(make(KEY), signed_by(reference(), *parts)) is R.MISSING_FIELDS


def check_non_str_keys(make: Callable[..., Codec]) -> None:
    content = {1: "one", None: "none", False: "false", 2.5: "float", "s": {2: [3]}}
    frames = make(KEY).encode("id", "comm_msg", content)
    assert orjson.loads(frames[5]) == json.loads(json.dumps(content))


def check_size_comes_first(make: Callable[..., Codec]) -> None:
    frames = [b"x" * 50, DELIMITER, b"bad signature", b"{not json", b"{}", b"{}", b"{}"]
    limit = sum(map(len, frames))
    assert reason_of(make(KEY, max_message_bytes=limit - 1), frames) is R.OVERSIZED
    assert reason_of(make(KEY, max_message_bytes=limit), frames) is R.MISSIGNED


CHECKS: dict[str, Callable[[Callable[..., Codec]], None]] = {
    "session_accepts_ours": check_session_accepts_ours,
    "we_accept_session": check_we_accept_session,
    "refusals": check_refusals,
    "replays": check_replays,
    "fields": check_fields,
    "non_str_keys": check_non_str_keys,
    "size_first": check_size_comes_first,
}


def tampered(frames: Frames) -> Iterator[tuple[Frames, str]]:
    """Copies of a signed message ``[DELIM, sig, h, p, m, c]`` that must not verify."""
    for i, name in zip(range(2, 6), ("header", "parent", "metadata", "content"), strict=True):
        bad = list(frames)
        bad[i] = bad[i][:-1] + b" " + bad[i][-1:]  # still JSON, not what was signed
        yield bad, f"{name} changed"
    yield [frames[0], b"", *frames[2:]], "unsigned"
    impostor = reference(key=b"another key")
    yield [frames[0], impostor.sign(frames[2:6]), *frames[2:]], "signed with another key"
    yield [frames[0], frames[1][:-2], *frames[2:]], "signature cut short"
    yield [frames[0], frames[1].upper(), *frames[2:]], "signature in upper case"


def signed_by(session: Session, header: bytes, parent: bytes = b"{}", metadata: bytes = b"{}",
              content: bytes = b"{}") -> Frames:
    parts = [header, parent, metadata, content]
    return [DELIMITER, session.sign(parts), *parts]


def header_json(**fields: Any) -> bytes:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "status", "username": "u",
              "session": "s", "date": "2024-01-01T00:00:00.000000Z", "version": "5.5"}
    header.update(fields)
    return json.dumps({k: v for k, v in header.items() if v is not None}).encode()


def missing_fields() -> list[tuple[tuple[bytes, ...], str]]:
    return [
        ((header_json(msg_id=None),), "no msg_id"),
        ((header_json(msg_type=None),), "no msg_type"),
        ((header_json(msg_type=""),), "empty msg_type"),
        ((header_json(msg_id=7),), "msg_id not a string"),
        ((b"[]",), "header not an object"),
        ((header_json(), b"[]"), "parent not an object"),
        ((header_json(), b"{}", b"null"), "metadata not an object"),
        ((header_json(), b"{}", b"{}", b"[1, 2]"), "content not an object"),
    ]


# -- compatibility with Session ---------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_session_accepts_what_we_encode(scheme: str) -> None:
    check_session_accepts_ours(Codec, scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_we_accept_what_session_produces(scheme: str) -> None:
    check_we_accept_session(Codec, scheme)


@relaxed
@given(msg_type=msg_types, content=objects, parent=parents(),
       metadata=st.none() | objects, extra=buffers)
def test_every_message_we_encode_deserialises_with_session(
    msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None,
    metadata: dict[str, Any] | None, extra: list[bytes],
) -> None:
    codec = Codec(KEY)
    msg_id = codec.new_msg_id()
    frames = codec.encode(msg_id, msg_type, content, parent, metadata)
    got = reference().deserialize([*frames[1:], *extra])
    assert got["msg_id"] == msg_id and got["msg_type"] == msg_type
    assert got["content"] == content
    assert got["metadata"] == (metadata or {})
    assert got["parent_header"] == extract_dates(dict(parent or {}))
    assert [bytes(b) for b in got["buffers"]] == extra


@relaxed
@given(msg_type=msg_types, content=objects, parent=parents(),
       metadata=st.none() | objects, extra=buffers, route=identities)
def test_every_message_session_produces_we_accept_with_equal_content(
    msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None,
    metadata: dict[str, Any] | None, extra: list[bytes], route: list[bytes],
) -> None:
    session = reference()
    sent = session.msg(msg_type, content, parent=parent, metadata=metadata)
    frames = [*route, *session.serialize(sent), *extra]
    received = Codec(KEY).decode(frames, "shell")
    assert list(received.identities) == route
    expected = reference().deserialize(frames[len(route) + 1 :])
    assert comparable(received.msg) == comparable(expected)
    assert received.content == content
    assert received.msg_id == sent["header"]["msg_id"]
    assert received.parent_msg_id == (parent or {}).get("msg_id")


def test_the_first_delimiter_counts_as_in_session_feed_identities() -> None:
    session = reference()
    frames = [b"route", *session.serialize(session.msg("status", {})), DELIMITER]
    received = Codec(KEY).decode(frames, "iopub")
    assert received.identities == (b"route",)
    assert [bytes(b) for b in received.msg["buffers"]] == [DELIMITER]
    assert session.feed_identities(frames)[0] == [b"route"]


def test_every_decoded_message_has_dicts_of_its_own() -> None:
    codec = Codec(KEY)
    one, two = (codec.decode(codec.encode(codec.new_msg_id(), "status", {}), "iopub").msg
                for _ in range(2))
    one["metadata"]["mine"] = one["parent_header"]["mine"] = one["content"]["mine"] = 1
    assert two["metadata"] == two["parent_header"] == two["content"] == {}


def test_no_content_is_an_empty_object_as_session_writes_it() -> None:
    frames = Codec(KEY).encode("id", "status", None)
    assert frames[5] == b"{}"
    assert reference().deserialize(frames[1:])["content"] == {}


def test_the_decoded_message_has_session_deserialize_s_shape() -> None:
    session = reference()
    frames = session.serialize(session.msg("status", {"execution_state": "busy"}))
    ours = Codec(KEY).decode(frames, "iopub").msg
    theirs = reference().deserialize(frames[1:])
    assert set(ours) == set(theirs)
    assert isinstance(ours["header"]["date"], str)  # a string is fine; no dateutil per message


@relaxed
@given(content=st.dictionaries(st.integers(-1000, 1000) | st.booleans() | st.none()
                               | st.text(max_size=5), values, max_size=5))
def test_non_str_keys_are_written_as_json_dumps_writes_them(content: dict[Any, Any]) -> None:
    frames = Codec(KEY).encode("id", "comm_msg", {"data": content})
    assert orjson.loads(frames[5]) == json.loads(json.dumps({"data": content}))


def test_non_str_keys_check() -> None:
    check_non_str_keys(Codec)


# -- header, date, message ids ----------------------------------------------------


def test_header_fields_in_jupyter_client_s_order() -> None:
    codec = Codec(KEY, session_id="sess", username="someone")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    header = json.loads(codec.encode("m-1", "status", {})[2])
    after = datetime.now(timezone.utc)
    assert list(header) == ["msg_id", "msg_type", "username", "session", "date", "version"]
    assert header["msg_id"] == "m-1" and header["msg_type"] == "status"
    assert header["username"] == "someone" and header["session"] == "sess"
    assert header["version"] == PROTOCOL_VERSION == "5.5"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", header["date"])
    date = datetime.fromisoformat(header["date"].replace("Z", "+00:00"))
    assert before <= date <= after


def test_dates_are_made_once_per_millisecond() -> None:
    now = [1_000_000_000.0005]
    date = wire._UtcDate(lambda: now[0])
    first = date.now()
    assert first == "2001-09-09T01:46:40.000000Z"
    now[0] = 1_000_000_000.0009  # the same millisecond: the same string object
    assert date.now() is first
    now[0] = 1_000_000_000.0012
    assert date.now() == "2001-09-09T01:46:40.001000Z"
    now[0] = 1_000_000_061.25
    assert date.now() == "2001-09-09T01:47:41.250000Z"


def test_a_fresh_session_id_unless_one_is_given() -> None:
    one, two = Codec(KEY), Codec(KEY)
    assert re.fullmatch(r"[0-9a-f]{32}", one.session_id)
    assert one.session_id != two.session_id
    assert Codec(KEY, session_id="mine").session_id == "mine"


def test_message_ids_are_unique_across_threads_and_codecs() -> None:
    codec, other = Codec(KEY), Codec(KEY)
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def take(into: list[str]) -> None:
        into.extend(codec.new_msg_id() for _ in range(5_000))

    threads = [threading.Thread(target=take, args=(ids,)) for ids in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for chunk in per_thread for i in chunk] + [other.new_msg_id() for _ in range(100)]
    assert len(set(ids)) == len(ids) == 20_100


def test_a_forked_child_makes_other_message_ids() -> None:
    codec = Codec(KEY)
    codec.new_msg_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write the next ids and leave at once
        try:
            os.write(write_end, " ".join(codec.new_msg_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            child = pipe.read().decode().split()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ours = [codec.new_msg_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(ours)


# -- refusals ---------------------------------------------------------------------


def test_unsigned_missigned_and_tampered_are_refused_where_session_refuses() -> None:
    check_refusals(Codec)


@pytest.mark.parametrize("case", range(8), ids=lambda i: f"tamper{i}")
def test_each_tampering_is_missigned(case: int) -> None:
    session = reference()
    good = session.serialize(session.msg("comm_msg", comm_msg_content()))
    bad, what = list(tampered(good))[case]
    assert session_refuses(reference(), bad), what
    with pytest.raises(BadMessage) as caught:
        Codec(KEY).decode(bad, "shell")
    assert caught.value.reason is R.MISSIGNED, what
    assert caught.value.detail == ("Unsigned Message" if what == "unsigned"
                                   else "Invalid Signature")


def test_a_replay_is_refused_where_session_refuses_it() -> None:
    check_replays(Codec)


def test_a_replay_through_other_identities_is_still_a_replay() -> None:
    codec, session = Codec(KEY), reference()
    frames = session.serialize(session.msg("status", {}))
    assert reason_of(codec, [b"one", *frames]) is None
    assert reason_of(codec, [b"two", b"hops", *frames]) is R.REPLAYED


def test_the_replay_history_is_bounded_oldest_first() -> None:
    session = reference()
    messages = [session.serialize(session.msg("status", {"n": n})) for n in range(4)]
    codec = Codec(KEY, replay_window=3)
    for frames in messages[:3]:
        assert reason_of(codec, frames) is None
    assert reason_of(codec, messages[0]) is R.REPLAYED
    assert reason_of(codec, messages[3]) is None  # pushes the oldest out
    assert reason_of(codec, messages[0]) is None
    assert reason_of(codec, messages[2]) is R.REPLAYED


def test_no_history_with_a_zero_window_as_session() -> None:
    frames = reference().serialize(reference().msg("status", {}))
    codec, session = Codec(KEY, replay_window=0), reference(digest_history_size=0)
    for _ in range(2):
        assert reason_of(codec, frames) is None
        assert not session_refuses(session, frames)


def test_a_forged_signature_does_not_enter_the_history() -> None:
    # Session records a signature before checking it (so a second look says "Duplicate");
    # we keep only valid ones, so forgeries cannot push real signatures out of the window.
    session = reference()
    good = session.serialize(session.msg("status", {}))
    forged = [good[0], reference(key=b"other").sign(good[2:6]), *good[2:]]
    codec = Codec(KEY, replay_window=1)
    assert reason_of(codec, good) is None
    assert reason_of(codec, forged) is R.MISSIGNED
    assert reason_of(codec, forged) is R.MISSIGNED
    assert reason_of(codec, good) is R.REPLAYED


def test_an_empty_key_signs_and_checks_nothing_as_session() -> None:
    ours, theirs = Codec(b""), reference(key=b"")
    frames = ours.encode("id-1", "status", {"execution_state": "busy"})
    assert frames[1] == b""
    assert reference(key=b"").deserialize(frames[1:])["content"] == {"execution_state": "busy"}
    signed_elsewhere = reference().serialize(reference().msg("status", {}))
    for sample in (frames, signed_elsewhere, [DELIMITER, b"anything", *frames[2:]]):
        for _ in range(2):  # and no replay history, as Session keeps none without a key
            assert reason_of(ours, sample) is None
            assert not session_refuses(theirs, sample)


@pytest.mark.parametrize(("frames", "why"), [
    ([], "nothing"),
    ([b"no delimiter at all"], "no delimiter"),
    ([b"id", b"<IDS|MSG", b"sig", b"{}", b"{}", b"{}", b"{}"], "a delimiter one byte short"),
    ([DELIMITER, b"sig", b"{}", b"{}", b"{}"], "four frames after the delimiter"),
    ([b"route", DELIMITER], "nothing after the delimiter"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_truncated(frames: Frames, why: str) -> None:
    assert reason_of(Codec(KEY), frames) is R.TRUNCATED, why


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("junk", [b"{not json", b"", b"\xff\xfe{}", b'{"a": NaN}', b"{} {}"],
                         ids=["syntax", "empty", "not_utf8", "nan", "trailing"])
def test_signed_non_json_is_malformed(position: int, junk: bytes) -> None:
    parts = [header_json(), b"{}", b"{}", b"{}"]
    parts[position] = junk
    assert reason_of(Codec(KEY), signed_by(reference(), *parts)) is R.MALFORMED_JSON


@pytest.mark.parametrize("case", range(len(missing_fields())),
                         ids=[why for _, why in missing_fields()])
def test_missing_fields(case: int) -> None:
    parts, why = missing_fields()[case]
    with pytest.raises(BadMessage) as caught:
        Codec(KEY).decode(signed_by(reference(), *parts), "shell")
    assert caught.value.reason is R.MISSING_FIELDS, why


def test_oversized_is_checked_before_anything_else() -> None:
    check_size_comes_first(Codec)


@pytest.mark.parametrize("kind", ["bytes", "frames"])
def test_oversized_counts_identities_and_buffers(kind: str) -> None:
    session = reference()
    frames: list[Any] = [b"route", *session.serialize(session.msg("status", {})), b"b" * 100]
    size = sum(map(len, frames))
    if kind == "frames":
        frames = [zmq.Frame(f) for f in frames]
    assert reason_of(Codec(KEY, max_message_bytes=size), frames) is None
    assert reason_of(Codec(KEY, max_message_bytes=size - 1), frames) is R.OVERSIZED


@pytest.mark.parametrize("bad", [
    object(), {1, 2}, b"bytes", 2**64, -(2**63) - 1, "lone \ud800 surrogate", {"k": [object()]},
    {(1, 2): "tuple key"},
], ids=["object", "set", "bytes", "int_over_u64", "int_under_i64", "surrogate", "nested",
        "tuple_key"])
def test_content_json_cannot_carry_raises_before_anything_is_returned(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        Codec(KEY).encode("id", "comm_msg", {"data": bad})


def test_nan_is_null_as_session_s_orjson_packer_writes_it() -> None:
    frames = Codec(KEY).encode("id", "comm_msg", {"x": math.nan, "y": math.inf})
    assert frames[5] == reference().pack({"x": math.nan, "y": math.inf}) == b'{"x":null,"y":null}'


def test_bad_signature_schemes_are_refused() -> None:
    for scheme in ("sha256", "hmac-", "hmac-nonesuch"):
        with pytest.raises(ValueError):
            Codec(KEY, signature_scheme=scheme)


# -- frames, memoryviews, sockets -------------------------------------------------


def test_frames_and_memoryviews_decode_as_bytes_do() -> None:
    session = reference(digest_history_size=0)
    sent = session.msg("comm_msg", comm_msg_content(), parent=session.msg_header("p"))
    frames = [b"route-1", b"route-2", *session.serialize(sent), b"buffer one", b"two"]
    as_bytes = Codec(KEY, replay_window=0).decode(frames, "shell")
    for variant in ([zmq.Frame(f) for f in frames], [memoryview(f) for f in frames],
                    [zmq.Frame(f) if i % 2 else memoryview(f) for i, f in enumerate(frames)],
                    [memoryview(bytearray(f)) for f in frames]):
        received = Codec(KEY, replay_window=0).decode(variant, "shell")
        assert received.identities == (b"route-1", b"route-2")
        assert all(type(i) is bytes for i in received.identities)
        assert comparable(received.msg) == comparable(as_bytes.msg)
        assert all(isinstance(b, memoryview) for b in received.msg["buffers"])


def test_a_non_byte_memoryview_is_measured_in_bytes() -> None:
    frames = [b"x", DELIMITER, b"", b"{}", b"{}", b"{}", b"{}"]
    wide = memoryview(bytearray(400)).cast("I")  # 100 items, 400 bytes
    assert reason_of(Codec(b"", max_message_bytes=399), [*frames, wide]) is R.OVERSIZED


@pytest.fixture
def socket_pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    try:
        dealer.setsockopt(zmq.IDENTITY, b"dealer-1")
        router.bind("inproc://wire-test")
        dealer.connect("inproc://wire-test")
        yield router, dealer
    finally:
        router.close(linger=0)
        dealer.close(linger=0)
        context.term()


def test_wire_round_trip_over_sockets_with_identities_and_buffers(
    socket_pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    router, dealer = socket_pair
    client, server = Wire(KEY, username="client"), Wire(KEY, username="kernel")
    request = client.message("comm_msg", comm_msg_content(), metadata={"trace": 1})
    client.send(dealer, request, buffers=[b"raw bytes", memoryview(b"a view")])
    assert router.poll(5000)
    received = server.parse(router.recv_multipart(copy=False), "shell")
    assert received.identities == (b"dealer-1",)
    assert received.msg_id == request["msg_id"] and received.content == request["content"]
    assert received.msg["metadata"] == {"trace": 1}
    assert [bytes(b) for b in received.msg["buffers"]] == [b"raw bytes", b"a view"]
    server.send(router, server.message("comm_msg", {"ok": True}, parent=received.msg),
                received.identities)
    assert dealer.poll(5000)
    reply = client.recv(dealer, "shell")
    assert reply is not None and reply.parent_msg_id == request["msg_id"]
    assert client.recv(dealer, "shell") is None


def test_wire_send_of_unencodable_content_sends_nothing(
    socket_pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    router, dealer = socket_pair
    client, server = Wire(KEY), Wire(KEY)
    with pytest.raises(TypeError):
        client.send(dealer, client.message("comm_msg", {"data": object()}))
    with pytest.raises(TypeError):
        client.send(dealer, client.message("comm_msg", {}), buffers=[object()])  # type: ignore[list-item]
    good = client.message("comm_msg", {"n": 1})
    client.send(dealer, good)
    assert router.poll(5000)
    received = server.recv(router, "shell")
    assert received is not None and received.msg_id == good["msg_id"]  # the first to arrive


def test_wire_keeps_its_session_attribute_for_old_callers() -> None:
    w = Wire(KEY, session_id="sess-7", username="kernel", signature_scheme="hmac-sha512")
    assert w.session.session == "sess-7" and w.session.key == KEY
    assert w.session.signature_scheme == "hmac-sha512"
    assert w.session is w.session  # built once
    # Callers serialise Wire.message with it, or sign frames with it, and parse with Wire.
    frames = w.session.serialize(w.message("status", {"execution_state": "busy"}))
    assert w.parse([b"topic", *frames], "iopub").content == {"execution_state": "busy"}
    assert isinstance(w.session.msg_id, str)


def test_wire_message_takes_a_parent_message_or_header() -> None:
    w, session = Wire(KEY), reference()
    parent = session.msg("comm_msg", {})
    for given_parent in (parent, parent["header"], {"header": parent["header"]}):
        msg = w.message("status", {"execution_state": "idle"}, parent=given_parent)
        assert msg["parent_header"] == parent["header"]
    msg = w.message("status", None)
    assert set(msg) == set(session.msg("status", {}))
    assert msg["content"] == {} and msg["parent_header"] == {} and msg["metadata"] == {}
    assert msg["msg_id"] == msg["header"]["msg_id"]
    with pytest.raises(KeyError):
        w.message("status", {}, parent={"not": "a header"})


def test_received_properties() -> None:
    w = Wire(KEY)
    parent = w.message("comm_msg", {})
    frames = w.codec.encode_message(w.message("comm_msg", {"a": 1}, parent=parent))
    received = w.parse(frames, "iopub")
    assert isinstance(received, Received)
    assert received.msg_type == "comm_msg" and received.content == {"a": 1}
    assert received.parent_msg_id == parent["msg_id"]
    assert Wire(KEY).parse(w.codec.encode("x", "status", {}), "iopub").parent_msg_id is None


# -- the checkers fail on broken codecs --------------------------------------------


def _signs_three_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Codec.signature
    monkeypatch.setattr(Codec, "signature", lambda self, *parts: real(self, *parts[:3]))


def _forgets_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire._ReplayHistory, "add", lambda self, signature: None)


def _checks_no_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Codec, "_verify", lambda self, signature, parts, channel: None)


def _checks_no_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_missing_fields", lambda *parts: "")


def _refuses_non_str_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_LENIENT", orjson.OPT_UTC_Z)


def _drops_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Codec.header

    def header(self: Codec, msg_id: str, msg_type: str) -> dict[str, Any]:
        value = real(self, msg_id, msg_type)
        del value["version"]
        return value

    monkeypatch.setattr(Codec, "header", header)


def _parses_before_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Codec.decode

    def decode(self: Codec, frames: Any, channel: str) -> Received:
        limit, self.max_message_bytes = self.max_message_bytes, 2**62
        try:
            received = real(self, frames, channel)  # verified and parsed first ...
        finally:
            self.max_message_bytes = limit
        if sum(map(len, frames)) > limit:  # ... measured after
            raise BadMessage(R.OVERSIZED, "too late", channel)
        return received

    monkeypatch.setattr(Codec, "decode", decode)


BROKEN = {
    "signs_three_frames": (_signs_three_frames, {"session_accepts_ours", "we_accept_session"}),
    "forgets_signatures": (_forgets_signatures, {"replays"}),
    "checks_no_signature": (_checks_no_signature, {"refusals"}),
    "checks_no_fields": (_checks_no_fields, {"fields"}),
    "refuses_non_str_keys": (_refuses_non_str_keys, {"non_str_keys"}),
    "drops_the_version": (_drops_the_version, {"session_accepts_ours"}),
    "parses_before_measuring": (_parses_before_measuring, {"size_first"}),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_checks_fail_on_a_broken_codec(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    breaks, caught_by = BROKEN[name]
    for check in caught_by:  # each passes on the real codec ...
        CHECKS[check](Codec)
    breaks(monkeypatch)
    for check in caught_by:  # ... and fails on the broken one
        with pytest.raises((AssertionError, LookupError, TypeError, ValueError, BadMessage)):
            CHECKS[check](Codec)
