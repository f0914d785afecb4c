"""Hostile input, systematically (issue 10): every kind of bad input a peer can send, on
each of shell, control, stdin and IOPub where it can arrive, against one live kernel in
which a frontend (the owner) holds a default comm and a persistent comm.

After every case the kernel must be unharmed: it answers kernel_info on shell and on
control within a generous bound, both comms answer an echo, comm_info and each comm's
owner are as before, nothing pends, no I/O callback failed, the attackers' subscriptions
are gone with them, and the bad-input counter counted exactly what the case says, each
under its reason with one log line. A case returns once the kernel has read what it
sent (a reply on the same connection, a later subscription's welcome, or the count).
The few kinds counted nowhere check what they do instead: a timeout no timer can hold
gets an error reply, a far one (1e308 s) the frontend's answer, an echo too deep to
write back an error reply, a subscription that is not UTF-8 no welcome; an oversize
frame must cut its connection before the kernel reads on (libzmq refuses it unread
and reports no cause, so nothing counts it).

The kinds one by one, and why each is bad, are in test_impl_bad_input.py and
test_impl_presence_security.py; this module is the table that runs them all, channel by
channel, against the same kernel. One kernel for the module: the checks after each case
are what keeps the cases independent.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.session import DELIM, Session
from ki_peers import (
    KernelUnderTest,
    KeylessPeer,
    RawFrontend,
    ZmtpPeer,
    open_and_wait,
    wait_until,
)
from test_impl_bad_input import header_json, signed
from test_impl_presence_security import _read_up_to_here

from commspec.impl.comm import INTERNAL_ERROR
from commspec.impl.core.presence import PEER_TOPIC_PREFIX, peer_topic
from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.model.messages import ADOPT_METHOD

#: the bound on every wait for the kernel: generous, it is not a speed check
BOUND = 10.0
#: the kernel's message size limit here: small, so an oversize frame is cheap to send,
#: yet room for 100,000 levels of nesting (200 kB)
LIMIT = 256 * 1024
ROUTERS = ("shell", "control", "stdin")
#: a message each ROUTER channel takes from a frontend
ACCEPTED = {"shell": "kernel_info_request", "control": "kernel_info_request",
            "stdin": "input_reply"}
IMPOSTOR = Session(key=b"not the key", check_pid=False)
DEEP = 100_000


# =====================================================================
# the kernel, its owner frontend, and what a case may use
# =====================================================================


@dataclass
class Attack:
    """The kernel, the owner of its two comms, and the attackers a case made (closed
    when the case ends)."""

    kut: KernelUnderTest
    owner: RawFrontend
    default_comm: str
    persistent_comm: str
    attackers: list[RawFrontend | KeylessPeer | ZmtpPeer] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.kut.kernel.connection_info.key

    def stranger(self, *, subscribed: bool = False) -> RawFrontend:
        """Another frontend, not a commspec peer; ``subscribed``: once welcomed."""
        frontend = RawFrontend(self.kut.kernel.connection_info, peer=False)
        self.attackers.append(frontend)
        if subscribed:
            frontend.wait_welcome()
        return frontend

    def keyless(self) -> KeylessPeer:
        peer = KeylessPeer(self.kut.kernel.connection_info)
        self.attackers.append(peer)
        return peer

    def raw(self, channel: str) -> ZmtpPeer:
        socket_type = b"SUB" if channel == "iopub" else b"DEALER"
        peer = ZmtpPeer(self.kut.kernel.connection_info, channel, socket_type)
        self.attackers.append(peer)
        return peer

    def close_attackers(self) -> None:
        for attacker in self.attackers:
            attacker.close()
        self.attackers.clear()


@dataclass(frozen=True)
class Snapshot:
    """What bad input must not change, taken before a case."""

    comm_info: dict[str, Any]
    states: dict[str, str]
    owners: dict[str, bytes | None]
    subscriptions: int
    bad_input: Counter[str]
    io_failures: int


@pytest.fixture(scope="module")
def kernel(make_module_kernel: Callable[..., KernelUnderTest]) -> KernelUnderTest:
    return make_module_kernel(max_message_bytes=LIMIT)


@pytest.fixture(scope="module")
def owner(kernel: KernelUnderTest) -> Iterator[RawFrontend]:
    frontend = RawFrontend(kernel.kernel.connection_info)
    try:
        frontend.wait_welcome()
        yield frontend
    finally:
        frontend.close()


@pytest.fixture(scope="module")
def comms(owner: RawFrontend) -> tuple[str, str]:
    return open_and_wait(owner, ECHO), open_and_wait(owner, ECHO_PERSISTENT)


@pytest.fixture
def attack(kernel: KernelUnderTest, owner: RawFrontend,
           comms: tuple[str, str]) -> Iterator[Attack]:
    attack = Attack(kernel, owner, *comms)
    try:
        yield attack
    finally:
        attack.close_attackers()


def snapshot(attack: Attack) -> Snapshot:
    kernel = attack.kut.kernel
    states = kernel.comm_states()
    return Snapshot(comm_info(attack.owner), states,
                    {comm_id: kernel.comm_owner(comm_id) for comm_id in states},
                    kernel.subscriptions, kernel.bad_input, kernel.io_failures)


def comm_info(frontend: RawFrontend) -> dict[str, Any]:
    request = frontend.send(frontend.shell, "comm_info_request", {})
    comms: dict[str, Any] = frontend.reply_to(frontend.shell, request, BOUND)["content"]["comms"]
    return comms


def assert_unharmed(attack: Attack, before: Snapshot, counted: dict[str, int],
                    caplog: pytest.LogCaptureFixture) -> None:
    kernel, owner = attack.kut.kernel, attack.owner

    def new_bad_input() -> Counter[str]:
        return kernel.bad_input - before.bad_input

    # As many counted as expected, whatever the reasons: a wrong reason fails at once.
    try:
        wait_until(lambda: new_bad_input().total() >= sum(counted.values()),
                   f"bad input counted as {counted}", BOUND)
    except TimeoutError as e:
        raise AssertionError(f"{e}; counted instead: {dict(new_bad_input())}") from None
    for channel in ("shell", "control"):
        sock = getattr(owner, channel)
        request = owner.send(sock, "kernel_info_request", {})
        assert owner.reply_to(sock, request, BOUND)["msg_type"] == "kernel_info_reply"
    for comm_id in (attack.default_comm, attack.persistent_comm):
        token = uuid.uuid4().hex
        request = owner.request(comm_id, "echo", token)
        assert owner.wait_reply_to(request, BOUND) == {
            "jsonrpc": "2.0", "id": request["content"]["data"]["id"], "result": token}
    assert comm_info(owner) == before.comm_info
    assert kernel.comm_states() == before.states
    assert {c: kernel.comm_owner(c) for c in before.states} == before.owners
    assert (kernel.pending_count, kernel.stdin_pending_count) == (0, 0)
    assert kernel.io_failures == before.io_failures
    assert new_bad_input() == Counter(counted)
    for reason, times in counted.items():
        lines = [r.getMessage() for r in caplog.records if f"[{reason}]" in r.getMessage()]
        assert len(lines) == times, lines
    attack.close_attackers()
    wait_until(lambda: kernel.subscriptions == before.subscriptions,
               "the attackers' subscriptions gone with them", BOUND)
    assert kernel.live_peers == {owner.identity}


# =====================================================================
# sending, and knowing the kernel has read what was sent
# =====================================================================

Send = Callable[[Attack, str], None]


def sync(frontend: RawFrontend, channel: str) -> None:
    """Returns once the kernel has read what ``frontend`` sent on ``channel`` so far:
    on shell and control, a request's reply on the same connection (one peer's
    messages are read in order); stdin has no replies, so the count says it."""
    if channel in ("shell", "control"):
        sock = getattr(frontend, channel)
        frontend.reply_to(sock, frontend.send(sock, "kernel_info_request", {}), BOUND)


def frames_from_stranger(make: Callable[[RawFrontend, str], list[bytes]]) -> Send:
    """A case that sends the frames ``make`` builds on the channel, from a stranger."""
    def send(attack: Attack, channel: str) -> None:
        stranger = attack.stranger()
        stranger_socket = getattr(stranger, channel)
        stranger_socket.send_multipart(make(stranger, channel))
        sync(stranger, channel)
    return send


def message_from_stranger(msg_type: str,
                          content: Callable[[Attack], dict[str, Any]]) -> Send:
    """A case that sends one well-signed message from a stranger."""
    def send(attack: Attack, channel: str) -> None:
        stranger = attack.stranger()
        stranger.send(getattr(stranger, channel), msg_type, content(attack))
        sync(stranger, channel)
    return send


def accepted(make: Callable[[bytes, RawFrontend], list[bytes]]
             ) -> Callable[[RawFrontend, str], list[bytes]]:
    """Frames around a header of a message type the channel takes."""
    return lambda stranger, channel: make(header_json(ACCEPTED[channel]), stranger)


def replayed(attack: Attack, channel: str) -> None:
    stranger = attack.stranger()
    sock = getattr(stranger, channel)
    frames = signed(stranger.session, header_json(ACCEPTED[channel]))
    sock.send_multipart(frames)
    sock.send_multipart(frames)
    sync(stranger, channel)


def oversized_message(attack: Attack, channel: str) -> None:
    """Over the limit in all, yet every frame under it (buffers ride along unsigned)."""
    stranger = attack.stranger()
    sock = getattr(stranger, channel)
    frames = signed(stranger.session, header_json(ACCEPTED[channel]))
    sock.send_multipart([*frames, b"b" * (LIMIT // 2), b"b" * (LIMIT // 2)])
    sync(stranger, channel)


def unique() -> bytes:
    """Content no other case sends: the kernel remembers signatures (replays)."""
    return b'{"nonce": "' + uuid.uuid4().hex.encode() + b'"}'


def nested(levels: int) -> Any:
    """A list nested ``levels`` deep: orjson reads 1,024 levels but writes only 255."""
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def nested_json(levels: int) -> bytes:
    """JSON text of a list nested ``levels`` deep."""
    return b"[" * levels + b"]" * levels


def oversize_frame(attack: Attack, channel: str) -> None:
    """One frame over the limit, then an ordinary message on the same connection: the
    kernel's libzmq must refuse the frame and drop the connection (ZMQ_MAXMSGSIZE), never
    buffer it whole and read on to the next message."""
    peer = attack.raw(channel)
    follow = f"sync-{uuid.uuid4().hex}".encode()
    if channel == "iopub":
        big, after = [b"\x01" + b"t" * LIMIT], [b"\x01" + follow]
    else:
        session = Session(key=attack.key.encode(), check_pid=False)
        big = signed(session, header_json(ACCEPTED[channel]),
                     content=b'{"x": "' + b"x" * LIMIT + b'"}')
        after = signed(session, header_json(ACCEPTED[channel]))
    sent = peer.send_message(big) and peer.send_message(after)
    assert not sent or dropped(attack, peer, channel), \
        "the kernel read on past an oversize frame: it was buffered, not refused"


def dropped(attack: Attack, peer: ZmtpPeer, channel: str) -> bool:
    """Whether the kernel closed ``peer``'s connection before handling what came after
    the oversize frame (a reply, a welcome, or on stdin an unknown reply counted)."""
    if channel != "stdin":
        return peer.wait_closed(BOUND)
    counted = attack.kut.kernel.bad_input["unknown_reply"]
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        try:
            return peer.wait_closed(0.05)
        except TimeoutError:
            if attack.kut.kernel.bad_input["unknown_reply"] > counted:
                return False
    raise TimeoutError(f"the kernel neither dropped the connection nor read on in {BOUND} s")


# -- shell: comms and RPCs ---------------------------------------------------------


def rpc(method: Any, params: Any = None, request_id: Any = 5) -> dict[str, Any]:
    data: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        data["params"] = params
    return data


def on_default_comm(data: dict[str, Any]) -> Callable[[Attack], dict[str, Any]]:
    return lambda attack: {"comm_id": attack.default_comm, "data": data}


def on_nobodys_comm(data: dict[str, Any]) -> Callable[[Attack], dict[str, Any]]:
    return lambda attack: {"comm_id": uuid.uuid4().hex, "data": data}


def reopen(which: str) -> Callable[[Attack], dict[str, Any]]:
    """comm_open reusing the id of the owner's comm ``which``."""
    def content(attack: Attack) -> dict[str, Any]:
        comm_id = attack.default_comm if which == "default" else attack.persistent_comm
        target = ECHO if which == "default" else ECHO_PERSISTENT
        return {"comm_id": comm_id, "target_name": target, "data": {}}
    return content


