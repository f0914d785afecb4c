"""A stdin request ends when its frontend's connection does, with no frontend change.

Stock frontends subscribe no peer topic, so while another frontend stays subscribed
IOPub never says that one of them left. Its ROUTER connections do end: the kernel
joins each message's ``ZMQ_SRCFD`` with its socket monitors' accept and disconnect
events (``impl/core/connections.py``) and ends the pending stdin requests of the
frontend whose connection went, as ``peer_lost`` (``unreachable``), as when a
presence topic goes.

The live tests use stock jupyter_client clients (in this process, and one in a
process of its own that is SIGKILLed); the others drive the kernel core alone, with
fds chosen by hand, to pin down the rule for fds the OS reuses.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from ki_peers import (
    WAIT,
    KernelUnderTest,
    Observed,
    RawFrontend,
    open_and_wait,
    stock_open_comm,
    stock_wait_iopub,
)

from commspec.impl.core.connections import PeerConnectionMap
from commspec.impl.core.events import (
    Channel,
    Effect,
    Message,
    PeerConnectionLost,
    PeerConnectionMade,
    PeerConnections,
    Received,
    Refused,
    RequestEnded,
    Send,
    Sent,
    StartStdinRequest,
    SubscriptionFrames,
)
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.core.policies import KernelPolicies
from commspec.impl.errors import Unreachable
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import ECHO
from commspec.impl.tracing import ListSink, match

# =========================================================================
# live: stock jupyter_client clients against the reference kernel
# =========================================================================


def _ask_stdin(kut: KernelUnderTest, client: Any, comm_id: str) -> str:
    """The demo's ask_stdin: the kernel sends an input_request to ``client``. Returns its
    msg_id once the kernel's stdin ROUTER took it (the trace's ``sent``) and the client
    has it."""
    mark = kut.sink.mark()
    client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "jsonrpc": "2.0", "id": 1, "method": "ask_stdin", "params": {"prompt": "name?"}}}))
    sent = kut.sink.wait_for(match(machine="stdin_request", event="sent"), since=mark)
    asked = client.get_stdin_msg(timeout=WAIT)
    assert asked["msg_type"] == "input_request"
    assert asked["header"]["msg_id"] == sent.object
    return sent.object


def _ended(kut: KernelUnderTest, msg_id: str) -> list[str]:
    return [e.event for e in kut.sink.find(match(machine="stdin_request", object=msg_id))
            if e.event != "sent"]


def test_closed_stock_client_ends_its_stdin_request_while_another_stays(
    kut: KernelUnderTest, stock: Callable[[KernelUnderTest], Any]
) -> None:
    a, b = stock(kut), stock(kut)
    for client in (a, b):
        stock_wait_iopub(client, lambda m: m["msg_type"] == "iopub_welcome", what="welcome")
    a_asked = _ask_stdin(kut, a, stock_open_comm(a, ECHO))
    b_comm = stock_open_comm(b, ECHO)
    b_asked = _ask_stdin(kut, b, b_comm)
    assert kut.kernel.stdin_pending_count == 2

    a.stop_channels()  # A goes; B stays subscribed, so IOPub says nothing
    lost = kut.sink.wait_for(match(machine="stdin_request", object=a_asked, event="peer_lost"),
                             timeout=WAIT)
    assert lost.dest == "unreachable"
    assert kut.kernel.subscriptions == 1, "B still holds the empty topic"
    assert kut.kernel.presence_state != "disconnected"

    # B's request is B's: still pending, and B's answer resolves it.
    assert _ended(kut, b_asked) == []
    assert kut.kernel.stdin_pending_count == 1
    mark = kut.sink.mark()
    asked = {"header": {"msg_id": b_asked, "msg_type": "input_request"}}
    b.stdin_channel.send(b.session.msg("input_reply", {"value": "Ada"}, parent=asked))
    kut.sink.wait_for(match(machine="stdin_request", object=b_asked, event="reply"), since=mark)
    reply = stock_wait_iopub(b, lambda m: m["msg_type"] == "comm_msg"
                             and "result" in m["content"]["data"], what="ask_stdin's answer")
    assert reply["content"]["data"]["result"] == "Ada"
    assert kut.kernel.stdin_pending_count == 0
    assert kut.kernel.late_replies == 0


_STOCK_CHILD = r"""
import sys, uuid
from jupyter_client import BlockingKernelClient
client = BlockingKernelClient(connection_file=sys.argv[1])
client.load_connection_file()
client.session.session = uuid.uuid4().hex
client.start_channels()
def until(pred, what):
    while True:
        msg = client.get_iopub_msg(timeout=20)
        if pred(msg):
            return msg
