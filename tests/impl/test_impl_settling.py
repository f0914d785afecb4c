"""Settling futures in slices: one input settles at most SETTLE_SLICE of them at once.

A departure that fails 10,000 requests hands the application 10,000 RequestEnded in
one input; each future's callbacks are application code (a chained handler answers
its own caller). The rest are settled a slice per loop round, in order, so other
frontends' messages are served in between. Driven here by a runner whose later
callbacks run only when the test says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from commspec.impl.application import SETTLE_SLICE, Application
from commspec.impl.core.events import Input, RequestEnded
from commspec.impl.errors import Disconnected


class StepRunner:
    """A CoreRunner whose ``call_later`` callbacks wait for ``run_later``."""

    def __init__(self) -> None:
        self.later: list[Callable[[], None]] = []
        self.ids = iter(range(1_000_000))

    def submit(self, event: Input) -> None:
        raise AssertionError(f"nothing is fed here: {event!r}")

    def call(self, event: Input) -> None:
        self.submit(event)

    def in_core_thread(self) -> bool:
        return True

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        self.later.append(callback)
        return None

    def new_msg_id(self) -> str:
        return f"m{next(self.ids)}"

    def run_later(self) -> None:
        due, self.later = self.later, []
        for callback in due:
            callback()


class NoCore:
    def comm_state(self, comm_id: str) -> Any:
        return None


def make_app() -> tuple[Application, StepRunner]:
    runner = StepRunner()
    return Application(NoCore(), runner, transport=None,  # type: ignore[arg-type]
                       log=logging.getLogger("test")), runner


def start(app: Application, n: int) -> list[tuple[str, Future[Any]]]:
    return [app.new_request() for _ in range(n)]


def fail(app: Application, requests: list[tuple[str, Future[Any]]]) -> None:
    """One input's effects: a RequestEnded per request, then the input is done."""
    for msg_id, _ in requests:
        app.carry_out(RequestEnded(msg_id, None, Disconnected(msg_id, "c", "m", "invalidated")))
    app.input_done()


def test_a_small_batch_settles_within_its_input() -> None:
    app, runner = make_app()
    requests = start(app, SETTLE_SLICE)
    fail(app, requests)
    assert all(future.done() for _, future in requests)
    assert runner.later == []


def test_a_large_batch_settles_a_slice_per_round_in_order() -> None:
    app, runner = make_app()
    n = 3 * SETTLE_SLICE + 5
    requests = start(app, n)
    order: list[str] = []
    for msg_id, future in requests:
        future.add_done_callback(lambda _, msg_id=msg_id: order.append(msg_id))
    fail(app, requests)
    rounds = [sum(future.done() for _, future in requests)]
    while runner.later:
        runner.run_later()
        rounds.append(sum(future.done() for _, future in requests))
    assert rounds == [SETTLE_SLICE, 2 * SETTLE_SLICE, 3 * SETTLE_SLICE, n]
    assert order == [msg_id for msg_id, _ in requests], "settled in the order they ended"
    assert all(isinstance(future.exception(), Disconnected) for _, future in requests)


def test_what_ends_while_a_batch_is_settling_queues_behind_it() -> None:
    app, runner = make_app()
    first = start(app, SETTLE_SLICE + 1)
    fail(app, first)
    assert not first[-1][1].done()
    # A new input ends one more request: under its own budget, yet behind the backlog.
    late = start(app, 1)
    fail(app, late)
    assert not late[0][1].done(), "it would overtake requests that ended before it"
    runner.run_later()
    assert first[-1][1].done() and late[0][1].done()
