"""AuthService: login, refresh, logout, identity, TOTP enrollment, own password.

Login, Refresh, BeginTotpEnrollment and ChangePassword call the AuthService directly on the
event-loop thread instead of through ``engine.call``: they must *commit* a failure (a counted
failed attempt, a refresh-reuse revocation) before raising, and an engine message rolls back
whatever it wrote when it raises. This is still single-writer: engine messages never await, so
nothing interleaves with them on the loop thread.
"""

from __future__ import annotations

import grpc

from appliance.security.auth import (
    MFA_METADATA_KEY,
    MFA_METADATA_REQUIRED,
    AuthService,
    MfaRequired,
    TokenPair,
)
from appliance.security.permissions import permissions_of
from appliance.security.ratelimit import peer_host
from appliance.server import convert as cv
from appliance.server.interceptors import current_principal
from appliance.model.errors import ValidationError
from lyra.v1 import auth_pb2, auth_pb2_grpc

_MAX_FIELD = 1024


def _bounded(value: str, field: str) -> str:
    """Raises ValidationError: ``value`` empty or longer than 1024 characters."""
    if not value:
        raise ValidationError(field, "is required")
    if len(value) > _MAX_FIELD:
        raise ValidationError(field, f"is longer than {_MAX_FIELD} characters")
    return value


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, app, auth: AuthService) -> None:
        self.app = app
        self.auth = auth

    @staticmethod
    def _pair(pair: TokenPair, response_type):
        return response_type(
            access_token=pair.access, refresh_token=pair.refresh, access_expires_at=cv.ts(pair.access_expires_ns),
            role=pair.role, username=pair.username, refresh_expires_at=cv.ts(pair.refresh_expires_ns),
            mfa_enrollment_required=pair.mfa_pending,
        )

    async def Login(self, request, context):
        # Argon2 runs in a worker thread (login_async) so a login never stalls the engine loop.
        try:
            pair = await self.auth.login_async(
                request.username, request.password, totp_code=request.totp_code, recovery_code=request.recovery_code,
                peer=peer_host(context.peer()),
            )
        except MfaRequired as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc),
                                trailing_metadata=((MFA_METADATA_KEY, MFA_METADATA_REQUIRED),))
        return self._pair(pair, auth_pb2.LoginResponse)

    async def Refresh(self, request, context):
        pair = self.auth.refresh(_bounded(request.refresh_token, "refresh_token"))
        return self._pair(pair, auth_pb2.RefreshResponse)

    async def Logout(self, request, context):
        principal = current_principal()
        await self.app.engine.call(self.auth.logout, _bounded(request.refresh_token, "refresh_token"), user_id=principal.user_id)
        return auth_pb2.LogoutResponse()

    async def WhoAmI(self, request, context):
        principal = current_principal()
        enrolled = False
        if principal.kind == "user":
            user = self.auth.users.find_by_username(principal.username)
            enrolled = bool(user and user.totp_enrolled)
        return auth_pb2.WhoAmIResponse(username=principal.username, role=principal.role,
                                       permissions=sorted(permissions_of(principal.role)),
                                       totp_enrolled=enrolled, principal_kind=principal.kind)

    async def BeginTotpEnrollment(self, request, context):
        enrollment = await self.auth.begin_totp_enrollment_async(current_principal(), request.password,
                                                                 peer=peer_host(context.peer()))
        return auth_pb2.BeginTotpEnrollmentResponse(otpauth_uri=enrollment.otpauth_uri, secret=enrollment.secret)

    async def ConfirmTotpEnrollment(self, request, context):
        codes = await self.app.engine.call(self.auth.confirm_totp_enrollment, current_principal(), request.totp_code)
        return auth_pb2.ConfirmTotpEnrollmentResponse(recovery_codes=codes)

    async def ChangePassword(self, request, context):
        await self.auth.change_password_async(current_principal(), request.current_password, request.new_password,
                                              peer=peer_host(context.peer()))
        return auth_pb2.ChangePasswordResponse()
