"""Adoption of detached comms (``commspec/adopt``) and the bound on detached comms.

The rules (issue 9 point 7), on the kernel side:
- A commspec frontend that adopts a comm through comm_info sends on it the
  notification ``commspec/adopt``. On a detached comm, from a commspec peer that
  is present, the kernel makes the sender the comm's owner (ADOPTED: detached ->
  open): the kernel's requests on it reach the adopter, and the adopter's
  departure detaches it again. On an open comm nothing changes. The notification
  is the kernel's, never the target's.
- The kernel keeps at most ``max_detached`` detached comms (default 64); when one
  more detaches, the one detached longest is evicted (EVICTED: detached -> closed),
  closed as when the kernel closes a comm.

Mostly the sans-IO core fed by hand (one bystander holds ``b""`` throughout, so a
frontend's departure is its peer topic's unsubscribe), then live smoke tests over
loopback with raw frontends.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from ki_peers import OBSERVED_PERSISTENT, KernelUnderTest, RawFrontend, open_and_wait

from commspec.impl.core.events import (
    Channel,
    CommClosed,
    CommData,
    Effect,
    Received,
    RequestEnded,
    Send,
    StartRequest,
    SubscriptionFrames,
    Trace,
)
from commspec.impl.core.kernel import KernelProtocol
from commspec.impl.core.presence import peer_topic
from commspec.impl.errors import Disconnected, Undeliverable
from commspec.impl.kernel import KernelConfig
from commspec.impl.tracing import match
from commspec.model.messages import ADOPT_METHOD

WAIT = 5.0
KEY = b"secret"
PERSISTENT, DEFAULT = "test.persistent", "test.default"
A, B, C = b"frontend-a", b"frontend-b", b"frontend-c"

Message = dict[str, Any]
MakeRaw = Callable[..., RawFrontend]


def _kind(target_name: str) -> bool | None:
    return {PERSISTENT: True, DEFAULT: False}.get(target_name)


def _msg(msg_id: str, msg_type: str, identity: bytes, content: Message,
         parent: str | None = None) -> Message:
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": identity.decode()}
    parent_header = {"msg_id": parent, "msg_type": "comm_msg"} if parent else {}
    return {"header": header, "parent_header": parent_header, "metadata": {},
            "content": content, "buffers": [], "msg_id": msg_id, "msg_type": msg_type}


class Kernel:
    """A kernel core with a bystander that holds ``b""``; helpers speak for frontends."""

    def __init__(self, **settings: Any) -> None:
        ids = itertools.count(1)
        self.core = KernelProtocol(session_id="k", key=KEY, targets=_kind,
                                   new_msg_id=lambda: f"k{next(ids)}", tracing=True,
                                   **settings)
        self.effects: list[Effect] = []
        self._n = itertools.count(1)
        self.feed(SubscriptionFrames((b"\x01",), (True,)))

    def feed(self, event: Any) -> list[Effect]:
        effects = self.core.handle(event, 0.0)
        self.effects.extend(effects)
        return effects

    # -- frontends --------------------------------------------------------------------

    def arrive(self, identity: bytes) -> None:
        """``identity`` holds its peer topic: a commspec peer, present."""
        self.feed(SubscriptionFrames((b"\x01" + peer_topic(identity, KEY),), (True,)))

    def leave(self, identity: bytes) -> None:
        """libzmq's unsubscribe of ``identity``'s peer topic: it left."""
        self.feed(SubscriptionFrames((b"\x00" + peer_topic(identity, KEY),), (False,)))

    def shell(self, identity: bytes, msg_type: str, content: Message,
              parent: str | None = None) -> list[Effect]:
        msg = _msg(f"s{next(self._n)}", msg_type, identity, content, parent)
        return self.feed(Received(Channel.SHELL, (identity,), msg))

    def open(self, identity: bytes, target: str = PERSISTENT) -> str:
        comm_id = f"comm{next(self._n)}"
        self.shell(identity, "comm_open", {"comm_id": comm_id, "target_name": target,
                                           "data": {}})
        assert self.state(comm_id) == "open"
        return comm_id

    def adopt(self, identity: bytes, comm_id: str) -> list[Effect]:
        return self.shell(identity, "comm_msg", {
            "comm_id": comm_id, "data": {"jsonrpc": "2.0", "method": ADOPT_METHOD}})

    def notify(self, identity: bytes, comm_id: str, method: str) -> list[Effect]:
        return self.shell(identity, "comm_msg", {
            "comm_id": comm_id, "data": {"jsonrpc": "2.0", "method": method}})

    def request(self, comm_id: str) -> tuple[str, list[Effect]]:
        """A kernel request on the comm: its msg_id and what starting it did."""
        msg_id = f"req{next(self._n)}"
        return msg_id, self.feed(StartRequest(msg_id, comm_id, "frontend.work", None))

    def answer(self, identity: bytes, comm_id: str, msg_id: str, result: Any) -> list[Effect]:
        return self.shell(identity, "comm_msg", {
            "comm_id": comm_id, "data": {"jsonrpc": "2.0", "id": msg_id, "result": result}},
            parent=msg_id)

    # -- reading ----------------------------------------------------------------------

    def state(self, comm_id: str) -> str:
        return self.core.comm_state(comm_id).value

    def detached(self) -> list[str]:
        return [r.comm_id for r in self.core.comms if r.state.value == "detached"]

    def comm_events(self, comm_id: str | None = None,
                    effects: list[Effect] | None = None) -> list[tuple[str, str, str]]:
        """(source, event, dest) of the kernel_comm trace events, of one comm or all."""
        return [(e.event.source, e.event.event, e.event.dest)
                for e in (self.effects if effects is None else effects)
                if isinstance(e, Trace) and e.event.machine == "kernel_comm"
                and (comm_id is None or e.event.object == comm_id)]

    def evicted(self) -> list[str]:
        return [e.event.object for e in self.effects if isinstance(e, Trace)
                and e.event.machine == "kernel_comm" and e.event.event == "evicted"]

    def published(self, msg_type: str, effects: list[Effect] | None = None) -> list[Send]:
        return [e for e in (self.effects if effects is None else effects)
                if isinstance(e, Send) and e.channel is Channel.IOPUB and e.msg_type == msg_type]

    def ended(self, msg_id: str) -> RequestEnded | None:
        found = [e for e in self.effects if isinstance(e, RequestEnded) and e.msg_id == msg_id]
        return found[-1] if found else None


def _detached_by(k: Kernel, opener: bytes) -> str:
    """A persistent comm opened by ``opener``, which then left: detached."""
    k.arrive(opener)
    comm_id = k.open(opener)
    k.leave(opener)
    assert k.state(comm_id) == "detached"
    return comm_id


# =========================================================================
# adoption, in the core
# =========================================================================


def test_an_adopted_comm_is_the_adopters_and_its_requests_reach_it() -> None:
    k = Kernel()
    comm_id = _detached_by(k, A)
    k.arrive(B)
    refused, _ = k.request(comm_id)
    assert isinstance(k.ended(refused).error, Undeliverable), "detached: nobody receives it"

    effects = k.adopt(B, comm_id)
    assert k.comm_events(comm_id, effects) == [("detached", "adopted", "open")]
    assert k.state(comm_id) == "open"
    assert k.core.comm_owner(comm_id) == B
    adopted = next(e.event for e in effects if isinstance(e, Trace)
                   and e.event.event == "adopted")
    assert adopted.msg_id is not None, "the trace names the notification that adopted it"

    asked, effects = k.request(comm_id)
    assert [s.msg_id for s in k.published("comm_msg", effects)] == [asked], "it is sent"
    assert k.ended(asked) is None and k.core.requests.is_pending(asked)
    k.answer(B, comm_id, asked, "from B")
    ended = k.ended(asked)
    assert ended is not None and ended.error is None and ended.result == "from B"


def test_the_adopters_departure_detaches_it_again() -> None:
    k = Kernel()
    comm_id = _detached_by(k, A)
    k.arrive(B)
    k.adopt(B, comm_id)
    asked, _ = k.request(comm_id)

    k.leave(B)
    assert k.state(comm_id) == "detached"
    assert k.comm_events(comm_id)[-1] == ("open", "frontend_lost", "detached")
    assert isinstance(k.ended(asked).error, Disconnected), "only B could answer it"

    # The opener comes back under its session id: the comm is no longer its own.
    k.arrive(A)
    assert k.state(comm_id) == "detached"
    # The adopter comes back: its comm re-attaches, as any owner's does.
    k.arrive(B)
    assert k.state(comm_id) == "open"
    assert k.comm_events(comm_id)[-1] == ("detached", "frontend_back", "open")
    assert k.core.comm_owner(comm_id) == B


def test_adopt_is_the_kernels_never_the_targets() -> None:
    k = Kernel()
    comm_id = _detached_by(k, A)
    k.arrive(B)
    effects = k.adopt(B, comm_id)
    assert not [e for e in effects if isinstance(e, CommData)], "the target never sees it"
    # any other notification is the target's
    effects = k.notify(B, comm_id, "test.ping")
    assert [e.data["method"] for e in effects if isinstance(e, CommData)] == ["test.ping"]
    # an adopt that changes nothing is not the target's either
    effects = k.adopt(B, comm_id)
    assert not [e for e in effects if isinstance(e, CommData)]
    assert k.comm_events(comm_id, effects) == []
    assert not k.core.bad.counts()


def test_adopt_changes_nothing_unless_the_comm_is_detached_and_the_sender_a_present_peer(
) -> None:
    k = Kernel()
    k.arrive(A)
    k.arrive(B)
    open_id = k.open(A)
    effects = k.adopt(B, open_id)
    assert not [e for e in effects if isinstance(e, CommData)]
    assert k.comm_events(open_id, effects) == [], "its owner is still there"
    assert k.core.comm_owner(open_id) == A
    k.leave(B)
    assert k.state(open_id) == "open", "B's departure is not the owner's"
    asked, _ = k.request(open_id)
    k.answer(A, open_id, asked, "from A")
    ended = k.ended(asked)
    assert ended is not None and ended.result == "from A"

    # B has left (known, not present); D never named itself (no peer topic): neither
    # can adopt, since neither's departure could be seen.
    detached_id = _detached_by(k, A)
    stock = b"frontend-d"
    for sender in (B, stock):
        effects = k.adopt(sender, detached_id)
        assert k.comm_events(detached_id, effects) == []
        assert not [e for e in effects if isinstance(e, CommData)]
    assert k.state(detached_id) == "detached"
    assert not k.core.bad.counts()

    # On a comm the kernel does not hold: bad input, as any notification there.
    k.arrive(C)
    k.adopt(C, "never-opened")
    k.shell(A, "comm_close", {"comm_id": open_id, "data": {}})
    k.adopt(C, open_id)
    assert dict(k.core.bad.counts()) == {"unknown_comm": 1, "closed_comm": 1}


# =========================================================================
# the bound on detached comms, in the core
# =========================================================================


def test_past_the_bound_the_longest_detached_comms_are_evicted() -> None:
    k = Kernel(max_detached=3)
    frontends = [f"frontend-{i}".encode() for i in range(5)]
    comms = [_detached_by(k, f) for f in frontends]

    assert k.detached() == comms[2:]
    assert k.evicted() == comms[:2], "the oldest first"
    for comm_id in comms[:2]:
        assert k.state(comm_id) == "closed"
        assert k.comm_events(comm_id)[-1] == ("detached", "evicted", "closed")
        assert k.core.comms.recently_closed(comm_id), "its id is remembered as closed"
    closes = [s.content["comm_id"] for s in k.published("comm_close")]
    assert closes == comms[:2], "comm_close to everyone, as when the kernel closes one"
    told = [e.comm_id for e in k.effects if isinstance(e, CommClosed)]
    assert told == comms[:2], "their cleanup handlers are told"
    # Traffic on an evicted comm is traffic on a closed one.
    k.arrive(B)
    k.adopt(B, comms[0])
    assert k.core.bad.counts()["closed_comm"] == 1


def test_longest_detached_counts_from_the_latest_detach_and_adoption_frees_a_place() -> None:
    k = Kernel(max_detached=2)
    first = _detached_by(k, A)
    second = _detached_by(k, B)
    k.arrive(A)  # first re-attaches, then detaches again: now the newest
    k.leave(A)
    third = _detached_by(k, C)
    assert k.evicted() == [second]
    assert k.detached() == [first, third]

    adopter = b"frontend-adopter"
    k.arrive(adopter)
    k.adopt(adopter, first)  # open again: no longer counted
    fourth = _detached_by(k, b"frontend-4")
    assert k.evicted() == [second], "two detached: within the bound"
    assert sorted(k.detached()) == sorted([third, fourth])


def test_a_bound_of_zero_evicts_each_comm_as_it_detaches() -> None:
    k = Kernel(max_detached=0)
    k.arrive(A)
    comm_id = k.open(A)
    k.leave(A)
    assert k.comm_events(comm_id)[-2:] == [("open", "frontend_lost", "detached"),
                                           ("detached", "evicted", "closed")]
    assert k.state(comm_id) == "closed" and k.detached() == []


def test_by_default_200_departures_leave_64_detached_comms() -> None:
    k = Kernel()
    comms = []
    for i in range(200):
        identity = f"frontend-{i}".encode()
        k.arrive(identity)
        comms.append(k.open(identity))
        k.leave(identity)
    assert k.detached() == comms[-64:]
    assert k.evicted() == comms[:-64]
    assert len(k.core.comms) == 64
    assert KernelConfig().max_detached == k.core.max_detached == 64


@pytest.mark.parametrize("value, error", [
    (-1, ValueError), ("3", TypeError), (2.0, TypeError), (True, TypeError), (None, TypeError),
])
def test_bad_bounds_are_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"max_detached .* must be an int >= 0"):
        KernelConfig(max_detached=value)
    with pytest.raises(error, match=r"max_detached .* must be an int >= 0"):
        Kernel(max_detached=value)


def test_a_bound_of_zero_is_accepted() -> None:
    assert KernelConfig(max_detached=0).max_detached == 0
    assert Kernel(max_detached=0).core.max_detached == 0


# =========================================================================
# live, over loopback
# =========================================================================


def test_adoption_live(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    """A opens a persistent comm and leaves; B (another session) adopts it: the kernel's
    request reaches B and resolves with B's answer; B leaves: detached again."""
    a = raw_frontend(kut)
    b = raw_frontend(kut)
    a.wait_welcome()
    b.wait_welcome()
    comm_id = open_and_wait(a, OBSERVED_PERSISTENT)
    comm = kut.observed.comms[comm_id]
    a.close_iopub()
    kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, dest="detached"))
    with pytest.raises(Undeliverable):
        comm.request("frontend.work").result(WAIT)

    mark = kut.sink.mark()
    b.notify(comm_id, ADOPT_METHOD)
    adopted = kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="adopted"),
                                since=mark)
    assert (adopted.source, adopted.dest) == ("detached", "open")
    assert kut.kernel.comm_owner(comm_id) == b.identity

    future = comm.request("frontend.work", {"n": 1})
    request = b.wait_kernel_request(comm_id)
    b.answer(request, "from B")
    assert future.result(WAIT) == "from B"
    assert kut.observed.notifications == [], "the target never saw the adopt"

    mark = kut.sink.mark()
    b.close_iopub()
    lost = kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="frontend_lost"),
                             since=mark)
    assert lost.dest == "detached"
    assert kut.kernel.comm_states() == {comm_id: "detached"}
    assert kut.observed.disconnected == [comm_id, comm_id]


