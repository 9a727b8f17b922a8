"""OKX spot REST dialect (``/api/v5``).

Public: ``public/time``, ``public/instruments``, ``market/ticker``, ``market/tickers``,
``market/books``, ``market/candles``, ``market/history-candles``.
Private: ``asset/currencies`` (ccxt's ``load_markets`` asks it whenever credentials are set),
``account/balance``, ``trade/order`` (POST place / GET details), ``trade/batch-orders``
(ccxt's default for ``create_order``), ``trade/cancel-order``, ``trade/orders-pending``,
``trade/orders-history`` (and ``-archive``), ``trade/fills-history`` and ``trade/fills``.

Authentication as OKX does it: headers ``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE``,
``OK-ACCESS-TIMESTAMP`` (ISO 8601 with milliseconds, UTC) and ``OK-ACCESS-SIGN`` =
base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath[?query] + body)); the secret is used
as its UTF-8 text, not decoded. A timestamp more than 30 s away from the server clock gets
``50102``; auth failures answer HTTP 401 with OKX's ``{"code": "501xx", "msg": ..., "data": []}``.

Business errors come back with HTTP 200: order placement and cancellation put the per-order
``sCode``/``sMsg`` in ``data`` under a top-level ``code`` ``"1"``; look-ups use a top-level code
(``51603`` order does not exist). Rate limits are OKX's per-endpoint 2-second windows (per API
key for private endpoints, per IP for public ones; ``batch-orders`` counts orders); going over
gives HTTP 429 ``{"msg": "Too Many Requests", "code": "50011"}``.

Balances are those of a simple-mode (spot) trading account: ``availEq`` is empty, as OKX
leaves it outside multi-currency margin mode, so ccxt reads ``availBal`` / ``frozenBal``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT, Dialect, default_error_page
from .engine import (
    CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, REJECTED, Engine, EngineError, Fill, Instrument, Order,
    ZERO, dec, is_multiple,
)
from .faults import Fault, RequestRecord

PREFIX = "/api/v5"
TIMESTAMP_WINDOW_MS = 30_000

# (requests, window seconds) per endpoint, from each endpoint's "Rate Limit" line in
# www.okx.com/docs-v5/en/ (trade: "60 requests per 2 seconds", Rule: User ID + Instrument ID
# for placing / cancelling, User ID for queries; batch-orders: 300 orders per 2 s).
RATE_LIMITS: dict[str, tuple[int, float]] = {
    "public/time": (10, 2.0),
    "public/instruments": (20, 2.0),
    "market/ticker": (20, 2.0),
    "market/tickers": (20, 2.0),
    "market/books": (40, 2.0),
    "market/candles": (40, 2.0),
    "market/history-candles": (20, 2.0),
    "account/balance": (10, 2.0),
    "asset/currencies": (6, 1.0),
    "trade/order": (60, 2.0),
    "trade/batch-orders": (300, 2.0),
    "trade/cancel-order": (60, 2.0),
    "trade/orders-pending": (60, 2.0),
    "trade/orders-history": (40, 2.0),
    "trade/orders-history-archive": (20, 2.0),
    "trade/fills": (60, 2.0),
    "trade/fills-history": (10, 2.0),
}

_CLORDID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_BARS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1H": 3_600_000,
         "2H": 7_200_000, "4H": 14_400_000, "6H": 21_600_000, "12H": 43_200_000, "1D": 86_400_000,
         "1W": 604_800_000, "6Hutc": 21_600_000, "12Hutc": 43_200_000, "1Dutc": 86_400_000,
         "1Wutc": 604_800_000}
_STATE = {NEW: "live", PARTIALLY_FILLED: "partially_filled", FILLED: "filled", CANCELED: "canceled",
          EXPIRED: "canceled", REJECTED: "canceled"}
_CHAINS = {"BTC": "Bitcoin", "ETH": "ERC20", "USDT": "TRC20", "USDC": "ERC20"}
_ORD_TYPES = ("market", "limit", "post_only", "ioc", "fok")


def default_instruments() -> list[Instrument]:
    """BTC-USDT, ETH-USDT, ETH-BTC with OKX's tick, lot and minimum sizes (no minimum notional)."""
    return [
        Instrument("BTC/USDT", "BTC", "USDT", "BTC-USDT", tick_size="0.1", step_size="0.00000001",
                   min_qty="0.00001", max_qty="9999999999", min_notional="0", mark="60000",
                   extra={"lever": "10", "maxMktSz": "1000000", "maxMktAmt": "1000000"}),
        Instrument("ETH/USDT", "ETH", "USDT", "ETH-USDT", tick_size="0.01", step_size="0.000001",
                   min_qty="0.001", max_qty="9999999999", min_notional="0", mark="3000",
                   extra={"lever": "10", "maxMktSz": "1000000", "maxMktAmt": "1000000"}),
        Instrument("ETH/BTC", "ETH", "BTC", "ETH-BTC", tick_size="0.00001", step_size="0.000001",
                   min_qty="0.001", max_qty="9999999999", min_notional="0", mark="0.05",
                   extra={"lever": "5", "maxMktSz": "1000", "maxMktAmt": "1000000"}),
    ]


