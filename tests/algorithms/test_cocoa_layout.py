"""asip-cocoa's hinge SDCA on a shuffled copy of its rows, read in blocks
(`_sdca_kernels.shuffled_rows`, `hinge_steps_blocks`, `_cocoa.HINGE_LAYOUT`): the copy holds
the same rows, a pass visits every active row once, shrinking still leaves rows out and
brings them back (a certified fit on label-sorted partitions, shrinking on and so on the
copy: `test_cocoa_shrinking`)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_cocoa_shrinking import ALPHA, _primal, _svm

from asip.algorithms import Objective, get_loss, get_penalty, reference_optimum
from asip.algorithms import _cocoa
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._certificate import certificate_parts
from asip.algorithms._sdca_kernels import (BLOCK_ROWS, hinge_steps_blocks, new_shrink_state,
                                           shuffled_rows)


def _rows_of(X) -> list:
    """Each row of a kernel matrix as a sorted tuple of (column, value)."""
    M = sp.csr_matrix((X[0], X[1], X[2])) if isinstance(X, tuple) else sp.csr_matrix(X)
    return [tuple(zip(M[i].indices.tolist(), M[i].data.tolist())) for i in range(M.shape[0])]


@pytest.mark.parametrize("dense", [False, True])
def test_shuffled_rows_are_the_rows_in_another_order_with_the_same_certificate(dense):
    X, y = _svm(n=300, d=20, seed=5)
    Xk = K.as_kernel_matrix(X.toarray() if dense else X)
    sqn = np.asarray(K.row_sqnorms(Xk), dtype=np.float64)
    Xs, ys, sqs = shuffled_rows(Xk, y, sqn, seed=1)
    if not dense:  # the kernels' dtypes, kept
        assert [a.dtype for a in Xs] == [a.dtype for a in Xk]
    orig, copy = _rows_of(Xk), _rows_of(Xs)
    assert copy != orig  # another order ...
    # ... of the same rows, each with its label and squared norm
    assert sorted(zip(copy, ys.tolist(), sqs.tolist())) == sorted(zip(orig, y.tolist(),
                                                                      sqn.tolist()))
    # the certificate's sums at any model, with the duals following the rows
    rng = np.random.default_rng(0)
    w, dual = rng.normal(size=X.shape[1]), y * rng.uniform(0, 1, size=len(y))
    where = {}
    for i, key in enumerate(zip(orig, y.tolist())):
        where.setdefault(key, []).append(i)
    dual_s = np.array([dual[where[key].pop()] for key in zip(copy, ys.tolist())])
    a = certificate_parts(Xk, y, w, K.HINGE, False, dual, penalized_intercept=True)
    b = certificate_parts(Xs, ys, w, K.HINGE, False, dual_s, penalized_intercept=True)
    assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-12)
    assert a.conj_sum == pytest.approx(b.conj_sum, rel=1e-12)
    np.testing.assert_allclose(a.g, b.g, rtol=1e-12, atol=1e-12)


def _blocks_state(n: int, seed: int = 0):
    return (np.zeros(n), np.arange(n, dtype=np.int64),
            np.arange(-(-n // BLOCK_ROWS), dtype=np.int64), np.array([0, n, 0], dtype=np.int64),
            K.make_rng(seed), new_shrink_state())


def test_a_pass_of_blocks_visits_every_row_once():
    """From zero duals every row's first step moves its dual (margin 0 < 1): after exactly
    ``n`` steps -- one pass, a partial last block included -- none is left at zero."""
    n = 10 * BLOCK_ROWS + 7
    X, y = _svm(n=n, d=20, seed=6)
    Xk = K.as_kernel_matrix(X)
    sqn = np.asarray(K.row_sqnorms(Xk), dtype=np.float64)
    dual, order, blocks, cursor, rng, sh = _blocks_state(n)
    w, u = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    scale = 1.0 / (ALPHA * n)
    # a tiny scale: the steps barely move w, so every margin stays below 1
    hinge_steps_blocks(Xk, y, False, n, rng, order, blocks, cursor, dual, sqn, 1e-6 * scale,
                       1.0, w, u, sh)
    assert np.count_nonzero(dual) == n


def test_blocks_shrink_bound_rows_bring_them_back_and_reach_the_optimum():
    X, y = _svm()
    n, p = X.shape
    Xk = K.as_kernel_matrix(X)
    sqn = np.asarray(K.row_sqnorms(Xk), dtype=np.float64)
    dual, order, blocks, cursor, rng, sh = _blocks_state(n)
    u = np.zeros(p)
    actives = []
    for _ in range(40):  # one visit of n rows at a time: several passes of the active rows
        hinge_steps_blocks(Xk, y, False, n, rng, order, blocks, cursor, dual, sqn,
                           1.0 / (ALPHA * n), 1.0, u.copy(), u, sh)
        actives.append(int(cursor[1]))
        # the active rows (those shrunk in this pass marked -1 - i) stay distinct rows
        active = order[:cursor[1]]
        rows = np.where(active < 0, -1 - active, active)
        assert len(np.unique(rows)) == cursor[1] and 0 <= rows.min() and rows.max() < n
    assert min(actives) < 0.5 * n, actives  # bound rows leave the passes ...
    assert max(actives[5:]) == n, actives  # ... and come back
    np.testing.assert_allclose(u, X.T @ dual / (ALPHA * n), rtol=1e-9, atol=1e-12)
    b = y * dual
    assert b.min() >= 0.0 and b.max() <= 1.0
    ref = reference_optimum(Objective(get_loss("hinge"), get_penalty("l2", ALPHA), False), X, y)
    assert (_primal(X, y, u) - ref.f_star) / ref.f_star <= 1e-6 + ref.relative_precision


def test_the_operator_steps_on_the_shuffled_copy_by_default_and_not_when_off(monkeypatch):
    X, y = _svm(n=400)
    problem = make_problem(K.HINGE, K.L2, ALPHA, False, [(X, y)])
    data = local_data(X, y, problem, 0)
    algo_params = _cocoa.ALGORITHM.merge({"local_solver": "sdca"})
    state = _cocoa.init(problem, data, algo_params)
    assert state.rows is not None and state.rows[0][0] is not data.X[0]
    monkeypatch.setattr(_cocoa, "HINGE_LAYOUT", 0.0)
    assert _cocoa.init(problem, data, algo_params).rows is None
    monkeypatch.setattr(_cocoa, "HINGE_LAYOUT", 1.0)
    monkeypatch.setattr(_cocoa, "LAYOUT_MAX_BYTES", 10)  # too large a copy: main's steps
    assert _cocoa.init(problem, data, algo_params).rows is None