def request_on_closed_comm(attack: Attack, channel: str) -> None:
    stranger = attack.stranger(subscribed=True)
    comm_id = open_and_wait(stranger, ECHO)
    stranger.wait_idle(stranger.send(stranger.shell, "comm_close", {"comm_id": comm_id}))
    stranger.request(comm_id, "echo")
    sync(stranger, channel)


def raw_on_default_comm(data: bytes) -> Send:
    """A comm_msg from a stranger on the owner's default comm whose data is the JSON text
    ``data`` as given (NaN, Infinity, nesting no encoder here writes), signed."""
    def send(attack: Attack, channel: str) -> None:
        stranger = attack.stranger()
        content = b'{"comm_id": "' + attack.default_comm.encode() + b'", "data": ' + data + b"}"
        stranger.shell.send_multipart(signed(stranger.session, header_json("comm_msg"),
                                             content=content))
        sync(stranger, channel)
    return send


def call_frontend_timeout(literal: bytes) -> Send:
    """call_frontend with its timeout written as ``literal`` (JSON cannot carry NaN or
    Infinity, yet some encoders write them)."""
    return raw_on_default_comm(b'{"jsonrpc": "2.0", "id": 1, "method": "call_frontend", '
                               b'"params": {"method": "ping", "timeout": ' + literal + b"}}")


