"""Unit tests of the lyra_client SDK against an in-process fake gRPC server.

``FakeServer`` (below) is a test double of the lyra.v1 services with just enough behaviour
to exercise the client: token issue/rotation, bearer checks, pagination, risk rejection with
trailing metadata, roles, a server stream; TOTP login (``lyra-mfa: required``), restricted
sessions until TOTP enrollment, service-account tokens, the vault, users, the audit log, and
optionally TLS/mTLS (certificates from :func:`make_pki`). Every request to the security
services is recorded (``state.requests``). test_lyractl.py and test_lyractl_security.py
reuse it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from concurrent import futures
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from lyra.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    orders_pb2,
    orders_pb2_grpc,
    portfolio_pb2,
    portfolio_pb2_grpc,
    risk_pb2,
    risk_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    vault_pb2,
    vault_pb2_grpc,
)
from lyra_client import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    LyraClient,
    LyraError,
    MfaRequired,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from lyra_client.convert import to_dict

USERS = {"alice": ("pw-alice", "trader"), "victor": ("pw-victor", "viewer"), "rita": ("pw-rita", "risk_manager"),
         "tom": ("pw-tom", "trader"), "ada": ("pw-ada", "admin"), "root": ("pw-root", "admin")}
#: Users with TOTP enrolled in the fake (their code is always TOTP_CODE).
TOTP_USERS = {"tom"}
#: Users whose role requires TOTP but who have not enrolled: their sessions are restricted.
MUST_ENROLL = {"ada"}
TOTP_CODE = "123456"
TOTP_SECRET = "JBSWY3DPEHPK3PXP"
RECOVERY_CODES = ["rc-7f3a-91c2", "rc-0b5e-d44a"]
VAULT_PASSPHRASE = "correct horse battery staple"
SERVICE_TOKEN = "lyst_t1_s3cr3tS3cr3tS3cr3t"
#: RPCs a restricted (enrollment-pending) session may call.
ENROLLMENT_RPCS = {"WhoAmI", "BeginTotpEnrollment", "ConfirmTotpEnrollment", "ChangePassword", "Logout"}


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


class FakeState:
    """Shared state of the fake services; inspect it from tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.access: dict[str, str] = {}  # access token -> username
        self.refresh: dict[str, str] = {}  # live refresh token -> username
        self.spent_refresh: set[str] = set()
        self.metadata: list[tuple[str, dict[str, str]]] = []  # (method, metadata) of every call
        self.refresh_calls = 0
        self.requests: list[tuple[str, object]] = []  # (method, request) of the security services
        self.restricted: set[str] = set()  # access tokens of enrollment-pending sessions
        self.totp_users = set(TOTP_USERS)
        self.must_enroll = set(MUST_ENROLL)
        self.pending_enrollment: set[str] = set()
        self.recovery_codes = {"tom": set(RECOVERY_CODES)}
        self.passwords = {name: pw for name, (pw, _) in USERS.items()}
        self.service_tokens = {SERVICE_TOKEN: ("svc-grafana", "viewer")}
        self.login_retry_after: str | None = None  # set to make Login fail RESOURCE_EXHAUSTED
        self.list_orders_requests: list[orders_pb2.ListOrdersRequest] = []
        self.last_update_mask: list[str] = []
        self.orders = [
            orders_pb2.Order(
                client_order_id=f"o-{i}",
                instrument="ADA/BTC@paper",
                side=common_pb2.SIDE_BUY if i % 2 else common_pb2.SIDE_SELL,
                type=orders_pb2.ORDER_TYPE_LIMIT,
                qty="100",
                limit_price="0.00003010",
                status=orders_pb2.ORDER_STATUS_OPEN if i < 3 else orders_pb2.ORDER_STATUS_FILLED,
                filled_qty="0" if i < 3 else "100",
                strategy_id="manual",
                create_time=_ts(1_515_560_100 + i),
            )
            for i in range(7)
        ]
        self.fills = [
            orders_pb2.Fill(fill_id=f"f-{i}", client_order_id=f"o-{i}", instrument="ADA/BTC@paper",
                            side=common_pb2.SIDE_BUY, qty="100", price="0.00003010", fee="0.00000301",
                            fee_asset="BTC", liquidity=orders_pb2.LIQUIDITY_TAKER, time=_ts(1_515_560_200 + i))
            for i in range(5)
        ]

    def issue(self, username: str) -> tuple[str, str]:
        n = next(self.counter)
        access, refresh = f"access-{username}-{n}", f"refresh-{username}-{n}"
        self.access[access] = username
        self.refresh[refresh] = username
        return access, refresh

    def expire_access_tokens(self) -> None:
        """Simulate expiry of every access token issued so far."""
        with self.lock:
            self.access.clear()

    def calls(self, method: str) -> list[dict[str, str]]:
        return [md for m, md in self.metadata if m == method]

    def requests_of(self, method: str) -> list:
        """Requests received by ``method`` (security services), oldest first."""
        return [r for m, r in self.requests if m == method]


def _record(state: FakeState, method: str, context: grpc.ServicerContext) -> dict[str, str]:
    md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
    with state.lock:
        state.metadata.append((method, md))
    return md


