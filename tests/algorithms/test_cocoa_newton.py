"""asip-cocoa's ``local_solver="newton"`` without a cluster (the round-robin stand-in `_sim`).

Convergence to the reference optimum for each smooth loss, dense and CSR, unequal
partitions, with an unpenalized intercept (scikit-learn's problem); the certified gap
bounds the true suboptimality; the round count does not grow with
``max ||x_i||^2 / (alpha n)`` (SDCA's does); bad choices are refused clearly.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import simulate

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, make_regression,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem
from asip.algorithms._cocoa_newton import choose_local_solver, sdca_damping

NAMES = {K.LOGISTIC: "log_loss", K.SQUARED: "squared_error"}


def _setup(loss, kind="dense", fit_intercept=False, sizes=(700, 100, 400), d=15, alpha=1e-2,
           seed=3):
    n = sum(sizes)
    ds = (make_regression(n, d, random_state=seed) if loss == K.SQUARED
          else make_logistic(n, d, random_state=seed))
    X = np.asarray(ds.X, dtype=np.float64).copy()
    if kind == "csr":
        X[np.random.default_rng(seed).random(X.shape) < 0.6] = 0.0
        X = sp.csr_matrix(X)
    bounds = np.cumsum((0,) + tuple(sizes))
    parts = [(X[a:b], ds.y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(loss, K.L2, alpha, fit_intercept, parts)
    # the Newton local solver leaves the intercept unpenalized, as `Objective` does
    Xref = X.toarray() if sp.issparse(X) else X
    obj = Objective(get_loss(NAMES[loss]), get_penalty("l2", alpha), fit_intercept)
    return Xref, ds.y, parts, problem, obj, reference_optimum(obj, Xref, ds.y)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED])
def test_newton_converges_and_its_gap_is_a_certificate(loss, kind, fit_intercept):
    X, y, parts, problem, obj, ref = _setup(loss, kind, fit_intercept)
    w, snaps, rounds, done = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 1e-9, "seed": 0, "cert_period": 0.0, "local_solver": "newton"},
        max_time=20, max_rounds=200)
    assert done, f"not certified after {rounds} rounds: {snaps[0].get('rel_gap')}"
    lead = snaps[0]
    np.testing.assert_array_equal(w, lead["certified"])
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    # the gap bounds the true suboptimality (to the reference's own precision)
    assert r <= max(lead["rel_gap"], 0.0) + ref.relative_precision + 1e-12
    assert r <= 1e-9 + ref.relative_precision
    assert rounds <= 60  # a few Newton rounds, not thousands of SDCA slices


def test_rounds_do_not_grow_with_the_sdca_condition_number():
    """Dense, well-conditioned, tiny alpha: max ||x||^2 / (alpha n) = 20 * n / n... is large
    (SDCA crawls); Newton's round count stays at a handful (a lockstep count, not a timing)."""
    out = {}
    for alpha in (1e-2, 1e-5):
        X, y, parts, problem, obj, ref = _setup(K.LOGISTIC, sizes=(1500, 1500), d=20,
                                                alpha=alpha)
        for solver in ("newton", "sdca"):
            w, snaps, rounds, done = simulate(
                "asip-cocoa", problem, parts,
                {"tol": 1e-12, "seed": 0, "cert_period": 0.0, "local_solver": solver},
                max_rounds=12)
            out[alpha, solver] = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert out[1e-5, "newton"] <= 1e-8 + ref.relative_precision
    assert out[1e-2, "newton"] <= 1e-8 + ref.relative_precision
    assert out[1e-5, "sdca"] > 100 * out[1e-5, "newton"]  # what Newton is for


def test_restart_and_drops_keep_the_newton_gap_valid():
    X, y, parts, problem, obj, ref = _setup(K.LOGISTIC)
    w, snaps, rounds, done = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 1e-8, "seed": 1, "cert_period": 0.0, "local_solver": "newton"},
        max_time=20, restart={1: 3, 0: 6}, drop=0.2)
    assert done and rounds > 6, f"not certified after {rounds} rounds"
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= min(max(snaps[0]["rel_gap"], 0.0) + ref.relative_precision + 1e-12, 1e-8)


