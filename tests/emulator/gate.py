"""Gate.io API v4 spot REST dialect (``/api/v4``, classic spot account).

Public: ``/spot/time``, ``/spot/currencies``, ``/spot/currency_pairs``, ``/margin/currency_pairs``
(empty: no margin pairs are emulated), ``/spot/tickers``, ``/spot/order_book``,
``/spot/candlesticks``. Private: ``/spot/accounts``, ``/spot/orders`` (POST, GET list),
``/spot/orders/{order_id}`` (GET, DELETE), ``/spot/open_orders``, ``/spot/my_trades``.

Authentication as Gate does it: headers ``KEY``, ``Timestamp`` (Unix seconds) and ``SIGN`` =
hex HMAC-SHA512(secret, METHOD + "\\n" + /api/v4/path + "\\n" + raw query string + "\\n" +
hex SHA512(body) + "\\n" + Timestamp); the timestamp may deviate at most ``max_skew_s`` (60 s)
from the server clock. Errors are ``{"label": ..., "message": ...}``: HTTP 401 for
``INVALID_KEY`` / ``INVALID_SIGNATURE`` / ``REQUEST_EXPIRED`` / ``MISSING_REQUIRED_HEADER``,
404 ``ORDER_NOT_FOUND``, 400 for the rest.

Rate limits as documented (www.gate.com/docs/developers/apiv4/#frequency-limit-rule): spot
order placement 10 requests/s per UID and currency pair, cancellation 200/s per UID, other
private endpoints 200 per 10 s per UID and endpoint, public endpoints 200 per 10 s per IP and
endpoint. Over a limit: HTTP 429 ``TOO_MANY_REQUESTS``; every answer carries
``X-Gate-RateLimit-Requests-Remain``, ``X-Gate-RateLimit-Limit`` and
``X-Gate-RateLimit-Reset-Timestamp``.

Client ids (``text``) must start with ``t-``; Gate does not refuse a repeated ``text``. An order
can be looked up by its ``text`` while it is open and for ``text_lookup_s`` (60 s) after it
finished, then only by its id, as Gate documents. A ``poc`` (post-only) order that would take is
refused with ``POC_FILL_IMMEDIATELY``; a market buy's ``amount`` is in the quote currency; the
buyer pays the fee in the base currency, the seller in the quote currency.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from .dialect import PARAMS, RAW_BODY, RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import (
    CANCELED, EXPIRED, FILLED, Engine, EngineError, Fill, Instrument, Order, dec, floor_to, is_multiple,
)
from .faults import Fault, RequestRecord

PREFIX = "/api/v4"
_EMPTY_SHA512 = hashlib.sha512(b"").hexdigest()
_INTERVALS = {"10s": 10_000, "1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
              "2h": 7_200_000, "4h": 14_400_000, "8h": 28_800_000, "1d": 86_400_000, "7d": 604_800_000}
_TEXT_RE = re.compile(r"^t-[0-9A-Za-z_.-]{1,28}$")
# (limit, remaining, reset ms) of the bucket a request was counted in, for the response headers
LIMIT_INFO = web.RequestKey("gate_limit_info", tuple)

#: ``(limit, window_s, scope)`` per limit group; scope "pair" counts per UID and currency pair.
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "order_create": (10, 1.0),
    "order_cancel": (200, 1.0),
    "private": (200, 10.0),
    "public": (200, 10.0),
}


def default_instruments() -> list[Instrument]:
    """BTC/USDT, ETH/USDT, ETH/BTC with Gate-like precisions (decimal places) and minimums."""
    return [
        Instrument("BTC/USDT", "BTC", "USDT", "BTC_USDT", tick_size="0.1", step_size="0.000001",
                   min_qty="0.000001", max_qty="1000", min_notional="3", mark="60000",
                   extra={"precision": 1, "amount_precision": 6, "max_quote": "5000000"}),
        Instrument("ETH/USDT", "ETH", "USDT", "ETH_USDT", tick_size="0.01", step_size="0.0001",
                   min_qty="0.0001", max_qty="10000", min_notional="3", mark="3000",
                   extra={"precision": 2, "amount_precision": 4, "max_quote": "5000000"}),
        Instrument("ETH/BTC", "ETH", "BTC", "ETH_BTC", tick_size="0.00001", step_size="0.0001",
                   min_qty="0.0001", max_qty="10000", min_notional="0.0001", mark="0.05",
                   extra={"precision": 5, "amount_precision": 4, "max_quote": "100"}),
    ]


def s(x: Decimal | None) -> str:
    """Gate's decimal strings: plain notation, trailing zeros dropped."""
    if x is None:
        return "0"
    return format(x.normalize(), "f")


