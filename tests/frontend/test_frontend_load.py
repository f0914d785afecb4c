"""Load from the frontend's side: what it sends that the kernel cannot take yet, or at all.

A burst of requests the kernel cannot read yet: queued by the frontend, not failed.

The kernel's I/O thread is held (``hold_until_queued``) while one frontend fires more
requests on one comm than its shell queue used to take (1,000 messages, plus the
kernel's own 1,000 and what loopback TCP buffers hold). None may end at once: a live
kernel reads them later, so each ends in its result once the kernel is let go
(SPEC.md, "Load"). Before, the rest failed at once as Undeliverable.

A request larger than the kernel takes: refused by the frontend, alone.
"""

from __future__ import annotations

from concurrent.futures import wait

from fe_support import WAIT, FrontendFactory

from commspec.impl.errors import Undeliverable
from commspec.impl.kernel import KernelEndpoint
from commspec.impl.targets import ECHO
from commspec.impl.wire import DEFAULT_MAX_MESSAGE_BYTES
from commspec.model.machines import SessionState

#: requests fired while the kernel reads nothing: about 2,000 of 4,000 went out before
BURST = 4_000
#: each request's parameter: large enough that the loopback TCP buffers hold few
PARAM = "x" * 8_000


def test_requests_the_kernel_cannot_read_yet_wait_and_end_in_their_result(
        reference_kernel: KernelEndpoint, frontends: FrontendFactory) -> None:
    frontend = frontends(reference_kernel.connection_file)
    frontend.wait_ready(WAIT)
    comm = frontend.open_comm(ECHO)
    assert comm.request("echo", "ready").result(WAIT) == "ready"
    released = reference_kernel.hold_until_queued(["control"], timeout=60)
    futures = [comm.request("echo", PARAM) for _ in range(BURST)]
    ended_at_once = [f for f in futures if f.done()]
    # Anything on control lets the kernel go: it then reads the whole burst on shell.
    frontend.kernel_request("kernel_info_request", {}, channel="control")
    assert released.result(WAIT), "the kernel's hold ended on the control message"
    done, pending = wait(futures, timeout=60)
    results = sum(1 for f in done if f.exception() is None and f.result() == PARAM)
    failures = {type(f.exception()).__name__ for f in done if f.exception() is not None}
    assert not ended_at_once, f"{len(ended_at_once)} of {BURST} ended at once: {failures}"
    assert (results, len(pending)) == (BURST, 0), \
        f"{results} results, {len(pending)} never ended, failures {failures}"


def test_a_request_larger_than_the_kernel_takes_fails_alone_and_the_link_stays(
        reference_kernel: KernelEndpoint, frontends: FrontendFactory) -> None:
    """Sent, it would end the frontend's shell connection (the kernel's libzmq cuts a
    frame over its limit, SPEC.md "Load"), failing everything pending with it. Refused
    here instead, at once, saying why; the session and the comm go on."""
    frontend = frontends(reference_kernel.connection_file)
    frontend.wait_ready(WAIT)
    comm = frontend.open_comm(ECHO)
    assert comm.request("echo", "ready").result(WAIT) == "ready"
    too_large = "x" * (DEFAULT_MAX_MESSAGE_BYTES + 1)
    error = comm.request("echo", too_large).exception(WAIT)
    assert isinstance(error, Undeliverable), error
    assert f"{DEFAULT_MAX_MESSAGE_BYTES:,}" in error.detail, error.detail
    assert comm.request("echo", "after").result(WAIT) == "after"
    assert frontend.state is SessionState.READY
