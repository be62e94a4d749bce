"""AsipClassifier / AsipRegressor through a real client: sklearn's checks, inputs, errors, faults."""

from __future__ import annotations

import time
import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks
from _until_bound import UntilBound

import asip
from asip.algorithms import (AsipClassifier, AsipRegressor, Objective, get_algorithm, get_loss,
                             get_penalty,
                             make_logistic, make_regression, reference_optimum,
                             relative_suboptimality)

# ------------------------------------------------------------------ scikit-learn's checks
CHECKED = [
    # gd with an iteration budget is deterministic: same data, same rounds, same model. 10
    # rounds pass every check as 100 and 20 did (a round is a barrier: 15-35 ms at a load of
    # 15, where the 122 checks of these two took 444 s with 100 rounds and 97 s with 20; at a
    # load of 12-18, 140 s with 20 and 97 s with 10). Fewer rounds only make a check harder
    # to pass, and being deterministic, a pass does not depend on the machine's load
    AsipClassifier(solver="gd", alpha=1e-1, max_iter=10, max_time=20.0,
                   class_weight="balanced"),
    # the defaults (solver="auto", fit_intercept=True), with an iteration budget
    AsipRegressor(alpha=1e-1, max_iter=10, max_time=20.0),
    # an asynchronous solver, tagged non_deterministic
    AsipClassifier(solver="asip-sgd", alpha=1e-3, max_time=0.3),
]

WEIGHT_CHECKS = ("check_sample_weights_not_overwritten", "check_sample_weights_pandas_series",
                 "check_sample_weights_not_an_array", "check_sample_weights_list",
                 "check_sample_weights_shape", "check_sample_weight_equivalence_on_dense_data",
                 "check_sample_weight_equivalence_on_sparse_data",
                 "check_class_weight_classifiers", "check_class_weight_balanced_classifiers",
                 "check_class_weight_balanced_linear_classifier",
                 "check_classifiers_one_label_sample_weights")


def expected_failures(estimator) -> dict:
    out = {}
    if estimator.__sklearn_tags__().non_deterministic:
        why = ("asynchronous solver: the model depends on thread timing and message arrival "
               "even with a fixed seed, so two fits differ slightly")
        out.update({"check_fit_idempotent": why, "check_supervised_y_2d": why,
                    "check_classifier_data_not_an_array": why})
    solver = estimator.solver
    if solver in ("gd", "auto"):
        why = ("gd with an intercept converges slowly on the check's uncentred data (the "
               "unpenalized intercept direction has little curvature), so within the budget "
               "the weighted and the row-repeated fits stop at different iterates; the "
               "equivalence at the optimum is tested in test_estimator_features")
        out.update({"check_sample_weight_equivalence_on_dense_data": why,
                    "check_sample_weight_equivalence_on_sparse_data": why,
                    "check_class_weight_classifiers": why.replace(
                        "the weighted and the row-repeated fits stop at different iterates",
                        "the intercept is still far from the one that predicts class 0")})
    if solver != "auto" and not get_algorithm(solver).sample_weight:
        why = f"solver {solver!r} raises NotImplementedError for sample weights (for now)"
        out.update({name: why for name in WEIGHT_CHECKS})
    return out


