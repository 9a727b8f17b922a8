"""Prometheus metrics, named ``lyra_<area>_<what>_<unit>``, in a registry of their own (not the
process-global one) so that several appliances can live in one test process.

Served over HTTP on 127.0.0.1 only (see :func:`serve`).
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from appliance.model.order import Order, OrderStatus

_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every metric the appliance exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.orders = Gauge("lyra_orders", "Orders by current state", ["state"], registry=r)
        self.order_transitions = Counter("lyra_order_transitions_total", "Order state transitions by new state", ["state"], registry=r)
        self.fills = Counter("lyra_fills_total", "Fills by venue and liquidity", ["venue", "liquidity"], registry=r)
        self.rejections = Counter("lyra_order_rejections_total", "Orders denied, by the rule that denied them", ["rule"], registry=r)
        self.rpc_latency = Histogram("lyra_rpc_latency_seconds", "gRPC handling time by method and status code",
                                     ["method", "code"], buckets=_RPC_BUCKETS, registry=r)
        self.replay_lag = Gauge("lyra_replay_lag_seconds", "Wall-clock seconds the replay is behind its schedule (0 at max speed)", registry=r)
        self.replay_progress = Gauge("lyra_replay_progress_ratio", "Fraction of the replay's bar slices handled", registry=r)
        self.replay_market_time = Gauge("lyra_replay_market_time_seconds", "Market time of the last handled bar (unix seconds)", registry=r)
        self.engine_messages = Counter("lyra_engine_messages_total", "Messages handled by the engine", registry=r)
        self.nav = Gauge("lyra_portfolio_nav", "Net asset value in the NAV currency", ["currency"], registry=r)
        self.kill_switch = Gauge("lyra_risk_kill_switch_engaged", "1 while the kill switch is engaged", registry=r)
        self.credential_age = Gauge("lyra_vault_credential_age_seconds", "Age of each exchange credential's current version",
                                    ["credential_id", "venue"], registry=r)
        self.stale_credentials = Gauge("lyra_vault_stale_credentials", "Credentials older than the rotation age (alert when > 0)",
                                       registry=r)
        self.venue_health = Gauge("lyra_venue_health", "Venue health: 2 connected, 1 degraded, 0 down", ["venue"], registry=r)
        self.vault_sealed = Gauge("lyra_vault_sealed", "1 while the vault is sealed or uninitialized", registry=r)
        for state in OrderStatus:
            self.orders.labels(state.value)
        self._last_state: dict[str, str] = {}

    def seed_orders(self, counts: Iterable[tuple[str, int]], open_orders: Iterable[Order]) -> None:
        """Start the per-state gauge from the database's counts (after a restart)."""
        for state, count in counts:
            self.orders.labels(state).set(count)
        self._last_state = {o.client_order_id: o.status.value for o in open_orders}

    def on_order(self, order: Order) -> None:
        """Order listener: move the order from its previous state's count to its new one."""
        previous = self._last_state.get(order.client_order_id)
        state = order.status.value
        if previous == state:
            return
        if previous is not None:
            self.orders.labels(previous).dec()
        self.orders.labels(state).inc()
        self.order_transitions.labels(state).inc()
        if order.status is OrderStatus.REJECTED:
            self.rejections.labels(order.reject_rule or "unknown").inc()
        if order.status.is_terminal:
            self._last_state.pop(order.client_order_id, None)
        else:
            self._last_state[order.client_order_id] = state

    def set_credential_ages(self, ages: Iterable, sealed: bool) -> None:
        """Replace the per-credential age series (deleted credentials disappear)."""
        self.credential_age.clear()
        stale = 0
        for age in ages:
            self.credential_age.labels(age.credential_id, age.venue).set(age.age_s)
            stale += bool(age.stale)
        self.stale_credentials.set(stale)
        self.vault_sealed.set(1 if sealed else 0)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_latency.labels(method, code).observe(seconds)


def serve(metrics: Metrics, listen: str) -> tuple[object, int]:
    """Serve ``/metrics`` on ``listen`` (HOST:PORT, loopback only; port 0 picks a free one).

    Returns:
        (server, bound port).

    Raises:
        ValueError: a non-loopback host.
    """
    host, _, port = listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise ValueError(f"metrics.listen: {listen!r} is not a loopback address")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=metrics.registry)
    return server, server.server_address[1]
