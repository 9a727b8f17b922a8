"""Portfolio: balances, positions, PnL and NAV, kept from fills (average cost)."""
