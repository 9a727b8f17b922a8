"""The per-venue request budget: token buckets shared by order traffic, reconciliation and
polling, sized from the exchange's documented limits.

Model
=====

An exchange limit is either a *window* ("6000 weight per minute") or a *decaying counter*
("max 15, -0.33 per second"). Both become a token bucket of ``capacity`` tokens refilled at
``refill_per_s``:

* window ``L`` per ``W`` seconds: ``capacity = s*L*b`` and ``refill = s*L*(1-b)/W``, where ``s`` is
  the safety factor (default 0.8) and ``b`` the burst fraction (default 0.2). In ANY interval of
  ``W`` seconds the bucket hands out at most ``capacity + refill*W = s*L`` tokens, so the
  exchange's fixed or sliding window can never be exceeded, whatever callers do.
* decaying counter ``max M``, decay ``d``/s: the same thing seen from the other side:
  ``capacity = s*M``, ``refill = s*d``.

A venue may have several buckets (Binance: request weight per IP *and* order count per
account); an operation takes its weight from every bucket at once, when all can afford it.

Priorities
==========

Waiters are served strictly by :class:`Priority` (``ORDER`` < ``RECONCILE`` < ``POLL``), FIFO
within one priority, and a lower priority never overtakes a waiting higher one. In addition
``RECONCILE`` and ``POLL`` may not take tokens that would leave less than ``order_reserve`` of a
bucket's capacity, so an order arriving after a polling burst finds tokens at once.

A 429/418 answer pauses the whole budget (:meth:`RequestBudget.pause`) until the exchange's
``Retry-After`` and empties the buckets.

Sources of the table: see each :data:`BUDGETS` entry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Mapping


class Priority(IntEnum):
    """Who asks: orders first, then reconciliation, then polling."""

    ORDER = 0
    RECONCILE = 1
    POLL = 2


# Operation kinds, named after the ccxt method (``fetch_open_orders_all``: without a symbol).
OPERATIONS = (
    "load_markets", "create_order", "cancel_order", "fetch_order", "fetch_open_orders", "fetch_open_orders_all",
    "fetch_closed_orders", "fetch_orders", "fetch_my_trades", "fetch_order_trades", "fetch_balance", "watch",
    "fetch_tickers",
)


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One limit of an exchange as a token bucket.

    Attributes:
        name: e.g. ``"request_weight"``, ``"orders"``.
        capacity: tokens when full (weight units).
        refill_per_s: tokens added per second.
        weights: operation kind -> tokens it takes; kinds not listed take ``default_weight``.
        default_weight: see above.
        limit, window_s: the exchange's documented limit this bucket was derived from (for checks
            and display): at most ``limit`` units in any ``window_s`` seconds; for a decaying
            counter, ``limit`` is its maximum and ``decay_per_s`` its decay (``window_s`` = 0).
        decay_per_s: see above (0 for a window limit).
    """

    name: str
    capacity: float
    refill_per_s: float
    weights: Mapping[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    limit: float = 0.0
    window_s: float = 0.0
    decay_per_s: float = 0.0

    def weight(self, kind: str) -> float:
        return float(self.weights.get(kind, self.default_weight))

    @classmethod
    def from_window(
        cls, name: str, limit: float, window_s: float, weights: Mapping[str, float] | None = None, *,
        default_weight: float = 1.0, safety: float = 0.8, burst_fraction: float = 0.2,
    ) -> "BucketSpec":
        """A bucket that never hands out more than ``safety * limit`` in any ``window_s`` seconds.

        Raises:
            ValueError: non-positive limit/window, safety or burst fraction outside (0, 1].
        """
        if limit <= 0 or window_s <= 0:
            raise ValueError(f"bucket {name}: limit and window must be > 0")
        if not 0 < safety <= 1 or not 0 < burst_fraction < 1:
            raise ValueError(f"bucket {name}: safety in (0, 1], burst_fraction in (0, 1)")
        usable = limit * safety
        return cls(name, usable * burst_fraction, usable * (1 - burst_fraction) / window_s, dict(weights or {}),
                   default_weight, limit, window_s)

    @classmethod
    def from_decay(
        cls, name: str, max_counter: float, decay_per_s: float, weights: Mapping[str, float] | None = None, *,
        default_weight: float = 1.0, safety: float = 0.8,
    ) -> "BucketSpec":
        """A bucket for a "counter with max, decaying per second" limit (Kraken).

        Raises:
            ValueError: non-positive max or decay, safety outside (0, 1].
        """
        if max_counter <= 0 or decay_per_s <= 0 or not 0 < safety <= 1:
            raise ValueError(f"bucket {name}: max and decay must be > 0, safety in (0, 1]")
        return cls(name, max_counter * safety, decay_per_s * safety, dict(weights or {}), default_weight,
                   max_counter, 0.0, decay_per_s)


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """An exchange's limits. ``source`` cites where the numbers come from."""

    exchange_id: str
    buckets: tuple[BucketSpec, ...]
    source: str = ""


# Binance spot REST: REQUEST_WEIGHT 6000 per minute per IP, ORDERS 100 per 10 s per account
# (GET /api/v3/exchangeInfo "rateLimits"; developers.binance.com/docs/binance-spot-api-docs/rest-api/limits).
# Endpoint weights (developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints,
# .../account-endpoints, .../general-endpoints): POST /api/v3/order 1, DELETE /api/v3/order 1,
# GET /api/v3/order 4, GET /api/v3/openOrders 6 with a symbol / 80 without, GET /api/v3/allOrders 20,
# GET /api/v3/myTrades 20 (5 with orderId), GET /api/v3/account 20, GET /api/v3/exchangeInfo 20. They match ccxt's
# own costs x 5 (ccxt binance: rateLimit 50 ms, api 'private' costs order 0.8, openOrders 1.2 / noSymbol 16,
# myTrades 4, account 4).
BINANCE_WEIGHTS = {
    "load_markets": 20, "create_order": 1, "cancel_order": 1, "fetch_order": 4, "fetch_open_orders": 6,
    "fetch_open_orders_all": 80, "fetch_closed_orders": 20, "fetch_orders": 20, "fetch_my_trades": 20,
    "fetch_order_trades": 5, "fetch_balance": 20, "watch": 2,
}
# Kraken spot REST (docs.kraken.com/api/docs/guides/spot-rest-ratelimits): private call counter, max 15
# and decay 0.33/s for the Starter tier (the lowest, so safe for all tiers); +1 per call, +2 for the
# history calls (TradesHistory, QueryTrades, Ledgers; ClosedOrders counted as 2 here to stay on the safe
# side); AddOrder/CancelOrder do not count there but in the trading counter
# (docs.kraken.com/api/docs/guides/spot-ratelimits): Starter max 60, decay 1/s, +1 per order, up to +8 for a
# cancel within 5 s of placing (counted as 8 here). Public AssetPairs (load_markets): 1/s, counted as 1.
KRAKEN_REST_WEIGHTS = {
    "load_markets": 1, "create_order": 0, "cancel_order": 0, "fetch_order": 1, "fetch_open_orders": 1,
    "fetch_open_orders_all": 1, "fetch_closed_orders": 2, "fetch_orders": 2, "fetch_my_trades": 2,
    "fetch_order_trades": 2, "fetch_balance": 1, "watch": 1,
}

BUDGETS: dict[str, BudgetSpec] = {
    "binance": BudgetSpec(
        "binance",
        (
            BucketSpec.from_window("request_weight", 6000, 60, BINANCE_WEIGHTS),
            BucketSpec.from_window("orders", 100, 10, {"create_order": 1}, default_weight=0),
        ),
        source="developers.binance.com/docs/binance-spot-api-docs/rest-api/limits (REQUEST_WEIGHT 6000/min, "
        "ORDERS 100/10s) and endpoint weights of .../rest-api/trading-endpoints",
    ),
    "kraken": BudgetSpec(
        "kraken",
        (
            BucketSpec.from_decay("rest_counter", 15, 0.33, KRAKEN_REST_WEIGHTS),
            BucketSpec.from_decay("trading_counter", 60, 1.0, {"create_order": 1, "cancel_order": 8}, default_weight=0),
        ),
        source="docs.kraken.com/api/docs/guides/spot-rest-ratelimits (Starter: max 15, -0.33/s) and "
        "docs.kraken.com/api/docs/guides/spot-ratelimits (Starter: max 60, -1/s)",
    ),
    # OKX v5: a limit per endpoint (per user id, or per IP for public data) in 2-second windows.
    "okx": BudgetSpec(
        "okx",
        (
            BucketSpec.from_window("place", 60, 2, {"create_order": 1}, default_weight=0),
            BucketSpec.from_window("cancel", 60, 2, {"cancel_order": 1}, default_weight=0),
            BucketSpec.from_window("order_queries", 60, 2, {"fetch_order": 1, "fetch_open_orders": 1,
                                                            "fetch_open_orders_all": 1}, default_weight=0),
            BucketSpec.from_window("orders_history", 40, 2, {"fetch_closed_orders": 1, "fetch_orders": 1},
                                   default_weight=0),
            BucketSpec.from_window("fills_history", 10, 2, {"fetch_my_trades": 1, "fetch_order_trades": 1},
                                   default_weight=0),
            BucketSpec.from_window("balance", 10, 2, {"fetch_balance": 1}, default_weight=0),
            BucketSpec.from_window("public", 20, 2, {"load_markets": 1, "fetch_tickers": 1}, default_weight=0),
        ),
        source="www.okx.com/docs-v5/en/#order-book-trading-trade (each endpoint's 'Rate Limit': place, cancel, "
        "order, orders-pending 60 per 2 s; orders-history 40/2s; fills-history 10/2s), "
        "#trading-account-rest-api-get-balance (10/2s), #public-data-rest-api-get-instruments (20/2s)",
    ),
    # KuCoin: resource pools per 30 s (VIP0), each endpoint with a documented weight.
    "kucoin": BudgetSpec(
        "kucoin",
        (
            BucketSpec.from_window("spot_pool", 4000, 30, {
                "create_order": 1, "cancel_order": 1, "fetch_order": 2, "fetch_open_orders": 2,
                "fetch_open_orders_all": 2, "fetch_closed_orders": 2, "fetch_orders": 2, "fetch_my_trades": 2,
                "fetch_order_trades": 2}, default_weight=0),
            BucketSpec.from_window("management_pool", 2000, 30, {"fetch_balance": 5}, default_weight=0),
            # load_markets: symbols 4 + margin/isolated symbol lists (weights estimated) = 45, counted high
            BucketSpec.from_window("public_pool", 2000, 30, {"load_markets": 45, "fetch_tickers": 15},
                                   default_weight=0),
        ),
        source="www.kucoin.com/docs-new/rate-limit (VIP0: Spot 4000/30s, Management 2000/30s, Public 2000/30s) "
        "and each endpoint's weight under www.kucoin.com/docs-new/rest/spot-trading",
    ),
    # Bybit v5: per IP 600 per 5 s (then a ban), per account a limit per endpoint per second.
    "bybit": BudgetSpec(
        "bybit",
        (
            BucketSpec.from_window("ip", 600, 5),
            BucketSpec.from_window("order_create", 20, 1, {"create_order": 1}, default_weight=0),
            BucketSpec.from_window("order_cancel", 20, 1, {"cancel_order": 1}, default_weight=0),
            BucketSpec.from_window("order_query", 50, 1, {
                "fetch_order": 1, "fetch_open_orders": 1, "fetch_open_orders_all": 1, "fetch_closed_orders": 1,
                "fetch_orders": 1}, default_weight=0),
            BucketSpec.from_window("executions", 50, 1, {"fetch_my_trades": 1, "fetch_order_trades": 1},
                                   default_weight=0),
            BucketSpec.from_window("wallet", 50, 1, {"fetch_balance": 1}, default_weight=0),
        ),
        source="bybit-exchange.github.io/docs/v5/rate-limit (IP 600/5s; per UID and endpoint per second: spot "
        "order create and cancel 20, order realtime/history, execution list, wallet balance 50)",
    ),
    # Gate v4: spot order placement 10/s per account and pair (one bucket for all pairs: conservative).
    "gate": BudgetSpec(
        "gate",
        (
            BucketSpec.from_window("order_create", 10, 1, {"create_order": 1}, default_weight=0),
            BucketSpec.from_window("order_cancel", 200, 1, {"cancel_order": 1}, default_weight=0),
            BucketSpec.from_window("private", 200, 10, {"load_markets": 0, "create_order": 0, "cancel_order": 0,
                                                        "fetch_tickers": 0}),
            BucketSpec.from_window("public", 200, 10, {"load_markets": 3, "fetch_tickers": 1}, default_weight=0),
        ),
        source="www.gate.com/docs/developers/apiv4/#frequency-limit-rule (spot order placement 10 r/s per UID "
        "and pair, cancel 200 r/s, other private endpoints 200 r/10s each, public 200 r/10s per IP)",
    ),
    # Bitfinex v2: 10 to 90 requests per minute per endpoint; one bucket at the most common 90 for
    # all endpoints together stays on the safe side.
    "bitfinex": BudgetSpec(
        "bitfinex", (BucketSpec.from_window("requests", 90, 60),),
        source="docs.bitfinex.com/docs/requirements-and-limitations (REST 10-90 requests/min per endpoint; "
        "auth/r/orders, auth/w/order/submit, auth/r/trades/hist, auth/r/wallets: 90/min, docs.bitfinex.com/reference)",
    ),
    "bitstamp": BudgetSpec(
        "bitstamp",
        (BucketSpec.from_window("requests_10min", 8000, 600), BucketSpec.from_window("requests_1s", 400, 1)),
        source="www.bitstamp.net/api/ (request limits: 400/s and 10 000 per 10 minutes; the older 8000 per 10 "
        "minutes, ccxt's rateLimit 75 ms, is used)",
    ),
    "coinbase": BudgetSpec(
        "coinbase",
        (
            BucketSpec.from_window("private", 30, 1.0, {"load_markets": 1}),
            # load_markets is 5 public requests at once: room for them within one second
            BucketSpec.from_window("public", 10, 1.0, {"load_markets": 5}, default_weight=0, burst_fraction=0.7),
        ),
        source="docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits (private 30 requests/s per user, "
        "public 10 requests/s per IP)",
    ),
    "gemini": BudgetSpec(
        "gemini",
        (
            BucketSpec.from_window("private", 600, 60, {"load_markets": 0}),
            BucketSpec.from_window("public", 120, 60, {"load_markets": 6}, default_weight=0),
        ),
        source="docs.gemini.com/rest/rate-limits (private 600/min per API key, public 120/min per IP)",
    ),
}


def budget_spec_for(exchange_id: str, rate_limit_ms: float | None = None, *, safety: float = 0.8) -> BudgetSpec:
    """The table's entry, or one bucket of ``1000/rateLimit`` requests per second taken from ccxt's
    ``rateLimit`` (ccxt's own estimate of the exchange's documented limit, in ms between requests
    of cost 1; ccxt manual, "Rate Limit"), every operation of weight 1.

    Raises:
        ValueError: not in the table and no usable ``rate_limit_ms``.
    """
    spec = BUDGETS.get(exchange_id)
    if spec is not None:
        return spec
    if not rate_limit_ms or rate_limit_ms <= 0:
        raise ValueError(f"no budget for {exchange_id!r}: not in the table and ccxt gives no rateLimit")
    per_minute = 60_000.0 / float(rate_limit_ms)
    return BudgetSpec(
        exchange_id, (BucketSpec.from_window("requests", per_minute, 60, safety=safety),),
        source=f"ccxt {exchange_id}.rateLimit = {rate_limit_ms} ms",
    )


@dataclass(slots=True)
class _Bucket:
    spec: BucketSpec
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.spec.capacity, self.tokens + (now - self.stamp) * self.spec.refill_per_s)
            self.stamp = now