@pytest.mark.timeout(90)
@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check, client):
    why = expected_failures(estimator).get(getattr(check, "func", check).__name__)
    if why:  # a known failure (reason above): a non-strict xfail could only xfail or xpass
        pytest.skip(f"expected to fail: {why}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ------------------------------------------------------------------ inputs
def logistic_data(n=1000, d=10, seed=0):
    ds = make_logistic(n, d, n_zero=2, random_state=seed)
    return ds.X, ds.y


def rel(loss, penalty, alpha, X, y, coef, fi=False, intercept=0.0):
    obj = Objective(get_loss(loss), get_penalty(penalty, alpha), fi)
    ref = reference_optimum(obj, X, y)
    w = np.append(np.ravel(coef), intercept) if fi else np.ravel(coef)
    return float(relative_suboptimality(obj.value(w, X, y), ref.f_star))


def wanted_by(client) -> set:
    """Keys the scheduler keeps for this client (futures it holds, persisted blocks)."""
    cid = client.id
    return set(client.run_on_scheduler(lambda dask_scheduler: [
        str(k) for k, ts in dask_scheduler.tasks.items()
        if any(c.client_key == cid for c in (ts.who_wants or ()))]))


@pytest.mark.timeout(120)
def test_dask_sparse_and_numpy_inputs_agree(client):
    X, y = logistic_data()
    kw = dict(solver="gd", alpha=1e-2, max_iter=50, tol=0.0, max_time=10.0)
    held = wanted_by(client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = AsipClassifier(**kw).fit(X, y)
        b = AsipClassifier(**kw).fit(sp.csr_matrix(X), y)
        c = AsipClassifier(**kw).fit(da.from_array(X, chunks=(500, 10)),
                                     da.from_array(y, chunks=500))
    # the fit on dask blocks persisted them (and the encoded labels) for its stage, and let
    # them go after: the stage's event handler held them for the client's life before
    deadline = time.monotonic() + 10
    while (left := wanted_by(client) - held) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"the fits left their input on the cluster: {sorted(left)[:4]}"
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-10)
    np.testing.assert_allclose(c.coef_, a.coef_, rtol=1e-10)
    assert a.n_iter_ == b.n_iter_ == c.n_iter_ == 50
    # dask in, dask out; same predictions
    pred = c.predict(da.from_array(X, chunks=(500, 10)))
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), a.predict(X))
    # trace: objective values on the same objective, falling from f(0)
    assert c.trace_[0, 1] >= c.trace_[-1, 1]
    np.testing.assert_allclose(c.trace_[-1, 1], a.trace_[-1, 1], rtol=1e-8)


@pytest.mark.timeout(60)
def test_string_labels_proba_and_intercept(client):
    X, y = logistic_data(800, 6, seed=1)
    X = X + 0.5  # an offset the intercept has to absorb
    labels = np.where(y > 0, "spam", "ham")
    clf = AsipClassifier(solver="saga", alpha=1e-3, fit_intercept=True, max_time=2.0)
    clf.fit(X, labels)
    assert list(clf.classes_) == ["ham", "spam"]
    assert clf.coef_.shape == (1, 6) and clf.intercept_.shape == (1,)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), np.where(proba[:, 1] > 0.5, "spam", "ham"))
    assert clf.score(X, labels) == pytest.approx(np.mean(clf.predict(X) == labels))
    r = rel("log_loss", "l2", 1e-3, X, y, clf.coef_, True, clf.intercept_[0])
    print(f"\nsaga, string labels: relative suboptimality {r:.1e} (bound 1e-06, stopped by "
          f"{clf.stopped_by_}, n_iter {clf.n_iter_})")
    assert r < 1e-6
    hinge = AsipClassifier(loss="hinge", solver="gd", max_time=0.3)
    assert not hasattr(hinge, "predict_proba")


@pytest.mark.timeout(60)
def test_convergence_warning_when_the_budget_ends_first(client):
    X, y = logistic_data()
    with pytest.warns(ConvergenceWarning, match="before meeting tol"):
        AsipClassifier(solver="gd", alpha=1e-4, max_iter=3, max_time=5.0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged: no warning
        AsipClassifier(solver="gd", alpha=1e-1, tol=1e-3, max_time=10.0).fit(X, y)


# ------------------------------------------------------------------ bad input
@pytest.mark.timeout(60)
def test_bad_input_gives_clear_errors(client):
    X, y = logistic_data(100, 4)
    clf = AsipClassifier(solver="gd", max_time=0.5)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(Xnan, y)
    with pytest.raises(ValueError, match="inf"):
        AsipRegressor(solver="gd", max_time=0.5).fit(X, np.where(y > 0, np.inf, 0.0))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(X, y[:-1])
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X, np.ones(100))
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, np.linspace(0, 1, 100))
    with pytest.raises(ValueError, match="n_partitions=200 but X has only 100 rows"):
        AsipClassifier(solver="gd", n_partitions=200).fit(X, y)
    import scipy.sparse as sp
    Xbad = sp.csr_matrix(X)
    Xbad.indices[7] = 9  # a column index past n_features: refused before any stage
    with pytest.raises(ValueError, match="CSR column index 9 is outside"):
        clf.fit(Xbad, y)
    for params, msg in [
        (dict(solver="sgd"), r"unknown solver 'sgd'; valid solvers are \['auto', .*'asip-sgd'"),
        (dict(loss="squared_error"), r"valid losses are \['log_loss', 'hinge'\]"),
        (dict(penalty="elasticnet"), r"valid penalties are \['l1', 'l2'\]"),
        (dict(alpha=-1.0), "alpha must be a non-negative"),
        (dict(max_time=0), "max_time must be a positive"),
        (dict(solver="gd", solver_params={"eta": 1}), r"unknown solver_params \['eta'\]"),
        (dict(solver="admm-async", faults=(asip.faults.KillOperator(0, 1.0),)),
         "faults cannot be injected"),
    ]:
        with pytest.raises(ValueError, match=msg):
            AsipClassifier(**params).fit(X, y)


