"""Synchronous, typed Python client for the Lyra appliance gRPC API.

Return values: every RPC method returns the RPC's protobuf response message unchanged
(``lyra.v1.*_pb2`` classes, e.g. :class:`Order`, :class:`ListOrdersResponse`). Decimal values
in them are strings; times are ``google.protobuf.Timestamp``. The ``iter_*`` helpers follow
page tokens and yield the individual resources. :func:`lyra_client.convert.to_dict` turns any
of them into JSON-ready dicts.

Errors: every failed call raises :class:`lyra_client.errors.LyraError` or a subclass
(``Unauthenticated`` and its ``MfaRequired``, ``PermissionDenied``, ``InvalidArgument``,
``FailedPrecondition``, ``NotFound``, ``AlreadyExists``, ``ResourceExhausted`` (with
``retry_after_s``), ``Unavailable``, ``DeadlineExceeded``, ``DataLoss``); invalid arguments
detected before the call raise ``ValueError``/``TypeError``. Error messages of the SDK never
contain a password, passphrase, API secret or token passed to it.

Authentication: the client sends ``authorization: Bearer <access_token>``. When a call fails
with UNAUTHENTICATED and a refresh token is known, the client calls ``AuthService.Refresh``
once, stores the rotated pair, calls ``on_tokens(access, refresh)`` and retries the call once.
With ``service_token=`` (a service-account token ``lyst_<id>_<secret>``) that token is sent
as the bearer token instead and nothing is ever refreshed.

Transport: plaintext by default (the appliance binds 127.0.0.1); ``ca_cert=`` switches to TLS
verified against the appliance CA, and ``client_cert=`` + ``client_key=`` add a client
certificate for mTLS.

Example::

    from lyra_client import LyraClient
    with LyraClient("127.0.0.1:7443") as c:
        c.login("alice", "secret")
        order = c.submit_order("ADA/BTC@paper", "buy", "100", limit_price="0.0000301")
        for o in c.iter_orders(open_only=True):
            print(o.client_order_id, o.status)
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from lyra.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    marketdata_pb2,
    marketdata_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    portfolio_pb2,
    portfolio_pb2_grpc,
    risk_pb2,
    risk_pb2_grpc,
    strategies_pb2,
    strategies_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    vault_pb2,
    vault_pb2_grpc,
)

from .convert import enum_value, to_decimal_str
from .errors import LyraError, Unauthenticated

DEFAULT_TARGET = "127.0.0.1:7443"
TokenCallback = Callable[[str, str], None]
DecimalLike = str | Decimal | int
TimeLike = _dt.datetime | timestamp_pb2.Timestamp | int
#: PEM material: ``bytes`` = the PEM content; ``str``/``PathLike`` = a file path (a ``str``
#: starting with ``-----BEGIN`` is taken as PEM content).
PemSource = str | bytes | os.PathLike

_T = TypeVar("_T")

#: RiskLimits fields that :meth:`LyraClient.update_risk_limits` accepts as keywords.
RISK_LIMIT_FIELDS = tuple(f.name for f in risk_pb2.RiskLimits.DESCRIPTOR.fields)

#: Role names of the appliance (see DESIGN.md, "Security model").
ROLES = ("admin", "trader", "risk_manager", "analyst", "auditor", "viewer")

#: Prefix of service-account tokens (``lyst_<id>_<secret>``).
SERVICE_TOKEN_PREFIX = "lyst_"


def _read_pem(source: PemSource, *, field: str) -> bytes:
    """PEM bytes from ``source`` (bytes = content, str/PathLike = path).

    Raises: ``ValueError`` naming ``field`` and the file if it cannot be read or is not PEM.
    The content itself is never included in the message.
    """
    if isinstance(source, bytes):
        data = source
        where = f"{field}"
    elif isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        data = source.encode("ascii", "replace")
        where = f"{field}"
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = f"{field} {path}"
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ValueError(f"{where}: cannot read ({exc.strerror or exc})") from None
    else:
        raise TypeError(f"{field}: expected a path or PEM bytes, got {type(source).__name__}")
    if b"-----BEGIN" not in data:
        raise ValueError(f"{where}: not a PEM file")
    return data


def channel_credentials(
    ca_cert: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
) -> grpc.ChannelCredentials:
    """TLS channel credentials for the appliance.

    Parameters:
        ca_cert: CA certificate that signed the appliance's server certificate (PEM path or
            bytes); ``None`` = the system's trusted roots.
        client_cert: client certificate chain for mTLS (PEM); requires ``client_key``.
        client_key: private key of ``client_cert`` (PEM); requires ``client_cert``.

    Raises: ``ValueError`` if only one of client_cert/client_key is given or a file cannot
    be read.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key: give both for mTLS, or neither")
    root = _read_pem(ca_cert, field="ca_cert") if ca_cert is not None else None
    chain = _read_pem(client_cert, field="client_cert") if client_cert is not None else None
    key = _read_pem(client_key, field="client_key") if client_key is not None else None
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


def _check_service_token(token: str) -> str:
    """Validate a service token's shape; the message never contains the token."""
    if not isinstance(token, str):
        raise TypeError("service_token: expected str")
    token = token.strip()
    if not token:
        raise ValueError("service_token: empty")
    if any(ch.isspace() or not ch.isprintable() or ord(ch) > 126 for ch in token):
        raise ValueError("service_token: must be one printable ASCII word (lyst_<id>_<secret>)")
    return token


def _secrets(api_key: str, secret: str, passphrase: str, uid: str) -> vault_pb2.CredentialSecrets:
    """CredentialSecrets after checking the required parts (messages never echo values)."""
    for name, value in (("api_key", api_key), ("secret", secret), ("passphrase", passphrase), ("uid", uid)):
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected str, got {type(value).__name__}")
    if not api_key:
        raise ValueError("api_key: required")
    if not secret:
        raise ValueError("secret: required")
    return vault_pb2.CredentialSecrets(api_key=api_key, secret=secret, passphrase=passphrase or "", uid=uid or "")


