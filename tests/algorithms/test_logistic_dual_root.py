"""The logistic SDCA dual step (`_kernels._logistic_dual_root`, shared by asip-admm's local
solver, the synchronous admm and asip-cocoa): warm-started from the last root it takes a few
Newton steps, not dozens. A converged step that rounded onto the bracket's edge used to be
bisected away: 8.9 logs a row on a9a log_loss-l2 (asip-admm, 2 partitions), 2.5 after."""

from __future__ import annotations

import math
from unittest import mock

import pytest

from asip.algorithms import _kernels as K


class _CountingMath:
    """``math`` with its ``log`` calls counted (one per Newton step of the root)."""

    def __init__(self):
        self.logs = 0

    def __getattr__(self, name):
        return getattr(math, name)

    def log(self, x):
        self.logs += 1
        return math.log(x)


def _root(beta, ym, q):
    """The pure-Python root with its Newton steps counted (the jitted one runs the same code)."""
    counter = _CountingMath()
    with mock.patch.object(K, "math", counter):
        b = K._logistic_dual_root.py_func(beta, ym, q)
    return b, counter.logs


def _bisect(beta, ym, q):
    """Reference root of the strictly decreasing ``F(b) = log((1-b)/b) - ym - q (b - beta)``."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.log((1.0 - mid) / mid) - ym - q * (mid - beta) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


GRID = [(ym, q) for ym in (-5.0, -3.0, -0.5, 0.0, 0.7, 2.0, 5.0)
        for q in (1e-4, 2.5e-3, 0.1, 1.0)]


@pytest.mark.parametrize("ym,q", GRID)
def test_warm_started_root_takes_a_few_newton_steps(ym, q):
    b0, _ = _root(0.5, ym, q)  # the last epoch's root is the next one's start (beta)
    for shift in (0.0, 1e-9, 1e-4, 0.05):  # the margin moved that much since
        b, logs = _root(b0, ym + shift, q)
        assert b == pytest.approx(_bisect(b0, ym + shift, q), rel=1e-11, abs=1e-15)
        assert 0.0 < b < 1.0
        assert logs <= 6, (ym, q, shift, logs)  # before the fix: up to 45 (ym -3, q 1e-4)


@pytest.mark.parametrize("ym,q", GRID)
def test_cold_root_is_exact_and_bounded(ym, q):
    b, logs = _root(0.5, ym, q)
    assert b == pytest.approx(_bisect(0.5, ym, q), rel=1e-11, abs=1e-15)
    assert logs <= 12, (ym, q, logs)


def test_jitted_root_agrees_with_the_counted_one():
    for ym, q in GRID:
        for beta in (1e-3, 0.3, 0.5, 0.97):
            assert K._logistic_dual_root(beta, ym, q) == _root(beta, ym, q)[0]