class RequestBudget:
    """Token buckets with strict priorities, for one venue (one exchange account and IP).

    Args:
        spec: the exchange's limits (:data:`BUDGETS` or :func:`budget_spec_for`).
        order_reserve: fraction of each bucket's capacity that only ``Priority.ORDER`` may use.
        time_fn: monotonic seconds (``time.monotonic``); injectable for tests.

    Every call of :meth:`acquire` is counted (by kind and priority); waits, 429s and bans too:
    see :meth:`counters`.
    """

    def __init__(self, spec: BudgetSpec, *, order_reserve: float = 0.25,
                 time_fn: Callable[[], float] = time.monotonic) -> None:
        if not spec.buckets:
            raise ValueError("a budget needs at least one bucket")
        if not 0 <= order_reserve < 1:
            raise ValueError("order_reserve must be in [0, 1)")
        self.spec = spec
        self.order_reserve = order_reserve
        self._time = time_fn
        now = time_fn()
        self._buckets = [_Bucket(b, b.capacity, now) for b in spec.buckets]
        self._heap: list[tuple[int, int, tuple[float, ...], asyncio.Future]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._paused_until = 0.0
        self.requests_by_kind: Counter[str] = Counter()
        self.requests_by_priority: Counter[str] = Counter()
        self.weight_by_bucket: Counter[str] = Counter()
        self.waits = 0
        self.wait_seconds = 0.0
        self.rate_limited = 0
        self.bans = 0
        self._recent: deque[float] = deque()

    # -- sizing -------------------------------------------------------------------------------
    def weights(self, kind: str) -> tuple[float, ...]:
        """Tokens ``kind`` takes from each bucket (capped at the bucket's capacity)."""
        return tuple(min(b.spec.weight(kind), b.spec.capacity) for b in self._buckets)

    def sustainable_interval_s(self, kinds: Mapping[str, int], share: float) -> float:
        """Shortest period at which a cycle of ``kinds`` (kind -> calls per cycle) can repeat forever
        using at most ``share`` of every bucket's refill rate (seconds; 0 if it costs nothing)."""
        interval = 0.0
        for bucket in self._buckets:
            cost = sum(bucket.spec.weight(kind) * n for kind, n in kinds.items())
            if cost > 0:
                interval = max(interval, cost / (bucket.spec.refill_per_s * share))
        return interval

    # -- use ----------------------------------------------------------------------------------
    async def acquire(self, kind: str, priority: Priority = Priority.POLL) -> None:
        """Wait until ``kind`` may be sent, then take its tokens.

        Cancellation while waiting takes nothing.
        """
        weights = self.weights(kind)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        started = self._time()
        heapq.heappush(self._heap, (int(priority), next(self._seq), weights, future))
        self._pump()
        if not future.done():
            self.waits += 1
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():  # granted just before the cancel: give back
                    for bucket, w in zip(self._buckets, weights):
                        bucket.tokens = min(bucket.spec.capacity, bucket.tokens + w)
                else:
                    future.cancel()
                self._pump()
                raise
            self.wait_seconds += self._time() - started
        self.requests_by_kind[kind] += 1
        self.requests_by_priority[priority.name.lower()] += 1
        for bucket, w in zip(self._buckets, weights):
            self.weight_by_bucket[bucket.spec.name] += w
        now = self._time()
        self._recent.append(now)
        self._trim(now)

    def pause(self, seconds: float, *, ban: bool = False) -> None:
        """Stop handing out tokens for ``seconds`` (the exchange's Retry-After) and empty the buckets:
        called on HTTP 429 (``ban=False``) or 418 (``ban=True``)."""
        now = self._time()
        if ban:
            self.bans += 1
        else:
            self.rate_limited += 1
        self._paused_until = max(self._paused_until, now + max(0.0, seconds))
        for bucket in self._buckets:
            bucket.refill(now)
            bucket.tokens = 0.0
            bucket.stamp = max(bucket.stamp, self._paused_until)
        self._reschedule(0.0)

    def paused_for(self) -> float:
        """Seconds left in a pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._time())

    def requests_last_minute(self) -> int:
        self._trim(self._time())
        return len(self._recent)

    def counters(self) -> dict:
        """For metrics and the status API: requests by kind and priority, weight by bucket, waits
        (count, total seconds), 429s, bans, requests in the last minute, tokens left per bucket."""
        now = self._time()
        tokens = {}
        for bucket in self._buckets:
            bucket.refill(now)
            tokens[bucket.spec.name] = round(bucket.tokens, 3)
        return {
            "requests_by_kind": dict(self.requests_by_kind),
            "requests_by_priority": dict(self.requests_by_priority),
            "weight_by_bucket": dict(self.weight_by_bucket),
            "waits": self.waits,
            "wait_seconds": round(self.wait_seconds, 6),
            "rate_limited": self.rate_limited,
            "bans": self.bans,
            "requests_last_minute": self.requests_last_minute(),
            "tokens": tokens,
            "paused_for_s": round(self.paused_for(), 3),
            "queued": sum(1 for *_, f in self._heap if not f.done()),
        }

    # -- internals ----------------------------------------------------------------------------
    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()

    def _shortfall_s(self, weights: tuple[float, ...], priority: int, now: float) -> float:
        """Seconds until every bucket can give ``weights`` at ``priority`` (0 = now)."""
        if now < self._paused_until:
            return self._paused_until - now
        wait = 0.0
        for bucket, w in zip(self._buckets, weights):
            if w <= 0:
                continue
            bucket.refill(now)
            reserve = 0.0 if priority == Priority.ORDER else self.order_reserve * bucket.spec.capacity
            need = w + min(reserve, max(0.0, bucket.spec.capacity - w)) - bucket.tokens
            if need > 1e-9:
                wait = max(wait, need / bucket.spec.refill_per_s)
        return wait

    def _pump(self) -> None:
        self._timer = None
        now = self._time()
        while self._heap:
            priority, _, weights, future = self._heap[0]
            if future.done():
                heapq.heappop(self._heap)
                continue
            wait = self._shortfall_s(weights, priority, now)
            if wait > 0:
                self._reschedule(wait)
                return
            heapq.heappop(self._heap)
            for bucket, w in zip(self._buckets, weights):
                bucket.tokens -= w
            future.set_result(None)

    def _reschedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._heap:
            self._timer = loop.call_later(max(delay, 0.0) + 1e-4, self._pump)
