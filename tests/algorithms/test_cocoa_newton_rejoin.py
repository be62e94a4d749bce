"""A restarted asip-cocoa Newton partition rejoins where its peers are, not at zero.

Lock-step (`_sim`, simulated clock): the combined model right after a partition's restart
is about as good as just before it (its zero iterate was averaged in: the run's reported
suboptimality jumped ~30x at every kill), and its first iterate is the peers' point.
"""

from __future__ import annotations

import numpy as np
import pytest
from _sim import simulate

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem

PARAMS = {"tol": 1e-14, "seed": 0, "cert_period": 0.0, "local_solver": "newton"}
KILL = 2  # the round the partition restarts in (mid-run: a round in, rounds come first)


def _setup(n=1500, d=15, alpha=1e-3, n_parts=3, seed=3):
    ds = make_logistic(n, d, random_state=seed)
    X = np.asarray(ds.X, dtype=np.float64)
    bounds = np.linspace(0, n, n_parts + 1).astype(int)
    parts = [(X[a:b], ds.y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(K.LOGISTIC, K.L2, alpha, False, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, X, ds.y)
    return X, ds.y, parts, problem, lambda w: float(
        relative_suboptimality(obj.value(w, X, ds.y), ref.f_star))


@pytest.mark.parametrize("who", [1, 0])  # a peer, the leader
def test_a_restarted_newton_partition_does_not_drag_the_model_to_zero(who):
    X, y, parts, problem, subopt = _setup()
    run = dict(params=PARAMS, round_time=0.01)
    before, _, _, _ = simulate("asip-cocoa", problem, parts, max_rounds=KILL - 1, **run)
    r_before = subopt(before)
    assert 1e-12 < r_before < 1e-1  # mid-run: a point worth keeping
    for extra in (0, 1, 2):  # the restart's round, while rejoining, after its first round
        w, snaps, rounds, _ = simulate("asip-cocoa", problem, parts, max_rounds=KILL + extra,
                                       restart={who: KILL}, **run)
        assert rounds == KILL + extra
        assert subopt(w) <= 2.0 * r_before, (extra, subopt(w), r_before)
        x = snaps[who].get("x")
        if x is not None:  # once it has one, its iterate is near the peers', not zero
            peer = snaps[(who + 1) % len(parts)]["x"]
            assert np.linalg.norm(x - peer) <= 0.5 * np.linalg.norm(peer), extra