until(lambda m: m["msg_type"] == "iopub_welcome", "welcome")
comm_id = uuid.uuid4().hex
client.shell_channel.send(client.session.msg(
    "comm_open", {"comm_id": comm_id, "target_name": sys.argv[2], "data": {}}))
client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
    "jsonrpc": "2.0", "id": 1, "method": "ask_stdin", "params": {"prompt": "name?"}}}))
asked = client.get_stdin_msg(timeout=20)
print(asked["msg_type"], asked["header"]["msg_id"], flush=True)
sys.stdin.read()  # held until killed
"""


@pytest.fixture
def stock_process() -> Iterator[Callable[[KernelUnderTest], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(kut: KernelUnderTest) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", _STOCK_CHILD, kut.connection_file, ECHO],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=WAIT)


def _asked_in_child(kut: KernelUnderTest,
                    start: Callable[[KernelUnderTest], subprocess.Popen[bytes]]
                    ) -> tuple[subprocess.Popen[bytes], str]:
    """A stock client in a process of its own that was sent an input_request and holds
    it: the process, and the request's msg_id (as the child printed it)."""
    process = start(kut)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        # a fresh interpreter imports jupyter_client first: a generous bound
        if not selector.select(8 * WAIT):
            raise TimeoutError(f"the stock client printed nothing within {8 * WAIT} s")
    line = process.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "input_request":
        process.kill()
        _, err = process.communicate(timeout=WAIT)
        raise AssertionError(f"the stock client printed {line!r}; its stderr: {err.decode()}")
    kut.sink.wait_for(match(machine="stdin_request", object=line[1], event="sent"))
    return process, line[1]


def test_killed_stock_client_process_ends_its_stdin_request(
    kut: KernelUnderTest, stock: Callable[[KernelUnderTest], Any],
    stock_process: Callable[[KernelUnderTest], subprocess.Popen[bytes]],
) -> None:
    b = stock(kut)
    stock_wait_iopub(b, lambda m: m["msg_type"] == "iopub_welcome", what="welcome")
    process, a_asked = _asked_in_child(kut, stock_process)
    assert kut.kernel.stdin_pending_count == 1

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=WAIT)
    lost = kut.sink.wait_for(match(machine="stdin_request", object=a_asked, event="peer_lost"),
                             timeout=WAIT)
    assert lost.dest == "unreachable"
    assert kut.kernel.subscriptions == 1, "B still holds the empty topic"
    assert kut.kernel.stdin_pending_count == 0


def test_frozen_stock_client_ends_its_stdin_request_at_the_heartbeat_timeout(
    kut: KernelUnderTest, stock: Callable[[KernelUnderTest], Any],
    stock_process: Callable[[KernelUnderTest], subprocess.Popen[bytes]],
) -> None:
    """SIGSTOP: no FIN, no unsubscribe. The kernel's ZMTP heartbeats drop the silent
    connections after their timeout, and that is the departure."""
    b = stock(kut)
    stock_wait_iopub(b, lambda m: m["msg_type"] == "iopub_welcome", what="welcome")
    process, a_asked = _asked_in_child(kut, stock_process)
    os.kill(process.pid, signal.SIGSTOP)
    try:
        lost = kut.sink.wait_for(
            match(machine="stdin_request", object=a_asked, event="peer_lost"),
            timeout=kut.kernel.config.heartbeat.timeout + 4 * WAIT)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert lost.dest == "unreachable"
    assert kut.kernel.subscriptions == 1, "B still holds the empty topic"


