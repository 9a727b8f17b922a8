"""Market data: candles (bars), dataset discovery and loading, replay feeds."""
