"""Whoever drives a protocol core: hand it inputs, carry out its effects.

Two things drive the cores: the endpoints, over sockets and an I/O thread, and
the model-based tests' in-process simulation, with no thread at all. What they
share is here: :class:`EffectRunner` feeds one input and carries out the effects
that come back, in order (timers, trace events, the driver's own, then the
application's), and :class:`CoreRunner` is what the application layer
(``kernel/application.py``, ``frontend/application.py``: Comm objects, futures,
handlers) needs of its driver, so the same application code runs over either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from commspec.model.trace import TraceSink

from .core.events import Effect, Input, StartTimer, StopTimer, Timer, TimerFired, Trace
from .core.protocol import ProtocolCore
from .loop import IoLoop
from .loop import Timer as LoopTimer
from .targets import Cancellable
from .wire import Codec

__all__ = ["CoreRunner", "EffectRunner", "LoopRunner"]


class CoreRunner(Protocol):
    """What the application needs of whoever drives the core (sockets or simulation)."""

    def submit(self, event: Input) -> None:
        """Hand an input to the core: handled now on the core's thread, else posted
        (in order); EndpointClosed once it has stopped."""

    def call(self, event: Input) -> None:
        """Handle an input now (waiting for the core's thread), raising what it raised."""

    def in_core_thread(self) -> bool: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` on the core's thread after ``delay`` seconds."""

    def new_msg_id(self) -> str: ...


class _Application(Protocol):
    def carry_out(self, effect: Effect) -> bool: ...

    def input_done(self) -> None: ...


class EffectRunner:
    """Feeds a core and carries out its effects. A subclass sets ``core``, ``app``
    and ``sink``, adds its own effects to ``effects`` (sends, links...), and says
    what time it is and how to run something later.

    ``strict``: an effect that fails (a bug of ours) raises; otherwise it is logged
    and the effects after it are still carried out (an endpoint's I/O thread must
    not lose an idle because a handler failed before it).
    """

    core: ProtocolCore
    app: _Application
    sink: TraceSink
    log: logging.Logger
    strict = False
    _feeding = 0  # how deep feed() is: an effect's handler may feed another input

    def __init__(self) -> None:
        self.effects: dict[type, Callable[[Any], None]] = {
            StartTimer: self._start_timer,
            StopTimer: self._stop_timer,
            Trace: self._trace,
        }
        self._timers: dict[Timer, Cancellable] = {}

    # -- what a driver says -------------------------------------------------------

    def now(self) -> float:
        raise NotImplementedError

    def run_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        raise NotImplementedError

    # -- feeding ------------------------------------------------------------------

    def feed(self, event: Input) -> None:
        core = self.core
        self._feeding += 1
        try:
            try:
                effects = core.handle(event, self.now())
            except BaseException:
                self.carry_out(core.take_effects())  # what happened before it went wrong
                raise
            self.carry_out(effects)
        finally:
            self._feeding -= 1
            if not self._feeding:
                self.app.input_done()

    def carry_out(self, effects: list[Effect]) -> None:
        own, app = self.effects, self.app
        for effect in effects:
            try:
                handler = own.get(type(effect))
                if handler is not None:
                    handler(effect)
                elif not app.carry_out(effect):
                    raise TypeError(f"no way to carry out {effect!r}")
            except Exception:
                if self.strict:
                    raise
                # One effect that fails (our bug) must not cost the ones after it.
                self.log.exception("carrying out %s failed", type(effect).__name__)

    # -- timers and traces ----------------------------------------------------------

    def _start_timer(self, effect: StartTimer) -> None:
        self._stop_timer(StopTimer(effect.timer))
        timer = effect.timer
        self._timers[timer] = self.run_at(effect.when, lambda: self._timer_fired(timer))

    def _stop_timer(self, effect: StopTimer) -> None:
        old = self._timers.pop(effect.timer, None)
        if old is not None:
            old.cancel()

    def _timer_fired(self, timer: Timer) -> None:
        self._timers.pop(timer, None)
        self.feed(TimerFired(timer))

    def _trace(self, effect: Trace) -> None:
        try:
            self.sink(effect.event)
        except Exception:
            if self.strict:
                raise
            # the transition happened; a failing sink must not undo what follows it
            self.log.exception("the trace sink failed on %s", effect.event)


class LoopRunner(EffectRunner):
    """An endpoint's runner: its clock, timers and thread are its I/O loop's, its
    message ids its codec's."""

    _loop: IoLoop
    codec: Codec

    def now(self) -> float:
        return self._loop.clock()

    def run_at(self, when: float, callback: Callable[[], None]) -> LoopTimer:
        return self._loop.call_at(when, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> LoopTimer:
        return self._loop.call_later(delay, callback)

    def in_core_thread(self) -> bool:
        return self._loop.in_loop_thread()

    def new_msg_id(self) -> str:
        return self.codec.new_msg_id()
