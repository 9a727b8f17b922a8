"""Venue-neutral state of one emulated exchange: instruments, accounts, orders, fills, candles.

The dialect modules (``binance``, ``kraken``) translate HTTP requests into calls on an
:class:`Engine` and its results back into the exchange's own JSON. The engine itself knows no
wire format; it only enforces what every spot exchange enforces:

* balances (free / locked) per account, funds locked by resting orders, fees charged on fills;
* market orders fill at the instrument's current *mark* price, limit orders that cross the mark
  fill at the mark (taker), others rest and fill at their limit price (maker) once the mark, or a
  candle's high/low, crosses them;
* a client order id must be unique among an account's *open* orders.

All prices and quantities are :class:`decimal.Decimal`. Every public method takes the engine's
lock, so the control API may be driven from another thread than the server's event loop.
"""

from __future__ import annotations

import csv
import gzip
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Callable, Iterable, Sequence

D = Decimal
ZERO = Decimal(0)

# Order statuses (Binance's words; the Kraken dialect maps them).
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
REJECTED = "REJECTED"
OPEN_STATUSES = frozenset({NEW, PARTIALLY_FILLED})


def dec(value: object) -> Decimal:
    """``Decimal`` from str/int/float/Decimal (floats go through ``repr`` to avoid binary noise)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` that is <= ``value``."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return step <= 0 or (value % step) == 0


class EngineError(Exception):
    """A business rejection; ``kind`` is dialect-neutral, the dialect picks the wire error.

    Kinds: ``duplicate_client_id``, ``insufficient_funds``, ``unknown_order``,
    ``would_take`` (post-only that would match), ``bad_symbol``, ``no_price``.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Instrument:
    """One spot market. ``tick_size``/``step_size``/``min_qty``/``min_notional`` are the filters.

    ``venue_id`` is the exchange's market id (``BTCUSDT`` / ``XBTUSDT``); ``extra`` carries
    dialect-only metadata (Kraken asset ids, altname, decimals ...).
    """

    symbol: str
    base: str
    quote: str
    venue_id: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    mark: Decimal
    min_price: Decimal | None = None
    max_price: Decimal = D("1000000")
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tick_size", "step_size", "min_qty", "max_qty", "min_notional", "mark", "max_price"):
            setattr(self, name, dec(getattr(self, name)))
        self.min_price = self.tick_size if self.min_price is None else dec(self.min_price)


@dataclass
class Fill:
    id: int
    order_seq: int
    account: str
    symbol: str
    side: str  # BUY / SELL
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int
    is_maker: bool
    order_type: str


@dataclass
class Order:
    seq: int
    account: str
    symbol: str
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT / LIMIT_MAKER
    qty: Decimal
    price: Decimal | None
    quote_qty: Decimal | None
    client_order_id: str | None
    userref: int | None
    time_in_force: str
    created_ms: int
    updated_ms: int
    status: str = NEW
    filled: Decimal = ZERO
    cum_quote: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = ""
    fills: list[Fill] = field(default_factory=list)
    lock_asset: str = ""
    locked: Decimal = ZERO
    extra: dict = field(default_factory=dict)  # dialect data: stp mode, iceberg, oflags, txid ...
    closed_ms: int | None = None
    reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.filled if self.filled > 0 else ZERO


@dataclass
class Account:
    api_key: str
    secret: str
    password: str = ""  # API passphrase (OKX, KuCoin)
    balances: dict[str, list[Decimal]] = field(default_factory=dict)  # asset -> [free, locked]
    last_nonce: int = 0  # Kraken
    rate_counter: float = 0.0  # Kraken API counter
    rate_counter_at: float = 0.0
    update_ms: int = 0

    def free(self, asset: str) -> Decimal:
        return self.balances.get(asset, [ZERO, ZERO])[0]

    def locked(self, asset: str) -> Decimal:
        return self.balances.get(asset, [ZERO, ZERO])[1]

    def _row(self, asset: str) -> list[Decimal]:
        return self.balances.setdefault(asset, [ZERO, ZERO])


@dataclass
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int = 0


class Clock:
    """Wall clock plus a settable skew (ms). ``now_ms`` is what the venue believes is 'now'."""

    def __init__(self) -> None:
        self.skew_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms


class Engine:
    """State of one emulated venue. Thread-safe; see the module docstring for semantics.

    Parameters
    ----------
    name:
        ``"binance"`` or ``"kraken"`` (used in messages only).
    instruments:
        Markets this venue lists.
    fee_rate:
        Taker and maker fee as a fraction (``0.001`` = 10 bps).
    fee_in:
        ``"received"`` (Binance without BNB: buyer pays in base, seller in quote) or ``"quote"``
        (Kraken's default ``fciq``: always in quote; a buy then needs quote for cost + fee).
    """

    def __init__(
        self,
        name: str,
        instruments: Iterable[Instrument],
        *,
        fee_rate: Decimal = D("0.001"),
        fee_in: str = "received",
        clock: Clock | None = None,
        first_order_id: int = 1,
        first_trade_id: int = 1,
    ) -> None:
        self.name = name
        self.lock = threading.RLock()
        self.clock = clock or Clock()
        self.fee_rate = dec(fee_rate)
        self.fee_in = fee_in
        self.instruments: dict[str, Instrument] = {}
        self.by_venue_id: dict[str, Instrument] = {}
        for ins in instruments:
            self.add_instrument(ins)
        self.accounts: dict[str, Account] = {}
        self.orders: dict[int, Order] = {}
        self.fills: list[Fill] = []
        self._next_order = first_order_id
        self._next_trade = first_trade_id
        self.candles: dict[str, list[Candle]] = {}
        self.candle_tf_ms: dict[str, int] = {}
        self._cursor: dict[str, int] = {}
        self.listeners: list[Callable[[str, object], None]] = []

    # ------------------------------------------------------------------ setup
    def add_instrument(self, ins: Instrument) -> None:
        with self.lock:
            self.instruments[ins.symbol] = ins
            self.by_venue_id[ins.venue_id] = ins

    def add_account(self, api_key: str, secret: str, balances: dict[str, object] | None = None,
                    password: str = "") -> Account:
        with self.lock:
            acct = Account(api_key=api_key, secret=secret, password=password)
            for asset, amount in (balances or {}).items():
                acct.balances[asset] = [dec(amount), ZERO]
            acct.update_ms = self.clock.now_ms()
            self.accounts[api_key] = acct
            return acct

    def set_balance(self, api_key: str, asset: str, free: object) -> None:
        with self.lock:
            self.accounts[api_key]._row(asset)[0] = dec(free)

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self.instruments[symbol]
        except KeyError:
            raise EngineError("bad_symbol", symbol) from None

    def now_ms(self) -> int:
        return self.clock.now_ms()

    # ------------------------------------------------------------------ queries
    def balances(self, api_key: str) -> dict[str, tuple[Decimal, Decimal]]:
        with self.lock:
            return {a: (r[0], r[1]) for a, r in self.accounts[api_key].balances.items()}

    def account_orders(self, api_key: str, symbol: str | None = None) -> list[Order]:
        with self.lock:
            return [
                o for o in self.orders.values()
                if o.account == api_key and (symbol is None or o.symbol == symbol)
            ]

    def open_orders(self, api_key: str | None = None, symbol: str | None = None) -> list[Order]:
        with self.lock:
            return [
                o for o in self.orders.values()
                if o.is_open and (api_key is None or o.account == api_key)
                and (symbol is None or o.symbol == symbol)
            ]

    def find_by_client_id(self, api_key: str, client_order_id: str, *, open_only: bool = False) -> Order | None:
        """Newest order of the account with that client id (Binance keeps the latest)."""
        with self.lock:
            found = None
            for o in self.orders.values():
                if o.account == api_key and o.client_order_id == client_order_id:
                    if open_only and not o.is_open:
                        continue
                    if found is None or o.seq > found.seq:
                        found = o
            return found

    def account_fills(self, api_key: str, symbol: str | None = None) -> list[Fill]:
        with self.lock:
            return [f for f in self.fills if f.account == api_key and (symbol is None or f.symbol == symbol)]

    # ------------------------------------------------------------------ trading
    def place(
        self,
        api_key: str,
        symbol: str,
        side: str,
        type_: str,
        *,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        quote_qty: Decimal | None = None,
        client_order_id: str | None = None,
        userref: int | None = None,
        time_in_force: str = "GTC",
        post_only: bool = False,
        extra: dict | None = None,
        reject_post_only: bool = True,
    ) -> Order:
        """Accept an order, lock funds, and match it against the mark at once.

        Filters (tick/step/min notional) are the dialect's job, before this call.

        Raises
        ------
        EngineError
            ``duplicate_client_id`` when an open order of the account has ``client_order_id``;
            ``insufficient_funds``; ``would_take`` for a post-only that would match and
            ``reject_post_only`` is set.
        """
        with self.lock:
            ins = self.instrument(symbol)
            acct = self.accounts[api_key]
            if client_order_id and self.find_by_client_id(api_key, client_order_id, open_only=True):
                raise EngineError("duplicate_client_id", client_order_id)
            mark = ins.mark
            if type_ == "MARKET" and qty is None:
                if quote_qty is None:
                    raise EngineError("no_quantity")
                qty = floor_to(quote_qty / mark, ins.step_size)
            if qty is None or qty <= 0:
                raise EngineError("no_quantity")
            marketable = type_ == "MARKET" or (
                price is not None and ((side == "BUY" and price >= mark) or (side == "SELL" and price <= mark))
            )
            if post_only and marketable and reject_post_only:
                raise EngineError("would_take", "Order would immediately match and take.")
            # Funds: what this order may consume at most.
            if side == "BUY":
                lock_asset = ins.quote
                ref_price = mark if type_ == "MARKET" else price
                need = qty * ref_price
                if self.fee_in == "quote":
                    need += need * self.fee_rate
            else:
                lock_asset = ins.base
                need = qty
            if acct.free(lock_asset) < need:
                raise EngineError("insufficient_funds", f"need {need} {lock_asset}, free {acct.free(lock_asset)}")
            now = self.now_ms()
            order = Order(
                seq=self._next_order, account=api_key, symbol=symbol, side=side, type=type_, qty=qty,
                price=price, quote_qty=quote_qty, client_order_id=client_order_id, userref=userref,
                time_in_force=time_in_force, created_ms=now, updated_ms=now, extra=dict(extra or {}),
                fee_asset=(ins.quote if (self.fee_in == "quote" or side == "SELL") else ins.base),
            )
            self._next_order += 1
            self.orders[order.seq] = order
            row = acct._row(lock_asset)
            row[0] -= need
            row[1] += need
            order.lock_asset, order.locked = lock_asset, need
            if post_only and marketable:  # Kraken: accepted, then cancelled by the engine
                self._close(order, CANCELED, reason="Post only order")
            elif marketable:
                self._fill(order, order.qty, mark, is_maker=False)
            elif time_in_force in ("IOC", "FOK"):
                self._close(order, EXPIRED)
            self._emit("order", order)
            return order

    def cancel(self, order: Order) -> Order:
        with self.lock:
            if not order.is_open:
                raise EngineError("unknown_order", str(order.seq))
            self._close(order, CANCELED, reason="User requested")
            self._emit("order", order)
            return order

    def fill_order(self, order: Order, qty: object | None = None, price: object | None = None) -> Order:
        """Control API: (partially) fill a resting order, as if another trader took it."""
        with self.lock:
            if not order.is_open:
                raise EngineError("unknown_order", str(order.seq))
            qty_d = order.remaining if qty is None else min(dec(qty), order.remaining)
            price_d = order.price if price is None else dec(price)
            self._fill(order, qty_d, price_d, is_maker=True)
            self._emit("order", order)
            return order

    # ------------------------------------------------------------------ prices
    def set_mark(self, symbol: str, price: object, *, high: object | None = None, low: object | None = None) -> list[Fill]:
        """Move the mark; resting limit orders the move (or [low, high]) crosses fill at their price."""
        with self.lock:
            ins = self.instrument(symbol)
            ins.mark = dec(price)
            hi = dec(high) if high is not None else ins.mark
            lo = dec(low) if low is not None else ins.mark
            new_fills: list[Fill] = []
            for o in sorted(self.open_orders(symbol=symbol), key=lambda o: o.seq):
                if o.price is None:
                    continue
                if (o.side == "BUY" and lo <= o.price) or (o.side == "SELL" and hi >= o.price):
                    before = len(o.fills)
                    self._fill(o, o.remaining, o.price, is_maker=True)
                    new_fills.extend(o.fills[before:])
                    self._emit("order", o)
            return new_fills

    def load_candles(
        self,
        symbol: str,
        source: str | Path | Sequence[Sequence[object]],
        *,
        timeframe_ms: int = 60_000,
        limit: int | None = None,
        set_mark: bool = True,
    ) -> int:
        """Load OHLCV for ``symbol`` from a shared-data CSV (``.csv`` / ``.csv.gz``) or rows.

        Rows are ``(open_ms, open, high, low, close, volume[, trades])``. The candles are served
        by the klines/OHLC endpoints and drive the mark through :meth:`step`. With
        ``set_mark`` the mark becomes the first candle's open.
        """
        rows: list[Candle] = []
        if isinstance(source, (str, Path)):
            path = Path(source)
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", newline="") as fh:  # type: ignore[operator]
                reader = csv.DictReader(fh)
                for i, r in enumerate(reader):
                    if limit is not None and i >= limit:
                        break
                    rows.append(Candle(int(r["timestamp_ms"]), D(r["open"]), D(r["high"]), D(r["low"]),
                                       D(r["close"]), D(r["volume"] or "0"), int(r.get("trades") or 0)))
        else:
            for i, r in enumerate(source):
                if limit is not None and i >= limit:
                    break
                rows.append(Candle(int(r[0]), dec(r[1]), dec(r[2]), dec(r[3]), dec(r[4]), dec(r[5]),
                                   int(r[6]) if len(r) > 6 else 0))
        rows.sort(key=lambda c: c.open_ms)
        with self.lock:
            self.instrument(symbol)
            self.candles[symbol] = rows
            self.candle_tf_ms[symbol] = timeframe_ms
            self._cursor[symbol] = 0
            if set_mark and rows:
                self.instruments[symbol].mark = rows[0].open
        return len(rows)

    def step(self, n: int = 1, symbols: Iterable[str] | None = None) -> None:
        """Advance the candle cursor of each (or the given) symbol by ``n`` bars.

        Each bar crosses resting orders with its high/low and leaves the mark at its close.
        """
        with self.lock:
            for sym in list(symbols or self.candles):
                rows = self.candles.get(sym, [])
                for _ in range(n):
                    i = self._cursor.get(sym, 0)
                    if i >= len(rows):
                        break
                    c = rows[i]
                    self.set_mark(sym, c.close, high=c.high, low=c.low)
                    self._cursor[sym] = i + 1

    def aggregated_candles(self, symbol: str, interval_ms: int) -> list[Candle] | None:
        """Candles of ``symbol`` at ``interval_ms`` (a multiple of the loaded timeframe), or None."""
        with self.lock:
            rows = self.candles.get(symbol)
            base = self.candle_tf_ms.get(symbol)
            if rows is None or base is None:
                return [] if rows is None else None
            if interval_ms == base:
                return list(rows)
            if interval_ms % base:
                return None
            out: list[Candle] = []
            for c in rows:
                start = c.open_ms - c.open_ms % interval_ms
                if out and out[-1].open_ms == start:
                    last = out[-1]
                    last.high = max(last.high, c.high)
                    last.low = min(last.low, c.low)
                    last.close = c.close
                    last.volume += c.volume
                    last.trades += c.trades
                else:
                    out.append(Candle(start, c.open, c.high, c.low, c.close, c.volume, c.trades))
            return out

    # ------------------------------------------------------------------ internals
    def _emit(self, kind: str, obj: object) -> None:
        for cb in list(self.listeners):
            try:
                cb(kind, obj)
            except Exception:  # pragma: no cover - listeners must not break the engine
                pass

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, is_maker: bool) -> None:
        if qty <= 0:
            return
        ins = self.instruments[order.symbol]
        acct = self.accounts[order.account]
        quote = qty * price
        now = self.now_ms()
        if order.side == "BUY":
            # release this part's share of the lock, then pay the actual cost
            remaining_before = order.remaining
            reserved = order.locked if qty >= remaining_before else order.locked * qty / remaining_before
            fee = (quote * self.fee_rate) if self.fee_in == "quote" else (qty * self.fee_rate)
            qrow = acct._row(ins.quote)
            qrow[1] -= reserved
            order.locked -= reserved
            spent = quote + (fee if self.fee_in == "quote" else ZERO)
            qrow[0] += reserved - spent
            brow = acct._row(ins.base)
            brow[0] += qty - (fee if self.fee_in != "quote" else ZERO)
        else:
            fee = quote * self.fee_rate
            brow = acct._row(ins.base)
            brow[1] -= qty
            order.locked -= qty
            qrow = acct._row(ins.quote)
            qrow[0] += quote - fee
        fill = Fill(
            id=self._next_trade, order_seq=order.seq, account=order.account, symbol=order.symbol,
            side=order.side, price=price, qty=qty, quote_qty=quote, fee=fee, fee_asset=order.fee_asset,
            time_ms=now, is_maker=is_maker, order_type=order.type,
        )
        self._next_trade += 1
        self.fills.append(fill)
        order.fills.append(fill)
        order.filled += qty
        order.cum_quote += quote
        order.fee += fee
        order.updated_ms = now
        acct.update_ms = now
        if order.remaining <= 0:
            self._close(order, FILLED)
        else:
            order.status = PARTIALLY_FILLED
        self._emit("fill", fill)

    def _close(self, order: Order, status: str, reason: str | None = None) -> None:
        if order.locked:
            row = self.accounts[order.account]._row(order.lock_asset)
            row[1] -= order.locked
            row[0] += order.locked
            order.locked = ZERO
        order.status = status
        order.reason = reason
        order.updated_ms = order.closed_ms = self.now_ms()
