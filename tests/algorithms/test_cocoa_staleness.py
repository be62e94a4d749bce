"""asip-cocoa's SDCA bounded staleness (``max_lead``), in process: on unevenly fast halves the
fast operators wait for the slow half (the CoCoA+ ``sigma = K`` safety needs views a bounded
number of updates old), while a lone straggler stalls nobody."""

from __future__ import annotations

import numpy as np
import pytest
from _sim import FixedCount, Msg, simulate, split_rows

from asip.algorithms import Objective, get_loss, get_penalty, make_logistic, reference_optimum
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._sdca_kernels import conjugate_sum
from asip.algorithms._solvers import get_algorithm

N, PARTS, CHUNK, ALPHA = 1600, 8, 25, 1e-2


def _run(slow, every, params, rounds=240):
    """Round-robin run where the partitions in ``slow`` step only every ``every`` rounds;
    returns each partition's passes and the dual suboptimality ``(f* - D)/|f*|`` at every
    tenth of the run."""
    ds = make_logistic(N, 10, random_state=5)
    parts = split_rows(ds.X, ds.y, PARTS)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    f_star = reference_optimum(Objective(get_loss("log_loss"), get_penalty("l2", ALPHA), False),
                               ds.X, ds.y).f_star
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"seed": 0, "local_solver": "sdca", "tol": 0.0, **params})
    datas = [local_data(X, y, problem, i) for i, (X, y) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    states = [s._replace(chunk=FixedCount(s.chunk.target, start=CHUNK)) for s in states]
    boxes, dual_gaps = [[] for _ in parts], []
    for r in range(1, rounds + 1):
        for i in range(PARTS):
            if i in slow and r % every:
                continue
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], datas[i], inbox, r * 1e-3)
            states[i] = out.state
            for o in out.outbox:
                for j in range(PARTS):
                    if j != i and (o.to is None or o.to == j):
                        boxes[j].append(Msg(i, 0, o.payload, 0.0))
        if r % (rounds // 10) == 0:
            w = sum(s.u for s in states)
            conj = sum(conjugate_sum(K.LOGISTIC, d.y, s.dual) for d, s in zip(datas, states))
            dual_gaps.append((f_star - (-conj / N - ALPHA / 2 * w @ w)) / abs(f_star))
    return np.array([s.clock["steps"] / len(s.dual) for s in states]), np.array(dual_gaps)


def test_fast_half_waits_for_the_slow_half_and_the_dual_still_climbs():
    slow = set(range(PARTS // 2, PARTS))
    passes, gaps = _run(slow, 8, {})
    fast_lead = passes[:PARTS // 2].max() - passes[PARTS // 2:].min()
    # one slice past max_lead at most (the slice that crossed it)
    assert fast_lead <= 1.0 + CHUNK / (N / PARTS) + 1e-9, passes
    assert np.all(np.diff(gaps) <= 1e-12) and gaps[-1] < 0.5 * gaps[0], gaps  # dual ascent
    # without the bound the same run lets the fast half run far ahead: the check can fail
    free, _ = _run(slow, 8, {"max_lead": np.inf}, rounds=80)
    assert free[:PARTS // 2].max() - free[PARTS // 2:].min() > 4, free


def test_a_lone_straggler_stalls_nobody():
    passes, _ = _run({0}, 8, {}, rounds=80)
    assert passes[1:].min() > passes[0] + 4, passes


def test_bad_max_lead_is_refused_clearly():
    ds = make_logistic(40, 3, random_state=0)
    parts = split_rows(ds.X, ds.y, 2)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    for bad in (0, -1.0, "1", None):
        with pytest.raises(ValueError, match="max_lead must be a positive number"):
            simulate("asip-cocoa", problem, parts, {"max_lead": bad}, max_rounds=1)
