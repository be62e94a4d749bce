"""Driver-side failures through the estimator: Ctrl-C or an error in ``callback`` loses nothing.

On the shared 2-worker cluster: a fit interrupted by KeyboardInterrupt (raised
from ``callback``, as Ctrl-C would be raised in the driver) or by an exception
in ``callback`` stops every operator long before its budget, leaves nothing of
the stage on the cluster, keeps the model so far in ``coef_`` (with a warning)
and re-raises; ``checkpoint=`` has the same model on disk, and a new fit with
``warm_start=True`` carries on from it instead of starting over.

Data: an 8,000-row subsample of a9a, l2 with ``alpha=1e-3`` (3e-2 for ASIP-SGD,
which is erratic for small ``alpha`` in its first seconds: see
test_fault_convergence; 1e-4 for ASIP-ADMM, which at 1e-3 certifies 1e-6 in under
1 s since 2026-11-30), slow enough that 1 s, 0.2 s and 1.2 s of fitting are
far apart.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import asip
from asip.algorithms import AsipClassifier as _Classifier
from asip.algorithms import (Objective, get_algorithm, get_loss, get_penalty,
                             reference_optimum, relative_suboptimality)
from asip.algorithms._model import model_of as _model_of
from test_stage import assert_clean

def AsipClassifier(**params):
    """The estimator on this file's problem, which has no intercept (as its reference)."""
    params.setdefault("fit_intercept", False)
    if params.get("solver") == "asip-admm":  # the alpha-blind rho these tests were sized for:
        # the default (alpha-following since 2026-11-30) reaches round-off within 1 s at 1e-4
        # (and kept: the leader's adaptation, since 2026-12-01, would move it)
        params.setdefault("solver_params", {"rho_rule": "legacy", "rho_adapt": None})
    return _Classifier(**params)


ALPHA = {"asip-sgd": 3e-2, "asip-admm": 1e-4, "gd": 1e-3}


@pytest.fixture
def a9a(a9a_8000, request):
    """The data and ``rel(w)``, the relative suboptimality for the test's solver's alpha."""
    ds = a9a_8000
    solver = request.node.callspec.params["solver"]
    objective = Objective(get_loss("log_loss"), get_penalty("l2", ALPHA[solver]))
    f_star = reference_optimum(objective, ds.X, ds.y).f_star

    def rel(w) -> float:
        return float(relative_suboptimality(objective.value(np.ravel(w), ds.X, ds.y), f_star))

    rel.f_star = f_star  # for objective values in trace_
    return ds, rel


