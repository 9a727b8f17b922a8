"""Domain errors. The gRPC edge maps each class to one status code (see server/errors.py)."""

from __future__ import annotations


class LyraError(Exception):
    """Base of every error Lyra raises on purpose."""


class ValidationError(LyraError):
    """Bad input. ``field`` names the offending field, ``reason`` says why.

    Raised before anything is changed, so a caller may simply retry with corrected input.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFoundError(LyraError):
    """A named resource (order, strategy, instrument, user ...) does not exist."""


class AlreadyExistsError(LyraError):
    """A resource with that identity exists already."""


class PreconditionError(LyraError):
    """The request is well formed but the system's state forbids it (kill switch, wrong status ...)."""


class IllegalTransitionError(PreconditionError):
    """An order (or other state machine) was asked to make a transition its table forbids."""


class RiskRejection(PreconditionError):
    """The risk engine denied an order. ``rule`` is the stable name of the rule that denied it."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"rejected by risk rule {rule}: {reason}")
        self.rule = rule
        self.reason = reason


class RateLimitedError(LyraError):
    """Too many attempts or calls; ``retry_after_s`` says when to try again (RESOURCE_EXHAUSTED)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IntegrityError(LyraError):
    """Stored data failed an integrity check (tampered ciphertext, broken hash chain): DATA_LOSS.

    The message names the record; nothing derived from the bad data is returned.
    """
