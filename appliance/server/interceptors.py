"""The grpc.aio server interceptor: authentication, RBAC, error mapping and metrics.

For every RPC the server routes, :class:`AuthInterceptor` wraps the method handler (all four
kinds: unary-unary, unary-stream, stream-unary, stream-stream) so that *inside the call*:

1. the permission the method needs is looked up in
   :data:`~appliance.security.permissions.METHOD_PERMISSIONS` (a method in no table is denied
   to everyone: fail closed);
2. unless the method is public, metadata ``authorization: Bearer <jwt>`` is required and
   verified with ``authenticator.authenticate`` (``AuthService.authenticate``): JWT, session not
   revoked, user not disabled. Failure: ``UNAUTHENTICATED`` with a message saying what was
   wrong (missing, malformed, expired, revoked ...) but never the token;
   Bearer tokens starting with ``lyst_`` are service-account tokens (Principal kind
   ``"service"``);
3. the per-credential API rate limit (token bucket per session / service token,
   ``auth.rate_limit_rps`` / ``auth.rate_limit_burst``): ``RESOURCE_EXHAUSTED`` with trailing
   metadata ``lyra-retry-after-s``;
4. a session marked ``mfa_pending`` may only call
   :data:`~appliance.security.permissions.MFA_PENDING_ALLOWED_METHODS`, and a service token may
   not call :data:`~appliance.security.permissions.SERVICE_TOKEN_FORBIDDEN_METHODS`
   (``PERMISSION_DENIED``); then the caller's role must grant the permission, else
   ``PERMISSION_DENIED`` naming it;
5. the :class:`~appliance.security.auth.Principal` is exposed to the servicer through
   :func:`current_principal` (a ContextVar; grpc.aio runs each RPC in its own asyncio task,
   so it is per call);
6. a domain exception raised by the servicer becomes a status via
   :mod:`appliance.server.errors` (unknown exceptions: ``INTERNAL`` with an error id only);
7. ``observe(method, code_name, seconds)`` is called once per call (metrics), and
   ``on_call(CallRecord)`` if given (audit), with the request message (unary-request calls)
   and the peer.

Public methods (Login, Refresh, health, reflection) skip 2-5 but still get 6-7.

A servicer may still end a call itself with ``await context.abort(...)`` or
``context.set_code(...)``; the interceptor passes that through and records the code.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

import grpc

from appliance.model.errors import ValidationError
import grpc.aio

from appliance.security.auth import SERVICE_KIND, AuthenticationFailed, Principal
from appliance.security.permissions import (
    METHOD_PERMISSIONS,
    MFA_PENDING_ALLOWED_METHODS,
    PUBLIC,
    SERVICE_TOKEN_FORBIDDEN_METHODS,
    MfaEnrollmentRequired,
    PermissionDenied,
    ServiceTokenForbidden,
    UnknownMethod,
    has_permission,
    required_permission,
)
from appliance.security.ratelimit import TokenBucketLimiter
from appliance.server.errors import abort_mapped, map_exception

log = logging.getLogger(__name__)

AUTHORIZATION_METADATA_KEY = "authorization"
MISSING_TOKEN_MESSAGE = "missing access token: send metadata 'authorization: Bearer <access_token>'"
MALFORMED_TOKEN_MESSAGE = "malformed authorization metadata: expected 'Bearer <access_token>'"

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("lyra_principal", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being handled.

    Raises:
        AuthenticationFailed: no principal (a public method, or called outside an RPC);
            reaching the client it is UNAUTHENTICATED.
    """
    principal = _principal.get()
    if principal is None:
        raise AuthenticationFailed("this call is not authenticated")
    return principal


def current_principal_or_none() -> Principal | None:
    """The caller of the RPC being handled, or None (public method / outside an RPC)."""
    return _principal.get()


class Authenticator(Protocol):
    """What the interceptor needs from :class:`~appliance.security.auth.AuthService`."""

    def authenticate(self, access_token: str) -> Principal:
        """Raises InvalidToken (or AuthenticationFailed) when the token is not accepted."""
        ...


