"""Reports early in a run: more often than ``asip.trace.report-interval``, never faster
than `asip._operator.report_interval_at` allows (a short fit's trace sees its model
when it is there, not up to a whole interval later)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

import asip
from asip._operator import REPORT_FLOOR, report_interval_at
from runtime_operators import TimedReporter

pytestmark = pytest.mark.timeout(120)


def test_report_interval_ramps_up_to_the_configured_one():
    assert report_interval_at(0.1, 0.0) == REPORT_FLOOR
    assert report_interval_at(0.1, 0.08) == pytest.approx(0.01)
    assert report_interval_at(0.1, 5.0) == 0.1
    assert report_interval_at(0.001, 5.0) == 0.001  # never above the configured interval


def test_reports_come_often_early_and_never_faster_than_the_ramp(client):
    X = da.random.RandomState(0).random_sample((400, 3), chunks=(200, 3))
    # TimedReporter reports every step (a 10 ms sleep each); the fixed 200 ms period let one
    # report out in the first 100 ms, and held back every call of the next 200 ms
    with dask.config.set({"asip.trace.report-interval": "200ms"}):
        res = asip.Stage(TimedReporter(), X, client=client, max_time=0.6).run()
    for i in (0, 1):
        times = sorted(e.time for e in res.trace if e.partition == i)[:-1]  # not the final
        calls = res.results[i]["calls"]
        held = [(began, ended) for began, ended in calls[:-1]  # the last: the final flush's
                if not any(began <= t <= ended for t in times)]
        print(f"\npartition {i}: {sum(t < 0.1 for t in times)} reports in the first 0.1 s, "
              f"{len(calls)} report calls, {len(held)} held back")
        assert len(times) >= 2 and held, (times, calls)  # the limit was at work
        # a call was held back only while the ramp's interval at its time had not passed
        # since the last report out (the call's stage times bound the limit's own check:
        # counts of reports in a time window were the machine's speed)
        for began, ended in held:
            last = max((t for t in times if t <= began), default=None)
            assert last is not None and began - last < report_interval_at(0.2, ended), (
                began, last, times)
        for t0, t1 in zip(times, times[1:]):  # the rate limit holds, by the ramp at t1
            assert t1 - t0 >= report_interval_at(0.2, t1) - 1e-4, (t0, t1)
        last = {e.partition: e for e in res.trace}
        assert np.all(np.asarray(last[i].metrics["w"]) > 0)


def test_a_fits_trace_has_points_early(client):
    from asip.algorithms import AsipClassifier, make_logistic

    ds = make_logistic(4_000, 20, random_state=0)
    # the solvers' operator snapshots on its own period (half the interval) with the same
    # ramp: a fixed 100 ms there kept one point in the first 100 ms
    with dask.config.set({"asip.trace.report-interval": "200ms"}):
        est = AsipClassifier(solver="gd", max_time=0.5, tol=0, n_partitions=2,
                             fit_intercept=False).fit(ds.X, ds.y)
    print(f"\n{(est.trace_[:, 0] < 0.1).sum()} trace points in the first 0.1 s")
    assert (est.trace_[:, 0] < 0.1).sum() >= 4, est.trace_[:8]


def test_a_solver_builds_no_report_the_runtime_holds_back(client):
    """Every report a solver's operator builds goes out at once: one the runtime's rate
    limit held back (its clock runs from the last send, the operator's from a step's start)
    went out only with the next one built, a period later, and the trace lagged the model."""
    from asip.algorithms import make_logistic
    from asip.algorithms._base import make_problem
    from asip.algorithms._kernels import LOGISTIC, L2
    from solver_operators import CountingSolver

    ds = make_logistic(4_000, 20, random_state=0)
    parts = [(ds.X[:2000], ds.y[:2000]), (ds.X[2000:], ds.y[2000:])]
    problem = make_problem(LOGISTIC, L2, 1e-3, False, parts)
    # the operator builds every 50 ms (half the interval) once the ramp is past: before, the
    # runtime held every other one back
    with dask.config.set({"asip.trace.report-interval": "100ms"}):
        res = asip.Stage(CountingSolver("gd", problem, {"tol": 0}), parts, client=client,
                         max_time=1.0).run()
    for i in (0, 1):
        sent = sum(e.partition == i for e in res.trace)
        built = res.results[i]["built"]
        print(f"\npartition {i}: {built} reports built, {sent} sent in 1 s")
        assert built >= 8, built
        assert sent >= built, (sent, built)  # the final flush adds one when nothing was held
