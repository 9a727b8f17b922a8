"""Risk: pre-trade checks, limits, daily-loss circuit breaker, kill switch."""