def fit_quietly(clf, ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the budget ends gd
        return clf.fit(ds.X, ds.y)


def interrupt_after(seconds: float, exc: BaseException):
    def callback(elapsed, w):
        if elapsed > seconds:
            raise exc
    return callback


@pytest.mark.timeout(90)
@pytest.mark.parametrize("solver", ["asip-sgd", "asip-admm", "gd"])
def test_ctrl_c_keeps_the_model_and_the_checkpoint_warm_starts_the_next_fit(client, a9a, solver,
                                                                          tmp_path):
    ds, rel = a9a
    path = tmp_path / "model.ckpt"
    r0 = rel(np.zeros(ds.X.shape[1]))
    alpha = ALPHA[solver]
    clf = AsipClassifier(alpha=alpha, solver=solver, max_time=60.0, tol=0.0, random_state=0,
                         checkpoint=path, checkpoint_every=0.2,
                         callback=interrupt_after(1.0, KeyboardInterrupt()))
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="interrupted by"):
        clf.fit(ds.X, ds.y)
    wall = time.monotonic() - t0
    assert wall < 20, f"the interrupted fit took {wall:.1f} s"  # not its 60 s budget
    assert_clean(client)  # every operator stopped, every plugin and handler gone
    # the model so far is the estimator's, fitted
    assert clf.stopped_by_ == "interrupted" == clf.stage_result_.stopped_by
    # the latest model, not the start: coef_ is the trace's last point (where 1 s gets is the
    # machine's: gd's "below r0 / 20" failed at 8.3e-2 against 5.6e-2 at a load of 15)
    r_int = rel(clf.coef_)
    r_last = float(relative_suboptimality(clf.trace_[-1, 1], rel.f_star))
    assert np.all(np.isfinite(clf.coef_)) and r_int < r0 / 2, (r_int, r0)
    assert r_int == pytest.approx(r_last, rel=1e-6), (r_int, r_last)
    assert clf.trace_[-1, 0] >= 1.0 and clf.n_iter_ > 0
    # ... and on disk, written atomically
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]
    saved = asip.load_checkpoint(path)
    assert sorted(saved.latest) == [0, 1] and saved.time >= 1.0
    algo = get_algorithm(solver)
    r_saved = rel(_model_of(algo, _problem(ds, alpha), [saved.latest[0], saved.latest[1]]))
    assert r_saved <= 2 * r_int, (r_saved, r_int)
    # a new fit warm-starts from the file; a cold one of the same 0.2 s is the control
    warm = fit_quietly(AsipClassifier(alpha=alpha, solver=solver, max_time=0.2, tol=0.0,
                                      random_state=0, checkpoint=path, warm_start=True), ds)
    cold = fit_quietly(AsipClassifier(alpha=alpha, solver=solver, max_time=0.2, tol=0.0,
                                      random_state=0), ds)
    r_warm, r_cold = rel(warm.coef_), rel(cold.coef_)
    first_warm, first_cold = (float(relative_suboptimality(e.trace_[0, 1], rel.f_star))
                              for e in (warm, cold))
    worst_warm = float(np.max(relative_suboptimality(warm.trace_[:, 1], rel.f_star)))
    print(f"\n{solver}: zero {r0:.1e}, interrupted at {clf.trace_[-1, 0]:.2f} s {r_int:.1e}, "
          f"checkpoint {r_saved:.1e}; +0.2 s warm {r_warm:.1e} (first report {first_warm:.1e}, "
          f"worst {worst_warm:.1e}), 0.2 s cold {r_cold:.1e} (first report {first_cold:.1e})")
    # started at the saved model: its first report is near it (within 2x, or below r0/100 where
    # the checkpoint is that good); under a load average of 10+ the 1 s before the interrupt
    # left gd's checkpoint at 2.1e-2 > r0/100, and the warm fit's first report at exactly that
    assert first_warm < max(r0 / 100, 2 * r_saved), "the warm fit did not start at the saved model"
    assert r0 / 100 < first_cold, "the cold fit's first report is already near the optimum"
    # ... and never lost it: every report within 3x of it (or below r0/100, which no cold
    # start's first report is). Not "the warm fit ends 2x below the cold one": how far 0.2 s
    # gets is the machine's, and ASIP-SGD's 1 s sits at its noise floor (at a load of 7 a
    # checkpoint at 2.7e-5 and a cold 0.2 s fit at 3.9e-5 failed that, 2026-12-01)
    assert worst_warm < max(r0 / 100, 3 * r_saved), "the warm fit lost the saved model"
    assert asip.load_checkpoint(path).run_id != saved.run_id  # the new fit saved its own
    assert_clean(client)


def _problem(ds, alpha):
    """The `Problem` the estimator built (2 partitions), for combining saved ADMM snapshots."""
    from asip.algorithms import _kernels as K
    from asip.algorithms._base import make_problem

    bounds = np.linspace(0, ds.X.shape[0], 3).astype(int)
    parts = [(ds.X[a:b], ds.y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return make_problem(K.LOGISTIC, K.L2, alpha, False, parts)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("solver", ["asip-admm"])
def test_an_error_in_the_callback_stops_the_fit_and_keeps_the_model(client, a9a, solver):
    ds, rel = a9a
    clf = AsipClassifier(alpha=ALPHA[solver], solver=solver, max_time=60.0, random_state=0,
                         callback=interrupt_after(1.0, RuntimeError("plot window closed")))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="plot window closed"), \
            pytest.warns(UserWarning, match="coef_ holds the model so far"):
        clf.fit(ds.X, ds.y)
    assert time.monotonic() - t0 < 20
    assert_clean(client)
    assert clf.stopped_by_.startswith("error") and clf.trace_[-1, 0] >= 1.0
    assert rel(clf.coef_) < rel(np.zeros(ds.X.shape[1])) / 10
    # the cluster is fine for the next fit
    again = AsipClassifier(alpha=ALPHA[solver], solver=solver, max_time=0.3).fit(ds.X, ds.y)
    assert again.stopped_by_ == "max_time"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("solver", ["asip-sgd"])
def test_callback_sees_the_model_and_can_stop_the_fit_early(client, a9a, solver):
    ds, rel = a9a
    seen = []

    def callback(elapsed, w):
        seen.append((elapsed, rel(w)))
        return elapsed > 0.5

    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an early stop asked for is no failure: no warning
        clf = AsipClassifier(alpha=ALPHA[solver], solver=solver, max_time=60.0,
                             callback=callback).fit(ds.X, ds.y)
    assert time.monotonic() - t0 < 15
    assert clf.stopped_by_ == "callback"
    assert len(seen) >= 3 and all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))
    assert seen[-1][1] < seen[0][1]  # the models it was shown got better
    assert rel(clf.coef_) <= 2 * seen[-1][1]
    assert_clean(client)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("solver", ["asip-admm"])
