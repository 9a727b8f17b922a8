"""Bitfinex API v2 spot REST dialect (``/v2/...`` public, ``/v2/auth/...`` authenticated).

Public (GET): ``platform/status``, ``conf/{config}`` (market and currency lists, comma-joined keys
answered in order), ``ticker/{symbol}``, ``tickers``, ``book/{symbol}/{precision}`` (synthetic, from
the mark), ``candles/trade:{tf}:{symbol}/hist|last`` (the engine's candles), ``trades/{symbol}/hist``.

Authenticated (POST, JSON body): ``auth/r/wallets``, ``auth/w/order/submit``, ``auth/w/order/cancel``,
``auth/w/order/cancel/multi``, ``auth/r/orders[/{symbol}]`` (ACTIVE orders only, as on Bitfinex),
``auth/r/orders[/{symbol}]/hist`` (closed and canceled), ``auth/r/trades[/{symbol}]/hist``,
``auth/r/order/{symbol}:{id}/trades``.

Authentication as Bitfinex does it: headers ``bfx-apikey``, ``bfx-nonce`` and ``bfx-signature`` =
hex HMAC-SHA384(secret, ``"/api" + path + nonce + body``); the nonce must exceed the last one seen
for the key (no time window). Errors are HTTP 500 with ``["error", CODE, "text"]`` (10100 auth,
10114 nonce, 10020 parameters, 10001 everything else). Rate limits are per endpoint and IP: 90
requests per minute for most endpoints (240 for ``book``, 30 for ``platform/status``); going over
gives HTTP 429 ``{"error": "ERR_RATE_LIMIT"}`` and blocks the endpoint for ``ban_s`` seconds.

Wire types follow Bitfinex: arrays, JSON numbers for amounts and prices, signed amounts (negative:
sell), market ids ``tBTCUST`` (USDT is ``UST`` on Bitfinex). The client order id ``cid`` is an
integer (numeric strings are accepted too, as ccxt forwards whatever it is given); duplicates are
not refused (Bitfinex documents no uniqueness check; see ``client_ids.py`` ``Dedup.NONE``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import (
    EXPIRED, FILLED, NEW, PARTIALLY_FILLED, D, Engine, EngineError, Fill, Instrument, Order, ZERO, dec,
)
from .faults import Fault, RequestRecord

V2 = "/v2"

# Unified code <-> Bitfinex currency id (Bitfinex calls USDT "UST"; ccxt maps it back through
# its commonCurrencies table).
CODE_TO_ID = {"USDT": "UST"}
ID_TO_CODE = {v: k for k, v in CODE_TO_ID.items()}

#: Bitfinex error codes (docs.bitfinex.com/docs/abbreviations-glossary, "Error codes").
ERR_UNK, ERR_GENERIC, ERR_PARAMS, ERR_AUTH_FAIL, ERR_NONCE = 10000, 10001, 10020, 10100, 10114

RATE_LIMIT_BODY = {"error": "ERR_RATE_LIMIT"}

# Requests per minute per endpoint (docs.bitfinex.com/reference: each endpoint's "Ratelimit").
DEFAULT_LIMIT = 90
ENDPOINT_LIMITS = {"book": 240, "platform/status": 30}

# Bitfinex v2 order and trade history defaults (docs.bitfinex.com/reference/rest-auth-orders-history,
# .../rest-auth-trades): newest first, 25 rows unless ``limit`` (max 2500) says otherwise.
DEFAULT_PAGE, MAX_PAGE = 25, 2500
CANDLE_MAX = 10000

_TIMEFRAMES = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
               "3h": 10_800_000, "6h": 21_600_000, "12h": 43_200_000, "1D": 86_400_000, "1W": 604_800_000,
               "7D": 604_800_000, "14D": 1_209_600_000}

FLAG_POST_ONLY = 4096
_EXCHANGE_TYPES = {"EXCHANGE LIMIT": ("LIMIT", "GTC"), "EXCHANGE MARKET": ("MARKET", "GTC"),
                   "EXCHANGE IOC": ("LIMIT", "IOC"), "EXCHANGE FOK": ("LIMIT", "FOK")}


def _pair(symbol: str, pair: str, min_size: str, max_size: str, mark: str) -> Instrument:
    base, quote = symbol.split("/")
    # Bitfinex prices have 5 significant digits and amounts 8 decimals; ccxt reports exactly that
    # (precision price 5 in SIGNIFICANT_DIGITS mode, amount 8), which Lyra reads as tick 1e-5 and
    # step 1e-8: the engine's tick/step say the same, the 5-digit rule is checked on submit.
    return Instrument(symbol, CODE_TO_ID.get(base, base), CODE_TO_ID.get(quote, quote), "t" + pair,
                      tick_size="0.00001", step_size="0.00000001", min_qty=min_size, max_qty=max_size,
                      min_notional="0", mark=mark, min_price="0.00000001", max_price="100000000",
                      extra={"pair": pair, "min_size": min_size, "max_size": max_size})


def default_instruments() -> list[Instrument]:
    """BTC/USDT (``tBTCUST``), ETH/USDT (``tETHUST``), ETH/BTC (``tETHBTC``) with Bitfinex-like sizes."""
    return [
        _pair("BTC/USDT", "BTCUST", "0.00004", "2000.0", "60000"),
        _pair("ETH/USDT", "ETHUST", "0.0008", "10000.0", "3000"),
        _pair("ETH/BTC", "ETHBTC", "0.0008", "10000.0", "0.05"),
    ]


def sig_step(price: Decimal) -> Decimal:
    """The price step at ``price`` under Bitfinex's 5 significant digits (60000 -> 1, 0.05 -> 0.000001)."""
    if price <= 0:
        return D("0.00000001")
    return D(1).scaleb(price.adjusted() - 4)


