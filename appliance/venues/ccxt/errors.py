"""ccxt exceptions -> what Lyra does about them; and scrubbing of secrets from error text.

ccxt's hierarchy (ccxt/base/errors.py; ccxt manual, "Exception Hierarchy"):
``ExchangeError`` (the exchange answered and said no) vs ``OperationFailed`` / ``NetworkError``
(the outcome is unknown: the request may or may not have been processed).

========================================  ===================  =========================================
ccxt class                                kind                 meaning for an order send
========================================  ===================  =========================================
DuplicateOrderId, or any "duplicate" msg  DUPLICATE            the client id is already there: look up
OrderNotFound                             NOT_FOUND            (cancel / look-up) the exchange has none
InsufficientFunds, InvalidOrder (rest),   REJECTED             definitive refusal: OrderRejected(reason)
BadRequest, BadSymbol, OperationRejected,
ArgumentsRequired, NotSupported,
MarketClosed, AccountNotEnabled...
PermissionDenied, AuthenticationError     AUTH                 refused; venue DOWN until fixed
RateLimitExceeded (429)                   RATE_LIMITED         not processed: back off, retry
DDoSProtection (418 / anti-DDoS)          BANNED               not processed: back off for Retry-After
InvalidNonce                              NONCE                not processed: retry
RequestTimeout, ExchangeNotAvailable,     UNKNOWN              unknown outcome: look up before re-send
NetworkError, OperationFailed,
BadResponse, ExchangeError (generic)
CancelPending                             CANCEL_PENDING       cancel accepted, not final yet
========================================  ===================  =========================================
"""

from __future__ import annotations

import asyncio
import logging
import re
from enum import Enum
from typing import Iterable

from ccxt.base import errors as E


class ErrorKind(str, Enum):
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    NONCE = "nonce"
    UNKNOWN = "unknown"
    CANCEL_PENDING = "cancel_pending"


_REJECTED = (
    E.InsufficientFunds, E.InvalidOrder, E.BadRequest, E.OperationRejected, E.ArgumentsRequired,
    E.NotSupported, E.InvalidAddress, E.ExchangeClosedByUser,
)


# "Duplicate order sent." (Binance -2010), "Duplicate clientOrderId" (Bybit), "cl_ord_id already in use" ...
_DUPLICATE_WORDS = ("duplicate", "already in use", "already exists", "already used")


# Refusals some exchanges send with a body ccxt maps to a plain ExchangeError (checked in each
# exchange's emulator tests): Bitfinex 429 {"error":"ERR_RATE_LIMIT"}, Bitstamp 429 (400.002
# "Rate limit exceeded"), Coinbase order previews refused with {"success":false,
# "error_response":...} (nothing created) and its unknown-order 404.
_RATE_LIMIT_WORDS = ("err_rate_limit", "rate limit exceeded", "ratelimit", "too many requests")
_REFUSED_WORDS = ('"success":false', '"error_response"')
_NOT_FOUND_WORDS = ("order with this orderid was not found",)


def _is_ban(text: str) -> bool:
    return " 418 " in f" {text} " or "banned" in text