def test_a_new_client_after_one_left_is_not_taken_for_it(
    kut: KernelUnderTest, stock: Callable[[KernelUnderTest], Any]
) -> None:
    """A leaves; C connects (the OS hands out the fds A's connections freed, lowest
    first) and is asked in turn: A's departure is not C's, and C's answer resolves C's
    request."""
    b = stock(kut)
    stock_wait_iopub(b, lambda m: m["msg_type"] == "iopub_welcome", what="welcome")
    a = stock(kut)
    stock_wait_iopub(a, lambda m: m["msg_type"] == "iopub_welcome", what="welcome")
    a_asked = _ask_stdin(kut, a, stock_open_comm(a, ECHO))
    assert kut.kernel.connection_fd(a.session.bsession) is not None
    a.stop_channels()
    kut.sink.wait_for(match(machine="stdin_request", object=a_asked, event="peer_lost"))
    assert kut.kernel.connection_fd(a.session.bsession) is None

    c = stock(kut)
    stock_wait_iopub(c, lambda m: m["msg_type"] == "iopub_welcome", what="welcome")
    c_asked = _ask_stdin(kut, c, stock_open_comm(c, ECHO))
    assert kut.kernel.connection_fd(c.session.bsession) is not None
    mark = kut.sink.mark()
    asked = {"header": {"msg_id": c_asked, "msg_type": "input_request"}}
    c.stdin_channel.send(c.session.msg("input_reply", {"value": "Cy"}, parent=asked))
    replied = kut.sink.wait_for(match(machine="stdin_request", object=c_asked), since=mark)
    assert (replied.event, replied.dest) == ("reply", "replied")
    assert kut.kernel.connection_fd(c.session.bsession, "stdin") is not None


class ActFirst(KernelPolicies):
    """A broken kernel: acts on a departure before what had arrived (no drain rule)."""

    def drain(self, kernel: KernelProtocol, received: Sequence[Received | Refused],
              act: Callable[[], None]) -> None:
        act()
        for item in received:
            kernel.take(item)


@pytest.fixture
def broken_kernel() -> Iterator[KernelUnderTest]:
    sink = ListSink()
    kernel = KernelEndpoint(sink=sink, config=KernelConfig(heartbeat=HeartbeatSettings(
        interval=0.2, timeout=3.0), stop_linger=0.2), policies=ActFirst())
    kernel.start()
    try:
        yield KernelUnderTest(kernel, sink, Observed())
    finally:
        kernel.stop()


def _answer_then_leave(kut: KernelUnderTest, raw_frontend: Callable[..., RawFrontend]
                       ) -> tuple[RawFrontend, str]:
    """A frontend (no peer topic, as a stock one), beside a bystander that stays, is
    asked on stdin, then answers and closes every socket while the kernel's I/O thread
    is held: when the kernel looks, the answer and the stdin connection's disconnect have
    both arrived (libzmq queues the disconnect after the connection's last message).
    Returns the frontend and the request's msg_id."""
    bystander = raw_frontend(kut, peer=False)
    bystander.wait_welcome()
    frontend = raw_frontend(kut, peer=False)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    frontend.request(comm_id, "ask_stdin", {"prompt": "name?"})
    asked = frontend.recv(frontend.stdin, WAIT)
    assert asked is not None and asked["msg_type"] == "input_request"
    held = kut.kernel.hold_until_queued(["stdin", "stdin_monitor"])
    frontend.send(frontend.stdin, "input_reply", {"value": "Ada"}, parent=asked)
    for sock in frontend.sockets:
        sock.close(linger=int(WAIT * 1000))  # the answer goes out, then the connection
    frontend.sockets.clear()
    frontend.iopub = None
    assert held.result(WAIT), "the answer and the disconnect never both arrived"
    msg_id: str = asked["header"]["msg_id"]
    return frontend, msg_id


