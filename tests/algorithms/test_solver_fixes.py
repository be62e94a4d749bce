"""Regression tests for the solver fixes of issue 12: each failed before its fix. No cluster.

Driven by the round-robin stand-in for the runtime (`_sim.simulate`), on small problems.
"""

from __future__ import annotations

import numpy as np
import pytest
from _sim import simulate

from asip.algorithms import (Objective, get_algorithm, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem


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
    # the fixed point is the optimum (with eta0 / w_i: ~2e-3 here, whatever the budget)
    w, *_ = simulate("asip-hogwild", problem, parts, {"seed": 0}, max_time=1.5)
    r = float(relative_suboptimality(obj.value(w, X, y), ref.f_star))
    assert r <= 5e-4, r
