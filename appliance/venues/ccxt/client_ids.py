"""Lyra's client order id on each exchange: which field carries it, its format, and how an order
can be found again by it.

Lyra's client order ids are 1-36 characters of ``[A-Za-z0-9_-]`` (generated ones are
``"ly-" + 20 hex``, 23 characters; see :mod:`appliance.execution.oms`). Exchanges are stricter in
different ways (OKX: letters and digits only; Kraken: 18 characters of free text or a UUID;
Gate: a ``t-`` prefix; Bitfinex: an integer), so the id sent is :func:`venue_client_id` of
Lyra's id: Lyra's id itself when it fits, else a deterministic digest of it in the exchange's
format. Deterministic matters: a re-send after a restart, a look-up and reconciliation all derive
the same exchange-side id from the id stored with the order, without any extra state.

Every entry of :data:`CLIENT_ID_SPECS` was checked against ccxt 4.5.90's Python sources
(``ccxt/async_support/<exchange>.py``: the ``create_order`` request builder and ``fetch_order`` /
``fetch_open_orders`` / ``fetch_closed_orders``) and the exchange's API documentation (URL path in
``source``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum


class LookupMethod(str, Enum):
    """How an order is found by its client id on an exchange.

    * ``FETCH_ORDER``: ``fetch_order(None, symbol, {lookup_param: id})``; the exchange answers
      "no such order" (ccxt ``OrderNotFound``) for an unknown id: a definitive answer.
    * ``OPEN_CLOSED_FILTERED``: ``fetch_open_orders`` then ``fetch_closed_orders(since=created)``
      with ``{lookup_param: id}``, which the exchange filters on server side; both lists empty is
      definitive.
    * ``OPEN_CLOSED_SCAN``: the same two lists without a server-side filter, matched on
      ``clientOrderId`` here; definitive only when the closed list was not cut by paging.
    * ``OPEN_ONLY``: only open orders can be listed; "not found" is never definitive, so an order
      lost in a timeout is left for an operator (venue DEGRADED) rather than re-sent.
    """

    FETCH_ORDER = "fetch_order"
    OPEN_CLOSED_FILTERED = "open_closed_filtered"
    OPEN_CLOSED_SCAN = "open_closed_scan"
    OPEN_ONLY = "open_only"


class Dedup(str, Enum):
    """What the exchange does with a second order carrying a client id it already holds."""

    ALWAYS = "always"  # refused whatever the state of the first order
    OPEN = "open"  # refused only while the first order is open (a filled one does not protect)
    RETURNS_EXISTING = "returns_existing"  # not created; the existing order is returned
    NONE = "none"  # not checked by the exchange (or not documented): a re-send may duplicate


@dataclass(frozen=True, slots=True)
class ClientIdSpec:
    """One exchange's client order id.

    Attributes:
        exchange_id: ccxt id.
        create_param: the key put in ``create_order``'s ``params`` (ccxt's unified
            ``clientOrderId`` when ccxt maps it, else the raw exchange field).
        exchange_field: the exchange's own request field.
        max_len: longest id accepted (characters, prefix included).
        pattern: regular expression a usable id must match (whole string).
        digest: format of the digest used when Lyra's id does not fit: ``"alnum"`` (``ly`` + hex,
            letters/digits only), ``"hex32"`` (32 hex, Kraken's "short UUID"), ``"int"`` (decimal
            integer below 2**45).
        prefix: prepended to the id (Gate's ``t-``); part of ``max_len``.
        lookup: how the order is found again (:class:`LookupMethod`).
        lookup_param: the params key for the look-up call (None for ``OPEN_CLOSED_SCAN``/``OPEN_ONLY``).
        dedup: the exchange's duplicate policy (:class:`Dedup`).
        fetch_by_venue_id: ``fetch_order(venue_order_id, symbol)`` works without caveats (used once
            the venue order id is known; Bybit's is limited to the last 500 orders).
        source: where this comes from.
    """

    exchange_id: str
    create_param: str
    exchange_field: str
    max_len: int
    pattern: str
    digest: str
    prefix: str = ""
    lookup: LookupMethod = LookupMethod.OPEN_CLOSED_SCAN
    lookup_param: str | None = None
    dedup: Dedup = Dedup.NONE
    fetch_by_venue_id: bool = True
    source: str = ""

    @property
    def definitive_not_found(self) -> bool:
        """Whether "not found" from :attr:`lookup` can ever be trusted (to re-send once, or to
        conclude ``lost_before_send``)."""
        return self.lookup is not LookupMethod.OPEN_ONLY


_SAFE36 = r"[A-Za-z0-9_-]{1,36}"

CLIENT_ID_SPECS: dict[str, ClientIdSpec] = {
    spec.exchange_id: spec
    for spec in (
        ClientIdSpec(
            "binance", "clientOrderId", "newClientOrderId", 36, r"[.A-Z:/a-z0-9_-]{1,36}", "alnum",
            lookup=LookupMethod.FETCH_ORDER, lookup_param="clientOrderId", dedup=Dedup.OPEN,
            source="ccxt binance.create_order_request (clientOrderId -> newClientOrderId), binance.fetch_order "
            "(clientOrderId -> origClientOrderId); POST/GET /api/v3/order "
            "(developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints): "
            "'newClientOrderId: a unique id among open orders', duplicate -> -2010 'Duplicate order sent.'",
        ),
        ClientIdSpec(
            "kraken", "clientOrderId", "cl_ord_id", 36, r"[A-Za-z0-9-]{1,18}|[0-9a-f]{32}|"
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "hex32",
            lookup=LookupMethod.OPEN_CLOSED_FILTERED, lookup_param="clientOrderId", dedup=Dedup.OPEN,
            source="ccxt kraken.order_request / fetch_open_orders / fetch_closed_orders (clientOrderId -> cl_ord_id); "
            "docs.kraken.com/api/docs/rest-api/add-order: cl_ord_id is a UUID, 32 hex or <= 18 chars of free text, "
            "unique among open orders; OpenOrders/ClosedOrders filter by cl_ord_id "
            "(userref, an int32, is the older alternative)",
        ),
        ClientIdSpec(
            "okx", "clientOrderId", "clOrdId", 32, r"[A-Za-z0-9]{1,32}", "alnum",
            lookup=LookupMethod.FETCH_ORDER, lookup_param="clOrdId", dedup=Dedup.OPEN,
            source="ccxt okx.create_order_request / fetch_order (clOrdId); POST /api/v5/trade/order, "
            "GET /api/v5/trade/order (www.okx.com/docs-v5/en/#order-book-trading-trade): "
            "clOrdId up to 32 letters/digits",
        ),
        ClientIdSpec(
            "bybit", "clientOrderId", "orderLinkId", 36, _SAFE36, "alnum",
            lookup=LookupMethod.OPEN_CLOSED_FILTERED, lookup_param="orderLinkId", dedup=Dedup.ALWAYS,
            fetch_by_venue_id=False,
            source="ccxt bybit.create_order_request (clientOrderId -> orderLinkId), fetch_open_orders / "
            "fetch_closed_orders pass orderLinkId through; /v5/order/create, /v5/order/realtime, /v5/order/history "
            "(bybit-exchange.github.io/docs/v5/order/create-order); duplicate -> 170141 / 12141; "
            "fetch_order only sees the last 500 orders",
        ),
        ClientIdSpec(
            "kucoin", "clientOrderId", "clientOid", 40, r"[A-Za-z0-9_-]{1,40}", "alnum",
            lookup=LookupMethod.FETCH_ORDER, lookup_param="clientOid", dedup=Dedup.NONE,
            source="ccxt kucoin.create_order_request / fetch_order (clientOid); "
            "GET /api/v1/order/client-order/{clientOid} "
            "(www.kucoin.com/docs-new/rest/spot-trading/orders/get-order-by-clientoid)",
        ),
        ClientIdSpec(
            "gate", "clientOrderId", "text", 28, r"t-[A-Za-z0-9_.-]{1,26}", "alnum", prefix="t-",
            lookup=LookupMethod.OPEN_CLOSED_SCAN, dedup=Dedup.NONE,
            source="ccxt gate.create_order_request (text, 't-' prefix, <= 28 chars as passed); POST /spot/orders "
            "(www.gate.io/docs/developers/apiv4/#create-an-order). GET /spot/orders/{text} resolves a text only "
            "while the order is open and for 60 s after it finished, and a repeated text is accepted, so a "
            "'not found' there is not definitive: open orders and finished orders (status=finished) are "
            "scanned for the text instead",
        ),
        ClientIdSpec(
            "coinbase", "client_order_id", "client_order_id", 36, _SAFE36, "alnum",
            lookup=LookupMethod.OPEN_CLOSED_SCAN, dedup=Dedup.RETURNS_EXISTING,
            source="ccxt coinbase.create_order IGNORES the unified clientOrderId (always sends "
            "'ccxt-' + uuid) but params override the request, so the raw client_order_id is used; "
            "POST /api/v3/brokerage/orders (docs.cdp.coinbase.com/advanced-trade/reference/"
            "retailbrokerageapi_postorder): a non-unique client_order_id returns the existing order",
        ),
        ClientIdSpec(
            "bitfinex", "clientOrderId", "cid", 14, r"[0-9]{1,14}", "int",
            lookup=LookupMethod.OPEN_CLOSED_SCAN, dedup=Dedup.NONE, fetch_by_venue_id=False,
            source="ccxt bitfinex.create_order_request (clientOrderId -> cid); POST /v2/auth/w/order/submit "
            "(docs.bitfinex.com/reference/rest-auth-submit-order): cid is an int45, unique per day, not enforced; "
            "ccxt bitfinex.fetch_order reads POST /v2/auth/r/orders[/{symbol}], which lists ACTIVE orders only "
            "(docs.bitfinex.com/reference/rest-auth-retrieve-orders): a filled or canceled order comes back as an "
            "empty ccxt order (status None), so closed orders are found in /v2/auth/r/orders/{symbol}/hist",
        ),
        ClientIdSpec(
            "gemini", "clientOrderId", "client_order_id", 36, _SAFE36, "alnum",
            lookup=LookupMethod.OPEN_ONLY, dedup=Dedup.NONE,
            source="ccxt gemini.create_order (clientOrderId -> client_order_id); ccxt's fetch_order takes an order_id "
            "only and there is no fetch_closed_orders; POST /v1/order/new (docs.gemini.com/rest-api/#new-order)",
        ),
        ClientIdSpec(
            "bitstamp", "clientOrderId", "client_order_id", 36, _SAFE36, "alnum",
            lookup=LookupMethod.FETCH_ORDER, lookup_param="client_order_id", dedup=Dedup.NONE,
            source="ccxt bitstamp.create_order / fetch_order (client_order_id); POST /api/v2/order_status/ accepts "
            "client_order_id (www.bitstamp.net/api/#tag/Orders/operation/GetOrderStatus)",
        ),
    )
}


def client_id_spec(exchange_id: str, has: dict | None = None) -> ClientIdSpec:
    """The spec of ``exchange_id``; for an exchange outside the table, ccxt's unified
    ``clientOrderId`` with a scan of open (and, when ccxt has ``fetchClosedOrders``, closed) orders.
    Whether ccxt forwards ``clientOrderId`` for such an exchange is NOT verified: check its
    ``create_order`` before trading on it."""
    spec = CLIENT_ID_SPECS.get(exchange_id)
    if spec is not None:
        return spec
    closed = bool((has or {}).get("fetchClosedOrders"))
    return ClientIdSpec(
        exchange_id, "clientOrderId", "clientOrderId", 32, r"[A-Za-z0-9]{1,32}", "alnum",
        lookup=LookupMethod.OPEN_CLOSED_SCAN if closed else LookupMethod.OPEN_ONLY,
        dedup=Dedup.NONE, source="default (not in the table): ccxt unified clientOrderId, unverified",
    )


def venue_client_id(spec: ClientIdSpec, client_order_id: str) -> str:
    """The client id sent to the exchange for Lyra's ``client_order_id``.

    Lyra's id itself (with the spec's prefix) when it matches ``spec.pattern``; otherwise a digest
    of it: ``"ly" + sha256 hex`` truncated to fit (``alnum``), 32 hex (``hex32``), or an integer
    below 2**45 (``int``). Deterministic; two different Lyra ids collide with probability
    ~2**-120 (alnum, hex32) or 2**-45 per pair (int, Bitfinex only).

    Raises:
        ValueError: empty ``client_order_id``.
    """
    if not client_order_id:
        raise ValueError("client_order_id is empty")
    direct = spec.prefix + client_order_id
    if len(direct) <= spec.max_len and re.fullmatch(spec.pattern, direct):
        return direct
    digest = hashlib.sha256(client_order_id.encode()).hexdigest()
    room = spec.max_len - len(spec.prefix)
    if spec.digest == "hex32":
        body = digest[:32]
    elif spec.digest == "int":
        body = str(int(digest[:12], 16) % (2**45))
    else:
        body = ("ly" + digest)[: min(room, 32)]
    return spec.prefix + body
