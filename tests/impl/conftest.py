"""Fixtures for the kernel tests: kernels, raw and stock frontends, frontend processes.

Everything a fixture starts it also ends, even when the test fails: kernels are
stopped, sockets closed, subprocesses (started here, by pid) continued if
stopped and killed. Waits are bounded; nothing sleeps for a guessed time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ki_peers import (
    OBSERVED,
    OBSERVED_PERSISTENT,
    WAIT,
    KernelUnderTest,
    Observed,
    RawFrontend,
    SpawnedFrontend,
    stock_client,
)

from commspec.impl.comm import Comm
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import DEFAULT_TARGETS, TargetRegistry
from commspec.impl.tracing import ListSink, match
from commspec.mbt.processes import FrontendPool
from commspec.model.trace import discard

HERE = Path(__file__).parent
#: short, but long enough that a loaded test machine does not drop healthy peers
TEST_HEARTBEAT = HeartbeatSettings(interval=0.2, timeout=3.0)


def _observed_registry(observed: Observed) -> TargetRegistry:
    registry = TargetRegistry(DEFAULT_TARGETS)

    def factory(comm: Comm, data: dict[str, Any], kernel: Any) -> None:
        observed.comms[comm.comm_id] = comm
        comm.on_request("echo", lambda params: params)
        comm.on_disconnect(lambda: observed.disconnected.append(comm.comm_id))
        comm.on_close(lambda data: observed.closed.append(comm.comm_id))
        comm.on_notification(lambda data: observed.notifications.append((comm.comm_id, data)))

    registry.register(OBSERVED, factory)
    registry.register(OBSERVED_PERSISTENT, factory, persistent=True)
    return registry


def _kernels() -> Iterator[Callable[..., KernelUnderTest]]:
    """Makes started kernels with the observed targets; stops them all when resumed."""
    started: list[KernelEndpoint] = []

    def make(heartbeat: HeartbeatSettings = TEST_HEARTBEAT, **config: Any) -> KernelUnderTest:
        sink = ListSink()
        observed = Observed()
        kernel = KernelEndpoint(
            sink=sink,
            config=KernelConfig(heartbeat=heartbeat, stop_linger=0.2, **config),
            targets=_observed_registry(observed),
        )
        kernel.start()
        started.append(kernel)
        return KernelUnderTest(kernel, sink, observed)

    yield make
    for kernel in started:
        kernel.stop()


@pytest.fixture
def make_kernel() -> Iterator[Callable[..., KernelUnderTest]]:
    yield from _kernels()


@pytest.fixture(scope="module")
def make_module_kernel() -> Iterator[Callable[..., KernelUnderTest]]:
    """As ``make_kernel``, for a module whose tests share one kernel (stopped at its end)."""
    yield from _kernels()


@pytest.fixture
def kut(make_kernel: Callable[..., KernelUnderTest]) -> KernelUnderTest:
    return make_kernel()


@pytest.fixture
def raw_frontend() -> Iterator[Callable[..., RawFrontend]]:
    made: list[RawFrontend] = []

    def make(kut: KernelUnderTest, **kwargs: Any) -> RawFrontend:
        frontend = RawFrontend.from_file(kut.connection_file, **kwargs)
        made.append(frontend)
        return frontend

    yield make
    for frontend in made:
        frontend.close()


@pytest.fixture
def stock() -> Iterator[Callable[[KernelUnderTest], Any]]:
    made: list[Any] = []

    def make(kut: KernelUnderTest) -> Any:
        client = stock_client(kut.connection_file)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop_channels()


@pytest.fixture
def spawn_frontend(kut_pool: FrontendPool) -> Iterator[Callable[..., SpawnedFrontend]]:
    """Reference frontends in processes of their own (the model-based tests' protocol),
    for tests that SIGKILL or SIGSTOP them: each opens the comms it is given (once the
    kernel has them), holds every "ask" request the kernel sends it, and, with
    ``ask_stdin=i``, asks ``ask_stdin`` on its i-th comm and holds the input_request
    that comes of it."""
    started: list[SpawnedFrontend] = []

    def spawn(kut: KernelUnderTest, *targets: str, ask_stdin: int | None = None,
              session_id: str | None = None) -> SpawnedFrontend:
        session_id = session_id or uuid.uuid4().hex
        process = kut_pool.take(discard)
        spawned = SpawnedFrontend(process, session_id)
        started.append(spawned)
        process.connect(kut.kernel.connection_info, session_id)
        process.call("wait_ready", timeout=WAIT)
        process.call("hold", on=True)
        for target in targets:
            mark = kut.sink.mark()
            comm_id = process.call("open", target=target)
            kut.sink.wait_for(match(machine="kernel_comm", object=comm_id), since=mark)
            spawned.comms.append(comm_id)
        if ask_stdin is not None:
            process.call("hold_input", on=True)
            mark = kut.sink.mark()
            process.request(spawned.comms[ask_stdin], "ask_stdin", {"prompt": "name?"})
            sent = kut.sink.wait_for(match(machine="stdin_request", event="sent"), since=mark)
            spawned.stdin_request = sent.object
        return spawned

    yield spawn
    kut_pool.release([s.process for s in started])


@pytest.fixture(scope="module")
def kut_pool() -> Iterator[FrontendPool]:
    with FrontendPool() as pool:
        yield pool
