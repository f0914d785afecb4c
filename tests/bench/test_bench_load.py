"""The load section of ``python -m benchmarks``, small: every request fired at once is
accounted for, and an oversize frame costs a ``commspec kernel`` process no memory.

No speed is asserted. The frame's cost is memory: before ZMQ_MAXMSGSIZE the kernel
buffered a frame past its limit whole (about twice its size at peak), then refused it.
"""

from __future__ import annotations

from benchmarks import at_once, oversize, report
from benchmarks.rpc_ours import OursStack

#: requests in the small burst
SMALL_BURST = 200


def test_a_burst_is_accounted_for_and_reported() -> None:
    stack = OursStack().start()
    try:
        burst = at_once.fire(stack, SMALL_BURST)
    finally:
        stack.close()
    ended = burst.results + sum(burst.otherwise.values()) + burst.never_ended
    assert ended == SMALL_BURST, burst
    assert burst.results == SMALL_BURST, burst
    assert burst.kernel_peak_kib[0] > 0, burst
    assert f"{SMALL_BURST} at once" in report.load_tables(
        burst, oversize.OversizeCost(65, 1024, 1024, True, 0.1))


def test_an_oversize_frame_is_refused_unread_by_the_kernel_process() -> None:
    cost = oversize.measure(oversize.QUICK_FRAME_MIB)
    assert cost.connection_cut, cost
    assert cost.growth_mib < report.OVERSIZE_PEAK_SLACK_MIB, cost