def _authenticate(state: FakeState, method: str, context: grpc.ServicerContext, request=None) -> tuple[str, str]:
    md = _record(state, method, context)
    if request is not None:
        copy = type(request)()
        copy.CopyFrom(request)
        with state.lock:
            state.requests.append((method, copy))
    header = md.get("authorization", "")
    if not header.startswith("Bearer "):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
    token = header[len("Bearer "):]
    with state.lock:
        service = state.service_tokens.get(token)
        user = state.access.get(token)
        restricted = token in state.restricted
    if service is not None:
        return service
    if user is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "access token expired or invalid")
    if restricted and method not in ENROLLMENT_RPCS:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "TOTP enrollment required before calling " + method)
    return user, USERS[user][1]


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def Login(self, request, context):
        _record(self.s, "Login", context)
        with self.s.lock:
            self.s.requests.append(("Login", auth_pb2.LoginRequest(username=request.username,
                                                                   totp_code=request.totp_code,
                                                                   recovery_code=request.recovery_code)))
        if self.s.login_retry_after is not None:
            context.set_trailing_metadata((("lyra-retry-after-s", self.s.login_retry_after),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many failed logins")
        expected = USERS.get(request.username)
        if expected is None or self.s.passwords.get(request.username) != request.password:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
        if request.username in self.s.totp_users:
            with self.s.lock:
                codes = self.s.recovery_codes.get(request.username, set())
                ok = request.totp_code == TOTP_CODE or (request.recovery_code and request.recovery_code in codes)
                if ok and request.recovery_code:
                    codes.discard(request.recovery_code)
            if not ok:
                context.set_trailing_metadata((("lyra-mfa", "required"),))
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "TOTP code required or invalid")
        enroll = request.username in self.s.must_enroll
        with self.s.lock:
            access, refresh = self.s.issue(request.username)
            if enroll:
                self.s.restricted.add(access)
        return auth_pb2.LoginResponse(access_token=access, refresh_token=refresh, role=expected[1],
                                      username=request.username, access_expires_at=_ts(2_000_000_000),
                                      mfa_enrollment_required=enroll)

    def Refresh(self, request, context):
        _record(self.s, "Refresh", context)
        with self.s.lock:
            self.s.refresh_calls += 1
            user = self.s.refresh.pop(request.refresh_token, None)
            if user is None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token invalid or reused")
            self.s.spent_refresh.add(request.refresh_token)
            access, refresh = self.s.issue(user)
        return auth_pb2.RefreshResponse(access_token=access, refresh_token=refresh, role=USERS[user][1],
                                        username=user, access_expires_at=_ts(2_000_000_000))

    def Logout(self, request, context):
        _authenticate(self.s, "Logout", context)  # like the real server: needs an access token
        with self.s.lock:
            self.s.refresh.pop(request.refresh_token, None)
        return auth_pb2.LogoutResponse()

    def WhoAmI(self, request, context):
        user, role = _authenticate(self.s, "WhoAmI", context)
        kind = "service" if user.startswith("svc-") else "user"
        return auth_pb2.WhoAmIResponse(username=user, role=role, permissions=["orders.read", "orders.submit"],
                                       totp_enrolled=user in self.s.totp_users, principal_kind=kind)

    def BeginTotpEnrollment(self, request, context):
        user, _ = _authenticate(self.s, "BeginTotpEnrollment", context, request)
        if self.s.passwords.get(user) != request.password:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong password")
        with self.s.lock:
            self.s.pending_enrollment.add(user)
        return auth_pb2.BeginTotpEnrollmentResponse(
            otpauth_uri=f"otpauth://totp/Lyra:{user}?secret={TOTP_SECRET}&issuer=Lyra&digits=6&period=30",
            secret=TOTP_SECRET)

    def ConfirmTotpEnrollment(self, request, context):
        user, _ = _authenticate(self.s, "ConfirmTotpEnrollment", context, request)
        if user not in self.s.pending_enrollment:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no TOTP enrollment in progress")
        if request.totp_code != TOTP_CODE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "totp_code: invalid code")
        token = dict(context.invocation_metadata())["authorization"][len("Bearer "):]
        with self.s.lock:
            self.s.pending_enrollment.discard(user)
            self.s.totp_users.add(user)
            self.s.must_enroll.discard(user)
            self.s.restricted.discard(token)
            self.s.recovery_codes[user] = set(RECOVERY_CODES)
        return auth_pb2.ConfirmTotpEnrollmentResponse(recovery_codes=RECOVERY_CODES)

    def ChangePassword(self, request, context):
        user, _ = _authenticate(self.s, "ChangePassword", context, request)
        if self.s.passwords.get(user) != request.current_password:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong password")
        self.s.passwords[user] = request.new_password
        return auth_pb2.ChangePasswordResponse()


class FakeOrders(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def SubmitOrder(self, request, context):
        _, role = _authenticate(self.s, "SubmitOrder", context)
        if role == "viewer":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "role viewer may not call SubmitOrder")
        if not request.qty:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "qty: required")
        if Decimal(request.qty) > 1000:
            context.set_trailing_metadata((("lyra-reject-rule", "max_order_notional"),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "order notional exceeds max_order_notional 0.01 BTC")
        return orders_pb2.Order(client_order_id=request.client_order_id or "srv-1", instrument=request.instrument,
                                side=request.side, type=request.type, qty=request.qty,
                                limit_price=request.limit_price, status=orders_pb2.ORDER_STATUS_PENDING_SUBMIT,
                                filled_qty="0", strategy_id=request.strategy_id or "manual")

    def GetOrder(self, request, context):
        _authenticate(self.s, "GetOrder", context)
        for order in self.s.orders:
            if order.client_order_id == request.client_order_id:
                return order
        context.abort(grpc.StatusCode.NOT_FOUND, f"order {request.client_order_id!r} not found")

    def CancelOrder(self, request, context):
        _authenticate(self.s, "CancelOrder", context)
        order = self.GetOrder(request, context)
        out = orders_pb2.Order()
        out.CopyFrom(order)
        out.status = orders_pb2.ORDER_STATUS_CANCELED
        return out

    def ListOrders(self, request, context):
        _authenticate(self.s, "ListOrders", context)
        with self.s.lock:
            self.s.list_orders_requests.append(request)
        items = [o for o in self.s.orders
                 if (not request.open_only or o.status == orders_pb2.ORDER_STATUS_OPEN)
                 and (not request.statuses or o.status in request.statuses)]
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = items[start:start + size]
        nxt = str(start + size) if start + size < len(items) else ""
        return orders_pb2.ListOrdersResponse(orders=page, next_page_token=nxt)

    def ListFills(self, request, context):
        _authenticate(self.s, "ListFills", context)
        items = [f for f in self.s.fills if not request.client_order_id or f.client_order_id == request.client_order_id]
        start = int(request.page_token or 0)
        size = min(request.page_size or 2, 2)  # the fake pages by 2 at most
        nxt = str(start + size) if start + size < len(items) else ""
        return orders_pb2.ListFillsResponse(fills=items[start:start + size], next_page_token=nxt)

    def StreamOrderEvents(self, request, context):
        _authenticate(self.s, "StreamOrderEvents", context)
        for seq, order in enumerate(self.s.orders[:3], start=101):
            yield orders_pb2.OrderEvent(seq=seq, type=orders_pb2.ORDER_EVENT_TYPE_ACCEPTED, order=order,
                                        time=_ts(1_515_560_300 + seq))


class FakePortfolio(portfolio_pb2_grpc.PortfolioServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def ListBalances(self, request, context):
        _authenticate(self.s, "ListBalances", context)
        return portfolio_pb2.ListBalancesResponse(balances=[
            portfolio_pb2.Balance(asset="BTC", total="1.00000000", reserved="0.00012300", free="0.99987700",
                                  venue="paper"),
            portfolio_pb2.Balance(asset="ADA", total="0", reserved="0", free="0", venue="paper"),
        ])

    def GetPnl(self, request, context):
        _authenticate(self.s, "GetPnl", context)
        return portfolio_pb2.Pnl(nav_currency="BTC", nav="1.00010000", starting_nav="1.00000000",
                                 realized_pnl="0.00010000", unrealized_pnl="0", fees="0.00000301",
                                 net_pnl="0.00009699", as_of=_ts(1_515_560_400),
                                 instruments=[portfolio_pb2.InstrumentPnl(instrument="ADA/BTC@paper",
                                                                          realized_pnl="0.00010000")])


class FakeRisk(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state
        self.limits = risk_pb2.RiskLimits(max_order_notional="0.01", max_position_notional="0.1",
                                          max_open_orders=50, daily_loss_limit="0.005", currency="BTC")
        self.status = risk_pb2.RiskStatus(trading_state=risk_pb2.TRADING_STATE_ACTIVE, daily_pnl="0",
                                          day_start_nav="1.00000000", currency="BTC")

    def GetRiskLimits(self, request, context):
        _authenticate(self.s, "GetRiskLimits", context)
        return self.limits

    def UpdateRiskLimits(self, request, context):
        _, role = _authenticate(self.s, "UpdateRiskLimits", context)
        if role not in ("risk_manager", "admin"):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"role {role} may not call UpdateRiskLimits")
        self.s.last_update_mask = list(request.update_mask.paths)
        for path in request.update_mask.paths:
            setattr(self.limits, path, getattr(request.limits, path))
        return self.limits

    def GetRiskStatus(self, request, context):
        _authenticate(self.s, "GetRiskStatus", context)
        return self.status

    def EngageKillSwitch(self, request, context):
        _, role = _authenticate(self.s, "EngageKillSwitch", context)
        if role not in ("risk_manager", "admin"):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"role {role} may not call EngageKillSwitch")
        if not request.reason:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "reason: required")
        self.status.kill_switch_engaged = True
        self.status.kill_switch_reason = request.reason
        self.status.trading_state = risk_pb2.TRADING_STATE_HALTED
        return self.status


