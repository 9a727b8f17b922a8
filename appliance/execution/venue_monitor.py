"""Venue monitor: what venues report about themselves rather than about one order.

* ``VenueHealthChanged`` -> the venue's health (CONNECTED / DEGRADED / DOWN), journaled, for the
  API and the metrics.
* ``UnknownVenueOrder`` -> an order on the venue that Lyra did not place: journaled and logged,
  never touched (it may be the operator's own manual order).
* ``BalanceSnapshot`` -> the venue's own balances. A live venue's first snapshot becomes its
  starting balances; later ones are compared with Lyra's books, and a drift beyond the tolerance
  is journaled as ``BalanceDriftDetected``; if configured, the kill switch is engaged when the same
  assets drift in two snapshots in a row (one snapshot may race a fill that is still on its way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping

from appliance.engine.clock import Clock
from appliance.model.money import ZERO, dec_str
from appliance.portfolio.service import Portfolio
from appliance.store.journal import Journal
from appliance.venues.base import BalanceSnapshot, UnknownVenueOrder, VenueHealth, VenueHealthChanged

log = logging.getLogger("lyra.venues")


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    """Balance drift tolerance of one venue account.

    Attributes:
        tolerance: largest accepted |venue - Lyra| per asset, as a fraction of Lyra's total
            (``Decimal("0.001")`` = 0.1 %); an asset Lyra holds none of tolerates ``min_abs``.
        min_abs: absolute tolerance floor (dust, fee rounding), in the asset.
        kill_switch: engage the kill switch on a drift.
    """

    tolerance: Decimal = Decimal("0.001")
    min_abs: Decimal = Decimal("0.00000001")
    kill_switch: bool = False


class VenueMonitor:
    """Handles venue-level reports (inside engine messages).

    Args:
        journal, clock, portfolio: store, time, books.
        policies: venue -> DriftPolicy (venues without one use the default).
        engage_kill_switch: ``engage(reason, actor)`` of the risk engine.
        on_health: optional hook ``(venue, health)`` for metrics.
    """

    def __init__(self, journal: Journal, clock: Clock, portfolio: Portfolio, policies: Mapping[str, DriftPolicy],
                 engage_kill_switch: Callable[[str, str], None], on_health: Callable[[str, VenueHealth], None] | None = None) -> None:
        self.journal = journal
        self.clock = clock
        self.portfolio = portfolio
        self.policies = policies
        self.engage_kill_switch = engage_kill_switch
        self.on_health = on_health
        self.health: dict[str, tuple[VenueHealth, str]] = {}
        self.unknown_orders: dict[tuple[str, str], UnknownVenueOrder] = {}
        self._drifting: dict[str, set[str]] = {}

    def on_report(self, report: object) -> None:
        if isinstance(report, VenueHealthChanged):
            self._on_health(report)
        elif isinstance(report, UnknownVenueOrder):
            self._on_unknown(report)
        elif isinstance(report, BalanceSnapshot):
            self.check_balances(report)

    def _on_health(self, report: VenueHealthChanged) -> None:
        previous = self.health.get(report.venue)
        self.health[report.venue] = (report.health, report.reason)
        if previous is None or previous[0] is not report.health:
            self.journal.append(report.ts_ns, "VenueHealthChanged", "venue", report.venue,
                                {"health": report.health.value, "reason": report.reason})
            (log.info if report.health is VenueHealth.CONNECTED else log.warning)(
                "venue %s is %s: %s", report.venue, report.health.value, report.reason)
        if self.on_health is not None:
            self.on_health(report.venue, report.health)

    def _on_unknown(self, report: UnknownVenueOrder) -> None:
        key = (report.venue, report.venue_order_id)
        if key in self.unknown_orders:
            return
        self.unknown_orders[key] = report
        self.journal.append(report.ts_ns, "UnknownVenueOrderReported", "venue", report.venue, {
            "venue_order_id": report.venue_order_id, "client_order_id": report.client_order_id, "symbol": report.symbol,
            "side": report.side, "qty": report.qty, "price": report.price, "status": report.status,
        })
        log.warning("venue %s has an order Lyra did not place (%s %s %s %s); left untouched",
                    report.venue, report.venue_order_id, report.side, dec_str(report.qty), report.symbol)

    def check_balances(self, snapshot: BalanceSnapshot) -> list[str]:
        """Compare a venue's balances with Lyra's books; returns the drifted assets."""
        venue = snapshot.venue
        if not self.portfolio.initialized(venue):
            self.portfolio.initialize(venue, {a: v for a, v in snapshot.balances.items() if v})
            return []
        policy = self.policies.get(venue, DriftPolicy())
        drifted = []
        assets = set(snapshot.balances) | {a for v, a in self.portfolio.balances if v == venue}
        for asset in sorted(assets):
            ours = self.portfolio.balance(asset, venue)
            theirs = snapshot.balances.get(asset, ZERO)
            allowed = max(abs(ours) * policy.tolerance, policy.min_abs)
            if abs(theirs - ours) > allowed:
                drifted.append(asset)
                self.journal.append(snapshot.ts_ns, "BalanceDriftDetected", "venue", venue, {
                    "asset": asset, "lyra": ours, "venue_balance": theirs, "allowed": allowed,
                })
                log.warning("balance drift on %s: %s Lyra %s, venue %s (allowed %s)", venue, asset,
                            dec_str(ours), dec_str(theirs), dec_str(allowed))
        confirmed = sorted(set(drifted) & self._drifting.get(venue, set()))
        self._drifting[venue] = set(drifted)
        if confirmed and policy.kill_switch:
            self.engage_kill_switch(f"balance drift on {venue}: {', '.join(confirmed)}", "venue-monitor")
        return drifted