def test_an_answer_that_arrived_before_the_disconnect_wins(
    kut: KernelUnderTest, raw_frontend: Callable[..., RawFrontend]
) -> None:
    """The drain rule, for connections: what the stdin ROUTER had received when the
    disconnect was read is handled first."""
    frontend, asked = _answer_then_leave(kut, raw_frontend)
    ended = kut.sink.wait_for(match(machine="stdin_request", object=asked, event="reply"))
    assert ended.dest == "replied"
    assert not kut.sink.find(match(machine="stdin_request", event="peer_lost"))
    assert kut.kernel.late_replies == 0
    assert kut.kernel.connection_fd(frontend.identity, "stdin") is None, "its connection went"


def test_a_kernel_without_the_drain_rule_loses_that_answer(
    broken_kernel: KernelUnderTest, raw_frontend: Callable[..., RawFrontend]
) -> None:
    """The same, against a kernel that acts on the disconnect first: the request ends
    peer_lost and the answer it had already received is a late reply."""
    kut = broken_kernel
    _, asked = _answer_then_leave(kut, raw_frontend)
    ended = kut.sink.wait_for(match(machine="stdin_request", object=asked, event="peer_lost"))
    assert ended.dest == "unreachable"
    kut.sink.wait_for(match(machine="stdin_request", object=asked, event="late_reply"))
    assert kut.kernel.late_replies == 1


# =========================================================================
# the core alone: the fd rule, with fds chosen by hand
# =========================================================================

X, Y = b"frontend-x", b"frontend-y"
ASK = {"prompt": "?", "password": False}


def _msg(msg_id: str, msg_type: str, session: str = "fe",
         parent: dict[str, Any] | None = None, content: dict[str, Any] | None = None) -> Message:
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": session}
    return {"header": header, "parent_header": parent or {}, "metadata": {},
            "content": content or {}, "buffers": [], "msg_id": msg_id, "msg_type": msg_type}


class Core:
    """A kernel core, one subscriber, and helpers that speak for shell, stdin and monitor."""

    def __init__(self, remember: int = 10_000) -> None:
        ids = iter(range(1, 1_000_000))
        self.core = KernelProtocol(session_id="k", key=b"secret", targets=lambda name: None,
                                   new_msg_id=lambda: f"k{next(ids)}", remember=remember)
        self.ended: dict[str, RequestEnded] = {}
        self._n = 0
        self.feed(SubscriptionFrames((b"\x01",), (True,)))

    def feed(self, event: Any) -> list[Effect]:
        effects = self.core.handle(event, 0.0)
        for effect in effects:
            if isinstance(effect, RequestEnded):
                self.ended[effect.msg_id] = effect
        return effects

    def shell(self, identity: bytes, fd: int | None) -> Received:
        self._n += 1
        return Received(Channel.SHELL, (identity,), _msg(f"s{self._n}", "kernel_info_request"),
                        fd)

    def ask(self, identity: bytes) -> str:
        """A stdin request to ``identity`` that the stdin ROUTER took: pending."""
        self._n += 1
        msg_id = f"ask{self._n}"
        effects = self.feed(StartStdinRequest(msg_id, "input_request", ASK, identity))
        assert [e.confirm for e in effects if isinstance(e, Send)] == [True]
        self.feed(Sent(msg_id, True))
        assert self.core.stdin.is_pending(msg_id)
        return msg_id

    def reply(self, identity: bytes, asked: str, fd: int | None) -> Received:
        self._n += 1
        return Received(Channel.STDIN, (identity,), _msg(
            f"r{self._n}", "input_reply", parent={"msg_id": asked, "msg_type": "input_request"},
            content={"value": "Ada"}), fd)

    def unreachable(self, msg_id: str) -> bool:
        ended = self.ended.get(msg_id)
        return ended is not None and isinstance(ended.error, Unreachable)

    def pending(self, msg_id: str) -> bool:
        return self.core.stdin.is_pending(msg_id)


