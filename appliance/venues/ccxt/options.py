"""ccxt options that make each exchange behave as a spot account, for trading, live bars and
downloads alike (Lyra trades spot; loading an exchange's futures and options markets costs
requests and rate-limit weight for nothing).

Each entry comes from the exchange's ``describe()["options"]`` in ccxt 4.5.90's sources.
"""

from __future__ import annotations

import copy

SPOT_OPTIONS: dict[str, dict] = {
    "binance": {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,  # sapi capital/config/getall: not needed to trade spot
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    },
    # the others list futures, swaps and options by default (ccxt <exchange>.describe()["options"]
    # ["fetchMarkets"]["types"]): one request or more each, at every start
    "okx": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
    "bybit": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
    "gate": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
    "kucoin": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
    # Advanced Trade accounts (available + hold) instead of the Coinbase App's /v2/accounts, which
    # has no holds and an hourly limit of its own
    "coinbase": {"fetchBalance": "v3PrivateGetBrokerageAccounts"},
}


def spot_options(exchange_id: str) -> dict:
    """A fresh copy of the spot options of ``exchange_id`` (``{}`` for an exchange not listed)."""
    return copy.deepcopy(SPOT_OPTIONS.get(exchange_id, {}))


__all__ = ["SPOT_OPTIONS", "spot_options"]
