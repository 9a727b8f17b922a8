"""Decimal helpers. Prices, quantities and money are ``decimal.Decimal`` everywhere outside kernels.

Floats are refused on purpose: ``Decimal(0.1)`` carries binary noise, so a float reaching the model
is a bug at the boundary that produced it. Kernel outputs are converted with :func:`from_kernel`.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, InvalidOperation, localcontext

from appliance.model.errors import ValidationError

# Lyra computes money with 50 significant digits. Python's default of 28 silently rounds sums
# such as a 7-digit balance carried to 20 decimals (qty 1e-8 x price 1e-8 x fee bps); 50 keeps
# every sum, product and fee of realistic sizes exact. Set for this thread (and, through
# DefaultContext, for threads started later) when the model is first imported.
MONEY_PRECISION = 50
decimal.DefaultContext.prec = MONEY_PRECISION
decimal.getcontext().prec = MONEY_PRECISION

AVG_PRICE_QUANTUM = Decimal("1e-18")
"""Average prices (a quotient, not exact in decimal) are rounded half-even to 18 decimals."""

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)


def parse_decimal(value: object, field: str, *, positive: bool = False, non_negative: bool = False) -> Decimal:
    """Parse a decimal string (or int/Decimal) given by a user or a file.

    Args:
        value: ``str``, ``int`` or ``Decimal``. Floats are rejected.
        field: field name used in the error.
        positive: require ``> 0``.
        non_negative: require ``>= 0``.

    Returns:
        A finite ``Decimal``.

    Raises:
        ValidationError: not a number, not finite, a float, or out of the required sign.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ValidationError(field, f"must be a decimal string, not {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValidationError(field, "is empty")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValidationError(field, f"{value!r} is not a decimal number") from None
    else:
        raise ValidationError(field, f"must be a decimal string, not {type(value).__name__}")
    if not result.is_finite():
        raise ValidationError(field, "must be finite")
    if positive and result <= 0:
        raise ValidationError(field, f"must be > 0, got {result}")
    if non_negative and result < 0:
        raise ValidationError(field, f"must be >= 0, got {result}")
    return result


def from_kernel(value: float, places: int = 12) -> Decimal:
    """Convert a float produced by a kernel into a Decimal rounded to ``places`` decimals.

    Only for values computed in float64 kernels (indicators, signals). Never for fill prices.
    """
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def round_to_step(value: Decimal, step: Decimal, mode: str = "down") -> Decimal:
    """Round ``value`` to a multiple of ``step`` (tick size or lot step).

    Args:
        value: the amount to round.
        step: a positive increment, e.g. ``Decimal("0.00000001")``.
        mode: ``"down"`` (towards zero, the safe choice for quantities), ``"up"`` or ``"nearest"``.

    Raises:
        ValueError: ``step`` is not positive or ``mode`` unknown.
    """
    if step <= 0:
        raise ValueError("step must be positive")
    rounding = {"down": ROUND_DOWN, "up": ROUND_UP, "nearest": ROUND_HALF_EVEN}.get(mode)
    if rounding is None:
        raise ValueError(f"unknown rounding mode {mode!r}")
    with localcontext() as ctx:
        ctx.prec = 40
        units = (value / step).to_integral_value(rounding=rounding)
        return (units * step).normalize() if units else ZERO


def bps(value: Decimal) -> Decimal:
    """Basis points to a fraction: ``bps(Decimal(25)) == Decimal("0.0025")``."""
    return value / BPS


def dec_str(value: Decimal) -> str:
    """Canonical text of a Decimal for the API and the database: no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text
