"""The full passes' sweeps (`_kernels.sweep_margins`, `sweep_scatter`, `loss_grad` by blocks of
dense rows, and `loss_grad_sw` with row weights) against a plain-Python row-by-row pass, bit for
bit: same sums in the same order. No cluster."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numba import njit

from asip.algorithms import _kernels as K
from asip.algorithms import _losses as L


@njit
def _margins(X, w, fi, out):  # the sweeps are overloads: callable inside kernels only
    K.sweep_margins(X, w, fi, out, 0)


@njit
def _scatter(X, d, fi, grad):
    K.sweep_scatter(X, d, fi, grad, 0)


def _data(kind: str, loss: int, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.6] = 0.0
    X[min(2, n - 1)] = 0.0  # an empty row
    y = rng.standard_normal(n) if loss == K.SQUARED else np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return X, K.as_kernel_matrix(sp.csr_matrix(X) if kind == "csr" else X), y


def _row_by_row(X, y, w, loss, fi, sw=None):
    """``(loss sum, gradient sum, margins)`` one row at a time, in Python floats, each
    margin summed over the row's nonzeros in column order (as CSR and dense rows are); with
    row weights ``sw``, each row's loss and derivative times its weight (weight 0: skipped)."""
    p = len(w)
    grad = [0.0] * p
    s = 0.0
    margins = []
    derivs = []
    for i in range(X.shape[0]):
        cols = np.flatnonzero(X[i])
        m = 0.0
        for j in cols:
            m += float(X[i, j]) * float(w[j])
        if fi:
            m += float(w[-1])
        margins.append(m)
        f, dv = L.value_deriv(loss, m, float(y[i]))
        if sw is not None:
            if sw[i] == 0.0:
                derivs.append(0.0)
                continue
            f, dv = float(sw[i]) * f, dv * float(sw[i])
        s += f
        derivs.append(dv)
    for i in range(X.shape[0]):
        dv = derivs[i]
        if dv != 0.0:
            for j in np.flatnonzero(X[i]):
                grad[j] += dv * float(X[i, j])
            if fi:
                grad[p - 1] += dv
    return s, np.array(grad), np.array(margins)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE, K.SQUARED])
def test_sweeps_give_the_row_by_row_sums_bit_for_bit(kind, fi, loss):
    """600 columns: a dense block is 54 rows, so 130 rows are three blocks, the last short."""
    X, Xk, y = _data(kind, loss, 130, 600)
    assert K.DENSE_BLOCK_BYTES // (8 * 600) < 130
    w = np.random.default_rng(1).standard_normal(600 + fi)
    s_ref, g_ref, m_ref = _row_by_row(X, y, w, loss, fi)
    m = np.empty(130)
    _margins(Xk, w, fi, m)
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(K.margins(Xk, w, fi), m_ref)
    g = np.full(600 + fi, np.nan)
    assert K.loss_grad(Xk, y, w, loss, fi, g) == s_ref
    np.testing.assert_array_equal(g, g_ref)
    assert K.loss_sum(Xk, y, w, loss, fi) == sum(L.value(loss, mi, yi) for mi, yi in zip(m_ref, y))
    d = np.array([L.deriv(loss, mi, yi) for mi, yi in zip(m_ref, y)])
    g2 = np.zeros(600 + fi)
    _scatter(Xk, d, fi, g2)
    np.testing.assert_array_equal(g2, g_ref)


@pytest.mark.parametrize("n", [1, 53, 54, 55])
def test_dense_blocks_at_their_edges(n):
    """Row counts around one block (54 rows at 600 columns): every row counted once."""
    X, Xk, y = _data("dense", K.LOGISTIC, n, 600, seed=n)
    w = np.random.default_rng(2).standard_normal(600)
    s_ref, g_ref, _ = _row_by_row(X, y, w, K.LOGISTIC, False)
    g = np.empty(600)
    assert K.loss_grad(Xk, y, w, K.LOGISTIC, False, g) == s_ref
    np.testing.assert_array_equal(g, g_ref)


@njit
def _old_weighted_loss_grad(X, y, sw, w, loss, fit_intercept, grad):
    """The fused row loop `_weights` ran before `K.loss_grad_sw` (kept here to compare)."""
    grad[:] = 0.0
    s = 0.0
    p = w.shape[0]
    flat = K.coef_is_zero(w, fit_intercept)
    b = w[p - 1] if fit_intercept else 0.0
    for i in range(K.n_rows(X)):
        if sw[i] == 0.0:
            continue
        m = b if flat else K._margin(X, i, w, fit_intercept)
        f, d = K._phi_dphi(loss, m, y[i])
        s += sw[i] * f
        d *= sw[i]
        if d != 0.0:
            K.row_axpy(X, i, d, grad)
            if fit_intercept:
                grad[p - 1] += d
    return s