ObserveHook = Callable[[str, str, float], None]
"""``observe(method, code_name, seconds)``: method ``"/pkg.Service/Method"``, code name
``"OK"``/``"UNAUTHENTICATED"``..., wall duration of the call in seconds."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, for ``on_call`` (audit). Never the token.

    ``request`` is the raw request message and MAY CONTAIN SECRETS (passwords, TOTP codes,
    refresh tokens, credential values): the hook must redact it before storing or logging
    anything derived from it. It is not in repr.

    Attributes:
        method: full method name.
        code_name: final status code name.
        seconds: duration.
        permission: the permission required (``"public"`` or ``""`` for an unknown method).
        principal: the authenticated caller, None when public or authentication failed.
        error_id: set when an unexpected exception became INTERNAL.
        request: the request message of a unary-request call (None for request streams, or
            when the request could not be deserialized).
        peer: ``context.peer()`` text, e.g. ``"ipv4:127.0.0.1:53122"`` ("" if unknown).
    """

    method: str
    code_name: str
    seconds: float
    permission: str
    principal: Principal | None
    error_id: str | None = None
    request: Any = field(default=None, repr=False)
    peer: str = ""

    @property
    def principal_kind(self) -> str:
        """``"user"``, ``"service"``, or ``""`` when there is no principal."""
        return self.principal.kind if self.principal is not None else ""

    @property
    def credential_id(self) -> str:
        """The session id (user) or service-token id (service), ``""`` when there is no principal."""
        return self.principal.credential_id if self.principal is not None else ""


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """Extract the token from ``authorization: Bearer <token>`` metadata.

    Raises:
        AuthenticationFailed: missing or malformed (message never includes the value).
    """
    values = [value for key, value in (metadata or ()) if key.lower() == AUTHORIZATION_METADATA_KEY]
    if not values:
        raise AuthenticationFailed(MISSING_TOKEN_MESSAGE)
    if len(values) > 1:
        raise AuthenticationFailed("more than one authorization metadata entry")
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(MALFORMED_TOKEN_MESSAGE) from None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthenticationFailed(MALFORMED_TOKEN_MESSAGE)
    return token


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so that the call is still
    authenticated, audited and answered INVALID_ARGUMENT (gRPC would answer UNKNOWN, before any
    authentication, with the parser's internals in the message)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any parse failure is bad input, reported after auth
            return _Undecodable(len(data))

    return parse


def _not_a_message(request: Any) -> bool:
    return isinstance(request, _Undecodable) or inspect.isasyncgen(request) or hasattr(request, "__aiter__")


def _refuse_undecodable(request: Any, state: "_CallState") -> None:
    if isinstance(request, _Undecodable):
        state.request = None
        raise ValidationError("request", f"is not a valid protobuf message for this RPC ({request.size} bytes)")


class _CallState:
    __slots__ = ("code", "principal", "permission", "error_id", "request", "peer", "started", "finished")

    def __init__(self) -> None:
        self.started = 0.0
        self.finished = False  # the hooks ran (before an abort's status left, so the audit row exists first)
        self.code: grpc.StatusCode = grpc.StatusCode.OK
        self.principal: Principal | None = None
        self.permission: str = ""
        self.error_id: str | None = None
        self.request: Any = None
        self.peer: str = ""


def _peer_of(context: Any) -> str:
    try:
        return str(context.peer() or "")
    except Exception:  # noqa: BLE001 - a peer is informational
        return ""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authentication + RBAC + error mapping + metrics for a grpc.aio server.

    Args:
        authenticator: normally the :class:`~appliance.security.auth.AuthService`.
        method_permissions: method -> permission table (tests may pass their own).
        observe: optional metrics hook ``observe(method, code_name, seconds)``.
        on_call: optional hook given a :class:`CallRecord` per finished call (audit).
        timer: monotonic seconds for durations (``time.perf_counter``); durations are not
            domain time, so they do not come from the engine Clock.
        rate_limit: per-credential API rate limit: a :class:`~appliance.security.ratelimit.TokenBucketLimiter`,
            or ``(calls_per_second, burst)``; None = unlimited.

    Hooks must be quick and must not raise; an exception from a hook is logged and ignored.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        method_permissions: Mapping[str, str] = METHOD_PERMISSIONS,
        observe: ObserveHook | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        timer: Callable[[], float] = time.perf_counter,
        rate_limit: TokenBucketLimiter | tuple[float, int] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.method_permissions = method_permissions
        self.observe = observe
        self.on_call = on_call
        self.timer = timer
        if isinstance(rate_limit, tuple):
            rate_limit = TokenBucketLimiter(rate_limit[0], rate_limit[1])
        self.rate_limiter: TokenBucketLimiter | None = rate_limit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED
            return None
        return self._wrap_handler(handler, handler_call_details.method, handler_call_details.invocation_metadata)

    # -- the checks ---------------------------------------------------------------------------
    def _authorize(self, method: str, metadata: Sequence[tuple[str, Any]] | None, state: _CallState) -> Principal | None:
        """Steps 1-4. Returns the principal (None for a public method).

        Raises:
            AuthenticationFailed, InvalidToken: UNAUTHENTICATED.
            RateLimitedError: RESOURCE_EXHAUSTED (lyra-retry-after-s).
            UnknownMethod, PermissionDenied (MfaEnrollmentRequired, ServiceTokenForbidden):
                PERMISSION_DENIED.
        """
        try:
            permission = required_permission(method, self.method_permissions)
        except UnknownMethod:
            permission = None
        state.permission = permission or ""
        if permission == PUBLIC:
            return None
        principal = self.authenticator.authenticate(bearer_token(metadata))
        state.principal = principal
        if self.rate_limiter is not None:
            self.rate_limiter.acquire(principal.credential_id)
        if permission is None:
            raise UnknownMethod(method)
        if getattr(principal, "mfa_pending", False) and method not in MFA_PENDING_ALLOWED_METHODS:
            raise MfaEnrollmentRequired()
        if getattr(principal, "kind", "user") == SERVICE_KIND and method in SERVICE_TOKEN_FORBIDDEN_METHODS:
            raise ServiceTokenForbidden(method.rpartition("/")[2])
        if not has_permission(principal.role, permission):
            raise PermissionDenied(permission, principal.role)
        return principal

    # -- wrapping -------------------------------------------------------------------------
    def _wrap_handler(self, handler: grpc.RpcMethodHandler, method: str, metadata: Any) -> grpc.RpcMethodHandler:
        kwargs = {"request_deserializer": _tolerant(handler.request_deserializer),
                  "response_serializer": handler.response_serializer}
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(self._wrap_streaming(handler.stream_stream, method, metadata), **kwargs)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._wrap_unary(handler.stream_unary, method, metadata), **kwargs)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._wrap_streaming(handler.unary_stream, method, metadata), **kwargs)
        return grpc.unary_unary_rpc_method_handler(self._wrap_unary(handler.unary_unary, method, metadata), **kwargs)

    def _wrap_unary(self, behavior: Callable[..., Any], method: str, metadata: Any) -> Callable[..., Awaitable[Any]]:
        """For handlers that return one response (or use ``context.write`` and return None)."""

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            state = _CallState()
            state.request = None if _not_a_message(request) else request
            state.peer = _peer_of(context)
            start = self.timer()
            state.started = start
            reset = None
            try:
                reset = _principal.set(self._authorize(method, metadata, state))
                _refuse_undecodable(request, state)
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                state.code = context.code() or grpc.StatusCode.OK
                return result
            except grpc.aio.AbortError:
                state.code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                state.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                await self._abort(context, exc, method, state)
            finally:
                _reset(reset)
                if not state.finished:
                    self._finish(method, state, self.timer() - start)

        return call

    def _wrap_streaming(self, behavior: Callable[..., Any], method: str, metadata: Any) -> Callable[..., Any]:
        """For response-streaming handlers: async generators, or coroutines using ``context.write``."""
        if not inspect.isasyncgenfunction(behavior):
            return self._wrap_unary(behavior, method, metadata)

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            state = _CallState()
            state.request = None if _not_a_message(request) else request
            state.peer = _peer_of(context)
            start = self.timer()
            state.started = start
            reset = None
            try:
                reset = _principal.set(self._authorize(method, metadata, state))
                _refuse_undecodable(request, state)
                async for response in behavior(request, context):
                    yield response
                state.code = context.code() or grpc.StatusCode.OK
            except grpc.aio.AbortError:
                state.code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except (asyncio.CancelledError, GeneratorExit):
                state.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                await self._abort(context, exc, method, state)
            finally:
                _reset(reset)
                if not state.finished:
                    self._finish(method, state, self.timer() - start)

        return stream

    async def _abort(self, context: grpc.aio.ServicerContext, exc: Exception, method: str, state: _CallState) -> None:
        mapped = map_exception(exc, method=method)
        state.code = mapped.code
        state.error_id = mapped.error_id
        # record (audit, metrics) before the status reaches the client: a caller that sees the
        # error can rely on the audit row being there
        self._finish(method, state, self.timer() - state.started)
        state.finished = True
        await abort_mapped(context, mapped)

    def _finish(self, method: str, state: _CallState, seconds: float) -> None:
        code_name = state.code.name
        if self.observe is not None:
            try:
                self.observe(method, code_name, seconds)
            except Exception:  # noqa: BLE001 - metrics never break a call
                log.exception("observe hook failed for %s", method)
        if self.on_call is not None:
            try:
                self.on_call(CallRecord(method, code_name, seconds, state.permission, state.principal, state.error_id,
                                        state.request, state.peer))
            except Exception:  # noqa: BLE001
                log.exception("on_call hook failed for %s", method)


def _reset(token: contextvars.Token | None) -> None:
    if token is None:
        return
    try:
        _principal.reset(token)
    except ValueError:  # finalised in another context (e.g. a generator closed by GC): nothing leaks
        pass
