"""A small in-memory stand-in for a ccxt async exchange, used by the CcxtVenue unit tests.

It answers the unified methods the adapter uses (load_markets, create_order, fetch_order,
fetch_open_orders, fetch_closed_orders, fetch_my_trades, cancel_order, fetch_balance, close and
optionally watch_orders / watch_my_trades) with ccxt-shaped dicts (floats, like ccxt), keeps a
call log with ``time.monotonic()`` stamps, and lets a test script faults per method:

* ``fault(method, exc)``: raise ``exc`` INSTEAD of processing (the exchange never saw it);
* ``fault(method, exc, after=True)``: process, THEN raise ``exc`` (a timeout after acceptance);
* ``mangle_trades = "duplicate" | "reverse"``: the next fetch_my_trades answers with every trade
  twice / in reverse order.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import defaultdict
from typing import Any

import ccxt.async_support as ccxt

BASE_MS = 1_700_000_000_000


def market(symbol: str, tick: Any = 0.01, step: Any = 0.0001, min_amount: Any = 0.0001, min_cost: Any = 10,
           maker: float = 0.001, taker: float = 0.002) -> dict:
    base, quote = symbol.split("/")
    return {
        "id": symbol.replace("/", ""), "symbol": symbol, "base": base, "quote": quote, "spot": True, "active": True,
        "type": "spot", "maker": maker, "taker": taker,
        "precision": {"price": tick, "amount": step},
        "limits": {"amount": {"min": min_amount, "max": None}, "cost": {"min": min_cost, "max": None}},
    }


class FakeExchange:
    """See the module docstring. ``exchange_id`` picks the client-id table entry the adapter uses."""

    def __init__(self, exchange_id: str = "binance", *, streams: bool = False, dedup: bool = True,
                 weights: dict[str, float] | None = None, order_trades: bool = False) -> None:
        self.id = exchange_id
        self.rateLimit = 1
        self.precisionMode = 4
        self.enableRateLimit = True
        self.options: dict = {}
        self.last_response_headers: dict = {}
        self.has = {"fetchOrder": True, "fetchOpenOrders": True, "fetchClosedOrders": True, "fetchMyTrades": True,
                    "createOrder": True, "cancelOrder": True, "watchOrders": streams, "watchMyTrades": streams,
                    "fetchOrderTrades": True if order_trades else None}
        self.markets = {"BTC/USDT": market("BTC/USDT"), "ETH/USDT": market("ETH/USDT")}
        self.orders: dict[str, dict] = {}
        self.trades: list[dict] = []
        self.balance = {"BTC": 1.5, "USDT": 10000.0, "ETH": 0.0}
        self.calls: list[tuple[float, str, tuple]] = []
        self.faults: dict[str, list[tuple[BaseException, bool]]] = defaultdict(list)
        self.dedup = dedup
        self.dup_message = f'{exchange_id} {{"code":-2010,"msg":"Duplicate order sent."}}'
        self.mangle_trades: str | None = None
        self.weights = weights or {}
        self.weight_log: list[tuple[float, float, str]] = []
        self.closed = False
        self.now_ms = BASE_MS
        self._n = 0
        self._t = 0
        self.stream_orders: asyncio.Queue = asyncio.Queue()
        self.stream_trades: asyncio.Queue = asyncio.Queue()
        self.stream_faults: dict[str, list[BaseException]] = defaultdict(list)

    # -- scripting ----------------------------------------------------------------------------
    def fault(self, method: str, exc: BaseException, *, after: bool = False, times: int = 1) -> None:
        for _ in range(times):
            self.faults[method].append((exc, after))

    def count(self, method: str) -> int:
        return sum(1 for _, m, _ in self.calls if m == method)

    def add_order(self, symbol: str, side: str, amount: float, price: float | None, client_id: str = "",
                  status: str = "open") -> dict:
        self._n += 1
        order = {
            "id": str(1000 + self._n), "clientOrderId": client_id or None, "symbol": symbol, "type": "limit",
            "side": side, "amount": amount, "price": price, "filled": 0.0, "remaining": amount, "status": status,
            "timestamp": self.now_ms, "info": {},
        }
        self.orders[order["id"]] = order
        return order

    def fill(self, order_id: str, amount: float, price: float, *, maker: bool = True, ts_ms: int | None = None,
             fee: float | None = None, fee_currency: str = "USDT") -> dict:
        order = self.orders[order_id]
        self._t += 1
        trade = {
            "id": str(5000 + self._t), "order": order_id, "symbol": order["symbol"], "side": order["side"],
            "amount": amount, "price": price, "timestamp": ts_ms if ts_ms is not None else self.now_ms + self._t,
            "takerOrMaker": "maker" if maker else "taker",
            "fee": {"cost": fee if fee is not None else round(amount * price * 0.001, 10), "currency": fee_currency},
            "info": {},
        }
        self.trades.append(trade)
        order["filled"] = round(order["filled"] + amount, 12)
        order["remaining"] = round(order["amount"] - order["filled"], 12)
        if order["remaining"] <= 0:
            order["status"] = "closed"
        return trade

    # -- internals ----------------------------------------------------------------------------
    def _enter(self, method: str, args: tuple, kind: str | None = None) -> bool:
        """Log the call; raise a 'before' fault; return True when an 'after' fault is armed."""
        now = time.monotonic()
        self.calls.append((now, method, args))
        weight_kind = kind or method
        self.weight_log.append((now, float(self.weights.get(weight_kind, 1)), weight_kind))
        queue = self.faults.get(method)
        if queue:
            exc, after = queue.pop(0)
            if not after:
                raise exc
            self._after_exc = exc
            return True
        return False

    def _raise_after(self, armed: bool) -> None:
        if armed:
            raise self._after_exc

    @staticmethod
    def _copy(order: dict) -> dict:
        return copy.deepcopy(order)

    # -- ccxt unified API ---------------------------------------------------------------------
    async def load_markets(self, reload: bool = False, params: dict | None = None) -> dict:
        self._raise_after(self._enter("load_markets", ()))
        return self.markets

    async def create_order(self, symbol, type, side, amount, price=None, params=None) -> dict:  # noqa: A002
        params = dict(params or {})
        armed = self._enter("create_order", (symbol, type, side, amount, price, params))
        client_id = params.get("clientOrderId") or params.get("client_order_id") or ""
        if self.dedup and client_id and any(o["clientOrderId"] == client_id for o in self.orders.values()):
            raise ccxt.InvalidOrder(self.dup_message)
        if symbol not in self.markets:
            raise ccxt.BadSymbol(f"{self.id} does not have market symbol {symbol}")
        order = self.add_order(symbol, side, amount, price, client_id)
        order["type"] = type
        await asyncio.sleep(0)
        self._raise_after(armed)
        return self._copy(order)

    async def fetch_order(self, id, symbol=None, params=None) -> dict:  # noqa: A002
        params = dict(params or {})
        self._raise_after(self._enter("fetch_order", (id, symbol, params)))
        client_id = params.get("clientOrderId") or params.get("client_order_id")
        for order in self.orders.values():
            if (id is not None and order["id"] == id) or (id is None and client_id and order["clientOrderId"] == client_id):
                return self._copy(order)
        raise ccxt.OrderNotFound(f"{self.id} {{\"code\":-2013,\"msg\":\"Order does not exist.\"}}")

    async def fetch_open_orders(self, symbol=None, since=None, limit=None, params=None) -> list:
        kind = "fetch_open_orders" if symbol else "fetch_open_orders_all"
        self._raise_after(self._enter("fetch_open_orders", (symbol, since, params), kind))
        return [self._copy(o) for o in self.orders.values()
                if o["status"] == "open" and (symbol is None or o["symbol"] == symbol)]

    async def fetch_closed_orders(self, symbol=None, since=None, limit=None, params=None) -> list:
        self._raise_after(self._enter("fetch_closed_orders", (symbol, since, params)))
        return [self._copy(o) for o in self.orders.values()
                if o["status"] != "open" and (symbol is None or o["symbol"] == symbol)
                and (since is None or o["timestamp"] >= since)]

    async def fetch_my_trades(self, symbol=None, since=None, limit=None, params=None) -> list:
        self._raise_after(self._enter("fetch_my_trades", (symbol, since)))
        trades = sorted((t for t in self.trades if (symbol is None or t["symbol"] == symbol)
                         and (since is None or t["timestamp"] >= since)), key=lambda t: t["timestamp"])
        trades = [copy.deepcopy(t) for t in trades]
        if self.mangle_trades == "duplicate":
            trades = trades + [copy.deepcopy(t) for t in trades]
        elif self.mangle_trades == "reverse":
            trades.reverse()
        self.mangle_trades = None
        return trades

    async def fetch_order_trades(self, id, symbol=None, since=None, limit=None, params=None) -> list:  # noqa: A002
        self._raise_after(self._enter("fetch_order_trades", (id, symbol)))
        return [copy.deepcopy(t) for t in sorted(self.trades, key=lambda t: t["timestamp"]) if t["order"] == id]

    async def cancel_order(self, id, symbol=None, params=None) -> dict:  # noqa: A002
        armed = self._enter("cancel_order", (id, symbol))
        order = self.orders.get(id)
        if order is None or order["status"] != "open":
            raise ccxt.OrderNotFound(f"{self.id} {{\"code\":-2011,\"msg\":\"Unknown order sent.\"}}")
        order["status"] = "canceled"
        self._raise_after(armed)
        return self._copy(order)

    async def fetch_balance(self, params=None) -> dict:
        self._raise_after(self._enter("fetch_balance", ()))
        return {"total": dict(self.balance), "info": {}}

    async def close(self) -> None:
        self.closed = True

    # -- ccxt.pro ----------------------------------------------------------------------------
    async def watch_orders(self, symbol=None, since=None, limit=None, params=None) -> list:
        if self.stream_faults["watch_orders"]:
            raise self.stream_faults["watch_orders"].pop(0)
        return await self.stream_orders.get()

    async def watch_my_trades(self, symbol=None, since=None, limit=None, params=None) -> list:
        if self.stream_faults["watch_my_trades"]:
            raise self.stream_faults["watch_my_trades"].pop(0)
        return await self.stream_trades.get()


async def test_fake_exchange_fills_and_closes_an_order():
    ex = FakeExchange()
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.5, 100.0, {"clientOrderId": "a"})
    ex.fill(order["id"], 0.5, 100.0)
    assert (await ex.fetch_order(order["id"]))["status"] == "closed"
    assert len(await ex.fetch_my_trades("BTC/USDT")) == 1
