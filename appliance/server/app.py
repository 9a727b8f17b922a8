"""Builds and starts the grpc.aio server: servicers, auth/RBAC interceptor, health, reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from appliance.security.bootstrap import open_auth
from appliance.server.interceptors import AuthInterceptor
from appliance.server.servicers import audit as audit_servicer
from appliance.server.servicers.admin import AdminServicer
from appliance.server.servicers.auth import AuthServicer
from appliance.server.servicers.marketdata import MarketDataServicer
from appliance.server.servicers.orders import OrderServicer
from appliance.server.servicers.portfolio import PortfolioServicer
from appliance.server.servicers.risk import RiskServicer
from appliance.server.servicers.strategies import StrategyServicer
from appliance.server.servicers import users as users_servicer
from appliance.server.servicers import vault as vault_servicer
from lyra.v1 import (
    admin_pb2, admin_pb2_grpc, audit_pb2, auth_pb2, auth_pb2_grpc, marketdata_pb2, marketdata_pb2_grpc, orders_pb2,
    orders_pb2_grpc, portfolio_pb2, portfolio_pb2_grpc, risk_pb2, risk_pb2_grpc, strategies_pb2, strategies_pb2_grpc,
    users_pb2, vault_pb2,
)

_SERVICES = (
    (auth_pb2, "AuthService"), (orders_pb2, "OrderService"), (portfolio_pb2, "PortfolioService"),
    (strategies_pb2, "StrategyService"), (risk_pb2, "RiskService"), (marketdata_pb2, "MarketDataService"),
    (admin_pb2, "AdminService"), (vault_pb2, "VaultService"), (users_pb2, "UserService"), (audit_pb2, "AuditService"),
)


async def start_server(app, listen: str) -> tuple[grpc.aio.Server, int]:
    """Start serving ``app`` on ``listen`` (HOST:PORT; port 0 picks a free one).

    Returns:
        (server, bound port).

    Raises:
        RuntimeError: the address cannot be bound.
    """
    auth = open_auth(app.db, app.journal, app.config, app.wall_clock)
    app.auth = auth
    interceptor = AuthInterceptor(
        auth,
        observe=app.metrics.observe_rpc,
        on_call=audit_servicer.audit_log(app).on_call,
        rate_limit=(app.config.auth.rate_limit_rps, app.config.auth.rate_limit_burst),
    )
    max_bytes = app.config.server.max_message_bytes
    server = grpc.aio.server(interceptors=[interceptor], options=[
        ("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes),
    ])
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(app, auth), server)
    orders_pb2_grpc.add_OrderServiceServicer_to_server(OrderServicer(app), server)
    portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(PortfolioServicer(app), server)
    strategies_pb2_grpc.add_StrategyServiceServicer_to_server(StrategyServicer(app), server)
    risk_pb2_grpc.add_RiskServiceServicer_to_server(RiskServicer(app), server)
    marketdata_pb2_grpc.add_MarketDataServiceServicer_to_server(MarketDataServicer(app), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(app, app.wall_clock.now_ns()), server)
    vault_servicer.register(server, app)
    audit_servicer.register(server, app)
    users_servicer.register(server, app)

    health_servicer = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [module.DESCRIPTOR.services_by_name[name].full_name for module, name in _SERVICES]
    reflection.enable_server_reflection(names + [health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    port = _bind(server, app.config, listen)
    if port == 0:
        raise RuntimeError(f"server.listen: cannot bind {listen}")
    await server.start()
    for name in names + [""]:
        result = health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        if hasattr(result, "__await__"):
            await result
    return server, port


def _bind(server: grpc.aio.Server, config, listen: str) -> int:
    """Add the listening port: TLS when ``server.tls.enabled`` (mutual TLS when
    ``require_client_cert``), otherwise plaintext on loopback only.

    The TLS material is created or renewed first (:func:`appliance.security.tls.ensure_tls_material`).

    Returns:
        The bound port (0 when gRPC could not bind).

    Raises:
        RuntimeError: plaintext requested beyond loopback (``listen`` may come from ``--listen``,
            which bypasses the configuration's own check), or the TLS material is unusable.
    """
    from appliance.config import LOOPBACK_HOSTS
    from appliance.security.tls import TlsError, ensure_tls_material, server_credentials_pem

    tls = config.server.tls
    if not tls.enabled:
        if listen.rpartition(":")[0] not in LOOPBACK_HOSTS:
            raise RuntimeError(f"server.listen: {listen} is beyond loopback; serving it requires [server.tls] "
                               "enabled = true (or reach the box through an SSH tunnel)")
        return server.add_insecure_port(listen)
    try:
        ensure_tls_material(config)
        key, chain, client_ca = server_credentials_pem(config)
    except TlsError as exc:
        raise RuntimeError(f"server.tls: {exc}") from None
    credentials = grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=tls.require_client_cert,
    )
    return server.add_secure_port(listen, credentials)