@pytest.mark.timeout(60)
def test_bad_dask_input_gives_clear_errors(client):
    X, y = logistic_data(100, 4)
    clf = AsipClassifier(solver="gd", max_time=0.5)
    with pytest.raises(ValueError, match="chunked along columns"):
        clf.fit(da.from_array(X, chunks=(50, 2)), da.from_array(y, chunks=50))
    with pytest.raises(ValueError, match="do not line up"):
        clf.fit(da.from_array(X, chunks=(50, 4)), da.from_array(y, chunks=40))
    with pytest.raises(ValueError, match="empty row chunks"):
        clf.fit(da.from_array(X, chunks=((50, 0, 50), (4,))),
                da.from_array(y, chunks=((50, 0, 50),)))
    Xnan = X.copy()
    Xnan[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        clf.fit(da.from_array(Xnan, chunks=(50, 4)), da.from_array(y, chunks=50))
    Xbig = X.copy()
    Xbig[60, 1] = 1e200  # finite, but its square is not
    with pytest.raises(ValueError, match="overflow"):
        clf.fit(da.from_array(Xbig, chunks=(50, 4)), da.from_array(y, chunks=50))
    with pytest.raises(ValueError, match="overflow"):
        clf.fit(Xbig, y)
    # sparse dask blocks take the same checks
    import scipy.sparse as sp
    Xs_nan = da.from_array(Xnan, chunks=(50, 4)).map_blocks(sp.csr_matrix,
                                                             meta=sp.csr_matrix((0, 4)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        clf.fit(Xs_nan, da.from_array(y, chunks=50))

    def bad_index(block):
        block = sp.csr_matrix(block)
        block.indices[0] = -1
        return block

    Xs_bad = da.from_array(X, chunks=(50, 4)).map_blocks(bad_index, meta=sp.csr_matrix((0, 4)))
    with pytest.raises(ValueError, match="CSR column index -1 is outside"):
        clf.fit(Xs_bad, da.from_array(y, chunks=50))
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(da.from_array(X, chunks=(50, 4)), da.from_array(np.linspace(0, 1, 100), chunks=50))
    y_nan = np.where(np.arange(100) == 70, np.nan, 1.0)
    with pytest.raises(ValueError, match="y contains NaN"):
        AsipRegressor(solver="gd", max_time=0.5).fit(da.from_array(X, chunks=(50, 4)),
                                                     da.from_array(y_nan, chunks=50))


# ------------------------------------------------------------------ faults
STOCHASTIC = {"asip-sgd", "asip-hogwild"}  # their bound is checked once the model settles


@pytest.mark.timeout(90)
@pytest.mark.parametrize("solver,bound", [("asip-sgd", 1e-3), ("asip-hogwild", 1e-3),
                                          ("asip-admm", 1e-4), ("gd", 1e-6), ("admm", 1e-5),
                                          ("saga", 1e-6)])
def test_killed_operator_restarts_and_the_fit_still_converges(client, solver, bound):
    ds = make_logistic(3000, 20, n_zero=3, random_state=2)
    # tol=0: the deterministic solvers run the whole budget, through the failure. The
    # stochastic ones' model wanders after it (asip-hogwild: 5e-6 to 1e-3 between 1 and 6 s,
    # not shrinking with time, at a load of 5): they run the same 2.5 s, then on until the
    # model has settled within half the bound (capped at 30 s)
    budget = ({"max_time": 30.0, "callback": UntilBound(
        lambda w: rel("log_loss", "l2", 1e-2, ds.X, ds.y, w), bound, 2.5)}
        if solver in STOCHASTIC else {"max_time": 2.5})
    clf = AsipClassifier(solver=solver, alpha=1e-2, tol=0.0, random_state=0,
                         fit_intercept=False, **budget,
                         faults=(asip.faults.KillOperator(partition=1, at=0.3),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(ds.X, ds.y)
    assert [(r.partition, r.incarnation) for r in clf.restarts_] == [(1, 1)]
    r = rel("log_loss", "l2", 1e-2, ds.X, ds.y, clf.coef_)
    print(f"\n{solver} through a KillOperator: relative suboptimality {r:.1e} (bound "
          f"{bound:.0e}, restarted at {clf.restarts_[0].time:.2f} s, stopped by "
          f"{clf.stopped_by_}, n_iter {clf.n_iter_})")
    assert r <= bound
    if solver in STOCHASTIC:  # stopped at the bound, not by the cap
        assert clf.stopped_by_ == "callback", clf.stopped_by_
    # the stage behind the fit is the estimator's to inspect
    res = clf.stage_result_
    assert isinstance(res, asip.StageResult) and res.restarts == clf.restarts_
    # tol=0 still stops a solver whose iterate stopped moving exactly (saga's test,
    # ||w - w_prev|| <= 0, reached in 2.5 s on a fast machine): the stage then names the
    # partition that stopped it, and the estimator calls it "tol"; a callback's stop is the
    # stage's own normal stop (`asip.StopStage` in its trace hook), named "callback" there too
    stopped_itself = clf.stopped_by_ == "tol" and res.stopped_by.startswith("STOP from")
    assert res.stopped_by == clf.stopped_by_ or stopped_itself, res.stopped_by
    assert len(res.results) == 2 and all(r is not None for r in res.results)
    assert res.stats["total"]["consumed"] > 0 and res.timings["launch"] > 0
    assert set(clf.fit_timings_) == {"client", "prepare", "solve", "finish"}
    assert clf.fit_timings_["solve"] >= res.elapsed > (0.3 if stopped_itself else 2.0)


@pytest.mark.timeout(120)
def test_killed_worker_does_not_stop_the_barrier(fresh_cluster):
    ds = make_regression(3000, 20, random_state=3)
    reg = AsipRegressor(solver="gd", alpha=1e-2, max_time=6.0, tol=0.0, fit_intercept=False,
                        faults=(asip.faults.KillWorker(partition=0, at=0.5),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(ds.X, ds.y)
    assert any(r.partition == 0 for r in reg.restarts_)
    assert rel("squared_error", "l2", 1e-2, ds.X, ds.y, reg.coef_) <= 1e-8


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_trace_on_dask_blocks_equals_the_in_memory_trace(fit_intercept):
    from asip.algorithms._model import evaluate_trace as _evaluate_trace
    from asip.algorithms._objectives import Objective, get_loss, get_penalty

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5003, 7)), np.sign(rng.normal(size=5003))
    obj = Objective(get_loss("log_loss"), get_penalty("l1", 0.01), fit_intercept)
    points = [(0.1 * i, rng.normal(size=7 + fit_intercept)) for i in range(150)]
    in_memory = _evaluate_trace(obj, points, X, y)
    blocks = _evaluate_trace(obj, points, da.from_array(X, chunks=(1000, 7)),
                             da.from_array(y, chunks=1000))
    assert len(in_memory) <= 100 and in_memory[0, 0] == 0.0 and in_memory[-1, 0] == 14.9
    np.testing.assert_allclose(blocks, in_memory, rtol=1e-12)
    direct = [obj.value(w, X, y) for t, w in points if t in set(in_memory[:, 0])]
    np.testing.assert_allclose(in_memory[:, 1], direct, rtol=1e-12)
