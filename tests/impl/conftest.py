"""Fixtures for the kernel tests: kernels, raw and stock frontends, frontend processes.

Everything a fixture starts it also ends, even when the test fails: kernels are
stopped, sockets closed, subprocesses (started here, by pid) continued if
stopped and killed. Waits are bounded; nothing sleeps for a guessed time.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ki_peers import FrontendProcess, KernelUnderTest, Observed, RawFrontend, stock_client

from commspec.impl.comm import Comm
from commspec.impl.kernel import HeartbeatSettings, KernelConfig, KernelEndpoint
from commspec.impl.targets import DEFAULT_TARGETS, TargetRegistry
from commspec.impl.tracing import ListSink

HERE = Path(__file__).parent
OBSERVED = "test.observed"
OBSERVED_PERSISTENT = "test.observed.persistent"
#: short, but long enough that a loaded test machine does not drop healthy peers
TEST_HEARTBEAT = HeartbeatSettings(interval=0.2, timeout=3.0)


def _observed_registry(observed: Observed) -> TargetRegistry:
    registry = TargetRegistry(DEFAULT_TARGETS)

    def factory(comm: Comm, data: dict[str, Any], kernel: Any) -> None:
        observed.comms[comm.comm_id] = comm
        comm.on_request("echo", lambda params: params)
        comm.on_disconnect(lambda: observed.disconnected.append(comm.comm_id))
        comm.on_close(lambda data: observed.closed.append(comm.comm_id))

    registry.register(OBSERVED, factory)
    registry.register(OBSERVED_PERSISTENT, factory, persistent=True)
    return registry


@pytest.fixture
def make_kernel() -> Iterator[Callable[..., KernelUnderTest]]:
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
def spawn_frontend() -> Iterator[Callable[..., FrontendProcess]]:
    started: list[FrontendProcess] = []

    def spawn(kut: KernelUnderTest, *args: str, session_id: str | None = None,
              timeout: float = 20.0) -> FrontendProcess:
        session_id = session_id or uuid.uuid4().hex
        env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        process = subprocess.Popen(
            [sys.executable, str(HERE / "ki_frontend_proc.py"), kut.connection_file,
             session_id, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        proc = FrontendProcess(process, session_id, {})
        started.append(proc)
        proc.ready = _read_ready_line(process, timeout)
        return proc

    yield spawn
    for proc in started:
        proc.thaw()
        proc.kill()
        for stream in (proc.process.stdin, proc.process.stdout, proc.process.stderr):
            if stream is not None:
                stream.close()


def _read_ready_line(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            _, err = process.communicate(timeout=10)
            raise TimeoutError(f"frontend process not ready within {timeout} s: {err.decode()}")
    line = process.stdout.readline()
    if not line:
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"frontend process exited: {err.decode()}")
    ready: dict[str, Any] = json.loads(line)
    return ready