def _required(value: str, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{field}: required")
    return value


def _client_version() -> str:
    try:
        from importlib.metadata import version

        return version("lyra")
    except Exception:  # pragma: no cover - not installed
        return "0+unknown"


def _timestamp(value: TimeLike | None, *, field: str) -> timestamp_pb2.Timestamp | None:
    """Timestamp from an aware datetime (naive = UTC), a Timestamp, or int ns since epoch."""
    if value is None:
        return None
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        ts.FromDatetime(value.astimezone(_dt.timezone.utc))
        return ts
    if isinstance(value, int) and not isinstance(value, bool):
        ts.FromNanoseconds(value)
        return ts
    raise TypeError(f"{field}: expected datetime, Timestamp or int nanoseconds, got {type(value).__name__}")


def _parse_time(value: TimeLike | str, *, field: str) -> TimeLike:
    """``"2024-01-01"`` or an ISO 8601 time (naive = UTC) as an aware datetime; other values
    are returned unchanged for :func:`_timestamp`. Raises ``ValueError`` naming ``field``."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        parsed = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
    except ValueError:
        raise ValueError(f"{field}: not a date or ISO 8601 time: {value!r} (e.g. 2024-01-01 or "
                         "2024-01-01T12:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


class LyraClient:
    """Blocking client for every lyra.v1 service.

    Parameters:
        target: ``host:port`` of the appliance (default ``127.0.0.1:7443``).
        access_token: JWT to send as bearer token, if already logged in.
        refresh_token: refresh token used to renew an expired access token.
        on_tokens: called as ``on_tokens(access_token, refresh_token)`` whenever the client's
            token pair changes (after :meth:`login` and after every automatic or explicit
            refresh) so callers can persist the rotated pair. Not called by :meth:`logout`.
        timeout: deadline in seconds for unary calls (streams have no deadline).
        credentials: ``grpc.ChannelCredentials`` for TLS/mTLS; ``None`` = plaintext channel
            (the appliance listens on 127.0.0.1 by default; remote access goes through TLS or
            a tunnel). Exclusive with ``ca_cert``/``client_cert``/``client_key``.
        ca_cert: connect with TLS, verifying the server certificate against this CA (PEM path
            or bytes), normally the appliance CA.
        client_cert, client_key: client certificate and its private key (PEM path or bytes)
            for servers that require mTLS; both or neither. Without ``ca_cert`` the system's
            trusted roots verify the server.
        tls_server_name: expected name in the server certificate when it differs from the
            host in ``target`` (e.g. connecting by IP to a certificate issued for a name).
        service_token: a service-account token (``lyst_<id>_<secret>``) sent as the bearer
            token on every call; it is never refreshed, and :meth:`login`, :meth:`refresh`
            and :meth:`logout` are refused. Exclusive with ``access_token``/``refresh_token``.
        channel: an existing ``grpc.Channel`` to use instead of creating one (then ``target``
            and the TLS parameters are ignored and :meth:`close` does not close it).

    Raises: ``ValueError`` for conflicting parameters, an unreadable certificate file or a
    malformed service token (never echoing it).

    Thread safety: one client may be shared by threads; refreshes are serialised.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        on_tokens: TokenCallback | None = None,
        timeout: float | None = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        ca_cert: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        tls_server_name: str | None = None,
        service_token: str | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        tls_files = ca_cert is not None or client_cert is not None or client_key is not None
        if credentials is not None and tls_files:
            raise ValueError("credentials: pass either credentials or ca_cert/client_cert/client_key, not both")
        if service_token is not None and (access_token or refresh_token):
            raise ValueError("service_token: exclusive with access_token/refresh_token")
        self.target = target
        self.timeout = timeout
        self._service_token = _check_service_token(service_token) if service_token is not None else None
        self._access_token = access_token or None
        self._refresh_token = refresh_token or None
        self._on_tokens = on_tokens
        self._lock = threading.Lock()
        self._owns_channel = channel is None
        if channel is None:
            if tls_files:
                credentials = channel_credentials(ca_cert, client_cert, client_key)
            options: list[tuple[str, Any]] = [("grpc.primary_user_agent", f"lyra-python/{_client_version()}")]
            if tls_server_name:
                if credentials is None:
                    raise ValueError("tls_server_name: only meaningful with TLS (ca_cert or credentials)")
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            if credentials is not None:
                channel = grpc.secure_channel(target, credentials, options=options)
            else:
                channel = grpc.insecure_channel(target, options=options)
        self._channel = channel
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._orders = orders_pb2_grpc.OrderServiceStub(channel)
        self._portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        self._strategies = strategies_pb2_grpc.StrategyServiceStub(channel)
        self._risk = risk_pb2_grpc.RiskServiceStub(channel)
        self._marketdata = marketdata_pb2_grpc.MarketDataServiceStub(channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(channel)
        self._vault = vault_pb2_grpc.VaultServiceStub(channel)
        self._users = users_pb2_grpc.UserServiceStub(channel)
        self._audit = audit_pb2_grpc.AuditServiceStub(channel)

    # ------------------------------------------------------------------ lifecycle / tokens

    def close(self) -> None:
        """Close the channel (if this client created it)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "LyraClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def access_token(self) -> str | None:
        """Current access token (JWT), or ``None``."""
        return self._access_token

    @property
    def refresh_token(self) -> str | None:
        """Current refresh token, or ``None``."""
        return self._refresh_token

    @property
    def uses_service_token(self) -> bool:
        """Whether this client authenticates with a service-account token."""
        return self._service_token is not None

    def set_tokens(self, access_token: str | None, refresh_token: str | None) -> None:
        """Replace the token pair (does not call ``on_tokens``)."""
        with self._lock:
            self._access_token = access_token or None
            self._refresh_token = refresh_token or None

    def _bearer(self) -> str | None:
        """The token to send: the service token, else the current access token."""
        return self._service_token or self._access_token

    def _no_service_token(self, what: str) -> None:
        if self._service_token is not None:
            raise ValueError(f"{what}: not available to a client that authenticates with a service token")

    def _metadata(self, token: str | None) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")] if token else []

    def _store_tokens(self, access: str, refresh: str) -> None:
        self._access_token = access or None
        self._refresh_token = refresh or None
        if self._on_tokens is not None:
            self._on_tokens(access, refresh)

    def _refresh_after_failure(self, failed_with: str | None) -> bool:
        """Refresh once for a call that failed with token ``failed_with``.

        Returns True if the caller should retry (a new access token is available).
        Raises the Refresh RPC's LyraError if the refresh itself fails.
        """
        if self._service_token is not None:
            return False  # static token: nothing to refresh
        with self._lock:
            if self._access_token and self._access_token != failed_with:
                return True  # another thread already refreshed
            if not self._refresh_token:
                return False
            try:
                resp = self._auth.Refresh(
                    auth_pb2.RefreshRequest(refresh_token=self._refresh_token), timeout=self.timeout
                )
            except grpc.RpcError as err:
                raise LyraError.from_rpc_error(err) from err
            self._store_tokens(resp.access_token, resp.refresh_token)
            return True

    def _call(self, method: Callable[..., _T], request: Any, *, auth: bool = True) -> _T:
        token = self._bearer() if auth else None
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata(token))
        except grpc.RpcError as err:
            if not (auth and err.code() == grpc.StatusCode.UNAUTHENTICATED and self._refresh_after_failure(token)):
                raise LyraError.from_rpc_error(err) from err
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata(self._bearer()))
        except grpc.RpcError as err:
            raise LyraError.from_rpc_error(err) from err

    def _paginate(self, fetch: Callable[[str], Any], items_field: str, limit: int | None) -> Iterator[Any]:
        token = ""
        seen: set[str] = set()
        count = 0
        while True:
            page = fetch(token)
            for item in getattr(page, items_field):
                if limit is not None and count >= limit:
                    return
                yield item
                count += 1
            token = page.next_page_token
            if not token or (limit is not None and count >= limit):
                return
            if token in seen:
                raise LyraError(grpc.StatusCode.INTERNAL, f"server repeated page token {token!r}")
            seen.add(token)

    # ------------------------------------------------------------------ AuthService

    def login(
        self, username: str, password: str, totp_code: str = "", recovery_code: str = ""
    ) -> auth_pb2.LoginResponse:
        """Log in; stores the returned token pair in the client and calls ``on_tokens``.

        Parameters:
            username, password: the user's credentials.
            totp_code: the current RFC 6238 code, for a user with TOTP enrolled.
            recovery_code: a one-time recovery code instead of ``totp_code``.

        Returns: ``LoginResponse`` (access_token, refresh_token, access_expires_at, role,
            username, mfa_enrollment_required). When ``mfa_enrollment_required`` is true the
            session may only call whoami, begin/confirm_totp_enrollment, change_password and
            logout until :meth:`confirm_totp_enrollment` succeeds.
        Raises: ``MfaRequired`` (a subclass of ``Unauthenticated``) when the user has TOTP
            enrolled and no valid code was given; ``Unauthenticated`` for bad credentials;
            ``ResourceExhausted`` when rate limited (see ``retry_after_s``); ``ValueError``
            if both codes are given or the client uses a service token.
        """
        self._no_service_token("login")
        if totp_code and recovery_code:
            raise ValueError("totp_code and recovery_code: give one or the other")
        resp = self._call(
            self._auth.Login,
            auth_pb2.LoginRequest(
                username=username, password=password, totp_code=totp_code or "", recovery_code=recovery_code or ""
            ),
            auth=False,
        )
        with self._lock:
            self._store_tokens(resp.access_token, resp.refresh_token)
        return resp

    def refresh(self) -> auth_pb2.RefreshResponse:
        """Rotate the token pair now; stores it and calls ``on_tokens``.

        Raises: ``Unauthenticated`` if there is no refresh token or it was revoked/reused;
            ``ValueError`` for a client that uses a service token.
        """
        self._no_service_token("refresh")
        if not self._refresh_token:
            raise Unauthenticated(grpc.StatusCode.UNAUTHENTICATED, "no refresh token; log in first")
        with self._lock:
            try:
                resp = self._auth.Refresh(
                    auth_pb2.RefreshRequest(refresh_token=self._refresh_token), timeout=self.timeout
                )
            except grpc.RpcError as err:
                raise LyraError.from_rpc_error(err) from err
            self._store_tokens(resp.access_token, resp.refresh_token)
        return resp

    def logout(self) -> auth_pb2.LogoutResponse:
        """Revoke the session of the current refresh token and forget both tokens locally
        (even if the server call fails, in which case its error is raised afterwards).

        Raises: ``ValueError`` for a client that uses a service token (revoke the token with
        :meth:`revoke_service_token` instead)."""
        self._no_service_token("logout")
        token = self._access_token
        try:
            try:
                return self._auth.Logout(
                    auth_pb2.LogoutRequest(refresh_token=self._refresh_token or ""),
                    timeout=self.timeout,
                    metadata=self._metadata(token),
                )
            except grpc.RpcError as err:
                # Logout needs a valid access token: refresh once (rotating the refresh
                # token) and revoke the session with the new refresh token.
                if not (err.code() == grpc.StatusCode.UNAUTHENTICATED and self._refresh_after_failure(token)):
                    raise LyraError.from_rpc_error(err) from err
            try:
                return self._auth.Logout(
                    auth_pb2.LogoutRequest(refresh_token=self._refresh_token or ""),
                    timeout=self.timeout,
                    metadata=self._metadata(self._access_token),
                )
            except grpc.RpcError as err:
                raise LyraError.from_rpc_error(err) from err
        finally:
            self.set_tokens(None, None)

    def whoami(self) -> auth_pb2.WhoAmIResponse:
        """Identity of the caller: username, role, permissions, totp_enrolled and
        principal_kind (``"user"`` or ``"service"``)."""
        return self._call(self._auth.WhoAmI, auth_pb2.WhoAmIRequest())

    def begin_totp_enrollment(self, password: str) -> auth_pb2.BeginTotpEnrollmentResponse:
        """Start TOTP enrollment for the caller.

        Parameters:
            password: the caller's current password (a stolen access token alone cannot
                enroll a second factor).

        Returns: ``BeginTotpEnrollmentResponse`` with ``otpauth_uri`` and the base32
            ``secret`` (shown once; the secret becomes active only after
            :meth:`confirm_totp_enrollment`).
        Raises: ``Unauthenticated`` for a wrong password; ``ValueError`` if empty.
        """
        req = auth_pb2.BeginTotpEnrollmentRequest(password=_required(password, "password"))
        return self._call(self._auth.BeginTotpEnrollment, req)

    def confirm_totp_enrollment(self, code: str) -> auth_pb2.ConfirmTotpEnrollmentResponse:
        """Activate the pending TOTP secret with a current code.

        Returns: ``ConfirmTotpEnrollmentResponse`` with the one-time ``recovery_codes``
            (shown once). Lifts the restriction of an ``mfa_enrollment_required`` session.
        Raises: ``InvalidArgument``/``Unauthenticated`` for a wrong code (server's choice);
            ``FailedPrecondition`` if no enrollment was begun; ``ValueError`` if empty.
        """
        code = _required(code, "totp_code").strip()
        return self._call(self._auth.ConfirmTotpEnrollment, auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=code))

    def change_password(self, current_password: str, new_password: str) -> auth_pb2.ChangePasswordResponse:
        """Change the caller's own password; the server revokes the caller's other sessions.

        Raises: ``Unauthenticated`` for a wrong current password; ``InvalidArgument`` if the
            new password violates the policy; ``ValueError`` if either is empty.
        """
        req = auth_pb2.ChangePasswordRequest(
            current_password=_required(current_password, "current_password"),
            new_password=_required(new_password, "new_password"),
        )
        return self._call(self._auth.ChangePassword, req)

    # ------------------------------------------------------------------ OrderService

    def submit_order(
        self,
        instrument: str,
        side: str | int,
        qty: DecimalLike,
        *,
        order_type: str | int | None = None,
        limit_price: DecimalLike | None = None,
        client_order_id: str | None = None,
        strategy_id: str | None = None,
    ) -> orders_pb2.Order:
        """Submit an order through the risk engine.

        Parameters:
            instrument: ``"SYMBOL@VENUE"``, e.g. ``"ADA/BTC@paper"``.
            side: ``"buy"``/``"sell"`` (any case) or a ``Side`` enum value.
            qty: quantity in base units (str/Decimal/int; floats are refused).
            order_type: ``"market"``/``"limit"`` or ``OrderType``; default: limit if
                ``limit_price`` is given, else market.
            limit_price: quote per base; required for limit orders.
            client_order_id: optional idempotency id; the server generates one if omitted.
            strategy_id: optional owning strategy (default ``"manual"`` server-side).

        Returns: the ``Order`` as recorded.
        Raises: ``ValueError``/``TypeError`` for bad arguments (before any call);
            ``InvalidArgument``; ``FailedPrecondition`` for risk rejections (see
            ``err.reject_rule``) or a halted system; ``AlreadyExists`` for a reused id.
        """
        side_v = enum_value(common_pb2.Side.DESCRIPTOR, side, field="side")
        if order_type is None:
            order_type = "limit" if limit_price not in (None, "") else "market"
        type_v = enum_value(orders_pb2.OrderType.DESCRIPTOR, order_type, field="type")
        price = to_decimal_str(limit_price, field="limit_price", allow_empty=True)
        if type_v == orders_pb2.ORDER_TYPE_LIMIT and not price:
            raise ValueError("limit_price: required for limit orders")
        if type_v == orders_pb2.ORDER_TYPE_MARKET and price:
            raise ValueError("limit_price: must be empty for market orders")
        request = orders_pb2.SubmitOrderRequest(
            instrument=instrument,
            side=side_v,
            type=type_v,
            qty=to_decimal_str(qty, field="qty"),
            limit_price=price,
            client_order_id=client_order_id or "",
            strategy_id=strategy_id or "",
        )
        return self._call(self._orders.SubmitOrder, request)

    def cancel_order(self, client_order_id: str) -> orders_pb2.Order:
        """Request cancelation; returns the order. Raises ``NotFound``, ``FailedPrecondition``."""
        return self._call(self._orders.CancelOrder, orders_pb2.CancelOrderRequest(client_order_id=client_order_id))

    def get_order(self, client_order_id: str) -> orders_pb2.Order:
        """Fetch one order by client order id. Raises ``NotFound``."""
        return self._call(self._orders.GetOrder, orders_pb2.GetOrderRequest(client_order_id=client_order_id))

    def _orders_request(
        self,
        page_size: int,
        page_token: str,
        statuses: Iterable[str | int],
        instrument: str,
        strategy_id: str,
        open_only: bool,
    ) -> orders_pb2.ListOrdersRequest:
        return orders_pb2.ListOrdersRequest(
            page_size=page_size,
            page_token=page_token,
            statuses=[enum_value(orders_pb2.OrderStatus.DESCRIPTOR, s, field="statuses") for s in statuses],
            instrument=instrument,
            strategy_id=strategy_id,
            open_only=open_only,
        )

    def list_orders(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        statuses: Iterable[str | int] = (),
        instrument: str = "",
        strategy_id: str = "",
        open_only: bool = False,
    ) -> orders_pb2.ListOrdersResponse:
        """One page of orders, newest first. ``statuses`` takes names like ``"open"``,
        ``"filled"`` or ``OrderStatus`` values. Returns ``ListOrdersResponse``."""
        req = self._orders_request(page_size, page_token, statuses, instrument, strategy_id, open_only)
        return self._call(self._orders.ListOrders, req)

    def iter_orders(
        self,
        *,
        page_size: int = 100,
        limit: int | None = None,
        statuses: Iterable[str | int] = (),
        instrument: str = "",
        strategy_id: str = "",
        open_only: bool = False,
    ) -> Iterator[orders_pb2.Order]:
        """Yield orders across pages (following ``next_page_token``), at most ``limit``."""
        statuses = list(statuses)

        def fetch(token: str) -> orders_pb2.ListOrdersResponse:
            req = self._orders_request(page_size, token, statuses, instrument, strategy_id, open_only)
            return self._call(self._orders.ListOrders, req)

        return self._paginate(fetch, "orders", limit)

    def list_fills(
        self, *, page_size: int = 0, page_token: str = "", client_order_id: str = "", instrument: str = ""
    ) -> orders_pb2.ListFillsResponse:
        """One page of fills, newest first. Returns ``ListFillsResponse``."""
        req = orders_pb2.ListFillsRequest(
            page_size=page_size, page_token=page_token, client_order_id=client_order_id, instrument=instrument
        )
        return self._call(self._orders.ListFills, req)

    def iter_fills(
        self, *, page_size: int = 100, limit: int | None = None, client_order_id: str = "", instrument: str = ""
    ) -> Iterator[orders_pb2.Fill]:
        """Yield fills across pages, at most ``limit``."""

        def fetch(token: str) -> orders_pb2.ListFillsResponse:
            return self.list_fills(
                page_size=page_size, page_token=token, client_order_id=client_order_id, instrument=instrument
            )

        return self._paginate(fetch, "fills", limit)

    def stream_order_events(
        self, *, instrument: str = "", strategy_id: str = "", client_order_id: str = ""
    ) -> Iterator[orders_pb2.OrderEvent]:
        """Yield ``OrderEvent`` messages (seq, type, order, fill, time) as they happen.

        The stream has no deadline; closing the generator (or leaving a ``for`` loop early)
        cancels the RPC. An UNAUTHENTICATED failure before the first event triggers one
        refresh-and-retry. Raises ``LyraError`` subclasses for failures.
        """
        request = orders_pb2.StreamOrderEventsRequest(
            instrument=instrument, strategy_id=strategy_id, client_order_id=client_order_id
        )
        return self._stream(self._orders.StreamOrderEvents, request)

    def _stream(self, method: Callable[..., Any], request: Any) -> Iterator[Any]:
        retried = False
        while True:
            token = self._bearer()
            call = method(request, metadata=self._metadata(token))
            received = False
            try:
                for item in call:
                    received = True
                    yield item
                return
            except grpc.RpcError as err:
                if (
                    not received
                    and not retried
                    and err.code() == grpc.StatusCode.UNAUTHENTICATED
                    and self._refresh_after_failure(token)
                ):
                    retried = True
                    continue
                raise LyraError.from_rpc_error(err) from err
            finally:
                call.cancel()

    # ------------------------------------------------------------------ PortfolioService

    def list_balances(self, venue: str = "") -> portfolio_pb2.ListBalancesResponse:
        """Balances (asset, total, reserved, free, venue), optionally of one venue."""
        return self._call(self._portfolio.ListBalances, portfolio_pb2.ListBalancesRequest(venue=venue))

    def list_positions(self, instrument: str = "", *, include_flat: bool = False) -> portfolio_pb2.ListPositionsResponse:
        """Positions (qty signed, avg/mark price, PnL, fees, notional in quote currency)."""
        req = portfolio_pb2.ListPositionsRequest(instrument=instrument, include_flat=include_flat)
        return self._call(self._portfolio.ListPositions, req)

    def get_pnl(self) -> portfolio_pb2.Pnl:
        """Portfolio PnL and NAV in ``nav_currency`` with per-instrument breakdown."""
        return self._call(self._portfolio.GetPnl, portfolio_pb2.GetPnlRequest())

    # ------------------------------------------------------------------ StrategyService

    def list_strategy_types(self) -> strategies_pb2.ListStrategyTypesResponse:
        """Available strategy types with their parameters."""
        return self._call(self._strategies.ListStrategyTypes, strategies_pb2.ListStrategyTypesRequest())

    def create_strategy(
        self,
        strategy_type: str,
        instruments: Iterable[str],
        params: Mapping[str, Any] | None = None,
        *,
        strategy_id: str | None = None,
    ) -> strategies_pb2.Strategy:
        """Create a strategy instance (status CREATED). Param values are sent as text
        (``str(value)``; floats refused). Raises ``InvalidArgument``, ``AlreadyExists``."""
        text_params: dict[str, str] = {}
        for key, value in (params or {}).items():
            if isinstance(value, float):
                raise TypeError(f"params.{key}: pass decimals as str or Decimal, not float")
            text_params[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        req = strategies_pb2.CreateStrategyRequest(
            type=strategy_type, strategy_id=strategy_id or "", instruments=list(instruments), params=text_params
        )
        return self._call(self._strategies.CreateStrategy, req)

    def start_strategy(self, strategy_id: str) -> strategies_pb2.Strategy:
        """Start a strategy. Raises ``NotFound``, ``FailedPrecondition``."""
        return self._call(self._strategies.StartStrategy, strategies_pb2.StartStrategyRequest(strategy_id=strategy_id))

    def stop_strategy(self, strategy_id: str) -> strategies_pb2.Strategy:
        """Stop a strategy. Raises ``NotFound``, ``FailedPrecondition``."""
        return self._call(self._strategies.StopStrategy, strategies_pb2.StopStrategyRequest(strategy_id=strategy_id))

    def get_strategy(self, strategy_id: str) -> strategies_pb2.Strategy:
        """Fetch one strategy. Raises ``NotFound``."""
        return self._call(self._strategies.GetStrategy, strategies_pb2.GetStrategyRequest(strategy_id=strategy_id))

    def list_strategies(self, *, page_size: int = 0, page_token: str = "") -> strategies_pb2.ListStrategiesResponse:
        """One page of strategies."""
        req = strategies_pb2.ListStrategiesRequest(page_size=page_size, page_token=page_token)
        return self._call(self._strategies.ListStrategies, req)

    def iter_strategies(self, *, page_size: int = 100) -> Iterator[strategies_pb2.Strategy]:
        """Yield all strategies across pages."""
        return self._paginate(
            lambda token: self.list_strategies(page_size=page_size, page_token=token), "strategies", None
        )

    # ------------------------------------------------------------------ RiskService

    def get_risk_limits(self) -> risk_pb2.RiskLimits:
        """Current risk limits (decimal strings in ``currency``; max_open_orders int)."""
        return self._call(self._risk.GetRiskLimits, risk_pb2.GetRiskLimitsRequest())

    def update_risk_limits(
        self,
        limits: risk_pb2.RiskLimits | None = None,
        update_mask: Iterable[str] | None = None,
        **fields: Any,
    ) -> risk_pb2.RiskLimits:
        """Update some risk limits; returns the limits after the update.

        Either pass ``limits`` + ``update_mask`` (field names), or keywords, e.g.
        ``update_risk_limits(max_order_notional="0.5", max_open_orders=20)`` which sets
        exactly those fields. Raises ``ValueError`` for unknown fields, ``InvalidArgument``.
        """
        msg = risk_pb2.RiskLimits()
        if limits is not None:
            msg.CopyFrom(limits)
        paths = list(update_mask or [])
        for name, value in fields.items():
            if name not in RISK_LIMIT_FIELDS:
                raise ValueError(f"{name}: not a risk limit (choose from {', '.join(RISK_LIMIT_FIELDS)})")
            if name == "max_open_orders":
                try:
                    setattr(msg, name, int(value))
                except (TypeError, ValueError):
                    raise ValueError(f"max_open_orders: not an integer: {value!r}") from None
            elif name == "currency":
                setattr(msg, name, str(value))
            else:
                setattr(msg, name, to_decimal_str(value, field=name))
            if name not in paths:
                paths.append(name)
        for path in paths:
            if path not in RISK_LIMIT_FIELDS:
                raise ValueError(f"update_mask: unknown field {path!r}")
        req = risk_pb2.UpdateRiskLimitsRequest(limits=msg, update_mask=field_mask_pb2.FieldMask(paths=paths))
        return self._call(self._risk.UpdateRiskLimits, req)

    def get_risk_status(self) -> risk_pb2.RiskStatus:
        """Trading state, kill switch, circuit breaker, daily PnL."""
        return self._call(self._risk.GetRiskStatus, risk_pb2.GetRiskStatusRequest())

    def engage_kill_switch(self, reason: str) -> risk_pb2.RiskStatus:
        """Halt trading (new orders rejected, open orders canceled). ``reason`` is audited."""
        return self._call(self._risk.EngageKillSwitch, risk_pb2.EngageKillSwitchRequest(reason=reason))

    def release_kill_switch(self, reason: str) -> risk_pb2.RiskStatus:
        """Release the kill switch. ``reason`` is audited."""
        return self._call(self._risk.ReleaseKillSwitch, risk_pb2.ReleaseKillSwitchRequest(reason=reason))

    def reset_circuit_breaker(self, reason: str) -> risk_pb2.RiskStatus:
        """Reset a tripped circuit breaker. ``reason`` is audited."""
        return self._call(self._risk.ResetCircuitBreaker, risk_pb2.ResetCircuitBreakerRequest(reason=reason))

    # ------------------------------------------------------------------ MarketDataService

    def list_instruments(
        self, venue: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> marketdata_pb2.ListInstrumentsResponse:
        """One page of instruments (precision, minimums, fees in bps)."""
        req = marketdata_pb2.ListInstrumentsRequest(venue=venue, page_size=page_size, page_token=page_token)
        return self._call(self._marketdata.ListInstruments, req)

    def iter_instruments(self, venue: str = "", *, page_size: int = 500) -> Iterator[marketdata_pb2.Instrument]:
        """Yield all instruments across pages."""
        return self._paginate(
            lambda token: self.list_instruments(venue, page_size=page_size, page_token=token), "instruments", None
        )

    def get_candles(
        self,
        instrument: str,
        *,
        start_time: TimeLike | None = None,
        end_time: TimeLike | None = None,
        limit: int = 0,
        interval: str = "",
    ) -> marketdata_pb2.GetCandlesResponse:
        """Candles of ``instrument`` ordered by open_time ascending.

        ``start_time`` (inclusive) / ``end_time`` (exclusive) accept aware datetimes (naive =
        UTC), Timestamps or int nanoseconds. ``limit`` 0 = server default. Raises ``NotFound``.
        """
        req = marketdata_pb2.GetCandlesRequest(instrument=instrument, limit=limit, interval=interval)
        start = _timestamp(start_time, field="start_time")
        end = _timestamp(end_time, field="end_time")
        if start is not None:
            req.start_time.CopyFrom(start)
        if end is not None:
            req.end_time.CopyFrom(end)
        return self._call(self._marketdata.GetCandles, req)

    def fetch_candles(
        self,
        exchange: str,
        symbols: Iterable[str],
        timeframe: str,
        since: TimeLike | str,
        until: TimeLike | str | None = None,
        *,
        dataset_dir: str = "",
    ) -> Iterator[marketdata_pb2.FetchCandlesProgress]:
        """Download candles on the appliance into its dataset folder, yielding progress.

        The appliance fetches from the exchange's public API (no credentials) and writes
        ``{exchange}_{BASE-QUOTE}_{timeframe}.csv`` files in ``<data_dir>/datasets`` (or
        ``dataset_dir`` inside it); an existing file is continued after its last bar.

        Parameters:
            exchange: ccxt exchange id, e.g. ``"binance"``.
            symbols: ccxt spot symbols, e.g. ``["BTC/USDT", "ETH/BTC"]``.
            timeframe: e.g. ``"5m"``.
            since: open time of the first bar: ``"2024-01-01"``, an ISO 8601 time (naive =
                UTC), an aware datetime, a Timestamp or int nanoseconds.
            until: exclusive bound on open times (same forms); ``None`` = up to the last
                complete bar.
            dataset_dir: folder inside the appliance's dataset folder; ``""`` = that folder.

        Yields: ``FetchCandlesProgress`` per page (symbol, bars_written, expected_bars,
            last_time); the last one has ``done`` set with ``results`` (one per symbol: file,
            bars, gaps, ``error`` if that symbol stopped early) and ``files`` (the folder).
            The stream has no deadline; closing the generator cancels the download (what was
            written stays, and calling again resumes).
        Raises: ``ValueError`` (before any call) for an empty exchange, symbol list or
            timeframe or an unparsable time; ``InvalidArgument`` (unknown exchange, symbol
            or timeframe, naming the field); ``FailedPrecondition``.
        """
        symbol_list = [s.strip() for s in ([symbols] if isinstance(symbols, str) else symbols) if s.strip()]
        if not symbol_list:
            raise ValueError("symbols: at least one symbol is required")
        req = marketdata_pb2.FetchCandlesRequest(
            exchange=_required(exchange, "exchange").strip(), symbols=symbol_list,
            timeframe=_required(timeframe, "timeframe").strip(), dataset_dir=dataset_dir)
        req.since.CopyFrom(_timestamp(_parse_time(since, field="since"), field="since"))
        if until is not None:
            req.until.CopyFrom(_timestamp(_parse_time(until, field="until"), field="until"))
        return self._stream(self._marketdata.FetchCandles, req)

    def list_candle_files(self, dataset_dir: str = "") -> marketdata_pb2.FetchCandlesProgress:
        """The candle files of the appliance's dataset folder (``FetchCandles`` without
        symbols: nothing is downloaded). Returns the final ``FetchCandlesProgress``:
        ``dataset_dir`` (absolute path on the appliance) and ``files`` (name, exchange,
        symbol, timeframe, bars, first/last open time, size)."""
        req = marketdata_pb2.FetchCandlesRequest(dataset_dir=dataset_dir)
        last = None
        for last in self._stream(self._marketdata.FetchCandles, req):
            pass
        if last is None or not last.done:
            raise LyraError(grpc.StatusCode.INTERNAL, "FetchCandles ended without its final message")
        return last

    # ------------------------------------------------------------------ AdminService

    def get_version(self) -> admin_pb2.GetVersionResponse:
        """Server version and database schema version."""
        return self._call(self._admin.GetVersion, admin_pb2.GetVersionRequest())

    def get_status(self) -> admin_pb2.GetStatusResponse:
        """Server state, uptime, mode, clock time, journal seq, replay progress."""
        return self._call(self._admin.GetStatus, admin_pb2.GetStatusRequest())

    def get_replay_progress(self) -> admin_pb2.ReplayProgress:
        """Replay state and progress."""
        return self._call(self._admin.GetReplayProgress, admin_pb2.GetReplayProgressRequest())

    def start_replay(self) -> admin_pb2.ReplayProgress:
        """Start or resume the replay. Raises ``FailedPrecondition`` outside replay mode."""
        return self._call(self._admin.StartReplay, admin_pb2.StartReplayRequest())

    def pause_replay(self) -> admin_pb2.ReplayProgress:
        """Pause the replay. Raises ``FailedPrecondition`` outside replay mode."""
        return self._call(self._admin.PauseReplay, admin_pb2.PauseReplayRequest())

    # ------------------------------------------------------------------ VaultService

    def get_vault_status(self) -> vault_pb2.VaultStatus:
        """Vault state (UNINITIALIZED/SEALED/UNSEALED), data key version, KDF, credential
        counts (including stale ones) and unsealed_since."""
        return self._call(self._vault.GetVaultStatus, vault_pb2.GetVaultStatusRequest())

    def initialize_vault(self, passphrase: str) -> vault_pb2.VaultStatus:
        """Create the vault's data key wrapped by ``passphrase``; leaves the vault UNSEALED.

        Raises: ``FailedPrecondition`` unless UNINITIALIZED; ``InvalidArgument`` for a weak
            passphrase; ``ValueError`` if empty.
        """
        req = vault_pb2.InitializeVaultRequest(passphrase=_required(passphrase, "passphrase"))
        return self._call(self._vault.InitializeVault, req)

    def unseal_vault(self, passphrase: str) -> vault_pb2.VaultStatus:
        """Unseal the vault with its passphrase.

        Raises: ``Unauthenticated``/``PermissionDenied``/``InvalidArgument`` for a wrong
            passphrase (server's choice); ``ResourceExhausted`` after repeated wrong ones
            (see ``retry_after_s``); ``FailedPrecondition`` if uninitialized; ``DataLoss`` if
            the wrapped key was tampered with; ``ValueError`` if empty.
        """
        req = vault_pb2.UnsealVaultRequest(passphrase=_required(passphrase, "passphrase"))
        return self._call(self._vault.UnsealVault, req)

    def seal_vault(self) -> vault_pb2.VaultStatus:
        """Seal the vault (the server wipes the data key from memory)."""
        return self._call(self._vault.SealVault, vault_pb2.SealVaultRequest())

    def change_vault_passphrase(self, current_passphrase: str, new_passphrase: str) -> vault_pb2.VaultStatus:
        """Re-wrap the data key under ``new_passphrase``; secrets are untouched.

        Raises: like :meth:`unseal_vault` for a wrong current passphrase; ``ValueError`` if
            either is empty or they are equal.
        """
        current = _required(current_passphrase, "current_passphrase")
        new = _required(new_passphrase, "new_passphrase")
        if current == new:
            raise ValueError("new_passphrase: must differ from the current passphrase")
        req = vault_pb2.ChangeVaultPassphraseRequest(current_passphrase=current, new_passphrase=new)
        return self._call(self._vault.ChangeVaultPassphrase, req)

    def rotate_data_key(self) -> vault_pb2.VaultStatus:
        """Generate a new data key and re-encrypt every secret with it (one transaction).
        Raises ``FailedPrecondition`` while sealed."""
        return self._call(self._vault.RotateDataKey, vault_pb2.RotateDataKeyRequest())

    def create_credential(
        self, venue: str, label: str, api_key: str, secret: str, passphrase: str = "", uid: str = ""
    ) -> vault_pb2.Credential:
        """Store an exchange credential in the vault.

        Parameters:
            venue: ccxt exchange id, e.g. ``"binance"``.
            label: operator's name for it, e.g. ``"main"``.
            api_key, secret: required.
            passphrase, uid: only for exchanges that need them (OKX, KuCoin, ...; Bitmart ...).

        Returns: the ``Credential`` metadata (id, fingerprint of the API key, version; never
            a secret).
        Raises: ``FailedPrecondition`` while sealed; ``AlreadyExists`` for a taken
            venue+label; ``InvalidArgument``; ``ValueError`` for a missing part (the message
            names the field, never the value).
        """
        req = vault_pb2.CreateCredentialRequest(
            venue=_required(venue, "venue"),
            label=_required(label, "label"),
            secrets=_secrets(api_key, secret, passphrase, uid),
        )
        return self._call(self._vault.CreateCredential, req)

    def list_credentials(self, venue: str = "") -> vault_pb2.ListCredentialsResponse:
        """Credential metadata, optionally of one venue (no secrets)."""
        return self._call(self._vault.ListCredentials, vault_pb2.ListCredentialsRequest(venue=venue))

    def get_credential(self, credential_id: str) -> vault_pb2.Credential:
        """One credential's metadata. Raises ``NotFound``."""
        req = vault_pb2.GetCredentialRequest(credential_id=_required(credential_id, "credential_id"))
        return self._call(self._vault.GetCredential, req)

    def rotate_credential(
        self, credential_id: str, api_key: str, secret: str, passphrase: str = "", uid: str = ""
    ) -> vault_pb2.Credential:
        """Store a new version of a credential beside the current one (``rotation_pending``);
        finish with :meth:`confirm_credential_rotation` or :meth:`abort_credential_rotation`.

        Raises: ``NotFound``; ``FailedPrecondition`` while sealed or if a rotation is already
            pending; ``ValueError`` for a missing part.
        """
        req = vault_pb2.RotateCredentialRequest(
            credential_id=_required(credential_id, "credential_id"),
            secrets=_secrets(api_key, secret, passphrase, uid),
        )
        return self._call(self._vault.RotateCredential, req)

    def confirm_credential_rotation(self, credential_id: str) -> vault_pb2.Credential:
        """Make the pending version current and drop the previous one. Raises ``NotFound``,
        ``FailedPrecondition`` (no rotation pending)."""
        req = vault_pb2.ConfirmCredentialRotationRequest(credential_id=_required(credential_id, "credential_id"))
        return self._call(self._vault.ConfirmCredentialRotation, req)

    def abort_credential_rotation(self, credential_id: str) -> vault_pb2.Credential:
        """Drop the pending version and keep the current one. Raises ``NotFound``,
        ``FailedPrecondition`` (no rotation pending)."""
        req = vault_pb2.AbortCredentialRotationRequest(credential_id=_required(credential_id, "credential_id"))
        return self._call(self._vault.AbortCredentialRotation, req)

    def delete_credential(self, credential_id: str) -> vault_pb2.DeleteCredentialResponse:
        """Delete a credential and all its versions. Raises ``NotFound``."""
        req = vault_pb2.DeleteCredentialRequest(credential_id=_required(credential_id, "credential_id"))
        return self._call(self._vault.DeleteCredential, req)

    # ------------------------------------------------------------------ UserService

    def create_user(self, username: str, password: str, role: str) -> users_pb2.User:
        """Create a user (admin only). ``role`` is one of :data:`ROLES`.

        Raises: ``AlreadyExists``; ``InvalidArgument`` (weak password, unknown role);
            ``ValueError`` for an empty field.
        """
        req = users_pb2.CreateUserRequest(
            username=_required(username, "username"), password=_required(password, "password"),
            role=_required(role, "role"),
        )
        return self._call(self._users.CreateUser, req)

    def list_users(self) -> users_pb2.ListUsersResponse:
        """All users (no password hashes, no TOTP secrets)."""
        return self._call(self._users.ListUsers, users_pb2.ListUsersRequest())

    def get_user(self, username: str) -> users_pb2.User:
        """One user. Raises ``NotFound``."""
        return self._call(self._users.GetUser, users_pb2.GetUserRequest(username=_required(username, "username")))

    def update_user(self, username: str, *, role: str | None = None, disabled: bool | None = None) -> users_pb2.User:
        """Change a user's role and/or disabled flag; only the given ones are sent in the
        update_mask (``"role"``, ``"disabled"``). The server revokes the user's sessions.

        Raises: ``ValueError`` if neither is given; ``FailedPrecondition`` for the last
            enabled admin; ``NotFound``; ``InvalidArgument`` for an unknown role.
        """
        req = users_pb2.UpdateUserRequest(username=_required(username, "username"))
        paths: list[str] = []
        if role is not None:
            req.role = _required(role, "role")
            paths.append("role")
        if disabled is not None:
            if not isinstance(disabled, bool):
                raise TypeError(f"disabled: expected bool, got {type(disabled).__name__}")
            req.disabled = disabled
            paths.append("disabled")
        if not paths:
            raise ValueError("update_user: give role and/or disabled")
        req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=paths))
        return self._call(self._users.UpdateUser, req)

    def reset_password(self, username: str, new_password: str) -> users_pb2.User:
        """Set a new password for a user (admin); the user's sessions are revoked."""
        req = users_pb2.ResetPasswordRequest(
            username=_required(username, "username"), new_password=_required(new_password, "new_password")
        )
        return self._call(self._users.ResetPassword, req)

    def reset_totp(self, username: str) -> users_pb2.User:
        """Remove a user's TOTP enrollment (admin); the user enrolls again at next login."""
        return self._call(self._users.ResetTotp, users_pb2.ResetTotpRequest(username=_required(username, "username")))

    def list_sessions(self, username: str = "", *, include_revoked: bool = False) -> users_pb2.ListSessionsResponse:
        """Sessions of ``username`` (empty = all users), live ones unless ``include_revoked``."""
        req = users_pb2.ListSessionsRequest(username=username, include_revoked=include_revoked)
        return self._call(self._users.ListSessions, req)

    def revoke_session(self, session_id: str) -> users_pb2.Session:
        """Revoke a session at once (its access tokens stop working). Raises ``NotFound``."""
        req = users_pb2.RevokeSessionRequest(session_id=_required(session_id, "session_id"))
        return self._call(self._users.RevokeSession, req)

    def create_service_token(
        self, name: str, role: str, ttl_seconds: int | _dt.timedelta
    ) -> users_pb2.CreateServiceTokenResponse:
        """Create a service-account token for automation.

        Parameters:
            name: what it is for, e.g. ``"grafana"``.
            role: one of :data:`ROLES`.
            ttl_seconds: lifetime in seconds (int or ``timedelta``); the server accepts
                1 hour .. 1 year.

        Returns: ``CreateServiceTokenResponse``: ``token`` (``lyst_<id>_<secret>``, shown
            once; use it as ``LyraClient(service_token=...)``) and the ``service_token``
            metadata.
        Raises: ``ValueError`` for a non-positive ttl; ``InvalidArgument`` out of range.
        """
        if isinstance(ttl_seconds, _dt.timedelta):
            ttl_seconds = int(ttl_seconds.total_seconds())
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
            raise TypeError(f"ttl_seconds: expected int or timedelta, got {type(ttl_seconds).__name__}")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds: must be positive")
        req = users_pb2.CreateServiceTokenRequest(
            name=_required(name, "name"), role=_required(role, "role"), ttl_seconds=ttl_seconds
        )
        return self._call(self._users.CreateServiceToken, req)

    def list_service_tokens(self, *, include_revoked: bool = False) -> users_pb2.ListServiceTokensResponse:
        """Service tokens' metadata (never the tokens)."""
        req = users_pb2.ListServiceTokensRequest(include_revoked=include_revoked)
        return self._call(self._users.ListServiceTokens, req)

    def revoke_service_token(self, token_id: str) -> users_pb2.ServiceToken:
        """Revoke a service token at once. Raises ``NotFound``."""
        req = users_pb2.RevokeServiceTokenRequest(token_id=_required(token_id, "token_id"))
        return self._call(self._users.RevokeServiceToken, req)

    # ------------------------------------------------------------------ AuditService

    def list_audit_records(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        username: str = "",
        method: str = "",
        failures_only: bool = False,
    ) -> audit_pb2.ListAuditRecordsResponse:
        """One page of audit records, newest first, optionally of one user, one gRPC method
        (``"/lyra.v1.OrderService/SubmitOrder"``) or only denied/failed calls."""
        req = audit_pb2.ListAuditRecordsRequest(
            page_size=page_size, page_token=page_token, username=username, method=method, failures_only=failures_only
        )
        return self._call(self._audit.ListAuditRecords, req)

    def iter_audit_records(
        self,
        *,
        page_size: int = 100,
        limit: int | None = None,
        username: str = "",
        method: str = "",
        failures_only: bool = False,
    ) -> Iterator[audit_pb2.AuditRecord]:
        """Yield audit records across pages, newest first, at most ``limit``."""

        def fetch(token: str) -> audit_pb2.ListAuditRecordsResponse:
            return self.list_audit_records(
                page_size=page_size, page_token=token, username=username, method=method, failures_only=failures_only
            )

        return self._paginate(fetch, "records", limit)

    def verify_audit_chain(self) -> audit_pb2.VerifyAuditChainResponse:
        """Recompute the whole hash chain server-side: ``ok``, ``records_checked`` and, when
        broken, ``first_broken_seq`` and ``reason``."""
        return self._call(self._audit.VerifyAuditChain, audit_pb2.VerifyAuditChainRequest())

    def export_audit_records(self, *, after_seq: int = 0) -> Iterator[audit_pb2.AuditRecord]:
        """Yield every audit record with ``seq > after_seq``, oldest first (server stream
        without deadline; closing the generator cancels it)."""
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ValueError("after_seq: must be a non-negative integer")
        return self._stream(self._audit.ExportAuditRecords, audit_pb2.ExportAuditRecordsRequest(after_seq=after_seq))
