"""Shared settings and types of the frontend tests (conftest only holds fixtures)."""

from __future__ import annotations

from collections.abc import Callable

from commspec.impl.frontend import FrontendEndpoint, FrontendOptions

#: short enough for tests to see losses quickly, long enough for a loaded CI machine
TEST_OPTIONS = FrontendOptions(
    heartbeat_interval=0.2,
    heartbeat_timeout=2.0,
    connect_timeout=20.0,
    probe_interval=0.05,
    no_reply_grace=0.05,
)

#: the ``frontends`` fixture: makes a frontend (closed at teardown) from a connection
FrontendFactory = Callable[..., FrontendEndpoint]
