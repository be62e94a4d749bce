"""Shrinking in asip-cocoa's hinge SDCA steps (`_sdca_kernels.hinge_steps_shrinking`): rows
stuck at a bound leave the passes, every row comes back before the steps can stall, and a
certified fit reaches the same optimum with and without it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import simulate

from asip.algorithms import Objective, get_loss, get_penalty, reference_optimum
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem
from asip.algorithms._sdca_kernels import (SHRINK_PASSES, cocoa_steps, hinge_steps_shrinking,
                                           new_shrink_state)

ALPHA = 0.05


def _svm(n=3000, d=40, seed=3, sort=False):
    """Binary-feature rows like a9a's (about 8 nonzeros a row), labels from a noisy plane;
    ``sort``: rows ordered by label (each partition of a split holds mostly one class)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=8 / d, format="csr", random_state=rng,
                  data_rvs=lambda k: np.ones(k))
    w = rng.normal(size=d)
    y = np.where(X @ w + 0.5 * rng.normal(size=n) > np.median(X @ w), 1.0, -1.0)
    if sort:
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
    return sp.csr_matrix(X), y


def _primal(X, y, w):
    return float(np.mean(np.maximum(0.0, 1.0 - y * (X @ w))) + 0.5 * ALPHA * w @ w)


def _one_partition(X, y, offset, passes, shrink, seed=0, state=None):
    """``passes`` passes of (shrinking) SDCA steps on all rows as one partition (sigma 1)
    against a fixed peers' total ``offset``; returns the duals, own total, kernel state."""
    Xk = K.as_kernel_matrix(X)
    n, p = X.shape
    sqn = np.asarray(K.row_sqnorms(Xk), dtype=np.float64)
    if state is None:
        state = (np.zeros(n), np.zeros(p), np.arange(n, dtype=np.int64),
                 np.array([0, n], dtype=np.int64), K.make_rng(seed), new_shrink_state())
    dual, u, order, cursor, rng, sh = state
    scale = 1.0 / (ALPHA * n)
    for _ in range(passes):
        w = u + offset
        if shrink:
            hinge_steps_shrinking(Xk, y, False, n, rng, order, cursor, dual, sqn, scale, 1.0, w,
                                  u, sh)
        else:
            cocoa_steps(Xk, y, K.HINGE, False, n, rng, order, cursor, dual, sqn, scale, 1.0, w,
                        u)
    return state


def test_shrinking_skips_bound_rows_and_reaches_the_unshrunk_optimum():
    X, y = _svm()
    n = X.shape[0]
    zero = np.zeros(X.shape[1])
    dual, u, order, cursor, rng, sh = _one_partition(X, y, zero, 1, True)
    actives = []
    for _ in range(40):  # one visit of n rows at a time: several passes of the active rows
        _one_partition(X, y, zero, 1, True, state=(dual, u, order, cursor, rng, sh))
        actives.append(int(cursor[1]))
    # most optimal duals of a hinge SVM sit at a bound: the passes leave them out ...
    assert min(actives) < 0.5 * n, actives
    # ... and every row comes back now and then (no row is left out for good)
    assert max(actives[5:]) == n, actives
    # the steps taken are exact: u is (1/(alpha n)) A^T a of the duals, which stay feasible
    np.testing.assert_allclose(u, X.T @ dual / (ALPHA * n), rtol=1e-9, atol=1e-12)
    b = y * dual
    assert b.min() >= 0.0 and b.max() <= 1.0
    ref = reference_optimum(Objective(get_loss("hinge"), get_penalty("l2", ALPHA), False), X, y)
    assert (_primal(X, y, u) - ref.f_star) / ref.f_star <= 1e-6 + ref.relative_precision


def test_a_shrunk_row_comes_back_when_the_peers_move_it():
    """A peer's push moves the margins of rows shrunk at a bound (which no local test sees):
    the rows come back and the duals reach the new subproblem's optimum, the one SDCA without
    shrinking reaches from scratch."""
    X, y = _svm(seed=4)
    n, p = X.shape
    state = _one_partition(X, y, np.zeros(p), 10, True)
    for _ in range(40):  # to a moment when many rows are out of the passes
        if state[3][1] < 0.5 * n:
            break
        _one_partition(X, y, np.zeros(p), 1, True, state=state)
    shrunk = state[2][state[3][1]:].copy()  # rows out of the passes now
    assert len(shrunk) > 0.3 * n
    # a peers' total that flips many margins: the shrunk rows' optimal duals change
    offset = -3.0 * np.asarray(X.T @ y).ravel() / n
    moved = _one_partition(X, y, offset, 3 * SHRINK_PASSES + 40, True, state=state)
    fresh = _one_partition(X, y, offset, 3 * SHRINK_PASSES + 40, False, seed=1)
    bm, bf = y * moved[0], y * fresh[0]
    assert np.abs(bf[shrunk] - 0.0).max() > 0.5 or np.abs(bf[shrunk] - 1.0).max() > 0.5
    np.testing.assert_allclose(moved[1], fresh[1], rtol=1e-4, atol=1e-6)
    changed = shrunk[np.abs(bf[shrunk] - np.round(bf[shrunk])) < 1e-9]
    np.testing.assert_allclose(bm[changed], bf[changed], atol=1e-6)


@pytest.mark.parametrize("n_parts", [1, 2, 4])
def test_certified_fit_with_shrinking_matches_without_on_label_sorted_rows(n_parts):
    X, y = _svm(n=2400, sort=True, seed=7)
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    parts = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(K.HINGE, K.L2, ALPHA, False, parts)
    ref = reference_optimum(Objective(get_loss("hinge"), get_penalty("l2", ALPHA), False), X, y)
    got = {}
    for shrinking in (True, False):
        w, snaps, rounds, done = simulate(
            "asip-cocoa", problem, parts, {"tol": 1e-7, "seed": 0, "cert_period": 0.0,
                                           "local_solver": "sdca", "shrinking": shrinking},
            max_time=60, chunk=600)
        assert done, f"shrinking={shrinking}: not certified after {rounds} rounds"
        f = _primal(X, y, w)
        # (a gap of round-off size can come out negative)
        assert (f - ref.f_star) / ref.f_star <= max(snaps[0]["rel_gap"], 0.0) + 1e-12 \
            + ref.relative_precision
        got[shrinking] = f
    assert abs(got[True] - got[False]) <= 2e-7 * got[False]


def test_shrinking_is_a_bool():
    from asip.algorithms._cocoa import validate

    X, y = _svm(n=100)
    problem = make_problem(K.HINGE, K.L2, ALPHA, False, [(X, y)])
    from asip.algorithms._solvers import get_algorithm

    params = get_algorithm("asip-cocoa").merge({"shrinking": "yes"})
    with pytest.raises(ValueError, match="shrinking must be True or False"):
        validate(problem, params)

