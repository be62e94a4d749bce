"""``prox-newton`` (distributed proximal Newton for l1) against the certified reference optimum.

In one process, driven by the round-robin stand-in for the runtime (`_sim`): small
problems, both Hessian modes, dense and CSR, with and without intercept, unequal
partitions, dropped messages and a restarted operator.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import simulate

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _cd_kernels as C
from asip.algorithms import _kernels as K
from asip.algorithms._auto import choose_solver
from asip.algorithms._base import make_problem

pytestmark = pytest.mark.timeout(120)

_LOSS = {"log_loss": K.LOGISTIC, "hinge": K.HINGE}


def _split(X, y, cuts):
    b = [0, *cuts, X.shape[0]]
    return [(X[a:c], y[a:c]) for a, c in zip(b[:-1], b[1:])]


def _setup(loss, fit_intercept, sparse=False, cuts=(700, 1000), alpha=1e-3):
    ds = make_logistic(1200, 15, n_zero=5, random_state=3)
    X = sp.csr_matrix(ds.X) if sparse else ds.X
    parts = _split(X, ds.y, cuts)
    problem = make_problem(_LOSS[loss], K.L1, alpha, fit_intercept, parts)
    obj = Objective(get_loss(loss), get_penalty("l1", alpha), fit_intercept=fit_intercept)
    return X, ds.y, parts, problem, obj, reference_optimum(obj, X, ds.y)


def _rel(X, y, obj, ref, w):
    return float(relative_suboptimality(obj.value(w, X, y), ref.f_star))


@pytest.mark.parametrize("hessian", ["full", "local", "giant"])
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_log_loss_l1_certified(hessian, fit_intercept, sparse):
    X, y, parts, problem, obj, ref = _setup("log_loss", fit_intercept, sparse)
    # "giant": local directions only (no working-set Hessian), thresholded-average combine;
    # it converges linearly: its l1 certificate (which needs the gradient right to
    # tol * alpha) is slower to tighten than the objective
    params = ({"hessian": "local", "active_max": 0} if hessian == "giant"
              else {"hessian": hessian})
    tol = 1e-5 if hessian == "giant" else 1e-8
    w, snaps, _, done = simulate("prox-newton", problem, parts, {**params, "tol": tol},
                                 max_time=60.0)
    assert done  # stopped by the certificate, not the clock
    assert snaps[0]["rel_gap"] <= tol
    assert _rel(X, y, obj, ref, w) <= 1e-8
    # the certificate is a true bound on the suboptimality
    assert _rel(X, y, obj, ref, w) <= snaps[0]["rel_gap"] + 1e-12
    assert np.allclose(w, ref.w, atol=1e-3)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_hinge_l1_smoothed(fit_intercept):
    X, y, parts, problem, obj, ref = _setup("hinge", fit_intercept)
    w, snaps, _, _ = simulate("prox-newton", problem, parts, {"tol": 1e-12}, max_time=60.0,
                              max_rounds=300)
    r = _rel(X, y, obj, ref, w)
    assert r <= 1e-4
    assert r <= snaps[0]["rel_gap"] + 1e-12  # the gap measures the true hinge objective


def test_survives_dropped_messages_and_a_restart():
    X, y, parts, problem, obj, ref = _setup("log_loss", True)
    w, snaps, _, done = simulate("prox-newton", problem, parts, {"tol": 1e-8}, max_time=60.0,
                                 drop=0.2, restart={1: 7, 2: 30}, seed=1)
    assert done
    assert _rel(X, y, obj, ref, w) <= 1e-8


def test_cd_kernels_match_a_direct_solve():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 6))
    D = rng.uniform(0.1, 1.0, 40)
    G = rng.normal(size=7)
    w = rng.normal(size=7)
    H = np.zeros((7, 7))
    At = np.hstack([A, np.ones((40, 1))])
    H[:] = At.T @ (D[:, None] * At)
    # alpha = 0: the model's minimizer solves H d = -G exactly
    d = np.zeros(7)
    C.cd_dense(H, G, w, 6, 0.0, 0.0, 10_000, 1e-30, d)
    assert np.allclose(d, np.linalg.solve(H, -G), atol=1e-8)
    csc = sp.csc_matrix(A)
    d2, q = np.zeros(7), np.zeros(40)
    C.cd_subproblem(csc.data, csc.indices.astype(np.int64), csc.indptr.astype(np.int64), True,
                    D, G, np.zeros(7), w, 0.0, 10_000, 1e-30, d2, q)
    assert np.allclose(d2, d, atol=1e-8)
    assert np.allclose(q, At @ d2)


def test_auto_picks_prox_newton_for_l1():
    assert choose_solver("log_loss", "l1", 1000, 10, False) == "prox-newton"
    assert choose_solver("log_loss", "l1", 1000, 10, True) == "prox-newton"
    assert choose_solver("hinge", "l1", 1000, 10, True) == "prox-newton"


@pytest.mark.timeout(180)
def test_default_l1_fit_on_a_cluster_stops_certified(client):
    """A default ``fit()`` of an l1 problem on dask chunks of unequal size ends certified."""
    import dask.array as da

    from asip.algorithms import AsipClassifier

    ds = make_logistic(1500, 12, n_zero=4, random_state=5)
    X = da.from_array(ds.X, chunks=((1000, 500), 12))
    y = da.from_array(ds.y, chunks=((1000, 500),))
    clf = AsipClassifier(penalty="l1", alpha=1e-3, tol=1e-7, max_time=60.0).fit(X, y)
    assert clf.solver_ == "prox-newton"
    assert clf.stopped_by_ == "tol"
    obj = Objective(get_loss("log_loss"), get_penalty("l1", 1e-3), fit_intercept=True)
    ref = reference_optimum(obj, ds.X, ds.y)
    w = np.append(clf.coef_.ravel(), clf.intercept_)
    assert _rel(ds.X, ds.y, obj, ref, w) <= 1e-7


def test_weighted_gram_matches_scipy():
    rng = np.random.default_rng(1)
    A = sp.random(30, 5, density=0.4, random_state=2, format="csr")
    D = rng.uniform(size=30)
    H = np.zeros((6, 6))
    C.csr_weighted_gram(A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64), D, True,
                        H)
    At = np.hstack([A.toarray(), np.ones((30, 1))])
    assert np.allclose(H, At.T @ (D[:, None] * At))


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_lasso_certified(fit_intercept):
    from asip.algorithms import make_regression

    ds = make_regression(900, 12, n_zero=4, random_state=1)
    parts = _split(ds.X, ds.y, (300, 700))
    problem = make_problem(K.SQUARED, K.L1, 5e-2, fit_intercept, parts)
    obj = Objective(get_loss("squared_error"), get_penalty("l1", 5e-2),
                    fit_intercept=fit_intercept)
    ref = reference_optimum(obj, ds.X, ds.y)
    w, snaps, _, done = simulate("prox-newton", problem, parts, {"tol": 1e-6}, max_time=60.0)
    assert done and snaps[0]["rel_gap"] <= 1e-6
    assert _rel(ds.X, ds.y, obj, ref, w) <= 1e-6
