"""What a scikit-learn user expects of the estimators: weights, multiclass, DataFrames, auto.

Cluster tests run on the shared 2x1 cluster with the deterministic ``gd`` (so that two
fits that should agree agree to the digit); the rest runs in-process.
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import asip
from asip.algorithms import AsipClassifier, AsipRegressor, make_logistic
from asip.algorithms._auto import choose_solver
from asip.algorithms._inputs import prepare
from asip.algorithms._model import split_tasks, stack_tasks
from asip.algorithms._operator import SolverOperator
from asip.algorithms._progress import FitProgress
from asip.algorithms._solvers import RUNTIME_SOLVERS

GD = dict(solver="gd", alpha=1e-1, tol=1e-6, max_time=30.0)


def quiet(est, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kw)


def three_classes(n=1500, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(3, d))
    y = rng.integers(0, 3, size=n)
    X = centers[y] + rng.normal(size=(n, d))
    return X - X.mean(axis=0), np.array(["a", "b", "c"])[y]  # centred: gd needs few rounds


# ------------------------------------------------------------------ on the cluster
@pytest.mark.timeout(90)
def test_multiclass_in_one_stage_matches_sklearn_accuracy(client):
    X, y = three_classes()
    alpha = 1e-1
    kw = dict(solver="gd", alpha=alpha, tol=1e-4, max_time=30.0)
    clf = quiet(AsipClassifier(**kw), X, y)
    ref = LogisticRegression(C=1.0 / (alpha * len(y)), max_iter=1000).fit(X, y)
    assert clf.coef_.shape == (3, 8) and clf.intercept_.shape == (3,)
    assert len(clf.stage_result_.results) == 2  # one stage, 2 operators, 3 tasks each
    acc, ref_acc = clf.score(X, y), ref.score(X, y)
    assert acc >= ref_acc - 0.01, (acc, ref_acc)
    d = clf.decision_function(X)
    assert d.shape == (1500, 3)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(d, axis=1)])
    proba = clf.predict_proba(X)
    assert proba.shape == (1500, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.log(proba), clf.predict_log_proba(X), rtol=1e-10)
    # each task is the binary problem "class k against the rest"
    k = 1
    binary = quiet(AsipClassifier(**kw), X, y == clf.classes_[k])
    assert clf.stopped_by_ == binary.stopped_by_ == "tol"
    np.testing.assert_allclose(clf.coef_[k], binary.coef_[0], rtol=1e-10)
    # dask in, dask out
    Xd = da.from_array(X, chunks=(500, 8))
    np.testing.assert_array_equal(clf.predict(Xd).compute(), clf.predict(X))
    np.testing.assert_allclose(clf.predict_proba(Xd).compute(), proba)
    # the trace never ends above where it began (a fit certified before its first report
    # holds only the final model: 3 equal points on a fast machine)
    assert len(clf.trace_) >= 1 and clf.trace_[-1, 1] <= clf.trace_[0, 1]


@pytest.mark.timeout(90)
def test_sample_weight_is_row_repetition_and_class_weight_is_sample_weight(client):
    ds = make_logistic(600, 6, random_state=4)
    X, y = ds.X, ds.y
    rep = np.random.default_rng(1).integers(0, 4, size=len(y))  # 0: the row is left out
    weighted = quiet(AsipClassifier(**GD), X, y, sample_weight=rep)
    repeated = quiet(AsipClassifier(**GD), np.repeat(X, rep, axis=0), np.repeat(y, rep))
    assert weighted.stopped_by_ == repeated.stopped_by_ == "tol"
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(weighted.trace_[-1, 1], repeated.trace_[-1, 1], rtol=1e-10)
    # class weights are sample weights per class; "balanced" too
    cw = quiet(AsipClassifier(class_weight={1.0: 3.0}, **GD), X, y)
    sw = quiet(AsipClassifier(**GD), X, y, sample_weight=np.where(y > 0, 3.0, 1.0))
    np.testing.assert_allclose(cw.coef_, sw.coef_, rtol=1e-12)
    from sklearn.utils.class_weight import compute_sample_weight
    bal = quiet(AsipClassifier(class_weight="balanced", **GD), X, y)
    bal_sw = quiet(AsipClassifier(**GD), X, y,
                   sample_weight=compute_sample_weight("balanced", y))
    np.testing.assert_allclose(bal.coef_, bal_sw.coef_, rtol=1e-12)
    # the same weights on dask input
    Xd, yd = da.from_array(X, chunks=(300, 6)), da.from_array(y, chunks=300)
    dk = quiet(AsipClassifier(class_weight={1.0: 3.0}, **GD), Xd, yd)
    np.testing.assert_allclose(dk.coef_, cw.coef_, rtol=1e-10)
    # a solver that cannot weight rows says so
    with pytest.raises(NotImplementedError, match="'asip-sgd' does not support sample weights"):
        AsipClassifier(solver="asip-sgd").fit(X, y, sample_weight=rep)
    with pytest.raises(ValueError, match="non-zero|sums to zero"):
        AsipClassifier(**GD).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="[Nn]egative"):
        AsipClassifier(**GD).fit(X, y, sample_weight=-np.ones(len(y)))


@pytest.mark.timeout(90)
def test_dataframes_feature_names_and_partitions(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")

    X, y = three_classes(400, 4, seed=2)
    y = (y == "a").astype(int)
    df = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])
    kw = dict(GD, tol=1e-5)
    clf = quiet(AsipClassifier(**kw), df, y)
    assert list(clf.feature_names_in_) == ["f0", "f1", "f2", "f3"]
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[["f1", "f0", "f2", "f3"]])
    ddf = dd.from_pandas(df, npartitions=2)
    dclf = quiet(AsipClassifier(**kw), ddf, dd.from_pandas(pd.Series(y), npartitions=2))
    assert list(dclf.feature_names_in_) == list(df.columns)
    assert len(dclf.stage_result_.results) == 2
    assert clf.stopped_by_ == dclf.stopped_by_ == "tol"
    np.testing.assert_allclose(dclf.coef_, clf.coef_, rtol=1e-8)
    np.testing.assert_array_equal(np.asarray(dclf.predict(ddf).compute()), clf.predict(df))
    with pytest.raises(ValueError, match="differ from those seen in fit"):
        dclf.predict(ddf[["f1", "f0", "f2", "f3"]])
    with pytest.raises(ValueError, match="X has 3 features, but AsipClassifier is expecting 4"):
        dclf.predict(da.from_array(X[:, :3], chunks=(100, 3)))


@pytest.mark.timeout(90)
def test_pipeline_grid_search_and_cross_val_score_run_sequentially_on_the_cluster(client):
    ds = make_logistic(400, 5, random_state=5)
    pipe = make_pipeline(StandardScaler(), AsipClassifier(solver="gd", tol=1e-4, max_time=5.0))
    search = GridSearchCV(pipe, {"asipclassifier__alpha": [1e-3, 1e-1]}, cv=2, n_jobs=1)
    quiet(search, ds.X, ds.y)
    assert search.best_score_ > 0.6
    scores = cross_val_score(AsipRegressor(solver="gd", tol=1e-4, max_time=5.0), ds.X,
                             ds.X @ np.arange(5.0), cv=2)
    assert np.all(scores > 0.9)


@pytest.mark.timeout(90)
def test_defaults_stop_certified_and_small_reports_carry_no_model(client, capsys):
    ds = make_logistic(1000, 10, random_state=6)
    # all defaults (solver auto -> lbfgs on dense data, intercept, tol, alpha 1e-4)
    clf = AsipClassifier(verbose=1).fit(ds.X, ds.y)
    assert clf.solver_ in RUNTIME_SOLVERS and RUNTIME_SOLVERS[clf.solver_].uses_tol
    assert clf.stopped_by_ == "tol", clf.stopped_by_
    assert clf.gap_ is None or 0 <= clf.gap_ < 1e-3
    assert set(clf.fit_timings_) == {"client", "prepare", "solve", "finish"}
    assert clf.intercept_.shape == (1,) and clf.n_iter_ > 0
    assert "msg/s" in capsys.readouterr().out  # the progress bar
    # a model over the byte budget stays on the workers until the end
    with dask.config.set({"asip.trace.model-bytes": 0}):
        small = quiet(AsipClassifier(solver="asip-sgd", max_time=0.5), ds.X, ds.y)
    trace = small.stage_result_.trace
    assert trace and all("w" not in e.metrics and e.metrics["has_model"] == 0 for e in trace)
    assert all("msgs_in" in e.metrics and "t" in e.metrics for e in trace)
    assert small.trace_.shape == (1, 2)  # the final model only
    assert np.all(np.isfinite(small.coef_)) and small.score(ds.X, ds.y) > 0.6


# ------------------------------------------------------------------ in-process
def test_n_partitions_is_honoured_exactly_or_refused():
    X = da.from_array(np.random.default_rng(0).normal(size=(10, 3)), chunks=(5, 3))
    y = da.from_array(np.arange(10) % 2, chunks=5)
    for k in (1, 3, 6, 7, 10):
        prep = prepare(AsipClassifier(n_partitions=k), X, y, None, None)
        assert len(prep.sizes) == k and sum(prep.sizes) == 10 and min(prep.sizes) >= 1
    with pytest.raises(ValueError, match="n_partitions=11 but X has only 10 rows"):
        prepare(AsipClassifier(n_partitions=11), X, y, None, None)


def test_auto_picks_a_certified_solver_and_prefers_cocoa_when_registered():
    for loss, penalty in [("log_loss", "l2"), ("log_loss", "l1"), ("hinge", "l2"),
                          ("squared_error", "l1")]:
        name = choose_solver(loss, penalty, 1000, 10, False)
        assert RUNTIME_SOLVERS[name].uses_tol, (loss, penalty, name)
    assert RUNTIME_SOLVERS[choose_solver("log_loss", "l2", 10, 2, False, True)].sample_weight
    assert choose_solver("log_loss", "l2", 1000, 10, True) == "asip-svrg"  # sparse smooth l2
    assert choose_solver("log_loss", "l2", 1000, 10, False) == "lbfgs"  # dense smooth l2
    registry = {k: v for k, v in RUNTIME_SOLVERS.items() if k not in ("asip-svrg", "lbfgs")}
    registry["asip-cocoa"] = RUNTIME_SOLVERS["gd"]
    assert choose_solver("log_loss", "l2", 1000, 10, True, registry=registry) == "asip-cocoa"
    if "asip-cocoa" in RUNTIME_SOLVERS:  # a solver that refuses the problem is passed over
        from asip.algorithms._base import Problem
        no_alpha = Problem(0, 0, 0.0, True, 10, (500, 500))
        assert choose_solver("log_loss", "l2", 1000, 10, False, problem=no_alpha) != "asip-cocoa"
    with pytest.raises(NotImplementedError, match="no solver for hinge-l2 with sample weights"):
        choose_solver("hinge", "l2", 10, 2, False, True, registry={})


def test_task_snapshots_stack_and_split_and_reports_drop_big_models():
    snaps = [{"w": np.full(4, float(t)), "t": 10 + t} for t in range(3)]
    stacked = stack_tasks(snaps)
    assert stacked["w"].shape == (3, 4) and stacked["t"].tolist() == [10, 11, 12]
    back = split_tasks(dict(stacked, msgs_in=5), 3)
    assert [b["t"] for b in back] == [10, 11, 12] and back[2]["msgs_in"] == 5
    np.testing.assert_array_equal(back[1]["w"], snaps[1]["w"])
    from asip.algorithms._base import Problem
    problem = Problem(0, 0, 0.1, True, 3, (5, 5))
    op = SolverOperator("asip-sgd", problem, n_tasks=3, report_models=False)
    op._pushed = op._received = 0
    rep = op._report(dict(stacked))
    assert "w" not in rep and rep["has_model"] == 0 and rep["t"].tolist() == [10, 11, 12]
    big = SolverOperator("asip-sgd", problem)
    big._pushed = big._received = 0
    assert big._report({"w": np.zeros(4), "t": 1})["has_model"] == 1  # small: in the report
    with dask.config.set({"asip.trace.model-bytes": "16 B"}):
        tiny = SolverOperator("asip-sgd", problem)
    tiny._pushed = tiny._received = 0
    assert "w" not in tiny._report({"w": np.zeros(4), "t": 1})


def test_progress_status_line_from_reports():
    entries = [asip.TraceEntry(0.5, 0, 0, {"t": 40, "msgs_in": 100, "gap": 1e-3}),
               asip.TraceEntry(1.0, 1, 0, {"t": 50, "msgs_in": 300, "gap": 2e-3})]
    bar = FitProgress("fit", 10.0)
    bar.update(entries)
    assert bar.status() == "gap 2.00e-03 | iter 50 | 400 msg/s"


def test_probabilities_are_stable_at_huge_margins():
    from asip.algorithms._estimators import _log_proba

    d = np.array([[800.0], [-800.0], [0.0]])
    lp = _log_proba(d)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0)
    np.testing.assert_allclose(lp[2], np.log([0.5, 0.5]))
    lp3 = _log_proba(np.array([[900.0, -900.0, 0.0]]))
    assert np.all(np.isfinite(lp3)) and np.argmax(lp3) == 0
