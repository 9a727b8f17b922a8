"""A live venue's health: CONNECTED / DEGRADED / DOWN, with the reason, and a report on every change.

The state is the worst of:

* the *transient* state of recent calls: CONNECTED after a success; DEGRADED after a failed call
  (network error, 5xx, timeout, rate limit); DOWN after ``down_after_failures`` consecutive
  failed calls with no success in between;
* *conditions* set and cleared by the adapter, each with its own state and reason: ``auth``
  (DOWN: credentials refused), ``ban`` (DOWN: HTTP 418 until Retry-After), ``rate_limit``
  (DEGRADED, while the budget is paused), ``unresolved`` (DEGRADED: orders whose send outcome is
  unknown, waiting for reconciliation), ``stream`` (DEGRADED: a websocket is reconnecting).

Every change of state (not of reason alone) emits one :class:`VenueHealthChanged`.
"""

from __future__ import annotations

import logging
from typing import Callable

from appliance.engine.clock import Clock
from appliance.venues.base import VenueHealth, VenueHealthChanged

log = logging.getLogger("lyra.venues.ccxt")

_RANK = {VenueHealth.CONNECTED: 0, VenueHealth.DEGRADED: 1, VenueHealth.DOWN: 2}


class HealthTracker:
    """See the module docstring.

    Args:
        venue: venue name (for reports).
        clock: gives ``ts_ns`` of reports and call times.
        emit: receives each :class:`VenueHealthChanged`.
        down_after_failures: consecutive failed calls that make the venue DOWN (>= 1).
    """

    def __init__(self, venue: str, clock: Clock, emit: Callable[[VenueHealthChanged], None],
                 down_after_failures: int = 3) -> None:
        self.venue = venue
        self.clock = clock
        self._emit = emit
        self.down_after_failures = max(1, down_after_failures)
        self.state = VenueHealth.DOWN
        self.reason = "not started"
        self._transient = (VenueHealth.DOWN, "not started")
        self._conditions: dict[str, tuple[VenueHealth, str]] = {}
        self.consecutive_failures = 0
        self.last_success_ns: int | None = None
        self.last_error: str | None = None
        self.last_error_ns: int | None = None
        self.changes = 0

    def success(self) -> None:
        """A call was answered (even with a business refusal such as insufficient funds)."""
        self.consecutive_failures = 0
        self.last_success_ns = self.clock.now_ns()
        self._transient = (VenueHealth.CONNECTED, "ok")
        self._update()

    def failure(self, reason: str) -> None:
        """A call failed without an answer (network, timeout, 5xx, rate limit); ``reason`` must be redacted."""
        self.consecutive_failures += 1
        self.last_error = reason
        self.last_error_ns = self.clock.now_ns()
        if self.consecutive_failures >= self.down_after_failures:
            self._transient = (VenueHealth.DOWN, f"{self.consecutive_failures} consecutive failed calls; last: {reason}")
        else:
            self._transient = (VenueHealth.DEGRADED, reason)
        self._update()

    def note_error(self, reason: str) -> None:
        """Record an error for status() without changing the state (it is handled by a condition)."""
        self.last_error = reason
        self.last_error_ns = self.clock.now_ns()

    def set_condition(self, key: str, health: VenueHealth, reason: str) -> None:
        self._conditions[key] = (health, reason)
        self._update()

    def clear_condition(self, key: str) -> None:
        if self._conditions.pop(key, None) is not None:
            self._update()

    def has_condition(self, key: str) -> bool:
        return key in self._conditions

    def conditions(self) -> dict[str, str]:
        return {key: f"{health.value}: {reason}" for key, (health, reason) in self._conditions.items()}

    def force(self, health: VenueHealth, reason: str) -> None:
        """Set the transient state directly (start/stop)."""
        self._transient = (health, reason)
        self._update()

    def _update(self) -> None:
        worst = self._transient
        for health, reason in self._conditions.values():
            if _RANK[health] >= _RANK[worst[0]] and health is not VenueHealth.CONNECTED:  # a condition explains more
                worst = (health, reason)
        health, reason = worst
        changed = health is not self.state
        self.state, self.reason = health, reason
        if changed:
            self.changes += 1
            log.info("venue %s health %s: %s", self.venue, health.value, reason)
            self._emit(VenueHealthChanged(self.venue, health, reason, self.clock.now_ns()))
