"""Trading-signal kernels: crossovers, trend filter and chandelier-style trailing stops.

Every function here is a numba ``@njit(cache=True, nogil=True)`` kernel over float64 numpy arrays
and scalars. They are pure: no Python objects, no I/O, no allocation except where a result array is
returned, nothing imported from the appliance. Conversion to ``Decimal`` happens in the caller,
at the kernel boundary (``appliance.model.money.from_kernel``).

Conventions:

* Series are 1-D float64 arrays, oldest first, aligned at their **last** element (the newest
  bar); the arrays of one call have the same length unless stated otherwise.
* ``NaN`` means "not available yet" (e.g. an indicator's warm-up, as TA-Lib returns it). Every
  kernel is NaN-safe: a NaN input never produces a signal and never moves a stop.
* Crossing rule (the usual one for moving-average crossovers): ``fast`` crosses **above**
  ``slow`` at the last point when ``fast[-2] <= slow[-2]`` and ``fast[-1] > slow[-1]``; it
  crosses **below** when ``fast[-2] >= slow[-2]`` and ``fast[-1] < slow[-1]``. Touching
  (equality at the last point) is not a crossing.

Sources: moving-average crossover and ADX trend filter as in J. Welles Wilder Jr., *New Concepts
in Technical Trading Systems* (1978); chandelier exit after Chuck LeBeau (a long stop hung
``mult`` ATRs below the price and only ever raised).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "cross_signal",
    "cross_series",
    "trend_filter",
    "trailing_stop",
    "trailing_stop_series",
    "stop_breached",
    "warm_up",
]


@njit(cache=True, nogil=True)
def cross_signal(fast: np.ndarray, slow: np.ndarray) -> int:
    """Crossing of ``fast`` over ``slow`` at the last point.

    Args:
        fast: float64[n], e.g. the fast EMA (price units); only the last two values are read.
        slow: float64[m], e.g. the slow EMA, aligned with ``fast`` at the last element.

    Returns:
        ``+1`` if fast crossed above slow between the last two points, ``-1`` if it crossed
        below, ``0`` otherwise — including when either array has fewer than two points or any
        of the four values read is NaN.
    """
    if fast.shape[0] < 2 or slow.shape[0] < 2:
        return 0
    f0 = fast[fast.shape[0] - 2]
    f1 = fast[fast.shape[0] - 1]
    s0 = slow[slow.shape[0] - 2]
    s1 = slow[slow.shape[0] - 1]
    if np.isnan(f0) or np.isnan(f1) or np.isnan(s0) or np.isnan(s1):
        return 0
    if f0 <= s0 and f1 > s1:
        return 1
    if f0 >= s0 and f1 < s1:
        return -1
    return 0


@njit(cache=True, nogil=True)
def cross_series(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """:func:`cross_signal` at every point of two aligned series (for backtests and reports).

    Args:
        fast, slow: float64[n], aligned element by element.

    Returns:
        int8[n]: ``out[i]`` is the crossing between points ``i-1`` and ``i`` (+1 above, -1
        below, 0 none or NaN); ``out[0] == 0``.

    Raises:
        ValueError: ``fast`` and ``slow`` have different lengths.
    """
    n = fast.shape[0]
    if slow.shape[0] != n:
        raise ValueError("cross_series: fast and slow must have the same length")
    out = np.zeros(n, dtype=np.int8)
    for i in range(1, n):
        f0 = fast[i - 1]
        f1 = fast[i]
        s0 = slow[i - 1]
        s1 = slow[i]
        if np.isnan(f0) or np.isnan(f1) or np.isnan(s0) or np.isnan(s1):
            continue
        if f0 <= s0 and f1 > s1:
            out[i] = 1
        elif f0 >= s0 and f1 < s1:
            out[i] = -1
    return out


@njit(cache=True, nogil=True)
def trend_filter(adx: np.ndarray, adx_min: float) -> bool:
    """Wilder's trend-strength filter on the last point: ``adx[-1] >= adx_min``.

    Args:
        adx: float64[n], Average Directional Index (0..100, Wilder 1978).
        adx_min: threshold (same units).

    Returns:
        ``True`` when the last ADX is at least ``adx_min``; ``False`` if ``adx`` is empty or the
        last value (or ``adx_min``) is NaN.
    """
    if adx.shape[0] == 0:
        return False
    last = adx[adx.shape[0] - 1]
    if np.isnan(last) or np.isnan(adx_min):
        return False
    return last >= adx_min


@njit(cache=True, nogil=True)
def trailing_stop(prev_stop: float, close: float, atr: float, mult: float) -> float:
    """Chandelier-style trailing stop of a long position, one step.

    ``max(prev_stop, close - mult * atr)``: the stop hangs ``mult`` ATRs below the close and is
    only ever raised (Chuck LeBeau's chandelier exit, here on the close).

    Args:
        prev_stop: the stop in force (price units); NaN means "no stop yet".
        close: the bar's close (price units).
        atr: Average True Range of the bar (price units, >= 0).
        mult: ATR multiple (> 0).

    Returns:
        The new stop (price units). If the candidate ``close - mult*atr`` is NaN (any of
        ``close``, ``atr``, ``mult`` NaN), ``prev_stop`` is returned unchanged (possibly NaN);
        if ``prev_stop`` is NaN the candidate is returned. The result is never below a
        non-NaN ``prev_stop``.
    """
    candidate = close - mult * atr
    if np.isnan(candidate):
        return prev_stop
    if np.isnan(prev_stop):
        return candidate
    if candidate > prev_stop:
        return candidate
    return prev_stop


@njit(cache=True, nogil=True)
def trailing_stop_series(close: np.ndarray, atr: np.ndarray, mult: float, initial_stop: float) -> np.ndarray:
    """The path of :func:`trailing_stop` applied bar after bar (for backtests and reports).

    Args:
        close, atr: float64[n], aligned (price units).
        mult: ATR multiple.
        initial_stop: stop in force before the first bar (NaN for none).

    Returns:
        float64[n]: the stop after each bar; non-decreasing once it is not NaN.

    Raises:
        ValueError: ``close`` and ``atr`` have different lengths.
    """
    n = close.shape[0]
    if atr.shape[0] != n:
        raise ValueError("trailing_stop_series: close and atr must have the same length")
    out = np.empty(n, dtype=np.float64)
    stop = initial_stop
    for i in range(n):
        candidate = close[i] - mult * atr[i]
        if not np.isnan(candidate):
            if np.isnan(stop) or candidate > stop:
                stop = candidate
        out[i] = stop
    return out


@njit(cache=True, nogil=True)
def stop_breached(close: float, stop: float) -> bool:
    """Whether a long stop is hit on a closing basis: ``close <= stop``.

    Args:
        close: the bar's close (price units).
        stop: the stop in force (price units); NaN means none.

    Returns:
        ``True`` if ``close <= stop``; ``False`` if either is NaN.
    """
    if np.isnan(close) or np.isnan(stop):
        return False
    return close <= stop


def warm_up() -> None:
    """Call every kernel of this module once on tiny float64 arrays.

    Triggers compilation (or a load from numba's on-disk cache) for the argument types the
    hot path uses: C-contiguous writable float64 1-D arrays and Python floats.
    """
    a = np.array([1.0, 2.0, 3.0], dtype=np.float64)
    b = np.array([2.0, 2.0, 2.0], dtype=np.float64)
    cross_signal(a, b)
    cross_series(a, b)
    trend_filter(a, 2.0)
    trailing_stop(float("nan"), 3.0, 0.5, 2.0)
    trailing_stop_series(a, b, 2.0, float("nan"))
    stop_breached(1.0, 2.0)