def classify(exc: BaseException) -> ErrorKind:
    """The :class:`ErrorKind` of an exception raised by a ccxt call (non-ccxt exceptions such as
    ``asyncio.TimeoutError`` or ``OSError`` are UNKNOWN: nothing is known of the outcome)."""
    text = str(exc).lower()
    if isinstance(exc, E.DuplicateOrderId) or (
            isinstance(exc, E.ExchangeError) and any(word in text for word in _DUPLICATE_WORDS)):
        return ErrorKind.DUPLICATE
    if isinstance(exc, E.OrderNotFound) or (
            isinstance(exc, E.ExchangeError) and any(word in text for word in _NOT_FOUND_WORDS)):
        return ErrorKind.NOT_FOUND
    if isinstance(exc, E.PermissionDenied) and "invalid order" in text:
        # Bitfinex code 10001 covers both "permission denied" and order checks such as
        # "Invalid order: minimum size": ccxt maps the code to PermissionDenied
        return ErrorKind.REJECTED
    if isinstance(exc, (E.AuthenticationError,)):
        return ErrorKind.AUTH
    if isinstance(exc, E.RateLimitExceeded):
        # Binance answers a ban with HTTP 418 and code -1003, which ccxt maps by code to
        # RateLimitExceeded: the message ("IP banned until ...") tells them apart
        return ErrorKind.BANNED if _is_ban(text) else ErrorKind.RATE_LIMITED
    if isinstance(exc, E.DDoSProtection):
        return ErrorKind.BANNED if _is_ban(text) else ErrorKind.RATE_LIMITED
    if isinstance(exc, E.InvalidNonce):
        return ErrorKind.NONCE
    if isinstance(exc, E.CancelPending):
        return ErrorKind.CANCEL_PENDING
    if isinstance(exc, _REJECTED):
        return ErrorKind.REJECTED
    if type(exc) is E.ExchangeError:  # only the generic class: its subclasses say more
        if any(word in text for word in _RATE_LIMIT_WORDS):
            return ErrorKind.RATE_LIMITED
        if any(word in text.replace(" ", "") for word in _REFUSED_WORDS):
            return ErrorKind.REJECTED
    return ErrorKind.UNKNOWN


def is_ccxt_or_io_error(exc: BaseException) -> bool:
    """Errors a venue call may raise that the adapter handles (everything else is a bug)."""
    return isinstance(exc, (E.BaseError, asyncio.TimeoutError, OSError))


def retry_after_s(headers: object, default: float) -> float:
    """``Retry-After`` (seconds) from response headers (any mapping, any key case), else ``default``."""
    if headers is not None and hasattr(headers, "items"):
        for key, value in headers.items():
            if str(key).lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except (TypeError, ValueError):
                    return default
    return default


_QUERY_SECRET = re.compile(
    r"(?i)\b(signature|sign|api[_-]?key|apikey|secret|password|passphrase|token|listenkey|otp)=([^&\s\"']+)")
_HEADER_SECRET = re.compile(r"(?i)\b(api-key|apikey|api-sign|x-mbx-apikey|authorization)(\"?\s*[:=]\s*\"?)([^\"',\s}]+)")


class Redactor:
    """Removes credentials from text before it reaches a log, a report, an error or the status API.

    Args:
        secrets: the credential's values (api key, secret, passphrase, uid); each is replaced by
            ``<redacted>`` wherever it appears, as are ``signature=...``/``apiKey=...`` query
            parameters and API-key headers. Text is also cut to ``max_len`` characters.
    """

    def __init__(self, secrets: Iterable[str] = (), max_len: int = 400) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._max_len = max_len

    def __call__(self, text: object) -> str:
        out = str(text)
        for secret in self._secrets:
            out = out.replace(secret, "<redacted>")
        out = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}=<redacted>", out)
        out = _HEADER_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", out)
        if len(out) > self._max_len:
            out = out[: self._max_len] + "..."
        return out

    def error(self, exc: BaseException) -> str:
        """``"ClassName: message"`` with secrets removed."""
        return self(f"{type(exc).__name__}: {exc}")


_PATTERN_REDACTOR = Redactor()


def orphaned_exchange_error_handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """An asyncio exception handler (``loop.set_exception_handler``) for the futures ccxt and
    ccxt.pro leave with an error nobody awaits (a websocket that could not connect, a request
    whose caller was cancelled): one redacted WARNING line instead of asyncio's ERROR with a
    traceback, whose message could carry a signed URL. Everything else goes to the loop's
    default handler."""
    exc = context.get("exception")
    if isinstance(exc, E.BaseError) and "never retrieved" in str(context.get("message", "")):
        logging.getLogger("lyra.venues.ccxt").warning("unawaited exchange error: %s", _PATTERN_REDACTOR.error(exc))
        return
    loop.default_exception_handler(context)