def test_local_solver_choice_and_refusals():
    assert choose_local_solver("auto", K.LOGISTIC, 100, None) == "newton"
    assert choose_local_solver("auto", K.SQUARED, 500, None) == "newton"
    assert choose_local_solver("auto", K.LOGISTIC, 501, None) == "sdca"
    assert choose_local_solver("auto", K.HINGE, 10, None) == "sdca"
    sparse = sp.random(60, 15, density=0.1, format="csr", random_state=0)
    kernel = (sparse.data, sparse.indices, sparse.indptr)
    # sparse and smooth: Newton at any density and damping (`test_cocoa_newton_sparse_auto`)
    assert choose_local_solver("auto", K.LOGISTIC, 15, kernel) == "newton"
    assert choose_local_solver("auto", K.LOGISTIC, 15, kernel, damping=0.5) == "newton"
    assert choose_local_solver("auto", K.LOGISTIC, 15, kernel, damping=2.0) == "newton"
    assert choose_local_solver("auto", K.HINGE, 15, kernel, damping=2.0) == "sdca"
    assert choose_local_solver("auto", K.LOGISTIC, 501, None, damping=2.0) == "sdca"
    # a9a's figures at 16 partitions (mean ||x||^2 = 13.9, n = 32561): alpha = 1/n and 1e-4
    assert sdca_damping(16, 13.9, 1.0 / 32561, 32561) == pytest.approx(222.4)
    assert sdca_damping(16, 13.9, 1e-4, 32561) > 1.0 > sdca_damping(16, 13.9, 0.1, 32561)
    X, y, parts, problem, obj, ref = _setup(K.LOGISTIC, sizes=(30, 30))
    with pytest.raises(ValueError, match="local_solver must be"):
        simulate("asip-cocoa", problem, parts, {"local_solver": "lbfgs"}, max_rounds=1)
    # hinge takes Newton on its smoothed surrogate when asked (`test_cocoa_newton_hinge`)
    assert choose_local_solver("newton", K.HINGE, 15, None) == "newton"
    with pytest.raises(ValueError, match="needs log_loss, squared_error or hinge"):
        choose_local_solver("newton", 7, 15, None)
    with pytest.raises(ValueError, match="hessian_rows must be a positive integer"):
        simulate("asip-cocoa", problem, parts, {"hessian_rows": 0}, max_rounds=1)


def test_auto_is_decided_once_for_the_whole_data():
    from asip.algorithms._cocoa import resolve_local_solver

    X, y, parts, problem, obj, ref = _setup(K.LOGISTIC, sizes=(30, 30))
    params = {"local_solver": "auto"}
    assert resolve_local_solver(params, problem, X, False)["local_solver"] == "newton"
    sparse = sp.random(60, 15, density=0.1, format="csr", random_state=0)
    # sparse smooth data: Newton, damped or not (`test_cocoa_newton_sparse_auto`)
    calm = problem._replace(alpha=10.0)
    assert resolve_local_solver(params, calm, sparse, True)["local_solver"] == "newton"
    assert resolve_local_solver({**params, "sigma": 1e4}, calm, sparse, True)[
        "local_solver"] == "newton"
    assert resolve_local_solver(params, problem, sparse, True)["local_solver"] == "newton"
    dense_csr = sp.csr_matrix(X)
    assert resolve_local_solver(params, problem, dense_csr, True)["local_solver"] == "newton"
    hinge = problem._replace(loss=K.HINGE)
    # hinge: SDCA unless its steps are damped on small dense data (`choose_local_solver`)
    assert resolve_local_solver(params, calm._replace(loss=K.HINGE), X, False)[
        "local_solver"] == "sdca"
    assert resolve_local_solver(params, hinge, X, False)["local_solver"] == "newton"
    assert resolve_local_solver(params, hinge, sparse, True)["local_solver"] == "sdca"
    assert resolve_local_solver({"local_solver": "sdca"}, problem, X, False) == {
        "local_solver": "sdca"}


def test_heterogeneous_partitions_converge():
    """Rows sorted by label (each partition sees mostly one class, as sorted files chunk):
    the peers' pushed Hessians keep the local models right where a partition's own
    Hessian would not stand in for its peers'."""
    ds = make_logistic(3000, 20, random_state=0)
    order = np.argsort(ds.y, kind="stable")
    X, y = ds.X[order], ds.y[order]
    parts = [(X[:1000], y[:1000]), (X[1000:2200], y[1000:2200]), (X[2200:], y[2200:])]
    alpha = 1e-4
    problem = make_problem(K.LOGISTIC, K.L2, alpha, False, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, X, y)
    w, snaps, rounds, done = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 1e-9, "seed": 0, "cert_period": 0.0, "local_solver": "newton"},
        max_time=20, max_rounds=200)
    assert done, f"not certified after {rounds} rounds: {snaps[0].get('rel_gap')}"
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= max(snaps[0]["rel_gap"], 0.0) + ref.relative_precision + 1e-12


@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED])
def test_unpenalized_intercept_reaches_sklearns_optimum_certified(loss):
    """An offset the intercept must carry (~1.5): the certified model is scikit-learn's
    optimum (intercept unpenalized), and the gap from the balanced duals bounds its error."""
    from sklearn.linear_model import LogisticRegression, Ridge

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1500, 10))
    alpha = 1e-2
    z = X @ rng.standard_normal(10) * 0.3 + 1.5
    if loss == K.LOGISTIC:
        y = np.where(z + rng.standard_normal(1500) > 0, 1.0, -1.0)
        sk = LogisticRegression(C=1.0 / (alpha * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    else:
        y = z + 0.1 * rng.standard_normal(1500)
        sk = Ridge(alpha=alpha * len(y), tol=1e-12).fit(X, y)  # (1/2n)||r||^2 + (alpha/2)|w|^2
    w_sk = np.append(np.ravel(sk.coef_), sk.intercept_)
    parts = [(X[:800], y[:800]), (X[800:1100], y[800:1100]), (X[1100:], y[1100:])]
    problem = make_problem(loss, K.L2, alpha, True, parts)
    obj = Objective(get_loss(NAMES[loss]), get_penalty("l2", alpha), True)
    f_sk = obj.value(w_sk, X, y)
    w, snaps, rounds, done = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 1e-9, "seed": 0, "cert_period": 0.0, "local_solver": "newton"},
        max_time=20, max_rounds=200)
    assert done, f"not certified after {rounds} rounds: {snaps[0].get('rel_gap')}"
    r = float(relative_suboptimality(obj.value(w, X, y), f_sk))
    assert r <= max(snaps[0]["rel_gap"], 0.0) + 1e-12  # the gap bounds the error
    assert abs(w[-1] - w_sk[-1]) <= 1e-3 * abs(w_sk[-1]) and abs(w_sk[-1]) > 1.0
    # the intercept matters here: 10% off it is far from the optimum
    r_pen = float(relative_suboptimality(obj.value(np.append(w[:-1], 0.9 * w[-1]), X, y), f_sk))
    assert r_pen > 100 * max(r, 1e-12)


def test_hessian_goes_out_when_it_moved_and_every_few_rounds():
    """A Newton partition's p x p Hessian is pushed the first time, when it moved by
    `HESSIAN_RTOL`, and every `HESSIAN_EVERY` rounds (not every round: that was most of
    the traffic at 16 partitions); on the wire as its packed upper triangle."""
    from asip.algorithms._cocoa import HESSIAN_EVERY, HESSIAN_RTOL, _hessian_due
    from asip.algorithms._compact import packed_of, sym_fields, sym_of

    clock, H = {}, np.diag([1.0, 2.0, 3.0]) + 0.1
    assert _hessian_due(clock, H)
    assert not _hessian_due(clock, H * (1 + HESSIAN_RTOL / 2))
    moved = H * (1 + 2 * HESSIAN_RTOL)
    assert _hessian_due(clock, moved)
    assert [_hessian_due(clock, moved) for _ in range(HESSIAN_EVERY)] == (
        [False] * (HESSIAN_EVERY - 1) + [True])
    assert np.array_equal(sym_of(packed_of(sym_fields("H", H), "H", 3), 3), H)


def test_newton_iterations_default_follows_round_cost():
    """``newton_iter=None``: 4 iterations where a data pass costs less than the peers'
    models (many small partitions), else 2; an explicit value is kept, and bad ones refused."""
    from asip.algorithms._cocoa import newton_iterations, validate

    assert newton_iterations(None, 15, 124, 28_000) == 4  # a9a at 16 partitions
    assert newton_iterations(None, 1, 23, 325_000) == 2  # ijcnn1 at 2
    assert newton_iterations(None, 1, 100, 1_000_000) == 2  # 20k x 100 dense at 2
    assert newton_iterations(3, 15, 124, 28_000) == 3
    problem = make_problem(K.LOGISTIC, K.L2, 0.1, False, [(np.ones((4, 2)), np.ones(4))])
    from asip.algorithms._cocoa import DEFAULTS
    validate(problem, dict(DEFAULTS))
    with pytest.raises(ValueError, match="newton_iter"):
        validate(problem, {**DEFAULTS, "newton_iter": 0})


def test_solve_with_peers_summed_equals_peer_by_peer():
    """`_newton_round` hands the peers with pushed Hessians to `LocalNewton.solve` as one
    pre-summed term ``(sum H_k, sum H_k w_k)``: the same step as one term per peer."""
    from asip.algorithms._cocoa_newton import LocalNewton

    rng = np.random.default_rng(3)
    n, p = 60, 4
    X, y = rng.standard_normal((n, p)), np.where(rng.random(n) < 0.5, -1.0, 1.0)
    peers = []
    for _ in range(3):
        B = rng.standard_normal((p, p))
        peers.append((rng.standard_normal(p), rng.standard_normal(p), B @ B.T / p, 1.0))
    summed = [(sum(g for g, *_ in peers), None,
               (sum(H for _, _, H, _ in peers), sum(H @ w for _, w, H, _ in peers)), 3.0)]
    out = []
    for arg in (peers, summed):
        solver = LocalNewton(X, y, K.LOGISTIC, False, p, 4 * n, 0.1, 1000, 0)
        out.append(solver.solve(np.zeros(p), arg, 0.0, 3, 1e-10))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-10, atol=1e-12)