def far_timeout(attack: Attack, channel: str) -> None:
    """A timeout of 1e308 s is a deadline, only a far one: the kernel asks the owner,
    who answers, and the request ends in the answer."""
    owner = attack.owner
    request = owner.request(attack.default_comm, "call_frontend",
                            {"method": "ping", "params": {}, "timeout": 1e308})
    owner.answer(owner.wait_kernel_request(attack.default_comm, BOUND), "pong")
    assert owner.wait_reply_to(request, BOUND)["result"] == "pong"


def refused_timeout(timeout: Any) -> Send:
    """A timeout no timer can hold: the request gets an error reply saying so."""
    def send(attack: Attack, channel: str) -> None:
        owner = attack.owner
        request = owner.request(attack.default_comm, "call_frontend",
                                {"method": "ping", "timeout": timeout})
        error = owner.wait_reply_to(request, BOUND)["error"]
        assert error["code"] == INTERNAL_ERROR and "timeout" in error["message"], error
    return send


def echo_too_deep_to_answer(attack: Attack, channel: str) -> None:
    """JSON the parser takes (300 levels) but the encoder cannot write back: the echo
    gets an error reply, not silence."""
    owner = attack.owner
    request = owner.request(attack.default_comm, "echo", nested(300))
    assert owner.wait_reply_to(request, BOUND)["error"]["code"] == INTERNAL_ERROR


