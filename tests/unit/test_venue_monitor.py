"""Venue-level reports: health changes, orders Lyra did not place, balance drift."""

from decimal import Decimal as D

import pytest

from appliance.engine.clock import SimClock
from appliance.execution.venue_monitor import DriftPolicy, VenueMonitor
from appliance.model.instrument import Instrument, InstrumentId
from appliance.portfolio.service import Portfolio
from appliance.store.db import Database
from appliance.store.journal import Journal
from appliance.venues.base import BalanceSnapshot, UnknownVenueOrder, VenueHealth, VenueHealthChanged

IID = InstrumentId("binance", "BTC/USDT")
INST = Instrument(IID, "BTC", "USDT", D("0.01"), D("0.00001"))


@pytest.fixture
def setup(tmp_path):
    db = Database(tmp_path / "m.db")
    journal = Journal(db)
    clock = SimClock(1)
    portfolio = Portfolio(db, journal, clock, {IID: INST}, "USDT")
    halts = []
    monitor = VenueMonitor(journal, clock, portfolio, {"binance": DriftPolicy(D("0.001"), D("0.00000001"), True)},
                           lambda reason, actor: halts.append(reason))
    yield db, journal, portfolio, monitor, halts
    db.close()


def test_first_snapshot_sets_starting_balances_then_drift_is_detected(setup):
    db, journal, portfolio, monitor, halts = setup
    with db.transaction():
        monitor.on_report(BalanceSnapshot("binance", {"USDT": D("1000"), "BTC": D("0")}, 1))
    assert portfolio.balance("USDT", "binance") == D("1000") and portfolio.initialized("binance")
    with db.transaction():
        assert monitor.check_balances(BalanceSnapshot("binance", {"USDT": D("1000.9")}, 2)) == []  # within 0.1 %
    assert halts == []
    with db.transaction():
        assert monitor.check_balances(BalanceSnapshot("binance", {"USDT": D("998"), "BTC": D("0.5")}, 3)) == ["BTC", "USDT"]
    assert halts == []  # one snapshot may race a fill: the kill switch waits for a second one
    with db.transaction():
        assert monitor.check_balances(BalanceSnapshot("binance", {"USDT": D("998"), "BTC": D("0")}, 4)) == ["USDT"]
    assert halts == ["balance drift on binance: USDT"]
    drift = [e for e in journal.read() if e.type == "BalanceDriftDetected"]
    assert [(e.payload["asset"], e.payload["venue_balance"]) for e in drift] == [("BTC", "0.5"), ("USDT", "998"), ("USDT", "998")]


def test_unknown_orders_are_journaled_once_and_health_changes_once(setup):
    db, journal, portfolio, monitor, halts = setup
    order = UnknownVenueOrder("binance", "123", "", "BTC/USDT", "buy", D("1"), D("20000"), "open", 5)
    with db.transaction():
        monitor.on_report(order)
        monitor.on_report(order)
        monitor.on_report(VenueHealthChanged("binance", VenueHealth.DEGRADED, "429 rate limited", 6))
        monitor.on_report(VenueHealthChanged("binance", VenueHealth.DEGRADED, "429 again", 7))
        monitor.on_report(VenueHealthChanged("binance", VenueHealth.CONNECTED, "ok", 8))
    types = [e.type for e in journal.read()]
    assert types == ["UnknownVenueOrderReported", "VenueHealthChanged", "VenueHealthChanged"]
    assert monitor.health["binance"] == (VenueHealth.CONNECTED, "ok")
