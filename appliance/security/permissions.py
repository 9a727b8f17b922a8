"""Roles, permissions and the one table mapping every RPC to the permission it needs.

* A **permission** is a string ``"<area>.<action>"`` (``"orders.write"``).
* A **role** is a name mapped to a frozenset of permissions in :data:`ROLE_PERMISSIONS`;
  adding a role is one entry there (``ROLES`` is derived from it). The six roles:

  ============  ===================================================================
  admin         every permission
  trader        READS + orders.write, orders.cancel, strategies.write, marketdata.write,
                risk.kill_switch.engage, vault.read
  risk_manager  READS + risk.write, risk.kill_switch.engage, risk.kill_switch.release,
                orders.cancel
  analyst       READS
  auditor       READS + audit.read, users.read
  viewer        READS
  ============  ===================================================================

  READS = auth.self, orders.read, portfolio.read, strategies.read, risk.read,
  marketdata.read, admin.read (deliberately not vault.read, users.read, audit.read).
* :data:`METHOD_PERMISSIONS` maps each full gRPC method name (``"/lyra.v1.OrderService/SubmitOrder"``)
  to the permission it requires, or to :data:`PUBLIC` (callable without a token).
* :data:`MUTATING_METHODS`: every RPC that changes state (the audit log records these and every
  denied call). :data:`MFA_PENDING_ALLOWED_METHODS`: what a session that still has to enroll
  TOTP may call. :data:`SERVICE_TOKEN_FORBIDDEN_METHODS`: user-only self-service RPCs.
* Fail closed: a method in no table is denied to every role (:func:`required_permission`
  raises :class:`UnknownMethod`). ``tests/unit/test_interceptor.py`` asserts, with
  :func:`all_rpc_methods`, that every RPC of ``lyra.v1`` has an entry and walks every RPC x
  every role; ``tests/integration/test_rbac_matrix.py`` does the same against the real server.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Final, Mapping

from appliance.model.errors import LyraError

PUBLIC: Final = "public"
"""Marker in :data:`METHOD_PERMISSIONS`: no access token needed."""

# -- permissions ------------------------------------------------------------------------------
AUTH_SELF = "auth.self"  # own identity and session: WhoAmI, Logout, own password, own TOTP
ORDERS_READ = "orders.read"
ORDERS_WRITE = "orders.write"  # submit orders
ORDERS_CANCEL = "orders.cancel"  # cancel orders (risk managers may cancel but not submit)
PORTFOLIO_READ = "portfolio.read"
STRATEGIES_READ = "strategies.read"
STRATEGIES_WRITE = "strategies.write"
RISK_READ = "risk.read"
RISK_WRITE = "risk.write"  # limits, circuit-breaker reset
RISK_KILL_SWITCH_ENGAGE = "risk.kill_switch.engage"
RISK_KILL_SWITCH_RELEASE = "risk.kill_switch.release"
MARKETDATA_READ = "marketdata.read"
MARKETDATA_WRITE = "marketdata.write"  # download candles into the dataset store
ADMIN_READ = "admin.read"  # version, status, replay progress
ADMIN_WRITE = "admin.write"  # replay control
VAULT_READ = "vault.read"  # vault status, credential metadata (never the secret itself)
VAULT_WRITE = "vault.write"  # create / rotate / delete credentials
VAULT_UNSEAL = "vault.unseal"  # unseal and seal
VAULT_ADMIN = "vault.admin"  # initialise, change passphrase, rotate the data key
USERS_READ = "users.read"  # list users, sessions, service tokens
USERS_WRITE = "users.write"  # create / update users, reset credentials, revoke, service tokens
AUDIT_READ = "audit.read"  # read, verify and export the audit log

PERMISSIONS: Final[tuple[str, ...]] = (
    AUTH_SELF,
    ORDERS_READ,
    ORDERS_WRITE,
    ORDERS_CANCEL,
    PORTFOLIO_READ,
    STRATEGIES_READ,
    STRATEGIES_WRITE,
    RISK_READ,
    RISK_WRITE,
    RISK_KILL_SWITCH_ENGAGE,
    RISK_KILL_SWITCH_RELEASE,
    MARKETDATA_READ,
    MARKETDATA_WRITE,
    ADMIN_READ,
    ADMIN_WRITE,
    VAULT_READ,
    VAULT_WRITE,
    VAULT_UNSEAL,
    VAULT_ADMIN,
    USERS_READ,
    USERS_WRITE,
    AUDIT_READ,
)

READS: Final = frozenset({
    AUTH_SELF, ORDERS_READ, PORTFOLIO_READ, STRATEGIES_READ, RISK_READ, MARKETDATA_READ, ADMIN_READ,
})
"""The trading reads plus ``auth.self`` (every signed-in user may see and end its own session,
change its own password and enroll its own TOTP). Deliberately NOT every ``*.read``:
``vault.read``, ``users.read`` and ``audit.read`` are granted per role."""

# -- roles ------------------------------------------------------------------------------------
ROLE_PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    # role          permissions
    "admin": frozenset(PERMISSIONS),
    # A trader may stop trading (engage the kill switch); only an admin or a risk manager may
    # resume it. Traders see which credentials exist (vault.read), never the secrets.
    "trader": READS | {ORDERS_WRITE, ORDERS_CANCEL, STRATEGIES_WRITE, RISK_KILL_SWITCH_ENGAGE, VAULT_READ, MARKETDATA_WRITE},
    # A risk manager sets limits, engages and releases the kill switch and may cancel (not submit).
    "risk_manager": READS | {RISK_WRITE, RISK_KILL_SWITCH_ENGAGE, RISK_KILL_SWITCH_RELEASE, ORDERS_CANCEL},
    "analyst": READS,
    # An auditor reads the audit log and the user list, changes nothing.
    "auditor": READS | {AUDIT_READ, USERS_READ},
    "viewer": READS,
}

ROLES: Final[tuple[str, ...]] = tuple(ROLE_PERMISSIONS)
"""("admin", "trader", "risk_manager", "analyst", "auditor", "viewer"), in ROLE_PERMISSIONS order."""

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
    "/lyra.v1.AuthService/BeginTotpEnrollment": AUTH_SELF,
    "/lyra.v1.AuthService/ConfirmTotpEnrollment": AUTH_SELF,
    "/lyra.v1.AuthService/ChangePassword": AUTH_SELF,
    # OrderService
    "/lyra.v1.OrderService/SubmitOrder": ORDERS_WRITE,
    "/lyra.v1.OrderService/CancelOrder": ORDERS_CANCEL,
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
    "/lyra.v1.MarketDataService/FetchCandles": MARKETDATA_WRITE,
    # AdminService
    "/lyra.v1.AdminService/GetVersion": ADMIN_READ,
    "/lyra.v1.AdminService/GetStatus": ADMIN_READ,
    "/lyra.v1.AdminService/GetReplayProgress": ADMIN_READ,
    "/lyra.v1.AdminService/StartReplay": ADMIN_WRITE,
    "/lyra.v1.AdminService/PauseReplay": ADMIN_WRITE,
    "/lyra.v1.AdminService/ListVenues": ADMIN_READ,
    # VaultService
    "/lyra.v1.VaultService/GetVaultStatus": VAULT_READ,
    "/lyra.v1.VaultService/ListCredentials": VAULT_READ,
    "/lyra.v1.VaultService/GetCredential": VAULT_READ,
    "/lyra.v1.VaultService/InitializeVault": VAULT_ADMIN,
    "/lyra.v1.VaultService/ChangeVaultPassphrase": VAULT_ADMIN,
    "/lyra.v1.VaultService/RotateDataKey": VAULT_ADMIN,
    "/lyra.v1.VaultService/UnsealVault": VAULT_UNSEAL,
    "/lyra.v1.VaultService/SealVault": VAULT_UNSEAL,
    "/lyra.v1.VaultService/CreateCredential": VAULT_WRITE,
    "/lyra.v1.VaultService/RotateCredential": VAULT_WRITE,
    "/lyra.v1.VaultService/ConfirmCredentialRotation": VAULT_WRITE,
    "/lyra.v1.VaultService/AbortCredentialRotation": VAULT_WRITE,
    "/lyra.v1.VaultService/DeleteCredential": VAULT_WRITE,
    # UserService
    "/lyra.v1.UserService/ListUsers": USERS_READ,
    "/lyra.v1.UserService/GetUser": USERS_READ,
    "/lyra.v1.UserService/ListSessions": USERS_READ,
    "/lyra.v1.UserService/ListServiceTokens": USERS_READ,
    "/lyra.v1.UserService/CreateUser": USERS_WRITE,
    "/lyra.v1.UserService/UpdateUser": USERS_WRITE,
    "/lyra.v1.UserService/ResetPassword": USERS_WRITE,
    "/lyra.v1.UserService/ResetTotp": USERS_WRITE,
    "/lyra.v1.UserService/RevokeSession": USERS_WRITE,
    "/lyra.v1.UserService/CreateServiceToken": USERS_WRITE,
    "/lyra.v1.UserService/RevokeServiceToken": USERS_WRITE,
    # AuditService
    "/lyra.v1.AuditService/ListAuditRecords": AUDIT_READ,
    "/lyra.v1.AuditService/VerifyAuditChain": AUDIT_READ,
    "/lyra.v1.AuditService/ExportAuditRecords": AUDIT_READ,
}

MUTATING_METHODS: Final[frozenset[str]] = frozenset({
    # AuthService: every call that creates, rotates or ends a session or changes credentials.
    "/lyra.v1.AuthService/Login",
    "/lyra.v1.AuthService/Refresh",
    "/lyra.v1.AuthService/Logout",
    "/lyra.v1.AuthService/BeginTotpEnrollment",
    "/lyra.v1.AuthService/ConfirmTotpEnrollment",
    "/lyra.v1.AuthService/ChangePassword",
    # Trading
    "/lyra.v1.OrderService/SubmitOrder",
    "/lyra.v1.OrderService/CancelOrder",
    "/lyra.v1.StrategyService/CreateStrategy",
    "/lyra.v1.StrategyService/StartStrategy",
    "/lyra.v1.StrategyService/StopStrategy",
    "/lyra.v1.RiskService/UpdateRiskLimits",
    "/lyra.v1.RiskService/EngageKillSwitch",
    "/lyra.v1.RiskService/ReleaseKillSwitch",
    "/lyra.v1.RiskService/ResetCircuitBreaker",
    "/lyra.v1.AdminService/StartReplay",
    "/lyra.v1.AdminService/PauseReplay",
    "/lyra.v1.MarketDataService/FetchCandles",
    # VaultService: everything but Get*/List*
    "/lyra.v1.VaultService/InitializeVault",
    "/lyra.v1.VaultService/UnsealVault",
    "/lyra.v1.VaultService/SealVault",
    "/lyra.v1.VaultService/ChangeVaultPassphrase",
    "/lyra.v1.VaultService/RotateDataKey",
    "/lyra.v1.VaultService/CreateCredential",
    "/lyra.v1.VaultService/RotateCredential",
    "/lyra.v1.VaultService/ConfirmCredentialRotation",
    "/lyra.v1.VaultService/AbortCredentialRotation",
    "/lyra.v1.VaultService/DeleteCredential",
    # UserService writes
    "/lyra.v1.UserService/CreateUser",
    "/lyra.v1.UserService/UpdateUser",
    "/lyra.v1.UserService/ResetPassword",
    "/lyra.v1.UserService/ResetTotp",
    "/lyra.v1.UserService/RevokeSession",
    "/lyra.v1.UserService/CreateServiceToken",
    "/lyra.v1.UserService/RevokeServiceToken",
})
"""Every RPC that changes state. The audit log records each call to one of these (allowed or
denied) and every denied call to any method. ``tests/unit/test_interceptor.py`` checks it against
the RPC names."""


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


MFA_ENROLLMENT_REQUIRED_MESSAGE = "TOTP enrollment required: run `lyractl totp enroll`"

MFA_PENDING_ALLOWED_METHODS: Final[frozenset[str]] = frozenset({
    "/lyra.v1.AuthService/WhoAmI",
    "/lyra.v1.AuthService/BeginTotpEnrollment",
    "/lyra.v1.AuthService/ConfirmTotpEnrollment",
    "/lyra.v1.AuthService/ChangePassword",
    "/lyra.v1.AuthService/Logout",
})
"""What a session marked ``mfa_pending`` (role in ``auth.totp_required_roles``, TOTP not yet
enrolled) may call; anything else is PERMISSION_DENIED :data:`MFA_ENROLLMENT_REQUIRED_MESSAGE`
(public methods are unaffected)."""

SERVICE_TOKEN_FORBIDDEN_METHODS: Final[frozenset[str]] = frozenset({
    "/lyra.v1.AuthService/BeginTotpEnrollment",
    "/lyra.v1.AuthService/ConfirmTotpEnrollment",
    "/lyra.v1.AuthService/ChangePassword",
})
"""Self-service credential RPCs that a service-account token may not call, whatever its role."""


class MfaEnrollmentRequired(PermissionDenied):
    """The caller's session must enroll TOTP before calling this method (PERMISSION_DENIED)."""

    def __init__(self) -> None:
        LyraError.__init__(self, MFA_ENROLLMENT_REQUIRED_MESSAGE)
        self.permission = "auth.mfa"
        self.role = None


class ServiceTokenForbidden(PermissionDenied):
    """A service-account token called a user-only RPC (PERMISSION_DENIED)."""

    def __init__(self, what: str) -> None:
        LyraError.__init__(self, f"{what} is for user sessions only; service tokens cannot call it")
        self.permission = "auth.self"
        self.role = None


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
