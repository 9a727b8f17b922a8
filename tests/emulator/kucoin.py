"""KuCoin spot REST dialect (classic account, high-frequency "HF" spot orders).

What ccxt's ``kucoin`` calls for a classic (non-unified) account whose spot trading is HF:

* public: ``/api/v1/timestamp``, ``/api/v3/currencies``, ``/api/v2/symbols``,
  ``/api/v1/market/allTickers``, ``/api/v1/market/stats``, ``/api/v1/market/candles``,
  ``/api/v1/market/orderbook/level2_20`` / ``level2_100``;
* private: ``/api/ua/v1/account/mode`` (ccxt asks whether the account is unified before every
  order call: answered ``CLASSIC``), ``/api/v1/hf/accounts/opened`` (HF or not: ``true``),
  ``/api/v3/margin/symbols`` and ``/api/v1/isolated/symbols`` (``load_markets`` with
  credentials: empty, margin is not emulated), ``/api/v3/market/orderbook/level2``,
  ``/api/v1/accounts``, ``/api/v1/hf/orders`` (POST), ``/api/v1/hf/orders/{orderId}`` and
  ``/api/v1/hf/orders/client-order/{clientOid}`` (GET, DELETE), ``/api/v1/hf/orders/active``,
  ``/api/v1/hf/orders/done``, ``/api/v1/hf/fills``.

Authentication as KuCoin does it (API key version 2): ``KC-API-KEY``, ``KC-API-TIMESTAMP`` (ms),
``KC-API-PASSPHRASE`` = base64(HMAC-SHA256(secret, passphrase)), ``KC-API-KEY-VERSION: 2`` and
``KC-API-SIGN`` = base64(HMAC-SHA256(secret, timestamp + METHOD + path?query + body)). A
timestamp more than 5 s away from the server clock gets ``400002``; auth errors answer HTTP 401
with ``{"code": "40000x", "msg": ...}``. Success is ``{"code": "200000", "data": ...}``.

Rate limits are KuCoin's resource pools (VIP0): the private "Spot" pool, 4000 weight per 30 s
per account, and the public pool, 2000 weight per 30 s per IP, with each endpoint's documented
weight. Every response carries ``gw-ratelimit-limit``, ``gw-ratelimit-remaining`` and
``gw-ratelimit-reset`` (ms); over the quota: HTTP 429 ``{"code": "429000", ...}``.

KuCoin does not refuse a second order with a ``clientOid`` it already holds (``Dedup.NONE`` in
``appliance.venues.ccxt.client_ids``); a look-up by ``clientOid`` returns the newest such order.
Fees are charged in the quote currency, on buys and sells.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import threading
import time
from decimal import Decimal
from typing import Any

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import (
    CANCELED, EXPIRED, Engine, EngineError, Fill, Instrument, Order, ZERO, dec, is_multiple,
)
from .faults import Fault, RequestRecord

TIMESTAMP_WINDOW_MS = 5_000
LIMIT_STATE = web.RequestKey("kucoin_ratelimit", tuple)  # (limit, remaining, reset ms) for the headers
OK = "200000"
TOO_MANY = {"code": "429000", "msg": "Too Many Requests"}

# Resource pools (www.kucoin.com/docs-new/rate-limit): quota per 30 s for VIP0.
POOLS = {"spot": 4000, "public": 2000, "management": 2000}
POOL_WINDOW_S = 30.0
# (pool, weight) per route, from each endpoint's page on www.kucoin.com/docs-new/rest/...
WEIGHTS: dict[tuple[str, str], tuple[str, int]] = {
    ("GET", "/api/v1/timestamp"): ("public", 3),
    ("GET", "/api/v3/currencies"): ("public", 3),
    ("GET", "/api/v2/symbols"): ("public", 4),
    ("GET", "/api/v1/market/allTickers"): ("public", 15),
    ("GET", "/api/v1/market/stats"): ("public", 15),
    ("GET", "/api/v1/market/candles"): ("public", 3),
    ("GET", "/api/v1/market/orderbook/level2_20"): ("public", 2),
    ("GET", "/api/v1/market/orderbook/level2_100"): ("public", 4),
    ("GET", "/api/v3/market/orderbook/level2"): ("spot", 3),
    ("GET", "/api/v1/accounts"): ("management", 5),
    ("GET", "/api/v1/hf/accounts/opened"): ("management", 3),
    ("GET", "/api/ua/v1/account/mode"): ("management", 2),
    ("GET", "/api/v3/margin/symbols"): ("public", 3),
    ("GET", "/api/v1/isolated/symbols"): ("public", 20),
    ("POST", "/api/v1/hf/orders"): ("spot", 1),
    ("GET", "/api/v1/hf/orders/active"): ("spot", 2),
    ("GET", "/api/v1/hf/orders/done"): ("spot", 2),
    ("GET", "/api/v1/hf/fills"): ("spot", 2),
    ("GET", "/api/v1/hf/orders/{orderId}"): ("spot", 2),
    ("DELETE", "/api/v1/hf/orders/{orderId}"): ("spot", 1),
    ("GET", "/api/v1/hf/orders/client-order/{clientOid}"): ("spot", 2),
    ("DELETE", "/api/v1/hf/orders/client-order/{clientOid}"): ("spot", 1),
}

_CLIENT_OID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_KLINES = {"1min": 60_000, "3min": 180_000, "5min": 300_000, "15min": 900_000, "30min": 1_800_000,
           "1hour": 3_600_000, "2hour": 7_200_000, "4hour": 14_400_000, "6hour": 21_600_000,
           "8hour": 28_800_000, "12hour": 43_200_000, "1day": 86_400_000, "1week": 604_800_000}
_ORDER_ID_BASE = 0x6711B8A2E4C3A00000000000
_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "USDT": "Tether", "USDC": "USD Coin"}


def default_instruments() -> list[Instrument]:
    """BTC-USDT, ETH-USDT, ETH-BTC with KuCoin's increments and minimum sizes/funds."""
    return [
        Instrument("BTC/USDT", "BTC", "USDT", "BTC-USDT", tick_size="0.1", step_size="0.00000001",
                   min_qty="0.00001", max_qty="10000000000", min_notional="0.1", mark="60000",
                   extra={"quoteIncrement": "0.000001", "quoteMaxSize": "99999999", "market": "USDS"}),
        Instrument("ETH/USDT", "ETH", "USDT", "ETH-USDT", tick_size="0.01", step_size="0.0000001",
                   min_qty="0.0001", max_qty="10000000000", min_notional="0.1", mark="3000",
                   extra={"quoteIncrement": "0.000001", "quoteMaxSize": "99999999", "market": "USDS"}),
        Instrument("ETH/BTC", "ETH", "BTC", "ETH-BTC", tick_size="0.00001", step_size="0.0000001",
                   min_qty="0.0001", max_qty="10000000000", min_notional="0.00001", mark="0.05",
                   extra={"quoteIncrement": "0.00000001", "quoteMaxSize": "99999999", "market": "BTC"}),
    ]


