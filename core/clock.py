"""Time as code that must be testable sees it: intervals, wall-clock deadlines and timers from one
injected object, so a test drives them with a fake clock instead of sleeping."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Protocol

# The client's deadline precedes our copy of it by the request's transit time (gRPC sends the
# time remaining, which the server adds to its own arrival time), so the cancellation a client
# sends when its deadline fires can reach us while our copy still shows time left. A
# cancellation with less than this left is the deadline running out, not a client giving up.
DEADLINE_TRANSIT_SLACK_S = 0.25


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """`monotonic` for intervals, `wall` for absolute deadlines (time.time() seconds),
    `call_later` for timers."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """Real time, with timers on the running event loop."""

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay_s), callback)


class ManualClock:
    """A clock that moves only when told (`advance`, `set`), firing its timers in time order
    as it passes them: for tests and simulations that must not depend on real time."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(callback)
        self._seq += 1
        heapq.heappush(self._timers, (self.t + max(0.0, delay_s), self._seq, timer))
        return timer

    def advance(self, dt: float) -> None:
        self.set(self.t + dt)

    def set(self, t: float) -> None:
        """Moves to `t` (never back), firing every timer due by then at its own time."""
        while self._timers and self._timers[0][0] <= t:
            due, _, timer = heapq.heappop(self._timers)
            self.t = max(self.t, due)
            timer.fire()
        self.t = max(self.t, t)


class _ManualTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self._callback = None

    def fire(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()
