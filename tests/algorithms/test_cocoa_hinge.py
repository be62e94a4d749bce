"""asip-cocoa on hinge-l2, SDCA's home ground, in one process (`_sim`): a certified fit on
sparse data split unequally reaches liblinear's optimum within its gap, and the one-pass
certificate answer (``g`` from the kept share ``u``) equals the two-pass one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import simulate
from sklearn.svm import LinearSVC

from asip.algorithms import Objective, get_loss, get_penalty, reference_optimum
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem
from asip.algorithms._certificate import certificate_parts

ALPHA = 0.05


def _sparse_svm(n=3000, d=60, seed=5):
    """Binary-feature rows like a9a's (about 8 nonzeros in 60), labels from a noisy plane."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=8 / d, format="csr", random_state=rng,
                  data_rvs=lambda k: np.ones(k))
    w = rng.normal(size=d)
    y = np.where(X @ w + 0.5 * rng.normal(size=n) > np.median(X @ w), 1.0, -1.0)
    return X, y


def _primal(X, y, w):
    return float(np.mean(np.maximum(0.0, 1.0 - y * (X @ w))) + 0.5 * ALPHA * w @ w)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_certified_hinge_fit_reaches_the_optimum_within_its_gap():
    X, y = _sparse_svm()
    n = X.shape[0]
    bounds = [0, 1900, 2400, n]  # unequal partitions, as ordinary chunking makes them
    parts = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(K.HINGE, K.L2, ALPHA, False, parts)
    w, snaps, rounds, done = simulate("asip-cocoa", problem, parts,
                                      {"tol": 1e-7, "seed": 0, "cert_period": 0.0,
                                       "local_solver": "sdca"}, max_time=20)
    assert done, f"not certified after {rounds} rounds: {snaps[0].get('rel_gap')}"
    lead = snaps[0]
    np.testing.assert_array_equal(w, lead["certified"])
    f = _primal(X, y, w)
    assert abs(lead["primal"] - f) <= 1e-12 * abs(f)  # the certified P is P(w returned)
    assert lead["rel_gap"] <= 1e-7
    # ground truth: the exact SVM dual QP (its own gap bounds its precision) ...
    ref = reference_optimum(Objective(get_loss("hinge"), get_penalty("l2", ALPHA), False), X, y)
    assert (f - ref.f_star) / ref.f_star <= lead["rel_gap"] + ref.relative_precision
    # ... and scikit-learn's liblinear (dual CD; C = 1 / (alpha n) scales asip's objective)
    svc = LinearSVC(loss="hinge", C=1.0 / (ALPHA * n), fit_intercept=False, dual=True,
                    tol=1e-10, max_iter=100_000).fit(X, y)
    f_svc = _primal(X, y, svc.coef_.ravel())
    assert f - f_svc <= lead["rel_gap"] * f_svc  # the certified fit is not worse than it
    assert f_svc - f <= 1e-6 * f  # and liblinear agrees with it


@pytest.mark.parametrize("kind", ["csr", "dense"])
def test_one_pass_answer_equals_two_pass(kind):
    X, y = _sparse_svm(n=400, d=30, seed=2)
    Xk = X if kind == "csr" else X.toarray()
    rng = np.random.default_rng(0)
    dual = y * rng.uniform(0.0, 1.0, size=len(y))  # feasible: b = y a in [0, 1]
    w = rng.normal(size=31)
    g = np.asarray(X.T @ dual).ravel()
    full = certificate_parts(Xk, y, w, K.HINGE, True, dual, penalized_intercept=True)
    fast = certificate_parts(Xk, y, w, K.HINGE, True, dual, penalized_intercept=True, g=g)
    assert fast.loss_sum == full.loss_sum and fast.conj_sum == full.conj_sum
    np.testing.assert_allclose(fast.g, full.g, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="g is taken only"):
        certificate_parts(Xk, y, w, K.HINGE, True, None, penalized_intercept=True, g=g)
