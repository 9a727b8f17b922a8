"""Drives a :class:`ReplayFeed` into the engine: start, pause, progress, resume after restart."""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from appliance.engine.engine import cancel_and_wait
from appliance.marketdata.bar import BarSlice

log = logging.getLogger("lyra.replay")


class ReplayState(str, enum.Enum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    FINISHED = "FINISHED"


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Where the replay stands.

    Attributes:
        state: WAITING (not started), RUNNING, PAUSED or FINISHED.
        slices_done, slices_total: bar slices handled / in the dataset.
        current_ns: close time of the last handled slice (0 before the first).
        lag_s: wall seconds behind schedule at the configured speed (0 at max speed).
    """

    state: ReplayState
    slices_done: int
    slices_total: int
    current_ns: int
    lag_s: float

    @property
    def ratio(self) -> float:
        return self.slices_done / self.slices_total if self.slices_total else 1.0


class ReplayController:
    """Owns the replay task.

    Args:
        feed: the ReplayFeed.
        deliver: async callable handing a BarSlice to the engine and returning once handled.
        after_ns: resume point (close time of the last slice handled before a restart).
        slices_done: slices handled before a restart.
        speed: 0 = as fast as possible, N = N times real time.
    """

    def __init__(self, feed: Any, deliver: Callable[[BarSlice], Awaitable[Any]], *, after_ns: int, slices_done: int,
                 speed: float) -> None:
        self.feed = feed
        self.deliver = deliver
        self.after_ns = after_ns
        self.speed = speed
        self._done = slices_done
        self._current = after_ns
        self._task: asyncio.Task | None = None
        self._lag = 0.0
        self.finished = asyncio.Event()
        total = feed.total_slices
        self._state = ReplayState.FINISHED if slices_done and feed.count_after(after_ns) == 0 else ReplayState.WAITING
        if self._state is ReplayState.FINISHED:
            self.finished.set()
        self._total = total

    @property
    def state(self) -> ReplayState:
        return self._state

    def progress(self) -> ReplayProgress:
        return ReplayProgress(self._state, self._done, self._total, self._current, self._lag)

    def start(self) -> ReplayProgress:
        """Start (from WAITING) or resume (from PAUSED). Idempotent when RUNNING or FINISHED."""
        if self._state is ReplayState.WAITING:
            self._state = ReplayState.RUNNING
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lyra-replay")
            log.info("replay started", extra={"after_ns": self.after_ns, "speed": self.speed})
        elif self._state is ReplayState.PAUSED:
            self.feed.resume()
            self._state = ReplayState.RUNNING
        return self.progress()

    def pause(self) -> ReplayProgress:
        """Pause after the slice being handled. Idempotent."""
        if self._state is ReplayState.RUNNING:
            self.feed.pause()
            self._state = ReplayState.PAUSED
        return self.progress()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def on_handled(self, slice_: BarSlice) -> None:
        """Called by the engine's slice handler once a slice is handled (inside its transaction)."""
        self._done += 1
        self._current = slice_.close_ns

    def set_lag(self, lag_s: float) -> None:
        self._lag = lag_s

    def _track_lag(self, delivered: int, total: int, close_ns: int) -> None:
        """Wall seconds behind the schedule "market time advances at ``speed`` x real time"."""
        if not self.speed:
            return
        now = asyncio.get_running_loop().time()
        if self._schedule_origin is None:
            self._schedule_origin = (now, close_ns)
            return
        wall0, market0 = self._schedule_origin
        self._lag = max(0.0, (now - wall0) - (close_ns - market0) / 1e9 / self.speed)

    async def _run(self) -> None:
        self._schedule_origin: tuple[float, int] | None = None
        try:
            await self.feed.run(self.deliver, after_ns=self.after_ns, speed=self.speed or None, on_progress=self._track_lag)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replay failed")
            self._state = ReplayState.PAUSED
            return
        self._state = ReplayState.FINISHED
        self.finished.set()
        log.info("replay finished", extra={"slices": self._done})
