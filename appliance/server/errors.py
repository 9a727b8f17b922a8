"""Domain exception -> gRPC status: the one place that decides.

======================================  ===================  =====================================
exception                               status               details / trailing metadata
======================================  ===================  =====================================
ValidationError                         INVALID_ARGUMENT     ``"field: reason"``
NotFoundError                           NOT_FOUND            message
AlreadyExistsError                      ALREADY_EXISTS       message
RiskRejection                           FAILED_PRECONDITION  message; ``lyra-reject-rule: <rule>``
PreconditionError (incl. illegal        FAILED_PRECONDITION  message
transitions)
AuthenticationFailed                    UNAUTHENTICATED      message (never says user vs password)
InvalidToken                            UNAUTHENTICATED      ``"invalid access token: <reason>"``
PermissionDenied, UnknownMethod         PERMISSION_DENIED    message naming the permission
NotImplementedError                     UNIMPLEMENTED        ``"not implemented"``
anything else                           INTERNAL             ``"internal error (error id <id>)"``;
                                                             ``lyra-error-id: <id>``
======================================  ===================  =====================================

The exception's class is looked up along its MRO, so a subclass inherits its parent's status
unless it has its own row. Messages of mapped (deliberate) errors are shown to the caller and
must therefore never contain a secret; an unmapped exception is logged here with a random
error id and only that id is sent.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import NoReturn

import grpc

from appliance.model.errors import (
    AlreadyExistsError,
    IntegrityError,
    RateLimitedError,
    NotFoundError,
    PreconditionError,
    RiskRejection,
    ValidationError,
)
from appliance.security.auth import AuthenticationFailed
from appliance.security.permissions import PermissionDenied, UnknownMethod
from appliance.security.tokens import InvalidToken

log = logging.getLogger(__name__)

REJECT_RULE_METADATA_KEY = "lyra-reject-rule"
ERROR_ID_METADATA_KEY = "lyra-error-id"

RETRY_AFTER_METADATA_KEY = "lyra-retry-after-s"

STATUS_BY_EXCEPTION: dict[type[BaseException], grpc.StatusCode] = {
    ValidationError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    RiskRejection: grpc.StatusCode.FAILED_PRECONDITION,
    PreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    AuthenticationFailed: grpc.StatusCode.UNAUTHENTICATED,
    InvalidToken: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    UnknownMethod: grpc.StatusCode.PERMISSION_DENIED,
    NotImplementedError: grpc.StatusCode.UNIMPLEMENTED,
    RateLimitedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    IntegrityError: grpc.StatusCode.DATA_LOSS,
}
"""Add a row here for a new domain error; nowhere else decides a status code."""


@dataclass(frozen=True, slots=True)
class MappedError:
    """How an exception is reported to the client.

    Attributes:
        code: the gRPC status.
        details: the status message (safe to show).
        trailing_metadata: extra ``(key, value)`` pairs sent with the status.
        error_id: set for INTERNAL errors: the id the server log carries with the traceback.
    """

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str], ...] = ()
    error_id: str | None = None


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status mapped for ``exc``'s class or nearest mapped ancestor, or None (unmapped)."""
    for cls in type(exc).__mro__:
        code = STATUS_BY_EXCEPTION.get(cls)
        if code is not None:
            return code
    return None


def map_exception(exc: BaseException, *, method: str = "") -> MappedError:
    """Translate ``exc`` into the status the client sees.

    Args:
        exc: the exception a handler raised.
        method: the RPC, only for the server-side log of unmapped errors.

    Returns:
        :class:`MappedError`. For an unmapped exception this logs it (with traceback) under a
        fresh error id, and the details carry only that id.
    """
    code = status_for(exc)
    if code is None:
        error_id = secrets.token_hex(8)
        log.error("internal error %s in %s", error_id, method or "?", exc_info=exc)
        return MappedError(
            grpc.StatusCode.INTERNAL,
            f"internal error (error id {error_id})",
            ((ERROR_ID_METADATA_KEY, error_id),),
            error_id,
        )
    if isinstance(exc, InvalidToken):
        return MappedError(code, f"invalid access token: {exc.reason}")
    if isinstance(exc, NotImplementedError):
        return MappedError(code, "not implemented")
    if isinstance(exc, RiskRejection):
        return MappedError(code, str(exc), ((REJECT_RULE_METADATA_KEY, exc.rule),))
    if isinstance(exc, RateLimitedError):
        return MappedError(code, str(exc), ((RETRY_AFTER_METADATA_KEY, f"{max(exc.retry_after_s, 0):.3f}"),))
    return MappedError(code, str(exc))


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, *, method: str = "") -> NoReturn:
    """Abort the RPC with the status :func:`map_exception` gives for ``exc``.

    Raises:
        grpc.aio.AbortError: always (that is how grpc.aio ends a call with a status).
    """
    mapped = map_exception(exc, method=method)
    await abort_mapped(context, mapped)


async def abort_mapped(context: grpc.aio.ServicerContext, mapped: MappedError) -> NoReturn:
    """Abort the RPC with an already mapped error (see :func:`abort_with`)."""
    await context.abort(mapped.code, mapped.details, trailing_metadata=mapped.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover
