"""Bybit v5 spot REST dialect (unified trading account).

Public: ``/v5/market/time``, ``instruments-info``, ``tickers``, ``orderbook``, ``kline``.
Private: ``/v5/account/wallet-balance``, ``/v5/asset/coin/query-info`` (ccxt's
``fetch_currencies`` when keys are set), ``/v5/order/create``, ``/v5/order/cancel``,
``/v5/order/realtime``, ``/v5/order/history``, ``/v5/execution/list``.

Authentication as Bybit v5 does it: headers ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``,
``X-BAPI-RECV-WINDOW`` (default 5000) and ``X-BAPI-SIGN`` = hex HMAC-SHA256(secret,
timestamp + api_key + recv_window + (raw query string | raw JSON body)). The timestamp must
satisfy ``server - recv_window <= timestamp < server + 1000``. Every answer is
``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; business errors come with HTTP 200,
an unknown key or a bad signature with HTTP 401 (retCode 10003 / 10004).

Rate limits as documented (bybit-exchange.github.io/docs/v5/rate-limit): per UID and endpoint
per second (order create/cancel 20/s, order and execution queries and wallet balance 50/s),
over which the answer is HTTP 200 ``retCode 10006 "Too many visits!"``; every private answer
carries ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` and ``X-Bapi-Limit-Reset-Timestamp``. All
traffic of one IP is capped at 600 requests per 5 s, over which the IP gets HTTP 403
"access too frequent" for ``ip_ban_s``.

Order life cycle follows the UTA spot rules: an ``orderLinkId`` can never be reused
(170141, whatever the state of the first order); a PostOnly order that would take is accepted
and then cancelled (``rejectReason`` EC_PostOnlyWillTakeLiquidity); a market buy's ``qty`` is in
the quote coin unless ``marketUnit=baseCoin``; the buyer pays the fee in the base coin, the
seller in the quote coin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .dialect import PARAMS, RAW_BODY, RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import (
    CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, REJECTED, Engine, EngineError, Fill, Instrument, Order,
    ZERO, dec, floor_to, is_multiple,
)
from .faults import Fault, RequestRecord

#: Per-UID, per-endpoint limits (requests per second) of the endpoints served.
DEFAULT_LIMITS: dict[str, int] = {
    "/v5/order/create": 20,
    "/v5/order/cancel": 20,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/asset/coin/query-info": 5,
}

_INTERVALS = {"1": 60_000, "3": 180_000, "5": 300_000, "15": 900_000, "30": 1_800_000, "60": 3_600_000,
              "120": 7_200_000, "240": 14_400_000, "360": 21_600_000, "720": 43_200_000, "D": 86_400_000,
              "W": 604_800_000}
_STATUS = {NEW: "New", PARTIALLY_FILLED: "PartiallyFilled", FILLED: "Filled", CANCELED: "Cancelled",
           EXPIRED: "Cancelled", REJECTED: "Rejected"}
_LINK_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_EXEC_NS = uuid.UUID("6f1d1c9e-5b7a-4c1e-9d3a-2b8e4f6a7c01")


def default_instruments() -> list[Instrument]:
    """BTC/USDT, ETH/USDT, ETH/BTC with Bybit-like lot size and price filters."""
    return [
        Instrument("BTC/USDT", "BTC", "USDT", "BTCUSDT", tick_size="0.01", step_size="0.000001",
                   min_qty="0.000048", max_qty="71.73956243", min_notional="1", mark="60000",
                   extra={"max_amt": "2000000", "quote_precision": "0.00000001"}),
        Instrument("ETH/USDT", "ETH", "USDT", "ETHUSDT", tick_size="0.01", step_size="0.00001",
                   min_qty="0.00062", max_qty="1229.2336343", min_notional="1", mark="3000",
                   extra={"max_amt": "2000000", "quote_precision": "0.0000001"}),
        Instrument("ETH/BTC", "ETH", "BTC", "ETHBTC", tick_size="0.000001", step_size="0.00001",
                   min_qty="0.0001", max_qty="500", min_notional="0.000001", mark="0.05",
                   extra={"max_amt": "5", "quote_precision": "0.0000001"}),
    ]


def s(x: Decimal | None) -> str:
    """Bybit's decimal strings: plain notation, no exponent, trailing zeros dropped."""
    if x is None:
        return "0"
    t = format(x.normalize(), "f")
    return t