def num(x: Decimal | None) -> float | int:
    """A JSON number the way Bitfinex writes one (``60000``, ``0.01``, ``-0.5``)."""
    if x is None:
        return 0
    if x == x.to_integral_value():
        return int(x)
    return float(x)


class BitfinexError(Exception):
    """An error answered as ``status`` with ``["error", code, text]``."""

    def __init__(self, code: int, text: str, status: int = 500) -> None:
        super().__init__(text)
        self.code, self.text, self.status = code, text, status


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


class BitfinexDialect(Dialect):
    """Bitfinex API v2 spot (``exchange`` wallet) on top of an :class:`Engine`.

    Parameters: ``fee_rate`` (every fill; fees are taken in the currency received, as Bitfinex
    does), ``rate_limit_per_min`` (requests per ``window_s`` for every endpoint, overriding the
    documented per-endpoint limits when given), ``window_s`` (length of the fixed counting window,
    60 s), ``ban_s`` (how long an endpoint stays blocked after a 429).
    """

    name = "bitfinex"
    ccxt_id = "bitfinex"
    # ccxt bitfinex has no switch for fetchCurrencies (load_markets calls it): the currency conf
    # lists are served. Nothing else is needed for spot.
    ccxt_options: dict[str, Any] = {}
    url_keys = ("api",)  # v1, public (api-pub) and private (api) hosts
    my_trades_path = "/v2/auth/r/trades*hist"
    create_order_path = "/v2/auth/w/order/submit"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", rate_limit_per_min: int | None = None,
                 window_s: float = 60.0, ban_s: float = 60.0, instruments: list[Instrument] | None = None) -> None:
        engine = Engine("bitfinex", instruments or default_instruments(), fee_rate=dec(fee_rate),
                        fee_in="received", first_order_id=170_000_000_001, first_trade_id=1_600_000_001)
        super().__init__(emulator, engine)
        self.rate_limit_per_min = rate_limit_per_min
        self.window_s = window_s
        self.ban_s = ban_s
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # endpoint -> (window index, requests)
        self._blocked: dict[str, float] = {}  # endpoint -> blocked until (time.time())
        self._nonces: dict[str, int] = {}

    # ------------------------------------------------------------------ configuration
    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        from appliance.venues.ccxt.budget import BucketSpec, BudgetSpec

        # 90 requests per minute per endpoint means a poll cycle every few seconds at best
        return ({"rate_limit_per_min": 100_000},
                BudgetSpec("emulated-bitfinex", (BucketSpec.from_window("requests", 6000, 60),)))

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt charges 2.7 cost units per call of a 90/min endpoint at its 250 ms rateLimit
        limit = self.rate_limit_per_min or DEFAULT_LIMIT
        return {"rateLimit": headroom * self.window_s * 1000 / (2.7 * limit)}

    def configure(self, *, rate_limit_per_min: int | None = None, window_s: float | None = None,
                  ban_s: float | None = None) -> None:
        """Change the limits and forget the counters and blocks."""
        with self._lock:
            if rate_limit_per_min is not None:
                self.rate_limit_per_min = rate_limit_per_min
            if window_s is not None:
                self.window_s = window_s
            if ban_s is not None:
                self.ban_s = ban_s
            self._counts.clear()
            self._blocked.clear()

    def asset_id(self, code: str) -> str:
        return CODE_TO_ID.get(code, code)

    def asset_code(self, asset_id: str) -> str:
        return ID_TO_CODE.get(asset_id, asset_id)

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub = [
            ("/platform/status", self.platform_status), ("/conf/{config}", self.conf),
            ("/tickers", self.tickers), ("/ticker/{symbol}", self.ticker),
            ("/book/{symbol}/{precision}", self.book), ("/candles/{key}/{section}", self.candles),
            ("/trades/{symbol}/hist", self.public_trades),
        ]
        # fixed paths before their {symbol} siblings: aiohttp matches in registration order
        priv = [
            ("/auth/r/wallets", self.wallets), ("/auth/w/order/submit", self.submit),
            ("/auth/w/order/cancel", self.cancel), ("/auth/w/order/cancel/multi", self.cancel_multi),
            ("/auth/r/orders/hist", self.orders_hist), ("/auth/r/orders", self.orders),
            ("/auth/r/orders/{symbol}/hist", self.orders_hist), ("/auth/r/orders/{symbol}", self.orders),
            ("/auth/r/trades/hist", self.trades_hist), ("/auth/r/trades/{symbol}/hist", self.trades_hist),
            ("/auth/r/order/{symbol}:{id}/trades", self.order_trades),
        ]
        out: list[tuple[str, str, Any]] = [("GET", V2 + path, self._wrap_public(fn)) for path, fn in pub]
        out += [("POST", V2 + path, self._wrap_private(fn)) for path, fn in priv]
        return out

    @staticmethod
    def _error(e: BitfinexError) -> web.Response:
        return web.json_response(["error", e.code, e.text], status=e.status)

    def _wrap_public(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                with self.engine.lock:
                    return web.json_response(fn(dict(request.query), request))
            except BitfinexError as e:
                rec.error = e.code
                return self._error(e)
        return handler

    def _wrap_private(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                p, key = await self._authenticate(request, rec)
                with self.engine.lock:
                    return web.json_response(fn(p, key, request))
            except BitfinexError as e:
                rec.error = e.code
                return self._error(e)
        return handler

    async def _authenticate(self, request: web.Request, rec: RequestRecord) -> tuple[dict[str, Any], str]:
        raw = await request.text()
        key = request.headers.get("bfx-apikey", "")
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise BitfinexError(ERR_AUTH_FAIL, "apikey: invalid")
        rec.api_key = key
        nonce = request.headers.get("bfx-nonce", "")
        given = request.headers.get("bfx-signature", "")
        prehash = "/api" + request.path + nonce + raw
        expected = hmac.new(acct.secret.encode(), prehash.encode(), hashlib.sha384).hexdigest()
        if not hmac.compare_digest(expected, given.lower()):
            raise BitfinexError(ERR_AUTH_FAIL, "apikey: digest invalid")
        if not nonce.isdigit() or len(nonce) > 16:  # Bitfinex nonces stay below 2**53
            raise BitfinexError(ERR_NONCE, "nonce: invalid")
        with self._lock:
            if int(nonce) <= self._nonces.get(key, 0):
                raise BitfinexError(ERR_NONCE, "nonce: small")
            self._nonces[key] = int(nonce)
        try:
            p = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise BitfinexError(ERR_PARAMS, "body: invalid") from None
        if not isinstance(p, dict):
            raise BitfinexError(ERR_PARAMS, "body: invalid")
        return p, key

    # ------------------------------------------------------------------ rate limits
    @staticmethod
    def _endpoint(request: web.Request) -> str:
        """The documented endpoint a request counts against (route template without ``/v2/``)."""
        info = request.match_info.route.resource
        canonical = info.canonical if info is not None else request.path
        endpoint = canonical[len(V2) + 1:] if canonical.startswith(V2 + "/") else canonical
        return endpoint.split("/{", 1)[0] if endpoint.startswith(("book", "platform")) else endpoint

    def _limit_of(self, endpoint: str) -> int:
        if self.rate_limit_per_min is not None:
            return self.rate_limit_per_min
        return ENDPOINT_LIMITS.get(endpoint, DEFAULT_LIMIT)

    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        endpoint = self._endpoint(request)
        now = time.time()
        with self._lock:
            if self._blocked.get(endpoint, 0.0) > now:
                rec.error = "ERR_RATE_LIMIT"
                return web.json_response(RATE_LIMIT_BODY, status=429)
            idx = int(now // self.window_s)
            window, used = self._counts.get(endpoint, (idx, 0))
            if window != idx:
                used = 0
            if used + 1 > self._limit_of(endpoint):
                self._blocked[endpoint] = now + self.ban_s
                self._counts[endpoint] = (idx, used)
                rec.error = "ERR_RATE_LIMIT"
                return web.json_response(RATE_LIMIT_BODY, status=429)
            self._counts[endpoint] = (idx, used + 1)
            rec.used_weight = used + 1
        return None

    def lift_block(self) -> None:
        """Control: end every endpoint block at once (tests)."""
        with self._lock:
            self._blocked.clear()
            self._counts.clear()

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            return web.json_response(RATE_LIMIT_BODY, status=429, headers=fault.headers)
        if fault.body is None and fault.status == 500:
            return web.json_response(["error", ERR_UNK, "unknown error"], status=500, headers=fault.headers)
        if fault.body is None:  # 502/503/504/520 come from the CDN in front, as HTML
            return web.Response(status=fault.status, text=default_error_page(fault.status), headers=fault.headers,
                                content_type="text/html")
        return super().fault_response(fault, rec)

    # ------------------------------------------------------------------ wire formats
    def _instrument(self, symbol: str | None) -> Instrument:
        ins = self.engine.by_venue_id.get(symbol or "")
        if ins is None:
            raise BitfinexError(ERR_PARAMS, "symbol: invalid")
        return ins

    @staticmethod
    def order_type(o: Order) -> str:
        if o.type == "MARKET":
            return "EXCHANGE MARKET"
        return {"IOC": "EXCHANGE IOC", "FOK": "EXCHANGE FOK"}.get(o.time_in_force, "EXCHANGE LIMIT")

    def cid_of(self, o: Order) -> int:
        """The order's ``cid``: the client's, else its creation time (what Bitfinex assigns)."""
        return int(o.client_order_id) if o.client_order_id is not None else o.created_ms

    @staticmethod
    def _signed(o: Order, x: Decimal) -> Decimal:
        return x if o.side == "BUY" else -x

    def status_text(self, o: Order) -> str:
        """Bitfinex's ORDER_STATUS: ``ACTIVE``, ``PARTIALLY FILLED @ avg(filled)``, ``EXECUTED @ ...``,
        ``CANCELED [was: PARTIALLY FILLED @ ...]``, ``POSTONLY CANCELED``, ``IOC CANCELED``."""
        fill = f"@ {num(o.avg_price)}({num(self._signed(o, o.filled))})"
        if o.status == NEW:
            return "ACTIVE"
        if o.status == PARTIALLY_FILLED:
            return f"PARTIALLY FILLED {fill}"
        if o.status == FILLED:
            return f"EXECUTED {fill}"
        if o.reason == "Post only order":
            return "POSTONLY CANCELED"
        if o.status == EXPIRED:
            word = "FILLORKILL CANCELED" if o.time_in_force == "FOK" else "IOC CANCELED"
            return word + (f" was: PARTIALLY FILLED {fill}" if o.filled > 0 else "")
        return "CANCELED" + (f" was: PARTIALLY FILLED {fill}" if o.filled > 0 else "")

    def order_array(self, o: Order, *, status: str | None = None) -> list[Any]:
        """The 32-field order array of ``auth/r/orders`` and the order notifications."""
        ins = self.engine.instruments[o.symbol]
        price = o.price if o.price is not None else (o.avg_price if o.filled > 0 else ins.mark)
        remaining = o.remaining  # a canceled order keeps its unfilled amount, an executed one has 0
        return [
            o.seq, None, self.cid_of(o), ins.venue_id, o.created_ms, o.updated_ms,
            num(self._signed(o, remaining)), num(self._signed(o, o.qty)), self.order_type(o), None, None, None,
            o.extra.get("flags", 0), status or self.status_text(o), None, None, num(price), num(o.avg_price), 0, 0,
            None, None, None, 0, 0, None, None, None, "API>BFX", None, None, {},
        ]

    def trade_array(self, f: Fill) -> list[Any]:
        """``[ID, SYMBOL, MTS, ORDER_ID, EXEC_AMOUNT, EXEC_PRICE, ORDER_TYPE, ORDER_PRICE, MAKER, FEE,
        FEE_CURRENCY, CID]`` (fee negative, maker 1 / taker -1)."""
        o = self.engine.orders[f.order_seq]
        ins = self.engine.instruments[f.symbol]
        signed = f.qty if f.side == "BUY" else -f.qty
        return [f.id, ins.venue_id, f.time_ms, f.order_seq, num(signed), num(f.price), self.order_type(o),
                num(o.price if o.price is not None else f.price), 1 if f.is_maker else -1, num(-f.fee), f.fee_asset,
                self.cid_of(o)]

    def _notification(self, kind: str, orders: Any, text: str) -> list[Any]:
        return [self.engine.now_ms(), kind, None, None, orders, None, "SUCCESS", text]

    # ------------------------------------------------------------------ public
    def platform_status(self, p: dict[str, str], request: web.Request) -> Any:
        return [1]

    def conf(self, p: dict[str, str], request: web.Request) -> Any:
        pairs = list(self.engine.instruments.values())
        currencies = sorted({c for i in pairs for c in (i.base, i.quote)})
        labels = {"BTC": "Bitcoin", "ETH": "Ethereum", "UST": "Tether USDt", "USD": "US Dollar"}
        methods = {"BTC": "BITCOIN", "ETH": "ETHEREUM", "UST": "TETHERUSE"}
        answers: dict[str, Any] = {
            "pub:info:pair": [[i.extra["pair"], [None, None, None, i.extra["min_size"], i.extra["max_size"], None,
                                                 None, None, 0.2, 0.1, None, None]] for i in pairs],
            "pub:info:pair:futures": [],
            "pub:list:pair:exchange": [i.extra["pair"] for i in pairs],
            "pub:list:pair:securities": [],
            "pub:list:pair:margin": [],
            "pub:list:currency": currencies,
            "pub:map:currency:sym": [],
            "pub:map:currency:label": [[c, labels.get(c, c)] for c in currencies],
            "pub:map:currency:unit": [],
            "pub:map:currency:undl": [],
            "pub:map:currency:pool": [["UST", "ETH"]] if "UST" in currencies else [],
            "pub:map:currency:explorer": [],
            "pub:map:currency:tx:fee": [[c, [0, 0]] for c in currencies],
            "pub:map:tx:method": [[m, [c]] for c, m in methods.items() if c in currencies],
            "pub:info:tx:status": [[m, 1, 1] for c, m in methods.items() if c in currencies],
            "pub:list:currency:margin": [],
        }
        keys = request.match_info["config"].split(",")
        # an unknown key answers null in its slot, like a key Bitfinex no longer serves
        return [answers.get(k) for k in keys]

    def _ticker_row(self, ins: Instrument) -> list[Any]:
        m, step = ins.mark, sig_step(ins.mark)
        return [num(m - step), 1.0, num(m + step), 1.0, 0, 0, num(m), 0, num(m), num(m)]

    def ticker(self, p: dict[str, str], request: web.Request) -> Any:
        return self._ticker_row(self._instrument(request.match_info["symbol"]))

    def tickers(self, p: dict[str, str], request: web.Request) -> Any:
        wanted = p.get("symbols", "ALL")
        if wanted == "ALL":
            pairs = list(self.engine.instruments.values())
        else:
            pairs = [i for s in wanted.split(",") if (i := self.engine.by_venue_id.get(s)) is not None]
        return [[i.venue_id, *self._ticker_row(i)] for i in pairs]

    def book(self, p: dict[str, str], request: web.Request) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        precision = request.match_info["precision"]
        if precision not in ("P0", "P1", "P2", "P3", "P4", "R0"):
            raise BitfinexError(ERR_PARAMS, "prec: invalid")
        try:
            n = int(p.get("len", 25))
        except ValueError:
            raise BitfinexError(ERR_PARAMS, "len: invalid") from None
        if n not in (1, 25, 100):
            raise BitfinexError(ERR_PARAMS, "len: invalid")
        step = sig_step(ins.mark) * (10 ** (int(precision[1]) if precision[0] == "P" else 0))
        bids = [ins.mark - step * (i + 1) for i in range(n)]
        asks = [ins.mark + step * (i + 1) for i in range(n)]
        if precision == "R0":  # raw book: [ORDER_ID, PRICE, AMOUNT]
            return ([[9_000_000_000 + i, num(b), 1.0] for i, b in enumerate(bids)]
                    + [[9_100_000_000 + i, num(a), -1.0] for i, a in enumerate(asks)])
        return [[num(b), 1, 1.0] for b in bids] + [[num(a), 1, -1.0] for a in asks]

    def candles(self, p: dict[str, str], request: web.Request) -> Any:
        parts = request.match_info["key"].split(":")
        section = request.match_info["section"]
        if len(parts) != 3 or parts[0] != "trade" or section not in ("hist", "last"):
            raise BitfinexError(ERR_PARAMS, "key: invalid")
        tf, symbol = parts[1], parts[2]
        if tf not in _TIMEFRAMES:
            raise BitfinexError(ERR_PARAMS, "timeframe: invalid")
        ins = self._instrument(symbol)
        try:
            limit = int(p.get("limit", 100))
            start = int(p["start"]) if p.get("start") else None
            end = int(p["end"]) if p.get("end") else None
            sort = int(p.get("sort", -1))
        except ValueError:
            raise BitfinexError(ERR_PARAMS, "params: invalid") from None
        if not 0 < limit <= CANDLE_MAX:
            raise BitfinexError(ERR_PARAMS, "limit: invalid")
        rows = self.engine.aggregated_candles(ins.symbol, _TIMEFRAMES[tf]) or []
        if start is not None:
            rows = [c for c in rows if c.open_ms >= start]
        if end is not None:
            rows = [c for c in rows if c.open_ms <= end]
        # the window is taken from the newest end unless sort=1 asks for the oldest first
        rows = rows[:limit] if sort == 1 else list(reversed(rows))[:limit]
        out = [[c.open_ms, num(c.open), num(c.close), num(c.high), num(c.low), num(c.volume)] for c in rows]
        if section == "last":
            return out[0] if out else []
        return out

    def public_trades(self, p: dict[str, str], request: web.Request) -> Any:
        self._instrument(request.match_info["symbol"])
        return []  # no public tape: only this emulator's own account trades

    # ------------------------------------------------------------------ private
    def wallets(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        return [["exchange", a, num(r[0] + r[1]), 0, num(r[0]), None, None]
                for a, r in sorted(acct.balances.items())]

    @staticmethod
    def _decimal(v: Any, field: str) -> Decimal:
        try:
            x = Decimal(str(v))
        except (InvalidOperation, ValueError):
            raise BitfinexError(ERR_PARAMS, f"{field}: invalid") from None
        if not x.is_finite():
            raise BitfinexError(ERR_PARAMS, f"{field}: invalid")
        return x

    @staticmethod
    def _cid(v: Any) -> str | None:
        if v is None:
            return None
        s = str(v)
        if not s.isdigit() or int(s) >= 2 ** 45:  # an int45
            raise BitfinexError(ERR_PARAMS, "cid: invalid")
        return str(int(s))

    def submit(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p.get("symbol"))
        kind = str(p.get("type", ""))
        if kind not in _EXCHANGE_TYPES:
            # margin types (LIMIT, MARKET ...) and stops are not emulated: refused as parameters
            raise BitfinexError(ERR_PARAMS, "type: invalid")
        type_, tif = _EXCHANGE_TYPES[kind]
        amount = self._decimal(p.get("amount"), "amount")
        if amount == 0 or -amount.as_tuple().exponent > 8:
            raise BitfinexError(ERR_PARAMS, "amount: invalid")
        side, qty = ("BUY", amount) if amount > 0 else ("SELL", -amount)
        price: Decimal | None = None
        if type_ == "LIMIT":
            price = self._decimal(p.get("price"), "price")
            # more than 5 significant digits (or 8 decimals) is refused rather than rounded
            if price <= 0 or price % sig_step(price) != 0 or -price.as_tuple().exponent > 8:
                raise BitfinexError(ERR_PARAMS, "price: invalid")
        flags = int(p.get("flags", 0) or 0)
        post_only = bool(flags & FLAG_POST_ONLY)
        cid = self._cid(p.get("cid"))
        pair_label = f"{ins.base}{ins.quote}"
        if qty < ins.min_qty:
            raise BitfinexError(ERR_GENERIC, f"Invalid order: minimum size for {ins.base}/{ins.quote} is "
                                             f"{ins.extra['min_size']}")
        if qty > ins.max_qty:
            raise BitfinexError(ERR_GENERIC, f"Invalid order: maximum size for {ins.base}/{ins.quote} is "
                                             f"{ins.extra['max_size']}")
        try:
            o = self.engine.place(
                key, ins.symbol, side, type_, qty=qty, price=price, time_in_force=tif, post_only=post_only,
                extra={"flags": flags}, reject_post_only=False,
            )
        except EngineError as e:
            if e.kind == "insufficient_funds":
                ref = price if price is not None else ins.mark
                raise BitfinexError(ERR_GENERIC, f"Invalid order: not enough exchange balance for "
                                                 f"{num(amount)} {pair_label} at {num(ref)}") from None
            raise BitfinexError(ERR_GENERIC, f"Invalid order: {e.kind}") from None
        # set after placing: Bitfinex does not refuse a repeated cid (the engine would)
        o.client_order_id = cid
        return self._notification("on-req", [self.order_array(o)],
                                  "Submitting 1 orders.")

    def _find(self, key: str, p: dict[str, Any]) -> Order | None:
        if p.get("id") is not None:
            try:
                seq = int(p["id"])
            except (TypeError, ValueError):
                raise BitfinexError(ERR_PARAMS, "id: invalid") from None
            o = self.engine.orders.get(seq)
            return o if o is not None and o.account == key else None
        if p.get("cid") is not None:
            cid = self._cid(p["cid"])
            day = str(p.get("cid_date", ""))
            for o in sorted(self.engine.account_orders(key), key=lambda o: -o.seq):
                if o.client_order_id == cid and _date(o.created_ms) == day:
                    return o
            return None
        raise BitfinexError(ERR_PARAMS, "id: invalid")

    def cancel(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        o = self._find(key, p)
        if o is None or not o.is_open:
            raise BitfinexError(ERR_GENERIC, "Order not found.")
        # the notification shows the order as it was when the cancel was queued (still ACTIVE),
        # as Bitfinex confirms the cancellation asynchronously
        snapshot = self.order_array(o, status=self.status_text(o))
        self.engine.cancel(o)
        return self._notification("oc-req", snapshot,
                                  f"Submitted for cancellation; waiting for confirmation (ID: {o.seq}).")

    def cancel_multi(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        if str(p.get("all", "")) == "1":
            orders = self.engine.open_orders(key)
        else:
            ids = p.get("id") or []
            orders = [o for i in ids if (o := self.engine.orders.get(int(i))) is not None
                      and o.account == key and o.is_open]
        snapshots = [self.order_array(o) for o in orders]
        for o in orders:
            self.engine.cancel(o)
        return self._notification("oc_multi-req", snapshots, "Submitted for cancellation; waiting for confirmation.")

    def _symbol_filter(self, request: web.Request) -> str | None:
        symbol = request.match_info.get("symbol")
        return self._instrument(symbol).symbol if symbol else None

    def orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        """ACTIVE orders only (a filled or canceled order is in ``orders/hist``)."""
        symbol = self._symbol_filter(request)
        orders = sorted(self.engine.open_orders(key, symbol), key=lambda o: -o.seq)
        if p.get("id"):
            wanted = {int(i) for i in p["id"]}
            orders = [o for o in orders if o.seq in wanted]
        if p.get("cid") is not None:
            cid, day = self._cid(p["cid"]), str(p.get("cid_date", ""))
            orders = [o for o in orders if o.client_order_id == cid and _date(o.created_ms) == day]
        return [self.order_array(o) for o in orders]

    @staticmethod
    def _window(p: dict[str, Any]) -> tuple[int | None, int | None, int]:
        try:
            start = int(p["start"]) if p.get("start") is not None else None
            end = int(p["end"]) if p.get("end") is not None else None
            limit = int(p.get("limit") or DEFAULT_PAGE)
        except (TypeError, ValueError):
            raise BitfinexError(ERR_PARAMS, "params: invalid") from None
        if not 0 < limit <= MAX_PAGE:
            raise BitfinexError(ERR_PARAMS, "limit: invalid")
        return start, end, limit

    def orders_hist(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        """Closed and canceled orders, newest update first, ``start``/``end`` on MTS_UPDATE."""
        symbol = self._symbol_filter(request)
        start, end, limit = self._window(p)
        orders = [o for o in self.engine.account_orders(key, symbol) if not o.is_open]
        if p.get("id"):
            wanted = {int(i) for i in p["id"]}
            orders = [o for o in orders if o.seq in wanted]
        if start is not None:
            orders = [o for o in orders if o.updated_ms >= start]
        if end is not None:
            orders = [o for o in orders if o.updated_ms <= end]
        orders.sort(key=lambda o: (-o.updated_ms, -o.seq))
        return [self.order_array(o) for o in orders[:limit]]

    def trades_hist(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        """Own trades, newest first unless ``sort=1``; ``start``/``end`` on MTS_CREATE, ``limit`` 25."""
        fault: Fault | None = request.get(TRADES_FAULT)
        symbol = self._symbol_filter(request)
        start, end, limit = self._window(p)
        fills = list(self.engine.account_fills(key, symbol))
        if fault is None or fault.mode != "overlap":
            if start is not None:
                fills = [f for f in fills if f.time_ms >= start]
            if end is not None:
                fills = [f for f in fills if f.time_ms <= end]
        ascending = str(p.get("sort", "-1")) == "1"
        fills.sort(key=lambda f: (f.time_ms, f.id), reverse=not ascending)
        page = fills[:limit]
        if fault is not None and fault.mode == "duplicate":
            page = [f for f in page for _ in (0, 1)]
        elif fault is not None and fault.mode == "reorder":
            page = list(reversed(page))
        return [self.trade_array(f) for f in page]

    def order_trades(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        try:
            seq = int(request.match_info["id"])
        except ValueError:
            raise BitfinexError(ERR_PARAMS, "id: invalid") from None
        o = self.engine.orders.get(seq)
        if o is None or o.account != key or o.symbol != ins.symbol:
            return []
        return [self.trade_array(f) for f in sorted(o.fills, key=lambda f: -f.id)]


__all__ = ["BitfinexDialect", "BitfinexError", "default_instruments", "sig_step", "RATE_LIMIT_BODY"]