class FakeAdmin(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.s = state

    def GetVersion(self, request, context):
        _authenticate(self.s, "GetVersion", context)
        return admin_pb2.GetVersionResponse(version="0.1.0", schema_version=3)

    def GetStatus(self, request, context):
        _authenticate(self.s, "GetStatus", context)
        return admin_pb2.GetStatusResponse(
            state=admin_pb2.SERVER_STATE_RUNNING, uptime_seconds=12.5, mode="replay",
            clock_time=_ts(1_515_560_400), journal_seq=42,
            replay=admin_pb2.ReplayProgress(state=admin_pb2.REPLAY_STATE_RUNNING, slices_done=10, slices_total=40,
                                            percent=25.0, current_time=_ts(1_515_560_400)))


class FakeVault(vault_pb2_grpc.VaultServiceServicer):
    """Vault double: passphrase VAULT_PASSPHRASE; 3 wrong unseals -> RESOURCE_EXHAUSTED with
    lyra-retry-after-s; credential "cred-tampered" -> DATA_LOSS."""

    def __init__(self, state: FakeState) -> None:
        self.s = state
        self.state = vault_pb2.VAULT_STATE_SEALED
        self.passphrase = VAULT_PASSPHRASE
        self.wrong = 0
        self.key_version = 1
        self.creds: dict[str, vault_pb2.Credential] = {
            "cred-1": vault_pb2.Credential(credential_id="cred-1", venue="binance", label="main",
                                           fingerprint="3f2a9c0d11e4", version=1, age_days=12,
                                           fields=["api_key", "secret"], create_time=_ts(1_700_000_000)),
        }

    def _status(self) -> vault_pb2.VaultStatus:
        return vault_pb2.VaultStatus(state=self.state, data_key_version=self.key_version,
                                     kdf="argon2id t=3 m=65536KiB p=4", credentials=len(self.creds))

    def _admin(self, method, request, context):
        _, role = _authenticate(self.s, method, context, request)
        if role != "admin":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"role {role} may not call {method}")

    def _cred(self, credential_id, context) -> vault_pb2.Credential:
        if credential_id == "cred-tampered":
            context.abort(grpc.StatusCode.DATA_LOSS, "credential cred-tampered failed authentication")
        cred = self.creds.get(credential_id)
        if cred is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"credential {credential_id!r} not found")
        return cred

    def GetVaultStatus(self, request, context):
        _authenticate(self.s, "GetVaultStatus", context, request)
        return self._status()

    def InitializeVault(self, request, context):
        self._admin("InitializeVault", request, context)
        self.state, self.passphrase = vault_pb2.VAULT_STATE_UNSEALED, request.passphrase
        return self._status()

    def UnsealVault(self, request, context):
        self._admin("UnsealVault", request, context)
        if self.wrong >= 3:
            context.set_trailing_metadata((("lyra-retry-after-s", "30"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many wrong passphrases")
        if request.passphrase != self.passphrase:
            self.wrong += 1
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "wrong passphrase")
        self.state = vault_pb2.VAULT_STATE_UNSEALED
        return self._status()

    def SealVault(self, request, context):
        self._admin("SealVault", request, context)
        self.state = vault_pb2.VAULT_STATE_SEALED
        return self._status()

    def ChangeVaultPassphrase(self, request, context):
        self._admin("ChangeVaultPassphrase", request, context)
        if request.current_passphrase != self.passphrase:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "wrong passphrase")
        self.passphrase = request.new_passphrase
        return self._status()

    def RotateDataKey(self, request, context):
        self._admin("RotateDataKey", request, context)
        self.key_version += 1
        return self._status()

    def CreateCredential(self, request, context):
        self._admin("CreateCredential", request, context)
        if self.state != vault_pb2.VAULT_STATE_UNSEALED:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "vault is sealed")
        cid = f"cred-{len(self.creds) + 1}"
        fields = [f for f in ("api_key", "secret", "passphrase", "uid") if getattr(request.secrets, f)]
        cred = vault_pb2.Credential(credential_id=cid, venue=request.venue, label=request.label, version=1,
                                    fingerprint=hashlib.sha256(request.secrets.api_key.encode()).hexdigest()[:12],
                                    fields=fields, create_time=_ts(1_700_000_100))
        self.creds[cid] = cred
        return cred

    def ListCredentials(self, request, context):
        _authenticate(self.s, "ListCredentials", context, request)
        return vault_pb2.ListCredentialsResponse(
            credentials=[c for c in self.creds.values() if not request.venue or c.venue == request.venue])

    def GetCredential(self, request, context):
        _authenticate(self.s, "GetCredential", context, request)
        return self._cred(request.credential_id, context)

    def RotateCredential(self, request, context):
        self._admin("RotateCredential", request, context)
        cred = self._cred(request.credential_id, context)
        cred.rotation_pending = True
        cred.pending_fingerprint = hashlib.sha256(request.secrets.api_key.encode()).hexdigest()[:12]
        return cred

    def ConfirmCredentialRotation(self, request, context):
        self._admin("ConfirmCredentialRotation", request, context)
        cred = self._cred(request.credential_id, context)
        if not cred.rotation_pending:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no rotation pending")
        cred.fingerprint, cred.pending_fingerprint = cred.pending_fingerprint, ""
        cred.rotation_pending, cred.version = False, cred.version + 1
        return cred

    def AbortCredentialRotation(self, request, context):
        self._admin("AbortCredentialRotation", request, context)
        cred = self._cred(request.credential_id, context)
        cred.rotation_pending, cred.pending_fingerprint = False, ""
        return cred

    def DeleteCredential(self, request, context):
        self._admin("DeleteCredential", request, context)
        self._cred(request.credential_id, context)
        del self.creds[request.credential_id]
        return vault_pb2.DeleteCredentialResponse()