def made(fd: int, channel: Channel = Channel.SHELL) -> PeerConnectionMade:
    return PeerConnectionMade(channel, fd)


def lost(fd: int, channel: Channel = Channel.SHELL) -> PeerConnectionLost:
    return PeerConnectionLost(channel, fd)


def test_disconnect_ends_the_requests_of_the_identity_last_seen_on_it() -> None:
    c = Core()
    c.feed(made(7))
    c.feed(c.shell(X, 7))
    asked = c.ask(X)
    c.feed(made(8))
    c.feed(c.shell(Y, 8))
    other = c.ask(Y)
    c.feed(lost(7))
    assert c.unreachable(asked), "X's connection is gone: peer_lost, unreachable"
    assert c.pending(other), "Y's connection is not"
    assert c.core.connections.connection_of(Channel.SHELL, X) is None
    # the same outcome, and the same wording of its cause, as a presence departure
    error = c.ended[asked].error
    assert error is not None and error.state == "unreachable"


def test_a_reused_fd_binds_the_new_connection_not_the_old_one() -> None:
    c = Core()
    c.feed(made(7))
    c.feed(c.shell(X, 7))
    c.feed(lost(7))  # X's connection goes; the OS gives fd 7 to the next one
    c.feed(made(7))
    c.feed(c.shell(Y, 7))
    asked = c.ask(Y)
    # X sent nothing since: nothing of X's can be on the new connection on fd 7.
    assert c.core.connections.connection_of(Channel.SHELL, X) is None
    # A second disconnect report for the old connection cannot exist (libzmq reports
    # each once, and the accept came after it); the one that comes is the new one's.
    c.feed(lost(7))
    assert c.unreachable(asked)


def test_a_stale_disconnect_read_with_the_new_connections_message_spares_it() -> None:
    """fd 7 closed and reused within one batch: X left, Y came on fd 7 and already sent.
    Y's message may be from either connection, so it proves nothing and binds nothing:
    the old connection's disconnect cannot end Y's request."""
    c = Core()
    c.feed(made(7))
    c.feed(c.shell(Y, 7))  # say Y had a connection on 7 earlier...
    c.feed(lost(7))
    c.feed(made(7))
    c.feed(c.shell(X, 7))  # ...and X has the current one
    x_asked = c.ask(X)
    c.feed(made(9))
    c.feed(c.shell(Y, 9))
    y_asked = c.ask(Y)
    # X's connection goes; Y reconnects on the freed fd 7 and speaks, all before the
    # kernel read any of it.
    c.feed(PeerConnections((lost(7), made(7)), (c.shell(Y, 7),)))
    assert c.unreachable(x_asked)
    assert c.pending(y_asked), "an ambiguous message binds nothing"
    assert c.core.connections.connection_of(Channel.SHELL, Y) is None
    # Y's next message, alone, proves where it is now.
    c.feed(c.shell(Y, 7))
    c.feed(lost(9))
    assert c.pending(y_asked), "Y is no longer on fd 9"
    c.feed(lost(7))
    assert c.unreachable(y_asked)


def test_an_accept_in_the_batch_alone_tells_the_connection() -> None:
    """fd 7 was closed before the batch: a message on fd 7 in a batch that accepts one
    connection there can only be from that connection."""
    c = Core()
    c.feed(made(7))
    c.feed(lost(7))
    c.feed(PeerConnections((made(7), made(8)), (c.shell(X, 7),)))
    asked = c.ask(X)
    c.feed(lost(8))
    assert c.pending(asked)
    c.feed(lost(7))
    assert c.unreachable(asked)


