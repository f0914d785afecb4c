"""Churn (issue 10, point 7): frontends that come and die one after another leave the
kernel flat, and the persistent comms they leave detached bounded.

Each cycle is ``benchmarks/churn.py``'s: a frontend process connects, opens a default
and a persistent comm, has each echo, and dies, in turn by SIGKILL, a clean close and
SIGSTOP past the kernel's heartbeat; the cycle ends once the kernel has acted on the
departure. The kernel runs in this process, so its fds, threads and resident memory
are this process's: they are compared after a warm-up set of cycles and after the rest,
with a generous margin, yet below what a leak of one per cycle would add over the
cycles after the warm-up (it is not a speed check). Its comm_info must hold exactly ``max_detached``
persistent comms, all detached, and no default comm: without the bound it would hold
one per cycle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ki_peers import KernelUnderTest

from commspec.impl.kernel import HeartbeatSettings
from commspec.impl.targets import ECHO_PERSISTENT
from commspec.impl.tracing import match
from commspec.mbt.processes import FrontendPool

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks package sits next to impl/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.churn import CommCensus, Resources, churn  # noqa: E402

MAX_DETACHED = 4
WARM_UP = 6
CYCLES = 24
#: short, so a stopped frontend is dropped soon; long enough for a loaded machine
HEARTBEAT = HeartbeatSettings(interval=0.1, timeout=1.0)
#: generous: what may differ between two samples without a leak (pytest's own files,
#: a thread the runtime starts late, the allocator's arenas, the trace kept in memory)
FD_MARGIN, THREAD_MARGIN, RSS_MARGIN_KIB = 8, 2, 32 * 1024


def test_churn_leaves_the_kernel_flat_and_detached_comms_bounded(
        make_kernel: Callable[..., KernelUnderTest], kut_pool: FrontendPool) -> None:
    kut = make_kernel(heartbeat=HEARTBEAT, max_detached=MAX_DETACHED)
    info = kut.kernel.connection_info
    census = CommCensus(info)
    try:
        churn(kut_pool, info, census, range(WARM_UP))
        warm = Resources.of(os.getpid())
        churn(kut_pool, info, census, range(WARM_UP, CYCLES))
        after = Resources.of(os.getpid())
        listed = census.comms()
    finally:
        census.close()
    assert sorted(listed.values()) == [ECHO_PERSISTENT] * MAX_DETACHED, listed
    states = kut.kernel.comm_states()
    assert states == dict.fromkeys(listed, "detached")
    evicted = [e for e in kut.sink.events if match(machine="kernel_comm", event="evicted")(e)]
    assert len(evicted) == CYCLES - MAX_DETACHED
    assert after.fds <= warm.fds + FD_MARGIN, (warm, after)
    assert after.threads <= warm.threads + THREAD_MARGIN, (warm, after)
    assert after.rss_kib <= warm.rss_kib + RSS_MARGIN_KIB, (warm, after)