class FakeUsers(users_pb2_grpc.UserServiceServicer):
    """UserService double (admin only): echoes what it was asked in plausible responses."""

    def __init__(self, state: FakeState) -> None:
        self.s = state

    def _admin(self, method, request, context):
        _, role = _authenticate(self.s, method, context, request)
        if role != "admin":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"role {role} may not call {method}")

    def _user(self, username, context) -> users_pb2.User:
        if username not in USERS and username not in self.s.passwords:
            context.abort(grpc.StatusCode.NOT_FOUND, f"user {username!r} not found")
        role = USERS[username][1] if username in USERS else "viewer"
        return users_pb2.User(user_id=f"u-{username}", username=username, role=role,
                              totp_enrolled=username in self.s.totp_users, create_time=_ts(1_700_000_000))

    def CreateUser(self, request, context):
        self._admin("CreateUser", request, context)
        if request.username in self.s.passwords:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"user {request.username!r} exists")
        self.s.passwords[request.username] = request.password
        return users_pb2.User(user_id=f"u-{request.username}", username=request.username, role=request.role)

    def ListUsers(self, request, context):
        self._admin("ListUsers", request, context)
        return users_pb2.ListUsersResponse(users=[self._user(u, context) for u in USERS])

    def GetUser(self, request, context):
        self._admin("GetUser", request, context)
        return self._user(request.username, context)

    def UpdateUser(self, request, context):
        self._admin("UpdateUser", request, context)
        user = self._user(request.username, context)
        for path in request.update_mask.paths:
            setattr(user, path, getattr(request, path))
        return user

    def ResetPassword(self, request, context):
        self._admin("ResetPassword", request, context)
        user = self._user(request.username, context)
        self.s.passwords[request.username] = request.new_password
        return user

    def ResetTotp(self, request, context):
        self._admin("ResetTotp", request, context)
        self.s.totp_users.discard(request.username)
        return self._user(request.username, context)

    def ListSessions(self, request, context):
        self._admin("ListSessions", request, context)
        return users_pb2.ListSessionsResponse(sessions=[
            users_pb2.Session(session_id="s-1", username=request.username or "alice", create_time=_ts(1_700_000_000),
                              peer="ipv4:127.0.0.1:50000")])

    def RevokeSession(self, request, context):
        self._admin("RevokeSession", request, context)
        return users_pb2.Session(session_id=request.session_id, username="alice", revoked=True)

    def CreateServiceToken(self, request, context):
        self._admin("CreateServiceToken", request, context)
        token = f"lyst_t{len(self.s.service_tokens) + 1}_n3wS3cr3tV4lu3"
        self.s.service_tokens[token] = (f"svc-{request.name}", request.role)
        meta = users_pb2.ServiceToken(token_id=f"t{len(self.s.service_tokens)}", name=request.name, role=request.role,
                                      create_time=_ts(1_700_000_000),
                                      expire_time=_ts(1_700_000_000 + request.ttl_seconds), created_by="root")
        return users_pb2.CreateServiceTokenResponse(service_token=meta, token=token)

    def ListServiceTokens(self, request, context):
        self._admin("ListServiceTokens", request, context)
        return users_pb2.ListServiceTokensResponse(service_tokens=[
            users_pb2.ServiceToken(token_id="t1", name="grafana", role="viewer", created_by="root")])

    def RevokeServiceToken(self, request, context):
        self._admin("RevokeServiceToken", request, context)
        return users_pb2.ServiceToken(token_id=request.token_id, name="grafana", role="viewer", revoked=True)


def audit_chain(n: int) -> list[audit_pb2.AuditRecord]:
    """``n`` hash-chained audit records, oldest first (seq 1..n); every third one failed."""
    records, prev = [], ""
    for seq in range(1, n + 1):
        rec = audit_pb2.AuditRecord(seq=seq, time=_ts(1_700_000_000 + seq), username="alice" if seq % 2 else "rita",
                                    role="trader" if seq % 2 else "risk_manager",
                                    method="/lyra.v1.OrderService/SubmitOrder",
                                    request_summary=json.dumps({"qty": str(seq), "secret": "[redacted]"}),
                                    code="PERMISSION_DENIED" if seq % 3 == 0 else "OK", peer="ipv4:127.0.0.1:1",
                                    session_id="s-1", prev_hash=prev)
        rec.hash = hashlib.sha256((prev + rec.SerializeToString().hex()).encode()).hexdigest()
        prev = rec.hash
        records.append(rec)
    return records


class FakeAudit(audit_pb2_grpc.AuditServiceServicer):
    """Audit double: ``state.audit`` (oldest first); ``state.audit_broken_at`` makes
    VerifyAuditChain report a broken chain at that seq."""

    def __init__(self, state: FakeState) -> None:
        self.s = state
        state.audit = audit_chain(7)
        state.audit_broken_at = 0

    def ListAuditRecords(self, request, context):
        _authenticate(self.s, "ListAuditRecords", context, request)
        items = [r for r in reversed(self.s.audit)
                 if (not request.username or r.username == request.username)
                 and (not request.method or r.method == request.method)
                 and (not request.failures_only or r.code != "OK")]
        start = int(request.page_token or 0)
        size = min(request.page_size or 3, 3)  # pages of 3 at most
        nxt = str(start + size) if start + size < len(items) else ""
        return audit_pb2.ListAuditRecordsResponse(records=items[start:start + size], next_page_token=nxt)

    def VerifyAuditChain(self, request, context):
        _authenticate(self.s, "VerifyAuditChain", context, request)
        broken = self.s.audit_broken_at
        if broken:
            return audit_pb2.VerifyAuditChainResponse(ok=False, records_checked=broken, first_broken_seq=broken,
                                                      reason="hash mismatch")
        return audit_pb2.VerifyAuditChainResponse(ok=True, records_checked=len(self.s.audit))

    def ExportAuditRecords(self, request, context):
        _authenticate(self.s, "ExportAuditRecords", context, request)
        for rec in self.s.audit:
            if rec.seq > request.after_seq:
                yield rec