def s(x: Decimal | None) -> str:
    """OKX's decimal strings: no exponent, no trailing zeros ("0" for zero)."""
    if x is None:
        return ""
    if x == 0:
        return "0"
    out = format(x.normalize(), "f")
    return out


class OkxError(Exception):
    """An OKX answer other than success: top-level ``code``/``msg``, optional per-item ``data``."""

    def __init__(self, code: str, msg: str, *, status: int = 200, data: list | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.data = code, msg, status, data or []


class OkxDialect(Dialect):
    """OKX v5 spot REST (simple trading account, ``tdMode`` ``cash``)."""

    name = "okx"
    ccxt_id = "okx"
    # spot markets only; no currencies call (it is private on OKX and Lyra does not need it)
    ccxt_options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "defaultType": "spot"}
    url_keys = ("api", "test")
    my_trades_path = "/api/v5/trade/fills-history"
    create_order_path = "/api/v5/trade/batch-orders"
    needs_password = True

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", limit_scale: float = 1.0,
                 instruments: list[Instrument] | None = None) -> None:
        engine = Engine("okx", instruments or default_instruments(), fee_rate=dec(fee_rate), fee_in="received",
                        first_order_id=2_896_576_259_728_695_296, first_trade_id=1_109_385_043)
        super().__init__(emulator, engine)
        self.limit_scale = limit_scale
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._bill = 700_000_000_000_000_000

    @classmethod
    def test_secret(cls, seed: str) -> str:
        # OKX issues 32 upper-case hex characters
        return hashlib.sha256(seed.encode()).hexdigest()[:32].upper()

    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        # fills-history's 10 per 2 s would make tight polling loops wait; the venue's default
        # budget (ccxt's rateLimit) stays as is
        return {"limit_scale": 20}, None

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt's 110 ms with per-endpoint costs follows OKX's documented limits
        return {"rateLimit": headroom * 110 / self.limit_scale}

    def configure(self, *, limit_scale: float | None = None) -> None:
        """Scale every documented limit (tests that are not about rate limits)."""
        with self._lock:
            if limit_scale is not None:
                self.limit_scale = limit_scale
            self._hits.clear()

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        g = PREFIX
        pub = {"public/time": self.time, "public/instruments": self.instruments, "market/ticker": self.ticker,
               "market/tickers": self.tickers, "market/books": self.books, "market/candles": self.candles,
               "market/history-candles": self.history_candles}
        out: list[tuple[str, str, Any]] = [("GET", f"{g}/{p}", self._wrap(fn)) for p, fn in pub.items()]
        out += [
            ("GET", f"{g}/account/balance", self._wrap(self.balance, signed=True)),
            ("GET", f"{g}/asset/currencies", self._wrap(self.currencies, signed=True)),
            ("POST", f"{g}/trade/order", self._wrap(self.place_order, signed=True)),
            ("POST", f"{g}/trade/batch-orders", self._wrap(self.batch_orders, signed=True)),
            ("GET", f"{g}/trade/order", self._wrap(self.order_details, signed=True)),
            ("POST", f"{g}/trade/cancel-order", self._wrap(self.cancel_order, signed=True)),
            ("GET", f"{g}/trade/orders-pending", self._wrap(self.orders_pending, signed=True)),
            ("GET", f"{g}/trade/orders-history", self._wrap(self.orders_history, signed=True)),
            ("GET", f"{g}/trade/orders-history-archive", self._wrap(self.orders_history, signed=True)),
            ("GET", f"{g}/trade/fills-history", self._wrap(self.fills, signed=True)),
            ("GET", f"{g}/trade/fills", self._wrap(self.fills, signed=True)),
        ]
        return out

    def _wrap(self, fn: Any, *, signed: bool = False) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            in_us = int(time.time() * 1_000_000)
            try:
                body_text = await request.text() if request.body_exists else ""
                key = self._authenticate(request, body_text, rec) if signed else None
                p: Any = dict(request.rel_url.query)
                if request.method == "POST":
                    try:
                        p = json.loads(body_text) if body_text else {}
                    except ValueError:
                        raise OkxError("50002", "Json data format error.", status=400) from None
                with self.engine.lock:
                    data = fn(p, key, request) if signed else fn(p, request)
            except OkxError as e:
                rec.error = e.code if not e.data else e.data[0].get("sCode")
                return web.json_response({"code": e.code, "data": e.data, "msg": e.msg}, status=e.status)
            body: dict[str, Any] = {"code": "0", "data": data, "msg": ""}
            if request.method == "POST":
                body.update(inTime=str(in_us), outTime=str(int(time.time() * 1_000_000)))
            return web.json_response(body)
        return handler

    def _authenticate(self, request: web.Request, body: str, rec: RequestRecord) -> str:
        h = request.headers
        for header, code in (("OK-ACCESS-KEY", "50103"), ("OK-ACCESS-PASSPHRASE", "50104"),
                             ("OK-ACCESS-SIGN", "50106"), ("OK-ACCESS-TIMESTAMP", "50107")):
            if not h.get(header):
                raise OkxError(code, f'Request header "{header}" cannot be empty.', status=401)
        stamp = h["OK-ACCESS-TIMESTAMP"]
        try:
            ts = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise OkxError("50112", "Invalid OK-ACCESS-TIMESTAMP", status=401) from None
        if abs(self.engine.now_ms() - int(ts.timestamp() * 1000)) > TIMESTAMP_WINDOW_MS:
            raise OkxError("50102", "Timestamp request expired", status=401)
        key = h["OK-ACCESS-KEY"]
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise OkxError("50111", "Invalid OK-ACCESS-KEY", status=401)
        rec.api_key = key
        if not hmac.compare_digest(h["OK-ACCESS-PASSPHRASE"], acct.password):
            raise OkxError("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.', status=401)
        prehash = stamp + request.method + request.raw_path + body
        expected = base64.b64encode(hmac.new(acct.secret.encode(), prehash.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.decode(), h["OK-ACCESS-SIGN"]):
            raise OkxError("50113", "Invalid Sign", status=401)
        return key

    # ------------------------------------------------------------------ rate limits
    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        ep = request.path[len(PREFIX) + 1:]
        limit = RATE_LIMITS.get(ep)
        if limit is None:
            return None
        count = 1
        if ep == "trade/batch-orders":
            try:
                count = max(1, len(json.loads(await request.text() or "[]")))
            except ValueError:
                count = 1
            if count == 1:  # "If there is only one order in the request, it will consume the rate limit of Place order"
                ep, limit = "trade/order", RATE_LIMITS["trade/order"]
        who = request.headers.get("OK-ACCESS-KEY") or (request.remote or "?")
        n, window = limit
        cap = max(1, int(n * self.limit_scale))
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault((ep, who), deque())
            while hits and now - hits[0] >= window:
                hits.popleft()
            if len(hits) + count > cap:
                rec.error = "50011"
                return web.json_response({"msg": "Too Many Requests", "code": "50011"}, status=429)
            hits.extend([now] * count)
            rec.used_weight = len(hits)
        return None

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is not None:
            return super().fault_response(fault, rec)
        if fault.status == 429:
            return web.json_response({"msg": "Too Many Requests", "code": "50011"}, status=429, headers=fault.headers)
        if fault.status == 503:
            return web.json_response({"code": "50001", "data": [],
                                      "msg": "Service temporarily unavailable. Please try again later."},
                                     status=503, headers=fault.headers)
        return web.Response(status=fault.status, text=default_error_page(fault.status), headers=fault.headers,
                            content_type="text/html")

    # ------------------------------------------------------------------ helpers
    def _instrument(self, p: dict[str, Any], *, required: bool = True) -> Instrument | None:
        inst_id = p.get("instId")
        if not inst_id:
            if required:
                raise OkxError("50014", "Parameter instId can not be empty.", status=400)
            return None
        ins = self.engine.by_venue_id.get(str(inst_id))
        if ins is None:
            raise OkxError("51001", "Instrument ID or Spread ID doesn't exist.")
        return ins

    def _inst_type(self, p: dict[str, Any]) -> None:
        t = p.get("instType")
        if not t:
            raise OkxError("50014", "Parameter instType can not be empty.", status=400)
        if t not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise OkxError("51000", "Parameter instType error", status=400)

    def _order_of(self, key: str, p: dict[str, Any], ins: Instrument) -> Order | None:
        ord_id, cl = p.get("ordId"), p.get("clOrdId")
        if not ord_id and not cl:
            raise OkxError("50015", "Either parameter ordId or clOrdId is required.", status=400)
        if ord_id:
            try:
                o = self.engine.orders.get(int(ord_id))
            except ValueError:
                return None
            if o is None or o.account != key or o.symbol != ins.symbol:
                return None
            return o
        o = self.engine.find_by_client_id(key, str(cl))
        return o if o is not None and o.symbol == ins.symbol else None

    def order_json(self, o: Order) -> dict[str, Any]:
        """An order as ``GET /api/v5/trade/order`` returns it."""
        ins = self.engine.instruments[o.symbol]
        last = o.fills[-1] if o.fills else None
        ord_type = o.extra.get("ordType", "limit")
        return {
            "accFillSz": s(o.filled), "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": s(o.avg_price) if o.filled else "", "cTime": str(o.created_ms),
            "cancelSource": o.extra.get("cancelSource", ""), "cancelSourceReason": o.extra.get("cancelSourceReason", ""),
            "category": "normal", "ccy": "", "clOrdId": o.client_order_id or "",
            "fee": s(-o.fee), "feeCcy": o.fee_asset, "fillPx": s(last.price) if last else "",
            "fillSz": s(last.qty) if last else "0", "fillTime": str(last.time_ms) if last else "",
            "instId": ins.venue_id, "instType": "SPOT", "isTpLimit": "false", "lever": "",
            "linkedAlgoOrd": {"algoId": ""}, "ordId": str(o.seq), "ordType": ord_type, "pnl": "0", "posSide": "net",
            "px": s(o.price) if o.price is not None else "", "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": ins.quote if o.side == "SELL" else ins.base,
            "reduceOnly": "false", "side": o.side.lower(), "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "",
            "source": "", "state": _STATE[o.status], "stpId": "", "stpMode": o.extra.get("stpMode", "cancel_maker"),
            "sz": s(o.extra.get("sz", o.qty)), "tag": o.extra.get("tag", ""), "tdMode": "cash",
            "tgtCcy": o.extra.get("tgtCcy", ""), "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tradeId": str(last.id) if last else "", "tradeQuoteCcy": ins.quote, "uTime": str(o.updated_ms),
        }

    def fill_json(self, f: Fill) -> dict[str, Any]:
        """A fill as ``GET /api/v5/trade/fills-history`` returns it (fee negative: charged)."""
        ins = self.engine.instruments[f.symbol]
        o = self.engine.orders[f.order_seq]
        return {
            "side": f.side.lower(), "fillSz": s(f.qty), "fillPx": s(f.price), "fillPxVol": "", "fillFwdPx": "",
            "fee": s(-f.fee), "fillPnl": "0", "ordId": str(f.order_seq), "feeRate": s(-self.engine.fee_rate),
            "instType": "SPOT", "fillPxUsd": "", "instId": ins.venue_id, "clOrdId": o.client_order_id or "",
            "posSide": "net", "billId": str(self._bill + f.id), "subType": "1" if f.side == "BUY" else "2",
            "fillMarkVol": "", "tag": o.extra.get("tag", ""), "fillTime": str(f.time_ms),
            "execType": "M" if f.is_maker else "T", "fillIdxPx": "", "tradeId": str(f.id), "fillMarkPx": "",
            "feeCcy": f.fee_asset, "ts": str(f.time_ms), "tradeQuoteCcy": ins.quote,
        }

    # ------------------------------------------------------------------ public endpoints
    def time(self, p: dict[str, Any], request: web.Request) -> Any:
        return [{"ts": str(self.engine.now_ms())}]

    def instruments(self, p: dict[str, Any], request: web.Request) -> Any:
        self._inst_type(p)
        if p["instType"] != "SPOT":
            return []
        items = [self.engine.by_venue_id[p["instId"]]] if p.get("instId") in self.engine.by_venue_id else (
            [] if p.get("instId") else list(self.engine.instruments.values()))
        return [{
            "alias": "", "auctionEndTime": "", "baseCcy": ins.base, "category": "1", "ctMult": "", "ctType": "",
            "ctVal": "", "ctValCcy": "", "contTdSwTime": "", "expTime": "", "futureSettlement": False,
            "instFamily": "", "instId": ins.venue_id, "instIdCode": 100000 + i, "instType": "SPOT",
            "lever": ins.extra.get("lever", ""), "listTime": "1548133413000", "lotSz": s(ins.step_size),
            "maxIcebergSz": s(ins.max_qty), "maxLmtAmt": "20000000", "maxLmtSz": s(ins.max_qty),
            "maxMktAmt": ins.extra.get("maxMktAmt", "1000000"), "maxMktSz": ins.extra.get("maxMktSz", "1000000"),
            "maxStopSz": ins.extra.get("maxMktSz", "1000000"), "maxTriggerSz": s(ins.max_qty),
            "maxTwapSz": s(ins.max_qty), "minSz": s(ins.min_qty), "openType": "", "optType": "",
            "quoteCcy": ins.quote, "ruleType": "normal", "settleCcy": "", "state": "live", "stk": "",
            "tickSz": s(ins.tick_size), "tradeQuoteCcyList": [ins.quote], "uly": "",
        } for i, ins in enumerate(items)]

    def _ticker(self, ins: Instrument) -> dict[str, Any]:
        now = self.engine.now_ms()
        m = ins.mark
        return {"instType": "SPOT", "instId": ins.venue_id, "last": s(m), "lastSz": s(ins.min_qty),
                "askPx": s(m + ins.tick_size), "askSz": "1", "bidPx": s(m - ins.tick_size), "bidSz": "1",
                "open24h": s(m), "high24h": s(m), "low24h": s(m), "volCcy24h": "0", "vol24h": "0",
                "ts": str(now), "sodUtc0": s(m), "sodUtc8": s(m)}

    def ticker(self, p: dict[str, Any], request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        return [self._ticker(ins)]

    def tickers(self, p: dict[str, Any], request: web.Request) -> Any:
        self._inst_type(p)
        if p["instType"] != "SPOT":
            return []
        return [self._ticker(ins) for ins in self.engine.instruments.values()]

    def books(self, p: dict[str, Any], request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        try:
            sz = int(p.get("sz") or 1)
        except ValueError:
            raise OkxError("51000", "Parameter sz error", status=400) from None
        if not 1 <= sz <= 400:
            raise OkxError("51000", "Parameter sz error", status=400)
        levels = min(sz, 20)
        m, t = ins.mark, ins.tick_size
        return [{"asks": [[s(m + t * (i + 1)), "1", "0", "1"] for i in range(levels)],
                 "bids": [[s(m - t * (i + 1)), "1", "0", "1"] for i in range(levels)],
                 "ts": str(self.engine.now_ms())}]

    def _candles(self, p: dict[str, Any], max_limit: int, recent_only: bool) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        bar = p.get("bar") or "1m"
        if bar not in _BARS:
            raise OkxError("51000", "Parameter bar error", status=400)
        try:
            limit = min(int(p.get("limit") or 100), max_limit)
            after = int(p["after"]) if p.get("after") else None
            before = int(p["before"]) if p.get("before") else None
        except ValueError:
            raise OkxError("51000", "Parameter limit error", status=400) from None
        ms = _BARS[bar]
        rows = self.engine.aggregated_candles(ins.symbol, ms) or []
        if recent_only:
            rows = rows[-1440:]  # market/candles serves the latest 1440 bars only
        rows = [c for c in rows if (after is None or c.open_ms < after) and (before is None or c.open_ms > before)]
        # newest first; with only "before", OKX returns the bars right after it
        rows = rows[:limit] if (before is not None and after is None) else rows[-limit:]
        return [[str(c.open_ms), s(c.open), s(c.high), s(c.low), s(c.close), s(c.volume), s(c.volume * c.close),
                 s(c.volume * c.close), "1"] for c in reversed(rows)]

    def candles(self, p: dict[str, Any], request: web.Request) -> Any:
        return self._candles(p, 300, True)

    def history_candles(self, p: dict[str, Any], request: web.Request) -> Any:
        return self._candles(p, 100, False)

    # ------------------------------------------------------------------ private endpoints
    def currencies(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        # ccxt's load_markets calls this whenever credentials are set (has['fetchCurrencies'])
        codes = sorted({c for ins in self.engine.instruments.values() for c in (ins.base, ins.quote)})
        if p.get("ccy"):
            codes = [c for c in codes if c in str(p["ccy"]).split(",")]
        return [{
            "burningFeeRate": "", "canDep": True, "canInternal": True, "canWd": True, "ccy": c,
            "chain": f"{c}-{_CHAINS.get(c, c)}", "ctAddr": "", "depEstOpenTime": "", "depQuotaFixed": "",
            "depQuoteDailyLayer2": "", "fee": "", "logoLink": "", "mainNet": True, "maxFee": "", "maxFeeForCtAddr": "",
            "maxWd": "10000000", "minDep": "0.00000001", "minDepArrivalConfirm": "1", "minFee": "",
            "minFeeForCtAddr": "", "minInternal": "0.0001", "minWd": "0.001", "minWdUnlockConfirm": "2", "name": c,
            "needTag": False, "usedDepQuotaFixed": "", "usedWdQuota": "0", "wdEstOpenTime": "", "wdQuota": "10000000",
            "wdTickSz": "8",
        } for c in codes]

    def balance(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        wanted = set(str(p["ccy"]).split(",")) if p.get("ccy") else None
        details = []
        total_usd = ZERO
        for ccy, (free, locked) in sorted(acct.balances.items()):
            if wanted is not None and ccy not in wanted:
                continue
            if free + locked == 0 and wanted is None:
                continue  # OKX lists currencies with a balance only
            usd = (free + locked) * self._usd_price(ccy)
            total_usd += usd
            details.append({
                "accAvgPx": "", "autoLendAmt": "0", "autoLendMtAmt": "0", "autoLendStatus": "unsupported",
                "availBal": s(free), "availEq": "", "borrowFroz": "", "cashBal": s(free + locked), "ccy": ccy,
                "clSpotInUseAmt": "", "colBorrAutoConversion": "0", "collateralEnabled": False,
                "collateralRestrict": False, "crossLiab": "", "disEq": s(usd), "eq": s(free + locked),
                "eqUsd": s(usd), "fixedBal": "0", "frozenBal": s(locked), "imr": "", "interest": "", "isoEq": "",
                "isoLiab": "", "isoUpl": "", "liab": "", "maxLoan": "", "maxSpotInUse": "", "mgnRatio": "",
                "mmr": "", "notionalLever": "", "openAvgPx": "", "ordFrozen": s(locked), "rewardBal": "0",
                "smtSyncEq": "0", "spotBal": "", "spotCopyTradingEq": "0", "spotInUseAmt": "", "spotIsoBal": "0",
                "spotUpl": "", "spotUplRatio": "", "stgyEq": "0", "totalPnl": "", "totalPnlRatio": "", "twap": "0",
                "uTime": str(acct.update_ms), "upl": "", "uplLiab": "",
            })
        return [{"adjEq": "", "availEq": "", "borrowFroz": "", "delta": "", "deltaLever": "", "deltaNeutralStatus": "0",
                 "details": details, "imr": "", "isoEq": "0", "mgnRatio": "", "mmr": "", "notionalUsd": "",
                 "notionalUsdForBorrow": "", "notionalUsdForFutures": "", "notionalUsdForOption": "",
                 "notionalUsdForSwap": "", "ordFroz": "", "totalEq": s(total_usd), "uTime": str(acct.update_ms),
                 "upl": ""}]

    def _usd_price(self, ccy: str) -> Decimal:
        if ccy in ("USDT", "USDC", "USD"):
            return Decimal(1)
        ins = self.engine.instruments.get(f"{ccy}/USDT")
        return ins.mark if ins is not None else ZERO

    def _place_one(self, item: Any, key: str) -> dict[str, Any]:
        """One order of a place request: the ``data`` entry (sCode "0") or an OkxError with it."""
        if not isinstance(item, dict):
            raise OkxError("50002", "Json data format error.", status=400)
        cl = str(item.get("clOrdId") or "")
        tag = str(item.get("tag") or "")

        def fail(code: str, msg: str) -> OkxError:
            return OkxError("1", "All operations failed", data=[{
                "clOrdId": cl, "ordId": "", "sCode": code, "sMsg": msg, "tag": tag, "ts": str(self.engine.now_ms())}])

        for name in ("instId", "tdMode", "side", "ordType", "sz"):
            if not item.get(name):
                raise OkxError("50014", f"Parameter {name} can not be empty.", status=400)
        ins = self._instrument(item)
        assert ins is not None
        if item["tdMode"] != "cash":
            raise fail("51000", "Parameter tdMode error")  # margin is not emulated
        side = str(item["side"]).lower()
        if side not in ("buy", "sell"):
            raise OkxError("51000", "Parameter side error", status=400)
        ord_type = str(item["ordType"])
        if ord_type not in _ORD_TYPES:
            raise OkxError("51000", "Parameter ordType error", status=400)
        if cl and not _CLORDID_RE.match(cl):
            raise OkxError("51000", "Parameter clOrdId error", status=400)
        try:
            sz = Decimal(str(item["sz"]))
            px = Decimal(str(item["px"])) if item.get("px") not in (None, "") else None
        except Exception:
            raise OkxError("51000", "Parameter sz error", status=400) from None
        tgt = str(item.get("tgtCcy") or ("quote_ccy" if (ord_type == "market" and side == "buy") else "base_ccy"))
        if ord_type != "market":
            if px is None:
                raise fail("51000", "Parameter px error")
            if px <= 0 or not is_multiple(px, ins.tick_size):
                raise fail("51000", "Parameter px error")
        qty: Decimal | None = sz
        quote_qty: Decimal | None = None
        if ord_type == "market" and side == "buy" and tgt == "quote_ccy":
            qty, quote_qty = None, sz
            if sz <= 0:
                raise fail("51000", "Parameter sz error")
        else:
            if sz <= 0:
                raise fail("51000", "Parameter sz error")
            if not is_multiple(sz, ins.step_size):
                raise fail("51121", "Order quantity must be a multiple of the lot size.")
            if sz < ins.min_qty:
                raise fail("51020", "Your order should meet or exceed the minimum order amount.")
        tif = {"ioc": "IOC", "fok": "FOK"}.get(ord_type, "GTC")
        extra = {"ordType": ord_type, "tag": tag, "sz": sz, "tgtCcy": tgt if ord_type == "market" else "",
                 "stpMode": str(item.get("stpMode") or "cancel_maker")}
        try:
            o = self.engine.place(key, ins.symbol, side.upper(), "MARKET" if ord_type == "market" else "LIMIT",
                                  qty=qty, price=px, quote_qty=quote_qty, client_order_id=cl or None,
                                  time_in_force=tif, post_only=ord_type == "post_only", extra=extra,
                                  reject_post_only=False)
        except EngineError as e:
            if e.kind == "duplicate_client_id":
                raise fail("51016", "Duplicated clOrdId") from None
            if e.kind == "insufficient_funds":
                need = ins.quote if side == "buy" else ins.base
                raise fail("51008", f"Order failed. Insufficient {need} balance in account.") from None
            raise fail("51000", "Parameter sz error") from None
        if o.status == CANCELED and ord_type == "post_only":
            # OKX accepts a crossing post-only order and cancels it: cancelSource 31
            o.extra.update(cancelSource="31", cancelSourceReason="The post-only order will take liquidity in maker orders")
        elif o.status == EXPIRED:
            o.extra.update(cancelSource="14" if ord_type == "ioc" else "15",
                           cancelSourceReason="Order canceled: IOC order was partially canceled due to incompletely filled"
                           if ord_type == "ioc" else "Order canceled: The FOK order was canceled due to insufficient depth")
        return {"clOrdId": cl, "ordId": str(o.seq), "sCode": "0", "sMsg": "Order placed", "tag": tag,
                "ts": str(o.created_ms)}

    def place_order(self, p: Any, key: str, request: web.Request) -> Any:
        if isinstance(p, list):
            raise OkxError("50002", "Json data format error.", status=400)
        return [self._place_one(p, key)]

    def batch_orders(self, p: Any, key: str, request: web.Request) -> Any:
        items = p if isinstance(p, list) else [p]
        if not items or len(items) > 20:
            raise OkxError("51000", "Parameter orders error", status=400)
        out, failed = [], 0
        for item in items:
            try:
                out.append(self._place_one(item, key))
            except OkxError as e:
                if not e.data:
                    raise
                out.append(e.data[0])
                failed += 1
        if failed == len(items):
            raise OkxError("1", "All operations failed", data=out)
        if failed:
            raise OkxError("2", "Batch operation partially succeeded", data=out)
        return out

    def order_details(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p)
        assert ins is not None
        o = self._order_of(key, p, ins)
        if o is None:
            raise OkxError("51603", "Order does not exist")
        return [self.order_json(o)]

    def cancel_order(self, p: Any, key: str, request: web.Request) -> Any:
        if not isinstance(p, dict):
            raise OkxError("50002", "Json data format error.", status=400)
        ins = self._instrument(p)
        assert ins is not None
        o = self._order_of(key, p, ins)
        now = str(self.engine.now_ms())
        if o is None or not o.is_open:
            code, msg = "51400", "Order cancellation failed as the order has been filled, canceled or does not exist."
            if o is not None and o.status == FILLED:
                code, msg = "51402", "Order cancellation failed as the order has been completed."
            elif o is not None:
                code, msg = "51401", "Order cancellation failed as the order has been canceled."
            raise OkxError("1", "All operations failed", data=[{"clOrdId": p.get("clOrdId", ""), "ordId": p.get("ordId", ""),
                                           "sCode": code, "sMsg": msg, "ts": now}])
        self.engine.cancel(o)
        o.extra.update(cancelSource="1", cancelSourceReason="Order canceled by user")
        return [{"clOrdId": o.client_order_id or "", "ordId": str(o.seq), "sCode": "0", "sMsg": "", "ts": now}]

    def _list(self, orders: list[Order], p: dict[str, Any], time_key: Any) -> list[Order]:
        try:
            limit = min(int(p.get("limit") or 100), 100)
            begin = int(p["begin"]) if p.get("begin") else None
            end = int(p["end"]) if p.get("end") else None
            after = int(p["after"]) if p.get("after") else None
            before = int(p["before"]) if p.get("before") else None
        except ValueError:
            raise OkxError("51000", "Parameter limit error", status=400) from None
        rows = sorted(orders, key=lambda o: o.seq, reverse=True)  # newest first
        rows = [o for o in rows if (begin is None or time_key(o) >= begin) and (end is None or time_key(o) <= end)
                and (after is None or o.seq < after) and (before is None or o.seq > before)]
        return rows[:limit]

    def orders_pending(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        if p.get("instType") not in (None, "", "SPOT"):
            return []
        ins = self._instrument(p, required=False)
        rows = self.engine.open_orders(key, ins.symbol if ins else None)
        if p.get("ordType"):
            rows = [o for o in rows if o.extra.get("ordType") == p["ordType"]]
        if p.get("state"):
            rows = [o for o in rows if _STATE[o.status] == p["state"]]
        return [self.order_json(o) for o in self._list(rows, p, lambda o: o.created_ms)]

    def orders_history(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        self._inst_type(p)
        if p["instType"] != "SPOT":
            return []
        ins = self._instrument(p, required=False)
        rows = [o for o in self.engine.account_orders(key, ins.symbol if ins else None) if not o.is_open]
        if p.get("state"):
            if p["state"] not in ("filled", "canceled", "mmp_canceled"):
                raise OkxError("51000", "Parameter state error", status=400)
            rows = [o for o in rows if _STATE[o.status] == p["state"]]
        if p.get("ordType"):
            rows = [o for o in rows if o.extra.get("ordType") == p["ordType"]]
        return [self.order_json(o) for o in self._list(rows, p, lambda o: o.created_ms)]

    def fills(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        if request.path.endswith("fills-history"):
            self._inst_type(p)
        if p.get("instType") not in (None, "", "SPOT"):
            return []
        ins = self._instrument(p, required=False)
        fault: Fault | None = request.get(TRADES_FAULT)
        rows = self.engine.account_fills(key, ins.symbol if ins else None)
        if p.get("ordId"):
            rows = [f for f in rows if str(f.order_seq) == str(p["ordId"])]
        try:
            limit = min(int(p.get("limit") or 100), 100)
            begin = int(p["begin"]) if p.get("begin") else None
            end = int(p["end"]) if p.get("end") else None
            after = int(p["after"]) - self._bill if p.get("after") else None
            before = int(p["before"]) - self._bill if p.get("before") else None
        except ValueError:
            raise OkxError("51000", "Parameter limit error", status=400) from None
        if fault is not None and fault.mode == "overlap":
            begin = after = before = None  # a lagging read: the window is ignored
        rows = sorted(rows, key=lambda f: f.id, reverse=True)
        rows = [f for f in rows if (begin is None or f.time_ms >= begin) and (end is None or f.time_ms <= end)
                and (after is None or f.id < after) and (before is None or f.id > before)][:limit]
        out = [self.fill_json(f) for f in rows]
        if fault is not None and fault.mode == "duplicate":
            out = [x for f in out for x in (f, dict(f))]
        elif fault is not None and fault.mode == "reorder":
            out.reverse()
        return out


__all__ = ["OkxDialect", "RATE_LIMITS", "default_instruments"]