def _weights(n, seed=3):
    """Random weights in [0, 3) with every fifth row 0 (rows the pass must leave out)."""
    sw = np.random.default_rng(seed).random(n) * 3.0
    sw[::5] = 0.0
    return sw


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE, K.SQUARED])
def test_weighted_pass_is_the_old_row_loop_bit_for_bit(kind, fi, loss):
    """`loss_grad_sw` (the sweeps) gives the old fused weighted row loop's sums exactly, and
    the row-by-row weighted sums; at zero coefficients too (margins = the intercept); 130 rows
    are three dense blocks at 600 columns, so the weights' row offset per block is exercised."""
    from asip.algorithms import _weights as W

    X, Xk, y = _data(kind, loss, 130, 600)
    sw = _weights(130)
    for w in (np.random.default_rng(1).standard_normal(600 + fi),
              np.r_[np.zeros(600), [0.3] * fi]):
        s_ref, g_ref, _ = _row_by_row(X, y, w, loss, fi, sw)
        g_old = np.full(600 + fi, np.nan)
        s_old = _old_weighted_loss_grad(Xk, y, sw, w, loss, fi, g_old)
        g = np.full(600 + fi, np.nan)
        assert K.loss_grad_sw(Xk, y, sw, w, loss, fi, g) == s_old == s_ref
        np.testing.assert_array_equal(g, g_old)
        np.testing.assert_array_equal(g, g_ref)
        data = type("D", (), {"X": Xk, "y": y, "sw": sw})
        g2 = np.full(600 + fi, np.nan)
        assert W.loss_grad(data, w, loss, fi, g2) == s_old
        np.testing.assert_array_equal(g2, g_old)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE, K.SQUARED])
def test_weighted_pass_against_numpy(kind, fi, loss):
    """Weighted sums against plain numpy (``sum_i s_i phi_i``, ``A^T (s * phi')``): a weight
    applied to the wrong row, twice, or not at all shows; weights of 1 give `loss_grad`."""
    X, Xk, y = _data(kind, loss, 130, 600, seed=5)
    sw = _weights(130, seed=6)
    w = np.random.default_rng(7).standard_normal(600 + fi) * 0.1
    A = np.hstack([X, np.ones((130, 1))]) if fi else X
    m = A @ w
    f = np.array([L.value(loss, mi, yi) for mi, yi in zip(m, y)])
    d = np.array([L.deriv(loss, mi, yi) for mi, yi in zip(m, y)])
    g = np.empty(600 + fi)
    s = K.loss_grad_sw(Xk, y, sw, w, loss, fi, g)
    np.testing.assert_allclose(s, sw @ f, rtol=1e-12)
    np.testing.assert_allclose(g, A.T @ (sw * d), rtol=1e-10, atol=1e-12)
    g1, g0 = np.empty(600 + fi), np.empty(600 + fi)
    assert K.loss_grad_sw(Xk, y, np.ones(130), w, loss, fi, g1) == K.loss_grad(Xk, y, w, loss, fi, g0)
    np.testing.assert_array_equal(g1, g0)


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_a_row_of_weight_zero_adds_nothing_even_overflowing(kind):
    """A weight-0 row whose squared loss overflows to inf adds neither inf nor nan (0 * inf):
    the sums are those of the pass without that row."""
    X, Xk, y = _data(kind, K.SQUARED, 40, 30, seed=8)
    X[7] = 1e200
    Xk = K.as_kernel_matrix(sp.csr_matrix(X) if kind == "csr" else X)
    sw = np.ones(40)
    sw[7] = 0.0
    w = np.ones(30)
    g = np.empty(30)
    s = K.loss_grad_sw(Xk, y, sw, w, K.SQUARED, False, g)
    keep = np.arange(40) != 7
    Xr = K.as_kernel_matrix(sp.csr_matrix(X[keep]) if kind == "csr" else X[keep])
    g_ref = np.empty(30)
    assert s == K.loss_grad(Xr, y[keep], w, K.SQUARED, False, g_ref)
    assert np.isfinite(s)
    np.testing.assert_array_equal(g, g_ref)


