"""Roles, permissions and the one table mapping every RPC to the permission it needs.

* A **permission** is a string ``"<area>.<action>"`` (``"orders.write"``).
* A **role** is a name mapped to a frozenset of permissions in :data:`ROLE_PERMISSIONS`;
  adding a role is one entry there (``ROLES`` is derived from it).
* :data:`METHOD_PERMISSIONS` maps each full gRPC method name (``"/lyra.v1.OrderService/SubmitOrder"``)
  to the permission it requires, or to :data:`PUBLIC` (callable without a token).
* Fail closed: a method in no table is denied to every role (:func:`required_permission`
  raises :class:`UnknownMethod`). ``tests/unit/test_interceptor.py`` asserts, with
  :func:`all_rpc_methods`, that every RPC of ``lyra.v1`` has an entry and walks every RPC x
  every role.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Final, Mapping

from appliance.model.errors import LyraError

PUBLIC: Final = "public"
"""Marker in :data:`METHOD_PERMISSIONS`: no access token needed."""

# -- permissions ------------------------------------------------------------------------------
AUTH_SELF = "auth.self"  # own identity and session: WhoAmI, Logout (later: change own password, TOTP)
ORDERS_READ = "orders.read"
ORDERS_WRITE = "orders.write"
PORTFOLIO_READ = "portfolio.read"
STRATEGIES_READ = "strategies.read"
STRATEGIES_WRITE = "strategies.write"
RISK_READ = "risk.read"
RISK_WRITE = "risk.write"  # limits, circuit-breaker reset
RISK_KILL_SWITCH_ENGAGE = "risk.kill_switch.engage"
RISK_KILL_SWITCH_RELEASE = "risk.kill_switch.release"
MARKETDATA_READ = "marketdata.read"
ADMIN_READ = "admin.read"  # version, status, replay progress (later: users, audit)
ADMIN_WRITE = "admin.write"  # replay control (later: users, vault)

PERMISSIONS: Final[tuple[str, ...]] = (
    AUTH_SELF,
    ORDERS_READ,
    ORDERS_WRITE,
    PORTFOLIO_READ,
    STRATEGIES_READ,
    STRATEGIES_WRITE,
    RISK_READ,
    RISK_WRITE,
    RISK_KILL_SWITCH_ENGAGE,
    RISK_KILL_SWITCH_RELEASE,
    MARKETDATA_READ,
    ADMIN_READ,
    ADMIN_WRITE,
)

READS: Final = frozenset({AUTH_SELF} | {p for p in PERMISSIONS if p.endswith(".read")})
"""Every read permission plus ``auth.self`` (every signed-in user may see and end its own session)."""

# -- roles ------------------------------------------------------------------------------------
ROLE_PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset(PERMISSIONS),
    # A trader may stop trading (engage the kill switch); only an admin may resume it.
    "trader": READS | {ORDERS_WRITE, STRATEGIES_WRITE, RISK_KILL_SWITCH_ENGAGE},
    "viewer": READS,
    # The Security issue adds, one line each: "risk_manager", "analyst", "auditor".
}

ROLES: Final[tuple[str, ...]] = tuple(ROLE_PERMISSIONS)
"""("admin", "trader", "viewer"), in ROLE_PERMISSIONS order."""

# -- RPCs -------------------------------------------------------------------------------------
PUBLIC_METHOD_PREFIXES: Final[tuple[str, ...]] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Whole services that are public: the gRPC health check and server reflection (grpcurl)."""

