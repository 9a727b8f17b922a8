"""Telemetry: Prometheus metrics and structured (JSON-lines) logging."""