def test_warm_start_from_the_previous_fit_and_from_a_mismatched_checkpoint(client, a9a, solver,
                                                                          tmp_path):
    ds, rel = a9a
    alpha = ALPHA[solver]
    clf = AsipClassifier(alpha=alpha, solver=solver, max_time=0.5, random_state=0,
                         warm_start=True)
    r0 = rel(np.zeros(ds.X.shape[1]))
    r1 = rel(clf.fit(ds.X, ds.y).coef_)
    first1 = float(relative_suboptimality(clf.trace_[0, 1], rel.f_star))
    r2 = rel(clf.fit(ds.X, ds.y).coef_)  # carries on: as if it had run 1 s
    first2 = float(relative_suboptimality(clf.trace_[0, 1], rel.f_star))
    r3 = rel(clf.fit(ds.X, ds.y).coef_)
    first3 = float(relative_suboptimality(clf.trace_[0, 1], rel.f_star))
    print(f"\nasip-admm warm-started 0.5 s fits (first report -> end): zero {r0:.1e}; "
          f"{first1:.1e} -> {r1:.1e}; {first2:.1e} -> {r2:.1e}; {first3:.1e} -> {r3:.1e}")
    # each fit starts where the last ended (its first report, a round from that model with
    # fresh duals, within 4x of it: 1.0-1.4x measured), not at zero (100x and more);
    # how far a 0.5 s budget gets is the machine's business (a halving per fit failed in CI
    # on 2026-12-01 at 0.0065 -> 0.0038; "r3 < r2" came within 1.15x at a load of 7: the
    # fresh duals' bump and a few loaded rounds), so only the two warm fits' joint progress
    # is asked for (1.75x and more at loads of 7-10)
    assert r0 / 100 < first1, "the first fit's first report is already near the optimum"
    assert first2 < 4 * r1 and first3 < 4 * r2, "a warm fit did not start at the last model"
    assert r3 < r1, "two warm fits made no progress on the first"
    # a checkpoint of another model (an intercept more) cannot start this one
    path = tmp_path / "other.ckpt"
    AsipClassifier(alpha=alpha, solver=solver, max_time=0.3, fit_intercept=True,
                   checkpoint=path).fit(ds.X, ds.y)
    with pytest.raises(ValueError, match=r"cannot warm-start from checkpoint .* needs 123"):
        AsipClassifier(alpha=alpha, solver=solver, max_time=0.3, checkpoint=path,
                       warm_start=True).fit(ds.X, ds.y)
    # ... but a checkpoint of another solver's run can, through its model
    warm = fit_quietly(AsipClassifier(alpha=alpha, solver="gd", max_time=0.3, checkpoint=path,
                                      warm_start=False), ds)  # overwrite with a gd checkpoint
    other = fit_quietly(AsipClassifier(alpha=alpha, solver="asip-hogwild", max_time=0.3,
                                       checkpoint=path, warm_start=True), ds)
    print(f"gd checkpoint {rel(warm.coef_):.1e} -> asip-hogwild warm-started from it "
          f"{rel(other.coef_):.1e}")
    assert rel(other.coef_) < 2 * rel(warm.coef_)
    for params, msg in [(dict(solver="admm-async", checkpoint=path), r"\['checkpoint'\] need a"),
                        (dict(solver="admm-async", warm_start=True), r"\['warm_start'\] need a"),
                        (dict(checkpoint=tmp_path / "no" / "such.ckpt"), "does not exist"),
                        (dict(callback=3), "callback must be None or a callable"),
                        (dict(checkpoint_every=0), "checkpoint_every must be a positive")]:
        with pytest.raises(ValueError, match=msg):
            AsipClassifier(**params).fit(ds.X[:100], ds.y[:100])
    assert_clean(client)
