"""The README's commspec.ipykernel example, run in the kernel and used by frontends:
what happens to a persistent and a default target when the browser tab closes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from commspec.impl import Deferred, FrontendEndpoint

README = Path(__file__).resolve().parents[2] / "README.md"
TIMEOUT = 30.0


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith("# commspec.ipykernel example")]
    assert len(found) == 1, "the README has one commspec.ipykernel example"
    return found[0]


@pytest.fixture
def kernel(kernelspecs: dict[str, str]) -> Iterator[tuple[KernelManager, Any]]:
    km = KernelManager(kernel_name=kernelspecs["commspec"])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: Any, code: str) -> str:
    """Execute ``code``; what it printed (stdout), failing on an error."""
    out: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=keep)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def wait_for_iopub(kc: Any, match: Any) -> dict[str, Any]:
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if match(msg):
            return msg


def test_readme_example_when_the_tab_closes(kernel: tuple[KernelManager, Any]) -> None:
    km, kc = kernel
    run(kc, readme_example())
    tab = FrontendEndpoint(km.connection_file)
    try:
        tab.wait_ready(TIMEOUT)
        plot = tab.open_comm("plot", persistent=True)
        variables = tab.open_comm("variables")
        variables.on_request("theme", lambda params: Deferred())  # never answered
        assert plot.request("render", {"width": 640}).result(TIMEOUT)["width"] == 640
        assert "events" in variables.request("list").result(TIMEOUT)
        assert variables.request("watch").result(TIMEOUT) == "watching"
    finally:
        tab.close()  # the tab closes
    # kc, a stock client, stays subscribed: the tab's own departure is what is seen
    wait_for_iopub(kc, lambda m: m["msg_type"] == "comm_close"
                   and m["content"]["comm_id"] == variables.comm_id)
    events = run(kc, "print(sorted(events))")
    assert "'variables closed'" in events and "'plot detached'" in events, events
    assert "theme: Disconnected" in events, events
    assert "plot closed" not in events, events

    reloaded = FrontendEndpoint(km.connection_file)
    try:
        reloaded.wait_ready(TIMEOUT)
        reloaded.register_target("plot", lambda comm, data: None)
        adopted = reloaded.adopt_comms("plot").result(TIMEOUT)
        assert [c.comm_id for c in adopted] == [plot.comm_id]
        assert adopted[0].request("render", {"width": 320}).result(TIMEOUT)["width"] == 320
    finally:
        reloaded.close()