# -- stdin -------------------------------------------------------------------------


def stdin_reply_from_another(attack: Attack, channel: str) -> None:
    """The owner is asked on stdin; a stranger answers first (dropped and counted), then
    the owner does, and the request ends in the owner's answer."""
    owner = attack.owner
    request = owner.request(attack.default_comm, "ask_stdin", {"prompt": "name?"})
    asked = owner.recv(owner.stdin, BOUND)
    assert asked is not None and asked["msg_type"] == "input_request", asked
    stranger = attack.stranger()
    stranger.send(stranger.stdin, "input_reply", {"value": "not the owner"}, parent=asked)
    wait_until(lambda: attack.kut.kernel.bad_input["stdin_reply_from_another_frontend"] > 0,
               "the stranger's reply counted", BOUND)
    owner.send(owner.stdin, "input_reply", {"value": "owner"}, parent=asked)
    assert "error" not in owner.wait_reply_to(request, BOUND)


def stdin_reply_to_nothing(attack: Attack, channel: str) -> None:
    stranger = attack.stranger()
    parent = {"msg_id": uuid.uuid4().hex, "msg_type": "input_request"}
    stranger.send(stranger.stdin, "input_reply", {"value": "x"}, parent={"header": parent})


# -- IOPub -------------------------------------------------------------------------


def subscription_frames(*make: Callable[[Attack], bytes]) -> Send:
    """Subscription frames from a peer without the key, then one it can be synced by."""
    def send(attack: Attack, channel: str) -> None:
        peer = attack.keyless()
        for frame in make:
            peer.send(frame(attack))
        _read_up_to_here(peer, attack.owner)
    return send


def owners_peer_topic(attack: Attack) -> bytes:
    return peer_topic(attack.owner.identity, attack.key)


