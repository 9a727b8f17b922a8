"""Coinbase Advanced Trade spot REST dialect (``/api/v3/brokerage/...`` plus the few ``/v2`` calls
ccxt's ``coinbase`` makes while loading markets).

Public (``/api/v3/brokerage/market/...``, also ``/api/v3/brokerage/time``): ``products``,
``products/{id}``, ``products/{id}/ticker``, ``products/{id}/candles``, ``product_book``.
``/v2``: ``time``, ``currencies``, ``currencies/crypto``, ``exchange-rates`` (ccxt's
``fetch_currencies`` runs on every ``load_markets`` and cannot be switched off by an option).
Private (``/api/v3/brokerage``): ``accounts``, ``transaction_summary``, ``orders`` (POST),
``orders/batch_cancel``, ``orders/historical/{order_id}``, ``orders/historical/batch``,
``orders/historical/fills``, the private twins of the market-data calls; ``/v2/accounts``.

Authentication as Coinbase Developer Platform (CDP) API keys do it: ``Authorization: Bearer
<JWT>``, the JWT signed ES256 (ECDSA P-256 / SHA-256, raw ``r||s`` signature) with the key's
EC private key; header ``kid`` and claim ``sub`` are the key name, ``nbf``/``exp`` bound it
(at most 120 s), ``uri`` is ``"<METHOD> <host><path>"`` of this very request. Anything wrong
(unknown key, bad signature, expired, wrong uri) gets ``401`` with the text body
``Unauthorized`` as Coinbase's gateway answers. The emulator's "host" accepts the ``http://``
prefix ccxt leaves in ``uri`` when its URL is not ``https://`` (it strips only ``https://``).

Rate limits (docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits): private endpoints
30 requests per second per user, public 10 per second per IP; a request over the limit gets 429
``{"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .dialect import RECORD, TRADES_FAULT, Dialect
from .engine import CANCELED, EXPIRED, FILLED, D, Engine, EngineError, Fill, Instrument, Order, ZERO, dec, is_multiple
from .faults import Fault, RequestRecord

V3 = "/api/v3/brokerage"
JWT_MAX_LIFETIME_S = 120
ISSUERS = ("cdp", "coinbase-cloud")  # current CDP keys / the issuer ccxt 4.5.90 still sends
RATE_LIMITED_BODY = {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}
# GET /orders/historical/{id} for an id the account does not have (the body ccxt quotes in its
# coinbase.ts error table; ccxt matches its broad rule against "error", so it raises ExchangeError)
ORDER_NOT_FOUND = {"error": "unknown", "error_details": "order with this orderID was not found",
                   "message": "order with this orderID was not found"}
GRANULARITY_S = {"ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "THIRTY_MINUTE": 1800,
                 "ONE_HOUR": 3600, "TWO_HOUR": 7200, "SIX_HOUR": 21600, "ONE_DAY": 86400}
CANDLES_MAX = 350
FILLS_DEFAULT_LIMIT = 100
ORDERS_DEFAULT_LIMIT = 100

CURRENCIES = {  # code -> (name, exponent, fiat)
    "BTC": ("Bitcoin", 8, False), "ETH": ("Ethereum", 8, False), "USDT": ("Tether", 6, False),
    "USDC": ("USD Coin", 6, False), "USD": ("US Dollar", 2, True), "EUR": ("Euro", 2, True),
}


def _product(base: str, quote: str, base_increment: str, price_increment: str, base_min: str, base_max: str,
             quote_min: str, quote_max: str, mark: str) -> Instrument:
    return Instrument(
        f"{base}/{quote}", base, quote, f"{base}-{quote}", tick_size=price_increment, step_size=base_increment,
        min_qty=base_min, max_qty=base_max, min_notional=quote_min, mark=mark, max_price="100000000",
        extra={"base_increment": base_increment, "quote_increment": price_increment, "price_increment": price_increment,
               "base_min_size": base_min, "base_max_size": base_max, "quote_min_size": quote_min,
               "quote_max_size": quote_max},
    )


def default_instruments() -> list[Instrument]:
    """BTC-USDT, ETH-USDT, ETH-BTC, BTC-USD with Coinbase-like increments and size limits."""
    return [
        _product("BTC", "USDT", "0.00000001", "0.01", "0.00000001", "3400", "1", "50000000", "60000"),
        _product("ETH", "USDT", "0.00000001", "0.01", "0.00000001", "42000", "1", "50000000", "3000"),
        _product("ETH", "BTC", "0.00000001", "0.00001", "0.00000001", "2800", "0.000016", "500", "0.05"),
        _product("BTC", "USD", "0.00000001", "0.01", "0.00000001", "3400", "1", "150000000", "60000"),
    ]


def iso(ms: int) -> str:
    """``2023-01-16T23:37:23.947000Z`` (Coinbase writes microseconds)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_ms(s: str) -> int:
    s = s.strip().replace("Z", "+00:00")
    if "." in s:  # Python < 3.11 rejects 9-digit fractions; Coinbase sends up to nanoseconds
        head, _, tail = s.partition(".")
        frac = "".join(ch for ch in tail if ch.isdigit())
        rest = tail[len(frac):]
        s = f"{head}.{frac[:6].ljust(6, '0')}{rest}"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def s(x: Decimal | None) -> str:
    """Plain decimal string without exponent or trailing zeros ("0" for zero / None)."""
    if x is None or x == 0:
        return "0"
    out = format(x.normalize(), "f")
    return out


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class CoinbaseError(Exception):
    """An error answer: HTTP ``status`` with a JSON body (or text when ``text`` is set)."""

    def __init__(self, status: int, body: Any = None, text: str | None = None, code: str = "") -> None:
        super().__init__(code or text or str(body))
        self.status, self.body, self.text, self.code = status, body, text, code

    def response(self) -> web.Response:
        if self.text is not None:
            return web.Response(status=self.status, text=self.text, content_type="text/plain")
        return web.json_response(self.body, status=self.status)


