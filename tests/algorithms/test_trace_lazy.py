"""For a dask ``X``, ``trace_`` is evaluated when first read, not in ``fit``: a certified fit
returns without the trace's pass over the data (a compute on the cluster, 25-40 ms of a
60-200 ms fit), and loses nothing -- the trace read later, or pickled before it was read, is
the objective at the fit's points. In-memory data, which the caller may change in place, is
evaluated in ``fit``; ``asip.driver.lazy-trace: false`` evaluates a dask ``X``'s there too.

Real LocalCluster (the ``client`` fixture: 2 worker processes with nannies); the data passes
are counted by wrapping `_model._evaluate_pass` in this (the driver's) process.
"""

from __future__ import annotations

import pickle

import dask
import dask.array as da
import numpy as np
import pytest

from asip.algorithms import AsipClassifier, Objective, get_loss, get_penalty, make_logistic
from asip.algorithms import _model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def passes(monkeypatch):
    """How many data passes `evaluate_trace` has taken (in memory or on the cluster)."""
    count = [0]
    evaluate = _model._evaluate_pass

    def counted(*args, **kwargs):
        count[0] += 1
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(_model, "_evaluate_pass", counted)
    return count


def _input(kind: str):
    ds = make_logistic(4000, 12, random_state=5)
    if kind == "dask":
        return ds.X, ds.y, da.from_array(ds.X, chunks=(2000, 12)), da.from_array(ds.y, chunks=2000)
    return ds.X, ds.y, ds.X, ds.y


def _estimator():
    return AsipClassifier(solver="asip-cocoa", alpha=1e-3, fit_intercept=False, n_partitions=2,
                          max_time=20.0)


def test_a_dask_fit_takes_no_pass_for_its_trace_and_the_trace_read_later_is_exact(client,
                                                                                   passes):
    X, y, Xin, yin = _input("dask")
    objective = Objective(get_loss("log_loss"), get_penalty("l2", 1e-3), False)
    est = _estimator()
    assert not hasattr(est, "trace_")  # not fitted: no trace (and nothing evaluated)
    est.fit(Xin, yin)
    assert est.stopped_by_ == "tol"
    assert passes[0] == 0, "fit evaluated the trace"
    # pickled before it was read: the trace travels (evaluated then), the data does not
    blob = pickle.dumps(est)
    assert passes[0] == 1 and len(blob) < X.nbytes // 4
    trace = est.trace_  # already evaluated: no second pass
    assert passes[0] == 1
    np.testing.assert_array_equal(pickle.loads(blob).trace_, trace)
    assert trace.shape[0] >= 2 and np.all(np.diff(trace[:, 0]) >= 0)
    # the last row is the returned model's objective, computed here directly
    assert trace[-1, 1] == pytest.approx(objective.value(est.coef_.ravel(), X, y), rel=1e-10)


def test_an_in_memory_fit_s_trace_is_the_data_s_as_fitted_though_the_caller_changed_it(
        client, passes):
    """In-memory X is the caller's to change after ``fit``: its trace is taken in ``fit``
    (a trace deferred to the first read would be the changed data's)."""
    X, y, Xin, yin = _input("numpy")
    Xin = Xin.copy()
    objective = Objective(get_loss("log_loss"), get_penalty("l2", 1e-3), False)
    est = _estimator().fit(Xin, yin)
    assert passes[0] == 1
    Xin[:] = 0.0  # the caller reuses its array
    trace = est.trace_
    assert passes[0] == 1
    assert trace[-1, 1] == pytest.approx(objective.value(est.coef_.ravel(), X, y), rel=1e-10)


def test_lazy_trace_off_evaluates_a_dask_x_s_trace_in_fit(client, passes):
    """The setting's other arm (as before: this guards the setting)."""
    _, _, Xin, yin = _input("dask")
    with dask.config.set({"asip.driver.lazy-trace": False}):
        est = _estimator().fit(Xin, yin)
    assert passes[0] == 1
    est.trace_
    assert passes[0] == 1