class GateError(Exception):
    def __init__(self, status: int, label: str, message: str) -> None:
        super().__init__(message)
        self.status, self.label, self.message = status, label, message


class GateDialect(Dialect):
    """Gate.io v4 spot on an :class:`Engine`; see the module docstring."""

    name = "gate"
    ccxt_id = "gate"
    # Spot markets only, classic spot account (ccxt then skips GET /account/detail).
    ccxt_options = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "unifiedAccount": False}
    url_keys = ("api", "test")
    my_trades_path = f"{PREFIX}/spot/my_trades"
    create_order_path = f"{PREFIX}/spot/orders"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", limits: dict[str, tuple[int, float]] | None = None,
                 max_skew_s: int = 60, text_lookup_s: float = 60.0,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("gate", instruments or default_instruments(), fee_rate=dec(fee_rate),
                        fee_in="received", first_order_id=836_574_100_001, first_trade_id=7_352_110_001)
        super().__init__(emulator, engine)
        self._lock = threading.Lock()
        self.limits = dict(DEFAULT_LIMITS)
        self.limits.update(limits or {})
        self.max_skew_s = max_skew_s
        self.text_lookup_s = text_lookup_s
        self._hits: dict[tuple[str, ...], deque[float]] = {}

    def configure(self, *, limits: dict[str, tuple[int, float]] | None = None) -> None:
        """Change the limits at run time (tests); clears usage."""
        with self._lock:
            if limits:
                self.limits.update(limits)
            self._hits.clear()

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub, priv = self._wrap_public, self._wrap_private
        g = PREFIX
        return [
            ("GET", f"{g}/spot/time", pub(self.server_time)),
            ("GET", f"{g}/spot/currencies", pub(self.currencies)),
            ("GET", f"{g}/spot/currency_pairs", pub(self.currency_pairs)),
            ("GET", f"{g}/margin/currency_pairs", pub(self.margin_pairs)),
            ("GET", f"{g}/spot/tickers", pub(self.tickers)),
            ("GET", f"{g}/spot/order_book", pub(self.order_book)),
            ("GET", f"{g}/spot/candlesticks", pub(self.candlesticks)),
            ("GET", f"{g}/spot/accounts", priv(self.accounts)),
            ("POST", f"{g}/spot/orders", priv(self.create_order)),
            ("GET", f"{g}/spot/orders", priv(self.list_orders)),
            ("GET", f"{g}/spot/orders/{{order_id}}", priv(self.get_order)),
            ("DELETE", f"{g}/spot/orders/{{order_id}}", priv(self.cancel_order)),
            ("GET", f"{g}/spot/open_orders", priv(self.open_orders)),
            ("GET", f"{g}/spot/my_trades", priv(self.my_trades)),
        ]

    @staticmethod
    def _error(e: GateError) -> web.Response:
        return web.json_response({"label": e.label, "message": e.message}, status=e.status)

    def _wrap_public(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            p = dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
            try:
                with self.engine.lock:
                    result = fn(p)
            except GateError as e:
                rec.error = e.label
                return self._error(e)
            return web.json_response(result)
        return handler

    def _wrap_private(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                key = await self._authenticate(request, rec)
                with self.engine.lock:
                    result = fn(request[PARAMS], key, request)
            except GateError as e:
                rec.error = e.label
                return self._error(e)
            return web.json_response(result)
        return handler

    async def _authenticate(self, request: web.Request, rec: RequestRecord) -> str:
        key = request.headers.get("KEY")
        ts_raw = request.headers.get("Timestamp")
        sign = request.headers.get("SIGN")
        for name, value in (("KEY", key), ("Timestamp", ts_raw), ("SIGN", sign)):
            if not value:
                raise GateError(401, "MISSING_REQUIRED_HEADER", f"Missing required header: {name}")
        acct = self.engine.accounts.get(key)  # type: ignore[arg-type]
        if acct is None:
            raise GateError(401, "INVALID_KEY", "Invalid key provided")
        rec.api_key = key
        try:
            ts = int(float(ts_raw))  # type: ignore[arg-type]
        except ValueError:
            raise GateError(401, "REQUEST_EXPIRED", "Request timestamp invalid") from None
        if abs(self.engine.now_ms() / 1000 - ts) > self.max_skew_s:
            raise GateError(401, "REQUEST_EXPIRED", f"gap between request Timestamp and server time exceeds "
                                                    f"{self.max_skew_s}")
        body = await request.text() if request.body_exists else ""
        query = request.rel_url.raw_query_string
        # Gate signs the query string "without URL encode" (ccxt: rawencode of the sorted params)
        body_hash = hashlib.sha512(body.encode()).hexdigest() if body else _EMPTY_SHA512
        payload = "\n".join([request.method.upper(), request.path, unquote(query), body_hash, str(ts_raw)])
        expected = hmac.new(acct.secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
        if not hmac.compare_digest(expected, (sign or "").lower()):
            raise GateError(401, "INVALID_SIGNATURE", "Signature mismatch")
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise GateError(400, "INVALID_REQUEST_BODY", "Request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise GateError(400, "INVALID_REQUEST_BODY", "Request body must be a JSON object")
            params.update({k: (v if isinstance(v, (dict, list)) or v is None else
                               ("true" if v is True else "false" if v is False else str(v)))
                           for k, v in data.items()})
        params.update(request.match_info)
        request[PARAMS] = params
        request[RAW_BODY] = body
        return key  # type: ignore[return-value]

    # ------------------------------------------------------------------ rate limits
    def _limit_key(self, request: web.Request, body: str) -> tuple[str, tuple[str, ...]] | None:
        path = request.path
        if not path.startswith(PREFIX + "/"):
            return None
        key = request.headers.get("KEY")
        if key is None or key not in self.engine.accounts:
            host = request.remote or "?"
            return "public", ("ip", host, path)
        if request.method == "POST" and path == f"{PREFIX}/spot/orders":
            try:
                pair = str(json.loads(body).get("currency_pair", "")) if body else ""
            except (ValueError, AttributeError):
                pair = ""
            return "order_create", ("uid", key, "create", pair)
        if path.startswith(f"{PREFIX}/spot/orders/"):
            if request.method == "DELETE":
                return "order_cancel", ("uid", key, "cancel")
            path = f"{PREFIX}/spot/orders/{{order_id}}"
        return "private", ("uid", key, request.method, path)

    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        body = await request.text() if request.body_exists else ""
        found = self._limit_key(request, body)
        if found is None:
            return None
        group, bucket = found
        limit, window = self.limits[group]
        now = time.time()
        with self._lock:
            hits = self._hits.setdefault(bucket, deque())
            while hits and now - hits[0] >= window:
                hits.popleft()
            if len(hits) >= limit:
                rec.error = "TOO_MANY_REQUESTS"
                reset_ms = int((hits[0] + window) * 1000) + self.engine.clock.skew_ms
                return web.json_response({"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"},
                                         status=429, headers=self._limit_headers(limit, 0, reset_ms))
            hits.append(now)
            request[LIMIT_INFO] = (limit, limit - len(hits), int((hits[0] + window) * 1000))
        return None

    @staticmethod
    def _limit_headers(limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
        return {"X-Gate-RateLimit-Requests-Remain": str(remaining), "X-Gate-RateLimit-Limit": str(limit),
                "X-Gate-RateLimit-Reset-Timestamp": str(reset_ms)}

    def decorate(self, request: web.Request, response: web.StreamResponse, rec: RequestRecord) -> None:
        info = request.get(LIMIT_INFO)
        if info is not None and "X-Gate-RateLimit-Limit" not in response.headers:
            response.headers.update(self._limit_headers(*info))

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            resp: web.Response = web.json_response(
                {"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"}, status=429,
                headers=self._limit_headers(10, 0, self.engine.now_ms() + 1000))
        elif fault.body is None:
            resp = web.Response(status=fault.status, text=default_error_page(fault.status), content_type="text/html")
        else:
            resp = web.Response(status=fault.status, text=fault.body, content_type="application/json")
        for k, v in fault.headers.items():
            resp.headers[k] = v
        return resp

    # ------------------------------------------------------------------ helpers
    def _pair(self, p: dict[str, Any], required: bool = True) -> Instrument | None:
        pair = p.get("currency_pair")
        if not pair:
            if required:
                raise GateError(400, "MISSING_REQUIRED_PARAM", "Missing required parameter: currency_pair")
            return None
        ins = self.engine.by_venue_id.get(str(pair).upper())
        if ins is None:
            raise GateError(400, "INVALID_CURRENCY_PAIR", f"Invalid currency pair: {pair}")
        return ins

    @staticmethod
    def _account(p: dict[str, Any]) -> None:
        account = p.get("account") or "spot"
        if account != "spot":
            raise GateError(400, "INVALID_PARAM_VALUE", f"account {account} is not served by this emulator (spot only)")

    @staticmethod
    def _int(p: dict[str, Any], name: str, default: int | None = None) -> int | None:
        v = p.get(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid {name}: {v}") from None

    def _decimal(self, p: dict[str, Any], name: str) -> Decimal | None:
        v = p.get(name)
        if v is None or v == "":
            return None
        try:
            d = Decimal(str(v))
        except Exception:
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid {name}: {v}") from None
        if not d.is_finite() or d < 0:
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid {name}: {v}")
        return d

    def _page(self, items: list, p: dict[str, Any], default: int = 100) -> list:
        limit = self._int(p, "limit", default) or default
        page = self._int(p, "page", 1) or 1
        if not 1 <= limit <= 1000 or page < 1:
            raise GateError(400, "INVALID_PARAM_VALUE", "limit must be in [1, 1000] and page >= 1")
        return items[(page - 1) * limit: page * limit]

    def order_json(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        if o.is_open:
            status, finish_as = "open", "open"
        elif o.status == FILLED:
            status, finish_as = "closed", "filled"
        elif o.status == EXPIRED:
            status, finish_as = "cancelled", o.time_in_force.lower()  # "ioc" / "fok"
        else:
            status, finish_as = "cancelled", "cancelled"
        amount = o.quote_qty if o.quote_qty is not None else o.qty
        return {
            "id": str(o.seq),
            "text": o.client_order_id or "apiv4",
            "amend_text": "-",
            "create_time": str(o.created_ms // 1000),
            "update_time": str(o.updated_ms // 1000),
            "create_time_ms": o.created_ms,
            "update_time_ms": o.updated_ms,
            "status": status,
            "currency_pair": ins.venue_id,
            "type": "market" if o.type == "MARKET" else "limit",
            "account": "spot",
            "side": "buy" if o.side == "BUY" else "sell",
            "amount": s(amount),
            "price": s(o.price) if o.price is not None else "0",
            "time_in_force": o.extra.get("tif", o.time_in_force.lower()),
            "iceberg": "0",
            # what was not filled, also once the order finished (a cancelled order keeps its "left")
            "left": s(amount - (o.cum_quote if o.quote_qty is not None else o.filled)) if o.status != FILLED else "0",
            "filled_amount": s(o.filled),
            "fill_price": s(o.cum_quote),
            "filled_total": s(o.cum_quote),
            "avg_deal_price": s(o.avg_price) if o.filled > 0 else "0",
            "fee": s(o.fee),
            "fee_currency": o.fee_asset,
            "point_fee": "0",
            "gt_fee": "0",
            "gt_maker_fee": "0",
            "gt_taker_fee": "0",
            "gt_discount": False,
            "rebated_fee": "0",
            "rebated_fee_currency": ins.quote,
            "finish_as": finish_as,
            "stp_id": 0,
            "stp_act": "-",
        }

    def trade_json(self, f: Fill) -> dict[str, Any]:
        ins = self.engine.instruments[f.symbol]
        o = self.engine.orders[f.order_seq]
        return {
            "id": str(f.id),
            "create_time": str(f.time_ms // 1000),
            "create_time_ms": f"{f.time_ms}.000",
            "currency_pair": ins.venue_id,
            "side": "buy" if f.side == "BUY" else "sell",
            "role": "maker" if f.is_maker else "taker",
            "amount": s(f.qty),
            "price": s(f.price),
            "order_id": str(f.order_seq),
            "fee": s(f.fee),
            "fee_currency": f.fee_asset,
            "point_fee": "0",
            "gt_fee": "0",
            "amend_text": "-",
            "sequence_id": str(f.id),
            "text": o.client_order_id or "apiv4",
            "deal": s(f.quote_qty),
        }

    # ------------------------------------------------------------------ public endpoints
    def server_time(self, p: dict[str, Any]) -> Any:
        return {"server_time": self.engine.now_ms()}

    def currencies(self, p: dict[str, Any]) -> Any:
        codes = sorted({c for ins in self.engine.instruments.values() for c in (ins.base, ins.quote)})
        return [{"currency": c, "name": c, "delisted": False, "withdraw_disabled": False, "withdraw_delayed": False,
                 "deposit_disabled": False, "trade_disabled": False, "fixed_rate": "", "chain": c,
                 "chains": [{"name": c, "addr": "", "withdraw_disabled": False, "withdraw_delayed": False,
                             "deposit_disabled": False}]} for c in codes]

    def _pair_json(self, ins: Instrument) -> dict[str, Any]:
        fee_pct = s(self.engine.fee_rate * 100)
        return {
            "id": ins.venue_id, "base": ins.base, "base_name": ins.base, "quote": ins.quote, "quote_name": ins.quote,
            "fee": fee_pct, "min_base_amount": s(ins.min_qty), "min_quote_amount": s(ins.min_notional),
            "max_base_amount": s(ins.max_qty), "max_quote_amount": ins.extra["max_quote"],
            "amount_precision": ins.extra["amount_precision"], "precision": ins.extra["precision"],
            "trade_status": "tradable", "sell_start": 0, "buy_start": 0, "delisting_time": 0,
            "type": "normal", "trade_url": f"https://www.gate.com/trade/{ins.venue_id}", "st_tag": False,
        }

    def currency_pairs(self, p: dict[str, Any]) -> Any:
        return [self._pair_json(ins) for ins in self.engine.instruments.values()]

    def margin_pairs(self, p: dict[str, Any]) -> Any:
        return []  # no margin trading emulated

    def _ticker(self, ins: Instrument) -> dict[str, Any]:
        return {
            "currency_pair": ins.venue_id, "last": s(ins.mark), "lowest_ask": s(ins.mark + ins.tick_size),
            "lowest_size": "1", "highest_bid": s(ins.mark - ins.tick_size), "highest_size": "1",
            "change_percentage": "0", "base_volume": "0", "quote_volume": "0", "high_24h": s(ins.mark),
            "low_24h": s(ins.mark),
        }

    def tickers(self, p: dict[str, Any]) -> Any:
        ins = self._pair(p, required=False)
        return [self._ticker(i) for i in ([ins] if ins else self.engine.instruments.values())]

    def order_book(self, p: dict[str, Any]) -> Any:
        ins = self._pair(p)
        assert ins is not None
        n = self._int(p, "limit", 10) or 10
        if not 1 <= n <= 1000:
            raise GateError(400, "INVALID_PARAM_VALUE", "limit must be in [1, 1000]")
        levels = min(n, 20)
        now = self.engine.now_ms()
        book: dict[str, Any] = {"current": now, "update": now,
                                "asks": [[s(ins.mark + ins.tick_size * (i + 1)), "1"] for i in range(levels)],
                                "bids": [[s(ins.mark - ins.tick_size * (i + 1)), "1"] for i in range(levels)]}
        if p.get("with_id") == "true":
            book = {"id": now, **book}
        return book

    def candlesticks(self, p: dict[str, Any]) -> Any:
        ins = self._pair(p)
        assert ins is not None
        interval = p.get("interval") or "30m"
        if interval not in _INTERVALS:
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid interval: {interval}")
        ms = _INTERVALS[interval]
        limit, frm, to = self._int(p, "limit"), self._int(p, "from"), self._int(p, "to")
        if limit is not None and frm is not None:
            raise GateError(400, "INVALID_PARAM_VALUE", "limit cannot be used together with from")
        if limit is not None and not 1 <= limit <= 1000:
            raise GateError(400, "INVALID_PARAM_VALUE", "limit must be in [1, 1000]")
        if frm is not None and to is not None and (to - frm) * 1000 // ms >= 1000:
            raise GateError(400, "INVALID_PARAM_VALUE", "Too many points requested: at most 1000 points allowed")
        rows = self.engine.aggregated_candles(ins.symbol, ms) or []
        if frm is not None:
            rows = [c for c in rows if c.open_ms >= frm * 1000]
        if to is not None:
            rows = [c for c in rows if c.open_ms <= to * 1000]
        rows = rows[-(limit or 100):] if frm is None else rows
        return [[str(c.open_ms // 1000), s(c.volume * c.close), s(c.close), s(c.high), s(c.low), s(c.open),
                 s(c.volume), "true"] for c in rows]

    # ------------------------------------------------------------------ private endpoints
    def accounts(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        wanted = p.get("currency")
        return [{"currency": a, "available": s(r[0]), "locked": s(r[1]), "update_id": acct.update_ms,
                 "refresh_time": acct.update_ms}
                for a, r in acct.balances.items() if wanted is None or a == wanted]

    def create_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._account(p)
        ins = self._pair(p)
        assert ins is not None
        side = p.get("side")
        if side not in ("buy", "sell"):
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid side: {side}")
        otype = p.get("type") or "limit"
        if otype not in ("limit", "market"):
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid type: {otype}")
        amount = self._decimal(p, "amount")
        if amount is None or amount == 0:
            raise GateError(400, "MISSING_REQUIRED_PARAM", "Missing required parameter: amount")
        price = self._decimal(p, "price")
        tif = (p.get("time_in_force") or ("ioc" if otype == "market" else "gtc")).lower()
        if tif not in ("gtc", "ioc", "poc", "fok"):
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid time_in_force: {tif}")
        text = p.get("text")
        if text is not None and not _TEXT_RE.match(text):
            raise GateError(400, "INVALID_PARAM_VALUE", "text must start with 't-' and contain at most 28 "
                                                        "characters of [0-9A-Za-z_.-] after it")
        quote_qty: Decimal | None = None
        qty: Decimal | None = amount
        if otype == "market":
            if tif not in ("ioc", "fok"):
                raise GateError(400, "INVALID_PARAM_VALUE", "market order only supports ioc and fok")
            price = None
            if side == "buy":  # a market buy's amount is the quote to spend
                quote_qty, qty = amount, None
                if amount < ins.min_notional:
                    raise GateError(400, "INVALID_PARAM_VALUE",
                                    f"Your order size {s(amount)} {ins.quote} is too small. "
                                    f"The minimum is {s(ins.min_notional)} {ins.quote}")
        else:
            if price is None or price == 0:
                raise GateError(400, "MISSING_REQUIRED_PARAM", "Missing required parameter: price")
            if not is_multiple(price, ins.tick_size):
                raise GateError(400, "INVALID_PRECISION", f"Invalid price precision: {s(price)}")
        if qty is not None:
            if not is_multiple(qty, ins.step_size):
                raise GateError(400, "INVALID_PRECISION", f"Invalid amount precision: {s(qty)}")
            if qty < ins.min_qty:
                raise GateError(400, "INVALID_PARAM_VALUE", f"Your order size {s(qty)} {ins.base} is too small. "
                                                            f"The minimum is {s(ins.min_qty)} {ins.base}")
            if qty > ins.max_qty:
                raise GateError(400, "AMOUNT_TOO_MUCH", f"Amount {s(qty)} exceeds the maximum {s(ins.max_qty)}")
            notional = qty * (price if price is not None else ins.mark)
            if notional < ins.min_notional:
                raise GateError(400, "INVALID_PARAM_VALUE", f"Your order size {s(notional)} {ins.quote} is too "
                                                            f"small. The minimum is {s(ins.min_notional)} {ins.quote}")
        elif floor_to(quote_qty / ins.mark, ins.step_size) <= 0:  # type: ignore[operator]
            raise GateError(400, "INVALID_PARAM_VALUE", f"Your order size {s(quote_qty)} {ins.quote} is too small.")
        try:
            o = self.engine.place(
                key, ins.symbol, side.upper(), otype.upper(), qty=qty, quote_qty=quote_qty, price=price,
                client_order_id=None, time_in_force="GTC" if tif == "poc" else tif.upper(),
                post_only=tif == "poc", extra={"tif": tif},
            )
            # Gate does not refuse a repeated text (the engine would among open orders): set it after
            o.client_order_id = text
        except EngineError as e:
            if e.kind == "insufficient_funds":
                raise GateError(400, "BALANCE_NOT_ENOUGH", "Not enough balance") from None
            if e.kind == "would_take":
                raise GateError(400, "POC_FILL_IMMEDIATELY", "Order would match and take immediately so its "
                                                             "cancelled") from None
            raise GateError(400, "INVALID_PARAM_VALUE", e.detail or e.kind) from None
        return self.order_json(o)

    def _lookup(self, key: str, ins: Instrument, ref: str) -> Order:
        """The order ``ref`` (an id, or a ``t-`` text while open / shortly after it finished)."""
        o: Order | None = None
        if ref.startswith("t-"):
            now = self.engine.now_ms()
            candidates = [x for x in self.engine.account_orders(key, ins.symbol) if x.client_order_id == ref
                          and (x.is_open or (x.closed_ms or 0) >= now - self.text_lookup_s * 1000)]
            o = max(candidates, key=lambda x: x.seq) if candidates else None
        elif ref.isdigit():
            o = self.engine.orders.get(int(ref))
        if o is None or o.account != key or o.symbol != ins.symbol:
            raise GateError(404, "ORDER_NOT_FOUND", "Order not found")
        return o

    def get_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._account(p)
        ins = self._pair(p)
        assert ins is not None
        return self.order_json(self._lookup(key, ins, p["order_id"]))

    def cancel_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._account(p)
        ins = self._pair(p)
        assert ins is not None
        o = self._lookup(key, ins, p["order_id"])
        if not o.is_open:
            raise GateError(404, "ORDER_NOT_FOUND", "Order not found")
        self.engine.cancel(o)
        assert o.status == CANCELED
        return self.order_json(o)

    def open_orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._account(p)
        # Gate groups open orders by pair and lists every pair (currency_pair is not a filter here).
        by_pair: dict[str, list[Order]] = {}
        for o in sorted(self.engine.open_orders(key), key=lambda o: o.seq, reverse=True):
            by_pair.setdefault(o.symbol, []).append(o)
        out = []
        for symbol, orders in by_pair.items():
            ins = self.engine.instruments[symbol]
            out.append({"currency_pair": ins.venue_id, "total": len(orders),
                        "orders": [self.order_json(o) for o in orders[:100]]})
        return self._page(out, p)

    def list_orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._account(p)
        status = p.get("status")
        if status not in ("open", "finished"):
            raise GateError(400, "INVALID_PARAM_VALUE", f"Invalid status: {status}")
        ins = self._pair(p, required=status == "open")
        orders = self.engine.account_orders(key, ins.symbol if ins else None)
        orders = [o for o in orders if o.is_open == (status == "open")]
        if p.get("side"):
            orders = [o for o in orders if o.side.lower() == p["side"]]
        frm, to = self._int(p, "from"), self._int(p, "to")
        if frm is not None:
            orders = [o for o in orders if o.created_ms >= frm * 1000]
        if to is not None:
            orders = [o for o in orders if o.created_ms <= to * 1000]
        orders.sort(key=lambda o: o.seq, reverse=True)  # newest first
        return [self.order_json(o) for o in self._page(orders, p)]

    def my_trades(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._account(p)
        ins = self._pair(p, required=False)
        fault: Fault | None = request.get(TRADES_FAULT)
        fills = self.engine.account_fills(key, ins.symbol if ins else None)
        if p.get("order_id"):
            fills = [f for f in fills if str(f.order_seq) == p["order_id"]]
        frm, to = self._int(p, "from"), self._int(p, "to")
        if fault is None or fault.mode != "overlap":
            if frm is not None:
                fills = [f for f in fills if f.time_ms >= frm * 1000]
            if to is not None:
                fills = [f for f in fills if f.time_ms <= to * 1000]
        fills = sorted(fills, key=lambda f: f.id, reverse=True)  # newest first
        out = [self.trade_json(f) for f in self._page(fills, p)]
        if fault is not None and fault.mode == "duplicate":
            out = [x for t in out for x in (t, dict(t))]
        elif fault is not None and fault.mode == "reorder":
            out.reverse()
        return out


__all__ = ["DEFAULT_LIMITS", "GateDialect", "default_instruments"]
