"""Regression tests for the solver fixes of issue 12: each failed before its fix. No cluster.

Driven by the round-robin stand-in for the runtime (`_sim.simulate`), on small problems,
with budgets in work (`WORK`: a fixed number of inner steps per ``local_step`` and a
simulated clock, see `_sim`), so a loaded machine makes a run slower, never shorter.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from _sim import simulate

from asip.algorithms import (Objective, get_algorithm, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem


#: three 2 ms slices a round on the simulated clock; 256 inner steps per local_step
WORK = {"chunk": 256, "round_time": 0.006, "max_time": float("inf")}


def unequal_problem(penalty=K.L1, alpha=1e-3):
    """Logistic data in 4 partitions of 1000, 1000, 1000 and 256 rows (as 10,000 x 3 + 2,561),
    sorted by the first feature so that every partition sees different data."""
    ds = make_logistic(3256, 20, n_zero=3, random_state=1)
    order = np.argsort(ds.X[:, 0])
    X, y = ds.X[order], ds.y[order]
    b = np.cumsum([0, 1000, 1000, 1000, 256])
    parts = [(X[b[i]:b[i + 1]], y[b[i]:b[i + 1]]) for i in range(4)]
    problem = make_problem(K.LOGISTIC, penalty, alpha, False, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l1" if penalty == K.L1 else "l2", alpha))
    return X, y, parts, problem, obj, reference_optimum(obj, X, y)


def test_hogwild_uses_one_eta0_so_unequal_partitions_keep_their_weight():
    X, y, parts, problem, obj, ref = unequal_problem()
    algo = get_algorithm("asip-hogwild")
    params = algo.merge({"seed": 0})
    states = [algo.init(problem, local_data(Xb, yb, problem, i), params)
              for i, (Xb, yb) in enumerate(parts)]
    assert len({s.eta0 for s in states}) == 1  # the weight w_i is not cancelled
    assert states[3].weight < 0.5 * states[0].weight
    # the fixed point is the optimum (with eta0 / w_i: ~2e-3 here, whatever the budget); a
    # wall-time budget (1.5 s) once ended at 6.4e-4 in CI; 100 rounds of fixed work: 2.0e-5
    w, *_ = simulate("asip-hogwild", problem, parts, {"seed": 0}, max_rounds=100, **WORK)
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= 1e-3, r


def test_gd_spends_no_data_passes_in_setup_and_converges_by_backtracking(monkeypatch):
    """Data passes per partition until gd's own stopping test fires: < 50 in all (the power
    iteration alone took 50), with every operator ending on the identical model."""
    from asip.algorithms import _gd

    passes = [0]
    real_grad, real_power = K.loss_grad, K.power_sqnorm

    def counting_grad(*args):
        passes[0] += 1
        return real_grad(*args)

    def counting_power(X, n_coef, fi, n_iter, rng):
        passes[0] += n_iter
        return real_power(X, n_coef, fi, n_iter, rng)

    monkeypatch.setattr(_gd.K, "loss_grad", counting_grad)
    monkeypatch.setattr(_gd.K, "power_sqnorm", counting_power, raising=False)
    ds = make_logistic(1500, 20, n_zero=3, random_state=1)
    parts = [(ds.X[i::3], ds.y[i::3]) for i in range(3)]
    problem = make_problem(K.LOGISTIC, K.L2, 1e-2, True, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", 1e-2), True)
    ref = reference_optimum(obj, ds.X, ds.y)
    w, snaps, _, done = simulate("gd", problem, parts, {"tol": 1e-6}, max_time=30.0)
    assert done
    assert passes[0] / 3 < 50, passes[0] / 3
    assert float(relative_suboptimality(obj.value(w, ds.X, ds.y), ref.f_star)) <= 1e-9
    assert all(np.array_equal(s["w"], snaps[0]["w"]) for s in snaps)


def test_admm_default_rho_follows_alpha_and_pays_off_on_a9a():
    """The l2 default is sqrt(mu L)-type; on a9a with alpha 1e-4 the alpha-blind default left
    asip-admm at 3e-2 after 100 rounds (4 partitions), the new one reaches ~2e-4."""
    from _problems import dataset

    from asip.algorithms._admm_core import default_rho

    ds = dataset("real", "log_loss-l2")  # a9a subsample; skips without the shared data
    parts = [(ds.X[i::4], ds.y[i::4]) for i in range(4)]
    rhos = [default_rho(make_problem(K.LOGISTIC, K.L2, a, True, parts), "sqrt")
            for a in (1e-2, 1e-4)]
    assert rhos[0] == pytest.approx(10 * rhos[1])
    problem = make_problem(K.LOGISTIC, K.L2, 1e-4, True, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", 1e-4), True)
    ref = reference_optimum(obj, ds.X, ds.y)
    w, *_ = simulate("asip-admm", problem, parts, {"seed": 0, "push_period": 0.0, "rho_rule": "sqrt"},
                     max_time=60.0, max_rounds=100)
    assert float(relative_suboptimality(obj.value(w, ds.X, ds.y), ref.f_star)) <= 2e-3


RUNTIME = ["asip-sgd", "asip-hogwild", "asip-admm", "gd", "admm", "averaging", "saga"]
#: relative suboptimality against scikit-learn with an intercept after 200 rounds in-process
#: (averaging is inconsistent: the mean of local optima, not the optimum); measured: asip-sgd
#: 2.0e-4, asip-hogwild 1.9e-5, asip-admm 1.5e-11 (1.1e-6 after 100 rounds), averaging 1.4e-3
#: (the others stop certified)
INTERCEPT_BOUNDS = {"asip-sgd": 1e-3, "asip-hogwild": 1e-3, "asip-admm": 1e-6, "gd": 1e-8,
                    "admm": 1e-6, "averaging": 1e-2, "saga": 1e-8}


@functools.lru_cache(maxsize=None)
def offset_logistic():
    """Logistic data whose optimum has a large intercept (~1.5), and scikit-learn's fit of it."""
    from sklearn.linear_model import LogisticRegression

    ds = make_logistic(1500, 20, n_zero=3, random_state=1)
    rng = np.random.default_rng(0)
    y = np.where(ds.X.sum(axis=1) * 0.3 + 1.0 + rng.standard_normal(1500) > 0, 1.0, -1.0)
    alpha = 1e-2
    sk = LogisticRegression(C=1.0 / (alpha * len(y)), fit_intercept=True, tol=1e-12,
                            max_iter=10_000).fit(ds.X, y)
    return ds.X, y, alpha, np.append(sk.coef_.ravel(), sk.intercept_)


