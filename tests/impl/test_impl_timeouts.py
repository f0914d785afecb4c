"""A delay that no timer can hold never reaches one (issue 10, point 1).

``"timeout": 1e308`` (or NaN, Infinity, a boolean) in a request used to reach the I/O
loop, where ``int()`` of an infinite poll timeout killed the loop thread for good while
the heartbeat port still echoed. Now such a delay is refused where it enters (a clear
ValueError; for a demo request, an error reply), and the poll timeout is capped, so a
far deadline that is finite is harmless.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from ki_peers import KernelUnderTest, RawFrontend, open_and_wait

from commspec.commands.kernel import IO_DEATH_EXIT
from commspec.impl.loop import MAX_POLL_MS, IoLoop, check_delay
from commspec.impl.targets import ECHO

MakeRaw = Callable[..., RawFrontend]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1, True, "5", None])
def test_a_delay_no_timer_can_hold_is_refused_by_name(bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be a"):
        check_delay(bad, "timeout")


@pytest.mark.parametrize("good", [0, 0.5, 3, 1e308])
def test_a_finite_delay_is_taken(good: float) -> None:
    assert check_delay(good) == float(good)


def test_a_far_deadline_caps_the_poll_instead_of_killing_the_loop() -> None:
    """A deadline a request can set (now + 1e308 s, or beyond) used to make the poll
    timeout int(inf): the loop thread died."""
    loop = IoLoop("test")
    loop.start()
    try:
        loop.call_at(time.monotonic() + 1e308, lambda: None)
        loop.call_at(math.inf, lambda: None)
        assert loop.call_sync(lambda: loop._timeout_ms(), timeout=5.0) == MAX_POLL_MS
        # the old loop ran the work of the round the timer came in, then died computing
        # the next poll's timeout: later rounds are what it never reached
        for _ in range(3):
            assert loop.call_sync(lambda: "still here", timeout=5.0) == "still here"
        assert loop.running
    finally:
        loop.stop()


@pytest.mark.parametrize("timeout", [1e308, -1, "soon"])
def test_a_request_with_an_impossible_timeout_gets_an_error_and_the_kernel_answers_on(
        kut: KernelUnderTest, raw_frontend: MakeRaw, timeout: Any) -> None:
    frontend = raw_frontend(kut)
    frontend.wait_welcome()
    comm_id = open_and_wait(frontend, ECHO)
    call = frontend.request(comm_id, "call_frontend", {"method": "show", "timeout": timeout})
    if timeout == 1e308:
        # finite: taken, the request goes out and waits; the loop still runs
        frontend.wait_kernel_request(comm_id)
    else:
        reply = frontend.wait_reply_to(call)
        assert "error" in reply and "timeout must be" in reply["error"]["message"]
    frontend.send(frontend.shell, "kernel_info_request", {})
    frontend.shell_reply("kernel_info_reply")
    assert kut.kernel.bad_input == {}


# -- the I/O loop goes on, or its owner hears that it cannot (issue 10, point 1) -------


def test_a_callback_that_raises_is_counted_and_the_loop_goes_on() -> None:
    loop = IoLoop("test")
    loop.start()
    try:
        def fails() -> None:
            raise RuntimeError("a handler's bug")

        loop.post(fails)
        assert loop.call_sync(lambda: loop.failures, timeout=5.0) == 1
        assert loop.running
    finally:
        loop.stop()


def test_a_loop_that_fails_itself_tells_its_owner() -> None:
    """What no callback guard covers (the poll, the timers' heap) ends the thread: the
    owner's on_fatal hears of it, with the error."""
    told: list[BaseException] = []
    heard = threading.Event()

    def on_fatal(error: BaseException) -> None:
        told.append(error)
        heard.set()

    loop = IoLoop("test", on_fatal=on_fatal)

    def broken_timeout() -> int | None:
        raise OverflowError("the loop's own bug")

    loop._timeout_ms = broken_timeout  # type: ignore[method-assign]
    loop.start()
    try:
        assert heard.wait(5.0), "on_fatal was never called"
        assert isinstance(told[0], OverflowError) and loop.fatal is told[0]
    finally:
        loop.stop()
    assert not loop.running


def test_commspec_kernel_exits_non_zero_when_its_io_thread_dies() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from commspec.commands.kernel import exit_on_io_death; "
         "exit_on_io_death(RuntimeError('boom')); print('still alive')"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == IO_DEATH_EXIT
    assert "the I/O thread failed" in done.stderr and "still alive" not in done.stdout