def make_pki(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, Path]:
    """A throw-away CA, a server certificate for ``hosts`` and a client certificate, as PEM
    files in ``directory``: keys ca, server_cert, server_key, client_cert, client_key."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Lyra test CA")).issuer_name(name("Lyra test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage, sans) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    sans = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert, server_key = leaf(hosts[-1], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf("operator", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    directory.mkdir(parents=True, exist_ok=True)
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM), "server_cert": server_cert,
             "server_key": server_key, "client_cert": client_cert, "client_key": client_key}
    out = {}
    for key, data in files.items():
        path = directory / f"{key}.pem"
        path.write_bytes(data)
        if key.endswith("_key"):
            path.chmod(0o600)
        out[key] = path
    return out


class FakeServer:
    """In-process gRPC server on 127.0.0.1:<ephemeral> with the fake services.

    Parameters:
        pki: files from :func:`make_pki` to serve TLS with its server certificate.
        require_client_cert: with ``pki``, require a client certificate signed by its CA (mTLS).
    """

    def __init__(self, pki: dict[str, Path] | None = None, *, require_client_cert: bool = False) -> None:
        self.state = FakeState()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(self.state), self.server)
        orders_pb2_grpc.add_OrderServiceServicer_to_server(FakeOrders(self.state), self.server)
        portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(FakePortfolio(self.state), self.server)
        risk_pb2_grpc.add_RiskServiceServicer_to_server(FakeRisk(self.state), self.server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(FakeAdmin(self.state), self.server)
        self.vault = FakeVault(self.state)
        vault_pb2_grpc.add_VaultServiceServicer_to_server(self.vault, self.server)
        users_pb2_grpc.add_UserServiceServicer_to_server(FakeUsers(self.state), self.server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(FakeAudit(self.state), self.server)
        if pki is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            creds = grpc.ssl_server_credentials(
                [(pki["server_key"].read_bytes(), pki["server_cert"].read_bytes())],
                root_certificates=pki["ca"].read_bytes() if require_client_cert else None,
                require_client_auth=require_client_cert)
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeServer":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None).wait()


def unused_target() -> str:
    """host:port on which nothing listens (bound then released by a throw-away server)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    server.stop(grace=None).wait()
    return f"127.0.0.1:{port}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake():
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def client(fake):
    with LyraClient(fake.target, timeout=5) as c:
        yield c


# --------------------------------------------------------------------------- tests


def test_login_stores_tokens_and_sends_bearer(fake):
    seen = []
    with LyraClient(fake.target, on_tokens=lambda a, r: seen.append((a, r)), timeout=5) as c:
        resp = c.login("alice", "pw-alice")
        assert resp.role == "trader" and resp.username == "alice"
        assert c.access_token == resp.access_token and c.refresh_token == resp.refresh_token
        assert seen == [(resp.access_token, resp.refresh_token)]
        who = c.whoami()
    assert who.username == "alice" and who.role == "trader"
    assert "authorization" not in fake.state.calls("Login")[0]
    assert fake.state.calls("WhoAmI")[0]["authorization"] == f"Bearer {resp.access_token}"


def test_bad_password_is_unauthenticated(client):
    with pytest.raises(Unauthenticated) as info:
        client.login("alice", "wrong")
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid" in info.value.message
    assert client.access_token is None


def test_refresh_on_unauthenticated_retries_once_and_reports_rotation(fake):
    rotations = []
    with LyraClient(fake.target, on_tokens=lambda a, r: rotations.append((a, r)), timeout=5) as c:
        login = c.login("alice", "pw-alice")
        fake.state.expire_access_tokens()
        status = c.get_status()
        assert status.journal_seq == 42
        assert fake.state.refresh_calls == 1
        assert len(rotations) == 2
        new_access, new_refresh = rotations[-1]
        assert new_refresh != login.refresh_token and new_access != login.access_token
        assert (c.access_token, c.refresh_token) == (new_access, new_refresh)
        calls = fake.state.calls("GetStatus")
        assert [md["authorization"] for md in calls] == [f"Bearer {login.access_token}", f"Bearer {new_access}"]
        assert login.refresh_token in fake.state.spent_refresh
        # The next call uses the rotated token directly, without refreshing again.
        c.get_status()
        assert fake.state.refresh_calls == 1


def test_refresh_with_preloaded_tokens(fake):
    with fake.state.lock:
        access, refresh = fake.state.issue("alice")
    fake.state.expire_access_tokens()
    rotated = []
    with LyraClient(fake.target, access_token=access, refresh_token=refresh,
                    on_tokens=lambda a, r: rotated.append((a, r)), timeout=5) as c:
        assert c.list_balances().balances[0].asset == "BTC"
    assert len(rotated) == 1 and rotated[0][1] != refresh


def test_no_refresh_token_raises_unauthenticated(fake):
    with LyraClient(fake.target, timeout=5) as c:
        with pytest.raises(Unauthenticated):
            c.get_status()
    assert fake.state.refresh_calls == 0


def test_revoked_refresh_token_raises_unauthenticated(fake):
    with LyraClient(fake.target, timeout=5) as c:
        c.login("alice", "pw-alice")
        fake.state.refresh.clear()  # session revoked server-side
        fake.state.expire_access_tokens()
        with pytest.raises(Unauthenticated) as info:
            c.get_status()
        assert "refresh" in info.value.message
    assert fake.state.refresh_calls == 1


def test_iter_orders_follows_page_tokens(client, fake):
    client.login("alice", "pw-alice")
    ids = [o.client_order_id for o in client.iter_orders(page_size=3)]
    assert ids == [f"o-{i}" for i in range(7)]
    tokens = [r.page_token for r in fake.state.list_orders_requests]
    assert tokens == ["", "3", "6"]
    assert all(r.page_size == 3 for r in fake.state.list_orders_requests)


def test_iter_orders_limit_and_filters(client, fake):
    client.login("alice", "pw-alice")
    assert len(list(client.iter_orders(page_size=2, limit=3))) == 3
    assert len(fake.state.list_orders_requests) == 2  # stopped as soon as the limit was reached
    fake.state.list_orders_requests.clear()
    opened = list(client.iter_orders(statuses=["open"], page_size=10))
    assert [o.client_order_id for o in opened] == ["o-0", "o-1", "o-2"]
    assert list(fake.state.list_orders_requests[0].statuses) == [orders_pb2.ORDER_STATUS_OPEN]
    page = client.list_orders(page_size=5)
    assert len(page.orders) == 5 and page.next_page_token == "5"


def test_iter_fills_all_pages(client):
    client.login("alice", "pw-alice")
    assert [f.fill_id for f in client.iter_fills()] == [f"f-{i}" for i in range(5)]


def test_submit_order_builds_request(client):
    client.login("alice", "pw-alice")
    order = client.submit_order("ADA/BTC@paper", "BUY", Decimal("100"), limit_price="0.00003010",
                                client_order_id="my-1")
    assert order.client_order_id == "my-1"
    assert order.side == common_pb2.SIDE_BUY
    assert order.type == orders_pb2.ORDER_TYPE_LIMIT  # inferred from the price
    assert order.limit_price == "0.00003010" and order.qty == "100"
    market = client.submit_order("ADA/BTC@paper", "sell", "5")
    assert market.type == orders_pb2.ORDER_TYPE_MARKET and market.limit_price == ""


