"""Binance spot REST dialect (``/api/v3``).

Implements what ccxt's ``binance`` spot methods call: ``ping``, ``time``, ``exchangeInfo``,
``depth``, ``klines``, ``ticker/24hr``, ``ticker/price``, ``ticker/bookTicker``, ``avgPrice``,
``account``, ``order`` (POST / GET / DELETE), ``order/test``, ``openOrders`` (GET / DELETE),
``allOrders`` and ``myTrades``; and the WebSocket API user data stream ccxt.pro's spot
``watch_orders`` / ``watch_my_trades`` use (``/ws-api/v3``, ``userDataStream.subscribe.signature``,
``executionReport`` and ``outboundAccountPosition`` events).

Signed endpoints verify ``X-MBX-APIKEY`` and ``signature`` = hex HMAC-SHA256(secret, query
string + body, without the signature), then ``timestamp``/``recvWindow`` against the venue
clock, in that order. Every response carries ``X-MBX-USED-WEIGHT-1M``; going over the weight
limit gives 429 with ``Retry-After``, and ``ban_after`` 429s within ``ban_s`` give a 418 ban.
Response shapes follow the captured payloads in ``shared/data/exchange_responses/binance.json``
with Binance's real JSON types (numbers for ids and times, decimal strings for amounts).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import string
import threading
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .dialect import PARAMS, RAW_BODY, RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import (
    CANCELED, EXPIRED, FILLED, Engine, EngineError, Fill, Instrument, Order, ZERO, dec, is_multiple,
)
from .faults import Fault, RequestRecord
from .ws import WsHub, WsSession, WsSubscription

PREFIX = "/api/v3"
#: The WebSocket API (ccxt.pro's ``urls['api']['ws']['ws-api']['spot']``, path kept by the client).
WS_API_PATH = "/ws-api/v3"


def default_instruments() -> list[Instrument]:
    """ADA/BTC, ETH/BTC, BTC/USDT, ETH/USDT, ADA/USDT with Binance-like filters."""
    return [
        Instrument("BTC/USDT", "BTC", "USDT", "BTCUSDT", tick_size="0.01", step_size="0.00001",
                   min_qty="0.00001", max_qty="9000", min_notional="5", mark="60000"),
        Instrument("ETH/USDT", "ETH", "USDT", "ETHUSDT", tick_size="0.01", step_size="0.0001",
                   min_qty="0.0001", max_qty="9000", min_notional="5", mark="3000"),
        Instrument("ETH/BTC", "ETH", "BTC", "ETHBTC", tick_size="0.00001", step_size="0.0001",
                   min_qty="0.0001", max_qty="100000", min_notional="0.0001", mark="0.05"),
        Instrument("ADA/BTC", "ADA", "BTC", "ADABTC", tick_size="0.00000001", step_size="0.1",
                   min_qty="0.1", max_qty="90000000", min_notional="0.0001", mark="0.00001"),
        Instrument("ADA/USDT", "ADA", "USDT", "ADAUSDT", tick_size="0.0001", step_size="0.1",
                   min_qty="1", max_qty="900000", min_notional="5", mark="0.6"),
    ]


def f8(x: Decimal | None) -> str:
    return f"{(x if x is not None else ZERO):.8f}"


def _weight(method: str, path: str, p: dict[str, str]) -> int:
    """Request weight per the Binance spot docs."""
    if path == WS_API_PATH:
        return 2  # "Connecting to WebSocket API costs 2 weight."
    ep = path[len(PREFIX) + 1:] if path.startswith(PREFIX + "/") else path
    has_symbol = "symbol" in p or "symbols" in p
    if method == "GET":
        if ep in ("ping", "time"):
            return 1
        if ep == "exchangeInfo":
            return 20
        if ep == "depth":
            limit = int(p.get("limit", 100) or 100)
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        if ep in ("klines", "uiKlines", "avgPrice"):
            return 2
        if ep == "ticker/24hr":
            return 2 if has_symbol else 80
        if ep in ("ticker/price", "ticker/bookTicker"):
            return 2 if has_symbol else 4
        if ep == "order":
            return 4
        if ep == "openOrders":
            return 6 if has_symbol else 80
        if ep in ("allOrders", "account", "myTrades"):
            return 20
    return 1


_INTERVALS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
              "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
              "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000}
_CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_.]{1,36}$")
_ALNUM = string.ascii_letters + string.digits


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _mandatory(p: dict[str, str], name: str) -> str:
    v = p.get(name)
    if v is None or v == "":
        raise BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return v


def _decimal_param(p: dict[str, str], name: str) -> Decimal | None:
    v = p.get(name)
    if v is None or v == "":
        return None
    try:
        d = Decimal(v)
    except Exception:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.") from None
    if not d.is_finite():
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return d


def _int_param(p: dict[str, str], name: str, default: int | None = None) -> int | None:
    v = p.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.") from None


class BinanceDialect(Dialect):
    name = "binance"
    ccxt_id = "binance"
    ccxt_options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "defaultType": "spot",
                    "fetchMargins": False}
    url_keys = ("api", "test", "demo")
    my_trades_path = "/api/v3/myTrades"
    create_order_path = "/api/v3/order"
    ws_paths = (WS_API_PATH,)

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", weight_limit: int = 6000,
                 window_s: float = 60.0, ban_after: int = 3, ban_s: float = 120.0,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("binance", instruments or default_instruments(), fee_rate=dec(fee_rate),
                        fee_in="received", first_order_id=3_500_000_001, first_trade_id=350_000_001)
        super().__init__(emulator, engine)
        self._lock = threading.Lock()
        self.weight_limit = weight_limit
        self.window_s = window_s
        self.ban_after = ban_after
        self.ban_s = ban_s
        self._window_idx = -1
        self._used = 0
        self._strikes: list[float] = []
        self.banned_until = 0.0
        self._order_times: list[float] = []
        self.ws = WsHub(self.name)
        self._ws_announced: set[int] = set()  # orders whose NEW executionReport is out
        self._ws_final: set[int] = set()  # orders whose terminal executionReport is out
        self._ws_event_ids = itertools.count(8_641_984)
        self.engine.listeners.append(self._ws_on_engine)

    def configure(self, *, weight_limit: int | None = None, window_s: float | None = None,
                  ban_after: int | None = None, ban_s: float | None = None) -> None:
        with self._lock:
            if weight_limit is not None:
                self.weight_limit = weight_limit
            if window_s is not None:
                self.window_s = window_s
                self._window_idx = -1
            if ban_after is not None:
                self.ban_after = ban_after
            if ban_s is not None:
                self.ban_s = ban_s
            self._strikes.clear()
            self.banned_until = 0.0

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt charges 0.2 cost units per weight: its default 50 ms is Binance's 6000/min
        return {"rateLimit": headroom * self.window_s * 1000 / (0.2 * self.weight_limit)}

    def lift_ban(self) -> None:
        with self._lock:
            self.banned_until = 0.0
            self._strikes.clear()

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        g = PREFIX
        return [
            ("GET", f"{g}/ping", self._wrap(self.ping)),
            ("GET", f"{g}/time", self._wrap(self.time)),
            ("GET", f"{g}/exchangeInfo", self._wrap(self.exchange_info)),
            ("GET", f"{g}/depth", self._wrap(self.depth)),
            ("GET", f"{g}/klines", self._wrap(self.klines)),
            ("GET", f"{g}/uiKlines", self._wrap(self.klines)),
            ("GET", f"{g}/ticker/24hr", self._wrap(self.ticker_24hr)),
            ("GET", f"{g}/ticker/price", self._wrap(self.ticker_price)),
            ("GET", f"{g}/ticker/bookTicker", self._wrap(self.book_ticker)),
            ("GET", f"{g}/avgPrice", self._wrap(self.avg_price)),
            ("GET", f"{g}/account", self._wrap(self.account, signed=True)),
            ("POST", f"{g}/order", self._wrap(self.new_order, signed=True)),
            ("POST", f"{g}/order/test", self._wrap(self.test_order, signed=True)),
            ("GET", f"{g}/order", self._wrap(self.query_order, signed=True)),
            ("DELETE", f"{g}/order", self._wrap(self.cancel_order, signed=True)),
            ("GET", f"{g}/openOrders", self._wrap(self.open_orders, signed=True)),
            ("DELETE", f"{g}/openOrders", self._wrap(self.cancel_open_orders, signed=True)),
            ("GET", f"{g}/allOrders", self._wrap(self.all_orders, signed=True)),
            ("GET", f"{g}/myTrades", self._wrap(self.my_trades, signed=True)),
            ("GET", WS_API_PATH, self._ws_upgrade),
        ]

    def _wrap(self, fn: Any, *, signed: bool = False) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                p = await self._params(request)
                acct_key = None
                if signed:
                    acct_key = await self._authenticate(request, p, rec)
                with self.engine.lock:
                    result = fn(p, acct_key, request) if signed else fn(p, request)
            except BinanceError as e:
                rec.error = e.code
                return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
            return web.json_response(result)
        return handler

    async def _params(self, request: web.Request) -> dict[str, str]:
        if PARAMS not in request:
            body = await request.text() if request.can_read_body else ""
            p: dict[str, str] = dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
            if body:
                p.update(parse_qsl(body, keep_blank_values=True))
            request[PARAMS] = p
            request[RAW_BODY] = body
        return request[PARAMS]

    async def _authenticate(self, request: web.Request, p: dict[str, str], rec: RequestRecord) -> str:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        rec.api_key = key
        query, sig_q = _strip_signature(request.rel_url.raw_query_string)
        body, sig_b = _strip_signature(request.get(RAW_BODY, ""))
        signature = sig_q or sig_b
        if not signature:
            raise BinanceError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        expected = hmac.new(acct.secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        ts = _int_param(p, "timestamp")
        if ts is None:
            raise BinanceError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        recv = _int_param(p, "recvWindow", 5000) or 5000
        if recv > 60000:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        server = self.engine.now_ms()
        if ts > server + 1000:
            raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - ts > recv:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return key

    # ------------------------------------------------------------------ rate limits
    def _roll(self, now: float) -> None:
        idx = int(now // self.window_s)
        if idx != self._window_idx:
            self._window_idx = idx
            self._used = 0

    def used_weight(self) -> int:
        with self._lock:
            self._roll(time.time())
            return self._used

    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        p = await self._params(request)
        weight = _weight(request.method, request.path, p)
        now = time.time()
        with self._lock:
            self._roll(now)
            rec.used_weight = self._used
            if self.banned_until > now:
                rec.error = -1003
                return self._ban_response(self.banned_until - now)
            if self._used + weight > self.weight_limit:
                self._strikes = [t for t in self._strikes if now - t < self.ban_s] + [now]
                rec.error = -1003
                if len(self._strikes) >= self.ban_after:
                    self.banned_until = now + self.ban_s
                    self._strikes.clear()
                    return self._ban_response(self.ban_s)
                retry = max(1, math.ceil((self._window_idx + 1) * self.window_s - now))
                return self._too_many_response(retry)
            self._used += weight
            rec.weight = weight
            rec.used_weight = self._used
            if request.method == "POST" and request.path == f"{PREFIX}/order":
                self._order_times = [t for t in self._order_times if now - t < 86400] + [now]
        return None

    def _too_many_response(self, retry_after: float) -> web.Response:
        msg = (f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 MINUTE. "
               "Please use WebSocket Streams for live updates to avoid polling the API.")
        return web.json_response({"code": -1003, "msg": msg}, status=429,
                                 headers={"Retry-After": str(int(math.ceil(retry_after)))})

    def _ban_response(self, seconds: float) -> web.Response:
        until = self.engine.now_ms() + int(seconds * 1000)
        msg = (f"Way too much request weight used; IP banned until {until}. "
               "Please use WebSocket Streams for live updates to avoid bans.")
        return web.json_response({"code": -1003, "msg": msg}, status=418,
                                 headers={"Retry-After": str(int(math.ceil(seconds)))})

    def decorate(self, request: web.Request, response: web.StreamResponse, rec: RequestRecord) -> None:
        used = rec.used_weight if rec.used_weight is not None else 0
        response.headers["X-MBX-USED-WEIGHT"] = str(used)
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        if request.method == "POST" and request.path == f"{PREFIX}/order":
            now = time.time()
            with self._lock:
                response.headers["X-MBX-ORDER-COUNT-10S"] = str(sum(1 for t in self._order_times if now - t < 10))
                response.headers["X-MBX-ORDER-COUNT-1D"] = str(len(self._order_times))

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        headers = dict(fault.headers)
        if fault.body is None and fault.status == 429:
            resp = self._too_many_response(float(headers.get("Retry-After", 60)))
        elif fault.body is None and fault.status == 418:
            resp = self._ban_response(float(headers.get("Retry-After", 120)))
        elif fault.body is None:
            resp = web.Response(status=fault.status, text=default_error_page(fault.status), content_type="text/html")
        else:
            resp = web.Response(status=fault.status, text=fault.body, content_type="application/json")
        for k, v in headers.items():
            resp.headers[k] = v
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(self.used_weight())
        return resp

    # ------------------------------------------------------------------ helpers
    def _instrument(self, p: dict[str, str], required: bool = True) -> Instrument | None:
        sym = p.get("symbol")
        if not sym:
            if required:
                _mandatory(p, "symbol")
            return None
        ins = self.engine.by_venue_id.get(sym.upper())
        if ins is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return ins

    def order_json(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        return {
            "symbol": ins.venue_id,
            "orderId": o.seq,
            "orderListId": -1,
            "clientOrderId": o.client_order_id,
            "price": f8(o.price),
            "origQty": f8(o.qty),
            "executedQty": f8(o.filled),
            "cummulativeQuoteQty": f8(o.cum_quote),
            "status": o.status,
            "timeInForce": o.time_in_force,
            "type": o.type,
            "side": o.side,
            "stopPrice": f8(ZERO),
            "icebergQty": f8(o.extra.get("iceberg_qty")),
            "time": o.created_ms,
            "updateTime": o.updated_ms,
            "isWorking": True,
            "workingTime": o.created_ms,
            "origQuoteOrderQty": f8(o.quote_qty),
            "selfTradePreventionMode": o.extra.get("stp", "EXPIRE_MAKER"),
        }

    def fill_json(self, f: Fill) -> dict[str, Any]:
        ins = self.engine.instruments[f.symbol]
        return {
            "symbol": ins.venue_id,
            "id": f.id,
            "orderId": f.order_seq,
            "orderListId": -1,
            "price": f8(f.price),
            "qty": f8(f.qty),
            "quoteQty": f8(f.quote_qty),
            "commission": f8(f.fee),
            "commissionAsset": f.fee_asset,
            "time": f.time_ms,
            "isBuyer": f.side == "BUY",
            "isMaker": f.is_maker,
            "isBestMatch": True,
        }

    def _find_order(self, key: str, ins: Instrument, p: dict[str, str], not_found: tuple[int, str]) -> Order:
        order_id = _int_param(p, "orderId")
        client_id = p.get("origClientOrderId")
        if order_id is None and not client_id:
            raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        o: Order | None
        if order_id is not None:
            o = self.engine.orders.get(order_id)
            if o is not None and client_id and o.client_order_id != client_id:
                o = None
        else:
            o = self.engine.find_by_client_id(key, client_id)  # type: ignore[arg-type]
        if o is None or o.account != key or o.symbol != ins.symbol:
            raise BinanceError(400, not_found[0], not_found[1])
        return o

    @staticmethod
    def _window(items: list, p: dict[str, str], time_of: Any, from_key: str | None, id_of: Any,
                default_limit: int = 500, max_limit: int = 1000) -> list:
        limit = min(_int_param(p, "limit", default_limit) or default_limit, max_limit)
        start = _int_param(p, "startTime")
        end = _int_param(p, "endTime")
        from_id = _int_param(p, from_key) if from_key else None
        out = items
        if from_id is not None:
            out = [x for x in out if id_of(x) >= from_id]
        if start is not None:
            out = [x for x in out if time_of(x) >= start]
        if end is not None:
            out = [x for x in out if time_of(x) <= end]
        if from_id is not None or start is not None:
            return out[:limit]
        return out[-limit:]

    # ------------------------------------------------------------------ public endpoints
    def ping(self, p: dict[str, str], request: web.Request) -> Any:
        return {}

    def time(self, p: dict[str, str], request: web.Request) -> Any:
        return {"serverTime": self.engine.now_ms()}

    def exchange_info(self, p: dict[str, str], request: web.Request) -> Any:
        instruments = list(self.engine.instruments.values())
        wanted: list[str] | None = None
        if p.get("symbol"):
            wanted = [p["symbol"]]
        elif p.get("symbols"):
            try:
                wanted = list(json.loads(p["symbols"]))
            except ValueError:
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
        if wanted is not None:
            missing = [w for w in wanted if w not in self.engine.by_venue_id]
            if missing:
                raise BinanceError(400, -1121, "Invalid symbol.")
            instruments = [self.engine.by_venue_id[w] for w in wanted]
        return {
            "timezone": "UTC",
            "serverTime": self.engine.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_json(ins) for ins in instruments],
        }

    def _symbol_json(self, ins: Instrument) -> dict[str, Any]:
        return {
            "symbol": ins.venue_id,
            "status": "TRADING",
            "baseAsset": ins.base,
            "baseAssetPrecision": 8,
            "quoteAsset": ins.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": True,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": f8(ins.min_price), "maxPrice": f8(ins.max_price),
                 "tickSize": f8(ins.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": f8(ins.min_qty), "maxQty": f8(ins.max_qty),
                 "stepSize": f8(ins.step_size)},
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {"filterType": "MARKET_LOT_SIZE", "minQty": f8(ZERO), "maxQty": f8(ins.max_qty),
                 "stepSize": f8(ZERO)},
                {"filterType": "NOTIONAL", "minNotional": f8(ins.min_notional), "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def depth(self, p: dict[str, str], request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        n = min(_int_param(p, "limit", 100) or 100, 5000)
        levels = min(n, 20)
        return {
            "lastUpdateId": self.engine.now_ms(),
            "bids": [[f8(ins.mark - ins.tick_size * (i + 1)), "1.00000000"] for i in range(levels)],
            "asks": [[f8(ins.mark + ins.tick_size * (i + 1)), "1.00000000"] for i in range(levels)],
        }

    def klines(self, p: dict[str, str], request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        interval = _mandatory(p, "interval")
        if interval not in _INTERVALS:
            raise BinanceError(400, -1120, "Invalid interval.")
        ms = _INTERVALS[interval]
        rows = self.engine.aggregated_candles(ins.symbol, ms) or []
        rows = self._window(rows, p, lambda c: c.open_ms, None, None)
        return [
            [c.open_ms, f8(c.open), f8(c.high), f8(c.low), f8(c.close), f8(c.volume), c.open_ms + ms - 1,
             f8(c.volume * c.close), c.trades, f8(c.volume / 2), f8(c.volume * c.close / 2), "0"]
            for c in rows
        ]

    def _ticker(self, ins: Instrument) -> dict[str, Any]:
        now = self.engine.now_ms()
        return {
            "symbol": ins.venue_id, "priceChange": f8(ZERO), "priceChangePercent": "0.000",
            "weightedAvgPrice": f8(ins.mark), "prevClosePrice": f8(ins.mark), "lastPrice": f8(ins.mark),
            "lastQty": f8(ins.step_size), "bidPrice": f8(ins.mark - ins.tick_size), "bidQty": "1.00000000",
            "askPrice": f8(ins.mark + ins.tick_size), "askQty": "1.00000000", "openPrice": f8(ins.mark),
            "highPrice": f8(ins.mark), "lowPrice": f8(ins.mark), "volume": f8(ZERO), "quoteVolume": f8(ZERO),
            "openTime": now - 86_400_000, "closeTime": now, "firstId": -1, "lastId": -1, "count": 0,
        }

    def _many(self, p: dict[str, str], fn: Any) -> Any:
        ins = self._instrument(p, required=False)
        if ins is not None:
            return fn(ins)
        if p.get("symbols"):
            ids = json.loads(p["symbols"])
            return [fn(self.engine.by_venue_id[i]) for i in ids if i in self.engine.by_venue_id]
        return [fn(i) for i in self.engine.instruments.values()]

    def ticker_24hr(self, p: dict[str, str], request: web.Request) -> Any:
        return self._many(p, self._ticker)

    def ticker_price(self, p: dict[str, str], request: web.Request) -> Any:
        return self._many(p, lambda ins: {"symbol": ins.venue_id, "price": f8(ins.mark)})

    def book_ticker(self, p: dict[str, str], request: web.Request) -> Any:
        return self._many(p, lambda ins: {
            "symbol": ins.venue_id, "bidPrice": f8(ins.mark - ins.tick_size), "bidQty": "1.00000000",
            "askPrice": f8(ins.mark + ins.tick_size), "askQty": "1.00000000"})

    def avg_price(self, p: dict[str, str], request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        return {"mins": 5, "price": f8(ins.mark), "closeTime": self.engine.now_ms()}

    # ------------------------------------------------------------------ private endpoints
    def account(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        bps = int(self.engine.fee_rate * 10000)
        balances = [{"asset": a, "free": f8(r[0]), "locked": f8(r[1])} for a, r in acct.balances.items()]
        if p.get("omitZeroBalances") == "true":
            balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
        return {
            "makerCommission": bps, "takerCommission": bps, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": f8(self.engine.fee_rate), "taker": f8(self.engine.fee_rate),
                                "buyer": f8(ZERO), "seller": f8(ZERO)},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": acct.update_ms,
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"],
            "uid": int(hashlib.sha256(key.encode()).hexdigest()[:8], 16),
        }

    def _validate_new_order(self, p: dict[str, str]) -> dict[str, Any]:
        ins = self._instrument(p)
        assert ins is not None
        side = _mandatory(p, "side").upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        type_ = _mandatory(p, "type").upper()
        if type_ not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        qty = _decimal_param(p, "quantity")
        quote_qty = _decimal_param(p, "quoteOrderQty")
        price = _decimal_param(p, "price")
        tif = p.get("timeInForce", "").upper()
        if type_ == "LIMIT":
            if not tif:
                _mandatory(p, "timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(400, -1115, "Invalid timeInForce.")
        elif p.get("timeInForce"):
            raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        if type_ in ("LIMIT", "LIMIT_MAKER"):
            if price is None:
                _mandatory(p, "price")
            if qty is None:
                _mandatory(p, "quantity")
        else:
            if price is not None:
                raise BinanceError(400, -1106, "Parameter 'price' sent when not required.")
            if qty is None and quote_qty is None:
                raise BinanceError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
            if qty is not None and quote_qty is not None:
                raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
        client_id = p.get("newClientOrderId")
        if client_id is not None and not _CLIENT_ID_RE.match(client_id):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_.]{1,36}$'.")
        if price is not None:
            if price < ins.min_price or price > ins.max_price or not is_multiple(price, ins.tick_size):  # type: ignore[operator]
                raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty is not None:
            if qty < ins.min_qty or qty > ins.max_qty or not is_multiple(qty, ins.step_size):
                raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        notional = quote_qty if quote_qty is not None else (qty or ZERO) * (price if price is not None else ins.mark)
        if notional < ins.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        iceberg = _decimal_param(p, "icebergQty")
        if iceberg is not None:
            if type_ != "LIMIT" or tif != "GTC":
                raise BinanceError(400, -1013, "Filter failure: ICEBERG_PARTS")
            if qty is None or iceberg <= 0 or qty / iceberg > 10 or not is_multiple(iceberg, ins.step_size):
                raise BinanceError(400, -1013, "Filter failure: ICEBERG_PARTS")
        stp = (p.get("selfTradePreventionMode") or "EXPIRE_MAKER").upper()
        if stp not in ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"):
            raise BinanceError(400, -1130, "Data sent for parameter 'selfTradePreventionMode' is not valid.")
        resp_type = (p.get("newOrderRespType") or ("FULL" if type_ in ("MARKET", "LIMIT") else "ACK")).upper()
        return dict(ins=ins, side=side, type_=type_, qty=qty, quote_qty=quote_qty, price=price,
                    tif=tif or "GTC", client_id=client_id, iceberg=iceberg, stp=stp, resp_type=resp_type)

    def test_order(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        self._validate_new_order(p)
        return {}

    def new_order(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        v = self._validate_new_order(p)
        client_id = v["client_id"] or "".join(secrets.choice(_ALNUM) for _ in range(22))
        extra: dict[str, Any] = {"stp": v["stp"]}
        if v["iceberg"] is not None:
            extra["iceberg_qty"] = v["iceberg"]
        try:
            o = self.engine.place(
                key, v["ins"].symbol, v["side"], v["type_"], qty=v["qty"], price=v["price"],
                quote_qty=v["quote_qty"], client_order_id=client_id, time_in_force=v["tif"],
                post_only=v["type_"] == "LIMIT_MAKER", extra=extra,
            )
        except EngineError as e:
            msg = {
                "duplicate_client_id": "Duplicate order sent.",
                "insufficient_funds": "Account has insufficient balance for requested action.",
                "would_take": "Order would immediately match and take.",
            }.get(e.kind, "Order rejected.")
            raise BinanceError(400, -2010, msg) from None
        head = {"symbol": v["ins"].venue_id, "orderId": o.seq, "orderListId": -1,
                "clientOrderId": o.client_order_id, "transactTime": o.created_ms}
        if v["resp_type"] == "ACK":
            return head
        body = dict(head)
        body.update({
            "price": f8(o.price), "origQty": f8(o.qty), "executedQty": f8(o.filled),
            "origQuoteOrderQty": f8(o.quote_qty), "cummulativeQuoteQty": f8(o.cum_quote), "status": o.status,
            "timeInForce": o.time_in_force, "type": o.type, "side": o.side, "workingTime": o.created_ms,
        })
        if "iceberg_qty" in o.extra:
            body["icebergQty"] = f8(o.extra["iceberg_qty"])
        if v["resp_type"] == "FULL":
            body["fills"] = [{"price": f8(f.price), "qty": f8(f.qty), "commission": f8(f.fee),
                              "commissionAsset": f.fee_asset, "tradeId": f.id} for f in o.fills]
        body["selfTradePreventionMode"] = o.extra["stp"]
        return body

    def query_order(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        o = self._find_order(key, ins, p, (-2013, "Order does not exist."))
        return self.order_json(o)

    def _cancel_json(self, o: Order, cancel_client_id: str | None) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        return {
            "symbol": ins.venue_id,
            "origClientOrderId": o.client_order_id,
            "orderId": o.seq,
            "orderListId": -1,
            "clientOrderId": cancel_client_id or "".join(secrets.choice(_ALNUM) for _ in range(22)),
            "transactTime": o.updated_ms,
            "price": f8(o.price),
            "origQty": f8(o.qty),
            "executedQty": f8(o.filled),
            "origQuoteOrderQty": f8(o.quote_qty),
            "cummulativeQuoteQty": f8(o.cum_quote),
            "status": o.status,
            "timeInForce": o.time_in_force,
            "type": o.type,
            "side": o.side,
            "selfTradePreventionMode": o.extra.get("stp", "EXPIRE_MAKER"),
        }

    def cancel_order(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        o = self._find_order(key, ins, p, (-2011, "Unknown order sent."))
        if not o.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        self.engine.cancel(o)
        assert o.status == CANCELED
        return self._cancel_json(o, p.get("newClientOrderId"))

    def open_orders(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        ins = self._instrument(p, required=False)
        orders = self.engine.open_orders(key, ins.symbol if ins else None)
        return [self.order_json(o) for o in sorted(orders, key=lambda o: o.seq)]

    def cancel_open_orders(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        orders = sorted(self.engine.open_orders(key, ins.symbol), key=lambda o: o.seq)
        if not orders:
            raise BinanceError(400, -2011, "Unknown order sent.")
        out = []
        for o in orders:
            self.engine.cancel(o)
            out.append(self._cancel_json(o, None))
        return out

    def all_orders(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        orders = sorted(self.engine.account_orders(key, ins.symbol), key=lambda o: o.seq)
        orders = self._window(orders, p, lambda o: o.created_ms, "orderId", lambda o: o.seq)
        return [self.order_json(o) for o in orders]

    def my_trades(self, p: dict[str, str], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        fault: Fault | None = request.get(TRADES_FAULT)
        fills = sorted(self.engine.account_fills(key, ins.symbol), key=lambda f: f.id)
        order_id = _int_param(p, "orderId")
        if order_id is not None:
            fills = [f for f in fills if f.order_seq == order_id]
        if fault is not None and fault.mode == "overlap":
            q = {k: v for k, v in p.items() if k not in ("startTime", "fromId", "endTime")}
            fills = self._window(fills, q, lambda f: f.time_ms, "fromId", lambda f: f.id)
        else:
            fills = self._window(fills, p, lambda f: f.time_ms, "fromId", lambda f: f.id)
        out = [self.fill_json(f) for f in fills]
        if fault is not None and fault.mode == "duplicate":
            out = [x for f in out for x in (f, dict(f))]
        elif fault is not None and fault.mode == "reorder":
            out.reverse()
        return out

    # ------------------------------------------------------------------ WebSocket API (user data)
    # ccxt.pro 4.5.90 watches spot orders/trades through the WebSocket API, not a listenKey:
    # ``userDataStream.subscribe.signature`` (apiKey, timestamp, [recvWindow], signature = hex
    # HMAC-SHA256 of the other params sorted by name as ``k=v&...``) on ``/ws-api/v3``; events then
    # arrive as ``{"subscriptionId": n, "event": {...}}`` on the same connection.
    async def _ws_upgrade(self, request: web.Request) -> web.StreamResponse:
        assert self.ws is not None
        return await self.ws.serve(request, self._ws_request, request.get(RECORD))

    def _ws_request(self, session: WsSession, text: str) -> dict[str, Any] | None:
        started = time.monotonic()
        rec = RequestRecord(at=started, server_ms=self.engine.now_ms(), venue=self.name, method="WS",
                            path=session.path, query="")
        self.emulator.requests.append(rec)
        try:
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise ValueError
        except ValueError:
            rec.status, rec.error = 400, -1100
            return {"id": None, "status": 400,
                    "error": {"code": -1100, "msg": "Illegal characters found in a parameter."}}
        req_id, method = msg.get("id"), str(msg.get("method") or "")
        params = msg.get("params") or {}
        rec.query = method
        base = method.split("/", 1)[1] if method.startswith("v3/") else method
        weight = {"userDataStream.subscribe.signature": 2, "userDataStream.unsubscribe": 2,
                  "session.subscriptions": 2, "ping": 1, "time": 1}.get(base, 1)
        try:
            used = self._ws_charge(weight, rec)
            if base == "userDataStream.subscribe.signature":
                key = self._ws_authenticate(params if isinstance(params, dict) else {}, rec)
                with self.engine.lock:
                    sub = self.ws.subscribe(session, key)  # type: ignore[union-attr]
                result: Any = {"subscriptionId": sub.subscription_id}
            elif base == "userDataStream.unsubscribe":
                sid = params.get("subscriptionId") if isinstance(params, dict) else None
                ended = self.ws.unsubscribe(session, None if sid is None else int(sid))  # type: ignore[union-attr]
                if sid is not None and not ended:
                    raise BinanceError(400, -1100, "Illegal characters found in parameter 'subscriptionId'.")
                result = {}
            elif base == "session.subscriptions":
                result = [{"subscriptionId": s.subscription_id} for s in session.subscriptions if s.active]
            elif base == "ping":
                result = {}
            elif base == "time":
                result = {"serverTime": self.engine.now_ms()}
            else:
                raise BinanceError(400, -1020, "This operation is not supported.")
        except BinanceError as e:
            rec.status, rec.error = e.status, e.code
            return {"id": req_id, "status": e.status, "error": {"code": e.code, "msg": e.msg},
                    "rateLimits": self._ws_rate_limits(rec.used_weight or 0)}
        rec.status, rec.processed = 200, True
        reply: dict[str, Any] = {"id": req_id, "status": 200, "result": result}
        if not (isinstance(params, dict) and params.get("returnRateLimits") is False):
            reply["rateLimits"] = self._ws_rate_limits(used)
        return reply

    def _ws_rate_limits(self, used: int) -> list[dict[str, Any]]:
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit, "count": used}]

    def _ws_charge(self, weight: int, rec: RequestRecord) -> int:
        """WebSocket API requests share the IP's REQUEST_WEIGHT with REST."""
        now = time.time()
        with self._lock:
            self._roll(now)
            rec.used_weight = self._used
            if self.banned_until > now:
                raise BinanceError(418, -1003, f"Way too much request weight used; IP banned until "
                                   f"{self.engine.now_ms() + int((self.banned_until - now) * 1000)}. "
                                   "Please use WebSocket Streams for live updates to avoid bans.")
            if self._used + weight > self.weight_limit:
                raise BinanceError(429, -1003, f"Too much request weight used; current limit is {self.weight_limit} "
                                   "request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
                                   "to avoid polling the API.")
            self._used += weight
            rec.weight, rec.used_weight = weight, self._used
            return self._used

    def _ws_authenticate(self, params: dict[str, Any], rec: RequestRecord) -> str:
        """The same checks, codes and order as a signed REST request, on JSON params."""
        key = params.get("apiKey")
        if not key:
            raise BinanceError(400, -1102, "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.")
        acct = self.engine.accounts.get(str(key))
        if acct is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        rec.api_key = str(key)
        signature = params.get("signature")
        if not signature:
            raise BinanceError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = "&".join(f"{k}={_ws_param(v)}" for k, v in sorted(params.items()) if k != "signature")
        expected = hmac.new(acct.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signature).lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params.get("timestamp"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise BinanceError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                               "malformed.") from None
        recv = int(params.get("recvWindow") or 5000)
        if recv > 60000:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        server = self.engine.now_ms()
        if ts > server + 1000:
            raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - ts > recv:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return str(key)

    def _ws_on_engine(self, kind: str, obj: object) -> None:
        """Engine listener (runs under the engine lock, in whatever thread moved the engine):
        ``executionReport`` events as Binance sends them, NEW first, then one TRADE per fill, then
        CANCELED / EXPIRED; each followed by ``outboundAccountPosition`` for the assets involved."""
        if kind == "fill":
            fill = obj
            assert isinstance(fill, Fill)
            order = self.engine.orders[fill.order_seq]
        elif kind == "order":
            fill, order = None, obj  # type: ignore[assignment]
            assert isinstance(order, Order)
        else:
            return
        events: list[dict[str, Any]] = []
        if order.seq not in self._ws_announced:
            self._ws_announced.add(order.seq)
            events.append(self._execution_report(order, "NEW"))
        if fill is not None:
            events.append(self._execution_report(order, "TRADE", fill))
            if order.status == FILLED:
                self._ws_final.add(order.seq)
        elif not order.is_open and order.seq not in self._ws_final:
            self._ws_final.add(order.seq)
            if order.status in (CANCELED, EXPIRED):
                events.append(self._execution_report(order, order.status))
        if not events or self.ws is None or not self.ws.has_subscribers(order.account):
            return
        ins = self.engine.instruments[order.symbol]
        acct = self.engine.accounts[order.account]
        now = self.engine.now_ms()
        events.append({"e": "outboundAccountPosition", "E": now, "u": acct.update_ms,
                       "B": [{"a": a, "f": f8(acct.free(a)), "l": f8(acct.locked(a))} for a in (ins.base, ins.quote)]})
        for event in events:
            self.ws.publish(order.account, _envelope(event))

    def _execution_report(self, o: Order, execution: str, fill: Fill | None = None) -> dict[str, Any]:
        """One ``executionReport`` (user data stream "Order Update") for ``o`` as of ``execution``."""
        ins = self.engine.instruments[o.symbol]
        new = execution == "NEW"
        on_book = o.type != "MARKET" and o.time_in_force == "GTC" and (o.is_open or not new)
        event: dict[str, Any] = {
            "e": "executionReport",
            "E": self.engine.now_ms(),
            "s": ins.venue_id,
            # a cancel carries the cancel request's id in "c" and the order's own in "C"
            "c": "".join(secrets.choice(_ALNUM) for _ in range(22)) if execution == CANCELED else o.client_order_id,
            "S": o.side,
            "o": o.type,
            "f": o.time_in_force,
            "q": f8(o.qty),
            "p": f8(o.price),
            "P": f8(ZERO),
            "F": f8(o.extra.get("iceberg_qty")),
            "g": -1,
            "C": o.client_order_id if execution == CANCELED else "",
            "x": execution,
            "X": "NEW" if new else o.status,
            "r": "NONE",
            "i": o.seq,
            "l": f8(fill.qty if fill else ZERO),
            "z": f8(ZERO if new else o.filled),
            "L": f8(fill.price if fill else ZERO),
            "n": f8(fill.fee) if fill else "0",
            "N": fill.fee_asset if fill else None,
            "T": fill.time_ms if fill else (o.created_ms if new else o.updated_ms),
            "t": fill.id if fill else -1,
            "I": next(self._ws_event_ids),
            "w": on_book and (new or o.is_open),
            "m": fill.is_maker if fill else False,
            "M": False,
            "O": o.created_ms,
            "Z": f8(ZERO if new else o.cum_quote),
            "Y": f8(fill.quote_qty if fill else ZERO),
            "Q": f8(o.quote_qty),
            "V": o.extra.get("stp", "EXPIRE_MAKER"),
        }
        if on_book:
            event["W"] = o.created_ms
        return event

    def ws_subscriptions(self, api_key: str | None = None, *, active: bool | None = None) -> list[WsSubscription]:
        """User data stream subscriptions accepted so far (see :meth:`WsHub.subscriptions`)."""
        assert self.ws is not None
        return self.ws.subscriptions(api_key, active=active)


def _ws_param(value: Any) -> str:
    """A JSON param as it appears in the signature payload (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _envelope(event: dict[str, Any]) -> Any:
    return lambda sub: {"subscriptionId": sub.subscription_id, "event": event}


def _strip_signature(raw: str) -> tuple[str, str | None]:
    if not raw:
        return "", None
    kept, sig = [], None
    for part in raw.split("&"):
        if part.startswith("signature="):
            sig = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), sig


__all__ = ["BinanceDialect", "default_instruments"]
