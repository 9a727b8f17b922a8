"""Bitstamp API v2 spot REST dialect (``/api/v2/...``).

Public (GET): ``markets/``, ``ticker/``, ``ticker/{pair}/``, ``order_book/{pair}/`` (synthetic, from
the mark), ``ohlc/{pair}/`` (the engine's candles), ``transactions/{pair}/``.

Private (POST, form body): ``account_balances/``, ``buy/{pair}/``, ``sell/{pair}/``,
``buy/market/{pair}/``, ``sell/market/{pair}/``, ``cancel_order/``, ``cancel_all_orders/[{pair}/]``,
``order_status/`` (by ``id`` or ``client_order_id``), ``open_orders/all/``, ``open_orders/{pair}/``,
``user_transactions/[{pair}/]``.

Authentication as Bitstamp's v2 scheme: headers ``X-Auth: BITSTAMP <key>``, ``X-Auth-Nonce`` (36
characters, never reused within 150 s), ``X-Auth-Timestamp`` (ms, at most 150 s old),
``X-Auth-Version: v2``, ``Content-Type`` only with a body, and ``X-Auth-Signature`` = hex
HMAC-SHA256(secret, ``X-Auth + method + host + path + query + content type + nonce + timestamp +
version + body``). ccxt strips only ``https://`` from the URL it signs, so against this plain-HTTP
emulator its message carries ``http://host``: both spellings of the host are accepted. Answers carry
``X-Server-Auth-Signature`` = HMAC(secret, nonce + timestamp + content type + body), as Bitstamp's do.

Errors: authentication 403 ``{"status": "error", "reason": "...", "code": "API00xx"}``; order errors
400 ``{"status": "error", "reason": {"__all__": [...]}, "response_code": "400.0xx"}``; unknown orders
404 ``"Order not found."``. Rate limit (docs: 400 requests per second, 10 000 per 10 minutes):
HTTP 429 with ``response_code`` ``400.002``. Fees are charged in the quote currency. Duplicate
``client_order_id`` values are accepted (``client_ids.py``: ``Dedup.NONE``).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import FILLED, D, Engine, EngineError, Fill, Instrument, Order, ZERO, dec
from .faults import Fault, RequestRecord

PREFIX = "/api/v2"
AUTH_WINDOW_MS = 150_000  # X-Auth-Timestamp age limit and nonce memory

#: ``(requests, window seconds)`` Bitstamp documents (www.bitstamp.net/api/, "Request limits").
DEFAULT_LIMITS = ((400, 1.0), (10_000, 600.0))

_STEPS = {60, 180, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400, 259200}


def _pair(symbol: str, base_decimals: int, counter_decimals: int, min_value: str, mark: str,
          description: str) -> Instrument:
    base, quote = symbol.split("/")
    return Instrument(symbol, base, quote, (base + quote).lower(), tick_size=D(1).scaleb(-counter_decimals),
                      step_size=D(1).scaleb(-base_decimals), min_qty=D(1).scaleb(-base_decimals),
                      max_qty="100000", min_notional=min_value, mark=mark,
                      extra={"base_decimals": base_decimals, "counter_decimals": counter_decimals,
                             "min_value": min_value, "description": description})


def default_instruments() -> list[Instrument]:
    """BTC/USDT (``btcusdt``), ETH/USDT (``ethusdt``), ETH/BTC (``ethbtc``) with Bitstamp-like decimals."""
    return [
        _pair("BTC/USDT", 8, 0, "10", "60000", "Bitcoin / Tether"),
        _pair("ETH/USDT", 8, 1, "10", "3000", "Ether / Tether"),
        _pair("ETH/BTC", 8, 5, "0.0002", "0.05", "Ether / Bitcoin"),
    ]


def fx(x: Decimal | None, places: int) -> str:
    return f"{(x if x is not None else ZERO):.{places}f}"


def _dt(ms: int) -> str:
    """Bitstamp's ``datetime``: ``2024-01-31 14:43:15.796000`` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