UNAUTHORIZED = "Unauthorized\n"


class _Windows:
    """Fixed one-second windows per bucket key (Coinbase counts requests per second)."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}

    def take(self, key: str, limit: int, now: float) -> bool:
        window = int(now)
        start, used = self.counts.get(key, (window, 0))
        if start != window:
            used = 0
        if used + 1 > limit:
            self.counts[key] = (window, used)
            return False
        self.counts[key] = (window, used + 1)
        return True


_STATUS = {"NEW": "OPEN", "PARTIALLY_FILLED": "OPEN", FILLED: "FILLED", CANCELED: "CANCELLED",
           EXPIRED: "EXPIRED", "REJECTED": "FAILED"}
_TIF = {"limit_limit_gtc": "GOOD_UNTIL_CANCELLED", "limit_limit_gtd": "GOOD_UNTIL_DATE_TIME",
        "sor_limit_ioc": "IMMEDIATE_OR_CANCEL", "limit_limit_fok": "FILL_OR_KILL",
        "market_market_ioc": "IMMEDIATE_OR_CANCEL"}


class CoinbaseDialect(Dialect):
    """Coinbase Advanced Trade spot, CDP (JWT ES256) keys; see the module docstring."""

    name = "coinbase"
    ccxt_id = "coinbase"
    # Advanced Trade accounts (available + hold) instead of the v2 wallet list (totals only)
    ccxt_options = {"fetchBalance": "v3PrivateGetBrokerageAccounts"}
    url_keys = ("api",)
    my_trades_path = f"{V3}/orders/historical/fills"
    create_order_path = f"{V3}/orders"
    create_order_method = "POST"

    def __init__(self, emulator: Any, *, fee_rate: object = "0.001", private_per_s: int = 30,
                 public_per_s: int = 10, instruments: list[Instrument] | None = None) -> None:
        engine = Engine("coinbase", instruments or default_instruments(), fee_rate=dec(fee_rate), fee_in="quote")
        super().__init__(emulator, engine)
        self.private_per_s = private_per_s
        self.public_per_s = public_per_s
        self._lock = threading.Lock()
        self._windows = _Windows()
        self._salt = hashlib.sha256(str(id(self)).encode()).hexdigest()[:8]
        self.uuid_of: dict[int, str] = {}
        self.order_of_uuid: dict[str, int] = {}
        self.account_uuid: dict[tuple[str, str], str] = {}
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}

    # ------------------------------------------------------------------ class hooks
    @classmethod
    def test_secret(cls, seed: str) -> str:
        """A PEM ``EC PRIVATE KEY`` (P-256) derived from ``seed``, the form CDP keys come in."""
        n = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
        value = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (n - 1) + 1
        key = ec.derive_private_key(value, ec.SECP256R1())
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()).decode()

    @classmethod
    def relaxed_limits(cls) -> tuple[dict[str, Any], Any]:
        # 30/s private is plenty for the venue's polling; only public bursts at start-up need room
        return {"private_per_s": 100, "public_per_s": 50}, None

    def pacing(self, headroom: float) -> dict[str, Any]:
        # ccxt costs: private v3 1, public v3 3 (= 10/s at 34 ms); keep that ratio
        return {"rateLimit": headroom * 1000 / self.private_per_s}

    def configure(self, *, private_per_s: int | None = None, public_per_s: int | None = None) -> None:
        """Change the per-second limits (and forget the current windows)."""
        with self._lock:
            if private_per_s is not None:
                self.private_per_s = private_per_s
            if public_per_s is not None:
                self.public_per_s = public_per_s
            self._windows = _Windows()

    def add_account(self, api_key: str, secret: str, balances: dict[str, object],
                    password: str | None = None) -> None:
        super().add_account(api_key, secret, balances, password=password)
        try:
            private = serialization.load_pem_private_key(secret.encode(), password=None)
        except (ValueError, TypeError):
            return  # not a PEM key: every JWT of this key is refused, as Coinbase would
        if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
            self._keys[api_key] = private.public_key()

    # ------------------------------------------------------------------ ids
    def _uuid(self, kind: str, n: object) -> str:
        return str(uuid.UUID(bytes=hashlib.sha256(f"{kind}:{self._salt}:{n}".encode()).digest()[:16], version=4))

    def order_uuid(self, o: Order) -> str:
        u = self.uuid_of.get(o.seq)
        if u is None:
            u = self._uuid("order", o.seq)
            self.uuid_of[o.seq] = u
            self.order_of_uuid[u] = o.seq
        return u

    def user_id(self, key: str) -> str:
        return self._uuid("user", key)

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, Any]]:
        pub = [
            ("GET", f"{V3}/time", self.v3_time),
            ("GET", f"{V3}/market/products", self.products),
            ("GET", f"{V3}/market/products/{{product_id}}", self.product),
            ("GET", f"{V3}/market/products/{{product_id}}/ticker", self.ticker),
            ("GET", f"{V3}/market/products/{{product_id}}/candles", self.candles),
            ("GET", f"{V3}/market/product_book", self.product_book),
            ("GET", "/v2/time", self.v2_time),
            ("GET", "/v2/currencies", self.v2_currencies),
            ("GET", "/v2/currencies/crypto", self.v2_crypto),
            ("GET", "/v2/exchange-rates", self.v2_rates),
        ]
        priv = [
            ("GET", f"{V3}/accounts", self.accounts),
            ("GET", f"{V3}/transaction_summary", self.transaction_summary),
            ("POST", f"{V3}/orders", self.create_order),
            ("POST", f"{V3}/orders/batch_cancel", self.batch_cancel),
            ("GET", f"{V3}/orders/historical/batch", self.list_orders),
            ("GET", f"{V3}/orders/historical/fills", self.list_fills),
            ("GET", f"{V3}/orders/historical/{{order_id}}", self.get_order),
            ("GET", f"{V3}/products", self.products),
            ("GET", f"{V3}/products/{{product_id}}", self.product),
            ("GET", f"{V3}/products/{{product_id}}/ticker", self.ticker),
            ("GET", f"{V3}/products/{{product_id}}/candles", self.candles),
            ("GET", f"{V3}/product_book", self.product_book),
            ("GET", "/v2/accounts", self.v2_accounts),
        ]
        return ([(m, p, self._wrap(fn, private=False)) for m, p, fn in pub]
                + [(m, p, self._wrap(fn, private=True)) for m, p, fn in priv])

    def _wrap(self, fn: Any, *, private: bool) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            rec: RequestRecord = request[RECORD]
            try:
                key = self._authenticate(request, rec) if private else None
                body: dict[str, Any] = {}
                if request.method == "POST" and request.can_read_body:
                    raw = await request.text()
                    try:
                        body = json.loads(raw or "{}")
                    except ValueError:
                        raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": "invalid JSON body",
                                                  "message": "invalid JSON body"}, code="INVALID_ARGUMENT") from None
                with self.engine.lock:
                    return web.json_response(fn(request, key, body))
            except CoinbaseError as e:
                rec.error = e.code or e.status
                return e.response()
        return handler

    # ------------------------------------------------------------------ auth
    def _authenticate(self, request: web.Request, rec: RequestRecord) -> str:
        """The key name of a valid CDP JWT for this request; CoinbaseError(401) otherwise."""
        def refuse(why: str) -> CoinbaseError:
            return CoinbaseError(401, text=UNAUTHORIZED, code=f"401:{why}")

        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise refuse("no bearer token")
        token = header[len("Bearer "):].strip()
        parts = token.split(".")
        if len(parts) != 3:
            raise refuse("malformed jwt")
        try:
            head = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            sig = _b64url_decode(parts[2])
        except (ValueError, TypeError):
            raise refuse("malformed jwt") from None
        if not isinstance(head, dict) or not isinstance(claims, dict) or head.get("alg") != "ES256":
            raise refuse("alg")
        key = claims.get("sub")
        if not isinstance(key, str) or head.get("kid") != key:
            raise refuse("kid/sub")
        rec.api_key = key
        public = self._keys.get(key)
        if public is None or key not in self.engine.accounts:
            raise refuse("unknown key")
        if len(sig) != 64:
            raise refuse("signature length")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise refuse("signature") from None
        if claims.get("iss") not in ISSUERS:
            raise refuse("iss")
        now = self.engine.now_ms() / 1000
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not isinstance(nbf, (int, float)) or not isinstance(exp, (int, float)):
            raise refuse("nbf/exp")
        if exp - nbf > JWT_MAX_LIFETIME_S or now < nbf or now >= exp:
            raise refuse("expired")
        uri = claims.get("uri")
        if uri is None and isinstance(claims.get("uris"), list) and claims["uris"]:
            uri = claims["uris"][0]
        method, _, target = str(uri or "").partition(" ")
        for scheme in ("https://", "http://"):
            if target.startswith(scheme):
                target = target[len(scheme):]
        if method != request.method or target != f"{request.host}{request.path}":
            raise refuse("uri")
        return key

    # ------------------------------------------------------------------ rate limit
    async def admit(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        private = not (request.path.startswith(f"{V3}/market/") or request.path == f"{V3}/time"
                       or (request.path.startswith("/v2/") and request.path != "/v2/accounts"))
        if private:
            bucket, limit = "key:" + self._unverified_sub(request), self.private_per_s
        else:
            bucket, limit = "ip:" + (request.remote or "?"), self.public_per_s
        with self._lock:
            ok = self._windows.take(bucket, limit, time.time())
        if ok:
            return None
        rec.error = "rate_limit_exceeded"
        return web.json_response(RATE_LIMITED_BODY, status=429)

    @staticmethod
    def _unverified_sub(request: web.Request) -> str:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            return str(json.loads(_b64url_decode(token.split(".")[1])).get("sub"))
        except (ValueError, TypeError, IndexError, AttributeError):
            return "anonymous"

    def fault_response(self, fault: Fault, rec: RequestRecord) -> web.StreamResponse:
        if fault.body is None and fault.status == 429:
            return web.json_response(RATE_LIMITED_BODY, status=429, headers=fault.headers)
        return super().fault_response(fault, rec)

    # ------------------------------------------------------------------ helpers
    def _instrument(self, product_id: str | None) -> Instrument:
        ins = self.engine.by_venue_id.get(product_id or "")
        if ins is None:
            raise CoinbaseError(404, {"error": "NOT_FOUND", "error_details": "ProductID is invalid",
                                      "message": "ProductID is invalid"}, code="NOT_FOUND")
        return ins

    @staticmethod
    def _multi(request: web.Request, *names: str) -> list[str]:
        out: list[str] = []
        for name in names:
            for v in request.query.getall(name, []):
                out.extend(x for x in v.split(",") if x)
        return out

    def _product_json(self, ins: Instrument) -> dict[str, Any]:
        x = ins.extra
        b, q = CURRENCIES.get(ins.base, (ins.base, 8, False)), CURRENCIES.get(ins.quote, (ins.quote, 8, False))
        return {
            "product_id": ins.venue_id, "price": s(ins.mark), "price_percentage_change_24h": "0",
            "volume_24h": "0", "volume_percentage_change_24h": "0", "base_increment": x["base_increment"],
            "quote_increment": x["quote_increment"], "quote_min_size": x["quote_min_size"],
            "quote_max_size": x["quote_max_size"], "base_min_size": x["base_min_size"],
            "base_max_size": x["base_max_size"], "base_name": b[0], "quote_name": q[0], "watched": False,
            "is_disabled": False, "new": False, "status": "online", "cancel_only": False, "limit_only": False,
            "post_only": False, "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
            "quote_currency_id": ins.quote, "base_currency_id": ins.base, "fcm_trading_session_details": None,
            "mid_market_price": "", "alias": "", "alias_to": [], "base_display_symbol": ins.base,
            "quote_display_symbol": ins.quote, "view_only": False, "price_increment": x["price_increment"],
            "display_name": ins.venue_id, "product_venue": "CBE", "approximate_quote_24h_volume": "0",
        }

    def _config(self, o: Order) -> dict[str, Any]:
        kind = o.extra.get("config", "limit_limit_gtc")
        if kind == "market_market_ioc":
            cfg = {"quote_size": s(o.quote_qty)} if o.quote_qty is not None else {"base_size": s(o.qty)}
        else:
            cfg = {"base_size": s(o.qty), "limit_price": s(o.price)}
            if kind in ("limit_limit_gtc", "limit_limit_gtd"):
                cfg["post_only"] = bool(o.extra.get("post_only", False))
            if kind == "limit_limit_gtd":
                cfg["end_time"] = o.extra.get("end_time", "")
        return {kind: cfg}

    def order_json(self, o: Order) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        kind = o.extra.get("config", "limit_limit_gtc")
        completion = (o.filled / o.qty * 100) if o.qty else ZERO
        return {
            "order_id": self.order_uuid(o), "product_id": ins.venue_id, "user_id": self.user_id(o.account),
            "order_configuration": self._config(o), "side": o.side, "client_order_id": o.client_order_id or "",
            "status": _STATUS[o.status], "time_in_force": _TIF.get(kind, "GOOD_UNTIL_CANCELLED"),
            "created_time": iso(o.created_ms), "completion_percentage": s(completion.quantize(D("0.01"))),
            "filled_size": s(o.filled), "average_filled_price": s(o.avg_price), "fee": "",
            "number_of_fills": str(len(o.fills)), "filled_value": s(o.cum_quote), "pending_cancel": False,
            "size_in_quote": o.quote_qty is not None, "total_fees": s(o.fee), "size_inclusive_of_fees": False,
            "total_value_after_fees": s(o.cum_quote + o.fee if o.side == "BUY" else o.cum_quote - o.fee),
            "trigger_status": "INVALID_ORDER_TYPE", "order_type": "MARKET" if o.type == "MARKET" else "LIMIT",
            "reject_reason": "REJECT_REASON_UNSPECIFIED", "settled": not o.is_open, "product_type": "SPOT",
            "reject_message": "", "cancel_message": "User requested cancel" if o.status == CANCELED else "",
            "order_placement_source": "RETAIL_ADVANCED", "outstanding_hold_amount": s(o.locked),
            "is_liquidation": False, "last_fill_time": iso(o.fills[-1].time_ms) if o.fills else None,
            "edit_history": [], "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE", "retail_portfolio_id": "",
        }

    def fill_json(self, f: Fill) -> dict[str, Any]:
        ins = self.engine.instruments[f.symbol]
        order = self.engine.orders[f.order_seq]
        return {
            "entry_id": hashlib.sha256(f"entry:{self._salt}:{f.id}".encode()).hexdigest(),
            "trade_id": self._uuid("trade", f.id), "order_id": self.order_uuid(order),
            "trade_time": iso(f.time_ms), "trade_type": "FILL", "price": s(f.price), "size": s(f.qty),
            "commission": s(f.fee), "product_id": ins.venue_id, "sequence_timestamp": iso(f.time_ms),
            "liquidity_indicator": "MAKER" if f.is_maker else "TAKER", "size_in_quote": False,
            "user_id": self.user_id(f.account), "side": f.side, "retail_portfolio_id": "",
        }

    # ------------------------------------------------------------------ public
    def v3_time(self, request: web.Request, key: Any, body: dict) -> Any:
        now = self.engine.now_ms()
        return {"iso": iso(now), "epochSeconds": str(now // 1000), "epochMillis": str(now)}

    def v2_time(self, request: web.Request, key: Any, body: dict) -> Any:
        now = self.engine.now_ms()
        return {"data": {"iso": iso(now).split(".")[0] + "Z", "epoch": now // 1000}}

    def v2_currencies(self, request: web.Request, key: Any, body: dict) -> Any:
        return {"data": [{"id": c, "name": n, "min_size": "0.01"} for c, (n, _, fiat) in CURRENCIES.items() if fiat]}

    def v2_crypto(self, request: web.Request, key: Any, body: dict) -> Any:
        return {"data": [{"asset_id": self._uuid("asset", c), "code": c, "name": n, "color": "#000000",
                          "sort_index": i, "exponent": e, "type": "crypto", "address_regex": ""}
                         for i, (c, (n, e, fiat)) in enumerate(CURRENCIES.items()) if not fiat]}

    def v2_rates(self, request: web.Request, key: Any, body: dict) -> Any:
        base = request.query.get("currency", "USD")
        usd = {"USD": D(1), "USDT": D(1), "USDC": D(1), "EUR": D("1.08")}
        for ins in self.engine.instruments.values():
            if ins.quote in ("USD", "USDT") and ins.mark > 0:
                usd.setdefault(ins.base, ins.mark)
        ref = usd.get(base, D(1))
        return {"data": {"currency": base, "rates": {c: s((ref / p).quantize(D("1e-10"))) for c, p in usd.items()}}}

    def products(self, request: web.Request, key: Any, body: dict) -> Any:
        if request.query.get("product_type", "SPOT").upper() != "SPOT":
            return {"products": [], "num_products": 0}  # no futures / perpetuals here
        wanted = self._multi(request, "product_ids")
        items = [self._instrument(p) for p in wanted] if wanted else list(self.engine.instruments.values())
        return {"products": [self._product_json(i) for i in items], "num_products": len(items)}

    def product(self, request: web.Request, key: Any, body: dict) -> Any:
        return self._product_json(self._instrument(request.match_info["product_id"]))

    def ticker(self, request: web.Request, key: Any, body: dict) -> Any:
        ins = self._instrument(request.match_info["product_id"])
        now = self.engine.now_ms()
        trade = {"trade_id": str(now), "product_id": ins.venue_id, "price": s(ins.mark), "size": "0.001",
                 "time": iso(now), "side": "BUY", "bid": "", "ask": ""}
        return {"trades": [trade], "best_bid": s(ins.mark - ins.tick_size), "best_ask": s(ins.mark + ins.tick_size)}

    def product_book(self, request: web.Request, key: Any, body: dict) -> Any:
        ins = self._instrument(request.query.get("product_id"))
        n = max(1, min(int(request.query.get("limit", 50) or 50), 500))
        m, t = ins.mark, ins.tick_size
        return {"pricebook": {
            "product_id": ins.venue_id,
            "bids": [{"price": s(m - t * (i + 1)), "size": "1"} for i in range(n)],
            "asks": [{"price": s(m + t * (i + 1)), "size": "1"} for i in range(n)],
            "time": iso(self.engine.now_ms()),
        }, "last": s(m), "mid_market": s(m), "spread_bps": "0", "spread_absolute": s(2 * t)}

    def candles(self, request: web.Request, key: Any, body: dict) -> Any:
        ins = self._instrument(request.match_info["product_id"])
        gran = request.query.get("granularity", "")
        if gran not in GRANULARITY_S:
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": "granularity is invalid",
                                      "message": "granularity is invalid"}, code="INVALID_ARGUMENT")
        try:
            start, end = int(request.query["start"]), int(request.query["end"])
        except (KeyError, ValueError):
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": "start and end are required",
                                      "message": "start and end are required"}, code="INVALID_ARGUMENT") from None
        step = GRANULARITY_S[gran]
        if (end - start) // step > CANDLES_MAX:
            msg = f"number of candles requested should be less than {CANDLES_MAX}"
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": msg, "message": msg},
                                code="INVALID_ARGUMENT")
        rows = self.engine.aggregated_candles(ins.symbol, step * 1000) or []
        rows = [c for c in rows if start * 1000 <= c.open_ms < end * 1000]
        return {"candles": [{"start": str(c.open_ms // 1000), "low": s(c.low), "high": s(c.high), "open": s(c.open),
                             "close": s(c.close), "volume": s(c.volume)} for c in reversed(rows)]}

    # ------------------------------------------------------------------ private: accounts
    def _balances(self, key: str) -> list[tuple[str, Decimal, Decimal]]:
        acct = self.engine.accounts[key]
        assets = dict.fromkeys(list(acct.balances) + [a for i in self.engine.instruments.values() for a in (i.base, i.quote)])
        return [(a, acct.free(a), acct.locked(a)) for a in assets]

    def accounts(self, request: web.Request, key: str, body: dict) -> Any:
        limit = max(1, min(int(request.query.get("limit", 49) or 49), 250))
        offset = int(request.query.get("cursor") or 0)
        rows = self._balances(key)
        page = rows[offset:offset + limit]
        created = iso(self.engine.accounts[key].update_ms)
        out = []
        for a, free, locked in page:
            fiat = CURRENCIES.get(a, ("", 8, False))[2]
            uid = self.account_uuid.setdefault((key, a), self._uuid("account", f"{key}:{a}"))
            out.append({"uuid": uid, "name": f"{a} Wallet", "currency": a,
                        "available_balance": {"value": s(free), "currency": a}, "default": True, "active": True,
                        "created_at": created, "updated_at": created, "deleted_at": None,
                        "type": "ACCOUNT_TYPE_FIAT" if fiat else "ACCOUNT_TYPE_CRYPTO", "ready": True,
                        "hold": {"value": s(locked), "currency": a}, "retail_portfolio_id": self._uuid("portfolio", key),
                        "platform": "ACCOUNT_PLATFORM_CONSUMER"})
        more = offset + limit < len(rows)
        return {"accounts": out, "has_next": more, "cursor": str(offset + limit) if more else "", "size": len(out)}

    def v2_accounts(self, request: web.Request, key: str, body: dict) -> Any:
        data = []
        for a, free, locked in self._balances(key):
            name, exponent, fiat = CURRENCIES.get(a, (a, 8, False))
            data.append({"id": self._uuid("v2account", f"{key}:{a}"), "name": f"{a} Wallet", "primary": a == "BTC",
                         "type": "fiat" if fiat else "wallet",
                         "currency": {"code": a, "name": name, "exponent": exponent, "type": "fiat" if fiat else "crypto"},
                         "balance": {"amount": s(free + locked), "currency": a},
                         "resource": "account", "allow_deposits": True, "allow_withdrawals": True})
        return {"pagination": {"ending_before": None, "starting_after": None, "limit": len(data), "order": "desc",
                               "next_uri": None}, "data": data}

    def transaction_summary(self, request: web.Request, key: str, body: dict) -> Any:
        rate = s(self.engine.fee_rate)
        return {"total_volume": 0, "total_fees": 0,
                "fee_tier": {"pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "1000", "taker_fee_rate": rate,
                             "maker_fee_rate": rate, "aop_from": "", "aop_to": ""},
                "margin_rate": None, "goods_and_services_tax": None, "advanced_trade_only_volume": 0,
                "advanced_trade_only_fees": 0, "coinbase_pro_volume": 0, "coinbase_pro_fees": 0,
                "total_balance": "", "has_promo_fee": False}

    # ------------------------------------------------------------------ private: orders
    @staticmethod
    def _failure(error: str, message: str, preview: str, config: Any) -> dict[str, Any]:
        """Coinbase's HTTP 200 ``success: false`` answer of POST /orders."""
        return {"success": False, "error_response": {"error": error, "message": message, "error_details": message,
                                                     "preview_failure_reason": preview,
                                                     "new_order_failure_reason": error},
                "order_configuration": config}

    def create_order(self, request: web.Request, key: str, body: dict) -> Any:
        rec: RequestRecord = request[RECORD]
        config = body.get("order_configuration")
        client_id = str(body.get("client_order_id") or "")
        side = str(body.get("side", "")).upper()
        if not client_id:
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": "client_order_id is required",
                                      "message": "client_order_id is required"}, code="INVALID_ARGUMENT")
        ins = self.engine.by_venue_id.get(str(body.get("product_id", "")))

        def fail(error: str, message: str, preview: str) -> dict[str, Any]:
            rec.error = error
            return self._failure(error, message, preview, config)

        if ins is None:
            return fail("INVALID_PRODUCT_ID", "Invalid product_id", "PREVIEW_INVALID_PRODUCT_ID")
        if side not in ("BUY", "SELL"):
            return fail("INVALID_SIDE", "Invalid side", "PREVIEW_INVALID_SIDE")
        # Coinbase: a client_order_id already used returns that order instead of placing a new one
        existing = self.engine.find_by_client_id(key, client_id)
        if existing is not None:
            return self._success(existing, config)
        if not isinstance(config, dict) or len(config) != 1:
            return fail("UNSUPPORTED_ORDER_CONFIGURATION", "order_configuration is invalid",
                        "PREVIEW_INVALID_ORDER_CONFIG")
        (kind, cfg), = config.items()
        if kind not in ("market_market_ioc", "limit_limit_gtc", "sor_limit_ioc", "limit_limit_fok") or not isinstance(cfg, dict):
            return fail("UNSUPPORTED_ORDER_CONFIGURATION", f"{kind} is not supported", "PREVIEW_INVALID_ORDER_CONFIG")
        try:
            base = Decimal(str(cfg["base_size"])) if cfg.get("base_size") not in (None, "") else None
            quote = Decimal(str(cfg["quote_size"])) if cfg.get("quote_size") not in (None, "") else None
            price = Decimal(str(cfg["limit_price"])) if kind != "market_market_ioc" else None
        except (ArithmeticError, ValueError, KeyError):
            return fail("INVALID_ARGUMENT", "invalid size or price", "PREVIEW_INVALID_ARGUMENT")
        post_only = bool(cfg.get("post_only", False)) and kind == "limit_limit_gtc"
        if kind == "market_market_ioc":
            if (base is None) == (quote is None):
                return fail("INVALID_ARGUMENT", "exactly one of base_size and quote_size is required",
                            "PREVIEW_INVALID_ARGUMENT")
            if quote is not None and side != "BUY":
                return fail("UNSUPPORTED_ORDER_CONFIGURATION", "quote_size is only for market buys",
                            "PREVIEW_INVALID_ORDER_CONFIG")
        elif base is None or price is None:
            return fail("INVALID_ARGUMENT", "base_size and limit_price are required", "PREVIEW_INVALID_ARGUMENT")
        if price is not None and (price <= 0 or not is_multiple(price, ins.tick_size)):
            return fail("INVALID_PRICE_PRECISION", "Too many decimals in order price", "PREVIEW_INVALID_PRICE_PRECISION")
        if base is not None:
            if base <= 0 or not is_multiple(base, ins.step_size):
                return fail("INVALID_SIZE_PRECISION", "Too many decimals in order amount", "PREVIEW_INVALID_SIZE_PRECISION")
            if base < ins.min_qty:
                return fail("INVALID_LIMIT_PRICE", "Order size is too small", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL")
            if base > ins.max_qty:
                return fail("INVALID_LIMIT_PRICE", "Order size is too large", "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE")
        notional = quote if quote is not None else base * (price if price is not None else ins.mark)  # type: ignore[operator]
        if notional < ins.min_notional:
            return fail("INVALID_LIMIT_PRICE", "Order value is too small", "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL")
        tif = "IOC" if kind in ("sor_limit_ioc", "market_market_ioc") else "FOK" if kind == "limit_limit_fok" else "GTC"
        if kind == "limit_limit_fok" and ((side == "BUY" and price < ins.mark) or (side == "SELL" and price > ins.mark)):  # type: ignore[operator]
            tif = "IOC"  # not marketable: killed whole, as FOK; the engine expires unmatched IOC
        try:
            o = self.engine.place(
                key, ins.symbol, side, "MARKET" if kind == "market_market_ioc" else "LIMIT", qty=base, price=price,
                quote_qty=quote, client_order_id=client_id, time_in_force=tif, post_only=post_only,
                extra={"config": kind, "post_only": post_only},
            )
        except EngineError as e:
            if e.kind == "insufficient_funds":
                return fail("INSUFFICIENT_FUND", "Insufficient balance in source account", "PREVIEW_INSUFFICIENT_FUND")
            if e.kind == "would_take":
                return fail("INVALID_LIMIT_PRICE_POST_ONLY", "Limit price too aggressive for a post only order",
                            "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY")
            if e.kind == "no_quantity":
                return fail("INVALID_SIZE_PRECISION", "Order size is too small", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL")
            return fail("UNKNOWN_FAILURE_REASON", e.detail or e.kind, "UNKNOWN_PREVIEW_FAILURE_REASON")
        return self._success(o, config)

    def _success(self, o: Order, config: Any) -> dict[str, Any]:
        ins = self.engine.instruments[o.symbol]
        oid = self.order_uuid(o)
        return {"success": True,
                "success_response": {"order_id": oid, "product_id": ins.venue_id, "side": o.side,
                                     "client_order_id": o.client_order_id or ""},
                "order_configuration": config if config is not None else self._config(o)}

    def _own(self, key: str, order_id: str) -> Order | None:
        seq = self.order_of_uuid.get(order_id)
        o = self.engine.orders.get(seq) if seq is not None else None
        return o if o is not None and o.account == key else None

    def batch_cancel(self, request: web.Request, key: str, body: dict) -> Any:
        ids = body.get("order_ids")
        if not isinstance(ids, list) or not ids:
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": "order_ids is required",
                                      "message": "order_ids is required"}, code="INVALID_ARGUMENT")
        results = []
        for oid in ids[:100]:
            o = self._own(key, str(oid))
            if o is None or not o.is_open:
                request[RECORD].error = "UNKNOWN_CANCEL_ORDER"
                results.append({"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": str(oid)})
                continue
            self.engine.cancel(o)
            results.append({"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": str(oid)})
        return {"results": results}

    def get_order(self, request: web.Request, key: str, body: dict) -> Any:
        o = self._own(key, request.match_info["order_id"])
        if o is None:
            raise CoinbaseError(404, ORDER_NOT_FOUND, code="order not found")
        return {"order": self.order_json(o)}

    @staticmethod
    def _page(request: web.Request, items: list, default: int, maximum: int) -> tuple[list, str]:
        try:
            limit = int(request.query.get("limit", default) or default)
            offset = int(request.query.get("cursor") or 0)
        except ValueError:
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT", "error_details": "invalid limit or cursor",
                                      "message": "invalid limit or cursor"}, code="INVALID_ARGUMENT") from None
        limit = max(1, min(limit, maximum))
        page = items[offset:offset + limit]
        return page, (str(offset + limit) if offset + limit < len(items) else "")

    def list_orders(self, request: web.Request, key: str, body: dict) -> Any:
        statuses = set(self._multi(request, "order_status"))
        products = set(self._multi(request, "product_ids", "product_id"))
        if "OPEN" in statuses and len(statuses) > 1:
            raise CoinbaseError(400, {"error": "INVALID_ARGUMENT",
                                      "error_details": "OPEN is not allowed with other order statuses",
                                      "message": "OPEN is not allowed with other order statuses"},
                                code="INVALID_ARGUMENT")
        orders = sorted(self.engine.account_orders(key), key=lambda o: -o.seq)
        if statuses:
            orders = [o for o in orders if _STATUS[o.status] in statuses]
        if products:
            orders = [o for o in orders if self.engine.instruments[o.symbol].venue_id in products]
        if request.query.get("start_date"):
            start = parse_iso_ms(request.query["start_date"])
            orders = [o for o in orders if o.created_ms >= start]
        if request.query.get("end_date"):
            end = parse_iso_ms(request.query["end_date"])
            orders = [o for o in orders if o.created_ms <= end]
        page, cursor = self._page(request, orders, ORDERS_DEFAULT_LIMIT, 1000)
        return {"orders": [self.order_json(o) for o in page], "sequence": "0", "has_next": bool(cursor),
                "cursor": cursor}

    def list_fills(self, request: web.Request, key: str, body: dict) -> Any:
        fault: Fault | None = request.get(TRADES_FAULT)
        fills = sorted(self.engine.account_fills(key), key=lambda f: -f.id)
        products = set(self._multi(request, "product_ids", "product_id"))
        if products:
            fills = [f for f in fills if self.engine.instruments[f.symbol].venue_id in products]
        order_ids = set(self._multi(request, "order_ids", "order_id"))
        if order_ids:
            fills = [f for f in fills if self.order_uuid(self.engine.orders[f.order_seq]) in order_ids]
        if fault is None or fault.mode != "overlap":
            if request.query.get("start_sequence_timestamp"):
                start = parse_iso_ms(request.query["start_sequence_timestamp"])
                fills = [f for f in fills if f.time_ms >= start]
        if request.query.get("end_sequence_timestamp"):
            end = parse_iso_ms(request.query["end_sequence_timestamp"])
            fills = [f for f in fills if f.time_ms <= end]
        page, cursor = self._page(request, fills, FILLS_DEFAULT_LIMIT, 3000)
        rows = [self.fill_json(f) for f in page]
        if fault is not None and fault.mode == "duplicate":
            rows = [r for r in rows for _ in (0, 1)]
        elif fault is not None and fault.mode == "reorder":
            rows.reverse()
        return {"fills": rows, "cursor": cursor}


__all__ = ["CoinbaseDialect", "default_instruments", "ORDER_NOT_FOUND", "RATE_LIMITED_BODY"]
