"""The portfolio service: balances per asset, positions per instrument, marks, PnL and NAV.

All amounts are Decimal. State changes only through :meth:`Portfolio.apply_fill` (and the one-off
:meth:`Portfolio.initialize`), each persisted and journaled in the caller's transaction, so the
whole portfolio can be recomputed from the starting balances and the fills alone
(:func:`appliance.model.position.recompute_from_fills`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping

from appliance.engine.clock import Clock
from appliance.model.errors import PreconditionError
from appliance.model.fill import Fill
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import ZERO, dec_str
from appliance.model.position import AccountAsset, Position, apply_fill_to_balances, convert
from appliance.store.db import Database
from appliance.store.journal import Journal


@dataclass(frozen=True, slots=True)
class PnlSummary:
    """PnL in the NAV currency.

    Attributes:
        nav_currency: the currency of every figure below.
        nav: current net asset value (None when some asset has no price path to nav_currency).
        starting_nav: value of the starting balances at current marks (None likewise).
        realized_pnl, unrealized_pnl, fees: sums over instruments, converted to nav_currency.
        unpriced_assets: assets that could not be valued (why ``nav`` may be None).
    """

    nav_currency: str
    nav: Decimal | None
    starting_nav: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    unpriced_assets: tuple[str, ...]


class Portfolio:
    """Balances, positions and marks.

    Args:
        db, journal, clock: store and time.
        instruments: instrument id -> Instrument (for base/quote assets).
        nav_currency: the operator's reporting currency, e.g. ``"BTC"``.
        reserved: callable (asset, venue) -> amount reserved by open orders (provided by the OMS).

    Balances are per venue account: ``balances[(venue, asset)]``. NAV and PnL add up every venue.
    """

    def __init__(
        self,
        db: Database,
        journal: Journal,
        clock: Clock,
        instruments: Mapping[InstrumentId, Instrument],
        nav_currency: str,
        reserved: Callable[[str, str], Decimal] = lambda asset, venue: ZERO,
    ) -> None:
        self.db = db
        self.journal = journal
        self.clock = clock
        self.instruments = instruments
        self.nav_currency = nav_currency
        self.reserved = reserved
        self.marks: dict[InstrumentId, Decimal] = {}
        self.balances: dict[AccountAsset, Decimal] = {
            (v, a): Decimal(t) for v, a, t in db.query("SELECT venue, asset, total FROM balances")
        }
        self.starting_balances: dict[AccountAsset, Decimal] = {
            (v, a): Decimal(t) for v, a, t in db.query("SELECT venue, asset, total FROM starting_balances")
        }
        self.positions: dict[InstrumentId, Position] = {}
        for venue, symbol, quote, qty, avg, realized, fees in db.query(
            "SELECT venue, symbol, quote, qty, avg_price, realized_pnl, fees FROM positions"
        ):
            iid = InstrumentId(venue, symbol)
            self.positions[iid] = Position(iid, quote, Decimal(qty), Decimal(avg), Decimal(realized), Decimal(fees))

    # -- state changes ----------------------------------------------------------------------
    def initialized(self, venue: str) -> bool:
        """Whether ``venue``'s account has its starting balances."""
        return any(v == venue for v, _ in self.starting_balances)

    def initialize(self, venue: str, starting_balances: Mapping[str, Decimal]) -> None:
        """Set a venue account's starting balances once (its first boot). Inside a transaction.

        Args:
            venue: the venue account.
            starting_balances: asset -> amount (the config's for the paper venue; the exchange's
                own balances for a live venue).

        Raises:
            PreconditionError: that venue already has starting balances (they never change).
        """
        if self.initialized(venue):
            raise PreconditionError(f"venue {venue} already has starting balances")
        for asset, amount in sorted(starting_balances.items()):
            self.db.execute("INSERT INTO starting_balances(venue, asset, total) VALUES (?, ?, ?)", (venue, asset, dec_str(amount)))
            self.db.execute("INSERT INTO balances(venue, asset, total) VALUES (?, ?, ?)", (venue, asset, dec_str(amount)))
            self.starting_balances[(venue, asset)] = amount
            self.balances[(venue, asset)] = amount
        self.journal.append(
            self.clock.now_ns(), "BalancesInitialized", "portfolio", venue,
            {"venue": venue, "balances": {a: dec_str(v) for a, v in starting_balances.items()}},
        )

    def rename_venue(self, old: str, new: str) -> None:
        """Move an account's balances to a new venue name (the paper venue renamed in the config)."""
        for table in ("balances", "starting_balances"):
            self.db.execute(f"UPDATE {table} SET venue=? WHERE venue=?", (new, old))
        for mapping in (self.balances, self.starting_balances):
            for (venue, asset) in [k for k in mapping if k[0] == old]:
                mapping[(new, asset)] = mapping.pop((venue, asset))
        self.journal.append(self.clock.now_ns(), "VenueRenamed", "portfolio", new, {"old": old, "new": new})

    def apply_fill(self, fill: Fill) -> Position:
        """Apply a fill to balances and the position; persist and journal. Inside a transaction.

        Returns:
            The instrument's position after the fill.
        """
        instrument = self.instruments[fill.instrument]
        venue = fill.instrument.venue
        changed = {instrument.base, instrument.quote, fill.fee_asset}
        apply_fill_to_balances(self.balances, fill, instrument.base, instrument.quote)
        for asset in changed:
            self.db.execute(
                "INSERT INTO balances(venue, asset, total) VALUES (?, ?, ?) "
                "ON CONFLICT(venue, asset) DO UPDATE SET total=excluded.total",
                (venue, asset, dec_str(self.balances[(venue, asset)])),
            )
        position = (self.positions.get(fill.instrument) or Position(fill.instrument, instrument.quote)).apply(fill)
        self.positions[fill.instrument] = position
        self.db.execute(
            "INSERT INTO positions(venue, symbol, quote, qty, avg_price, realized_pnl, fees) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(venue, symbol) DO UPDATE SET qty=excluded.qty, avg_price=excluded.avg_price, "
            "realized_pnl=excluded.realized_pnl, fees=excluded.fees",
            (
                fill.instrument.venue, fill.instrument.symbol, instrument.quote, dec_str(position.qty),
                dec_str(position.avg_price), dec_str(position.realized_pnl), dec_str(position.fees),
            ),
        )
        self.journal.append(
            fill.ts_ns, "PositionChanged", "position", str(fill.instrument),
            {
                "fill_id": fill.fill_id,
                "qty": position.qty, "avg_price": position.avg_price,
                "realized_pnl": position.realized_pnl, "fees": position.fees,
                "venue": venue, "balances": {a: self.balances[(venue, a)] for a in sorted(changed)},
            },
        )
        return position

    # -- marks (market data, not state: never persisted) ------------------------------------
    def update_mark(self, instrument: InstrumentId, price: Decimal) -> None:
        self.marks[instrument] = price

    def mark(self, instrument: InstrumentId) -> Decimal | None:
        return self.marks.get(instrument)

    def _prices(self) -> dict[tuple[str, str], Decimal]:
        prices = {}
        for iid, price in self.marks.items():
            inst = self.instruments.get(iid)
            if inst is not None:
                prices[(inst.base, inst.quote)] = price
        return prices

    # -- reads ------------------------------------------------------------------------------
    def position(self, instrument: InstrumentId) -> Position:
        inst = self.instruments[instrument]
        return self.positions.get(instrument) or Position(instrument, inst.quote)

    def balance(self, asset: str, venue: str) -> Decimal:
        return self.balances.get((venue, asset), ZERO)

    def free_balance(self, asset: str, venue: str) -> Decimal:
        """Total on ``venue`` minus what open orders there reserve."""
        return self.balance(asset, venue) - self.reserved(asset, venue)

    def value_in_nav(self, amount: Decimal, asset: str) -> Decimal | None:
        """``amount`` of ``asset`` in the NAV currency at current marks; None without a price path."""
        return convert(amount, asset, self.nav_currency, self._prices())

    def nav(self) -> Decimal | None:
        """Net asset value in the NAV currency; None if an asset with a balance cannot be valued."""
        return self.pnl().nav

    def pnl(self) -> PnlSummary:
        """PnL and NAV at current marks, in the NAV currency."""
        prices = self._prices()
        unpriced: set[str] = set()

        def value(amount: Decimal, asset: str) -> Decimal:
            converted = convert(amount, asset, self.nav_currency, prices)
            if converted is None:
                unpriced.add(asset)
                return ZERO
            return converted

        nav = sum((value(v, a) for (_, a), v in self.balances.items() if v), ZERO)
        starting = sum((value(v, a) for (_, a), v in self.starting_balances.items() if v), ZERO)
        realized = unrealized = fees = ZERO
        for iid, pos in self.positions.items():
            realized += value(pos.realized_pnl, pos.quote)
            fees += value(pos.fees, pos.quote)
            mark = self.marks.get(iid)
            if pos.qty and mark is not None:
                unrealized += value(pos.unrealized_pnl(mark), pos.quote)
        missing = tuple(sorted(unpriced))
        return PnlSummary(
            self.nav_currency, None if missing else nav, None if missing else starting,
            realized, unrealized, fees, missing,
        )