def subscription_not_utf8(attack: Attack, channel: str) -> None:
    """Held like any topic, but welcomed never (JEP 65 welcomes UTF-8 subscriptions)."""
    seen_before = len(attack.owner.seen)
    subscription_frames(lambda _: b"\x01\xff\xfe")(attack, channel)
    welcomed = [m["content"]["subscription"] for m in attack.owner.seen[seen_before:]
                if m["msg_type"] == "iopub_welcome"]
    assert not [w for w in welcomed if "\ufffd" in w], welcomed


def multipart_on_iopub(attack: Attack, channel: str) -> None:
    peer = attack.raw("iopub")
    marker = f"sync-{uuid.uuid4().hex}"
    assert peer.send_message([b"\x07not", b"a subscription"])
    assert peer.send_message([b"\x01" + marker.encode()])
    attack.owner.wait_iopub(lambda m: m["msg_type"] == "iopub_welcome"
                            and m["content"]["subscription"] == marker, BOUND)


# =====================================================================
# the table: (kind, channels, what is counted, how it is sent)
# =====================================================================


@dataclass(frozen=True)
class Kind:
    name: str
    channels: tuple[str, ...]
    counted: dict[str, int]
    send: Send


KINDS = [
    # frames every ROUTER channel reads the same way (the codec's checks)
    Kind("missigned", ROUTERS, {"missigned": 1},
         frames_from_stranger(accepted(lambda header, _: signed(IMPOSTOR, header)))),
    Kind("unsigned", ROUTERS, {"missigned": 1},
         frames_from_stranger(accepted(lambda header, _: [DELIM, b"", header, b"{}", b"{}",
                                                         b"{}"]))),
    Kind("replayed", ("shell", "control"), {"replayed": 1}, replayed),
    Kind("replayed", ("stdin",), {"replayed": 1, "unknown_reply": 1}, replayed),
    Kind("no_delimiter", ROUTERS, {"truncated": 1},
         frames_from_stranger(lambda _, __: [b"no delimiter at all"])),
    Kind("too_few_frames", ROUTERS, {"truncated": 1},
         frames_from_stranger(lambda _, __: [DELIM, b"sig", b"{}"])),
    Kind("signed_non_json", ROUTERS, {"malformed_json": 1},
         frames_from_stranger(lambda stranger, _: signed(
             stranger.session, b"{not json " + uuid.uuid4().hex.encode()))),
    Kind("header_without_msg_id", ROUTERS, {"missing_fields": 1},
         frames_from_stranger(lambda stranger, _: signed(
             stranger.session, header_json(msg_id=True), content=unique()))),
    Kind("content_not_object", ROUTERS, {"missing_fields": 1},
         frames_from_stranger(accepted(lambda header, stranger: signed(
             stranger.session, header, content=b"[1, 2]")))),
    Kind("deep_json", ROUTERS, {"too_deep": 1},
         frames_from_stranger(accepted(lambda header, stranger: signed(
             stranger.session, header, content=b'{"deep": ' + nested_json(DEEP) + b"}")))),
    Kind("oversized_message", ROUTERS, {"oversized": 1}, oversized_message),
    # counted nowhere: libzmq refuses the frame unread and reports only the connection's
    # end, as for any other (impl/kernel/sockets.py)
    Kind("oversize_frame", (*ROUTERS, "iopub"), {}, oversize_frame),
    Kind("unknown_msg_type", ("shell", "control"), {"unknown_msg_type": 1},
         message_from_stranger("bogus_request", lambda _: {})),
    Kind("shell_type_on_control", ("control",), {"unknown_msg_type": 1},
         message_from_stranger("comm_open", reopen("default"))),
    Kind("unknown_msg_type", ("stdin",), {"unknown_msg_type": 1},
         message_from_stranger("execute_request", lambda _: {"code": "1"})),
    # shell: comms and their RPCs
    Kind("comm_msg_unknown_comm", ("shell",), {"unknown_comm": 1},
         message_from_stranger("comm_msg", on_nobodys_comm(rpc("echo")))),
    Kind("comm_close_unknown_comm", ("shell",), {"unknown_comm": 1},
         message_from_stranger("comm_close", on_nobodys_comm({}))),
    Kind("request_on_closed_comm", ("shell",), {"closed_comm": 1}, request_on_closed_comm),
    Kind("reused_default_comm_id", ("shell",), {"reused_comm_id": 1},
         message_from_stranger("comm_open", reopen("default"))),
    Kind("reused_persistent_comm_id", ("shell",), {"reused_comm_id": 1},
         message_from_stranger("comm_open", reopen("persistent"))),
    Kind("comm_open_without_id", ("shell",), {"invalid_content": 1},
         message_from_stranger("comm_open", lambda _: {"target_name": ECHO})),
    Kind("comm_msg_without_id", ("shell",), {"invalid_content": 1},
         message_from_stranger("comm_msg", lambda _: {"data": rpc("echo")})),
    Kind("unknown_target", ("shell",), {"unknown_target": 1},
         message_from_stranger("comm_open", lambda _: {"comm_id": uuid.uuid4().hex,
                                                       "target_name": "no.such.target"})),
    Kind("invalid_request", ("shell",), {"invalid_request": 1},
         message_from_stranger("comm_msg", on_default_comm(rpc(42)))),
    Kind("reply_nobody_asked", ("shell",), {"unknown_reply": 1},
         message_from_stranger("comm_msg", on_default_comm(
             {"jsonrpc": "2.0", "id": 1, "result": 2}))),
    Kind("stranger_adopts_open_comm", ("shell",), {},
         message_from_stranger("comm_msg", on_default_comm(
             {"jsonrpc": "2.0", "method": ADOPT_METHOD}))),
    Kind("timeout_1e308", ("shell",), {}, far_timeout),
    Kind("timeout_negative", ("shell",), {}, refused_timeout(-1)),
    Kind("timeout_boolean", ("shell",), {}, refused_timeout(True)),
    Kind("timeout_string", ("shell",), {}, refused_timeout("soon")),
    Kind("timeout_nan_literal", ("shell",), {"malformed_json": 1},
         call_frontend_timeout(b"NaN")),
    Kind("timeout_infinity_literal", ("shell",), {"malformed_json": 1},
         call_frontend_timeout(b"Infinity")),
    Kind("timeout_overflowing_literal", ("shell",), {"malformed_json": 1},
         call_frontend_timeout(b"1e999")),
    Kind("echo_too_deep_to_answer", ("shell",), {}, echo_too_deep_to_answer),
    Kind("rpc_id_too_deep_to_answer", ("shell",), {"invalid_request": 1},
         raw_on_default_comm(b'{"jsonrpc": "2.0", "method": "echo", "id": '
                             + nested_json(1_000) + b"}")),
    # stdin
    Kind("reply_nobody_asked", ("stdin",), {"unknown_reply": 1}, stdin_reply_to_nothing),
    Kind("reply_from_another_frontend", ("stdin",),
         {"stdin_reply_from_another_frontend": 1}, stdin_reply_from_another),
    # IOPub: subscription frames, which nobody signs
    Kind("not_a_subscription", ("iopub",), {"iopub_frame": 1},
         subscription_frames(lambda _: b"\x07not a subscription")),
    Kind("empty_frame", ("iopub",), {"iopub_frame": 1}, subscription_frames(lambda _: b"")),
    Kind("multipart_message", ("iopub",), {"iopub_frame": 1}, multipart_on_iopub),
    Kind("forged_unsubscribe_of_owner", ("iopub",), {"explicit_unsubscribe": 1},
         subscription_frames(lambda a: b"\x00" + owners_peer_topic(a))),
    Kind("forged_unsubscribe_of_everything", ("iopub",), {"explicit_unsubscribe": 1},
         subscription_frames(lambda _: b"\x00")),
    Kind("untagged_peer_topic", ("iopub",), {"unauthenticated_peer_topic": 1},
         subscription_frames(lambda a: b"\x01" + PEER_TOPIC_PREFIX + a.owner.identity)),
    Kind("guessed_peer_tag", ("iopub",), {"unauthenticated_peer_topic": 1},
         subscription_frames(lambda a: b"\x01" + peer_topic(a.owner.identity, "guess"))),
    Kind("subscription_not_utf8", ("iopub",), {}, subscription_not_utf8),
]


def cases() -> Iterator[Any]:
    for kind in KINDS:
        for channel in kind.channels:
            yield pytest.param(kind, channel, id=f"{channel}-{kind.name}")


@pytest.mark.parametrize(("kind", "channel"), list(cases()))
def test_hostile_input_leaves_the_kernel_unharmed(
        attack: Attack, kind: Kind, channel: str, caplog: pytest.LogCaptureFixture) -> None:
    before = snapshot(attack)
    with caplog.at_level(logging.WARNING, logger="commspec.kernel"):
        kind.send(attack, channel)
        assert_unharmed(attack, before, kind.counted, caplog)

