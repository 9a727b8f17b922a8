"""Kernels (appliance.kernels) against independent pure-Python computations."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance import kernels
from appliance.kernels import signals

NAN = float("nan")
REPO = Path(__file__).resolve().parents[2]


# -- independent references (plain Python, no numpy) ----------------------------------------------
def ref_cross(f0: float, f1: float, s0: float, s1: float) -> int:
    if any(math.isnan(v) for v in (f0, f1, s0, s1)):
        return 0
    if f0 <= s0 and f1 > s1:
        return 1
    if f0 >= s0 and f1 < s1:
        return -1
    return 0


def ref_trailing(prev: float, close: float, atr: float, mult: float) -> float:
    cand = close - mult * atr
    if math.isnan(cand):
        return prev
    if math.isnan(prev):
        return cand
    return cand if cand > prev else prev


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# -- cross_signal ---------------------------------------------------------------------------------
def test_cross_signal_hand_made_series() -> None:
    # fast: 1 2 3 4 3 2 1 ; slow flat at 2.5 -> crosses above between idx 1->2, below between 4->5
    fast = arr(1, 2, 3, 4, 3, 2, 1)
    slow = arr(2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5)
    got = [kernels.cross_signal(fast[: i + 1], slow[: i + 1]) for i in range(len(fast))]
    assert got == [0, 0, 1, 0, 0, -1, 0]
    assert list(kernels.cross_series(fast, slow)) == got


def test_cross_signal_touch_rules() -> None:
    # from equal to above is a cross up; from equal to below a cross down; ending equal is none
    assert kernels.cross_signal(arr(2, 3), arr(2, 2)) == 1
    assert kernels.cross_signal(arr(2, 1), arr(2, 2)) == -1
    assert kernels.cross_signal(arr(1, 2), arr(2, 2)) == 0
    assert kernels.cross_signal(arr(3, 2), arr(2, 2)) == 0
    assert kernels.cross_signal(arr(2, 2), arr(2, 2)) == 0
    # crossing with both moving
    assert kernels.cross_signal(arr(10.0, 10.6), arr(10.2, 10.5)) == 1
    assert kernels.cross_signal(arr(10.3, 10.4), arr(10.2, 10.5)) == -1


def test_cross_signal_nan_and_short_inputs() -> None:
    for f, s in [
        (arr(NAN, 3), arr(2, 2)),
        (arr(1, NAN), arr(2, 2)),
        (arr(1, 3), arr(NAN, 2)),
        (arr(1, 3), arr(2, NAN)),
        (arr(NAN, NAN), arr(NAN, NAN)),
    ]:
        assert kernels.cross_signal(f, s) == 0
    assert kernels.cross_signal(arr(1), arr(2)) == 0
    assert kernels.cross_signal(arr(), arr()) == 0
    # a NaN older than the last two points does not matter
    assert kernels.cross_signal(arr(NAN, 1, 3), arr(NAN, 2, 2)) == 1


def test_cross_signal_only_reads_aligned_tail() -> None:
    # arrays of different lengths are aligned at their last element
    assert kernels.cross_signal(arr(9, 9, 9, 1, 3), arr(2, 2)) == 1


def test_cross_signal_and_series_match_reference_on_random_walks() -> None:
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(2, 60)
        f = [100.0]
        s = [100.0]
        for _ in range(n - 1):
            f.append(f[-1] + rng.choice([-1.0, 0.0, 1.0]))
            s.append(s[-1] + rng.choice([-0.5, 0.0, 0.5]))
        for seq in (f, s):
            for _ in range(rng.randint(0, 3)):
                seq[rng.randrange(n)] = NAN
        fa, sa = np.array(f), np.array(s)
        series = kernels.cross_series(fa, sa)
        assert series.dtype == np.int8 and series[0] == 0
        for i in range(1, n):
            expected = ref_cross(f[i - 1], f[i], s[i - 1], s[i])
            assert kernels.cross_signal(fa[: i + 1], sa[: i + 1]) == expected
            assert series[i] == expected


def test_cross_series_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        kernels.cross_series(arr(1, 2, 3), arr(1, 2))


# -- trend_filter / stop_breached -----------------------------------------------------------------
def test_trend_filter() -> None:
    assert kernels.trend_filter(arr(10, 25.0), 25.0) is True
    assert kernels.trend_filter(arr(30, 24.999), 25.0) is False
    assert kernels.trend_filter(arr(30, NAN), 25.0) is False
    assert kernels.trend_filter(arr(30, 40), NAN) is False
    assert kernels.trend_filter(arr(), 25.0) is False


def test_stop_breached() -> None:
    assert kernels.stop_breached(9.0, 9.0) is True
    assert kernels.stop_breached(8.9, 9.0) is True
    assert kernels.stop_breached(9.1, 9.0) is False
    assert kernels.stop_breached(9.0, NAN) is False
    assert kernels.stop_breached(NAN, 9.0) is False


# -- trailing_stop ---------------------------------------------------------------------------------
def test_trailing_stop_rules() -> None:
    assert kernels.trailing_stop(NAN, 100.0, 2.0, 2.5) == 95.0  # no stop yet: candidate
    assert kernels.trailing_stop(90.0, 100.0, 2.0, 2.5) == 95.0  # raised
    assert kernels.trailing_stop(97.0, 100.0, 2.0, 2.5) == 97.0  # never lowered
    assert kernels.trailing_stop(97.0, 100.0, NAN, 2.5) == 97.0  # NaN ATR: unchanged
    assert kernels.trailing_stop(97.0, NAN, 2.0, 2.5) == 97.0
    assert kernels.trailing_stop(97.0, 100.0, 2.0, NAN) == 97.0
    assert math.isnan(kernels.trailing_stop(NAN, 100.0, NAN, 2.5))  # still none


def test_trailing_stop_never_decreases_and_matches_reference() -> None:
    rng = random.Random(11)
    for _ in range(20):
        n = 300
        close, atr = [], []
        price = 50.0
        for _ in range(n):
            price *= math.exp(rng.gauss(0.0, 0.02))
            close.append(price)
            atr.append(NAN if rng.random() < 0.05 else abs(rng.gauss(0.0, 0.03)) * price)
        mult = rng.uniform(0.5, 4.0)
        stop_k = NAN
        stop_r = NAN
        path = []
        for c, a in zip(close, atr):
            new = kernels.trailing_stop(stop_k, c, a, mult)
            if not math.isnan(stop_k):
                assert new >= stop_k
            stop_k = new
            stop_r = ref_trailing(stop_r, c, a, mult)
            assert stop_k == stop_r or (math.isnan(stop_k) and math.isnan(stop_r))
            path.append(stop_k)
        series = kernels.trailing_stop_series(np.array(close), np.array(atr), mult, NAN)
        np.testing.assert_array_equal(series, np.array(path))
        valid = series[~np.isnan(series)]
        assert np.all(np.diff(valid) >= 0)


def test_trailing_stop_series_initial_stop_and_lengths() -> None:
    out = kernels.trailing_stop_series(arr(10, 11, 9), arr(1, 1, 1), 2.0, 8.5)
    assert list(out) == [8.5, 9.0, 9.0]
    with pytest.raises(ValueError):
        kernels.trailing_stop_series(arr(1, 2), arr(1), 2.0, NAN)


# -- warm_up ----------------------------------------------------------------------------------------
def test_warm_up_compiles_every_kernel_and_uses_numba_cache_dir(tmp_path: Path) -> None:
    """In a fresh interpreter: warm_up() leaves every numba dispatcher of every kernel module
    compiled, and numba writes its cache where NUMBA_CACHE_DIR says (a second boot loads it)."""
    script = (
        "import importlib, pkgutil, appliance.kernels as k\n"
        "from numba.core.registry import CPUDispatcher\n"
        "warmed = k.warm_up()\n"
        "assert 'appliance.kernels.signals' in warmed, warmed\n"
        "missing = []\n"
        "for info in pkgutil.iter_modules(k.__path__):\n"
        "    m = importlib.import_module('appliance.kernels.' + info.name)\n"
        "    for name, obj in vars(m).items():\n"
        "        if isinstance(obj, CPUDispatcher) and obj.__module__ == m.__name__ and not obj.signatures:\n"
        "            missing.append(m.__name__ + '.' + name)\n"
        "assert not missing, missing\n"
        "print('ok', len(warmed))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    for _ in range(2):  # second run loads from the cache
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ok")
    assert list(tmp_path.rglob("*.nbi")), "numba wrote no cache index under NUMBA_CACHE_DIR"


def test_warm_up_in_process_returns_module_names() -> None:
    assert "appliance.kernels.signals" in kernels.warm_up()
    for name in signals.__all__:
        assert callable(getattr(signals, name))
