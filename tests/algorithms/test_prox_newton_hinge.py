"""``prox-newton`` on hinge-l1: certified against the exact LP optimum, and the pieces that make it so.

In one process (`_sim`): the certified stop at 1e-3 in both Hessian modes lands
within 1e-3 of the HiGHS optimum and its gap bounds the true suboptimality; the
off-band curvature is a true quadratic majorizer of the smoothed hinge; the
Newton model's duals are feasible lower bounds; ``mu`` never collapses.
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
from asip.algorithms import _model_dual as MD
from asip.algorithms._base import make_problem
from asip.algorithms._certificate import GapParts, gap_from_parts
from asip.algorithms._hinge_smoothing import curvature_floor, next_mu

pytestmark = pytest.mark.timeout(120)


def _problem(fit_intercept=False, sparse=False, alpha=1e-3):
    ds = make_logistic(1200, 15, n_zero=5, random_state=4)
    X = sp.csr_matrix(ds.X) if sparse else ds.X
    parts = [(X[:500], ds.y[:500]), (X[500:], ds.y[500:])]
    problem = make_problem(K.HINGE, K.L1, alpha, fit_intercept, parts)
    obj = Objective(get_loss("hinge"), get_penalty("l1", alpha), fit_intercept=fit_intercept)
    return X, ds.y, parts, problem, obj, reference_optimum(obj, X, ds.y)


@pytest.mark.parametrize(("fit_intercept", "sparse"), [(False, False), (True, True)])
def test_certified_stop_at_1e3_is_within_1e3_of_the_lp_optimum(fit_intercept, sparse):
    X, y, parts, problem, obj, ref = _problem(fit_intercept, sparse)
    w, snaps, _, done = simulate("prox-newton", problem, parts, {"hessian": "full", "tol": 1e-3},
                                 max_time=30.0)
    assert done  # the certificate stopped it, not the clock
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert snaps[0]["rel_gap"] <= 1e-3
    assert r <= 1e-3
    assert r <= snaps[0]["rel_gap"] + 1e-12  # the gap bounds the true suboptimality


def test_local_hessian_mode_reaches_1e3_and_its_gap_is_a_bound():
    """The GIANT-type mode (wide models) gets there too; its certificate lags (see the README)."""
    X, y, parts, problem, obj, ref = _problem(sparse=True)
    w, snaps, _, _ = simulate("prox-newton", problem, parts, {"hessian": "local", "tol": 1e-12},
                              max_time=30.0, max_rounds=3 * 20)
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= 1e-3
    assert r <= snaps[0]["rel_gap"] + 1e-12


def _smoothed_hinge(ym, mu):
    z = 1.0 - ym
    return np.where(z <= 0, 0.0, np.where(z >= mu, z - 0.5 * mu, 0.5 * z * z / mu))


@pytest.mark.parametrize("mu", [1e-3, 0.1, 2.0])
def test_off_band_curvature_majorizes_the_smoothed_hinge(mu):
    """With floor 1, ``phi(z0) + phi'(z0) t + D t^2 / 2 >= phi(z0 + t)`` for every row and step."""
    rng = np.random.default_rng(0)
    y = rng.choice([-1.0, 1.0], 400)
    m = rng.normal(scale=2.0, size=400)
    a, D = np.zeros(400), np.zeros(400)
    C.row_curvature(K.HINGE, m, y, mu, a, D, 1.0)
    assert (D > 0).all()  # no row is flat to the model
    a0, D0 = np.zeros(400), np.zeros(400)
    s0 = C.row_curvature(K.HINGE, m, y, mu, a0, D0, 0.0)
    assert np.array_equal(a, a0)  # the duals are the surrogate's, whatever the floor
    assert ((D0 == 0) | (D0 == D)).all() and (D0 == 0).any()
    f0 = _smoothed_hinge(y * m, mu)
    assert s0 == pytest.approx(f0.sum())
    for t in np.linspace(-6, 6, 241):  # move every margin by t y_i
        model = f0 - a * (t * y) + 0.5 * D * t * t  # phi' = -a
        assert (model >= _smoothed_hinge(y * m + t, mu) - 1e-12).all()


def test_model_duals_are_feasible_lower_bounds():
    X, y, parts, problem, obj, ref = _problem()
    rng = np.random.default_rng(1)
    contributions = []
    for Xb, yb in parts:
        nb = len(yb)
        a = yb * rng.uniform(0, 1, nb)
        dual = MD.model_dual(K.HINGE, a, rng.uniform(0, 5, nb), rng.normal(size=nb), yb)
        assert ((yb * dual >= 0) & (yb * dual <= 1)).all()
        contributions.append(MD.model_dual_fields(Xb, yb, np.zeros(15), K.HINGE, False, dual))
    value = MD.model_dual_value(contributions, np.zeros(15), problem.alpha, K.L1, None)
    assert np.isfinite(value) and value <= ref.f_star + 1e-12
    # the same value as the certificate's own assembly of those parts
    gp = [GapParts(c["md_n"], 0.0, c["md_conj"], c["md_g"]) for c in contributions]
    assert value == pytest.approx(gap_from_parts(gp, np.zeros(15), problem.alpha, K.L1)[1])
    assert MD.best(value, -np.inf, None, value - 1.0) == value
    assert MD.model_dual_value([{}], np.zeros(15), problem.alpha, K.L1, None) == -np.inf


def test_mu_follows_the_gap_but_never_collapses():
    params = {"mu_min": 1e-7, "kappa": 0.1, "mu_shrink": 0.1}
    assert next_mu(1e-2, 1e-9, params) == pytest.approx(1e-3)  # at most 10x per iteration
    assert next_mu(1e-2, 5e-2, params) == pytest.approx(5e-3)  # kappa * gap
    assert next_mu(1e-2, 1.0, params) == 1e-2  # never grows
    assert next_mu(1e-7, 0.0, params) == 1e-7
    assert curvature_floor(None, True) == 0.0 and curvature_floor(None, False) == 1.0
    with pytest.raises(ValueError, match="curv_floor"):
        curvature_floor(-1.0, False)


def test_restarted_operator_learns_the_best_dual_and_the_stop_stays_certified():
    X, y, parts, problem, obj, ref = _problem(fit_intercept=True)
    w, snaps, _, done = simulate("prox-newton", problem, parts, {"hessian": "full", "tol": 1e-3},
                                 max_time=30.0, drop=0.2, restart={1: 9}, seed=2)
    assert done
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= 1e-3
    assert all(np.isfinite(snap["rel_gap"]) for snap in snaps)  # the restarted one's too
    lead = max(snaps, key=lambda snap: snap["k"])  # the one `combine` took w from
    assert r <= lead["rel_gap"] + 1e-12 <= 1e-3 + 1e-12
