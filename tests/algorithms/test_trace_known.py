"""``trace_`` without passes over the data where the objective is already known.

In-process, no cluster: `evaluate_trace` takes the solver's own objective values (the
reports' ``objective_w``) and evaluates coefficient-free models from ``y`` alone; what it
still evaluates matches the objective computed directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from asip.algorithms._model import evaluate_trace, known_objective, task_labels
from asip.algorithms._objectives import Objective, get_loss, get_penalty


def _problem(fit_intercept, weighted, loss="log_loss"):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(3001, 6)), np.sign(rng.normal(size=3001))
    sw = rng.uniform(0.5, 2.0, size=3001) if weighted else None
    obj = Objective(get_loss(loss), get_penalty("l2", 0.1), fit_intercept)
    return obj, X, y, sw


def _direct(obj, w, X, y, sw):
    d = X.shape[1]
    m = X @ w[:d] + (w[-1] if obj.fit_intercept else 0.0)
    vals = obj.loss.value(m, y)
    vals = vals if sw is None else vals * sw
    return float(vals.mean()) + obj.penalty.value(w[:d])


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_zero_models_and_known_values_need_no_pass(fit_intercept, weighted):
    obj, X, y, sw = _problem(fit_intercept, weighted)
    p = 6 + fit_intercept
    rng = np.random.default_rng(2)
    zero = np.zeros(p)
    if fit_intercept:
        zero[-1] = 0.7  # coefficient-free, but an intercept: margins are 0.7
    points = [(0.0, zero), (0.1, rng.normal(size=p)), (0.2, rng.normal(size=p))]
    got = evaluate_trace(obj, points, X, y, sw)
    np.testing.assert_allclose(got[:, 1], [_direct(obj, w, X, y, sw) for _, w in points],
                               rtol=1e-12)
    # a known value is taken as it is (a made-up one here, to show no pass replaced it)
    known = [None, 123.0, None]
    got2 = evaluate_trace(obj, points, X, y, sw, known=known)
    assert got2[1, 1] == 123.0
    np.testing.assert_allclose(got2[[0, 2], 1], got[[0, 2], 1], rtol=1e-12)


def test_zero_model_of_several_tasks_sums_the_tasks():
    obj, X, y, _ = _problem(True, False)
    y3 = np.random.default_rng(3).integers(0, 3, size=y.shape[0]).astype(float)
    W = np.zeros((3, 7))
    W[:, -1] = [0.1, -0.2, 0.3]
    got = evaluate_trace(obj, [(0.0, W)], X, y3)[0, 1]
    want = sum(_direct(obj, W[t], X, task_labels(y3, t, 3), None) for t in range(3))
    assert got == pytest.approx(want, rel=1e-12)


def test_known_objective_only_for_that_very_model():
    w = np.array([1.0, 2.0])
    snaps = [None, {"w": w.copy(), "objective_w": 0.5}]
    assert known_objective(snaps, w) == 0.5
    assert known_objective(snaps, w + 1e-12) is None
    assert known_objective([{"w": w, "objective_w": float("nan")}], w) is None
    assert known_objective([{"w": w}], w) is None
