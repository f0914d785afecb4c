"""The benchmark's ipykernel stack starts whatever jupyter_client's heartbeat check says.

On a loaded machine that check (``wait_for_ready`` without a KernelManager) took a
late heartbeat for a dead kernel and the run failed with "Kernel died before replying
to kernel_info". Here the check always says dead: the start must not ask it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.client import KernelClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks package sits next to impl/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.rpc_ipykernel import IpykernelStack  # noqa: E402


def test_the_ipykernel_stack_starts_with_a_heartbeat_that_says_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def dead(self: KernelClient) -> bool:
        return False

    monkeypatch.setattr(KernelClient, "_async_is_alive", dead)
    monkeypatch.setattr(BlockingKernelClient, "is_alive", lambda self: False)
    stack = IpykernelStack()
    try:
        stack.start()  # registers the echo target and answers one echo
        assert stack.rate(1, 0.0) > 0  # one more round trip; the figure is not asserted
    finally:
        stack.close()