class BybitError(Exception):
    def __init__(self, code: int, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


class BybitDialect(Dialect):
    """Bybit v5 spot (unified trading account) on an :class:`Engine`; see the module docstring."""

    name = "bybit"
    ccxt_id = "bybit"
    # Spot markets only; a UTA 2.0 account (as every new Bybit account), so ccxt does not probe
    # /v5/user/query-api and /v5/account/info before each balance/order call.
    ccxt_options = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                    "enableUnifiedMargin": False, "enableUnifiedAccount": True, "unifiedMarginStatus": 6}
    url_keys = ("api", "test", "demotrading")
    my_trades_path = "/v5/execution/list"
    create_order_path = "/v5/order/create"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", limits: dict[str, int] | None = None,
                 ip_limit: int = 600, ip_window_s: float = 5.0, ip_ban_s: float = 600.0,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("bybit", instruments or default_instruments(), fee_rate=dec(fee_rate),
                        fee_in="received", first_order_id=2_088_690_093_937_486_080, first_trade_id=1)
        super().__init__(emulator, engine)
        self._lock = threading.Lock()
        self.limits = dict(DEFAULT_LIMITS)
        self.limits.update(limits or {})
        self.ip_limit, self.ip_window_s, self.ip_ban_s = ip_limit, ip_window_s, ip_ban_s
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._ip_hits: deque[float] = deque()
        self.banned_until = 0.0

    def rate_limited(self, rec: RequestRecord) -> bool:
        # Bybit refuses over the per-UID limit with HTTP 200 and retCode 10006, over the IP limit with 403
        return rec.status in (403, 418, 429) or rec.error == 10006

    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        # The documented per-second limits already allow 20+ polls a second: nothing to relax.
        return {}, None

    def configure(self, *, limits: dict[str, int] | None = None, ip_limit: int | None = None,
                  ip_window_s: float | None = None, ip_ban_s: float | None = None) -> None:
        """Change the limits at run time (tests); clears usage and any IP ban."""
        with self._lock:
            if limits:
                self.limits.update(limits)
            if ip_limit is not None:
                self.ip_limit = ip_limit
            if ip_window_s is not None:
                self.ip_window_s = ip_window_s
            if ip_ban_s is not None:
                self.ip_ban_s = ip_ban_s
            self._hits.clear()
            self._ip_hits.clear()
            self.banned_until = 0.0

    # ------------------------------------------------------------------ ids
    @staticmethod
    def exec_id(f: Fill) -> str:
        """Bybit execution ids are UUIDs; derived from the engine's fill id (stable)."""
        return str(uuid.uuid5(_EXEC_NS, str(f.id)))

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub, priv = self._wrap_public, self._wrap_private
        return [
            ("GET", "/v5/market/time", pub(self.server_time)),
            ("GET", "/v5/market/instruments-info", pub(self.instruments_info)),
            ("GET", "/v5/market/tickers", pub(self.tickers)),
            ("GET", "/v5/market/orderbook", pub(self.orderbook)),
            ("GET", "/v5/market/kline", pub(self.kline)),
            ("GET", "/v5/account/wallet-balance", priv(self.wallet_balance)),
            ("GET", "/v5/asset/coin/query-info", priv(self.coin_info)),
            ("POST", "/v5/order/create", priv(self.create_order)),
            ("POST", "/v5/order/cancel", priv(self.cancel_order)),
            ("GET", "/v5/order/realtime", priv(self.order_realtime)),
            ("GET", "/v5/order/history", priv(self.order_history)),
            ("GET", "/v5/execution/list", priv(self.execution_list)),
        ]

    def _envelope(self, result: Any, code: int = 0, msg: str = "OK", status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result if result is not None else {},
                "retExtInfo": {}, "time": self.engine.now_ms()}
        return web.json_response(body, status=status, headers=headers)

    def _wrap_public(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            p = dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
            try:
                with self.engine.lock:
                    result = fn(p)
            except BybitError as e:
                rec.error = e.code
                return self._envelope({}, e.code, e.msg, e.status)
            return self._envelope(result)
        return handler

    def _wrap_private(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                key = await self._authenticate(request, rec)
                p = request[PARAMS]
                with self.engine.lock:
                    result = fn(p, key, request)
            except BybitError as e:
                rec.error = e.code
                return self._envelope({}, e.code, e.msg, e.status)
            return self._envelope(result)
        return handler

    async def _authenticate(self, request: web.Request, rec: RequestRecord) -> str:
        key = request.headers.get("X-BAPI-API-KEY", "")
        ts_raw = request.headers.get("X-BAPI-TIMESTAMP", "")
        sign = request.headers.get("X-BAPI-SIGN", "")
        if not key or not ts_raw or not sign:
            raise BybitError(10003, "API key is invalid.", 401)
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise BybitError(10003, "API key is invalid.", 401)
        rec.api_key = key
        recv_raw = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        try:
            ts, recv = int(ts_raw), int(recv_raw)
        except ValueError:
            raise BybitError(10001, "params error: X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW") from None
        server = self.engine.now_ms()
        if not (server - recv <= ts < server + 1000):
            raise BybitError(10002, "invalid request, please check your server timestamp or recv_window param. "
                                    f"req_timestamp[{ts}],server_timestamp[{server}],recv_window[{recv}]")
        body = await request.text() if request.body_exists else ""
        query = request.rel_url.raw_query_string
        payload = ts_raw + key + recv_raw + (body if request.method == "POST" else query)
        expected = hmac.new(acct.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sign.lower()):
            raise BybitError(10004, f"error sign! origin_string[{payload}]", 401)
        if request.method == "POST":
            try:
                params = json.loads(body) if body else {}
            except ValueError:
                raise BybitError(10001, "request body is not valid JSON") from None
            if not isinstance(params, dict):
                raise BybitError(10001, "request body is not a JSON object")
            params = {k: (v if isinstance(v, (dict, list)) or v is None else
                          ("true" if v is True else "false" if v is False else str(v))) for k, v in params.items()}
        else:
            params = dict(parse_qsl(query, keep_blank_values=True))
        request[PARAMS] = params
        request[RAW_BODY] = body
        return key

    # ------------------------------------------------------------------ rate limits
    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        now = time.time()
        with self._lock:
            if self.banned_until > now:
                rec.error = 403
                return web.Response(status=403, text="access too frequent", content_type="text/plain")
            while self._ip_hits and now - self._ip_hits[0] >= self.ip_window_s:
                self._ip_hits.popleft()
            if len(self._ip_hits) >= self.ip_limit:
                self.banned_until = now + self.ip_ban_s
                rec.error = 403
                return web.Response(status=403, text="access too frequent", content_type="text/plain")
            self._ip_hits.append(now)
            key = request.headers.get("X-BAPI-API-KEY")
            limit = self.limits.get(request.path)
            if key is None or limit is None or key not in self.engine.accounts:
                return None
            hits = self._hits.setdefault((key, request.path), deque())
            while hits and now - hits[0] >= 1.0:
                hits.popleft()
            if len(hits) >= limit:
                rec.error = 10006
                reset = int((hits[0] + 1.0) * 1000) + self.engine.clock.skew_ms
                return self._envelope({}, 10006, "Too many visits!", headers=self._limit_headers(limit, 0, reset))
            hits.append(now)
        return None

    @staticmethod
    def _limit_headers(limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}

    def decorate(self, request: web.Request, response: web.StreamResponse, rec: RequestRecord) -> None:
        limit = self.limits.get(request.path)
        key = request.headers.get("X-BAPI-API-KEY")
        if limit is None or key is None or "X-Bapi-Limit" in response.headers:
            return
        now = time.time()
        with self._lock:
            hits = self._hits.get((key, request.path), deque())
            used = sum(1 for t in hits if now - t < 1.0)
        response.headers.update(self._limit_headers(limit, max(0, limit - used), self.engine.now_ms()))

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            # Bybit's "system level frequency protection" 429 carries its usual envelope.
            limit = self.limits.get(rec.path, 20)
            resp = self._envelope({}, 10006, "Too many visits!", status=429,
                                  headers=self._limit_headers(limit, 0, self.engine.now_ms() + 1000))
        elif fault.body is None and fault.status == 403:
            resp = web.Response(status=403, text="access too frequent", content_type="text/plain")
        elif fault.body is None:
            resp = web.Response(status=fault.status, text=default_error_page(fault.status), content_type="text/html")
        else:
            resp = web.Response(status=fault.status, text=fault.body, content_type="application/json")
        for k, v in fault.headers.items():
            resp.headers[k] = v
        return resp

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _category(p: dict[str, Any]) -> None:
        cat = p.get("category")
        if not cat:
            raise BybitError(10001, "params error: category is required")
        if cat != "spot":
            raise BybitError(10001, f"params error: category {cat} is not served by this emulator (spot only)")

    def _instrument(self, p: dict[str, Any], required: bool = True) -> Instrument | None:
        sym = p.get("symbol")
        if not sym:
            if required:
                raise BybitError(10001, "params error: symbol is required")
            return None
        ins = self.engine.by_venue_id.get(str(sym).upper())
        if ins is None:
            raise BybitError(10001, "Not supported symbols")
        return ins

    def _int(self, p: dict[str, Any], name: str, default: int | None = None) -> int | None:
        v = p.get(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except (TypeError, ValueError):
            raise BybitError(10001, f"params error: {name} invalid") from None

    def _decimal(self, p: dict[str, Any], name: str) -> Decimal | None:
        v = p.get(name)
        if v is None or v == "":
            return None
        try:
            d = Decimal(str(v))
        except Exception:
            raise BybitError(10001, f"params error: {name} invalid") from None
        if not d.is_finite() or d <= 0:
            raise BybitError(10001, f"params error: {name} invalid")
        return d

    @staticmethod
    def _page(items: list, p: dict[str, Any], default: int, maximum: int) -> tuple[list, str]:
        try:
            limit = max(1, min(int(p.get("limit") or default), maximum))
            offset = int(p.get("cursor") or 0)
        except ValueError:
            raise BybitError(10001, "params error: limit or cursor invalid") from None
        chunk = items[offset:offset + limit]
        cursor = str(offset + limit) if offset + limit < len(items) else ""
        return chunk, cursor

    def order_json(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        status = _STATUS[o.status]
        if o.status in (CANCELED, EXPIRED) and o.filled > 0:
            status = "PartiallyFilledCanceled"
        leaves = o.remaining if o.is_open else ZERO
        cancel_type = "UNKNOWN"
        reject = "EC_NoError"
        if o.status in (CANCELED, EXPIRED):
            if o.extra.get("post_only_rejected"):
                cancel_type, reject = "CancelByPostOnly", "EC_PostOnlyWillTakeLiquidity"
            elif o.status == EXPIRED:
                cancel_type = "CancelByIOC" if o.time_in_force != "FOK" else "CancelByFOK"
            else:
                cancel_type = "CancelByUser"
        qty = o.extra.get("qty_sent", o.qty)
        return {
            "orderId": str(o.seq),
            "orderLinkId": o.client_order_id or "",
            "blockTradeId": "",
            "symbol": ins.venue_id,
            "price": s(o.price) if o.price is not None else "0",
            "qty": s(qty),
            "side": "Buy" if o.side == "BUY" else "Sell",
            "isLeverage": "0",
            "positionIdx": 0,
            "orderStatus": status,
            "cancelType": cancel_type,
            "rejectReason": reject,
            "avgPrice": s(o.avg_price) if o.filled > 0 else "",
            "leavesQty": s(leaves),
            "leavesValue": s(leaves * o.price) if o.price is not None else "0",
            "cumExecQty": s(o.filled),
            "cumExecValue": s(o.cum_quote),
            "cumExecFee": s(o.fee),
            "cumFeeDetail": {o.fee_asset: s(o.fee)} if o.fee > 0 else {},
            "timeInForce": o.extra.get("tif", o.time_in_force),
            "orderType": "Market" if o.type == "MARKET" else "Limit",
            "stopOrderType": "",
            "orderIv": "",
            "marketUnit": o.extra.get("market_unit", ""),
            "triggerPrice": "0",
            "takeProfit": "0",
            "stopLoss": "0",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 0,
            "triggerBy": "",
            "lastPriceOnCreated": s(o.extra.get("mark_on_created")),
            "reduceOnly": False,
            "closeOnTrigger": False,
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpslMode": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "placeType": "",
            "createdTime": str(o.created_ms),
            "updatedTime": str(o.updated_ms),
        }

    def exec_json(self, f: Fill) -> dict[str, Any]:
        ins = self.engine.instruments[f.symbol]
        o = self.engine.orders[f.order_seq]
        return {
            "symbol": ins.venue_id,
            "orderId": str(o.seq),
            "orderLinkId": o.client_order_id or "",
            "side": "Buy" if f.side == "BUY" else "Sell",
            "orderPrice": s(o.price) if o.price is not None else "0",
            "orderQty": s(o.extra.get("qty_sent", o.qty)),
            "leavesQty": s(o.remaining if o.is_open else ZERO),
            "orderType": "Market" if o.type == "MARKET" else "Limit",
            "stopOrderType": "",
            "execFee": s(f.fee),
            "feeCurrency": f.fee_asset,
            "execId": self.exec_id(f),
            "execPrice": s(f.price),
            "execQty": s(f.qty),
            "execType": "Trade",
            "execValue": s(f.quote_qty),
            "execTime": str(f.time_ms),
            "isMaker": f.is_maker,
            "feeRate": s(self.engine.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": "",
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": "",
            "seq": f.id,
            "marketUnit": o.extra.get("market_unit", ""),
        }

    # ------------------------------------------------------------------ public endpoints
    def server_time(self, p: dict[str, Any]) -> Any:
        now = self.engine.now_ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def instruments_info(self, p: dict[str, Any]) -> Any:
        self._category(p)
        wanted = self._instrument(p, required=False)
        rows = []
        for ins in ([wanted] if wanted else self.engine.instruments.values()):
            rows.append({
                "symbol": ins.venue_id, "baseCoin": ins.base, "quoteCoin": ins.quote, "innovation": "0",
                "status": "Trading", "marginTrading": "none", "stTag": "0",
                "lotSizeFilter": {"basePrecision": s(ins.step_size), "quotePrecision": ins.extra["quote_precision"],
                                  "minOrderQty": s(ins.min_qty), "maxOrderQty": s(ins.max_qty),
                                  "minOrderAmt": s(ins.min_notional), "maxOrderAmt": ins.extra["max_amt"]},
                "priceFilter": {"tickSize": s(ins.tick_size)},
                "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
            })
        return {"category": "spot", "list": rows, "nextPageCursor": ""}

    def _ticker(self, ins: Instrument) -> dict[str, Any]:
        return {
            "symbol": ins.venue_id, "bid1Price": s(ins.mark - ins.tick_size), "bid1Size": "1",
            "ask1Price": s(ins.mark + ins.tick_size), "ask1Size": "1", "lastPrice": s(ins.mark),
            "prevPrice24h": s(ins.mark), "price24hPcnt": "0", "highPrice24h": s(ins.mark),
            "lowPrice24h": s(ins.mark), "turnover24h": "0", "volume24h": "0", "usdIndexPrice": "",
        }

    def tickers(self, p: dict[str, Any]) -> Any:
        self._category(p)
        ins = self._instrument(p, required=False)
        rows = [self._ticker(i) for i in ([ins] if ins else self.engine.instruments.values())]
        return {"category": "spot", "list": rows}

    def orderbook(self, p: dict[str, Any]) -> Any:
        self._category(p)
        ins = self._instrument(p)
        assert ins is not None
        n = self._int(p, "limit", 1) or 1
        if not 1 <= n <= 200:
            raise BybitError(10001, "params error: limit must be in [1, 200] for spot")
        levels = min(n, 20)
        now = self.engine.now_ms()
        return {
            "s": ins.venue_id,
            "b": [[s(ins.mark - ins.tick_size * (i + 1)), "1"] for i in range(levels)],
            "a": [[s(ins.mark + ins.tick_size * (i + 1)), "1"] for i in range(levels)],
            "ts": now, "u": now, "seq": now, "cts": now,
        }

    def kline(self, p: dict[str, Any]) -> Any:
        self._category(p)
        ins = self._instrument(p)
        assert ins is not None
        interval = p.get("interval") or ""
        if interval not in _INTERVALS:
            raise BybitError(10001, "Invalid period!")
        limit = self._int(p, "limit", 200) or 200
        if not 1 <= limit <= 1000:
            raise BybitError(10001, "params error: limit must be in [1, 1000]")
        rows = self.engine.aggregated_candles(ins.symbol, _INTERVALS[interval]) or []
        start, end = self._int(p, "start"), self._int(p, "end")
        if start is not None:
            rows = [c for c in rows if c.open_ms >= start]
        if end is not None:
            rows = [c for c in rows if c.open_ms <= end]
        rows = rows[-limit:]  # the newest `limit` candles of the range, newest first as Bybit sends them
        return {"category": "spot", "symbol": ins.venue_id,
                "list": [[str(c.open_ms), s(c.open), s(c.high), s(c.low), s(c.close), s(c.volume),
                          s(c.volume * c.close)] for c in reversed(rows)]}

    # ------------------------------------------------------------------ private endpoints
    def wallet_balance(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        account_type = p.get("accountType")
        if account_type != "UNIFIED":
            raise BybitError(10001, "accountType only support UNIFIED.")
        acct = self.engine.accounts[key]
        wanted = set(str(p["coin"]).split(",")) if p.get("coin") else None
        coins = []
        total = ZERO
        for asset, (free, locked) in acct.balances.items():
            if wanted is not None and asset not in wanted:
                continue
            wallet = free + locked
            coins.append({
                "coin": asset, "equity": s(wallet), "usdValue": "", "walletBalance": s(wallet),
                "locked": s(locked), "spotHedgingQty": "0", "borrowAmount": "0", "accruedInterest": "0",
                "totalOrderIM": "0", "totalPositionIM": "0", "totalPositionMM": "0", "unrealisedPnl": "0",
                "cumRealisedPnl": "0", "bonus": "0", "collateralSwitch": True, "marginCollateral": True,
                "availableToWithdraw": "", "availableToBorrow": "",
            })
            if asset == "USDT":
                total += wallet
        return {"list": [{
            "accountType": "UNIFIED", "accountIMRate": "0", "accountMMRate": "0", "accountLTV": "0",
            "totalEquity": s(total), "totalWalletBalance": s(total), "totalMarginBalance": s(total),
            "totalAvailableBalance": s(total), "totalPerpUPL": "0", "totalInitialMargin": "0",
            "totalMaintenanceMargin": "0", "coin": coins,
        }]}

    def coin_info(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        codes = sorted({c for ins in self.engine.instruments.values() for c in (ins.base, ins.quote)})
        return {"rows": [{
            "name": c, "coin": c, "remainAmount": "1000000",
            "chains": [{"chainType": c, "confirmation": "6", "withdrawFee": "0", "depositMin": "0",
                        "withdrawMin": "0", "chain": c, "chainDeposit": "1", "chainWithdraw": "1",
                        "minAccuracy": "8", "withdrawPercentageFee": "0", "contractAddress": ""}],
        } for c in codes]}

    def create_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._category(p)
        ins = self._instrument(p)
        assert ins is not None
        side = p.get("side")
        if side not in ("Buy", "Sell"):
            raise BybitError(170117, "Invalid side.")
        otype = p.get("orderType")
        if otype not in ("Market", "Limit"):
            raise BybitError(170116, "Invalid orderType.")
        qty = self._decimal(p, "qty")
        if qty is None:
            raise BybitError(10001, "params error: qty is required")
        price = self._decimal(p, "price")
        tif = p.get("timeInForce") or ("IOC" if otype == "Market" else "GTC")
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise BybitError(170115, "Invalid timeInForce.")
        if otype == "Limit" and price is None:
            raise BybitError(10001, "params error: price is required for Limit orders")
        link_id = p.get("orderLinkId") or None
        if link_id is not None and (len(link_id) > 36 or not set(link_id) <= _LINK_ID_OK):
            raise BybitError(170130, "Data sent for paramter 'orderLinkId' is not valid.")
        if link_id is not None and self.engine.find_by_client_id(key, link_id) is not None:
            raise BybitError(170141, "Duplicate clientOrderId.")
        market_unit = p.get("marketUnit") or ""
        if otype == "Market":
            if market_unit not in ("", "baseCoin", "quoteCoin"):
                raise BybitError(170130, "Data sent for paramter 'marketUnit' is not valid.")
            in_quote = market_unit == "quoteCoin" or (market_unit == "" and side == "Buy")
            if tif == "PostOnly":
                raise BybitError(170115, "Invalid timeInForce.")
            price = None
        else:
            in_quote = False
            if not is_multiple(price, ins.tick_size):  # type: ignore[arg-type]
                raise BybitError(170134, "Order price decimal too long.")
            if price > ins.max_price:  # type: ignore[operator]
                raise BybitError(170132, "Order price too high.")
        if in_quote:
            if not is_multiple(qty, dec(ins.extra["quote_precision"])):
                raise BybitError(170148, "Market order amount decimal too long.")
            if qty < ins.min_notional:
                raise BybitError(170140, "Order value exceeded lower limit.")
            base_qty = floor_to(qty / ins.mark, ins.step_size)
            quote_qty: Decimal | None = qty
        else:
            if not is_multiple(qty, ins.step_size):
                raise BybitError(170137, "Order volume decimal too long.")
            if qty < ins.min_qty:
                raise BybitError(170136, "Order quantity lower than the minimum.")
            if qty > ins.max_qty:
                raise BybitError(170135, "Order quantity too large.")
            notional = qty * (price if price is not None else ins.mark)
            if notional < ins.min_notional:
                raise BybitError(170140, "Order value exceeded lower limit.")
            if notional > dec(ins.extra["max_amt"]):
                raise BybitError(170124, "Order amount too large.")
            base_qty, quote_qty = qty, None
        if base_qty <= 0:
            raise BybitError(170136, "Order quantity lower than the minimum.")
        extra = {"tif": tif, "qty_sent": qty, "mark_on_created": ins.mark}
        if otype == "Market":
            extra["market_unit"] = "quoteCoin" if in_quote else "baseCoin"
        try:
            o = self.engine.place(
                key, ins.symbol, "BUY" if side == "Buy" else "SELL", "MARKET" if otype == "Market" else "LIMIT",
                qty=None if in_quote else base_qty, quote_qty=quote_qty, price=price, client_order_id=link_id,
                time_in_force="GTC" if tif == "PostOnly" else tif, post_only=tif == "PostOnly", extra=extra,
                reject_post_only=False,
            )
        except EngineError as e:
            if e.kind == "insufficient_funds":
                raise BybitError(170131, "Insufficient balance.") from None
            raise BybitError(170149, "Create order failed") from None
        if o.status == CANCELED and o.reason == "Post only order":
            o.extra["post_only_rejected"] = True
        return {"orderId": str(o.seq), "orderLinkId": o.client_order_id or ""}

    def _find(self, key: str, p: dict[str, Any]) -> Order | None:
        order_id, link_id = p.get("orderId") or None, p.get("orderLinkId") or None
        if order_id is None and link_id is None:
            raise BybitError(10001, "params error: orderId or orderLinkId is required")
        o: Order | None = None
        if order_id is not None:
            try:
                o = self.engine.orders.get(int(order_id))
            except ValueError:
                o = None
            if o is not None and link_id is not None and o.client_order_id != link_id:
                o = None
        else:
            o = self.engine.find_by_client_id(key, link_id)  # type: ignore[arg-type]
        if o is None or o.account != key:
            return None
        return o

    def cancel_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._category(p)
        ins = self._instrument(p)
        o = self._find(key, p)
        if o is None or o.symbol != ins.symbol or not o.is_open:  # type: ignore[union-attr]
            raise BybitError(170213, "Order does not exist.")
        self.engine.cancel(o)
        return {"orderId": str(o.seq), "orderLinkId": o.client_order_id or ""}

    def _filter(self, orders: list[Order], p: dict[str, Any]) -> list[Order]:
        if p.get("orderId"):
            orders = [o for o in orders if str(o.seq) == p["orderId"]]
        if p.get("orderLinkId"):
            orders = [o for o in orders if o.client_order_id == p["orderLinkId"]]
        return sorted(orders, key=lambda o: o.seq, reverse=True)

    def order_realtime(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._category(p)
        ins = self._instrument(p, required=False)
        orders = self.engine.account_orders(key, ins.symbol if ins else None)
        open_only = str(p.get("openOnly") or "0") == "0"
        by_id = bool(p.get("orderId") or p.get("orderLinkId"))
        closed = sorted((o for o in orders if not o.is_open), key=lambda o: o.seq)[-500:]
        # openOnly=0 lists open orders only, but a query by id also sees the 500 most recent closed ones.
        pool = [o for o in orders if o.is_open] + (closed if (by_id or not open_only) else [])
        chosen, cursor = self._page(self._filter(pool, p), p, 20, 50)
        return {"category": "spot", "list": [self.order_json(o) for o in chosen], "nextPageCursor": cursor}

    def order_history(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._category(p)
        ins = self._instrument(p, required=False)
        orders = [o for o in self.engine.account_orders(key, ins.symbol if ins else None) if not o.is_open]
        status = p.get("orderStatus")
        if status:
            orders = [o for o in orders if self.order_json(o)["orderStatus"] == status]
        start, end = self._int(p, "startTime"), self._int(p, "endTime")
        now = self.engine.now_ms()
        week = 7 * 86_400_000
        if start is None and end is None:
            start, end = now - week, now
        elif start is None:
            start = end - week  # type: ignore[operator]
        elif end is None:
            end = start + week
        if end - start > week:  # type: ignore[operator]
            raise BybitError(10001, "params error: The time range between startTime and endTime cannot exceed 7 days")
        orders = [o for o in orders if start <= o.created_ms <= end]  # type: ignore[operator]
        chosen, cursor = self._page(self._filter(orders, p), p, 20, 50)
        return {"category": "spot", "list": [self.order_json(o) for o in chosen], "nextPageCursor": cursor}

    def execution_list(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._category(p)
        ins = self._instrument(p, required=False)
        fault: Fault | None = request.get(TRADES_FAULT)
        fills = self.engine.account_fills(key, ins.symbol if ins else None)
        if p.get("orderId"):
            fills = [f for f in fills if str(f.order_seq) == p["orderId"]]
        if p.get("orderLinkId"):
            fills = [f for f in fills if self.engine.orders[f.order_seq].client_order_id == p["orderLinkId"]]
        if p.get("execType") and p["execType"] != "Trade":
            fills = []
        start, end = self._int(p, "startTime"), self._int(p, "endTime")
        now = self.engine.now_ms()
        week = 7 * 86_400_000
        if fault is not None and fault.mode == "overlap":
            start = end = None
        elif start is None and end is None:
            start, end = now - 86_400_000, now  # no time given: the last 24 hours
        elif start is None:
            start = end - week  # type: ignore[operator]
        elif end is None:
            end = start + week
        if start is not None and end is not None:
            if end - start > week:
                raise BybitError(10001, "params error: The time range between startTime and endTime "
                                        "cannot exceed 7 days")
            fills = [f for f in fills if start <= f.time_ms <= end]
        fills = sorted(fills, key=lambda f: f.id, reverse=True)  # newest first
        chosen, cursor = self._page(fills, p, 50, 100)
        out = [self.exec_json(f) for f in chosen]
        if fault is not None and fault.mode == "duplicate":
            out = [x for f in out for x in (f, dict(f))]
        elif fault is not None and fault.mode == "reorder":
            out.reverse()
        return {"category": "spot", "list": out, "nextPageCursor": cursor}


__all__ = ["BybitDialect", "DEFAULT_LIMITS", "default_instruments"]
