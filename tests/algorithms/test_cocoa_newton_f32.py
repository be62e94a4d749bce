"""asip-cocoa's Newton takes a wide dense partition's Gram in float32 (`_cocoa_newton.F32_MIN_P`):
within float32's rounding of the float64 Gram, the same exchanges to 1e-6 in lock-step, and
a factor that float32's rounding left indefinite retaken in float64."""

from __future__ import annotations

import numpy as np
import pytest

from asip.algorithms import _cocoa_newton
from asip.algorithms import _kernels as K
from asip.algorithms._cocoa_newton import F32_MIN_P, LocalNewton

N, N_TOTAL = 3000, 6000


def _solver(X, y, fit_intercept, alpha=0.1, hessian_rows=100_000):
    p = X.shape[1] + int(fit_intercept)
    return LocalNewton(np.ascontiguousarray(X), y, K.LOGISTIC, fit_intercept, p, N_TOTAL, alpha,
                       hessian_rows, 0, full_hessian=True)


def _plain_gram(X, c, fit_intercept):
    Xt = np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X
    return Xt.T @ (c[:, None] * Xt)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("rows", ["every", "some"])
def test_a_wide_dense_gram_is_float32_within_its_rounding(fit_intercept, rows):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, F32_MIN_P + 6))
    ln = _solver(X, np.sign(rng.normal(size=N)), fit_intercept)
    assert ln.f32
    c = rng.random(N) / N_TOTAL
    if rows == "some":
        c[::3] = 0.0
    H = ln._gram_of(c)
    assert ln.A32.dtype == np.float32
    want = _plain_gram(X, c, fit_intercept)
    err = np.linalg.norm(H - want, 2) / np.linalg.norm(want, 2)
    assert 0.0 < err <= 1e-6  # float32's rounding, not float64's
    np.testing.assert_array_equal(H, H.T)


def test_narrow_or_sampled_partitions_keep_float64():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(N, F32_MIN_P - 1))
    assert not _solver(X, np.sign(rng.normal(size=N)), False).f32
    X = rng.normal(size=(N, F32_MIN_P))
    ln = LocalNewton(X, np.sign(rng.normal(size=N)), K.LOGISTIC, False, F32_MIN_P, N_TOTAL,
                     0.1, 500, 0)  # an explicit row sample: no Gram on every row
    assert not ln.f32


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_an_indefinite_float32_factor_is_retaken_in_float64(monkeypatch, fit_intercept):
    # nearly collinear columns of scale 1e3: float32's rounding of the Gram (~1e-7 of its
    # norm, ~1e7) is far above the penalty (1e-3), float64's far below
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 1)) * 1e3 + 1e-3 * rng.normal(size=(N, F32_MIN_P + 6))
    y = np.sign(rng.normal(size=N))
    p = X.shape[1] + int(fit_intercept)
    ln = _solver(X, y, fit_intercept, alpha=1e-3)
    v, dual, share, H, _ = ln.solve(np.zeros(p), [], 1.0, 2, 1e-4)
    assert not ln.f32 and ln.A32 is None
    monkeypatch.setattr(_cocoa_newton, "F32_MIN_P", 10**9)
    exact = _solver(X, y, fit_intercept, alpha=1e-3)
    assert not exact.f32
    want = exact.solve(np.zeros(p), [], 1.0, 2, 1e-4)
    np.testing.assert_array_equal(v, want[0])
    np.testing.assert_array_equal(H, want[3])


def test_a_peers_indefinite_hessian_is_lifted_by_float32s_rounding():
    # the peers' summed Hessian (as `_cocoa._newton_round` hands it) short of definite by
    # more than the penalty, as a float32 Gram's rounding can leave it: the model's diagonal
    # is raised by `F32_LIFT` of its largest entry, and the step still descends
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 1)) * 1e3 + 1e-3 * rng.normal(size=(N, F32_MIN_P + 6))
    y = np.sign(rng.normal(size=N))
    p = X.shape[1]
    ln = _solver(X, y, False, alpha=1e-3)
    exact = _plain_gram(X, np.full(N, 0.25 / N_TOTAL), False)  # at w = 0, every row
    S = exact - 2e-3 * np.eye(p)
    peers = [(np.zeros(p), None, (S, np.zeros(p)), 1.0)]
    v, dual, share, H, _ = ln.solve(np.zeros(p), peers, 0.0, 2, 1e-4)
    assert not ln.f32 and np.all(np.isfinite(v)) and np.any(v != 0.0)
    # F_j fell: its loss and penalty plus the peer's quadratic model
    def f(w):
        m = X @ w
        return (np.logaddexp(0.0, -y * m).sum() / N_TOTAL + 0.5 * w @ S @ w
                + 0.5e-3 * w @ w)
    assert f(v) < f(np.zeros(p))


def test_a_float64_partition_lifts_a_peers_indefinite_hessian_too(monkeypatch):
    # a partition whose own Gram is float64 (narrow, or past `FULL_GRAM`) with a peer's
    # float32 one: no own Gram to retake, the lift alone
    monkeypatch.setattr(_cocoa_newton, "F32_MIN_P", 10**9)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 1)) * 1e3 + 1e-3 * rng.normal(size=(N, 70))
    y = np.sign(rng.normal(size=N))
    ln = _solver(X, y, False, alpha=1e-3)
    assert not ln.f32
    S = _plain_gram(X, np.full(N, 0.25 / N_TOTAL), False) - 2e-3 * np.eye(70)
    v, *_ = ln.solve(np.zeros(70), [(np.zeros(70), None, (S, np.zeros(70)), 1.0)], 0.0, 2,
                     1e-4)
    assert np.all(np.isfinite(v)) and np.any(v != 0.0)
