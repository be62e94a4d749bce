"""``lp-hinge`` (hinge-l1 by row and column generation): certified against the exact LP optimum.

In one process (`_sim`): the certified stop lands on scipy's HiGHS optimum (with and
without an intercept), its gap bounds the true suboptimality, a restarted leader or
peer still gets there, and problems that are not hinge-l1 are refused by name; one
fit through the estimator on a real cluster checks the messages on the wire.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import simulate, split_rows

from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem
from asip.algorithms._lp_hinge import validate

pytestmark = pytest.mark.timeout(120)


def _synthetic(fit_intercept: bool, alpha: float = 1e-3, n_parts: int = 2):
    """A small sparse hinge-l1 problem (the same shape as prox-newton's hinge tests)."""
    ds = make_logistic(1200, 15, n_zero=5, random_state=4)
    X = sp.csr_matrix(ds.X)
    parts = split_rows(X, ds.y, n_parts)
    problem = make_problem(K.HINGE, K.L1, alpha, fit_intercept, parts)
    obj = Objective(get_loss("hinge"), get_penalty("l1", alpha), fit_intercept=fit_intercept)
    return X, ds.y, parts, problem, obj, reference_optimum(obj, X, ds.y)


def _check(w, snaps, done, X, y, obj, ref, tol):
    assert done  # the certificate stopped it, not the clock
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    last = max(snaps, key=lambda s: s["k"])  # the one that stopped (the model returned)
    assert last["rel_gap"] <= tol
    assert r <= tol
    assert r <= last["rel_gap"] + 1e-12  # the gap bounds the true suboptimality


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_certified_stop_is_the_lp_optimum(fit_intercept):
    X, y, parts, problem, obj, ref = _synthetic(fit_intercept)
    # few columns and rows a round: the master grows over several rounds before it is exact
    params = {"tol": 1e-6, "cols_per_round": 4, "rows_per_round": 100}
    w, snaps, _, done = simulate("lp-hinge", problem, parts, params, max_time=60.0)
    _check(w, snaps, done, X, y, obj, ref, 1e-6)
    assert max(s["n_iter"] for s in snaps) >= 3  # it did generate columns and rows over several rounds


@pytest.mark.parametrize("restart", [{0: 5}, {1: 4}], ids=["leader", "peer"])
def test_a_restarted_operator_still_reaches_the_optimum(restart):
    X, y, parts, problem, obj, ref = _synthetic(True, n_parts=3)
    params = {"tol": 1e-6, "cols_per_round": 4, "rows_per_round": 100, "rejoin_wait": 0.2}
    w, snaps, _, done = simulate("lp-hinge", problem, parts, params, max_time=60.0,
                                 restart=restart)
    _check(w, snaps, done, X, y, obj, ref, 1e-6)


def test_rows_and_columns_that_leave_the_master_come_back_when_needed():
    """``drop_after=1``: idle rows and columns leave after one solve (each once); the
    partitions send left rows again when they are violated, and the optimum is reached."""
    X, y, parts, problem, obj, ref = _synthetic(True, n_parts=3)
    params = {"tol": 1e-6, "cols_per_round": 4, "rows_per_round": 60, "drop_after": 1}
    w, snaps, _, done = simulate("lp-hinge", problem, parts, params, max_time=60.0)
    _check(w, snaps, done, X, y, obj, ref, 1e-6)
    assert max(s["lp_left"] for s in snaps) > 0  # some did leave


def test_with_nothing_left_to_add_the_master_is_a_vertex():
    """With ``tol=0`` (never certified) the IPM master, once nothing is left to add, is
    solved once more with crossover (``lp_exact``): the LP optimum to HiGHS' tolerances."""
    X, y, parts, problem, obj, ref = _synthetic(False)
    params = {"tol": 0.0, "max_iter": 40}
    w, snaps, _, _ = simulate("lp-hinge", problem, parts, params, max_time=60.0)
    lead = snaps[0]
    assert lead["lp_exact"]
    assert lead["rel_gap"] <= 1e-10
    assert relative_suboptimality(obj.value(w, X, y), ref.f_star) <= 1e-10


def test_other_problems_are_refused_by_name():
    _, _, parts, _, _, _ = _synthetic(False)
    with pytest.raises(ValueError, match="supports penalty='l1' with loss='hinge'"):
        validate(make_problem(K.LOGISTIC, K.L1, 1e-3, False, parts), {})
    with pytest.raises(ValueError, match="alpha > 0"):
        validate(make_problem(K.HINGE, K.L1, 0.0, False, parts), {})
    _, _, parts, problem, _, _ = _synthetic(False)
    with pytest.raises(ValueError, match="cols_per_round >= 1"):
        simulate("lp-hinge", problem, parts, {"cols_per_round": 0})
    with pytest.raises(ValueError, match="drop_after >= 0"):
        simulate("lp-hinge", problem, parts, {"drop_after": -1})


def test_reuters_subset_is_certified_at_the_lp_optimum():
    """Sparse text (the shape lp-hinge is for): reuters' first 1,000 rows, alpha 1e-5."""
    from asip.algorithms import DataUnavailable, load_libsvm

    try:
        ds = load_libsvm("reuters", n_samples=1000)
    except DataUnavailable as exc:
        pytest.skip(f"shared LIBSVM data not available: {exc}")
    X = sp.csr_matrix(ds.X)
    parts = split_rows(X, ds.y, 2)
    problem = make_problem(K.HINGE, K.L1, 1e-5, False, parts)
    obj = Objective(get_loss("hinge"), get_penalty("l1", 1e-5), fit_intercept=False)
    ref = reference_optimum(obj, X, ds.y)
    w, snaps, _, done = simulate("lp-hinge", problem, parts, {"tol": 1e-4}, max_time=60.0)
    _check(w, snaps, done, X, ds.y, obj, ref, 1e-4)


def test_estimator_fit_on_a_cluster_is_certified(client):
    X, y, _, _, obj, ref = _synthetic(True)
    est = AsipClassifier(loss="hinge", penalty="l1", alpha=1e-3, solver="lp-hinge", tol=1e-6,
                         max_time=30.0).fit(X, y)
    assert est.stopped_by_ == "tol"
    w = np.append(est.coef_.ravel(), est.intercept_)
    assert relative_suboptimality(obj.value(w, X, y), ref.f_star) <= 1e-6
