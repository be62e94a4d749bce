"""``prox-newton``'s wide-model path (local Hessians): the l1 path and the working-set Newton step.

In one process (`_sim`), against scikit-learn/scipy's certified optimum: the
working set never leaves out a coordinate that is nonzero at the optimum (the
support found equals the optimum's), the certified gap bounds the true
suboptimality, and a restarted operator (and dropped messages) in the middle of
working-set rounds leave the fit certified.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import simulate

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms import _prox_newton as PN
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._solvers import get_algorithm

pytestmark = pytest.mark.timeout(120)

LOCAL = {"hessian": "local"}  # the wide-model mode, forced on a small problem


def _setup(fit_intercept=False, alpha=2e-3):
    ds = make_logistic(1500, 40, n_zero=25, random_state=7)
    X = sp.csr_matrix(ds.X)
    parts = [(X[:400], ds.y[:400]), (X[400:1100], ds.y[400:1100]), (X[1100:], ds.y[1100:])]
    problem = make_problem(K.LOGISTIC, K.L1, alpha, fit_intercept, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l1", alpha), fit_intercept=fit_intercept)
    return X, ds.y, parts, problem, obj, reference_optimum(obj, X, ds.y)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_working_set_finds_the_optimum_support_and_its_gap_is_a_bound(fit_intercept):
    X, y, parts, problem, obj, ref = _setup(fit_intercept)
    w, snaps, _, done = simulate("prox-newton", problem, parts, {**LOCAL, "tol": 1e-8},
                                 max_time=60.0)
    assert done  # the certificate stopped it
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= snaps[0]["rel_gap"] + 1e-12 and snaps[0]["rel_gap"] <= 1e-8
    d = problem.n_features
    support = np.flatnonzero(np.abs(ref.w[:d]) > 1e-6)
    assert 0 < support.size < d  # a real l1 problem: some coefficients are zero
    np.testing.assert_array_equal(np.flatnonzero(np.abs(w[:d]) > 1e-6), support)
    np.testing.assert_allclose(w, ref.w, atol=1e-4)


def test_working_set_at_the_optimum_keeps_its_support_and_only_slack_zeros_out():
    """Screening at w*: every nonzero of w* is in; every coordinate left out is a zero of
    w* whose optimality condition |G_j| <= alpha holds with room (active_margin)."""
    X, y, parts, problem, obj, ref = _setup()
    algo = get_algorithm("prox-newton")
    params = algo.merge(LOCAL)
    state = algo.init(problem, local_data(*parts[0], problem, 0), params)
    w = ref.w.copy()
    z = X @ w
    G = -(X.T @ (y / (1.0 + np.exp(y * z)))) / X.shape[0]  # the log-loss gradient at w*
    state.mem.update(w=w, G=G, l1=problem.alpha)
    S = PN._working_set(state)
    assert S is not None
    left_out = np.setdiff1d(np.arange(problem.n_features), S)
    assert np.all(w[left_out] == 0.0)
    assert np.all(np.abs(G[left_out]) < params["active_margin"] * problem.alpha)
    assert set(np.flatnonzero(w)) <= set(S)


def test_restart_and_drops_during_working_set_rounds_stay_certified():
    X, y, parts, problem, obj, ref = _setup(True)
    w, snaps, _, done = simulate("prox-newton", problem, parts, {**LOCAL, "tol": 1e-8},
                                 max_time=60.0, drop=0.2, restart={1: 8, 2: 25}, seed=2)
    assert done
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= 1e-8


def test_too_large_working_sets_fall_back_to_local_directions_certified_at_alpha():
    X, y, parts, problem, obj, ref = _setup()
    # active_max 5 < the support: every direction is the thresholded average of local ones
    w, snaps, _, done = simulate("prox-newton", problem, parts,
                                 {**LOCAL, "active_max": 5, "tol": 1e-5}, max_time=60.0)
    assert done
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= snaps[0]["rel_gap"] + 1e-12 and r <= 1e-5


def test_forward_point_soft_thresholds_to_the_cd_solution_and_combines_exactly():
    """At an exact CD solution z = S(u, l1 / H) coordinate-wise (`_cd_kernels.forward_point`),
    so partitions that agree on the model give back that solution when combined."""
    from asip.algorithms import _cd_kernels as C

    rng = np.random.default_rng(1)
    A = sp.random(60, 12, density=0.4, random_state=1, format="csc")
    D = rng.uniform(0.1, 1.0, 60)
    G, w, extra = rng.normal(size=13) * 0.3, rng.normal(size=13), rng.uniform(0, 0.5, 13)
    w[:4] = 0.0
    l1 = 0.2
    args = (A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64), True, D)
    d, q = np.zeros(13), np.zeros(60)
    C.cd_subproblem(*args, G, extra, w, l1, 100_000, 1e-30, d, q)
    H = np.zeros(13)
    C.csc_sq_rmatvec(A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64), D, H)
    H[12] = D.sum()
    H += extra
    u = np.empty(13)
    C.forward_point(*args, G, extra, H, w, d, q, u)
    z = w + d
    thr = l1 / H[:12]
    np.testing.assert_allclose(z[:12], np.sign(u[:12]) * np.maximum(np.abs(u[:12]) - thr, 0.0),
                               atol=1e-9)
    np.testing.assert_allclose(z[12], u[12], atol=1e-9)  # the intercept: no threshold
    assert np.count_nonzero(z[:12] == 0.0) > 0  # the l1 term bites somewhere
    problem = make_problem(K.LOGISTIC, K.L1, l1, True, [(A.tocsr(), np.ones(60))] * 2)
    part = {"hu": H * u, "hh": H}
    np.testing.assert_allclose(PN._prox_combined(problem, [part, part], l1), z, atol=1e-9)


class CountingSparse:
    """`scipy.sparse` for `_prox_newton`, counting the matrices it builds column-wise (the
    working set's slice starts from one)."""

    def __init__(self):
        self.built = 0

    def __getattr__(self, name):
        return getattr(sp, name)

    def csc_matrix(self, *args, **kwargs):
        self.built += 1
        return sp.csc_matrix(*args, **kwargs)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_working_hessian_slices_once_per_working_set(monkeypatch, fit_intercept):
    """The working set's Hessian is exact at every call (``D`` changes every iteration) while
    its columns are sliced only when the set changes."""
    X, y, parts, problem, *_ = _setup(fit_intercept)
    algo = get_algorithm("prox-newton")
    state = algo.init(problem, local_data(*parts[1], problem, 1), algo.merge(LOCAL))
    counting = CountingSparse()
    monkeypatch.setattr(PN, "sp", counting)
    Xk, rng, d = parts[1][0].toarray(), np.random.default_rng(0), problem.n_features
    one = np.array([3, 8, 9, 21, 33] + ([d] if fit_intercept else []), dtype=np.int64)
    other = np.array([0, 8, 39] + ([d] if fit_intercept else []), dtype=np.int64)
    for S, built in ((one, 1), (one, 1), (one.copy(), 1), (other, 2), (one, 3), (one, 3)):
        state.mem["D"] = rng.random(Xk.shape[0])
        cols = Xk[:, S[S < d]]
        if fit_intercept:
            cols = np.hstack([cols, np.ones((Xk.shape[0], 1))])
        np.testing.assert_allclose(PN._working_hessian(state, S),
                                   cols.T @ (state.mem["D"][:, None] * cols), rtol=1e-12)
        assert counting.built == built
