"""How each exchange pages its own-trades list, so that every fill is read (ccxt 4.5.90's
``fetch_my_trades`` and the exchanges' API documentation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class TradePaging:
    """How an exchange pages its own-trades list (``fetch_my_trades``).

    Attributes:
        limit: trades asked per request (the documented maximum where it is at most 1000;
            without an explicit limit some exchanges answer only their 25-100 newest trades).
        mode: ``"forward"``: oldest first from ``since``, the next page starts at the newest
            trade seen; ``"until"``: newest first, the next page ends at the oldest trade seen
            (ccxt's ``until`` param); ``"offset"``: newest first, the next page skips what was
            read (``offset_param``), until a page reaches back past ``since``.
        params: extra ccxt params on every request.
        offset_param: the exchange's offset field (mode ``"offset"``).
    """

    limit: int
    mode: str = "forward"
    params: Mapping[str, Any] = field(default_factory=dict)
    offset_param: str = ""


#: Own-trades paging per exchange (ccxt 4.5.90's fetch_my_trades and the exchanges' docs: Binance
#: myTrades startTime ascending; Bitfinex trades/hist sort=1; OKX fills-history, Bybit
#: execution/list and KuCoin HF fills newest first with an end time; Kraken TradesHistory ``ofs``
#: and Bitstamp user_transactions ``offset`` newest first). Exchanges not listed: forward, 500.
TRADE_PAGES: dict[str, TradePaging] = {
    "binance": TradePaging(1000), "bitfinex": TradePaging(1000, params={"sort": 1}), "gemini": TradePaging(500),
    "coinbase": TradePaging(1000), "gate": TradePaging(1000),
    "okx": TradePaging(100, "until"), "bybit": TradePaging(100, "until"), "kucoin": TradePaging(100, "until"),
    "kraken": TradePaging(50, "offset", offset_param="ofs"), "bitstamp": TradePaging(1000, "offset", offset_param="offset"),
}
DEFAULT_TRADE_PAGING = TradePaging(500)
# a safety stop for newest-first paging (an exchange answering pages that never reach back)
MAX_BACKWARD_TRADE_PAGES = 1000


def trade_paging(exchange_id: str) -> TradePaging:
    """The :class:`TradePaging` of ``exchange_id`` (:data:`DEFAULT_TRADE_PAGING` if not listed)."""
    return TRADE_PAGES.get(exchange_id, DEFAULT_TRADE_PAGING)


__all__ = ["DEFAULT_TRADE_PAGING", "MAX_BACKWARD_TRADE_PAGES", "TRADE_PAGES", "TradePaging", "trade_paging"]
