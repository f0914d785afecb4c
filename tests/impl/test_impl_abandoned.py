"""Nothing is published for a frontend that has left (SPEC, "The disconnection policy").

Frontend A has comm RPCs in flight that the kernel answers only when its own request
to A ends (the demo target's ``call_frontend``); then A leaves. A's requests to the
kernel are dropped unanswered: no error reply and no idle goes out for each of them,
only one idle for all, parented to the last, so an observer does not see the kernel
stay busy. Frontend B watches IOPub throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ki_peers import KernelUnderTest, RawFrontend, open_and_wait

from commspec.impl.targets import ECHO, ECHO_PERSISTENT
from commspec.impl.tracing import match

N = 100  # below SETTLE_SLICE: every answer is dropped within the departure's own input


@pytest.mark.parametrize("target", [ECHO, ECHO_PERSISTENT], ids=["default", "persistent"])
def test_nothing_is_published_for_a_departed_requester(
        kut: KernelUnderTest, raw_frontend: Callable[..., RawFrontend], target: str) -> None:
    a, b = raw_frontend(kut), raw_frontend(kut)
    a.wait_welcome()
    b.wait_welcome()
    comm_id = open_and_wait(a, target)
    asked = {a.request(comm_id, "call_frontend", {"method": "hang"})["header"]["msg_id"]
             for _ in range(N)}
    kut.sink.wait_for(match(endpoint="kernel", machine="request", event="sent"), count=N)
    assert kut.kernel.pending_count == N
    a.close()
    # Traced as the departure is applied; its futures settle in the same input.
    kut.sink.wait_for(match(endpoint="kernel", machine="request", event="peer_lost"), count=N)
    assert kut.kernel.pending_count == 0
    assert kut.kernel.abandoned_answers == N

    b.wait_idle(b.send(b.shell, "kernel_info_request", {}))
    for_a = [m for m in b.seen if m["parent_header"].get("msg_id") in asked]
    # (the kernel's own requests to A, "hang", are parented to A's requests too)
    replies = [m for m in for_a if m["msg_type"] == "comm_msg"
               and {"result", "error"} & m["content"]["data"].keys()]
    idles = [m for m in for_a if m["msg_type"] == "status"
             and m["content"]["execution_state"] == "idle"]
    assert replies == [], f"{len(replies)} replies published to a frontend that left"
    assert len(idles) == 1, f"{len(idles)} idles for A's requests, one expected"
    assert b.seen.index(idles[0]) > max(b.seen.index(m) for m in for_a
                                        if m["content"].get("execution_state") == "busy")
