"""Kraken spot REST dialect (``/0/public``, ``/0/private``).

Public: ``Time``, ``SystemStatus``, ``Assets``, ``AssetPairs``, ``Ticker``, ``OHLC``, ``Depth``.
Private (POST, form or JSON body): ``Balance``, ``BalanceEx``, ``AddOrder``, ``CancelOrder``,
``CancelAll``, ``QueryOrders``, ``OpenOrders``, ``ClosedOrders``, ``TradesHistory``,
``QueryTrades``.

Authentication as Kraken does it: ``API-Key`` header and
``API-Sign = base64(HMAC-SHA512(base64decode(secret), uri_path + SHA256(nonce + postdata)))``;
the nonce must exceed the last one seen for the key. Errors come back with HTTP 200 and
``{"error": ["EAPI:Invalid signature"]}`` etc. Private calls feed the per-key API counter
(+1, +2 for history endpoints; AddOrder/CancelOrder are exempt as on Kraken), which decays by
``decay_per_s``; a call that would exceed ``counter_max`` gets ``EAPI:Rate limit exceeded``.
OHLC returns at most the 720 most recent candles of the loaded series, as Kraken does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from decimal import Decimal
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .dialect import RECORD, TRADES_FAULT, Dialect
from .engine import (
    CANCELED, EXPIRED, FILLED, D, Engine, EngineError, Fill, Instrument, Order, ZERO, dec,
)
from .faults import Fault, RequestRecord

# Unified code <-> Kraken asset id, and the Assets endpoint metadata.
ASSETS: dict[str, dict[str, Any]] = {
    "XXBT": {"code": "BTC", "altname": "XBT", "decimals": 10, "display_decimals": 5},
    "XETH": {"code": "ETH", "altname": "ETH", "decimals": 10, "display_decimals": 5},
    "USDT": {"code": "USDT", "altname": "USDT", "decimals": 8, "display_decimals": 4},
    "ADA": {"code": "ADA", "altname": "ADA", "decimals": 8, "display_decimals": 6},
    "ZUSD": {"code": "USD", "altname": "USD", "decimals": 4, "display_decimals": 2},
    "ZEUR": {"code": "EUR", "altname": "EUR", "decimals": 4, "display_decimals": 2},
}
CODE_TO_ID = {v["code"]: k for k, v in ASSETS.items()}

# Message for a cl_ord_id already used by an open order. Kraken documents the uniqueness rule
# (cl_ord_id unique among open orders) but the exact spot REST error string could not be
# verified offline; this one is matched by ccxt's broad ':Invalid order' -> InvalidOrder.
DUPLICATE_CL_ORD_ID = "EOrder:Invalid order:cl_ord_id already in use"
UNKNOWN_ORDER = "EOrder:Unknown order"
INVALID_ORDER = "EOrder:Invalid order"

_INTERVALS = {1, 5, 15, 30, 60, 240, 1440, 10080, 21600}
OHLC_MAX = 720
PAGE = 50


def _pair(pair_id: str, altname: str, wsname: str, base: str, quote: str, pair_decimals: int,
          lot_decimals: int, cost_decimals: int, ordermin: str, costmin: str, mark: str) -> Instrument:
    b, q = ASSETS[base]["code"], ASSETS[quote]["code"]
    return Instrument(
        f"{b}/{q}", base, quote, pair_id,
        tick_size=D(1).scaleb(-pair_decimals), step_size=D(1).scaleb(-lot_decimals), min_qty=ordermin,
        max_qty="100000000", min_notional=costmin, mark=mark, max_price="100000000",
        extra={"altname": altname, "wsname": wsname, "pair_decimals": pair_decimals,
               "lot_decimals": lot_decimals, "cost_decimals": cost_decimals, "ordermin": ordermin,
               "costmin": costmin},
    )


def default_instruments() -> list[Instrument]:
    """BTC/USDT, ETH/USDT, ETH/BTC, ADA/BTC, ADA/USDT with Kraken-like precisions and minimums."""
    return [
        _pair("XBTUSDT", "XBTUSDT", "XBT/USDT", "XXBT", "USDT", 1, 8, 5, "0.00005", "0.5", "60000"),
        _pair("ETHUSDT", "ETHUSDT", "ETH/USDT", "XETH", "USDT", 2, 8, 5, "0.002", "0.5", "3000"),
        _pair("XETHXXBT", "ETHXBT", "ETH/XBT", "XETH", "XXBT", 5, 8, 10, "0.002", "0.00002", "0.05"),
        _pair("ADAXBT", "ADAXBT", "ADA/XBT", "ADA", "XXBT", 8, 8, 10, "5", "0.00002", "0.00001"),
        _pair("ADAUSDT", "ADAUSDT", "ADA/USDT", "ADA", "USDT", 6, 8, 5, "5", "0.5", "0.6"),
    ]


def fmt(x: Decimal | None, places: int) -> str:
    return f"{(x if x is not None else ZERO):.{places}f}"


def fmt_data(x: Decimal, places: int) -> str:
    """Like :func:`fmt`, but never drops digits a loaded candle has beyond ``places``."""
    exp = x.normalize().as_tuple().exponent
    return fmt(x, max(places, -exp if isinstance(exp, int) and exp < 0 else 0))


def _decimals(s: str) -> int:
    return len(s.split(".", 1)[1]) if "." in s else 0


class KrakenError(Exception):
    def __init__(self, *errors: str) -> None:
        super().__init__(errors[0])
        self.errors = list(errors)


_STATUS = {"NEW": "open", "PARTIALLY_FILLED": "open", FILLED: "closed", CANCELED: "canceled",
           EXPIRED: "expired", "REJECTED": "canceled"}
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _kid(prefix: str, salt: str, n: int) -> str:
    h = hashlib.sha256(f"{prefix}:{salt}:{n}".encode()).digest()
    chars = "".join(_B32[b % 32] for b in h[:16])
    return f"{prefix}{chars[:5]}-{chars[5:10]}-{chars[10:16]}"


class KrakenDialect(Dialect):
    name = "kraken"
    ccxt_id = "kraken"
    my_trades_path = "/0/private/TradesHistory"
    create_order_path = "/0/private/AddOrder"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", counter_max: float = 15.0,
                 decay_per_s: float = 0.33, instruments: list[Instrument] | None = None) -> None:
        engine = Engine("kraken", instruments or default_instruments(), fee_rate=dec(fee_rate), fee_in="quote")
        super().__init__(emulator, engine)
        self.counter_max = counter_max
        self.decay_per_s = decay_per_s
        self._lock = threading.Lock()
        self._salt = hashlib.sha256(str(id(self)).encode()).hexdigest()[:8]
        self.txid_of: dict[int, str] = {}
        self.order_of_txid: dict[str, int] = {}
        self.trade_txid: dict[int, str] = {}

    def rate_limited(self, rec: RequestRecord) -> bool:
        return rec.status in (418, 429) or "EAPI:Rate limit exceeded" in str(rec.error or "")

    @classmethod
    def test_secret(cls, seed: str) -> str:
        return base64.b64encode(seed.encode() * 2).decode()  # Kraken issues base64 secrets

    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        from appliance.venues.ccxt.budget import BucketSpec, BudgetSpec

        # the Starter tier (a private call every 3 s) would make every poll take seconds
        return ({"counter_max": 60, "decay_per_s": 5},
                BudgetSpec("emulated-kraken", (BucketSpec.from_decay("rest_counter", 60, 5),)))

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt's default (1000 ms, private calls cost 3) follows Kraken's 0.33/s decay
        return {"rateLimit": headroom * 1000 / (3 * self.decay_per_s)}

    def configure(self, *, counter_max: float | None = None, decay_per_s: float | None = None) -> None:
        with self._lock:
            if counter_max is not None:
                self.counter_max = counter_max
            if decay_per_s is not None:
                self.decay_per_s = decay_per_s
            for acct in self.engine.accounts.values():
                acct.rate_counter = 0.0

    def asset_id(self, code: str) -> str:
        return CODE_TO_ID.get(code, code)

    def asset_code(self, asset_id: str) -> str:
        return ASSETS.get(asset_id, {}).get("code", asset_id)

    def txid(self, o: Order) -> str:
        t = self.txid_of.get(o.seq)
        if t is None:
            t = _kid("O", self._salt, o.seq)
            self.txid_of[o.seq] = t
            self.order_of_txid[t] = o.seq
        return t

    def trade_id(self, f: Fill) -> str:
        t = self.trade_txid.get(f.id)
        if t is None:
            t = _kid("T", self._salt, f.id)
            self.trade_txid[f.id] = t
        return t

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub = {"Time": self.time, "SystemStatus": self.system_status, "Assets": self.assets,
               "AssetPairs": self.asset_pairs, "Ticker": self.ticker, "OHLC": self.ohlc, "Depth": self.depth}
        priv = {"Balance": self.balance, "BalanceEx": self.balance_ex, "AddOrder": self.add_order,
                "CancelOrder": self.cancel_order, "CancelAll": self.cancel_all, "QueryOrders": self.query_orders,
                "OpenOrders": self.open_orders, "ClosedOrders": self.closed_orders,
                "TradesHistory": self.trades_history, "QueryTrades": self.query_trades}
        out: list[tuple[str, str, Any]] = []
        for name, fn in pub.items():
            for method in ("GET", "POST"):
                out.append((method, f"/0/public/{name}", self._wrap_public(fn)))
        for name, fn in priv.items():
            out.append(("POST", f"/0/private/{name}", self._wrap_private(fn, name)))
        return out

    @staticmethod
    def _reply(result: Any = None, errors: list[str] | None = None) -> web.Response:
        body: dict[str, Any] = {"error": errors or []}
        if result is not None:
            body["result"] = result
        return web.json_response(body)

    def _wrap_public(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            p = dict(request.query)
            if request.method == "POST" and request.can_read_body:
                p.update(parse_qsl(await request.text(), keep_blank_values=True))
            try:
                with self.engine.lock:
                    return self._reply(fn(p))
            except KrakenError as e:
                rec.error = e.errors[0]
                return self._reply(errors=e.errors)
        return handler

    def _wrap_private(self, fn: Any, name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                p, key = await self._authenticate(request, rec, name)
                with self.engine.lock:
                    return self._reply(fn(p, key, request))
            except KrakenError as e:
                rec.error = e.errors[0]
                return self._reply(errors=e.errors)
        return handler

    async def _authenticate(self, request: web.Request, rec: RequestRecord, name: str) -> tuple[dict[str, Any], str]:
        raw = await request.text()
        key = request.headers.get("API-Key")
        acct = self.engine.accounts.get(key or "")
        if acct is None:
            raise KrakenError("EAPI:Invalid key")
        rec.api_key = key
        ctype = request.headers.get("Content-Type", "")
        try:
            if "json" in ctype:
                p = json.loads(raw or "{}")
                p = {k: v for k, v in p.items()}
            else:
                p = dict(parse_qsl(raw, keep_blank_values=True))
        except ValueError:
            raise KrakenError("EGeneral:Invalid arguments") from None
        nonce = str(p.get("nonce", ""))
        sign = request.headers.get("API-Sign", "")
        try:
            secret = base64.b64decode(acct.secret)
            given = base64.b64decode(sign, validate=True)
        except (binascii.Error, ValueError):
            raise KrakenError("EAPI:Invalid signature") from None
        digest = hashlib.sha256((nonce + raw).encode()).digest()
        expected = hmac.new(secret, request.path.encode() + digest, hashlib.sha512).digest()
        if not hmac.compare_digest(expected, given):
            raise KrakenError("EAPI:Invalid signature")
        try:
            n = int(nonce)
        except ValueError:
            raise KrakenError("EAPI:Invalid nonce") from None
        with self._lock:
            if n <= acct.last_nonce:
                raise KrakenError("EAPI:Invalid nonce")
            acct.last_nonce = n
            cost = 0 if name in ("AddOrder", "CancelOrder") else 2 if name in ("TradesHistory", "Ledgers") else 1
            now = time.monotonic()
            counter = max(0.0, acct.rate_counter - (now - acct.rate_counter_at) * self.decay_per_s) if acct.rate_counter_at else 0.0
            acct.rate_counter_at = now
            if counter + cost > self.counter_max:
                acct.rate_counter = counter
                rec.kraken_counter = counter
                raise KrakenError("EAPI:Rate limit exceeded")
            acct.rate_counter = counter + cost
            rec.kraken_counter = acct.rate_counter
        return p, key  # type: ignore[return-value]

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            return web.json_response({"error": ["EAPI:Rate limit exceeded"]}, status=429, headers=fault.headers)
        return super().fault_response(fault, rec)

    # ------------------------------------------------------------------ helpers
    def _instrument(self, pair: str | None) -> Instrument:
        if not pair:
            raise KrakenError("EGeneral:Invalid arguments")
        ins = self.engine.by_venue_id.get(pair)
        if ins is None:
            for i in self.engine.instruments.values():
                if pair in (i.extra["altname"], i.extra["wsname"]):
                    return i
            raise KrakenError("EQuery:Unknown asset pair")
        return ins

    def _descr(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        pd = ins.extra["pair_decimals"]
        alt = ins.extra["altname"]
        side = o.side.lower()
        vol = fmt(o.qty, 8)
        if o.type == "MARKET":
            text = f"{side} {vol} {alt} @ market"
            ordertype, price = "market", "0"
        else:
            text = f"{side} {vol} {alt} @ limit {fmt(o.price, pd)}"
            ordertype, price = "limit", fmt(o.price, pd)
        return {"pair": alt, "type": side, "ordertype": ordertype, "price": price, "price2": "0",
                "leverage": "none", "order": text, "close": ""}

    def order_json(self, o: Order, *, trades: bool = False, query: bool = False) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        pd, cd = ins.extra["pair_decimals"], ins.extra["cost_decimals"]
        out: dict[str, Any] = {"refid": None, "userref": o.userref if o.userref is not None else 0}
        if o.client_order_id is not None:
            out["cl_ord_id"] = o.client_order_id
        out.update({
            "status": _STATUS[o.status],
            "opentm": o.created_ms / 1000,
            "starttm": 0,
            "expiretm": 0,
            "descr": self._descr(o),
            "vol": fmt(o.qty, 8),
            "vol_exec": fmt(o.filled, 8),
            "cost": fmt(o.cum_quote, cd),
            "fee": fmt(o.fee, cd),
            "price": fmt(o.avg_price, pd),
            "stopprice": fmt(ZERO, pd),
            "limitprice": fmt(ZERO, pd),
            "misc": "",
            "oflags": ",".join(o.extra.get("oflags", ["fciq"])),
        })
        if not o.is_open or query:
            out["reason"] = o.reason if o.status != FILLED else None
        if trades and o.fills:
            out["trades"] = [self.trade_id(f) for f in o.fills]
        if not o.is_open:
            out["closetm"] = (o.closed_ms or o.updated_ms) / 1000
        return out

    def trade_json(self, f: Fill) -> dict[str, Any]:
        ins = self.engine.instruments[f.symbol]
        pd, cd = ins.extra["pair_decimals"], ins.extra["cost_decimals"]
        o = self.engine.orders[f.order_seq]
        return {
            "ordertxid": self.txid(o),
            "postxid": _kid("T", self._salt + "p", f.id),
            "pair": ins.venue_id,
            "time": f.time_ms / 1000,
            "type": f.side.lower(),
            "ordertype": "market" if f.order_type == "MARKET" else "limit",
            "price": fmt(f.price, pd),
            "cost": fmt(f.quote_qty, cd),
            "fee": fmt(f.fee, cd),
            "vol": fmt(f.qty, 8),
            "margin": fmt(ZERO, cd),
            "leverage": "0",
            "misc": "",
            "trade_id": f.id,
            "maker": f.is_maker,
        }

    @staticmethod
    def _bool(v: Any) -> bool:
        return str(v).lower() in ("true", "1")

    # ------------------------------------------------------------------ public
    def time(self, p: dict[str, Any]) -> Any:
        now = self.engine.now_ms() / 1000
        return {"unixtime": int(now), "rfc1123": formatdate(now, usegmt=True).replace("GMT", "+0000")}

    def system_status(self, p: dict[str, Any]) -> Any:
        return {"status": "online", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def assets(self, p: dict[str, Any]) -> Any:
        wanted = set(p["asset"].split(",")) if p.get("asset") else None
        out = {}
        for aid, a in ASSETS.items():
            if wanted and aid not in wanted and a["altname"] not in wanted:
                continue
            out[aid] = {"aclass": "currency", "altname": a["altname"], "decimals": a["decimals"],
                        "display_decimals": a["display_decimals"], "collateral_value": 1.0, "status": "enabled"}
        return out

    def asset_pairs(self, p: dict[str, Any]) -> Any:
        pairs = list(self.engine.instruments.values())
        if p.get("pair"):
            pairs = [self._instrument(x) for x in p["pair"].split(",")]
        fee_pct = float(self.engine.fee_rate * 100)
        out = {}
        for ins in pairs:
            x = ins.extra
            out[ins.venue_id] = {
                "altname": x["altname"], "wsname": x["wsname"], "aclass_base": "currency", "base": ins.base,
                "aclass_quote": "currency", "quote": ins.quote, "lot": "unit", "cost_decimals": x["cost_decimals"],
                "pair_decimals": x["pair_decimals"], "lot_decimals": x["lot_decimals"], "lot_multiplier": 1,
                "leverage_buy": [], "leverage_sell": [], "fees": [[0, fee_pct]], "fees_maker": [[0, fee_pct]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40, "ordermin": x["ordermin"],
                "costmin": x["costmin"], "tick_size": fmt(ins.tick_size, x["pair_decimals"]), "status": "online",
            }
        return out

    def ticker(self, p: dict[str, Any]) -> Any:
        pairs = [self._instrument(x) for x in p["pair"].split(",")] if p.get("pair") else list(self.engine.instruments.values())
        out = {}
        for ins in pairs:
            pd = ins.extra["pair_decimals"]
            m, t = ins.mark, ins.tick_size
            out[ins.venue_id] = {
                "a": [fmt(m + t, pd), "1", "1.000"], "b": [fmt(m - t, pd), "1", "1.000"],
                "c": [fmt(m, pd), "0.00100000"], "v": ["0.00000000", "0.00000000"],
                "p": [fmt(m, pd), fmt(m, pd)], "t": [0, 0], "l": [fmt(m, pd), fmt(m, pd)],
                "h": [fmt(m, pd), fmt(m, pd)], "o": fmt(m, pd),
            }
        return out

    def depth(self, p: dict[str, Any]) -> Any:
        ins = self._instrument(p.get("pair"))
        pd = ins.extra["pair_decimals"]
        n = min(int(p.get("count", 20) or 20), 20)
        now = self.engine.now_ms() // 1000
        return {ins.venue_id: {
            "asks": [[fmt(ins.mark + ins.tick_size * (i + 1), pd), "1.000", now] for i in range(n)],
            "bids": [[fmt(ins.mark - ins.tick_size * (i + 1), pd), "1.000", now] for i in range(n)],
        }}

    def ohlc(self, p: dict[str, Any]) -> Any:
        ins = self._instrument(p.get("pair"))
        try:
            interval = int(p.get("interval", 1) or 1)
        except ValueError:
            raise KrakenError("EGeneral:Invalid arguments") from None
        if interval not in _INTERVALS:
            raise KrakenError("EGeneral:Invalid arguments")
        rows = self.engine.aggregated_candles(ins.symbol, interval * 60_000) or []
        rows = rows[-OHLC_MAX:]
        if p.get("since"):
            since_ms = int(float(p["since"]) * 1000)
            rows = [c for c in rows if c.open_ms >= since_ms]
        pd = ins.extra["pair_decimals"]
        out = [[c.open_ms // 1000, fmt_data(c.open, pd), fmt_data(c.high, pd), fmt_data(c.low, pd),
                fmt_data(c.close, pd), fmt((c.open + c.high + c.low + c.close) / 4, pd + 2), fmt(c.volume, 8),
                c.trades] for c in rows]
        last = out[-2][0] if len(out) > 1 else (out[-1][0] if out else 0)
        return {ins.venue_id: out, "last": last}

    # ------------------------------------------------------------------ private
    def balance(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        return {a: fmt(r[0] + r[1], ASSETS.get(a, {}).get("decimals", 8)) for a, r in acct.balances.items()}

    def balance_ex(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        acct = self.engine.accounts[key]
        out = {}
        for a, r in acct.balances.items():
            places = ASSETS.get(a, {}).get("decimals", 8)
            out[a] = {"balance": fmt(r[0] + r[1], places), "hold_trade": fmt(r[1], places)}
        return out

    def add_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ins = self._instrument(p.get("pair"))
        x = ins.extra
        side = str(p.get("type", "")).lower()
        if side not in ("buy", "sell"):
            raise KrakenError("EGeneral:Invalid arguments:type")
        ordertype = str(p.get("ordertype", "")).lower()
        if ordertype not in ("market", "limit"):
            raise KrakenError("EGeneral:Invalid arguments:ordertype")
        oflags = [f for f in str(p.get("oflags", "")).split(",") if f]
        viqc = "viqc" in oflags
        post = "post" in oflags
        vol_s = str(p.get("volume", ""))
        try:
            volume = Decimal(vol_s)
        except Exception:
            raise KrakenError("EGeneral:Invalid arguments:volume") from None
        if volume <= 0 or not volume.is_finite():
            raise KrakenError("EGeneral:Invalid arguments:volume")
        if not viqc and _decimals(vol_s) > x["lot_decimals"]:
            raise KrakenError("EGeneral:Invalid arguments:volume")
        price: Decimal | None = None
        if ordertype == "limit":
            price_s = str(p.get("price", ""))
            try:
                price = Decimal(price_s)
            except Exception:
                raise KrakenError("EGeneral:Invalid arguments:price") from None
            if _decimals(price_s) > x["pair_decimals"]:
                raise KrakenError(f"EOrder:Invalid price:{x['altname']} price can only be specified up to "
                                  f"{x['pair_decimals']} decimals.")
            if price <= 0:
                raise KrakenError("EGeneral:Invalid arguments:price")
        userref = p.get("userref")
        if userref is not None and userref != "":
            try:
                userref = int(userref)
            except ValueError:
                raise KrakenError("EGeneral:Invalid arguments:userref") from None
            if not -(2 ** 31) <= userref < 2 ** 31:
                raise KrakenError("EGeneral:Invalid arguments:userref")
        else:
            userref = None
        cl_ord_id = p.get("cl_ord_id") or None
        if cl_ord_id is not None and userref is not None:
            raise KrakenError("EGeneral:Invalid arguments:cl_ord_id and userref cannot both be set")
        if cl_ord_id is not None and len(str(cl_ord_id)) > 36:
            raise KrakenError("EGeneral:Invalid arguments:cl_ord_id")
        tif = str(p.get("timeinforce", "GTC")).upper()
        if tif not in ("GTC", "IOC", "GTD"):
            raise KrakenError("EGeneral:Invalid arguments:timeinforce")
        qty: Decimal | None = None if viqc else volume
        quote_qty = volume if viqc else None
        if viqc and (ordertype != "market" or side != "buy"):
            raise KrakenError("EGeneral:Invalid arguments:viqc")
        ref_price = price if price is not None else ins.mark
        if qty is not None and qty < ins.min_qty:
            raise KrakenError("EOrder:Order minimum not met")
        cost = quote_qty if quote_qty is not None else qty * ref_price  # type: ignore[operator]
        if cost < ins.min_notional:
            raise KrakenError("EOrder:Cost minimum not met")
        flags = ["fciq"] + [f for f in oflags if f in ("post", "viqc", "nompp")]
        if self._bool(p.get("validate", False)):
            text = f"{side} {fmt(volume, 8)} {x['altname']} @ {ordertype}" + (
                f" {fmt(price, x['pair_decimals'])}" if price is not None else "")
            return {"descr": {"order": text}}
        try:
            o = self.engine.place(
                key, ins.symbol, side.upper(), ordertype.upper(), qty=qty, price=price, quote_qty=quote_qty,
                client_order_id=str(cl_ord_id) if cl_ord_id is not None else None, userref=userref,
                time_in_force="IOC" if tif == "IOC" else "GTC", post_only=post,
                extra={"oflags": flags}, reject_post_only=False,
            )
        except EngineError as e:
            raise KrakenError({
                "duplicate_client_id": DUPLICATE_CL_ORD_ID,
                "insufficient_funds": "EOrder:Insufficient funds",
            }.get(e.kind, "EGeneral:Invalid arguments")) from None
        return {"descr": {"order": self._descr(o)["order"]}, "txid": [self.txid(o)]}

    def _resolve(self, key: str, ref: str) -> list[Order]:
        """Orders of the account matching a txid, a userref (int) or a cl_ord_id."""
        seq = self.order_of_txid.get(ref)
        if seq is not None:
            o = self.engine.orders[seq]
            return [o] if o.account == key else []
        out = []
        for o in self.engine.account_orders(key):
            if o.client_order_id == ref or (o.userref is not None and str(o.userref) == ref):
                out.append(o)
        return out

    def cancel_order(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ref = p.get("cl_ord_id") or p.get("txid")
        if not ref:
            raise KrakenError("EGeneral:Invalid arguments")
        orders = [o for o in self._resolve(key, str(ref)) if o.is_open]
        if not orders:
            raise KrakenError(UNKNOWN_ORDER)
        for o in orders:
            self.engine.cancel(o)
        return {"count": len(orders)}

    def cancel_all(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        orders = self.engine.open_orders(key)
        for o in orders:
            self.engine.cancel(o)
        return {"count": len(orders)}

    def query_orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        raw = p.get("txid")
        if not raw:
            raise KrakenError("EGeneral:Invalid arguments")
        ids = [t for t in str(raw).split(",") if t][:50]
        trades = self._bool(p.get("trades", False))
        userref = p.get("userref")
        out = {}
        for t in ids:
            seq = self.order_of_txid.get(t)
            o = self.engine.orders.get(seq) if seq is not None else None
            if o is None or o.account != key:
                raise KrakenError(INVALID_ORDER)
            if userref not in (None, "") and str(o.userref) != str(userref):
                continue
            out[t] = self.order_json(o, trades=trades, query=True)
        return out

    def _filter(self, orders: list[Order], p: dict[str, Any]) -> list[Order]:
        if p.get("userref") not in (None, ""):
            orders = [o for o in orders if str(o.userref) == str(p["userref"])]
        if p.get("cl_ord_id"):
            orders = [o for o in orders if o.client_order_id == str(p["cl_ord_id"])]
        return orders

    def open_orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        orders = self._filter(sorted(self.engine.open_orders(key), key=lambda o: -o.seq), p)
        trades = self._bool(p.get("trades", False))
        return {"open": {self.txid(o): self.order_json(o, trades=trades) for o in orders}}

    @staticmethod
    def _time_arg(v: Any) -> float | None:
        if v in (None, ""):
            return None
        return float(v)

    def closed_orders(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        orders = [o for o in self.engine.account_orders(key) if not o.is_open]
        orders = self._filter(sorted(orders, key=lambda o: -(o.closed_ms or 0)), p)
        start, end = self._time_arg(p.get("start")), self._time_arg(p.get("end"))
        if start is not None:
            orders = [o for o in orders if (o.closed_ms or 0) / 1000 > start]
        if end is not None:
            orders = [o for o in orders if (o.closed_ms or 0) / 1000 <= end]
        ofs = int(p.get("ofs", 0) or 0)
        trades = self._bool(p.get("trades", False))
        page = orders[ofs:ofs + PAGE]
        return {"closed": {self.txid(o): self.order_json(o, trades=trades) for o in page}, "count": len(orders)}

    def trades_history(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        fault: Fault | None = request.get(TRADES_FAULT)
        fills = sorted(self.engine.account_fills(key), key=lambda f: -f.id)
        start, end = self._time_arg(p.get("start")), self._time_arg(p.get("end"))
        # A JSON object cannot repeat a key, so "duplicate" is served like "overlap": fills the
        # client already has (before ``start``) come back again with the same ids.
        if fault is None or fault.mode not in ("overlap", "duplicate"):
            if start is not None:
                fills = [f for f in fills if f.time_ms / 1000 > start]
            if end is not None:
                fills = [f for f in fills if f.time_ms / 1000 <= end]
        ofs = int(p.get("ofs", 0) or 0)
        page = fills[ofs:ofs + PAGE]
        if fault is not None and fault.mode == "reorder":
            page = list(reversed(page))
        trades = {self.trade_id(f): self.trade_json(f) for f in page}
        return {"trades": trades, "count": len(fills)}

    def query_trades(self, p: dict[str, Any], key: str, request: web.Request) -> Any:
        ids = [t for t in str(p.get("txid", "")).split(",") if t]
        by_id = {self.trade_id(f): f for f in self.engine.account_fills(key)}
        out = {}
        for t in ids:
            if t not in by_id:
                raise KrakenError("EQuery:Unknown trade")  # pragma: no cover - rarely used
            out[t] = self.trade_json(by_id[t])
        return out


__all__ = ["KrakenDialect", "default_instruments", "ASSETS", "CODE_TO_ID", "DUPLICATE_CL_ORD_ID"]