@njit
def _old_anchor_pass(X, y, sw, a, loss, fit_intercept, mem, grad):
    """`_vr_kernels.anchor_pass` before it ran as the sweeps (kept here to compare)."""
    grad[:] = 0.0
    p = a.shape[0]
    f = 0.0
    for i in range(K.n_rows(X)):
        s = 1.0 if sw.shape[0] == 0 else sw[i]
        m = K._margin(X, i, a, fit_intercept)
        d = s * K._dphi(loss, m, y[i])
        mem[i] = d
        if s != 0.0:
            f += s * K._phi(loss, m, y[i])
        if d != 0.0:
            K.row_axpy(X, i, d, grad)
            if fit_intercept:
                grad[p - 1] += d
    return f


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE, K.SQUARED])
@pytest.mark.parametrize("weighted", [False, True])
def test_anchor_pass_is_the_old_row_loop_bit_for_bit(kind, fi, loss, weighted):
    """asip-svrg's anchor pass (the sweeps) gives the old fused row loop's loss sum, gradient
    and per-row memory ``mem_i = s_i phi'(m_i)`` exactly, weights or none (an empty ``sw``),
    rows of weight 0 included, at a random point and at zero coefficients; 130 rows are
    three dense blocks at 600 columns (each block's memory in its own rows)."""
    from asip.algorithms import _vr_kernels as V

    X, Xk, y = _data(kind, loss, 130, 600, seed=11)
    sw = _weights(130, seed=12) if weighted else np.zeros(0)
    for a in (np.random.default_rng(13).standard_normal(600 + fi) * 0.3,
              np.r_[np.zeros(600), [0.3] * fi]):
        mem_old, g_old = np.full(130, np.nan), np.full(600 + fi, np.nan)
        f_old = _old_anchor_pass(Xk, y, sw, a, loss, fi, mem_old, g_old)
        mem, g = np.full(130, np.nan), np.full(600 + fi, np.nan)
        assert V.anchor_pass(Xk, y, sw, a, loss, fi, mem, g) == f_old
        np.testing.assert_array_equal(mem, mem_old)
        np.testing.assert_array_equal(g, g_old)
        s_ref, g_ref, _ = _row_by_row(X, y, a, loss, fi, sw if weighted else None)
        assert f_old == s_ref
        np.testing.assert_array_equal(g, g_ref)
        if weighted:
            assert np.all(mem[::5] == 0.0)
            mem1, g1 = np.empty(130), np.empty(600 + fi)
            V.anchor_pass(Xk, y, np.ones(130), a, loss, fi, mem1, g1)
            np.testing.assert_array_equal(mem, mem1 * sw)  # the weight of its own row


@njit
def _old_side_pass(X, y, sw, w, loss, side, side_g):
    """`_primal_cert._side_pass` before it ran as the sweeps (kept here to compare)."""
    for i in range(K.n_rows(X)):
        m = K._margin(X, i, w, True)
        if loss == K.SQUARED:
            side[0] += y[i] - m
            side[1] += y[i]
            K.row_axpy(X, i, 1.0, side_g)
            continue
        s = 1.0 if sw.shape[0] == 0 else sw[i]
        if s == 0.0:
            continue
        d = s * K._dphi(loss, m, y[i])
        if y[i] > 0:
            side[0] -= y[i] * d
            side[1] += m * d - s * K._phi(loss, m, y[i])
            if d != 0.0:
                K.row_axpy(X, i, -d, side_g)
        else:
            side[2] -= y[i] * d


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE, K.SQUARED])
@pytest.mark.parametrize("weighted", [False, True])
def test_side_pass_is_the_old_row_loop_bit_for_bit(kind, loss, weighted):
    """The primal certificate's intercept side sums (the sweeps, dense rows by blocks: 130
    rows are three blocks at 600 columns) are the old fused row loop's exactly, weights or
    none, rows of weight 0 included; against numpy too (a weight on the wrong row shows)."""
    from asip.algorithms import _primal_cert as PC

    X, Xk, y = _data(kind, loss, 130, 600, seed=21)
    sw = _weights(130, seed=22) if weighted else np.zeros(0)
    w = np.random.default_rng(23).standard_normal(601) * 0.1
    k = 2 if loss == K.SQUARED else 3
    side_old, g_old = np.zeros(k), np.zeros(601)
    _old_side_pass(Xk, y, sw, w, loss, side_old, g_old)
    side, g = np.zeros(k), np.zeros(601)
    PC._side_pass(Xk, y, sw, w, loss, side, g)
    np.testing.assert_array_equal(side, side_old)
    np.testing.assert_array_equal(g, g_old)
    assert g[600] == 0.0
    if loss != K.SQUARED:
        s = sw if weighted else np.ones(130)
        m = X @ w[:600] + w[600]
        d = s * np.array([L.deriv(loss, mi, yi) for mi, yi in zip(m, y)])
        np.testing.assert_allclose(g[:600], -X[y > 0].T @ d[y > 0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(side[2], -(y * d)[y < 0].sum(), rtol=1e-12)
