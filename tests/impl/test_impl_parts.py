"""The kernel's parts on their own: connection files, presence, comms, Comm, sinks, the CLI."""

from __future__ import annotations

import json
import os
import selectors
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from ki_peers import RawFrontend

from commspec.impl.comm import AnswerChannel, Comm, Deferred, Dispatch
from commspec.impl.connection import (
    ConnectionInfo,
    new_connection_info,
    read_connection_file,
    write_connection_file,
)
from commspec.impl.core.comms import CommRecord, KernelComms
from commspec.impl.core.events import Channel as EventChannel
from commspec.impl.core.events import Received, Send
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.core.presence import Presence, SubscriptionFrameError, peer_topic
from commspec.impl.errors import InsecureConnection
from commspec.impl.kernel import KernelConfig, KernelEndpoint
from commspec.impl.tracing import JsonLinesSink, ListSink, Tee, match
from commspec.model.errors import InvalidTransition
from commspec.model.machines import (
    KERNEL_COMM,
    KernelCommEvent,
    KernelCommState,
    PresenceState,
)
from commspec.model.trace import TraceEvent
from commspec.model.tracked import Tracked

# -- connection files ----------------------------------------------------------------


def test_connection_file_is_private_and_keyed(tmp_path: Path) -> None:
    info = new_connection_info()
    assert len(info.key) == 64 and info.ip == "127.0.0.1"
    path = write_connection_file(tmp_path / "k.json", info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_connection_file(path) == info
    assert new_connection_info().key != info.key, "a fresh key every time"


def test_empty_key_refused_unless_insecure(tmp_path: Path) -> None:
    info = new_connection_info(insecure=True)
    assert info.key == ""
    path = write_connection_file(tmp_path / "k.json", info)
    with pytest.raises(InsecureConnection):
        read_connection_file(path)
    assert read_connection_file(path, insecure=True).key == ""
    with pytest.raises(InsecureConnection):
        KernelEndpoint(path)


def test_kernel_fills_in_ports_of_zero(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_connection_file(path, ConnectionInfo(0, 0, 0, 0, 0, key="k" * 8))
    with KernelEndpoint(path, config=KernelConfig(stop_linger=0)) as kernel:
        info = read_connection_file(path)
        assert all(info.port(c) > 0 for c in ("shell", "iopub", "stdin", "control", "hb"))
        assert info == kernel.connection_info
    assert path.exists(), "a file the kernel was given is left in place"


# -- presence --------------------------------------------------------------------------


KEY = b"the connection key"


def test_presence_holds_topics_and_names_peers() -> None:
    sink = ListSink()
    presence = Presence("kernel", sink, key=KEY)
    peer = peer_topic("abc", KEY)
    assert presence.apply(b"\x01", sent_by_peer=True).subscribed
    arrived = presence.apply(b"\x01" + peer, sent_by_peer=True)
    assert arrived.peer == b"abc" and arrived.peer_arrived
    again = presence.apply(b"\x01" + peer, sent_by_peer=True)  # a duplicate, or a reconnect
    assert not again.peer_arrived and presence.subscriptions == 2, "topics held, not counted"
    # libzmq reports a topic's unsubscribe once, when its last connection ends
    last = presence.apply(b"\x00" + peer, sent_by_peer=False)
    assert last.peer_departed and not last.emptied and presence.has_departed(b"abc")
    assert presence.apply(b"\x00", sent_by_peer=False).emptied
    assert presence.state is PresenceState.DISCONNECTED
    assert presence.subscriptions == 0
    assert [e.event for e in sink.events] == ["subscribe"] * 3 + ["unsubscribe"] * 2


@pytest.mark.parametrize(("frame", "by_peer", "reason"), [
    (b"\x00", True, "explicit_unsubscribe"),             # a peer cannot say someone left
    (b"\x00never", False, "unknown_unsubscribe"),
    (b"", True, "iopub_frame"),
    (b"\x02x", True, "iopub_frame"),
    (b"\x01" + peer_topic("abc", b"another key"), True, "unauthenticated_peer_topic"),
    (b"\x01commspec.peer/abc", True, "unauthenticated_peer_topic"),  # untagged
    (b"\x00" + peer_topic("abc", b"another key"), False, "unauthenticated_peer_topic"),
])
def test_presence_refuses_what_it_cannot_trust(frame: bytes, by_peer: bool, reason: str) -> None:
    presence = Presence("kernel", key=KEY)
    presence.apply(b"\x01", sent_by_peer=True)
    presence.apply(b"\x01" + peer_topic("abc", KEY), sent_by_peer=True)
    with pytest.raises(SubscriptionFrameError) as refused:
        presence.apply(frame, sent_by_peer=by_peer)
    assert refused.value.reason == reason
    assert presence.subscriptions == 2 and presence.live_peers == {b"abc"}, "nothing changed"


def test_a_peer_topic_welcome_shows_no_tag() -> None:
    topic = peer_topic("abc", KEY)
    assert topic.startswith(b"commspec.peer/abc/") and len(topic) > len(b"commspec.peer/abc/")
    assert Presence.public_name(topic) == b"commspec.peer/abc"
    assert Presence.public_name(b"kernel.status") == b"kernel.status"


# -- kernel comms --------------------------------------------------------------------


def test_comm_ownership_and_loss() -> None:
    comms = KernelComms("kernel")
    peers = {b"x"}

    def known(identity: bytes) -> bool:
        return identity in peers

    def opened(comm_id: str, persistent: bool, opener: bytes) -> CommRecord:
        record = comms.new(comm_id, "t", persistent, opener)
        comms.opened(record, None, by_kernel=False)
        return record

    owned, kept, stock = opened("owned", False, b"x"), opened("kept", True, b"x"), opened(
        "stock", False, b"stock-client")
    assert comms.owned_by(b"x", known) == [owned, kept]
    for record in comms.owned_by(b"x", known):
        comms.lose(record, persistent=record.persistent)
    assert owned.closed and comms.get("owned") is None and comms.recently_closed("owned")
    assert kept.state is KernelCommState.DETACHED and stock.state is KernelCommState.OPEN
    assert comms.back(None, known) == [], "only x's own return re-attaches x's comm"
    assert comms.back(b"x", known) == [kept]
    with pytest.raises(ValueError):
        comms.new("owned", "t", False, None)  # a closed id is never reused
    assert comms.owned_by(None, known) == [kept, stock]


# -- Comm and Deferred ----------------------------------------------------------------


class NoTransport:
    def comm_send(self, *args: Any) -> None:
        raise AssertionError("not used")

    comm_request = comm_close = comm_send


def make_comm(comm_id: str) -> Comm:
    return Comm(comm_id, "t", persistent=False, state=lambda: KernelCommState.OPEN,
                transport=NoTransport())


class Channel:
    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.event = threading.Event()

    def reply(self, payload: dict[str, Any]) -> None:
        self.replies.append(payload)
        self.event.set()


def test_deferred_answers_once_from_another_thread() -> None:
    comm = make_comm("c")
    deferred = Deferred()
    comm.on_request("slow", lambda params: deferred)
    channel = Channel()
    assert comm.handle_data({"id": 1, "method": "slow"}, channel) is Dispatch.DEFERRED
    assert comm.in_flight == 1
    worker = threading.Thread(target=lambda: deferred.resolve("done"))
    worker.start()
    worker.join()
    assert channel.event.wait(5)
    assert channel.replies == [{"jsonrpc": "2.0", "id": 1, "result": "done"}]
    assert not deferred.reject(1, "again"), "a Deferred settles once"
    assert comm.in_flight == 0


def test_deferred_cancelled_when_comm_closes() -> None:
    comm = make_comm("c")
    deferred = Deferred()
    stopped: list[bool] = []
    deferred.on_cancel(lambda: stopped.append(True))
    comm.on_request("slow", lambda params: deferred)
    channel = Channel()
    comm.handle_data({"id": "a", "method": "slow"}, channel)
    comm.handle_closed({})
    assert deferred.cancelled and stopped == [True]
    assert not deferred.resolve("too late") and channel.replies == []


def test_comm_send_refuses_an_id() -> None:
    with pytest.raises(ValueError):
        make_comm("c").send({"id": 1, "method": "x"})


def test_an_answer_json_cannot_carry_becomes_an_internal_error() -> None:
    delivered: list[tuple[int, Any]] = []
    AnswerChannel(lambda n, payload: delivered.append((n, payload)), 7).reply(
        {"jsonrpc": "2.0", "id": 3, "result": object()})
    [(n, payload)] = delivered
    assert n == 7 and payload["id"] == 3 and payload["error"]["code"] == -32603


# -- sinks -----------------------------------------------------------------------------


def test_json_lines_sink_and_tee(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    collected = ListSink()
    with JsonLinesSink(path) as lines:
        sink = Tee(lines, collected)
        tracked = Tracked(KERNEL_COMM, "c", endpoint="kernel", sink=sink)
        tracked.fire(KernelCommEvent.OPENED_BY_FRONTEND, msg_id="m")
    events = [TraceEvent.from_json(line) for line in path.read_text().splitlines()]
    assert events == collected.events
    assert (events[0].source, events[0].event, events[0].dest) == ("new", "opened_by_frontend",
                                                                   "open")


def test_list_sink_wait_fails_clearly() -> None:
    sink = ListSink()
    with pytest.raises(TimeoutError, match="event=never"):
        sink.wait_for(match(event="never"), timeout=0.01)


# -- the kernel core's input boundary --------------------------------------------------


def _core(cls: type[KernelProtocol] = KernelProtocol) -> KernelProtocol:
    ids = iter(range(1, 10_000))
    return cls(session_id="s", key=KEY, targets=lambda name: None,
               new_msg_id=lambda: f"m{next(ids)}")


def _request(msg_type: str) -> Received:
    header = {"msg_id": "r1", "msg_type": msg_type, "session": "fe"}
    msg: Any = {"header": header, "parent_header": {}, "metadata": {}, "content": {},
                "buffers": [], "msg_id": "r1", "msg_type": msg_type}
    return Received(EventChannel.SHELL, (b"fe",), msg)


def _statuses(effects: list[Any]) -> list[str]:
    return [e.content["execution_state"] for e in effects
            if isinstance(e, Send) and e.msg_type == "status"]


def test_a_peers_invalid_transition_is_counted_and_still_bracketed() -> None:
    class Broken(KernelProtocol):
        def _on_comm_info_request(self, received: Received) -> bool:
            raise InvalidTransition("kernel_comm", "closed", "opened_by_frontend", "x")

    core = _core(Broken)
    effects = core.handle(_request("comm_info_request"), 0.0)
    assert _statuses(effects) == ["busy", "idle"]
    assert core.bad.counts() == {"invalid_transition": 1}
    assert _statuses(core.handle(_request("kernel_info_request"), 0.0)) == ["busy", "idle"]


def test_our_own_bug_propagates_and_keeps_the_effects_before_it() -> None:
    class Buggy(KernelProtocol):
        def _on_comm_info_request(self, received: Received) -> bool:
            raise KeyError("a bug of ours, not the peer's")

    core = _core(Buggy)
    with pytest.raises(KeyError):
        core.handle(_request("comm_info_request"), 0.0)
    assert _statuses(core.take_effects()) == ["busy", "idle"], "the idle still goes out"
    assert core.bad.counts() == {}, "not counted as the peer's bad input"


# -- the CLI ---------------------------------------------------------------------------


def test_cli_runs_until_sigterm(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "commspec", "kernel", "--trace", str(trace),
         "--heartbeat-interval", "0.2", "--heartbeat-timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(20), "the kernel printed no connection file"
        connection_file = Path(process.stdout.readline().decode().strip())
        info = json.loads(connection_file.read_text())
        assert info["ip"] == "127.0.0.1" and info["key"]
        frontend = RawFrontend.from_file(str(connection_file))
        try:
            frontend.wait_welcome()
        finally:
            frontend.close()
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert not connection_file.exists(), "the kernel removes the file it created"
        events = [TraceEvent.from_json(line) for line in trace.read_text().splitlines()]
        assert events[0].machine == "presence" and events[0].event == "subscribe"
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