def s(x: Decimal | None) -> str:
    """KuCoin's decimal strings (plain notation, "0" for zero or missing)."""
    if x is None or x == 0:
        return "0"
    return format(x.normalize(), "f")


class KucoinError(Exception):
    """A KuCoin answer other than ``200000``."""

    def __init__(self, code: str, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


class KucoinDialect(Dialect):
    """KuCoin spot REST: classic account, HF spot orders."""

    name = "kucoin"
    ccxt_id = "kucoin"
    # spot markets only (no futures host); everything else is answered as ccxt asks it
    ccxt_options = {"fetchMarkets": {"types": ["spot"], "fetchTickersFees": True}, "defaultType": "spot"}
    url_keys = ("api",)
    my_trades_path = "/api/v1/hf/fills"
    create_order_path = "/api/v1/hf/orders"
    needs_password = True

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", pool_scale: float = 1.0,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("kucoin", instruments or default_instruments(), fee_rate=dec(fee_rate), fee_in="quote",
                        first_order_id=1, first_trade_id=11_895_733_587_298_305)
        super().__init__(emulator, engine)
        self.pool_scale = pool_scale
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str], list[float]] = {}  # (pool, who) -> [window start, used]
        self._counter_order: dict[int, int] = {}

    @classmethod
    def test_secret(cls, seed: str) -> str:
        # KuCoin issues UUID-shaped secrets
        h = hashlib.sha256(seed.encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt's 7.5 ms per cost unit follows the 4000-per-30-s spot pool
        return {"rateLimit": headroom * 7.5 / self.pool_scale}

    def configure(self, *, pool_scale: float | None = None) -> None:
        """Scale the pool quotas (1 = VIP0 as documented) and empty them."""
        with self._lock:
            if pool_scale is not None:
                self.pool_scale = pool_scale
            self._pools.clear()

    @staticmethod
    def order_id(o: Order | int) -> str:
        """KuCoin's 24-hex order id of an engine order."""
        seq = o if isinstance(o, int) else o.seq
        return f"{_ORDER_ID_BASE + seq:024x}"

    def _seq(self, order_id: str) -> int | None:
        try:
            seq = int(order_id, 16) - _ORDER_ID_BASE
        except ValueError:
            return None
        return seq if seq > 0 else None

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub = [
            ("GET", "/api/v1/timestamp", self.timestamp), ("GET", "/api/v3/currencies", self.currencies),
            ("GET", "/api/v2/symbols", self.symbols), ("GET", "/api/v1/market/allTickers", self.all_tickers),
            ("GET", "/api/v1/market/stats", self.stats), ("GET", "/api/v1/market/candles", self.candles),
            ("GET", "/api/v1/market/orderbook/level2_20", self.book),
            ("GET", "/api/v1/market/orderbook/level2_100", self.book),
        ]
        priv = [
            ("GET", "/api/ua/v1/account/mode", self.account_mode),
            ("GET", "/api/v1/hf/accounts/opened", self.hf_opened),
            ("GET", "/api/v3/margin/symbols", self.margin_symbols),
            ("GET", "/api/v1/isolated/symbols", self.isolated_symbols),
            ("GET", "/api/v3/market/orderbook/level2", self.book),
            ("GET", "/api/v1/accounts", self.accounts),
            ("POST", "/api/v1/hf/orders", self.place),
            ("GET", "/api/v1/hf/orders/active", self.active),
            ("GET", "/api/v1/hf/orders/done", self.done),
            ("GET", "/api/v1/hf/fills", self.fills),
            ("GET", "/api/v1/hf/orders/client-order/{clientOid}", self.get_order),
            ("DELETE", "/api/v1/hf/orders/client-order/{clientOid}", self.cancel),
            ("GET", "/api/v1/hf/orders/{orderId}", self.get_order),
            ("DELETE", "/api/v1/hf/orders/{orderId}", self.cancel),
        ]
        return ([(m, p, self._wrap(fn)) for m, p, fn in pub]
                + [(m, p, self._wrap(fn, signed=True)) for m, p, fn in priv])

    def _wrap(self, fn: Any, *, signed: bool = False) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                body = await request.text() if request.body_exists else ""
                key = self._authenticate(request, body, rec) if signed else None
                p: dict[str, Any] = dict(request.rel_url.query)
                p.update(request.match_info)
                if body:
                    try:
                        data = json.loads(body)
                    except ValueError:
                        raise KucoinError("400100", "Invalid JSON", status=400) from None
                    if not isinstance(data, dict):
                        raise KucoinError("400100", "Invalid JSON", status=400)
                    p.update(data)
                with self.engine.lock:
                    result = fn(p, key, request)
            except KucoinError as e:
                rec.error = e.code
                return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
            return web.json_response({"code": OK, "data": result})
        return handler

    def _authenticate(self, request: web.Request, body: str, rec: RequestRecord) -> str:
        h = request.headers
        if not all(h.get(k) for k in ("KC-API-KEY", "KC-API-SIGN", "KC-API-TIMESTAMP", "KC-API-PASSPHRASE")):
            raise KucoinError("400001", "Please check the header of your request for KC-API-KEY, KC-API-SIGN, "
                              "KC-API-TIMESTAMP, KC-API-PASSPHRASE", status=401)
        try:
            ts = int(h["KC-API-TIMESTAMP"])
        except ValueError:
            raise KucoinError("400002", "Invalid KC-API-TIMESTAMP", status=401) from None
        if abs(self.engine.now_ms() - ts) > TIMESTAMP_WINDOW_MS:
            raise KucoinError("400002", "KC-API-TIMESTAMP Invalid -- Time differs from server time by more "
                              "than 5 seconds", status=401)
        key = h["KC-API-KEY"]
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise KucoinError("400003", "KC-API-KEY not exists", status=401)
        rec.api_key = key
        secret = acct.secret.encode()
        if h.get("KC-API-KEY-VERSION") in ("2", "3"):
            passphrase = base64.b64encode(hmac.new(secret, acct.password.encode(), hashlib.sha256).digest()).decode()
        else:  # version 1 keys sent the passphrase as is
            passphrase = acct.password
        if not hmac.compare_digest(h["KC-API-PASSPHRASE"], passphrase):
            raise KucoinError("400004", "Invalid KC-API-PASSPHRASE", status=401)
        prehash = h["KC-API-TIMESTAMP"] + request.method + request.raw_path + body
        expected = base64.b64encode(hmac.new(secret, prehash.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, h["KC-API-SIGN"]):
            raise KucoinError("400005", "Signature error -- Please check your signature", status=401)
        return key

    # ------------------------------------------------------------------ rate limits
    def _route_key(self, request: web.Request) -> tuple[str, str] | None:
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else request.path
        k = (request.method, canonical)
        return k if k in WEIGHTS else None

    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        k = self._route_key(request)
        if k is None:
            return None
        pool, weight = WEIGHTS[k]
        who = request.headers.get("KC-API-KEY") if pool != "public" else None
        who = who or (request.remote or "?")
        quota = max(1, int(POOLS[pool] * self.pool_scale))
        now = time.monotonic()
        with self._lock:
            state = self._pools.setdefault((pool, who), [now, 0.0])
            if now - state[0] >= POOL_WINDOW_S:
                state[0], state[1] = now, 0.0
            reset_ms = int(math.ceil((state[0] + POOL_WINDOW_S - now) * 1000))
            request[LIMIT_STATE] = (quota, max(0, quota - int(state[1])), reset_ms)
            if state[1] + weight > quota:
                rec.error = "429000"
                return web.json_response(TOO_MANY, status=429)
            state[1] += weight
            rec.weight, rec.used_weight = weight, int(state[1])
            request[LIMIT_STATE] = (quota, max(0, quota - int(state[1])), reset_ms)
        return None

    def decorate(self, request: web.Request, response: web.StreamResponse, rec: RequestRecord) -> None:
        limit = request.get(LIMIT_STATE)
        if limit is not None:
            response.headers["gw-ratelimit-limit"] = str(limit[0])
            response.headers["gw-ratelimit-remaining"] = str(limit[1])
            response.headers["gw-ratelimit-reset"] = str(limit[2])

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is not None:
            return super().fault_response(fault, rec)
        if fault.status == 429:
            return web.json_response(TOO_MANY, status=429, headers=fault.headers)
        return web.Response(status=fault.status, text=default_error_page(fault.status), headers=fault.headers,
                            content_type="text/html")

    # ------------------------------------------------------------------ helpers
    def _instrument(self, p: dict[str, Any], *, required: bool = True) -> Instrument | None:
        sym = p.get("symbol")
        if not sym:
            if required:
                raise KucoinError("400100", "symbol can not be empty", status=400)
            return None
        ins = self.engine.by_venue_id.get(str(sym))
        if ins is None:
            raise KucoinError("400100", "Unsupported trading pair.", status=400)
        return ins

    def order_json(self, o: Order) -> dict[str, Any]:
        """An HF order as ``GET /api/v1/hf/orders/{orderId}`` returns it."""
        ins = self.engine.instruments[o.symbol]
        cancelled = o.status in (CANCELED, EXPIRED)
        cancelled_size = o.remaining if cancelled else ZERO
        return {
            "id": self.order_id(o), "clientOid": o.client_order_id or "", "symbol": ins.venue_id, "opType": "DEAL",
            "type": o.type.lower(), "side": o.side.lower(), "price": s(o.price),
            "size": s(o.qty) if o.quote_qty is None else "0", "funds": s(o.quote_qty),
            "dealSize": s(o.filled), "dealFunds": s(o.cum_quote), "remainSize": s(ZERO if not o.is_open else o.remaining),
            "remainFunds": "0", "cancelledSize": s(cancelled_size), "cancelledFunds": "0",
            "fee": s(o.fee), "feeCurrency": ins.quote, "stp": o.extra.get("stp", ""),
            "timeInForce": o.time_in_force, "postOnly": bool(o.extra.get("postOnly")), "hidden": False,
            "iceberg": False, "visibleSize": "0", "cancelAfter": 0, "channel": "API",
            "remark": o.extra.get("remark", ""), "tags": o.extra.get("tags", ""), "cancelExist": cancelled,
            "tradeType": "TRADE", "inOrderBook": o.is_open and o.type == "LIMIT", "active": o.is_open,
            "tax": "0", "createdAt": o.created_ms, "lastUpdatedAt": o.updated_ms,
        }

    def fill_json(self, f: Fill) -> dict[str, Any]:
        """An HF fill as ``GET /api/v1/hf/fills`` returns it (``items`` entry)."""
        ins = self.engine.instruments[f.symbol]
        o = self.engine.orders[f.order_seq]
        return {
            "id": f.id - 11_000_000_000_000_000, "orderId": self.order_id(f.order_seq),
            "counterOrderId": self.order_id(_ORDER_ID_BASE // 2 + f.id % 1_000_000), "tradeId": f.id,
            "symbol": ins.venue_id, "side": f.side.lower(), "liquidity": "maker" if f.is_maker else "taker",
            "type": o.type.lower(), "forceTaker": False, "price": s(f.price), "size": s(f.qty),
            "funds": s(f.quote_qty), "fee": s(f.fee), "feeRate": s(self.engine.fee_rate), "feeCurrency": ins.quote,
            "stop": "", "tradeType": "TRADE", "taxRate": "0", "tax": "0", "createdAt": f.time_ms,
        }

    def _find(self, key: str, p: dict[str, Any], ins: Instrument) -> Order | None:
        if p.get("orderId"):
            seq = self._seq(str(p["orderId"]))
            o = self.engine.orders.get(seq) if seq is not None else None
        else:
            o = self.engine.find_by_client_id(key, str(p.get("clientOid")))
        if o is None or o.account != key or o.symbol != ins.symbol:
            return None
        return o

    # ------------------------------------------------------------------ public endpoints
    def timestamp(self, p: dict[str, Any], key: None, request: web.Request) -> Any:
        return self.engine.now_ms()

    def currencies(self, p: dict[str, Any], key: None, request: web.Request) -> Any:
        codes = sorted({c for ins in self.engine.instruments.values() for c in (ins.base, ins.quote)})
        return [{
            "currency": c, "name": c, "fullName": _NAMES.get(c, c), "precision": 8, "confirms": None,
            "contractAddress": None, "isMarginEnabled": True, "isDebitEnabled": True,
            "chains": [{"chainName": c, "withdrawalMinSize": "0.001", "depositMinSize": "0.0001",
                        "withdrawFeeRate": "0", "withdrawalMinFee": "0.0005", "isWithdrawEnabled": True,
                        "isDepositEnabled": True, "confirms": 3, "preConfirms": 1, "contractAddress": "",
                        "withdrawPrecision": 8, "maxWithdraw": None, "maxDeposit": None, "needTag": False,
                        "chainId": c.lower()}],
        } for c in codes]

    def symbols(self, p: dict[str, Any], key: None, request: web.Request) -> Any:
        return [{
            "symbol": ins.venue_id, "name": ins.venue_id, "baseCurrency": ins.base, "quoteCurrency": ins.quote,
            "feeCurrency": ins.quote, "market": ins.extra.get("market", "USDS"), "baseMinSize": s(ins.min_qty),
            "quoteMinSize": s(ins.min_notional), "baseMaxSize": s(ins.max_qty),
            "quoteMaxSize": ins.extra.get("quoteMaxSize", "99999999"), "baseIncrement": s(ins.step_size),
            "quoteIncrement": ins.extra.get("quoteIncrement", "0.000001"), "priceIncrement": s(ins.tick_size),
            "priceLimitRate": "0.1", "minFunds": s(ins.min_notional), "isMarginEnabled": False,
            "enableTrading": True, "feeCategory": 1, "makerFeeCoefficient": "1.00", "takerFeeCoefficient": "1.00",
            "st": False, "callauctionIsEnabled": False, "callauctionPriceFloor": None,
            "callauctionPriceCeiling": None, "callauctionFirstStageStartTime": None,
            "callauctionSecondStageStartTime": None, "callauctionThirdStageStartTime": None, "tradingStartTime": None,
        } for ins in self.engine.instruments.values()]

    def _stats(self, ins: Instrument) -> dict[str, Any]:
        m, t = ins.mark, ins.tick_size
        return {"symbol": ins.venue_id, "symbolName": ins.venue_id, "buy": s(m - t), "bestBidSize": "1",
                "sell": s(m + t), "bestAskSize": "1", "changeRate": "0", "changePrice": "0", "high": s(m),
                "low": s(m), "vol": "0", "volValue": "0", "last": s(m), "averagePrice": s(m),
                "takerFeeRate": s(self.engine.fee_rate), "makerFeeRate": s(self.engine.fee_rate),
                "takerCoefficient": "1", "makerCoefficient": "1"}

    def all_tickers(self, p: dict[str, Any], key: None, request: web.Request) -> Any:
        return {"time": self.engine.now_ms(), "ticker": [self._stats(i) for i in self.engine.instruments.values()]}

    def stats(self, p: dict[str, Any], key: None, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        out = self._stats(ins)
        for k in ("symbolName", "bestBidSize", "bestAskSize"):
            out.pop(k)
        out["time"] = self.engine.now_ms()
        return out

    def candles(self, p: dict[str, Any], key: None, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        kind = p.get("type")
        if kind not in _KLINES:
            raise KucoinError("400100", "type invalid", status=400)
        try:
            start = int(p.get("startAt") or 0) * 1000
            end = int(p.get("endAt") or 0) * 1000
        except ValueError:
            raise KucoinError("400100", "startAt invalid", status=400) from None
        rows = self.engine.aggregated_candles(ins.symbol, _KLINES[kind]) or []
        rows = [c for c in rows if c.open_ms >= start and (not end or c.open_ms < end)]
        rows = rows[-1500:]  # at most 1500 bars per request, the most recent of the range
        return [[str(c.open_ms // 1000), s(c.open), s(c.close), s(c.high), s(c.low), s(c.volume),
                 s(c.volume * c.close)] for c in reversed(rows)]

    def book(self, p: dict[str, Any], key: str | None, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        levels = 20 if request.path.endswith("_20") else 100 if request.path.endswith("_100") else 50
        m, t = ins.mark, ins.tick_size
        return {"time": self.engine.now_ms(), "sequence": str(self.engine.now_ms()),
                "bids": [[s(m - t * (i + 1)), "1"] for i in range(levels)],
                "asks": [[s(m + t * (i + 1)), "1"] for i in range(levels)]}

    # ------------------------------------------------------------------ private endpoints
    def account_mode(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        return {"selfAccountMode": "CLASSIC", "accountMode": "CLASSIC"}

    def hf_opened(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        return True

    def margin_symbols(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        return {"timestamp": self.engine.now_ms(), "items": []}

    def isolated_symbols(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        return []

    def accounts(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        kind = p.get("type") or "trade"
        if kind not in ("main", "trade", "trade_hf", "margin"):
            raise KucoinError("400100", "type invalid", status=400)
        if kind not in ("trade", "trade_hf"):
            return []  # everything sits in the (HF) trading account
        acct = self.engine.accounts[key]
        out = []
        for ccy, (free, locked) in sorted(acct.balances.items()):
            if p.get("currency") and ccy != p["currency"]:
                continue
            out.append({"id": hashlib.sha256(f"{key}:{ccy}".encode()).hexdigest()[:24], "currency": ccy,
                        "type": kind, "balance": s(free + locked), "available": s(free), "holds": s(locked)})
        return out

    def place(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                raise KucoinError("400100", f"{name} can not be empty", status=400)
        ins = self._instrument(p)
        assert ins is not None
        side, kind = str(p["side"]).lower(), str(p["type"]).lower()
        if side not in ("buy", "sell"):
            raise KucoinError("400100", "side invalid", status=400)
        if kind not in ("limit", "market"):
            raise KucoinError("400100", "type invalid", status=400)
        cid = str(p.get("clientOid") or "")
        if cid and not _CLIENT_OID_RE.match(cid):
            raise KucoinError("400100", "clientOid invalid", status=400)
        try:
            size = Decimal(str(p["size"])) if p.get("size") not in (None, "") else None
            price = Decimal(str(p["price"])) if p.get("price") not in (None, "") else None
            funds = Decimal(str(p["funds"])) if p.get("funds") not in (None, "") else None
        except Exception:
            raise KucoinError("400100", "Parameter error", status=400) from None
        tif = str(p.get("timeInForce") or "GTC").upper()
        if tif not in ("GTC", "GTT", "IOC", "FOK"):
            raise KucoinError("400100", "timeInForce invalid", status=400)
        post_only = p.get("postOnly") in (True, "true")
        if kind == "limit":
            if price is None or size is None:
                raise KucoinError("400100", "price and size are required for limit orders", status=400)
            if price <= 0 or not is_multiple(price, ins.tick_size):
                raise KucoinError("400100", "Price increment invalid.")
        else:
            if (size is None) == (funds is None):
                raise KucoinError("400100", "size or funds is required for market orders", status=400)
            price = None
        if size is not None:
            if size < ins.min_qty:
                raise KucoinError("400100", "Order size below the minimum requirement.")
            if not is_multiple(size, ins.step_size):
                raise KucoinError("400100", "Order size increment invalid.")
        if funds is not None and funds < ins.min_notional:
            raise KucoinError("400100", "Order funds below the minimum requirement.")
        notional = funds if funds is not None else size * (price if price is not None else ins.mark)  # type: ignore[operator]
        if notional < ins.min_notional:
            raise KucoinError("400100", "Order funds below the minimum requirement.")
        try:
            # no duplicate check: KuCoin does not refuse a clientOid it already holds
            o = self.engine.place(key, ins.symbol, side.upper(), kind.upper(), qty=size, price=price,
                                  quote_qty=funds, client_order_id=None,
                                  time_in_force="GTC" if tif == "GTT" else tif, post_only=post_only,
                                  extra={"postOnly": post_only, "stp": p.get("stp", ""),
                                         "remark": p.get("remark", ""), "tags": p.get("tags", "")},
                                  reject_post_only=False)
        except EngineError as e:
            if e.kind == "insufficient_funds":
                raise KucoinError("200004", "Balance insufficient!") from None
            raise KucoinError("400100", "Parameter error", status=400) from None
        o.client_order_id = cid or None
        return {"orderId": self.order_id(o), "clientOid": cid}

    def get_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        o = self._find(key, p, ins)
        if o is None:
            raise KucoinError("400100", "order not exist.")
        return self.order_json(o)

    def cancel(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        o = self._find(key, p, ins)
        if o is None or not o.is_open:
            raise KucoinError("400100", "order_not_exist_or_not_allow_to_cancel")
        self.engine.cancel(o)
        return {"clientOid": o.client_order_id or ""} if "clientOid" in request.match_info else {
            "orderId": self.order_id(o)}

    def active(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        orders = sorted(self.engine.open_orders(key, ins.symbol), key=lambda o: o.seq, reverse=True)
        return [self.order_json(o) for o in orders]

    def _window(self, p: dict[str, Any], default_limit: int, max_limit: int) -> tuple[int, int | None, int | None]:
        try:
            limit = min(int(p.get("limit") or p.get("pageSize") or default_limit), max_limit)
            start = int(p["startAt"]) if p.get("startAt") else None
            end = int(p["endAt"]) if p.get("endAt") else None
        except ValueError:
            raise KucoinError("400100", "Parameter error", status=400) from None
        return limit, start, end

    def done(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        limit, start, end = self._window(p, 20, 100)
        rows = sorted((o for o in self.engine.account_orders(key, ins.symbol) if not o.is_open),
                      key=lambda o: o.seq, reverse=True)
        rows = [o for o in rows if (start is None or o.updated_ms >= start) and (end is None or o.updated_ms <= end)
                and (not p.get("side") or o.side.lower() == p["side"])][:limit]
        return {"lastId": rows[-1].seq if rows else 0, "items": [self.order_json(o) for o in rows]}

    def fills(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        fault: Fault | None = request.get(TRADES_FAULT)
        limit, start, end = self._window(p, 20, 100)
        if fault is not None and fault.mode == "overlap":
            start = end = None  # a lagging read: the time window is ignored
        rows = sorted(self.engine.account_fills(key, ins.symbol), key=lambda f: f.id, reverse=True)
        if p.get("orderId"):
            seq = self._seq(str(p["orderId"]))
            rows = [f for f in rows if f.order_seq == seq]
        rows = [f for f in rows if (start is None or f.time_ms >= start) and (end is None or f.time_ms <= end)][:limit]
        items = [self.fill_json(f) for f in rows]
        if fault is not None and fault.mode == "duplicate":
            items = [x for f in items for x in (f, dict(f))]
        elif fault is not None and fault.mode == "reorder":
            items.reverse()
        return {"items": items, "lastId": rows[-1].id if rows else 0}


__all__ = ["KucoinDialect", "POOLS", "WEIGHTS", "default_instruments"]
