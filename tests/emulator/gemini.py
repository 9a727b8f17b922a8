"""Gemini spot REST dialect (``/v1/...``, ``/v2/...``).

Public (GET): ``/v1/symbols``, ``/v1/symbols/details/{symbol}``, ``/v1/pubticker/{symbol}``,
``/v2/ticker/{symbol}``, ``/v1/pricefeed``, ``/v1/book/{symbol}``, ``/v2/candles/{symbol}/{tf}``.
Private (POST): ``/v1/balances``, ``/v1/order/new``, ``/v1/order/cancel``, ``/v1/order/status``,
``/v1/orders``, ``/v1/mytrades``, ``/v1/notionalvolume``, ``/v1/heartbeat``.

Authentication as Gemini does it: no body parameters, but headers ``X-GEMINI-APIKEY``,
``X-GEMINI-PAYLOAD = base64(JSON{"request": path, "nonce": n, ...params})`` and
``X-GEMINI-SIGNATURE = hex(HMAC-SHA384(secret, payload))``. The payload's ``request`` must be the
path called (``EndpointMismatch``); the nonce must exceed the last one of the key and, being a
timestamp, lie within 30 s of the server clock (``InvalidNonce``). Errors are
``{"result": "error", "reason": ..., "message": ...}`` with Gemini's statuses (400 malformed /
auth, 404 order not found, 406 insufficient funds, 429 rate limit).

Rate limits (docs.gemini.com/rest/rate-limits): public 120 requests per minute per IP, private
600 per minute per API key, as a rate: up to five requests over it are queued (delayed), more get
429 ``reason: "RateLimit"``.

Gemini trades limit orders only (``exchange limit``; a market order is a marketable IOC limit),
options ``maker-or-cancel`` / ``immediate-or-cancel`` / ``fill-or-kill``; a maker-or-cancel that
would take is accepted and cancelled at once (``MakerOrCancelWouldTake``). Client order ids are
not checked for uniqueness (Dedup.NONE).
"""

from __future__ import annotations

import base64
import hashlib
import asyncio
import hmac
import json
import threading
import time
from decimal import Decimal
from typing import Any

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT, Dialect
from .engine import CANCELED, EXPIRED, Engine, EngineError, Fill, Instrument, Order, dec, is_multiple
from .faults import Fault, RequestRecord

NONCE_WINDOW_S = 30
PUBLIC_PER_MIN = 120
PRIVATE_PER_MIN = 600
BURST = 5
MYTRADES_DEFAULT, MYTRADES_MAX = 50, 500
CANDLE_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1hr": 3_600_000,
             "6hr": 21_600_000, "1day": 86_400_000}
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _pair(base: str, quote: str, tick_size: str, quote_increment: str, min_order: str, mark: str) -> Instrument:
    """``tick_size`` is Gemini's name for the quantity step, ``quote_increment`` the price tick."""
    vid = f"{base}{quote}".lower()
    return Instrument(f"{base}/{quote}", base, quote, vid, tick_size=quote_increment, step_size=tick_size,
                      min_qty=min_order, max_qty="100000", min_notional="0", mark=mark, max_price="100000000",
                      extra={"tick_size": tick_size, "quote_increment": quote_increment, "min_order_size": min_order})


def default_instruments() -> list[Instrument]:
    """btcusdt, ethusdt, ethbtc, btcusd, ethusd with Gemini's increments and minimum sizes."""
    return [
        _pair("BTC", "USDT", "0.00000001", "0.01", "0.00001", "60000"),
        _pair("ETH", "USDT", "0.000001", "0.01", "0.001", "3000"),
        _pair("ETH", "BTC", "0.000001", "0.00001", "0.001", "0.05"),
        _pair("BTC", "USD", "0.00000001", "0.01", "0.00001", "60000"),
        _pair("ETH", "USD", "0.000001", "0.01", "0.001", "3000"),
    ]


def s(x: Decimal | None) -> str:
    if x is None or x == 0:
        return "0"
    return format(x.normalize(), "f")