def test_submit_order_validates_before_calling(client, fake):
    with pytest.raises(TypeError):
        client.submit_order("ADA/BTC@paper", "buy", 1.5)
    with pytest.raises(ValueError, match="limit_price"):
        client.submit_order("ADA/BTC@paper", "buy", "1", order_type="limit")
    with pytest.raises(ValueError, match="side"):
        client.submit_order("ADA/BTC@paper", "hold", "1")
    with pytest.raises(ValueError, match="qty"):
        client.submit_order("ADA/BTC@paper", "buy", "lots")
    assert fake.state.calls("SubmitOrder") == []


def test_risk_rejection_keeps_trailing_metadata(client):
    client.login("alice", "pw-alice")
    with pytest.raises(FailedPrecondition) as info:
        client.submit_order("ADA/BTC@paper", "buy", "5000", limit_price="0.00003")
    err = info.value
    assert isinstance(err, LyraError)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details["lyra-reject-rule"] == "max_order_notional"
    assert err.reject_rule == "max_order_notional"
    assert "max_order_notional" in str(err)
    assert isinstance(err.__cause__, grpc.RpcError)


def test_error_classes(client, fake):
    client.login("victor", "pw-victor")
    with pytest.raises(PermissionDenied):
        client.submit_order("ADA/BTC@paper", "buy", "1")
    with pytest.raises(NotFound):
        client.get_order("nope")
    client.login("rita", "pw-rita")
    with pytest.raises(InvalidArgument, match="reason"):
        client.engage_kill_switch("")
    with LyraClient(unused_target(), timeout=2) as dead:
        with pytest.raises(Unavailable):
            dead.login("alice", "pw-alice")


def test_update_risk_limits_sets_mask_from_keywords(client, fake):
    client.login("rita", "pw-rita")
    limits = client.update_risk_limits(max_order_notional="0.02", max_open_orders=10)
    assert fake.state.last_update_mask == ["max_order_notional", "max_open_orders"]
    assert limits.max_order_notional == "0.02" and limits.max_open_orders == 10
    assert limits.daily_loss_limit == "0.005"  # untouched
    with pytest.raises(ValueError, match="not a risk limit"):
        client.update_risk_limits(max_leverage="3")


def test_stream_order_events_refreshes_before_first_event(client, fake):
    client.login("alice", "pw-alice")
    fake.state.expire_access_tokens()
    events = list(client.stream_order_events())
    assert [e.seq for e in events] == [101, 102, 103]
    assert events[0].type == orders_pb2.ORDER_EVENT_TYPE_ACCEPTED
    assert fake.state.refresh_calls == 1


def test_stream_can_be_closed_early(client):
    client.login("alice", "pw-alice")
    stream = client.stream_order_events()
    first = next(stream)
    stream.close()
    assert first.seq == 101


def test_to_dict_keeps_decimal_strings_and_short_enums(client):
    client.login("alice", "pw-alice")
    balances = to_dict(client.list_balances())
    assert balances["balances"][0]["reserved"] == "0.00012300"
    order = to_dict(client.get_order("o-1"))
    assert order["side"] == "BUY" and order["status"] == "OPEN" and order["type"] == "LIMIT"
    assert order["limit_price"] == "0.00003010"
    assert order["create_time"] == "2018-01-10T04:55:01Z"
    assert order["update_time"] is None
    status = to_dict(client.get_status())
    assert status["state"] == "RUNNING" and status["replay"]["state"] == "RUNNING"
    assert status["journal_seq"] == 42


def test_get_candles_time_conversion():
    from lyra_client.client import _timestamp

    aware = dt.datetime(2018, 1, 10, 4, 55, tzinfo=dt.timezone.utc)
    assert _timestamp(aware, field="t").seconds == 1_515_560_100
    assert _timestamp(dt.datetime(2018, 1, 10, 4, 55), field="t").seconds == 1_515_560_100  # naive = UTC
    assert _timestamp(1_515_560_100_000_000_000, field="t").seconds == 1_515_560_100
    with pytest.raises(TypeError):
        _timestamp("2018-01-10", field="t")


# --------------------------------------------------------------------------- security API: auth


def test_login_mfa_required_then_code(client, fake):
    with pytest.raises(MfaRequired) as info:
        client.login("tom", "pw-tom")
    assert isinstance(info.value, Unauthenticated)  # existing handlers still catch it
    assert info.value.details["lyra-mfa"] == "required"
    assert client.access_token is None
    resp = client.login("tom", "pw-tom", totp_code=TOTP_CODE)
    assert resp.username == "tom" and client.access_token == resp.access_token
    assert not resp.mfa_enrollment_required
    sent = fake.state.requests_of("Login")
    assert [(r.totp_code, r.recovery_code) for r in sent] == [("", ""), (TOTP_CODE, "")]


def test_login_with_recovery_code_works_once(client, fake):
    assert client.login("tom", "pw-tom", recovery_code=RECOVERY_CODES[0]).username == "tom"
    assert fake.state.requests_of("Login")[-1].recovery_code == RECOVERY_CODES[0]
    with pytest.raises(MfaRequired):
        client.login("tom", "pw-tom", recovery_code=RECOVERY_CODES[0])
    with pytest.raises(ValueError, match="one or the other"):
        client.login("tom", "pw-tom", totp_code=TOTP_CODE, recovery_code=RECOVERY_CODES[1])


def test_plain_unauthenticated_is_not_mfa(client):
    with pytest.raises(Unauthenticated) as info:
        client.login("tom", "wrong")
    assert not isinstance(info.value, MfaRequired)


def test_enrollment_required_session_until_confirmed(client, fake):
    resp = client.login("ada", "pw-ada")
    assert resp.mfa_enrollment_required is True
    with pytest.raises(PermissionDenied, match="TOTP enrollment required"):
        client.list_users()
    assert client.whoami().totp_enrolled is False
    begun = client.begin_totp_enrollment("pw-ada")
    assert begun.secret == TOTP_SECRET and begun.otpauth_uri.startswith("otpauth://totp/Lyra:ada?")
    with pytest.raises(InvalidArgument):
        client.confirm_totp_enrollment("000000")
    confirmed = client.confirm_totp_enrollment(f" {TOTP_CODE} ")
    assert list(confirmed.recovery_codes) == RECOVERY_CODES
    assert fake.state.requests_of("ConfirmTotpEnrollment")[-1].totp_code == TOTP_CODE
    assert len(client.list_users().users) == len(USERS)  # the restriction is lifted on this session
    assert client.whoami().totp_enrolled is True