METHOD_PERMISSIONS: Final[Mapping[str, str]] = {
    # AuthService: Login and Refresh are the only lyra RPCs callable without a token.
    "/lyra.v1.AuthService/Login": PUBLIC,
    "/lyra.v1.AuthService/Refresh": PUBLIC,
    "/lyra.v1.AuthService/Logout": AUTH_SELF,
    "/lyra.v1.AuthService/WhoAmI": AUTH_SELF,
    # OrderService
    "/lyra.v1.OrderService/SubmitOrder": ORDERS_WRITE,
    "/lyra.v1.OrderService/CancelOrder": ORDERS_WRITE,
    "/lyra.v1.OrderService/GetOrder": ORDERS_READ,
    "/lyra.v1.OrderService/ListOrders": ORDERS_READ,
    "/lyra.v1.OrderService/ListFills": ORDERS_READ,
    "/lyra.v1.OrderService/StreamOrderEvents": ORDERS_READ,
    # PortfolioService
    "/lyra.v1.PortfolioService/ListBalances": PORTFOLIO_READ,
    "/lyra.v1.PortfolioService/ListPositions": PORTFOLIO_READ,
    "/lyra.v1.PortfolioService/GetPnl": PORTFOLIO_READ,
    # StrategyService
    "/lyra.v1.StrategyService/ListStrategyTypes": STRATEGIES_READ,
    "/lyra.v1.StrategyService/CreateStrategy": STRATEGIES_WRITE,
    "/lyra.v1.StrategyService/StartStrategy": STRATEGIES_WRITE,
    "/lyra.v1.StrategyService/StopStrategy": STRATEGIES_WRITE,
    "/lyra.v1.StrategyService/GetStrategy": STRATEGIES_READ,
    "/lyra.v1.StrategyService/ListStrategies": STRATEGIES_READ,
    # RiskService
    "/lyra.v1.RiskService/GetRiskLimits": RISK_READ,
    "/lyra.v1.RiskService/UpdateRiskLimits": RISK_WRITE,
    "/lyra.v1.RiskService/GetRiskStatus": RISK_READ,
    "/lyra.v1.RiskService/EngageKillSwitch": RISK_KILL_SWITCH_ENGAGE,
    "/lyra.v1.RiskService/ReleaseKillSwitch": RISK_KILL_SWITCH_RELEASE,
    "/lyra.v1.RiskService/ResetCircuitBreaker": RISK_WRITE,
    # MarketDataService
    "/lyra.v1.MarketDataService/ListInstruments": MARKETDATA_READ,
    "/lyra.v1.MarketDataService/GetCandles": MARKETDATA_READ,
    # AdminService
    "/lyra.v1.AdminService/GetVersion": ADMIN_READ,
    "/lyra.v1.AdminService/GetStatus": ADMIN_READ,
    "/lyra.v1.AdminService/GetReplayProgress": ADMIN_READ,
    "/lyra.v1.AdminService/StartReplay": ADMIN_WRITE,
    "/lyra.v1.AdminService/PauseReplay": ADMIN_WRITE,
}


class UnknownMethod(LyraError):
    """A method that is in no permission table: denied to everyone (fail closed)."""

    def __init__(self, method: str) -> None:
        super().__init__(f"no permission is defined for {method}; denied by default")
        self.method = method


class PermissionDenied(LyraError):
    """The caller's role lacks ``permission`` (maps to PERMISSION_DENIED).

    Servicers may raise it for finer checks than the per-RPC table.
    """

    def __init__(self, permission: str, role: str | None = None) -> None:
        who = f"role {role!r}" if role else "caller"
        super().__init__(f"permission {permission!r} required; {who} does not have it")
        self.permission = permission
        self.role = role


def required_permission(method: str, table: Mapping[str, str] = METHOD_PERMISSIONS) -> str:
    """The permission ``method`` needs, or :data:`PUBLIC`.

    Args:
        method: full gRPC method name, ``"/package.Service/Method"``.
        table: the method table (tests may pass their own).

    Raises:
        UnknownMethod: the method is in no table (fail closed).
    """
    if method.startswith(PUBLIC_METHOD_PREFIXES):
        return PUBLIC
    try:
        return table[method]
    except KeyError:
        raise UnknownMethod(method) from None


def is_public(method: str, table: Mapping[str, str] = METHOD_PERMISSIONS) -> bool:
    """True if ``method`` is callable without a token (unknown methods are not public)."""
    try:
        return required_permission(method, table) == PUBLIC
    except UnknownMethod:
        return False


def permissions_of(role: str) -> frozenset[str]:
    """The permissions of ``role``; an unknown role has none."""
    return ROLE_PERMISSIONS.get(role, frozenset())


def has_permission(role: str, permission: str) -> bool:
    """True if ``role`` grants ``permission`` (PUBLIC is granted to everyone, even no role)."""
    return permission == PUBLIC or permission in permissions_of(role)


def all_rpc_methods(package: str = "lyra.v1") -> list[str]:
    """Every RPC declared in the generated ``<package>.*_pb2`` modules, as full method names
    (``"/lyra.v1.OrderService/SubmitOrder"``), sorted.

    Raises:
        ImportError: the generated stubs cannot be imported.
    """
    pkg = importlib.import_module(package)
    methods: set[str] = set()
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods.add(f"/{service.full_name}/{method.name}")
    return sorted(methods)
