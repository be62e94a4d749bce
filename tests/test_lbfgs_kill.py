"""``lbfgs`` through a real KillWorker: the restarted operator rejoins with its peers' memory,
so the killed fit takes exactly the fault-free fit's rounds (the iterates are the same bits).

The restarted operator says hello and joins from its peer's *answer*, which carries the
L-BFGS memory and line search. A peer waiting out the loss also re-pushes its round to
every partition; when such a plain re-push reached the new incarnation first -- or came
in the same step as the answer, right behind it -- the operator joined from it, without
the memory, and every operator started its memory afresh (dense 500k x 100 at the
defaults: 12 rounds instead of 6, one kill in three). Here ``resend_after`` is tiny, so
the peer re-pushes on every wake while it waits and its answer always travels with a
re-push: before the fix 2 kills in 3 took 365-367 rounds instead of 344.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from asip.algorithms import AsipClassifier, make_logistic
from asip.faults import KillWorker
from test_stage import assert_clean

pytestmark = pytest.mark.timeout(300)

KILLS = 3
KILL_AT = 0.1  # s: the fault-free fit takes ~1 s (344 rounds)


def _fit(client, X, y, faults=()):
    client.wait_for_workers(2, timeout=120)  # the killed worker is back
    est = AsipClassifier(solver="lbfgs", alpha=1e-6, fit_intercept=False, tol=1e-10,
                         max_time=60, faults=faults,
                         solver_params={"resend_after": 0.001, "poll_wait": 0.2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def test_a_killed_lbfgs_fit_takes_the_fault_free_rounds(fresh_cluster):
    client = fresh_cluster
    ds = make_logistic(20_000, 20, random_state=0)
    X = ds.X * np.logspace(0, 2, 20)  # ill-conditioned: a few hundred rounds
    clean = _fit(client, X, ds.y)
    assert clean.stopped_by_ == "tol" and clean.n_iter_ > 100
    for _ in range(KILLS):
        est = _fit(client, X, ds.y, faults=(KillWorker(1, at=KILL_AT),))
        restarts = [(r.partition, r.incarnation) for r in est.restarts_]
        assert restarts == [(1, 1)], restarts
        assert est.restarts_[0].time < est.stage_result_.elapsed  # the kill came in the fit
        assert est.stopped_by_ == "tol"
        assert est.n_iter_ == clean.n_iter_, (est.n_iter_, clean.n_iter_)
        np.testing.assert_array_equal(est.coef_, clean.coef_)
    client.wait_for_workers(2, timeout=120)
    assert_clean(client)
