"""The kernel under test binds ports below the ephemeral range: jupyter_client's own
picks come from that range, where any outgoing connection made meanwhile (a
frontend process connecting) can take one first ("Address already in use")."""

from __future__ import annotations

from commspec.conform.kernel import PORTS, KernelSource, running_kernel

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


def test_the_kernels_ports_are_picked_outside_the_ephemeral_range() -> None:
    source = KernelSource(cmd="commspec kernel --connection-file {connection_file}")
    with running_kernel(source, 60.0) as kernel:
        ports = [kernel.info[f"{channel}_port"] for channel in CHANNELS]
    assert all(port in PORTS for port in ports), ports
    assert len(set(ports)) == len(ports), ports