class BitstampError(Exception):
    """An error answer: HTTP ``status`` with ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status, self.body = status, body

    @property
    def code(self) -> str:
        return str(self.body.get("code") or self.body.get("response_code") or "")


def auth_error(code: str, reason: str) -> BitstampError:
    return BitstampError(403, {"status": "error", "reason": reason, "code": code})


def order_error(response_code: str, *reasons: str, field: str | None = None, status: int = 400) -> BitstampError:
    reason: dict[str, list[str]] = {"__all__": list(reasons) if field is None else [""]}
    if field is not None:
        reason = {field: list(reasons), "__all__": [""]}
    return BitstampError(status, {"status": "error", "reason": reason, "response_code": response_code})


ORDER_NOT_FOUND = BitstampError(404, {"status": "error", "reason": "Order not found.", "response_code": "404.002"})
RATE_LIMITED = {"status": "error", "reason": {"__all__": ["Request rejected due to exceeded rate limit."]},
                "response_code": "400.002"}


class BitstampDialect(Dialect):
    """Bitstamp API v2 spot on top of an :class:`Engine` (fees in quote).

    Parameters: ``fee_rate``; ``limits`` (``((requests, window_s), ...)`` fixed windows, default the
    documented 400/s and 10 000/10 min).
    """

    name = "bitstamp"
    ccxt_id = "bitstamp"
    ccxt_options: dict[str, Any] = {}  # fetch_currencies reuses the markets/ answer: nothing to skip
    url_keys = ("api",)
    my_trades_path = f"{PREFIX}/user_transactions/*"
    create_order_path = f"{PREFIX}/buy/btcusdt/"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001",
                 limits: tuple[tuple[int, float], ...] = DEFAULT_LIMITS,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("bitstamp", instruments or default_instruments(), fee_rate=dec(fee_rate), fee_in="quote",
                        first_order_id=1_790_000_000_000_001, first_trade_id=380_000_001)
        super().__init__(emulator, engine)
        self.limits = tuple(limits)
        self._lock = threading.Lock()
        self._windows: list[tuple[int, int]] = [(0, 0) for _ in self.limits]
        self._nonces: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------ configuration
    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        # 10 000 per 10 minutes (~13/s usable) is fast enough to poll: the documented budget is kept
        return {}, None

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt's bitstamp rateLimit (75 ms, cost 1) follows 8000/10 min; pace under the tightest window
        per_s = min(n / w for n, w in self.limits)
        return {"rateLimit": headroom * 1000 / per_s}

    def configure(self, *, limits: tuple[tuple[int, float], ...] | None = None) -> None:
        """Replace the rate-limit windows and forget the counts."""
        with self._lock:
            if limits is not None:
                self.limits = tuple(limits)
            self._windows = [(0, 0) for _ in self.limits]

    def add_account(self, api_key: str, secret: str, balances: dict[str, object],
                    password: str | None = None) -> None:
        # Bitstamp's engine works in upper-case codes (market base/counter); balances are
        # written lower case on the wire only
        self.engine.add_account(api_key, secret, dict(balances), password=password or "")

    def unified_balances(self, api_key: str) -> dict[str, tuple[Any, Any]]:
        return dict(self.engine.balances(api_key))

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub = [("markets/", self.markets), ("ticker/", self.tickers), ("ticker/{pair}/", self.ticker),
               ("order_book/{pair}/", self.order_book), ("ohlc/{pair}/", self.ohlc),
               ("transactions/{pair}/", self.public_transactions)]
        priv = [("account_balances/", self.balances), ("open_orders/all/", self.open_orders),
                ("open_orders/{pair}/", self.open_orders), ("order_status/", self.order_status),
                ("cancel_order/", self.cancel_order), ("cancel_all_orders/", self.cancel_all),
                ("cancel_all_orders/{pair}/", self.cancel_all), ("user_transactions/", self.user_transactions),
                ("user_transactions/{pair}/", self.user_transactions),
                ("buy/market/{pair}/", self._order("BUY", "MARKET")), ("sell/market/{pair}/", self._order("SELL", "MARKET")),
                ("buy/{pair}/", self._order("BUY", "LIMIT")), ("sell/{pair}/", self._order("SELL", "LIMIT"))]
        out: list[tuple[str, str, Any]] = [("GET", f"{PREFIX}/{path}", self._wrap_public(fn)) for path, fn in pub]
        out += [("POST", f"{PREFIX}/{path}", self._wrap_private(fn)) for path, fn in priv]
        return out

    def _wrap_public(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                with self.engine.lock:
                    return web.json_response(fn(dict(request.query), request))
            except BitstampError as e:
                rec.error = e.code
                return web.json_response(e.body, status=e.status)
        return handler

    def _wrap_private(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                p, key = await self._authenticate(request, rec)
                with self.engine.lock:
                    resp = web.json_response(fn(p, key, request))
            except BitstampError as e:
                rec.error = e.code
                return web.json_response(e.body, status=e.status)
            acct = self.engine.accounts[key]
            message = (request.headers["X-Auth-Nonce"] + request.headers["X-Auth-Timestamp"]
                       + (resp.content_type or "")).encode() + (resp.body or b"")  # type: ignore[operator]
            resp.headers["X-Server-Auth-Signature"] = hmac.new(acct.secret.encode(), message, hashlib.sha256).hexdigest()
            return resp
        return handler

    async def _authenticate(self, request: web.Request, rec: RequestRecord) -> tuple[dict[str, Any], str]:
        raw = await request.text()
        h = request.headers
        x_auth = h.get("X-Auth")
        for header, code in (("X-Auth", "API0012"), ("X-Auth-Signature", "API0013"), ("X-Auth-Nonce", "API0014"),
                             ("X-Auth-Timestamp", "API0015"), ("X-Auth-Version", "API0016")):
            if not h.get(header):
                raise auth_error(code, f"{header} header is required")
        assert x_auth is not None
        if not x_auth.startswith("BITSTAMP "):
            raise auth_error("API0011", "Wrong API key format")
        key = x_auth[len("BITSTAMP "):]
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise auth_error("API0003", "API key not found")
        rec.api_key = key
        if h["X-Auth-Version"] != "v2":
            raise auth_error("API0010", "Invalid version")
        content_type = h.get("Content-Type", "")
        if not raw and content_type:
            raise auth_error("API0020", "Content-Type header should not be present")
        if raw and content_type != "application/x-www-form-urlencoded":
            raise auth_error("API0019", "Content-Type header is not accepted")
        nonce, stamp = h["X-Auth-Nonce"], h["X-Auth-Timestamp"]
        tail = request.path_qs + content_type + nonce + stamp + "v2" + raw
        given = h["X-Auth-Signature"].lower()
        candidates = [x_auth + request.method + host + tail for host in (request.host, "http://" + request.host)]
        if not any(hmac.compare_digest(hmac.new(acct.secret.encode(), m.encode(), hashlib.sha256).hexdigest(), given)
                   for m in candidates):
            raise auth_error("API0005", "Invalid signature")
        if not stamp.isdigit():
            raise auth_error("API0018", "X-Auth-Timestamp header is invalid")
        now = self.engine.now_ms()
        if abs(now - int(stamp)) > AUTH_WINDOW_MS:
            raise auth_error("API0017", "X-Auth-Timestamp header is out of boundaries")
        with self._lock:
            seen = self._nonces.setdefault(key, {})
            for old in [n for n, at in seen.items() if now - at > AUTH_WINDOW_MS]:
                del seen[old]
            if len(nonce) != 36 or nonce in seen:
                raise auth_error("API0004", "Invalid nonce")
            seen[nonce] = now
        return dict(parse_qsl(raw, keep_blank_values=True)), key

    # ------------------------------------------------------------------ rate limits / faults
    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        now = time.time()
        with self._lock:
            counts = []
            for (limit, window), (idx, used) in zip(self.limits, self._windows):
                cur = int(now // window)
                used = used if idx == cur else 0
                if used + 1 > limit:
                    rec.error = "400.002"
                    return web.json_response(RATE_LIMITED, status=429)
                counts.append((cur, used + 1))
            self._windows = counts
            rec.used_weight = max((used for _, used in counts), default=0)
        return None

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            return web.json_response(RATE_LIMITED, status=429, headers=fault.headers)
        if fault.body is None:  # 5xx pages come from the web tier, as HTML
            return web.Response(status=fault.status, text=default_error_page(fault.status), headers=fault.headers,
                                content_type="text/html")
        return super().fault_response(fault, rec)

    # ------------------------------------------------------------------ wire formats
    def _instrument(self, pair: str | None) -> Instrument:
        ins = self.engine.by_venue_id.get((pair or "").lower())
        if ins is None:
            raise BitstampError(404, {"status": "error", "reason": "Market not found.", "response_code": "404.001"})
        return ins

    def _order_base(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        price = o.price if o.price is not None else (o.avg_price if o.filled > 0 else ins.mark)
        return {"id": str(o.seq), "datetime": _dt(o.created_ms), "type": "0" if o.side == "BUY" else "1",
                "price": fx(price, ins.extra["counter_decimals"]), "amount": fx(o.qty, ins.extra["base_decimals"]),
                "market": f"{ins.base}/{ins.quote}", "client_order_id": o.client_order_id or ""}

    def transaction(self, f: Fill, *, in_order: bool) -> dict[str, Any]:
        """A trade row: ``user_transactions`` (``in_order=False``) or an ``order_status`` transaction."""
        ins = self.engine.instruments[f.symbol]
        b, q = ins.base.lower(), ins.quote.lower()
        bd, cd = ins.extra["base_decimals"], ins.extra["counter_decimals"]
        if in_order:
            return {"tid": f.id, "price": fx(f.price, cd), b: fx(f.qty, bd), q: fx(f.quote_qty, 8),
                    "fee": fx(f.fee, 8), "datetime": _dt(f.time_ms), "type": 2}
        sign = 1 if f.side == "BUY" else -1
        return {"id": f.id, "order_id": f.order_seq, "datetime": _dt(f.time_ms), "type": "2",
                "fee": fx(f.fee, 8), b: fx(sign * f.qty, bd), q: fx(-sign * f.quote_qty, 8),
                f"{b}_{q}": fx(f.price, cd)}

    # ------------------------------------------------------------------ public
    def markets(self, p: dict[str, str], request: web.Request) -> Any:
        return [{
            "name": f"{i.base}/{i.quote}", "market_symbol": i.venue_id, "base_currency": i.base,
            "base_decimals": i.extra["base_decimals"], "counter_currency": i.quote,
            "counter_decimals": i.extra["counter_decimals"], "minimum_order_value": i.extra["min_value"],
            "trading": "Enabled", "instant_order_counter_decimals": 2, "instant_and_market_orders": "Enabled",
            "description": i.extra["description"], "market_type": "SPOT",
        } for i in self.engine.instruments.values()]

    def _ticker(self, ins: Instrument, *, pair: bool) -> dict[str, Any]:
        cd = ins.extra["counter_decimals"]
        m = fx(ins.mark, cd)
        out = {"timestamp": str(self.engine.now_ms() // 1000), "open": m, "high": m, "low": m, "last": m,
               "volume": "0.00000000", "vwap": m, "bid": fx(ins.mark - ins.tick_size, cd),
               "ask": fx(ins.mark + ins.tick_size, cd), "side": "0", "open_24": m, "percent_change_24": "0.00"}
        if pair:
            out["pair"] = f"{ins.base}/{ins.quote}"
        return out

    def ticker(self, p: dict[str, str], request: web.Request) -> Any:
        return self._ticker(self._instrument(request.match_info["pair"]), pair=False)

    def tickers(self, p: dict[str, str], request: web.Request) -> Any:
        return [self._ticker(i, pair=True) for i in self.engine.instruments.values()]

    def order_book(self, p: dict[str, str], request: web.Request) -> Any:
        ins = self._instrument(request.match_info["pair"])
        cd, bd = ins.extra["counter_decimals"], ins.extra["base_decimals"]
        now_us = self.engine.now_ms() * 1000
        one = fx(D(1), bd)
        return {"timestamp": str(now_us // 1_000_000), "microtimestamp": str(now_us),
                "bids": [[fx(ins.mark - ins.tick_size * (i + 1), cd), one] for i in range(100)],
                "asks": [[fx(ins.mark + ins.tick_size * (i + 1), cd), one] for i in range(100)]}

    def ohlc(self, p: dict[str, str], request: web.Request) -> Any:
        ins = self._instrument(request.match_info["pair"])
        try:
            step = int(p.get("step", 0))
            limit = int(p.get("limit", 0))
            start = int(p["start"]) if p.get("start") else None
            end = int(p["end"]) if p.get("end") else None
        except ValueError:
            raise order_error("400.007", "POST parameter(s) is malformed.") from None
        if step not in _STEPS or not 1 <= limit <= 1000:
            raise BitstampError(400, {"status": "error", "reason": {"__all__": ["Invalid step or limit."]},
                                      "response_code": "400.001"})
        rows = self.engine.aggregated_candles(ins.symbol, step * 1000) or []
        if start is not None:
            rows = [c for c in rows if c.open_ms >= start * 1000]
        if end is not None:
            rows = [c for c in rows if c.open_ms <= end * 1000]
        rows = rows[:limit] if start is not None else rows[-limit:]
        cd = ins.extra["counter_decimals"]
        return {"data": {"pair": f"{ins.base}/{ins.quote}", "ohlc": [
            {"timestamp": str(c.open_ms // 1000), "open": fx(c.open, cd), "high": fx(c.high, cd), "low": fx(c.low, cd),
             "close": fx(c.close, cd), "volume": fx(c.volume, 8)} for c in rows]}}

    def public_transactions(self, p: dict[str, str], request: web.Request) -> Any:
        self._instrument(request.match_info["pair"])
        return []  # no public tape: only this emulator's own account trades

    # ------------------------------------------------------------------ private
    def balances(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        return [{"currency": a.lower(), "total": fx(r[0] + r[1], 8), "available": fx(r[0], 8),
                 "reserved": fx(r[1], 8)} for a, r in sorted(acct.balances.items())]

    def _order(self, side: str, type_: str) -> Any:
        def create(p: dict[str, Any], key: str, request: web.Request) -> Any:
            return self.create(side, type_, p, key, request)
        return create

    @staticmethod
    def _number(p: dict[str, Any], field: str, places: int, missing: str) -> Decimal:
        raw = p.get(field)
        if raw in (None, ""):
            raise order_error(missing, f"POST parameter(s) is missing from request: {field}.")
        try:
            x = Decimal(str(raw))
        except InvalidOperation:
            raise order_error("400.007", "A valid number is required.", field=field) from None
        if not x.is_finite():
            raise order_error("400.007", "A valid number is required.", field=field)
        if -x.as_tuple().exponent > places:
            raise order_error("400.007", f"Ensure that there are no more than {places} decimal places.", field=field)
        return x

    def create(self, side: str, type_: str, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(request.match_info["pair"])
        bd, cd = ins.extra["base_decimals"], ins.extra["counter_decimals"]
        amount = self._number(p, "amount", bd, "400.005")
        if amount <= 0:
            raise order_error("400.026", "POST parameter(s) is malformed: amount.")
        price: Decimal | None = None
        tif, post_only = "GTC", False
        if type_ == "LIMIT":
            price = self._number(p, "price", cd, "400.006")
            if price <= 0:
                raise order_error("400.021", "Provided price is out of range.")
            flags = [f for f in ("ioc_order", "fok_order", "moc_order", "gtd_order", "daily_order")
                     if str(p.get(f, "")).lower() in ("true", "1")]
            if len(flags) > 1:
                raise order_error("400.024", "Only one of optional parameters can be set.")
            tif = {"ioc_order": "IOC", "fok_order": "FOK"}.get(flags[0], "GTC") if flags else "GTC"
            post_only = flags == ["moc_order"]
        cid = p.get("client_order_id") or None
        if cid is not None and len(str(cid)) > 180:
            raise order_error("400.008", "POST parameter(s) is malformed: client_order_id.")
        value = amount * (price if price is not None else ins.mark)
        if value < ins.min_notional:
            raise order_error("400.020", f"Minimum order size is {ins.extra['min_value']} {ins.quote}.")
        try:
            o = self.engine.place(key, ins.symbol, side, type_, qty=amount, price=price, time_in_force=tif,
                                  post_only=post_only, reject_post_only=False)
        except EngineError as e:
            if e.kind == "insufficient_funds":
                asset = ins.quote if side == "BUY" else ins.base
                have = self.engine.accounts[key].free(asset)
                raise order_error("400.009", f"You have only {fx(have, 8)} {asset} available. "
                                             "Check your account balance for details.") from None
            raise order_error("400.001", "Unknown validation error.") from None
        # set after placing: Bitstamp does not refuse a repeated client_order_id (the engine would)
        o.client_order_id = str(cid) if cid is not None else None
        return self._order_base(o)

    def _find(self, key: str, p: dict[str, Any]) -> Order:
        if p.get("client_order_id"):
            found = self.engine.find_by_client_id(key, str(p["client_order_id"]))
            if found is None:
                raise ORDER_NOT_FOUND
            return found
        raw = p.get("id")
        if not raw:
            raise order_error("400.014", "POST parameter(s) is missing from request: order_id.")
        try:
            o = self.engine.orders.get(int(raw))
        except ValueError:
            raise order_error("400.016", "POST parameter(s) is malformed: order_id.") from None
        if o is None or o.account != key:
            raise ORDER_NOT_FOUND
        return o

    @staticmethod
    def status_text(o: Order) -> str:
        if o.is_open:
            return "Open"
        return "Finished" if o.status == FILLED else "Canceled"

    def order_status(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        o = self._find(key, p)
        ins = self.engine.instruments[o.symbol]
        return {"id": o.seq, "datetime": _dt(o.created_ms), "type": "0" if o.side == "BUY" else "1",
                "status": self.status_text(o), "market": f"{ins.base}/{ins.quote}",
                "transactions": [self.transaction(f, in_order=True) for f in o.fills],
                "amount_remaining": fx(o.remaining if o.status != FILLED else ZERO, ins.extra["base_decimals"]),
                "client_order_id": o.client_order_id or ""}

    def cancel_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        o = self._find(key, p)
        if not o.is_open:
            raise ORDER_NOT_FOUND
        self.engine.cancel(o)
        ins = self.engine.instruments[o.symbol]
        return {"id": o.seq, "amount": fx(o.remaining, ins.extra["base_decimals"]),
                "price": fx(o.price, ins.extra["counter_decimals"]), "type": 0 if o.side == "BUY" else 1,
                "market": f"{ins.base}/{ins.quote}"}

    def cancel_all(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        pair = request.match_info.get("pair")
        orders = self.engine.open_orders(key, self._instrument(pair).symbol if pair else None)
        out = []
        for o in orders:
            self.engine.cancel(o)
            row = self._order_base(o)
            row["currency_pair"] = row["market"]
            out.append(row)
        return {"canceled": out, "success": True}

    def open_orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        pair = request.match_info.get("pair")
        orders = sorted(self.engine.open_orders(key, self._instrument(pair).symbol if pair else None),
                        key=lambda o: -o.seq)
        out = []
        for o in orders:
            ins = self.engine.instruments[o.symbol]
            row = self._order_base(o)
            # open orders show what is left in "amount" and the original size apart
            row["amount"] = fx(o.remaining, ins.extra["base_decimals"])
            row["amount_at_create"] = fx(o.qty, ins.extra["base_decimals"])
            row["currency_pair"] = row["market"]
            out.append(row)
        return out

    def user_transactions(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        """Trades only (no deposits here), newest first; ``offset``, ``limit`` (100, max 1000),
        ``sort`` and ``since_timestamp`` / ``until_timestamp`` (seconds) / ``since_id``."""
        fault: Fault | None = request.get(TRADES_FAULT)
        pair = request.match_info.get("pair")
        fills = self.engine.account_fills(key, self._instrument(pair).symbol if pair else None)
        try:
            offset = int(p.get("offset", 0) or 0)
            limit = int(p.get("limit", 100) or 100)
            since_s = int(p["since_timestamp"]) if p.get("since_timestamp") else None
            until_s = int(p["until_timestamp"]) if p.get("until_timestamp") else None
            since_id = int(p["since_id"]) if p.get("since_id") else None
        except ValueError:
            raise order_error("400.007", "POST parameter(s) is malformed.") from None
        if not 1 <= limit <= 1000:
            raise order_error("400.011", "POST parameter(s) is malformed: limit.")
        if fault is None or fault.mode != "overlap":
            if since_s is not None:
                fills = [f for f in fills if f.time_ms >= since_s * 1000]
            if until_s is not None:
                fills = [f for f in fills if f.time_ms <= until_s * 1000]
            if since_id is not None:
                fills = [f for f in fills if f.id >= since_id]
        ascending = str(p.get("sort", "desc")) == "asc"
        fills = sorted(fills, key=lambda f: f.id, reverse=not ascending)[offset:offset + limit]
        if fault is not None and fault.mode == "duplicate":
            fills = [f for f in fills for _ in (0, 1)]
        elif fault is not None and fault.mode == "reorder":
            fills = list(reversed(fills))
        return [self.transaction(f, in_order=False) for f in fills]


__all__ = ["BitstampDialect", "BitstampError", "default_instruments", "RATE_LIMITED", "ORDER_NOT_FOUND"]
