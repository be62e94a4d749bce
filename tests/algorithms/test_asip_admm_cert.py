"""asip-admm's certified stop on the real 2-worker cluster: the leader's duality gap at a
consensus ``z`` (the hinge's local SDCA duals, else the free dual point ``-phi'``) meets
``tol``, the stage ends by itself long before ``max_time``, and the model is that ``z``."""

from __future__ import annotations

import numpy as np
import pytest

from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms._asip_admm import ALGORITHM

pytestmark = pytest.mark.timeout(120)

ALPHA = 1e-2


def _rel(X, y, loss, w, fit_intercept):
    obj = Objective(get_loss(loss), get_penalty("l2", ALPHA), fit_intercept)
    ref = reference_optimum(obj, X, y)
    return float(relative_suboptimality(obj.value(w, X, y), ref.f_star)), ref


@pytest.mark.parametrize("loss,fit_intercept", [("hinge", False), ("hinge", True),
                                                ("log_loss", True)])
def test_fit_tol_stops_certified(client, loss, fit_intercept):
    assert ALGORITHM.uses_tol
    ds = make_logistic(3000, 20, random_state=5)
    tol = 1e-4
    est = AsipClassifier(loss=loss, penalty="l2", alpha=ALPHA, solver="asip-admm", tol=tol,
                         max_time=30.0, n_partitions=2, fit_intercept=fit_intercept,
                         random_state=0).fit(ds.X, ds.y)
    w = np.append(est.coef_.ravel(), est.intercept_) if fit_intercept else est.coef_.ravel()
    r, ref = _rel(ds.X, ds.y, loss, w, fit_intercept)
    res = est.stage_result_
    print(f"{loss} intercept={fit_intercept}: {r:.2e} after {res.elapsed:.2f} s, "
          f"{est.stopped_by_}, gap {res.results[0].get('rel_gap')}")
    assert est.stopped_by_ == "tol"  # certified, not the 30 s budget
    assert res.elapsed < 10.0  # a certified stop, not a budget (a 30 s cap; seconds at most)
    gap = res.results[0]["rel_gap"]
    assert gap <= tol
    assert r <= max(gap, 0.0) + ref.relative_precision + 1e-12