class GeminiError(Exception):
    """``{"result": "error", "reason": reason, "message": message}`` with HTTP ``status``."""

    def __init__(self, status: int, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.message = status, reason, message or reason

    def response(self, headers: dict | None = None) -> web.Response:
        return web.json_response({"result": "error", "reason": self.reason, "message": self.message},
                                 status=self.status, headers=headers)


class GeminiDialect(Dialect):
    """Gemini spot; see the module docstring."""

    name = "gemini"
    ccxt_id = "gemini"
    ccxt_options = {
        # markets from the API with per-symbol details (increments, minimums); without the
        # details ccxt leaves precision empty. No scraping of docs.gemini.com / exchange.gemini.com.
        "fetchMarketsMethod": "fetch_markets_from_api",
        "fetchMarketsFromAPI": {"fetchDetailsForAllSymbols": True},
        "fetchCurrencies": {"webApiEnable": False},
        "fetchMarkets": {"webApiEnable": False},
    }
    url_keys = ("api",)
    my_trades_path = "/v1/mytrades"
    create_order_path = "/v1/order/new"
    create_order_method = "POST"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", public_per_min: int = PUBLIC_PER_MIN,
                 private_per_min: int = PRIVATE_PER_MIN, burst: int = BURST,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("gemini", instruments or default_instruments(), fee_rate=dec(fee_rate), fee_in="quote",
                        first_order_id=73797746000, first_trade_id=107317526)
        super().__init__(emulator, engine)
        self.public_per_min = public_per_min
        self.private_per_min = private_per_min
        self.burst = burst
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}
        self._nonces: dict[str, int] = {}

    # ------------------------------------------------------------------ class hooks
    @classmethod
    def test_secret(cls, seed: str) -> str:
        """A 28-character base58 secret (the form Gemini issues) derived from ``seed``."""
        n = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
        out = ""
        for _ in range(28):
            n, r = divmod(n, 58)
            out += _B58[r]
        return out

    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        from appliance.venues.ccxt.budget import BucketSpec, BudgetSpec

        # 600/min (10/s) private is enough to poll, but start-up loads details symbol by symbol
        # on the 120/min public limit (ccxt paces them 500 ms apart): loosen both for tests
        return ({"public_per_min": 6000, "private_per_min": 6000},
                BudgetSpec("emulated-gemini", (BucketSpec.from_window("requests", 6000, 60),)))

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt: private cost 1, public cost 5 at rateLimit 100 ms = 600/min and 120/min
        return {"rateLimit": headroom * 60_000 / self.private_per_min}

    def configure(self, *, public_per_min: int | None = None, private_per_min: int | None = None,
                  burst: int | None = None) -> None:
        """Change the per-minute limits or the queued burst (and empty the buckets)."""
        with self._lock:
            if public_per_min is not None:
                self.public_per_min = public_per_min
            if private_per_min is not None:
                self.private_per_min = private_per_min
            if burst is not None:
                self.burst = burst
            self._levels.clear()

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub = [
            ("/v1/symbols", self.symbols), ("/v1/symbols/details/{symbol}", self.symbol_details),
            ("/v1/pubticker/{symbol}", self.pubticker), ("/v2/ticker/{symbol}", self.ticker_v2),
            ("/v1/pricefeed", self.pricefeed), ("/v1/book/{symbol}", self.book),
            ("/v2/candles/{symbol}/{timeframe}", self.candles),
        ]
        priv = [
            ("/v1/balances", self.balances), ("/v1/order/new", self.order_new), ("/v1/order/cancel", self.order_cancel),
            ("/v1/order/status", self.order_status), ("/v1/orders", self.active_orders),
            ("/v1/mytrades", self.mytrades), ("/v1/notionalvolume", self.notional_volume),
            ("/v1/heartbeat", self.heartbeat),
        ]
        return ([("GET", p, self._wrap_public(fn)) for p, fn in pub]
                + [("POST", p, self._wrap_private(fn)) for p, fn in priv])

    def _wrap_public(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                with self.engine.lock:
                    return web.json_response(fn(request, dict(request.query)))
            except GeminiError as e:
                rec.error = e.reason
                return e.response()
        return handler

    def _wrap_private(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                payload, key = self._authenticate(request, rec)
                with self.engine.lock:
                    return web.json_response(fn(request, payload, key))
            except GeminiError as e:
                rec.error = e.reason
                return e.response()
        return handler

    # ------------------------------------------------------------------ auth
    def _authenticate(self, request: web.Request, rec: RequestRecord) -> tuple[dict[str, Any], str]:
        key = request.headers.get("X-GEMINI-APIKEY")
        if not key:
            raise GeminiError(400, "MissingApikeyHeader", "The X-GEMINI-APIKEY header was missing")
        payload_b64 = request.headers.get("X-GEMINI-PAYLOAD")
        if not payload_b64:
            raise GeminiError(400, "MissingPayloadHeader", "The X-GEMINI-PAYLOAD header was missing")
        sig = request.headers.get("X-GEMINI-SIGNATURE")
        if not sig:
            raise GeminiError(400, "MissingSignatureHeader", "The X-GEMINI-SIGNATURE header was missing")
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise GeminiError(400, "InvalidApiKey", "Invalid API key")
        rec.api_key = key
        expected = hmac.new(acct.secret.encode(), payload_b64.encode(), hashlib.sha384).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise GeminiError(400, "InvalidSignature", "InvalidSignature")
        try:
            payload = json.loads(base64.b64decode(payload_b64, validate=True))
        except (ValueError, TypeError):
            raise GeminiError(400, "InvalidJson", "The JSON provided is invalid") from None
        if not isinstance(payload, dict):
            raise GeminiError(400, "InvalidJson", "The JSON provided is invalid")
        if not payload.get("request"):
            raise GeminiError(400, "EndpointNotFound", "No endpoint was specified")
        if payload["request"] != request.path:
            raise GeminiError(400, "EndpointMismatch",
                              f"EndpointMismatch: payload request {payload['request']} does not match {request.path}")
        try:
            nonce = int(str(payload.get("nonce")))
        except ValueError:
            raise GeminiError(400, "InvalidNonce", "Nonce is missing or not a number") from None
        now_ms = self.engine.now_ms()
        nonce_ms = nonce if nonce > 10 ** 11 else nonce * 1000  # seconds or milliseconds
        with self._lock:
            if abs(nonce_ms - now_ms) > NONCE_WINDOW_S * 1000:
                raise GeminiError(400, "InvalidNonce",
                                  f"Nonce '{nonce}' is not within {NONCE_WINDOW_S} seconds of server time")
            last = self._nonces.get(key, 0)
            if nonce <= last:
                raise GeminiError(400, "InvalidNonce",
                                  f"Nonce '{nonce}' has not increased since your last call to the Gemini API.")
            self._nonces[key] = nonce
        return payload, key

    # ------------------------------------------------------------------ rate limit
    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        # Gemini: "600 requests per minute" (public 120), plus "a burst rate of five additional
        # requests that are queued but their processing is delayed until the request rate falls
        # below the defined rate": a leaky bucket draining at limit/60 per second, up to `burst`
        # requests held back, 429 beyond that
        if request.method == "POST":
            bucket, per_min = "key:" + request.headers.get("X-GEMINI-APIKEY", "?"), self.private_per_min
        else:
            bucket, per_min = "ip:" + (request.remote or "?"), self.public_per_min
        rate = per_min / 60.0
        now = time.monotonic()
        with self._lock:
            level, at = self._levels.get(bucket, (0.0, now))
            level = max(0.0, level - (now - at) * rate)
            if level > self.burst:
                self._levels[bucket] = (level, now)
                rec.error = "RateLimit"
                retry = max(1, int((level - self.burst) / rate + 0.999))
                return GeminiError(429, "RateLimit", "Requests were made too frequently").response(
                    {"Retry-After": str(retry)})
            delay = max(0.0, level - 1.0 + 1e-9) / rate if level > 1.0 else 0.0
            self._levels[bucket] = (level + 1.0, now)
        if delay > 0:
            await asyncio.sleep(delay)
        return None

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            return GeminiError(429, "RateLimit", "Requests were made too frequently").response(fault.headers)
        return super().fault_response(fault, rec)

    # ------------------------------------------------------------------ helpers
    def _instrument(self, symbol: Any) -> Instrument:
        ins = self.engine.by_venue_id.get(str(symbol or "").lower())
        if ins is None:
            raise GeminiError(400, "InvalidSymbol", f"Supplied value '{symbol}' is not a valid symbol")
        return ins

    def order_json(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        out = {
            "order_id": str(o.seq), "id": str(o.seq), "symbol": ins.venue_id, "exchange": "gemini",
            "avg_execution_price": s(o.avg_price) if o.filled else "0.00", "side": o.side.lower(),
            "type": "exchange limit", "timestamp": str(o.created_ms // 1000), "timestampms": o.created_ms,
            "is_live": o.is_open, "is_cancelled": o.status in (CANCELED, EXPIRED), "is_hidden": False,
            "was_forced": False, "executed_amount": s(o.filled),
        }
        if o.client_order_id is not None:
            out["client_order_id"] = o.client_order_id
        if o.status in (CANCELED, EXPIRED):
            out["reason"] = o.extra.get("cancel_reason") or "Requested"
        out.update({"options": list(o.extra.get("options", [])), "price": s(o.price),
                    "original_amount": s(o.qty), "remaining_amount": s(o.remaining)})
        return out

    def trade_json(self, f: Fill) -> dict[str, Any]:
        order = self.engine.orders[f.order_seq]
        out = {"price": s(f.price), "amount": s(f.qty), "timestamp": f.time_ms // 1000, "timestampms": f.time_ms,
               "type": "Buy" if f.side == "BUY" else "Sell", "aggressor": not f.is_maker,
               "fee_currency": f.fee_asset, "fee_amount": s(f.fee), "tid": f.id, "order_id": str(order.seq),
               "exchange": "gemini", "is_auction_fill": False, "is_clearing_fill": False,
               "symbol": self.engine.instruments[f.symbol].venue_id.upper()}
        if order.client_order_id is not None:
            out["client_order_id"] = order.client_order_id
        return out

    # ------------------------------------------------------------------ public
    def symbols(self, request: web.Request, p: dict) -> Any:
        return [i.venue_id for i in self.engine.instruments.values()]

    def symbol_details(self, request: web.Request, p: dict) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        x = ins.extra
        return {"symbol": ins.venue_id.upper(), "base_currency": ins.base, "quote_currency": ins.quote,
                "tick_size": float(x["tick_size"]), "quote_increment": float(x["quote_increment"]),
                "min_order_size": x["min_order_size"], "status": "open", "wrap_enabled": False}

    def pubticker(self, request: web.Request, p: dict) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        m, t = ins.mark, ins.tick_size
        return {"bid": s(m - t), "ask": s(m + t), "last": s(m),
                "volume": {ins.base: "0", ins.quote: "0", "timestamp": self.engine.now_ms()}}

    def ticker_v2(self, request: web.Request, p: dict) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        m, t = ins.mark, ins.tick_size
        return {"symbol": ins.venue_id.upper(), "open": s(m), "high": s(m), "low": s(m), "close": s(m),
                "changes": [s(m)] * 24, "bid": s(m - t), "ask": s(m + t)}

    def pricefeed(self, request: web.Request, p: dict) -> Any:
        return [{"pair": i.venue_id.upper(), "price": s(i.mark), "percentChange24h": "0.0000"}
                for i in self.engine.instruments.values()]

    def book(self, request: web.Request, p: dict) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        n_b = int(p.get("limit_bids", 50) or 50)
        n_a = int(p.get("limit_asks", 50) or 50)
        now = str(self.engine.now_ms() // 1000)
        m, t = ins.mark, ins.tick_size
        return {"bids": [{"price": s(m - t * (i + 1)), "amount": "1", "timestamp": now} for i in range(min(n_b, 500))],
                "asks": [{"price": s(m + t * (i + 1)), "amount": "1", "timestamp": now} for i in range(min(n_a, 500))]}

    def candles(self, request: web.Request, p: dict) -> Any:
        ins = self._instrument(request.match_info["symbol"])
        tf = request.match_info["timeframe"]
        if tf not in CANDLE_MS:
            raise GeminiError(400, "InvalidTimeframe", f"Supplied value '{tf}' is not a valid time frame")
        rows = self.engine.aggregated_candles(ins.symbol, CANDLE_MS[tf]) or []
        return [[c.open_ms, float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)]
                for c in reversed(rows)]  # newest first, numbers (as Gemini sends them)

    # ------------------------------------------------------------------ private
    def balances(self, request: web.Request, p: dict, key: str) -> Any:
        acct = self.engine.accounts[key]
        return [{"type": "exchange", "currency": a, "amount": s(r[0] + r[1]), "available": s(r[0]),
                 "availableForWithdrawal": s(r[0])} for a, r in acct.balances.items()]

    def heartbeat(self, request: web.Request, p: dict, key: str) -> Any:
        return {"result": "ok"}

    def notional_volume(self, request: web.Request, p: dict, key: str) -> Any:
        bps = int(self.engine.fee_rate * 10000)
        return {"web_maker_fee_bps": bps, "web_taker_fee_bps": bps, "api_maker_fee_bps": bps,
                "api_taker_fee_bps": bps, "notional_30d_volume": 0, "last_updated_ms": self.engine.now_ms(),
                "date": time.strftime("%Y-%m-%d", time.gmtime())}

    def order_new(self, request: web.Request, p: dict, key: str) -> Any:
        ins = self._instrument(p.get("symbol"))
        side = str(p.get("side", "")).lower()
        if side not in ("buy", "sell"):
            raise GeminiError(400, "InvalidSide", f"Invalid side for symbol {ins.venue_id.upper()}: '{p.get('side')}'")
        if p.get("type") != "exchange limit":
            raise GeminiError(400, "InvalidOrderType", f"Invalid order type for symbol {ins.venue_id.upper()}: "
                                                       f"'{p.get('type')}'")
        try:
            amount = Decimal(str(p.get("amount")))
            price = Decimal(str(p.get("price")))
        except ArithmeticError:
            raise GeminiError(400, "InvalidQuantity", "Invalid quantity or price") from None
        sym = ins.venue_id.upper()
        if not price.is_finite() or price <= 0 or not is_multiple(price, ins.tick_size):
            raise GeminiError(400, "InvalidPrice", f"Invalid price for symbol {sym}: {p.get('price')}")
        if not amount.is_finite() or amount <= 0 or not is_multiple(amount, ins.step_size) or amount < ins.min_qty:
            raise GeminiError(400, "InvalidQuantity", f"Invalid quantity for symbol {sym}: {p.get('amount')}")
        cid = p.get("client_order_id")
        if cid is not None and not isinstance(cid, str):
            raise GeminiError(400, "ClientOrderIdMustBeString", "The Client Order ID must be a string")
        if cid is not None and len(cid) > 100:
            raise GeminiError(400, "ClientOrderIdTooLong", "The Client Order ID must be under 100 characters")
        options = p.get("options") or []
        if not isinstance(options, list):
            raise GeminiError(400, "OptionsMustBeArray", "The options parameter must be an array.")
        if len(options) > 1:
            raise GeminiError(400, "ConflictingOptions", "A single order supports at most one execution option")
        option = options[0] if options else None
        if option not in (None, "maker-or-cancel", "immediate-or-cancel", "fill-or-kill"):
            raise GeminiError(400, "UnsupportedOption", f"Option '{option}' is not supported")
        tif = "IOC" if option in ("immediate-or-cancel", "fill-or-kill") else "GTC"
        try:
            # client ids are not checked for uniqueness on Gemini: the engine must not see it
            o = self.engine.place(key, ins.symbol, side.upper(), "LIMIT", qty=amount, price=price,
                                  time_in_force=tif, post_only=option == "maker-or-cancel",
                                  reject_post_only=False, extra={"options": options})
        except EngineError as e:
            if e.kind == "insufficient_funds":
                raise GeminiError(406, "InsufficientFunds",
                                  f"Failed to place {side} order on symbol '{sym}' for price {s(price)} and quantity "
                                  f"{s(amount)} {ins.base} due to insufficient funds") from None
            raise GeminiError(400, "InvalidQuantity", e.detail or e.kind) from None
        o.client_order_id = cid
        if o.status == CANCELED and option == "maker-or-cancel":
            o.extra["cancel_reason"] = "MakerOrCancelWouldTake"
        elif o.status == EXPIRED:
            o.extra["cancel_reason"] = "FillOrKillWouldNotFill" if option == "fill-or-kill" else \
                "ImmediateOrCancelWouldPost"
        return self.order_json(o)

    def _own(self, key: str, order_id: Any) -> Order:
        try:
            o = self.engine.orders.get(int(str(order_id)))
        except ValueError:
            o = None
        if o is None or o.account != key:
            raise GeminiError(404, "OrderNotFound", f"Order {order_id} not found")
        return o

    def order_cancel(self, request: web.Request, p: dict, key: str) -> Any:
        if p.get("order_id") is None:
            raise GeminiError(400, "MissingOrderField", "A required order_id field was not specified")
        o = self._own(key, p["order_id"])
        if o.is_open:
            self.engine.cancel(o)
            o.extra["cancel_reason"] = "Requested"
        # a filled or already cancelled order comes back as it is (nothing left to cancel)
        return self.order_json(o)

    def order_status(self, request: web.Request, p: dict, key: str) -> Any:
        trades = str(p.get("include_trades", "")).lower() in ("true", "1")
        if p.get("order_id") is not None:
            o = self._own(key, p["order_id"])
            out = self.order_json(o)
            if trades:
                out["trades"] = [self.trade_json(f) for f in o.fills]
            return out
        cid = p.get("client_order_id")
        if cid is None:
            raise GeminiError(400, "MissingOrderField", "A required order_id field was not specified")
        found = [self.order_json(o) for o in sorted(self.engine.account_orders(key), key=lambda o: -o.seq)
                 if o.client_order_id == cid]
        if not found:
            raise GeminiError(404, "OrderNotFound", f"Order with client_order_id {cid} not found")
        return found

    def active_orders(self, request: web.Request, p: dict, key: str) -> Any:
        return [self.order_json(o) for o in sorted(self.engine.open_orders(key), key=lambda o: -o.seq)]

    def mytrades(self, request: web.Request, p: dict, key: str) -> Any:
        ins = self._instrument(p.get("symbol"))
        fault: Fault | None = request.get(TRADES_FAULT)
        fills = sorted(self.engine.account_fills(key, ins.symbol), key=lambda f: -f.id)
        limit = max(1, min(int(p.get("limit_trades", MYTRADES_DEFAULT) or MYTRADES_DEFAULT), MYTRADES_MAX))
        ts = p.get("timestamp")
        if ts not in (None, "") and (fault is None or fault.mode != "overlap"):
            t = int(ts)
            since_ms = t if t > 10 ** 11 else t * 1000
            fills = [f for f in fills if f.time_ms >= since_ms]
        rows = [self.trade_json(f) for f in fills[:limit]]
        if fault is not None and fault.mode == "duplicate":
            rows = [r for r in rows for _ in (0, 1)]
        elif fault is not None and fault.mode == "reorder":
            rows.reverse()
        return rows


__all__ = ["GeminiDialect", "default_instruments"]
