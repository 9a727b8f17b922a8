"""Numba kernels: the hot loops of strategies, execution algorithms and arbitrage scanners.

Rules for every module of this package:

* functions are ``@njit(cache=True, nogil=True)`` over float64 numpy arrays and scalars — pure,
  no Python objects, no I/O, importing nothing from the rest of the appliance;
* ``Decimal`` conversion is the caller's job, at the boundary (``appliance.model.money.from_kernel``);
* each module defines a module-level ``warm_up() -> None`` that calls each of its kernels once
  on tiny arrays with the argument types the hot path uses. :func:`warm_up` below finds and runs
  them all, so compilation (or numba's on-disk cache load, directed by ``NUMBA_CACHE_DIR``, which
  the application sets) happens at boot instead of on the first tick.
"""

from __future__ import annotations

import importlib
import pkgutil

from appliance.kernels.signals import (
    cross_series,
    cross_signal,
    stop_breached,
    trailing_stop,
    trailing_stop_series,
    trend_filter,
)

__all__ = [
    "cross_series",
    "cross_signal",
    "stop_breached",
    "trailing_stop",
    "trailing_stop_series",
    "trend_filter",
    "warm_up",
]


def warm_up() -> tuple[str, ...]:
    """Compile (or load from cache) every kernel of every module of ``appliance.kernels``.

    Imports each submodule (modules whose name starts with ``_`` are skipped) and calls its
    ``warm_up()`` if it defines one. Sets no global state.

    Returns:
        The fully qualified names of the modules that were warmed, sorted.

    Raises:
        Whatever a kernel's compilation raises (a typing error is a bug to surface at boot).
    """
    warmed: list[str] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        hook = getattr(module, "warm_up", None)
        if callable(hook):
            hook()
            warmed.append(module.__name__)
    return tuple(warmed)