def test_a_reply_drained_before_the_disconnect_wins() -> None:
    """The drain rule: the answer that had arrived before X's connection was reported
    gone resolves the request; the disconnect then finds nothing pending."""
    c = Core()
    c.feed(PeerConnections((made(7), made(5, Channel.STDIN))))
    c.feed(c.shell(X, 7))
    asked = c.ask(X)
    c.feed(PeerConnections((lost(7), lost(5, Channel.STDIN)), (c.reply(X, asked, 5),)))
    ended = c.ended[asked]
    assert ended.error is None and ended.result == "Ada"
    assert c.core.stdin.late_replies == 0


def test_the_stdin_connection_counts_too() -> None:
    c = Core()
    c.feed(PeerConnections((made(7), made(5, Channel.STDIN))))
    c.feed(c.shell(X, 7))
    first = c.ask(X)
    c.feed(c.reply(X, first, 5))  # X answered once on stdin: its stdin fd is known
    asked = c.ask(X)
    c.feed(lost(5, Channel.STDIN))
    assert c.unreachable(asked)


def test_what_cannot_prove_its_connection_unbinds() -> None:
    c = Core()
    c.feed(made(7))
    c.feed(c.shell(X, 7))
    c.feed(c.shell(X, None))  # no fd: X may be anywhere now
    asked = c.ask(X)
    c.feed(lost(7))
    assert c.pending(asked)
    c.feed(c.shell(X, 12))  # an fd with no accepted connection: no proof either
    c.feed(lost(12))
    assert c.pending(asked)
    assert c.core.connections.unmatched == 1


def test_an_accept_on_an_fd_never_reported_lost_ends_the_old_connection() -> None:
    """The monitor dropped a disconnect (its queue was full): the OS cannot give out an
    fd that is still open, so the accept proves the old connection gone."""
    c = Core()
    c.feed(made(7))
    c.feed(c.shell(X, 7))
    asked = c.ask(X)
    c.feed(made(7))
    assert c.unreachable(asked)


def test_a_broken_rule_that_binds_fds_would_end_a_live_frontend() -> None:
    """What the serial numbers are for: a map from identity to fd alone ends Y's
    request when the disconnect of fd 7's *previous* connection is handled after Y's
    message on the new one. The kernel's map does not."""

    class ByFd:  # the broken rule: fd -> identities, no connections
        def __init__(self) -> None:
            self.on: dict[int, set[bytes]] = {}

        def seen(self, identity: bytes, fd: int) -> None:
            self.on.setdefault(fd, set()).add(identity)

        def lost(self, fd: int) -> set[bytes]:
            return self.on.pop(fd, set())

    broken = ByFd()
    broken.seen(X, 7)
    broken.seen(Y, 7)  # Y on the reused fd 7, read before X's disconnect
    assert broken.lost(7) == {X, Y}, "the broken rule ends Y too"

    c = Core()
    c.feed(made(7))
    c.feed(c.shell(X, 7))
    x_asked = c.ask(X)
    c.feed(made(9))
    c.feed(c.shell(Y, 9))
    y_asked = c.ask(Y)
    c.feed(PeerConnections((lost(7), made(7)), (c.shell(Y, 7),)))
    assert c.unreachable(x_asked) and c.pending(y_asked)


def test_the_map_is_bounded_least_recently_heard_first() -> None:
    connections = PeerConnectionMap(capacity=2)
    connections.apply(made(7))
    for identity in (b"a", b"b", b"c"):
        connections.note(Received(Channel.SHELL, (identity,), _msg("m", "kernel_info_request"),
                                  7))
    assert connections.bound == 2
    assert connections.connection_of(Channel.SHELL, b"a") is None
    gone = connections.apply(lost(7))
    assert gone is not None and gone.identities == (b"b", b"c")
    assert connections.bound == 0
    with pytest.raises(ValueError):
        PeerConnectionMap(capacity=-1)


