"""`LocalNewton`'s one Gram (`_gram_of`) and each loss's curvature weights, against plain numpy.

Every loss's Hessian is ``X~^T diag(c) X~`` (``X~``: with the intercept's column of ones)
for its own weights ``c``: log_loss and squared_error ``phi'' / n`` on a rescaled row
sample (dense data, ``hessian_rows``; CSR: every row), hinge ``1/(mu n)`` on every band row
plus ``floor`` times the majorizer's curvature on a rescaled sample of the others."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms import make_logistic, make_regression
from asip.algorithms import _kernels as K
from asip.algorithms._cocoa_newton import LocalNewton

N, D, N_TOTAL, SAMPLE = 600, 8, 2400, 150


def _solver(loss, kind, fit_intercept, floor=0.0, hessian_rows=SAMPLE, seed=0):
    ds = (make_regression(N, D, random_state=2) if loss == K.SQUARED
          else make_logistic(N, D, random_state=2))
    X = np.asarray(ds.X, dtype=np.float64).copy()
    if kind == "csr":
        X[np.random.default_rng(1).random(X.shape) < 0.5] = 0.0
        S = sp.csr_matrix(X)
        Xk = (S.data, S.indices, S.indptr)
    else:
        Xk = X
    ln = LocalNewton(Xk, ds.y, loss, fit_intercept, D + int(fit_intercept), N_TOTAL, 0.1,
                     hessian_rows, seed, mu=0.5 if loss == K.HINGE else None, floor=floor)
    Xt = np.hstack([X, np.ones((N, 1))]) if fit_intercept else X
    m = X @ np.linspace(-1.0, 1.0, D) + (0.3 if fit_intercept else 0.0)
    return ln, Xt, ds.y, m


def _plain_gram(Xt, c):
    return Xt.T @ (c[:, None] * Xt)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_gram_of_is_the_weighted_gram_over_the_rows_with_weight(kind, fit_intercept):
    ln, Xt, _, _ = _solver(K.LOGISTIC, kind, fit_intercept)
    c = np.random.default_rng(3).random(N)
    c[::3] = 0.0  # rows left out
    before = ln.passes
    np.testing.assert_allclose(ln._gram_of(c), _plain_gram(Xt, c), rtol=1e-12, atol=1e-13)
    assert ln.passes - before == pytest.approx(np.count_nonzero(c) / N)
    full = np.random.default_rng(4).random(N) + 0.1  # every row
    np.testing.assert_allclose(ln._gram_of(full), _plain_gram(Xt, full), rtol=1e-12,
                               atol=1e-13)


def _smooth_curvature(loss, m, y):
    if loss == K.SQUARED:
        return np.ones_like(m)
    s = 1.0 / (1.0 + np.exp(-y * m))
    return s * (1.0 - s)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED])
@pytest.mark.parametrize("hessian_rows", [SAMPLE, 2 * N])
def test_smooth_hessian_is_the_gram_of_its_curvature(loss, kind, fit_intercept, hessian_rows):
    ln, Xt, y, m = _solver(loss, kind, fit_intercept, hessian_rows=hessian_rows)
    ln.rng = np.random.default_rng(5)
    c = ln._smooth_weights(m)
    ln.rng = np.random.default_rng(5)  # the same row sample
    H = ln._hessian(m)
    phi2 = _smooth_curvature(loss, m, y)
    rows = np.flatnonzero(c)
    if kind == "dense" and hessian_rows < N:  # a sample, rescaled
        assert len(rows) == hessian_rows
        np.testing.assert_allclose(c[rows], phi2[rows] * (N / hessian_rows) / N_TOTAL,
                                   rtol=1e-12)
    else:  # every row
        np.testing.assert_allclose(c, phi2 / N_TOTAL, rtol=1e-12)
    np.testing.assert_allclose(H, _plain_gram(Xt, c), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("floor", [0.0, 0.3])
@pytest.mark.parametrize("hessian_rows", [SAMPLE, 2 * N])
def test_hinge_hessian_is_the_gram_of_its_curvature(kind, fit_intercept, floor, hessian_rows):
    ln, Xt, y, m = _solver(K.HINGE, kind, fit_intercept, floor=floor,
                           hessian_rows=hessian_rows)
    mu = ln.mu
    z = 1.0 - y * m
    band = (z > 0) & (z < mu)
    majorizer = np.where(z >= mu, 1.0 / (2 * z - mu), 1.0 / (mu - 2 * z))
    assert 0 < band.sum() < N // 2  # both kinds of rows present
    ln.rng = np.random.default_rng(6)
    c = ln._hinge_weights(m)
    ln.rng = np.random.default_rng(6)
    H = ln._hessian(m)
    np.testing.assert_allclose(c[band], 1.0 / (mu * N_TOTAL), rtol=1e-12)  # every band row
    off = np.flatnonzero(~band)
    kept = off[c[off] > 0]
    if floor == 0.0:
        assert len(kept) == 0
    elif kind == "dense" and hessian_rows < len(off):  # a sample of the off-band rows
        assert len(kept) == hessian_rows
        np.testing.assert_allclose(c[kept], floor * majorizer[kept] * (len(off) / hessian_rows)
                                   / N_TOTAL, rtol=1e-12)
    else:
        np.testing.assert_allclose(c[off], floor * majorizer[off] / N_TOTAL, rtol=1e-12)
    np.testing.assert_allclose(H, _plain_gram(Xt, c), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_hinge_weights_take_one_curvature_pass(monkeypatch, kind):
    """The band's rows come from the margins, not from a second curvature pass over every
    row (`smooth_curvature` after `row_curvature`: the hinge Hessian's curvature work twice)."""
    from asip.algorithms import _losses

    ln, Xt, y, m = _solver(K.HINGE, kind, False, floor=0.3)
    want = ln._hinge_weights(m)

    def second_pass(*args):
        raise AssertionError("the hinge weights took a second curvature pass")

    monkeypatch.setattr(_losses, "smooth_curvature", second_pass)
    ln.rng = np.random.default_rng(0)  # the solver's seed: the same sample
    np.testing.assert_array_equal(ln._hinge_weights(m), want)


@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE])
def test_warm_up_builds_its_solver_as_init_does(monkeypatch, loss):
    """`_cocoa.init` and `warm_up` build `LocalNewton` from one argument list
    (`LocalNewton.for_partition`): the warm-up compiles the round the fit will run (hinge:
    its ``mu0`` and ``curv_floor``, not a default smoothing without a floor)."""
    from asip.algorithms import _cocoa
    from asip.algorithms._base import local_data, make_problem

    ds = make_logistic(1_000, 6, random_state=3)
    parts = [(ds.X[:600], ds.y[:600]), (ds.X[600:], ds.y[600:])]
    pb = make_problem(loss, K.L2, 0.05, True, parts)
    params = _cocoa.ALGORITHM.merge({"local_solver": "newton", "seed": 1, "mu0": 0.25,
                                     "curv_floor": 0.7, "hessian_rows": 300})
    built = []

    class Recording(_cocoa.LocalNewton):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(_cocoa, "LocalNewton", Recording)
    data = local_data(*parts[0], pb, 0)
    state = _cocoa.init(pb, data, params)
    _cocoa.ALGORITHM.warm_up(state, data)
    real, warm = built
    assert real is state.newton and len(warm.y) == _cocoa.WARM_UP_ROWS
    for key in ("loss", "fi", "p", "n", "alpha", "hessian_rows", "mu", "floor"):
        assert getattr(warm, key) == getattr(real, key), key
    np.testing.assert_array_equal(warm.pen, real.pen)
    assert real.hessian_rows == 300 and real.floor == 0.7
    assert real.mu == (0.25 if loss == K.HINGE else None)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_csr_gram_takes_each_pair_once_and_is_exactly_symmetric(fit_intercept):
    """`_cd_kernels.csr_weighted_gram` takes each pair of a row's entries once and mirrors it
    (half the products): exactly symmetric, and right on rows with unsorted or repeated
    column indices (a CSR matrix that was never canonicalized)."""
    from asip.algorithms import _cd_kernels as C

    rng = np.random.default_rng(7)
    n, d = 400, 9
    nnz = rng.integers(0, 7, n)
    indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    indices = rng.integers(0, d, indptr[-1]).astype(np.int64)  # unsorted, with repeats
    data = rng.standard_normal(indptr[-1])
    D = rng.random(n)
    D[::5] = 0.0
    p = d + int(fit_intercept)
    H = np.zeros((p, p))
    C.csr_weighted_gram(data, indices, indptr, D, fit_intercept, H)
    X = sp.csr_matrix((data, indices, indptr), shape=(n, d)).toarray()  # repeats summed
    Xt = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    np.testing.assert_allclose(H, _plain_gram(Xt, D), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(H, H.T)
