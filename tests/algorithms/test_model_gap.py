"""``gap_`` is the gap of the certificate that stopped the fit, not a peer's stale one.

In one process: the runtime ends a stage at the first operator's STOP, so its peers may
not have reduced the last round and still hold the round before's (larger) gap. The
driver here stops the same way -- at the first ``done`` -- and `_model.gap_of` must give
the certified gap of the model ``combine`` returns: ``gap_ / P(w) <= tol``, and a true
bound on ``P(w) - P*``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _sim import Msg, split_rows

from asip.algorithms import (Objective, get_algorithm, get_loss, get_penalty, make_logistic,
                             reference_optimum)
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._model import gap_of

pytestmark = pytest.mark.timeout(120)


def _until_first_stop(solver, problem, parts, params, max_rounds=5000):
    """Round-robin steps until one operator says done; the others are left where they are
    (as when the stage's stop reaches them). Returns the snapshots and who stopped."""
    algo = get_algorithm(solver)
    params = algo.merge(params)
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes: list = [[] for _ in parts]
    t0 = time.monotonic()
    for _ in range(max_rounds):
        for i in range(len(parts)):
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], datas[i], inbox, time.monotonic() - t0)
            states[i] = out.state
            for o in out.outbox:
                for j in range(len(parts)):
                    if j != i and (o.to is None or o.to == j):
                        boxes[j].append(Msg(i, 0, o.payload, time.time()))
            if out.done:
                return algo, [algo.snapshot(s) for s in states], i
    raise AssertionError(f"{solver} did not stop within {max_rounds} rounds")


CASES = {  # solver[/mode]: (penalty, alpha, params)
    "gd": ("l2", 1e-2, {}),
    "lbfgs": ("l2", 1e-2, {}),
    "asip-cocoa": ("l2", 1e-2, {}),
    "prox-newton/local": ("l1", 1e-3, {"hessian": "local"}),
    "prox-newton/full": ("l1", 1e-3, {"hessian": "full"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gap_is_the_stopping_certificates(case):
    solver = case.split("/")[0]
    penalty, alpha, params = CASES[case]
    tol = 1e-4
    ds = make_logistic(900, 12, n_zero=3, random_state=5)
    parts = split_rows(ds.X, ds.y, 3)
    problem = make_problem(K.LOGISTIC, K.L1 if penalty == "l1" else K.L2, alpha, True, parts)
    algo, snaps, stopper = _until_first_stop(solver, problem, parts, {**params, "tol": tol})
    obj = Objective(get_loss("log_loss"), get_penalty(penalty, alpha), fit_intercept=True)
    w = np.asarray(algo.combine(problem, snaps))
    primal = float(obj.value(w, ds.X, ds.y))
    gap = gap_of(snaps)
    assert gap is not None and gap >= 0.0
    assert gap <= tol * abs(primal) * (1 + 1e-9), (gap / primal, snaps)
    f_star = reference_optimum(obj, ds.X, ds.y).f_star
    assert primal - f_star <= gap + 1e-12 * abs(f_star)  # a true bound on the model returned


def test_gap_of_prefers_the_certified_then_the_newest_round():
    stale = {"w": np.zeros(2), "k": 9, "gap": 3e-3}
    newest = {"w": np.ones(2), "k": 10, "gap": 1e-4}
    assert gap_of([stale, newest, None]) == 1e-4
    assert gap_of([{"k": 3, "gap": 5.0, "certified": np.ones(2)}, {"k": 4, "gap": 9.0}]) == 5.0
    assert gap_of([{"t": 1, "gap": 2.0}, {"t": 5, "gap": 1.0}]) == 2.0  # no round: the largest
    assert gap_of([{"k": 1}, None]) is None
    # two stacked tasks: per task the newest round's, then the largest
    a = {"k": np.array([4, 7]), "gap": np.array([1e-2, 5e-1])}
    b = {"k": np.array([5, 6]), "gap": np.array([2e-3, 9e-1])}
    assert gap_of([a, b]) == 5e-1
