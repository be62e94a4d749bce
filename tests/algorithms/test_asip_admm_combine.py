"""asip-admm's ``combine`` takes the freshest consensus ``z``: an operator's own (made of the
peers' pushed states) when the other partitions' reports are older, else the mean of the
reported states (every final state in: the model is as before)."""

from __future__ import annotations

import numpy as np
from _sim import Msg, split_rows

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._admm_core import z_update
from asip.algorithms._asip_admm import ALGORITHM
from asip.algorithms._base import local_data, make_problem


def _run(rounds: int, stale_at: int):
    """Round-robin lock-step on 2 partitions of synthetic 4,000 x 50 hinge-l2 (alpha 0.1);
    returns the problem, the objective, f*, both final snapshots and partition 1's snapshot
    after round ``stale_at`` (an old report)."""
    ds = make_logistic(4000, 50)
    parts = split_rows(ds.X, ds.y, 2)
    problem = make_problem(K.HINGE, K.L2, 0.1, False, parts)
    obj = Objective(get_loss("hinge"), get_penalty("l2", 0.1), False)
    f_star = reference_optimum(obj, ds.X, ds.y).f_star
    params = ALGORITHM.merge({"seed": 0, "tol": 0.0})
    datas = [local_data(*parts[i], problem, i) for i in range(2)]
    states = [ALGORITHM.init(problem, d, params) for d in datas]
    boxes, stale = [[], []], None
    for r in range(1, rounds + 1):
        for i in range(2):
            inbox, boxes[i] = boxes[i], []
            out = ALGORITHM.local_step(states[i], datas[i], inbox, r * 0.0015)
            states[i] = out.state
            for o in out.outbox:
                boxes[1 - i].append(Msg(i, 0, o.payload, 0.0))
        if r == stale_at:
            stale = ALGORITHM.snapshot(states[1])
    snaps = [ALGORITHM.snapshot(s) for s in states]

    def rel(w):
        return relative_suboptimality(obj.value(np.asarray(w), ds.X, ds.y), f_star)

    return problem, rel, snaps, stale


def _mean_z(problem, snaps):
    """The z step on the mean of the snapshots' ``(x, y)``: what ``combine`` returned before."""
    return z_update(problem, np.mean([s["x"] for s in snaps], axis=0),
                    np.mean([s["y"] for s in snaps], axis=0), float(snaps[0]["rho"]), 2)


def test_takes_an_operators_own_z_over_an_older_report():
    """Partition 1's last report is 10 rounds old: the model is partition 0's ``z`` (of its own
    and partition 1's pushed states, rounds [15, 14]), not the z step on the reported states
    (rounds [15, 5]), and far nearer the optimum (measured 4.9e-7 against 2.6e-5)."""
    problem, rel, (s0, _), stale = _run(15, 5)
    np.testing.assert_array_equal(s0["zk"], [15, 14])
    np.testing.assert_array_equal(stale["zk"], [5, 5])
    w = ALGORITHM.combine(problem, [s0, stale])
    np.testing.assert_array_equal(w, s0["z"])
    old = _mean_z(problem, [s0, stale])
    assert rel(w) <= 1e-6 and rel(old) >= 20 * rel(w)


def test_keeps_the_mean_of_the_final_states():
    """Every operator's final state in: the z step on their mean (rounds [15, 15]) is at least
    as fresh as either operator's own z, and stays the model; a partition's snapshot alone
    (the dashboard's local objective) gives its own z."""
    problem, _, snaps, _ = _run(15, 5)
    np.testing.assert_array_equal(ALGORITHM.combine(problem, snaps), _mean_z(problem, snaps))
    np.testing.assert_array_equal(ALGORITHM.combine(problem, [snaps[1]]), snaps[1]["z"])