def test_change_password(client, fake):
    client.login("alice", "pw-alice")
    client.change_password("pw-alice", "pw-alice-2")
    req = fake.state.requests_of("ChangePassword")[-1]
    assert (req.current_password, req.new_password) == ("pw-alice", "pw-alice-2")
    with pytest.raises(ValueError, match="new_password"):
        client.change_password("pw-alice-2", "")
    with pytest.raises(Unauthenticated):
        client.change_password("wrong", "pw-alice-3")


def test_resource_exhausted_carries_retry_after(client, fake):
    fake.state.login_retry_after = "30"
    with pytest.raises(ResourceExhausted) as info:
        client.login("alice", "pw-alice")
    assert info.value.retry_after_s == 30.0
    fake.state.login_retry_after = "2.5"
    with pytest.raises(ResourceExhausted) as info:
        client.login("alice", "pw-alice")
    assert info.value.retry_after_s == 2.5
    for value, expected in (({}, None), ({"lyra-retry-after-s": "soon"}, None), ({"lyra-retry-after-s": "-1"}, None),
                            ({"lyra-retry-after-s": b"7"}, 7.0)):
        assert ResourceExhausted(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", value).retry_after_s == expected


def test_data_loss_error_class(client):
    client.login("root", "pw-root")
    with pytest.raises(DataLoss) as info:
        client.get_credential("cred-tampered")
    assert info.value.code == grpc.StatusCode.DATA_LOSS and isinstance(info.value, LyraError)


# --------------------------------------------------------------------------- every new RPC sends the right request


def _secrets_msg(**kw):
    return vault_pb2.CredentialSecrets(**kw)


NEW_RPC_CASES = [
    (lambda c: c.get_vault_status(), "GetVaultStatus", vault_pb2.GetVaultStatusRequest()),
    (lambda c: c.unseal_vault(VAULT_PASSPHRASE), "UnsealVault", vault_pb2.UnsealVaultRequest(passphrase=VAULT_PASSPHRASE)),
    (lambda c: c.seal_vault(), "SealVault", vault_pb2.SealVaultRequest()),
    (lambda c: c.initialize_vault("new vault pass"), "InitializeVault",
     vault_pb2.InitializeVaultRequest(passphrase="new vault pass")),
    (lambda c: c.change_vault_passphrase(VAULT_PASSPHRASE, "another one"), "ChangeVaultPassphrase",
     vault_pb2.ChangeVaultPassphraseRequest(current_passphrase=VAULT_PASSPHRASE, new_passphrase="another one")),
    (lambda c: c.rotate_data_key(), "RotateDataKey", vault_pb2.RotateDataKeyRequest()),
    (lambda c: (c.unseal_vault(VAULT_PASSPHRASE), c.create_credential("okx", "main", "AK", "SK", "PP", "U1")),
     "CreateCredential", vault_pb2.CreateCredentialRequest(
         venue="okx", label="main", secrets=_secrets_msg(api_key="AK", secret="SK", passphrase="PP", uid="U1"))),
    (lambda c: c.list_credentials("binance"), "ListCredentials", vault_pb2.ListCredentialsRequest(venue="binance")),
    (lambda c: c.get_credential("cred-1"), "GetCredential", vault_pb2.GetCredentialRequest(credential_id="cred-1")),
    (lambda c: c.rotate_credential("cred-1", "AK2", "SK2"), "RotateCredential", vault_pb2.RotateCredentialRequest(
        credential_id="cred-1", secrets=_secrets_msg(api_key="AK2", secret="SK2"))),
    (lambda c: (c.rotate_credential("cred-1", "AK2", "SK2"), c.confirm_credential_rotation("cred-1")),
     "ConfirmCredentialRotation", vault_pb2.ConfirmCredentialRotationRequest(credential_id="cred-1")),
    (lambda c: c.abort_credential_rotation("cred-1"), "AbortCredentialRotation",
     vault_pb2.AbortCredentialRotationRequest(credential_id="cred-1")),
    (lambda c: c.delete_credential("cred-1"), "DeleteCredential", vault_pb2.DeleteCredentialRequest(credential_id="cred-1")),
    (lambda c: c.create_user("zoe", "pw-zoe-long", "analyst"), "CreateUser",
     users_pb2.CreateUserRequest(username="zoe", password="pw-zoe-long", role="analyst")),
    (lambda c: c.list_users(), "ListUsers", users_pb2.ListUsersRequest()),
    (lambda c: c.get_user("alice"), "GetUser", users_pb2.GetUserRequest(username="alice")),
    (lambda c: c.update_user("alice", role="viewer"), "UpdateUser",
     users_pb2.UpdateUserRequest(username="alice", role="viewer", update_mask={"paths": ["role"]})),
    (lambda c: c.reset_password("alice", "pw-new-alice"), "ResetPassword",
     users_pb2.ResetPasswordRequest(username="alice", new_password="pw-new-alice")),
    (lambda c: c.reset_totp("tom"), "ResetTotp", users_pb2.ResetTotpRequest(username="tom")),
    (lambda c: c.list_sessions("alice", include_revoked=True), "ListSessions",
     users_pb2.ListSessionsRequest(username="alice", include_revoked=True)),
    (lambda c: c.revoke_session("s-1"), "RevokeSession", users_pb2.RevokeSessionRequest(session_id="s-1")),
    (lambda c: c.create_service_token("ci", "trader", 86400), "CreateServiceToken",
     users_pb2.CreateServiceTokenRequest(name="ci", role="trader", ttl_seconds=86400)),
    (lambda c: c.create_service_token("ci", "trader", dt.timedelta(days=30)), "CreateServiceToken",
     users_pb2.CreateServiceTokenRequest(name="ci", role="trader", ttl_seconds=30 * 86400)),
    (lambda c: c.list_service_tokens(include_revoked=True), "ListServiceTokens",
     users_pb2.ListServiceTokensRequest(include_revoked=True)),
    (lambda c: c.revoke_service_token("t1"), "RevokeServiceToken", users_pb2.RevokeServiceTokenRequest(token_id="t1")),
    (lambda c: c.list_audit_records(page_size=2, username="alice", method="/m", failures_only=True),
     "ListAuditRecords", audit_pb2.ListAuditRecordsRequest(page_size=2, username="alice", method="/m",
                                                           failures_only=True)),
    (lambda c: c.verify_audit_chain(), "VerifyAuditChain", audit_pb2.VerifyAuditChainRequest()),
    (lambda c: list(c.export_audit_records(after_seq=3)), "ExportAuditRecords",
     audit_pb2.ExportAuditRecordsRequest(after_seq=3)),
    (lambda c: c.begin_totp_enrollment("pw-root"), "BeginTotpEnrollment",
     auth_pb2.BeginTotpEnrollmentRequest(password="pw-root")),
    (lambda c: c.change_password("pw-root", "pw-root-2"), "ChangePassword",
     auth_pb2.ChangePasswordRequest(current_password="pw-root", new_password="pw-root-2")),
]


@pytest.mark.parametrize("call,method,expected", NEW_RPC_CASES, ids=[f"{m}-{i}" for i, (_, m, _) in
                                                                       enumerate(NEW_RPC_CASES)])
def test_new_rpc_sends_request(fake, call, method, expected):
    if method == "InitializeVault":
        fake.vault.state = vault_pb2.VAULT_STATE_UNINITIALIZED
    with LyraClient(fake.target, timeout=5) as c:
        c.login("root", "pw-root")
        call(c)
    got = fake.state.requests_of(method)[-1]
    assert got == expected
    bearer = fake.state.calls(method)[-1]["authorization"]
    assert bearer.startswith("Bearer access-root-")


def test_update_user_builds_update_mask(client, fake):
    client.login("root", "pw-root")
    assert client.update_user("alice", disabled=True).disabled is True
    assert list(fake.state.requests_of("UpdateUser")[-1].update_mask.paths) == ["disabled"]
    client.update_user("alice", role="viewer", disabled=False)
    req = fake.state.requests_of("UpdateUser")[-1]
    assert list(req.update_mask.paths) == ["role", "disabled"] and req.role == "viewer" and req.disabled is False
    with pytest.raises(ValueError, match="role and/or disabled"):
        client.update_user("alice")
    with pytest.raises(TypeError):
        client.update_user("alice", disabled="yes")
    assert len(fake.state.requests_of("UpdateUser")) == 2


def test_argument_checks_never_echo_secrets(client, fake):
    client.login("root", "pw-root")
    with pytest.raises(ValueError) as info:
        client.create_credential("binance", "main", "", "TOPSECRET-1")
    assert str(info.value) == "api_key: required" and "TOPSECRET" not in repr(info.value)
    with pytest.raises(ValueError, match="secret: required"):
        client.rotate_credential("cred-1", "AK", "")
    with pytest.raises(ValueError, match="must differ"):
        client.change_vault_passphrase("same-pass", "same-pass")
    with pytest.raises(ValueError, match="ttl_seconds"):
        client.create_service_token("ci", "trader", 0)
    with pytest.raises(ValueError, match="after_seq"):
        client.export_audit_records(after_seq=-1)
    assert fake.state.requests == [("Login", fake.state.requests[0][1])]  # nothing else was sent


def test_iter_and_export_audit_records(client, fake):
    client.login("root", "pw-root")
    assert [r.seq for r in client.iter_audit_records()] == [7, 6, 5, 4, 3, 2, 1]  # newest first, 3 pages
    assert [r.page_token for r in fake.state.requests_of("ListAuditRecords")] == ["", "3", "6"]
    assert [r.seq for r in client.iter_audit_records(failures_only=True)] == [6, 3]
    assert [r.seq for r in client.iter_audit_records(limit=4)] == [7, 6, 5, 4]
    exported = list(client.export_audit_records())
    assert [r.seq for r in exported] == list(range(1, 8))  # oldest first
    assert all(b.prev_hash == a.hash for a, b in zip(exported, exported[1:]))
    assert [r.seq for r in client.export_audit_records(after_seq=5)] == [6, 7]
    fake.state.audit_broken_at = 4
    verdict = client.verify_audit_chain()
    assert (verdict.ok, verdict.first_broken_seq) == (False, 4)


# --------------------------------------------------------------------------- service tokens


def test_service_token_is_sent_as_bearer_without_refresh(fake):
    with LyraClient(fake.target, service_token=SERVICE_TOKEN, timeout=5) as c:
        assert c.uses_service_token
        who = c.whoami()
        assert (who.username, who.role, who.principal_kind) == ("svc-grafana", "viewer", "service")
        assert c.get_status().journal_seq == 42
        assert fake.state.calls("WhoAmI")[-1]["authorization"] == f"Bearer {SERVICE_TOKEN}"
        del fake.state.service_tokens[SERVICE_TOKEN]  # revoked server-side
        with pytest.raises(Unauthenticated):
            c.get_status()
        with pytest.raises(ValueError, match="service token"):
            c.login("alice", "pw-alice")
        with pytest.raises(ValueError, match="service token"):
            c.refresh()
    assert fake.state.refresh_calls == 0 and fake.state.calls("Login") == []


def test_service_token_argument_checks(fake):
    with pytest.raises(ValueError, match="exclusive") as info:
        LyraClient(fake.target, service_token=SERVICE_TOKEN, access_token="a")
    assert SERVICE_TOKEN not in str(info.value)
    with pytest.raises(ValueError, match="printable ASCII word") as info:
        LyraClient(fake.target, service_token="lyst_x_HUNTER2 withspace")
    assert "HUNTER2" not in str(info.value)
    with LyraClient(fake.target, service_token=f"  {SERVICE_TOKEN}\n", timeout=5) as c:  # whitespace trimmed
        assert c.whoami().principal_kind == "service"


# --------------------------------------------------------------------------- TLS / mTLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_with_appliance_ca(pki, tmp_path):
    other_ca = make_pki(tmp_path / "other")["ca"]
    with FakeServer(pki) as srv:
        with LyraClient(srv.target, ca_cert=pki["ca"], timeout=5) as c:
            assert c.login("alice", "pw-alice").username == "alice"
        with LyraClient(srv.target, ca_cert=pki["ca"].read_bytes(), timeout=5) as c:  # PEM bytes work too
            c.login("alice", "pw-alice")
        with LyraClient(srv.target, timeout=2) as plain:
            with pytest.raises(Unavailable):
                plain.login("alice", "pw-alice")
        with LyraClient(srv.target, ca_cert=other_ca, timeout=2) as wrong_ca:
            with pytest.raises(Unavailable):
                wrong_ca.login("alice", "pw-alice")


def test_mtls_requires_client_certificate(pki):
    with FakeServer(pki, require_client_cert=True) as srv:
        with LyraClient(srv.target, ca_cert=pki["ca"], timeout=2) as no_cert:
            with pytest.raises(Unavailable):
                no_cert.login("alice", "pw-alice")
        with LyraClient(srv.target, ca_cert=pki["ca"], client_cert=pki["client_cert"],
                        client_key=str(pki["client_key"]), timeout=5) as c:
            assert c.login("alice", "pw-alice").role == "trader"
            assert c.whoami().username == "alice"


def test_tls_parameter_errors(pki, tmp_path):
    with pytest.raises(ValueError, match="give both"):
        LyraClient("127.0.0.1:1", ca_cert=pki["ca"], client_cert=pki["client_cert"])
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=f"ca_cert {missing}: cannot read"):
        LyraClient("127.0.0.1:1", ca_cert=missing)
    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match="not a PEM file"):
        LyraClient("127.0.0.1:1", ca_cert=not_pem)
    with pytest.raises(ValueError, match="not both"):
        LyraClient("127.0.0.1:1", ca_cert=pki["ca"], credentials=grpc.ssl_channel_credentials())