def test_adopt_on_an_open_comm_live(kut: KernelUnderTest, raw_frontend: MakeRaw) -> None:
    """The owner is still there: nothing changes; the notification is not the target's."""
    a = raw_frontend(kut)
    b = raw_frontend(kut)
    a.wait_welcome()
    b.wait_welcome()
    comm_id = open_and_wait(a, OBSERVED_PERSISTENT)
    b.wait_idle(b.notify(comm_id, ADOPT_METHOD))
    b.wait_idle(b.notify(comm_id, "test.ping"))  # the target's: it sees this one only
    assert [data["method"] for _, data in kut.observed.notifications] == ["test.ping"]
    assert not kut.sink.find(match(machine="kernel_comm", event="adopted"))
    assert kut.kernel.comm_owner(comm_id) == a.identity

    mark = kut.sink.mark()
    b.close_iopub()
    kut.sink.wait_for(match(machine="presence", event="unsubscribe"), since=mark)
    assert kut.kernel.comm_states() == {comm_id: "open"}
    future = kut.observed.comms[comm_id].request("frontend.work")
    a.answer(a.wait_kernel_request(comm_id), "from A")
    assert future.result(WAIT) == "from A"


def test_eviction_live(make_kernel: Callable[..., KernelUnderTest],
                       raw_frontend: MakeRaw) -> None:
    """max_detached=3: five frontends each open a persistent comm and leave; the two
    detached longest are evicted, closed for everyone."""
    kut = make_kernel(max_detached=3)
    bystander = raw_frontend(kut, peer=False)
    bystander.wait_welcome()
    comms = []
    for _ in range(5):
        frontend = raw_frontend(kut)
        frontend.wait_welcome()
        comm_id = open_and_wait(frontend, OBSERVED_PERSISTENT)
        frontend.close_iopub()
        kut.sink.wait_for(match(machine="kernel_comm", object=comm_id, event="frontend_lost"))
        comms.append(comm_id)

    assert kut.kernel.comm_states() == {c: "detached" for c in comms[2:]}
    evicted = kut.sink.find(match(machine="kernel_comm", event="evicted"))
    assert [(e.object, e.source, e.dest) for e in evicted] == [
        (c, "detached", "closed") for c in comms[:2]]
    closed = [bystander.wait_iopub(lambda m: m["msg_type"] == "comm_close",
                                   what="comm_close of an evicted comm")["content"]["comm_id"]
              for _ in range(2)]
    assert closed == comms[:2]
    assert kut.observed.closed == comms[:2], "their cleanup handlers ran"