def test_control_and_unknown_senders_bind_nothing() -> None:
    connections = PeerConnectionMap()
    connections.apply(made(7, Channel.SHELL))
    connections.note(Received(Channel.CONTROL, (X,), _msg("m", "kernel_info_request"), 7))
    connections.note(Received(Channel.SHELL, (), _msg("m", "kernel_info_request"), 7))
    assert connections.bound == 0


def test_the_drain_handles_what_settles_first_and_the_rest_after_the_departure() -> None:
    """The drain rule v2: of what had arrived, the stdin reply is applied before the
    departure acts; the kernel_info_request, which settles nothing, is handled after
    it, in its order (a kernel whose handler thread is busy need not run it first)."""
    c = Core()
    c.feed(PeerConnections((made(7), made(5, Channel.STDIN))))
    c.feed(c.shell(X, 7))
    asked = c.ask(X)
    effects = c.feed(PeerConnections((lost(7), lost(5, Channel.STDIN)),
                                     (c.shell(X, 7), c.reply(X, asked, 5))))
    ended = [i for i, e in enumerate(effects) if isinstance(e, RequestEnded)
             and e.msg_id == asked]
    answered = [i for i, e in enumerate(effects) if isinstance(e, Send)
                and e.msg_type == "kernel_info_reply"]
    assert c.ended[asked].error is None, "the answer that had arrived wins"
    assert ended and answered and ended[0] < answered[0], (
        "the message that settles nothing waits until after the departure")


@pytest.mark.parametrize(("msg_type", "content", "settles"), [
    ("comm_close", {"comm_id": "nobody-holds-this"}, False),
    ("comm_msg", {"comm_id": "c", "data": {"result": 1}}, False),  # no request of ours
    ("comm_msg", {"comm_id": "c", "data": {"jsonrpc": "2.0", "id": 1, "method": "m"}}, False),
    ("execute_request", {"code": "1"}, False),
])
def test_what_settles_nothing_is_told_from_the_message_alone(
        msg_type: str, content: dict[str, Any], settles: bool) -> None:
    c = Core()
    item = Received(Channel.SHELL, (X,), _msg("m1", msg_type, content=content))
    assert c.core.settles(item) is settles
    assert c.core.settles(c.reply(X, "any", 5)), "a stdin reply always settles"


def test_a_stdin_reply_from_another_frontend_is_refused_and_the_request_waits() -> None:
    """Only the frontend asked may answer: Y's input_reply to X's request is dropped and
    counted (it would be Y typing into X's prompt); X's own reply then resolves it."""
    c = Core()
    c.feed(PeerConnections((made(7), made(8))))
    asked = c.ask(X)
    c.feed(c.reply(Y, asked, None))
    assert c.pending(asked)
    assert c.core.bad.counts().get("stdin_reply_from_another_frontend") == 1
    c.feed(c.reply(X, asked, None))
    assert not c.pending(asked) and c.ended[asked].error is None


def _parentless_reply(identity: bytes, n: int) -> Received:
    """What jupyter_client's ``KernelClient.input`` sends (jupyter console's too): an
    input_reply with no parent_header."""
    return Received(Channel.STDIN, (identity,), _msg(f"p{n}", "input_reply",
                                                     content={"value": "Ada"}))


def test_a_parentless_reply_answers_the_one_request_pending_for_its_sender() -> None:
    c = Core()
    asked_x, asked_y = c.ask(X), c.ask(Y)
    c.feed(_parentless_reply(X, 1))
    assert not c.pending(asked_x) and c.ended[asked_x].result == "Ada"
    assert c.pending(asked_y), "Y's request is not X's to answer"


def test_a_parentless_reply_with_no_or_several_requests_pending_ends_nothing() -> None:
    c = Core()
    c.feed(_parentless_reply(X, 1))  # nothing pending for X
    first, second = c.ask(X), c.ask(X)
    c.feed(_parentless_reply(X, 2))  # two pending: which one it answers cannot be told
    assert c.pending(first) and c.pending(second)
    assert c.core.bad.counts().get("unknown_reply") == 2
