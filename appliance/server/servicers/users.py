"""UserService: users, sessions and service-account tokens (translation only; the logic is in
:class:`~appliance.security.users.UserStore`, :class:`~appliance.security.auth.AuthService` and
:class:`~appliance.security.tokens.ServiceTokenStore`).

Every state change runs on the engine (``await app.engine.call(...)``): each raises before it
writes, so the engine's rollback-on-error is all that is needed. Argon2 hashing of a new
password runs in a worker thread first. String sizes are checked before anything else
(INVALID_ARGUMENT naming the field). Passwords and tokens never appear in a message or a log.
"""

from __future__ import annotations

import asyncio

from appliance.model.errors import ValidationError
from appliance.security.auth import AuthService, SessionInfo
from appliance.security.passwords import hash_password
from appliance.security.tokens import ServiceToken
from appliance.security.users import USERNAME_PATTERN, User, validate_password, validate_role, validate_username
from appliance.server import convert as cv
from appliance.server.interceptors import current_principal
from lyra.v1 import users_pb2, users_pb2_grpc

_MAX_ID_LENGTH = 128
_UPDATE_PATHS = ("role", "disabled")


def _username(value: str, field: str = "username") -> str:
    """Raises ValidationError: missing or not ``[a-z0-9_.-]{3,64}``."""
    if not value:
        raise ValidationError(field, "is required")
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValidationError(field, "must be 3 to 64 characters of a-z, 0-9, '_', '.', '-'")
    return value


def _identifier(value: str, field: str) -> str:
    if not value:
        raise ValidationError(field, "is required")
    if len(value) > _MAX_ID_LENGTH:
        raise ValidationError(field, f"must be at most {_MAX_ID_LENGTH} characters")
    return value


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, app, auth: AuthService) -> None:
        self.app = app
        self.auth = auth
        self.users = auth.users

    # -- conversions ----------------------------------------------------------------------
    def _user_pb(self, user: User) -> users_pb2.User:
        message = users_pb2.User(user_id=user.user_id, username=user.username, role=user.role, disabled=user.disabled,
                                 totp_enrolled=user.totp_enrolled, create_time=cv.ts(user.created_ns))
        locked = self.auth.locked_until_ns(user.username)
        if locked:
            message.locked_until.CopyFrom(cv.ts(locked))
        return message

    @staticmethod
    def _session_pb(s: SessionInfo) -> users_pb2.Session:
        return users_pb2.Session(session_id=s.session_id, username=s.username, create_time=cv.ts(s.created_ns),
                                 last_used_time=cv.ts(s.last_used_ns), expire_time=cv.ts(s.expires_ns), revoked=s.revoked,
                                 peer=s.peer)

    @staticmethod
    def _token_pb(t: ServiceToken) -> users_pb2.ServiceToken:
        message = users_pb2.ServiceToken(token_id=t.token_id, name=t.name, role=t.role, create_time=cv.ts(t.created_ns),
                                         expire_time=cv.ts(t.expires_ns), revoked=t.revoked, created_by=t.created_by)
        if t.last_used_ns:
            message.last_used_time.CopyFrom(cv.ts(t.last_used_ns))
        return message

    # -- users ----------------------------------------------------------------------------
    async def CreateUser(self, request, context):
        validate_username(_username(request.username))
        validate_role(request.role)
        validate_password(request.password)
        password_hash = await asyncio.to_thread(hash_password, request.password, params=self.users.password_params)
        user = await self.app.engine.call(self.users.create_user, request.username, request.password, request.role,
                                          password_hash=password_hash)
        return self._user_pb(user)

    async def ListUsers(self, request, context):
        users = await self.app.engine.call(self.users.list)
        return users_pb2.ListUsersResponse(users=[self._user_pb(u) for u in users])

    async def GetUser(self, request, context):
        user = await self.app.engine.call(self.users.get_by_username, _username(request.username))
        return self._user_pb(user)

    async def UpdateUser(self, request, context):
        username = _username(request.username)
        paths = list(request.update_mask.paths)
        if not paths:
            raise ValidationError("update_mask", 'name the fields to change: paths "role" and/or "disabled"')
        for path in paths:
            if path not in _UPDATE_PATHS:
                raise ValidationError("update_mask", f"unknown path {path[:64]!r}; known: {', '.join(_UPDATE_PATHS)}")
        role = validate_role(request.role) if "role" in paths else None
        disabled = request.disabled if "disabled" in paths else None
        user = await self.app.engine.call(self.users.update, username, role=role, disabled=disabled)
        return self._user_pb(user)

    async def ResetPassword(self, request, context):
        username = _username(request.username)
        try:
            validate_password(request.new_password)
        except ValidationError as exc:
            raise ValidationError("new_password", exc.reason) from None
        await self.app.engine.call(self.users.get_by_username, username)  # NOT_FOUND before hashing
        password_hash = await asyncio.to_thread(hash_password, request.new_password, params=self.users.password_params)

        def reset() -> User:
            user = self.users.set_password(username, request.new_password, password_hash=password_hash, by="admin")
            self.auth.reset_login_failures(username)
            return user

        return self._user_pb(await self.app.engine.call(reset))

    async def ResetTotp(self, request, context):
        user = await self.app.engine.call(self.auth.reset_totp, _username(request.username))
        return self._user_pb(user)

    # -- sessions -------------------------------------------------------------------------
    async def ListSessions(self, request, context):
        sessions = await self.app.engine.call(self.auth.list_sessions, request.username, request.include_revoked)
        return users_pb2.ListSessionsResponse(sessions=[self._session_pb(s) for s in sessions])

    async def RevokeSession(self, request, context):
        session = await self.app.engine.call(self.auth.revoke_session_by_admin, _identifier(request.session_id, "session_id"))
        return self._session_pb(session)

    # -- service tokens -------------------------------------------------------------------
    async def CreateServiceToken(self, request, context):
        creator = current_principal().username
        issued = await self.app.engine.call(self.auth.service_tokens.create, request.name, request.role,
                                            int(request.ttl_seconds), creator)
        return users_pb2.CreateServiceTokenResponse(service_token=self._token_pb(issued.info), token=issued.token)

    async def ListServiceTokens(self, request, context):
        tokens = await self.app.engine.call(self.auth.service_tokens.list, request.include_revoked)
        return users_pb2.ListServiceTokensResponse(service_tokens=[self._token_pb(t) for t in tokens])

    async def RevokeServiceToken(self, request, context):
        token = await self.app.engine.call(self.auth.service_tokens.revoke, _identifier(request.token_id, "token_id"))
        return self._token_pb(token)


def register(server, app) -> None:
    """Add the UserService servicer to ``server``; uses ``app.auth`` (built by ``start_server``)."""
    users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(app, app.auth), server)
