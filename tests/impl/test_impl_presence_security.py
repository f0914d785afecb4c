"""SPEC.md "Security considerations": subscription frames are not signed, so nothing a
client without the key sends on IOPub may fake a departure or hide one. Each attack was
measured against the kernel that counted XPUB_VERBOSER frames; each test fails there.

A peer's frames are ordered on its connection, so a test knows the kernel has read
them once the welcome of a later subscription on the same connection is published."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from ki_peers import WAIT, KernelUnderTest, KeylessPeer, RawFrontend, open_and_wait

from commspec.impl.core.presence import PEER_TOPIC_PREFIX, peer_topic
from commspec.impl.kernel import HeartbeatSettings
from commspec.impl.targets import ECHO
from commspec.impl.tracing import match

MakeRaw = Callable[..., RawFrontend]


@pytest.fixture
def keyless(kut: KernelUnderTest) -> Iterator[Callable[[], KeylessPeer]]:
    made: list[KeylessPeer] = []

    def make() -> KeylessPeer:
        made.append(KeylessPeer(kut.kernel.connection_info))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def _read_up_to_here(peer: KeylessPeer, observer: RawFrontend) -> None:
    """Returns once the kernel has read every frame ``peer`` sent so far."""
    marker = f"sync-{uuid.uuid4().hex}"
    peer.send(b"\x01" + marker.encode())
    observer.wait_iopub(lambda m: m["msg_type"] == "iopub_welcome"
                        and m["content"]["subscription"] == marker, what=f"welcome of {marker}")


def test_a_forged_unsubscribe_is_no_departure(kut: KernelUnderTest, raw_frontend: MakeRaw,
                                              keyless: Callable[[], KeylessPeer]) -> None:
    """It used to close S's default comm, and every comm S opened afterwards at once."""
    s = raw_frontend(kut)
    s.wait_welcome()
    comm_id = open_and_wait(s, ECHO)
    forger = keyless()
    forger.send(b"\x00" + peer_topic(s.identity, kut.kernel.connection_info.key))
    forger.send(b"\x00" + PEER_TOPIC_PREFIX + s.identity)
    forger.send(b"\x00")
    _read_up_to_here(forger, s)
    assert kut.kernel.comm_states() == {comm_id: "open"}
    assert kut.kernel.live_peers == {s.identity}
    assert kut.kernel.bad_input["explicit_unsubscribe"] == 2
    assert kut.kernel.bad_input["unauthenticated_peer_topic"] == 1
    request = s.request(comm_id, "echo", "still here")
    assert s.wait_reply_to(request)["result"] == "still here"


def test_subscribing_twice_cannot_keep_a_departed_stock_client_counted(
        kut: KernelUnderTest, raw_frontend: MakeRaw,
        keyless: Callable[[], KeylessPeer]) -> None:
    """A keyless SUB that subscribed b"" twice left one unsubscribe behind: the count never
    came back to zero, and a killed stock client's default comm stayed open for good."""
    stock = raw_frontend(kut, peer=False)
    stock.wait_welcome()
    comm_id = open_and_wait(stock, ECHO)
    doubler = keyless()
    doubler.send(b"\x01")
    doubler.send(b"\x01")
    _read_up_to_here(doubler, stock)
    doubler.close()
    stock.close()  # as a kill: the connections end
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, dest="closed"), timeout=WAIT)
    assert kut.kernel.subscriptions == 0


def test_a_guessed_peer_topic_cannot_hide_a_departure(
        make_kernel: Callable[..., KernelUnderTest], raw_frontend: MakeRaw) -> None:
    """Session ids are visible on IOPub: a keyless subscriber to S's peer topic used to
    hide S's departure for as long as it stayed (here: the whole test; the kernel's ZMTP
    heartbeat would drop the hider, which answers no PING, only after a minute)."""
    kut = make_kernel(heartbeat=HeartbeatSettings(interval=1.0, timeout=60.0))
    hider = KeylessPeer(kut.kernel.connection_info)
    try:
        _hide_and_leave(kut, raw_frontend(kut), hider)
    finally:
        hider.close()


def _hide_and_leave(kut: KernelUnderTest, s: RawFrontend, hider: KeylessPeer) -> None:
    s.wait_welcome()
    comm_id = open_and_wait(s, ECHO)
    hider.send(b"\x01" + PEER_TOPIC_PREFIX + s.identity)
    hider.send(b"\x01" + peer_topic(s.identity, "a guessed key"))
    _read_up_to_here(hider, s)
    s.close_iopub()
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="frontend_lost"),
                      timeout=WAIT)
    assert kut.kernel.live_peers == frozenset()
    assert kut.kernel.bad_input["unauthenticated_peer_topic"] == 2


def test_a_subscription_that_is_not_utf8_gets_no_welcome(
        kut: KernelUnderTest, raw_frontend: MakeRaw,
        keyless: Callable[[], KeylessPeer]) -> None:
    """JEP 65 welcomes UTF-8 subscriptions only; the kernel used to welcome b"\\xff" as
    "\\ufffd" (and under the topic b"\\xff", which the subscriber then received)."""
    observer = raw_frontend(kut)
    observer.wait_welcome()
    peer = keyless()
    peer.send(b"\x01\xff\xfe")
    _read_up_to_here(peer, observer)
    welcomed = [m["content"]["subscription"] for m in observer.seen
                if m["msg_type"] == "iopub_welcome"]
    assert not [s for s in welcomed if "\ufffd" in s], welcomed
    assert kut.kernel.subscriptions == 4, "held all the same: b'', the peer's, b'\\xff\\xfe', sync"
