"""Load and hostile frames at the kernel's sockets (issue 10, points 4 and 5).

- A frontend that falls behind on IOPub (it sends a burst of requests and reads
  nothing until the kernel has handled them all) still gets every reply and every
  idle: IOPub queues for a live subscriber; only the ZMTP heartbeat cuts off one
  that stalls past its timeout, and that is a departure (SPEC.md, "Load").
- A frontend that reads its shell replies late still gets every one: the ROUTERs
  queue too, so a send never meets a full queue (EAGAIN) while the peer lives.
- A frame over the kernel's size limit is refused by libzmq (ZMQ_MAXMSGSIZE) as its
  size is read, before it is buffered: libzmq closes the connection that sent it.
  The kernel sees that connection end, and treats it so: on shell, the identities
  bound to it are unbound (a stdin request to them would end); on IOPub, the
  subscriber's topics go (its departure).

Each burst is sized to overflow today's default queues (1,000 messages a socket, plus
what the loopback TCP buffers hold) with a wide margin; the waits are bounded and
end on what arrives, never on a guessed time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import zmq
from ki_peers import WAIT, KernelUnderTest, RawFrontend, open_and_wait, wait_until

from commspec.impl.kernel import HeartbeatSettings, KernelConfig
from commspec.impl.targets import ECHO

MakeKernel = Callable[..., KernelUnderTest]
MakeRaw = Callable[..., RawFrontend]
Message = dict[str, Any]

#: echo requests fired at once: about 2,500 of 4,000 came back with IOPub's old limit
BURST = 4_000
#: shell requests whose replies are read late: 2,000 of 3,000 came back with the
#: ROUTERs' old limit, with comm_info_replies listing this many comms
LATE_READS, COMMS_LISTED = 3_000, 100
#: the kernel's size limit in the oversize tests: small, so a frame over it is cheap
LIMIT = 64 * 1024
#: a heartbeat that cannot be what ends a connection within a test's waits (a frontend
#: that reads nothing for a while is cut off at the timeout, however loaded the machine)
SLOW_HEARTBEAT = HeartbeatSettings(interval=1.0, timeout=60.0)


def _collect_iopub(frontend: RawFrontend, parents: set[str], last: str,
                   timeout: float) -> tuple[set[str], set[str]]:
    """The parents (among ``parents``) of the replies and of the idles seen on IOPub,
    read until the idle of ``last`` or until ``timeout`` passes (then what was seen)."""
    assert frontend.iopub is not None
    replied: set[str] = set()
    idle: set[str] = set()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = frontend.recv(frontend.iopub, left)
        if msg is None:
            break
        parent = msg["parent_header"].get("msg_id")
        is_idle = msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
        if parent == last and is_idle:
            break
        if parent in parents:
            if msg["msg_type"] == "comm_msg":
                replied.add(parent)
            elif is_idle:
                idle.add(parent)
    return replied, idle


def test_iopub_keeps_every_reply_and_idle_for_a_subscriber_that_falls_behind(
        make_kernel: MakeKernel, raw_frontend: MakeRaw) -> None:
    kut = make_kernel(heartbeat=SLOW_HEARTBEAT)
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    requests = {frontend.request(comm_id, "echo", "x" * 200)["header"]["msg_id"]
                for _ in range(BURST)}
    # Shell is handled in order: once this is answered, every request was, and each
    # reply and idle was published (or dropped) while this frontend read no IOPub.
    barrier = frontend.send(frontend.shell, "kernel_info_request", {})
    frontend.shell_reply("kernel_info_reply", timeout=60)
    replied, idle = _collect_iopub(frontend, requests, barrier["header"]["msg_id"], WAIT)
    assert (len(replied), len(idle)) == (BURST, BURST), \
        f"of {BURST} requests, {len(replied)} replies and {len(idle)} idles came"


def test_shell_replies_wait_for_a_frontend_that_reads_them_late(
        make_kernel: MakeKernel, raw_frontend: MakeRaw) -> None:
    kut = make_kernel(heartbeat=SLOW_HEARTBEAT)
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_ids = [frontend.open_comm(ECHO) for _ in range(COMMS_LISTED)]
    frontend.wait_idle(frontend.send(frontend.shell, "comm_info_request", {}))
    assert len(kut.kernel.comm_states()) == len(comm_ids)
    # A client of its own with a small receive buffer, so that what waits for it waits
    # in the kernel's queue, not in loopback TCP buffers.
    late = frontend.context.socket(zmq.DEALER)
    late.linger = 0
    try:
        late.setsockopt(zmq.RCVBUF, 4096)
        late.setsockopt(zmq.IDENTITY, uuid.uuid4().hex.encode())
        late.connect(frontend.info.url("shell"))
        for _ in range(LATE_READS):
            last = frontend.send(late, "comm_info_request", {})
        frontend.wait_idle(last, timeout=60)  # all handled, their replies sent (or not)
        got = 0
        while got < LATE_READS and frontend.recv(late, WAIT) is not None:
            got += 1
    finally:
        late.close()
    assert got == LATE_READS, f"{got} of {LATE_READS} comm_info_replies came"


def test_an_oversize_frame_on_shell_ends_that_connection_unread(
        make_kernel: MakeKernel, raw_frontend: MakeRaw) -> None:
    kut = make_kernel(max_message_bytes=LIMIT, heartbeat=SLOW_HEARTBEAT)
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    identity = frontend.identity
    assert kut.kernel.connection_fd(identity) is not None, "bound by the comm_open"
    big = {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": "x" * (2 * LIMIT)}
    frontend.send(frontend.shell, "comm_msg", {"comm_id": comm_id, "data": big})
    wait_until(lambda: kut.kernel.connection_fd(identity) is None,
               "the kernel saw the connection that sent the oversize frame end")
    # libzmq's DEALER connects again by itself: the frontend is served as before.
    echo = frontend.request(comm_id, "echo", "after")
    assert frontend.wait_reply_to(echo)["result"] == "after"
    assert kut.kernel.bad_input["oversized"] == 0, "refused by libzmq, never decoded"


def test_an_oversize_subscription_ends_that_subscribers_connection(
        make_kernel: MakeKernel, raw_frontend: MakeRaw) -> None:
    kut = make_kernel(max_message_bytes=LIMIT, heartbeat=SLOW_HEARTBEAT)
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    identity = frontend.identity
    wait_until(lambda: identity in kut.kernel.live_peers, "the frontend is a live peer")
    assert frontend.iopub is not None
    frontend.iopub.setsockopt(zmq.SUBSCRIBE, b"t" * (2 * LIMIT))
    wait_until(lambda: identity not in kut.kernel.live_peers,
               "the kernel saw the subscriber that sent the oversize frame leave")
    assert kut.kernel.subscriptions == 0, "its topics went with its connection"


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "64"])
def test_a_size_limit_that_is_not_a_positive_int_is_refused_in_the_config(limit: Any) -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        KernelConfig(max_message_bytes=limit)
