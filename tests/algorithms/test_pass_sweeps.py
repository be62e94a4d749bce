"""The full passes' sweeps (`_kernels.sweep_margins`, `sweep_scatter`, `loss_grad` by blocks of
dense rows) against a plain-Python row-by-row pass, bit for bit: same sums in the same order. No
cluster."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numba import njit

from asip.algorithms import _kernels as K
from asip.algorithms import _losses as L


@njit
def _margins(X, w, fi, out):  # the sweeps are overloads: callable inside kernels only
    K.sweep_margins(X, w, fi, out)


@njit
def _scatter(X, d, fi, grad):
    K.sweep_scatter(X, d, fi, grad)


def _data(kind: str, loss: int, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.6] = 0.0
    X[min(2, n - 1)] = 0.0  # an empty row
    y = rng.standard_normal(n) if loss == K.SQUARED else np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return X, K.as_kernel_matrix(sp.csr_matrix(X) if kind == "csr" else X), y


def _row_by_row(X, y, w, loss, fi):
    """``(loss sum, gradient sum, margins)`` one row at a time, in Python floats, each
    margin summed over the row's nonzeros in column order (as CSR and dense rows are)."""
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
