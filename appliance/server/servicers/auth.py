"""AuthService."""

from __future__ import annotations

from appliance.model.errors import ValidationError
from appliance.security.auth import AuthService, TokenPair
from appliance.security.permissions import permissions_of
from appliance.server import convert as cv
from appliance.server.interceptors import current_principal
from lyra.v1 import auth_pb2, auth_pb2_grpc

_MAX_FIELD = 1024


def _bounded(value: str, field: str) -> str:
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
        )

    async def Login(self, request, context):
        username = _bounded(request.username, "username")
        password = _bounded(request.password, "password")
        # Argon2 runs in a worker thread (login_async) so a login never stalls the engine loop;
        # the session row is written on the loop thread, between engine messages.
        pair = await self.auth.login_async(username, password)
        return self._pair(pair, auth_pb2.LoginResponse)

    async def Refresh(self, request, context):
        pair = await self.app.engine.call(self.auth.refresh, _bounded(request.refresh_token, "refresh_token"))
        return self._pair(pair, auth_pb2.RefreshResponse)

    async def Logout(self, request, context):
        principal = current_principal()
        await self.app.engine.call(self.auth.logout, _bounded(request.refresh_token, "refresh_token"), user_id=principal.user_id)
        return auth_pb2.LogoutResponse()

    async def WhoAmI(self, request, context):
        principal = current_principal()
        return auth_pb2.WhoAmIResponse(username=principal.username, role=principal.role,
                                       permissions=sorted(permissions_of(principal.role)))