@pytest.mark.parametrize("solver", RUNTIME)
def test_every_solver_fits_an_unpenalized_intercept_like_sklearn(solver):
    X, y, alpha, w_sk = offset_logistic()
    assert abs(w_sk[-1]) > 1.0  # the intercept matters here
    parts = [(X[i::3], y[i::3]) for i in range(3)]
    problem = make_problem(K.LOGISTIC, K.L2, alpha, True, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), True)
    f_sk = obj.value(w_sk, X, y)
    params = {"seed": 0} if "seed" in get_algorithm(solver).defaults else None
    w, *_ = simulate(solver, problem, parts, params, max_rounds=200, **WORK)
    r = float(relative_suboptimality(obj.value(w, X, y), f_sk))
    assert r <= INTERCEPT_BOUNDS[solver], f"{solver}: {r:.2e}, intercept {w[-1]:.3f} vs {w_sk[-1]:.3f}"
    r0 = float(relative_suboptimality(obj.value(np.append(w[:-1], 0.0), X, y), f_sk))
    assert r0 > 10 * INTERCEPT_BOUNDS[solver]  # without its intercept the model is far off


def test_wide_sparse_data_gets_a_longer_time_slice():
    """O(nnz) steps pay O(p) once per kernel call: the slice grows with p on CSR data only."""
    import scipy.sparse as sp

    from asip.algorithms._base import slice_target

    # 1,000 nonzeros at random columns (sp.random draws them from all 10^8 cells: 8 s in CI)
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((np.ones(1000), (np.repeat(np.arange(50), 20),
                                       rng.integers(0, 2_000_000, 1000))), shape=(50, 2_000_000))
    y = np.ones(50)
    problem = make_problem(K.LOGISTIC, K.L2, 1e-2, False, [(X, y)])
    sparse = local_data(X, y, problem)
    assert slice_target(0.002, sparse, problem.p) == pytest.approx(0.04)
    dense = local_data(np.zeros((3, 4)), np.ones(3), make_problem(K.LOGISTIC, K.L2, 1e-2, False,
                                                                  [(np.zeros((3, 4)), np.ones(3))]))
    assert slice_target(0.002, dense, 4) == 0.002
    state = get_algorithm("asip-hogwild").init(problem, sparse, get_algorithm("asip-hogwild").merge({}))
    assert state.chunk.target == pytest.approx(0.04)
