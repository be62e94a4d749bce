"""The exact low-dimensional hinge references (`_svm_lowdim`) against the SVM dual method and the LP. No cluster."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms import Objective, get_loss, get_penalty, reference_optimum
from asip.algorithms import _reference, _svm_lowdim
from asip.algorithms._reference import _hinge_l1_lp, _hinge_l2_dual, duality_gap
from asip.algorithms._svm_lowdim import hinge_lowdim


def _problem(n, d, seed, pos_share=0.25, zero_rows=7, duplicates=30):
    """Overlapping classes of unequal size, some all-zero rows and repeated rows (as in skin_nonskin)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < pos_share, 1.0, -1.0)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 20.0, d) + 0.7 * y[:, None]
    X[rng.choice(n, zero_rows, replace=False)] = 0.0
    src, dst = rng.choice(n, duplicates), rng.choice(n, duplicates)
    X[dst], y[dst] = X[src], y[src]
    return np.round(X, 1), y


@pytest.mark.parametrize("d", [3, 20])
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("alpha", [0.1, 1e-3])
def test_lowdim_is_certified(d, fit_intercept, alpha):
    X, y = _problem(300, d, seed=d + 10 * fit_intercept)
    obj = Objective(get_loss("hinge"), get_penalty("l2", alpha), fit_intercept)
    w, u, info = hinge_lowdim(X, y, alpha, fit_intercept)
    assert w.shape == (d + fit_intercept,) and u.shape == (300,)
    assert np.all(np.abs(u) <= 1.0) and np.all(u * y <= 0.0)  # u = -y beta, beta in [0, 1]
    assert info["distinct_rows"] < 300  # the repeated rows were merged
    f = obj.value(w, X, y)
    assert 0.0 <= duality_gap(obj, X, y, w, u) <= 1e-10 * abs(f)
    # the certificate is not the default one: phi'(m) at w alone proves far less
    assert duality_gap(obj, X, y, w) > 1e3 * duality_gap(obj, X, y, w, u)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_lowdim_agrees_with_the_dual_method(fit_intercept):
    X, y = _problem(120, 3, seed=1, zero_rows=4, duplicates=10)
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.1), fit_intercept)
    w, u, _ = hinge_lowdim(X, y, 0.1, fit_intercept)
    w_dual, u_dual, _ = _hinge_l2_dual(obj, X, y)
    f, f_dual = obj.value(w, X, y), obj.value(w_dual, X, y)
    gap_dual = min(duality_gap(obj, X, y, w_dual, u_dual), duality_gap(obj, X, y, w_dual))
    assert f <= f_dual + 1e-12 * abs(f)  # never worse than the dual method's point
    assert f_dual - f <= gap_dual + 1e-12 * abs(f)  # and inside its certificate
    # the dual method certifies only ~1e-8 here (L-BFGS-B on the box); the agreement is as good
    assert abs(f - f_dual) <= 1e-7 * abs(f_dual)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_lowdim_l1_agrees_with_the_full_lp(fit_intercept):
    X, y = _problem(300, 6, seed=11)
    alpha = 0.02
    obj = Objective(get_loss("hinge"), get_penalty("l1", alpha), fit_intercept)
    w, u, info = hinge_lowdim(X, y, alpha, fit_intercept, penalty="l1")
    f = obj.value(w, X, y)
    assert 0.0 <= duality_gap(obj, X, y, w, u) <= 1e-9 * f
    w_lp, _, _ = _hinge_l1_lp(obj, X, y)
    assert f == pytest.approx(obj.value(w_lp, X, y), rel=1e-9)


def test_rows_that_cross_the_margin_join_the_working_set(monkeypatch):
    """A working set far too small to start: rows cross, join, and the result is still exact."""
    monkeypatch.setattr(_svm_lowdim, "_START_ROWS", 3)
    monkeypatch.setattr(_svm_lowdim, "_SMOOTHING", (1.0,))
    X, y = _problem(400, 5, seed=3)
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.01), True)
    w, u, info = hinge_lowdim(X, y, 0.01, True)
    assert info["rounds"] > 1 and info["working_set"] > 3
    assert duality_gap(obj, X, y, w, u) <= 1e-10 * obj.value(w, X, y)


@pytest.mark.parametrize("densify", [True, False])
def test_sparse_input_dense_or_kept_sparse(monkeypatch, densify):
    if not densify:  # the path for sparse data too large to make dense: no merging
        monkeypatch.setattr(_svm_lowdim, "_DENSIFY_ENTRIES", 0)
    X, y = _problem(250, 8, seed=5)
    X[np.random.default_rng(0).random(X.shape) < 0.5] = 0.0
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.05), True)
    w, u, info = hinge_lowdim(sp.csr_matrix(X), y, 0.05, True)
    assert (info["distinct_rows"] < 250) == densify
    w_dense, _, _ = hinge_lowdim(X, y, 0.05, True)
    assert duality_gap(obj, X, y, w, u) <= 1e-10 * obj.value(w, X, y)
    assert obj.value(w, X, y) == pytest.approx(obj.value(w_dense, X, y), rel=1e-10)


def test_reference_optimum_uses_it_when_d_is_small_and_refuses_alpha_zero(monkeypatch):
    X, y = _problem(200, 4, seed=7)
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.1), True)
    ref = reference_optimum(obj, X, y, cache=False)
    assert ref.method.startswith("primal working-set QP") and ref.relative_precision <= 1e-10
    l1 = Objective(get_loss("hinge"), get_penalty("l1", 0.01), False)
    assert "linprog" in reference_optimum(l1, X, y, cache=False).method  # few rows: the full LP
    monkeypatch.setattr(_reference, "_LOWDIM_L1_MIN_ROWS", 100)
    ref = reference_optimum(l1, X, y, cache=False)
    assert ref.method.startswith("primal working-set LP") and ref.relative_precision <= 1e-9
    bad = Objective(get_loss("hinge"), get_penalty("l2", 0.0), True)
    with pytest.raises(ValueError, match="alpha > 0"):
        reference_optimum(bad, X, y, cache=False)
    with pytest.raises(ValueError, match="non-negative"):
        get_penalty("l2", -1.0)


@pytest.mark.timeout(120)
def test_a_cycling_master_falls_back_to_the_dual_method():
    """HiGHS' QP cycles on this 4,000 x 50 set (140,000 iterations in 10 s, no answer; it
    hung the convergence table): the master's iteration bound ends it, and the reference
    still comes back certified, from the SVM dual."""
    from asip.algorithms._datasets import make_logistic

    ds = make_logistic(4000, 50)  # the convergence table's synthetic set
    X, y = ds.X, ds.y
    with pytest.raises(RuntimeError, match="Iteration limit"):
        hinge_lowdim(X, y, 0.01, False)
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.01), False)
    ref = reference_optimum(obj, X, y)
    assert "dual" in ref.method.lower() and ref.gap <= 1e-8 * abs(ref.f_star)
