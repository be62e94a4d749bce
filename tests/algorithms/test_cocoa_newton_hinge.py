"""asip-cocoa's Newton local solver on hinge-l2 without a cluster (`_sim`): the smoothed
hinge (`_losses.smoothed`) with ``mu`` lowered as the certified *hinge* gap falls.

A fit stops only on the true hinge duality gap, which bounds the true suboptimality; every
partition ends on the same (smallest) ``mu``; the loss math is the one copy in `_losses`;
the Hessian cache is retaken when ``mu`` changes."""

from __future__ import annotations

import numpy as np
import pytest
from _sim import simulate

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _cd_kernels as C
from asip.algorithms import _kernels as K
from asip.algorithms import _losses as L
from asip.algorithms._base import make_problem
from asip.algorithms._cocoa_newton import LocalNewton, choose_local_solver

ALPHA = 0.1  # the benchmark's hinge-l2


def _setup(n_parts, fit_intercept, sort=False, n=3000, d=20, alpha=ALPHA, seed=1):
    ds = make_logistic(n, d, random_state=seed)
    X, y = np.asarray(ds.X, dtype=np.float64), np.asarray(ds.y, dtype=np.float64)
    if sort:  # rows sorted by label, as sorted files chunk: partitions see mostly one class
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
    bounds = np.linspace(0, n, n_parts + 1).astype(int)
    parts = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(K.HINGE, K.L2, alpha, fit_intercept, parts)
    obj = Objective(get_loss("hinge"), get_penalty("l2", alpha), fit_intercept)
    return X, y, parts, problem, obj, reference_optimum(obj, X, y)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("n_parts,sort", [(1, False), (2, False), (4, False), (2, True)])
def test_hinge_newton_certifies_the_true_hinge_gap(n_parts, sort, fit_intercept):
    X, y, parts, problem, obj, ref = _setup(n_parts, fit_intercept, sort)
    w, snaps, rounds, done = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 1e-6, "seed": 0, "cert_period": 0.0, "local_solver": "newton"},
        max_time=30, max_rounds=600, round_time=1e-3)
    assert done, f"not certified after {rounds} rounds: {snaps[0].get('rel_gap')}"
    lead = snaps[0]
    np.testing.assert_array_equal(w, lead["certified"])
    f = obj.value(w, X, y)  # the hinge objective itself, not the surrogate
    assert abs(lead["primal"] - f) <= 1e-12 * abs(f)
    r = float(relative_suboptimality(f, ref.f_star))
    assert r <= lead["rel_gap"] + ref.relative_precision + 1e-12  # the gap is a certificate
    assert lead["rel_gap"] <= 1e-6
    mus = [s["mu"] for s in snaps]
    assert mus[0] < 1.0  # the leader lowered mu from mu0 ...
    assert max(mus) == min(mus) or n_parts == 1  # ... and every partition heard it


def test_smoothed_hinge_is_the_one_copy_and_its_duals_are_feasible():
    assert C._smooth is L.smoothed  # prox-newton's kernels and asip-cocoa's Newton share it
    rng = np.random.default_rng(0)
    m, y = rng.normal(scale=2.0, size=500), np.where(rng.random(500) < 0.5, -1.0, 1.0)
    for mu in (1.0, 1e-2, 1e-5):
        v = L.smooth_value(K.HINGE, m, y, mu)
        hinge = L.loss_value(K.HINGE, m, y)
        assert np.all(v <= hinge + 1e-15) and np.all(hinge - v <= mu / 2 + 1e-15)
        b = -L.smooth_deriv(K.HINGE, m, y, mu) * y
        assert np.all((b >= 0) & (b <= 1))
        assert np.all(np.isfinite(L.loss_conjugate(K.HINGE, -b * y, y)))
        for i in range(0, 500, 37):
            assert (v[i], -b[i] * y[i], L.smooth_curvature(K.HINGE, m[i], y[i], mu)) == \
                L.smoothed(K.HINGE, m[i], y[i], mu)


def test_hessian_is_retaken_when_mu_shrinks_and_mu_only_decreases():
    X, y, parts, problem, obj, ref = _setup(1, False, n=400)
    ln = LocalNewton(X, y, K.HINGE, False, problem.p, 400, ALPHA, 2000, 0, mu=1.0, floor=1.0)
    m = X @ np.full(problem.p, 0.05)
    H1, new1 = ln.hessian_at(m)
    H2, new2 = ln.hessian_at(m)
    assert new1 and not new2
    assert not ln.set_mu(2.0) and ln.mu == 1.0  # a larger mu is never adopted
    assert ln.set_mu(0.1) and ln.mu == 0.1
    H3, new3 = ln.hessian_at(m)
    assert new3 and not np.allclose(H3, H1)


def test_newton_takes_hinge_and_refuses_unknown_choices():
    assert choose_local_solver("newton", K.HINGE, 10, None) == "newton"
    # "auto" keeps SDCA for hinge unless SDCA is damped on small dense data (skin_nonskin:
    # damping ~5), measured, see `choose_local_solver`
    assert choose_local_solver("auto", K.HINGE, 10, None) == "sdca"
    assert choose_local_solver("auto", K.HINGE, 3, None, damping=4.0) == "newton"
    with pytest.raises(ValueError, match="local_solver must be"):
        choose_local_solver("lbfgs", K.HINGE, 10, None)
    X, y, parts, problem, obj, ref = _setup(2, False, n=200)
    with pytest.raises(ValueError, match="mu_shrink must be a positive number <= 1"):
        simulate("asip-cocoa", problem, parts, {"local_solver": "newton", "mu_shrink": 2.0},
                 max_rounds=1)
    with pytest.raises(ValueError, match="mu0 must be a positive number"):
        simulate("asip-cocoa", problem, parts, {"local_solver": "newton", "mu0": 0},
                 max_rounds=1)
