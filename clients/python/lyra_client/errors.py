"""Exceptions raised by the Lyra SDK.

Every failed RPC raises a :class:`LyraError` (or a subclass chosen by gRPC status code) that
wraps the original :class:`grpc.RpcError` (available as ``__cause__``).
"""

from __future__ import annotations

from typing import Any

import grpc

#: Trailing-metadata key the server sets when the risk engine rejects an order.
REJECT_RULE_KEY = "lyra-reject-rule"
#: Trailing-metadata key set on UNAUTHENTICATED when a login needs a second factor (value "required").
MFA_KEY = "lyra-mfa"
#: Trailing-metadata key set on RESOURCE_EXHAUSTED: seconds to wait before trying again.
RETRY_AFTER_KEY = "lyra-retry-after-s"


class LyraError(Exception):
    """A failed Lyra RPC.

    Attributes:
        code: the :class:`grpc.StatusCode` of the failure.
        message: the server's status message (for INVALID_ARGUMENT it names the field).
        details: trailing metadata of the failed call as a ``dict`` (key -> ``str``, or
            ``bytes`` for ``-bin`` keys); e.g. ``details["lyra-reject-rule"]`` on a risk
            rejection. Empty when the server sent none.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, code: grpc.StatusCode, message: str, details: dict[str, Any] | None = None) -> None:
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(f"{code.name}: {message}")

    @property
    def reject_rule(self) -> str | None:
        """Name of the risk rule that rejected the order, if the server reported one."""
        value = self.details.get(REJECT_RULE_KEY)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value or None

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> "LyraError":
        """Build the matching LyraError subclass from a :class:`grpc.RpcError`."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else None) or str(code.name if code else "")
        details: dict[str, Any] = {}
        try:
            for key, value in (err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else ():
                details[key] = value
        except Exception:  # pragma: no cover - defensive: some call objects have no metadata
            details = {}
        code = code or grpc.StatusCode.UNKNOWN
        exc_type = _BY_CODE.get(code, LyraError)
        if code == grpc.StatusCode.UNAUTHENTICATED and _text(details.get(MFA_KEY)).strip().lower() == "required":
            exc_type = MfaRequired
        return exc_type(code, message, details)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


class Unauthenticated(LyraError):
    """Missing, expired or revoked credentials (gRPC UNAUTHENTICATED); log in again."""


class MfaRequired(Unauthenticated):
    """Login of a TOTP-enrolled user without a (valid) second factor: the server answered
    UNAUTHENTICATED with trailing metadata ``lyra-mfa: required``. Call
    :meth:`LyraClient.login` again with ``totp_code=`` or ``recovery_code=``.

    A subclass of :class:`Unauthenticated`, so existing handlers still catch it.
    """


class PermissionDenied(LyraError):
    """The caller's role lacks the permission for this RPC (gRPC PERMISSION_DENIED)."""


class InvalidArgument(LyraError):
    """A request field is malformed; ``message`` names the field (gRPC INVALID_ARGUMENT)."""


class FailedPrecondition(LyraError):
    """The system state forbids the call: risk rejection, kill switch, sealed vault, ...
    (gRPC FAILED_PRECONDITION). See :attr:`LyraError.reject_rule`."""


class NotFound(LyraError):
    """The named resource does not exist (gRPC NOT_FOUND)."""


class AlreadyExists(LyraError):
    """The resource id is already taken, e.g. a reused client_order_id (gRPC ALREADY_EXISTS)."""


class ResourceExhausted(LyraError):
    """Rate limited or out of quota (gRPC RESOURCE_EXHAUSTED), e.g. too many wrong vault
    passphrases or logins. See :attr:`retry_after_s`."""

    @property
    def retry_after_s(self) -> float | None:
        """Seconds to wait before retrying, from trailing metadata ``lyra-retry-after-s``;
        ``None`` if the server did not say (or sent something that is not a number >= 0)."""
        text = _text(self.details.get(RETRY_AFTER_KEY)).strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            return None
        if value != value or value < 0 or value == float("inf"):  # NaN, negative, infinite
            return None
        return value


class Unavailable(LyraError):
    """The server cannot be reached or is not serving (gRPC UNAVAILABLE)."""


class DeadlineExceeded(LyraError):
    """The call did not finish within the client's timeout (gRPC DEADLINE_EXCEEDED)."""


class DataLoss(LyraError):
    """Stored data failed an integrity check: a vault secret that does not decrypt or an audit
    record whose hash does not match, i.e. possible tampering (gRPC DATA_LOSS)."""


_BY_CODE: dict[grpc.StatusCode, type[LyraError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.DATA_LOSS: DataLoss,
}
