"""Fixtures for the frontend tests: kernels we start (and kill by pid), frontends we close."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fe_kernels import KernelProcess, start_commspec_kernel, start_stock_ipykernel
from fe_support import TEST_OPTIONS, FrontendFactory

from commspec.impl.frontend import FrontendEndpoint
from commspec.impl.kernel import KernelEndpoint
from commspec.impl.tracing import ListSink
from commspec.mbt.fakes import ScriptedKernel


@pytest.fixture
def stock_kernel(tmp_path: Path) -> Iterator[KernelProcess]:
    kernel = start_stock_ipykernel(tmp_path)
    try:
        yield kernel
    finally:
        kernel.kill()


@pytest.fixture
def commspec_kernel_process(tmp_path: Path) -> Iterator[KernelProcess]:
    """``commspec kernel`` in its own process, for tests that kill or freeze it."""
    kernel = start_commspec_kernel(tmp_path)
    try:
        yield kernel
    finally:
        kernel.kill()


@pytest.fixture
def reference_kernel(trace: ListSink) -> Iterator[KernelEndpoint]:
    """Our KernelEndpoint in this process, tracing to the same sink as the frontends."""
    kernel = KernelEndpoint(sink=trace).start()
    try:
        yield kernel
    finally:
        kernel.stop()


@pytest.fixture
def fake_kernel(tmp_path: Path) -> Iterator[ScriptedKernel]:
    kernel = ScriptedKernel(tmp_path)
    try:
        yield kernel
    finally:
        kernel.close()


@pytest.fixture
def trace() -> ListSink:
    return ListSink()


@pytest.fixture
def frontends(trace: ListSink) -> Iterator[FrontendFactory]:
    """Make frontends that trace to ``trace``; every one is closed at teardown."""
    made: list[FrontendEndpoint] = []

    def make(connection: Any, **kwargs: Any) -> FrontendEndpoint:
        kwargs.setdefault("sink", trace)
        kwargs.setdefault("options", TEST_OPTIONS)
        frontend = FrontendEndpoint(connection, **kwargs)
        made.append(frontend)
        return frontend

    try:
        yield make
    finally:
        for frontend in made:
            frontend.close()
