"""``lbfgs`` with the Hessian certificate (`_newton_cert`), in one process (`_sim`).

At ``alpha = 1/n`` the free duality gap is ``||grad P||^2 / (2 alpha)``, ~10^4 times the
suboptimality: the Hessian's bound certifies the same ``tol`` rounds sooner, and the model
it certifies is within ``tol`` of scipy's optimum (a true bound). It also certifies what
the free dual point cannot (weighted least squares with an intercept).
"""

from __future__ import annotations

import numpy as np
import pytest
from _sim import simulate, split_rows

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, make_regression,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_certifies_tol_in_fewer_rounds_at_alpha_one_over_n(fit_intercept):
    ds = make_logistic(20_000, 20, random_state=3)
    parts = split_rows(ds.X, ds.y, 2)
    alpha = 1.0 / 20_000
    pb = make_problem(K.LOGISTIC, K.L2, alpha, fit_intercept, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), fit_intercept)
    ref = reference_optimum(obj, ds.X, ds.y)
    rounds = {}
    for hessian in (True, False):
        w, snaps, _, done = simulate("lbfgs", pb, parts, {"tol": 1e-3, "hessian_cert": hessian},
                                     max_time=20, round_time=0.01)
        assert done
        rel = relative_suboptimality(obj.value(w, ds.X, ds.y), ref.f_star)
        cert = max((s for s in snaps if s is not None), key=lambda s: s["k"])
        assert rel <= cert["rel_gap"] <= 1e-3  # the certificate bounds the true suboptimality
        rounds[hessian] = max(s["k"] for s in snaps if s is not None)
    assert rounds[True] + 2 <= rounds[False], rounds


def test_certifies_weighted_least_squares_with_an_intercept():
    """The free dual point has no construction for it (`_primal_cert.certifiable`)."""
    ds = make_regression(6000, 10, random_state=4)
    parts = split_rows(ds.X, ds.y, 3)
    rng = np.random.default_rng(0)
    weights = [rng.uniform(0.5, 2.0, len(yb)) for _, yb in parts]
    pb = make_problem(K.SQUARED, K.L2, 1e-3, True, parts)
    w, snaps, _, done = simulate("lbfgs", pb, parts, {"tol": 1e-8}, max_time=20,
                                 weights=weights)
    assert done
    sw = np.concatenate(weights)
    Z = np.column_stack([ds.X, np.ones(len(ds.y))])
    reg = np.r_[np.full(10, 1e-3), 0.0]
    H = (Z.T * sw) @ Z / len(sw) + np.diag(reg)  # the weighted optimum, exactly
    w_star = np.linalg.solve(H, Z.T @ (sw * ds.y) / len(sw))

    def P(v):
        return 0.5 * np.mean(sw * (Z @ v - ds.y) ** 2) + 0.5 * float(reg @ (v * v))

    cert = max((s for s in snaps if s is not None), key=lambda s: s["k"])
    assert (P(w) - P(w_star)) / P(w_star) <= cert["rel_gap"] <= 1e-8


def test_auto_takes_the_hessian_beyond_32_coefficients_only_where_nothing_else_certifies():
    ds = make_regression(2000, 40, random_state=6)
    parts = split_rows(ds.X, ds.y, 2)
    weights = [np.random.default_rng(i).uniform(0.5, 2.0, len(yb)) for i, (_, yb) in
               enumerate(parts)]
    for fit_intercept in (True, False):  # weighted least squares: uncertifiable / certifiable
        pb = make_problem(K.SQUARED, K.L2, 1e-3, fit_intercept, parts)
        _, snaps, _, done = simulate("lbfgs", pb, parts, {"tol": 1e-8}, max_time=10,
                                     weights=weights)
        assert done
        states_took = [s.get("rel_gap") for s in snaps if s is not None]
        assert states_took and max(states_took) <= 1e-8


def test_refuses_an_unknown_hessian_cert():
    from asip.algorithms import _lbfgs as L

    pb = make_problem(K.LOGISTIC, K.L2, 1e-3, False, [(np.ones((2, 3)), np.ones(2))])
    with pytest.raises(ValueError, match="hessian_cert"):
        L.validate(pb, {**L.DEFAULTS, "hessian_cert": "yes"})


@pytest.mark.timeout(120)
def test_on_the_cluster_weighted_least_squares_is_certified_and_its_trace_is_exact(client):
    """Through the real channel (the ``p x p`` Hessian in a round's message): a weighted
    least-squares fit with an intercept stops certified, ``gap_`` bounds its true
    suboptimality, and every trace point the solver knew equals the objective there."""
    from asip.algorithms import AsipRegressor

    ds = make_regression(3000, 6, random_state=7)
    sw = np.random.default_rng(2).uniform(0.5, 2.0, size=len(ds.y))
    reg = AsipRegressor(solver="lbfgs", alpha=1e-3, tol=1e-9, max_time=30.0,
                        solver_params={"hessian_cert": True}).fit(ds.X, ds.y, sample_weight=sw)
    assert reg.stopped_by_ == "tol" and reg.gap_ is not None
    s = sw * len(sw) / sw.sum()  # the estimator's normalized weights
    Z = np.column_stack([ds.X, np.ones(len(ds.y))])
    pen = np.r_[np.full(6, 1e-3), 0.0]
    w_star = np.linalg.solve((Z.T * s) @ Z / len(s) + np.diag(pen), Z.T @ (s * ds.y) / len(s))

    def P(v):
        return 0.5 * np.mean(s * (Z @ v - ds.y) ** 2) + 0.5 * float(pen @ (v * v))

    w = np.append(reg.coef_, reg.intercept_)
    assert 0.0 <= P(w) - P(w_star) <= reg.gap_ <= 1e-9 * P(w)
    np.testing.assert_allclose(reg.trace_[-1, 1], P(w), rtol=1e-10)
