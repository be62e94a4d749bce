"""asip-admm's step order: the z and dual steps redone at the start of a step with the peers'
states that came in since the last one (not only at its end, a step behind them), the
over-relaxation that makes safe, and the bounded wait for a peer's state after a step."""

from __future__ import annotations

import numpy as np
import pytest
from _sim import Msg, simulate, split_rows

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._admm_core import z_update
from asip.algorithms._asip_admm import ALGORITHM
from asip.algorithms._base import local_data, make_problem


def _hinge(n_parts):
    ds = make_logistic(4000, 50)
    parts = split_rows(ds.X, ds.y, n_parts)
    return ds, parts, make_problem(K.HINGE, K.L2, 0.1, False, parts)


@pytest.mark.parametrize("n_parts", [2, 4])
def test_lockstep_rounds_to_1e6(n_parts):
    """Synthetic 4,000 x 50, hinge, l2 alpha 0.1, round-robin at 1.5 ms a step: 15 rounds reach
    1e-6 (measured 6.1e-7 on 2 partitions, 8.5e-7 on 4). Before (z and dual steps only at a
    step's end, no over-relaxation): 1.4e-5 and 2.2e-5, 1e-6 after ~30 rounds. From a cold
    start (``oneshot_epochs=0``): the step order, not the start; the one-shot start
    (`test_asip_admm_oneshot`) ends round 15 at 3.0e-6 on 4 partitions here (round-robin)."""
    ds, parts, problem = _hinge(n_parts)
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.1), False)
    f_star = reference_optimum(obj, ds.X, ds.y).f_star
    w, *_ = simulate("asip-admm", problem, parts, {"seed": 0, "tol": 0.0, "oneshot_epochs": 0},
                     max_time=100.0, max_rounds=15, round_time=0.0015)
    assert relative_suboptimality(obj.value(np.asarray(w), ds.X, ds.y), f_star) <= 1e-6


def test_a_step_takes_the_z_of_the_states_heard_since_the_last():
    """Partition 0 steps, then hears partition 1's state: its next x step sees the dual of the
    z of both states (the synchronous ADMM's), not of the z it had at its last step's end."""
    _, parts, problem = _hinge(2)
    params = ALGORITHM.merge({"seed": 0})
    datas = [local_data(*parts[i], problem, i) for i in range(2)]
    s0, s1 = (ALGORITHM.init(problem, d, params) for d in datas)
    out1 = ALGORITHM.local_step(s1, datas[1], [], 0.0)
    s0 = ALGORITHM.local_step(s0, datas[0], [], 0.0).state
    x0, y0, rho = s0.mem["x"].copy(), s0.mem["y_used"].copy(), s0.rho
    stale = s0.mem["y"].copy()  # the dual step at the end of the step, before the news
    (push,) = out1.outbox
    s0 = ALGORITHM.local_step(s0, datas[0], [Msg(1, 0, push.payload, 0.0)], 0.001).state
    z = z_update(problem, (x0 + push.payload["x"]) / 2, (y0 + push.payload["y"]) / 2, rho, 2)
    np.testing.assert_allclose(s0.mem["y_used"], y0 + rho * (x0 - z), rtol=0, atol=1e-12)
    assert not np.allclose(s0.mem["y_used"], stale)


def test_waits_for_news_a_bounded_time():
    """After a step the next poll may wait up to ``news_wait`` times the step's own time (at
    most ``push_period``) for a peer's state; ``news_wait=0`` never waits; a negative one is
    refused by name."""
    _, parts, problem = _hinge(2)
    data = local_data(*parts[0], problem, 0)
    waits = {}
    for news_wait, period in ((2.0, 0.01), (1e6, 0.004), (0.0, 0.01)):
        params = ALGORITHM.merge({"seed": 0, "news_wait": news_wait, "push_period": period})
        waits[news_wait] = ALGORITHM.local_step(ALGORITHM.init(problem, data, params), data, [],
                                                0.0).wait
    assert 0.0 < waits[2.0] <= 0.01 and waits[1e6] == 0.004 and waits[0.0] == 0.0
    with pytest.raises(ValueError, match="news_wait must be >= 0 for solver 'asip-admm', got -1"):
        ALGORITHM.init(problem, data, ALGORITHM.merge({"news_wait": -1}))
