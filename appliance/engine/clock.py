"""Clocks. Domain code asks a Clock for time and timers and never calls ``time.time()``, so the
same strategy code runs unchanged in backtest, replay and live.

Times are int64 nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable, Protocol

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND

TimerCallback = Callable[[int], None]


class Clock(Protocol):
    """What domain code may know about time."""

    def now_ns(self) -> int:
        """Current time, ns since epoch (UTC)."""
        ...

    def set_timer(self, at_ns: int, callback: TimerCallback) -> int:
        """Call ``callback(at_ns)`` on the engine loop once the clock reaches ``at_ns``; returns a timer id."""
        ...

    def cancel_timer(self, timer_id: int) -> None:
        ...


def utc_day(ts_ns: int) -> int:
    """Days since the epoch of a timestamp (the UTC calendar day number)."""
    return ts_ns // NS_PER_DAY


class _TimerQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, TimerCallback]] = []
        self._ids = itertools.count(1)
        self._cancelled: set[int] = set()

    def push(self, at_ns: int, callback: TimerCallback) -> int:
        timer_id = next(self._ids)
        heapq.heappush(self._heap, (at_ns, timer_id, callback))
        return timer_id

    def cancel(self, timer_id: int) -> None:
        self._cancelled.add(timer_id)

    def pop_due(self, now_ns: int) -> list[tuple[int, TimerCallback]]:
        due = []
        while self._heap and self._heap[0][0] <= now_ns:
            at_ns, timer_id, callback = heapq.heappop(self._heap)
            if timer_id in self._cancelled:
                self._cancelled.discard(timer_id)
                continue
            due.append((at_ns, callback))
        return due

    def next_due(self) -> int | None:
        while self._heap and self._heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._heap)[1])
        return self._heap[0][0] if self._heap else None


class SimClock:
    """A clock moved by the replay/backtest driver. Timers fire, in time order, as it advances.

    Args:
        start_ns: initial time.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._timers = _TimerQueue()

    def now_ns(self) -> int:
        return self._now

    def set_timer(self, at_ns: int, callback: TimerCallback) -> int:
        return self._timers.push(at_ns, callback)

    def cancel_timer(self, timer_id: int) -> None:
        self._timers.cancel(timer_id)

    def advance_to(self, ts_ns: int) -> None:
        """Move to ``ts_ns``, firing due timers at their own times first.

        Raises:
            ValueError: ``ts_ns`` is in the past (simulated time never goes back).
        """
        if ts_ns < self._now:
            raise ValueError(f"SimClock cannot go back from {self._now} to {ts_ns}")
        for at_ns, callback in self._timers.pop_due(ts_ns):
            self._now = max(self._now, at_ns)
            callback(at_ns)
        self._now = ts_ns


class LiveClock:
    """Wall-clock time. Timers are scheduled by the engine (``attach``) on its asyncio loop."""

    def __init__(self) -> None:
        self._timers = _TimerQueue()
        self._wake: Callable[[int], None] | None = None

    def now_ns(self) -> int:
        return time.time_ns()

    def set_timer(self, at_ns: int, callback: TimerCallback) -> int:
        timer_id = self._timers.push(at_ns, callback)
        if self._wake is not None:
            self._wake(at_ns)
        return timer_id

    def cancel_timer(self, timer_id: int) -> None:
        self._timers.cancel(timer_id)

    def attach(self, wake: Callable[[int], None]) -> None:
        """Let the engine know when a timer is set, so it can wake up at that time."""
        self._wake = wake

    def fire_due(self) -> None:
        now = self.now_ns()
        for at_ns, callback in self._timers.pop_due(now):
            callback(at_ns)

    def next_due(self) -> int | None:
        return self._timers.next_due()
