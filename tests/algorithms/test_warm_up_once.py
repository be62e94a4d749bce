"""The operator's kernel warm-up runs once per process and kind of fit, not on every restart."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import make_logistic

from asip.algorithms import AsipClassifier
from asip.algorithms import _kernels as K
from asip.algorithms import _operator as O
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._solvers import RUNTIME_SOLVERS


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_restarted_operator_does_not_warm_up_again_in_a_warm_process(monkeypatch):
    """A killed operator's next incarnation, in the process that already warmed the same
    solver on the same kind of data, steps at once: no throw-away warm-up round."""
    from distributed import Client, LocalCluster

    from asip.faults import KillOperator

    calls = []
    algo = RUNTIME_SOLVERS["lbfgs"]

    def recorded(state, data):
        calls.append(data.incarnation)
        return algo.warm_up(state, data)

    monkeypatch.setitem(RUNTIME_SOLVERS, "lbfgs", algo._replace(warm_up=recorded))
    monkeypatch.setattr(O, "_WARMED", set(), raising=False)  # as in a fresh process
    ds = make_logistic(4_000, 10, random_state=0)
    # in-process workers: one process, which runs this module's patched registry
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):
        # the restart counts once its incarnation registers: leave it seconds to do so even
        # on a loaded machine (CI once saw none registered within a 1 s run)
        est = AsipClassifier(solver="lbfgs", tol=0, max_time=3.0, n_partitions=2,
                             faults=(KillOperator(1, at=0.2),)).fit(ds.X, ds.y)
    assert est.restarts_, "the operator was not restarted"
    assert calls and calls[0] == 0, calls
    assert all(inc == 0 for inc in calls), f"warm-ups by incarnation: {calls}"


def test_the_warm_up_key_follows_what_the_kernels_specialize_on():
    ds = make_logistic(200, 5, random_state=0)
    pb = make_problem(K.LOGISTIC, K.L2, 1e-3, False, [(ds.X, ds.y)])
    params = RUNTIME_SOLVERS["lbfgs"].merge(None)

    def key(X, y=ds.y, incarnation=0, sw=None, problem=pb, **kw):
        return O.warm_up_key("lbfgs", problem, dict(params, **kw),
                             local_data(X, y, problem, 0, incarnation, sw))

    base = key(ds.X)
    assert key(ds.X, incarnation=1) == base == key(ds.X[:50], ds.y[:50])
    assert key(np.asfortranarray(ds.X)) == base  # the kernels take it as C float64 anyway
    assert key(sp.csr_matrix(ds.X)) != base  # CSR
    assert key(ds.X, sw=np.ones(200)) != base  # row weights
    assert key(ds.X, memory=3) != base  # other hyperparameters
    assert key(ds.X, problem=pb._replace(fit_intercept=True)) != base
    assert key(ds.X, problem=pb._replace(loss=K.SQUARED)) != base
    assert O._array_kind(np.asfortranarray(ds.X)) != O._array_kind(ds.X)  # layout counts


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_warm_up_also_loads_the_dashboard_objective_kernel(monkeypatch):
    """The operator's warm-up runs the local objective's kernel (on one row) before the
    gang's clock starts: its first call (at `FIRST_OBJECTIVE_AT` in a run) otherwise
    compiled inside the fit's budget on a fresh install."""
    from distributed import Client, LocalCluster

    rows = []
    original = K.loss_sum

    def recorded(X, y, w, loss, fit_intercept):
        rows.append(len(y))
        return original(X, y, w, loss, fit_intercept)

    monkeypatch.setattr(K, "loss_sum", recorded)
    monkeypatch.setattr(O, "_WARMED", set(), raising=False)  # as in a fresh process
    ds = make_logistic(2_000, 10, random_state=0)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):
        # a run shorter than FIRST_OBJECTIVE_AT: the objective is never evaluated in it
        AsipClassifier(solver="asip-sgd", max_time=0.3 * O.FIRST_OBJECTIVE_AT,
                       n_partitions=2).fit(ds.X, ds.y)
    assert rows and set(rows) == {1}, f"loss_sum calls by rows: {rows}"
