"""Objectives against numpy/scikit-learn, the reference optimum's certificate, and the datasets. No cluster."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import hinge_loss, log_loss

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, make_regression,
                             reference_optimum, relative_suboptimality)
from asip.algorithms._datasets import DataUnavailable, data_dir, load_libsvm
from asip.algorithms._reference import duality_gap


def small_classification(n=200, d=6, seed=0):
    ds = make_logistic(n, d, n_zero=1, random_state=seed)
    return ds.X, ds.y


def test_losses_match_sklearn_metrics():
    X, y = small_classification()
    w = np.random.default_rng(0).standard_normal(X.shape[1]) * 0.3
    m = X @ w
    obj = Objective(get_loss("log_loss"), get_penalty("l2", 0.0))
    p = 1 / (1 + np.exp(-m))
    assert obj.value(w, X, y) == pytest.approx(log_loss(y, p), rel=1e-10)
    objh = Objective(get_loss("hinge"), get_penalty("l2", 0.0))
    assert objh.value(w, X, y) == pytest.approx(hinge_loss(y, m), rel=1e-12)
    objs = Objective(get_loss("squared_error"), get_penalty("l1", 0.0))
    assert objs.value(w, X, m + 1.0) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("loss", ["log_loss", "squared_error"])
@pytest.mark.parametrize("fi", [False, True])
def test_smooth_gradient_matches_finite_differences(loss, fi):
    X, y = small_classification()
    obj = Objective(get_loss(loss), get_penalty("l2", 0.3), fi)
    w = np.random.default_rng(1).standard_normal(obj.n_params(X.shape[1])) * 0.3
    g = obj.smooth_grad(w, X, y) + np.append(0.3 * obj.split(w)[0], [0.0] * fi)
    eps = 1e-6
    num = np.array([(obj.value(w + eps * e, X, y) - obj.value(w - eps * e, X, y)) / (2 * eps)
                    for e in np.eye(len(w))])
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_l1_prox_zeroes_inside_threshold():
    pen = get_penalty("l1", 2.0)
    out = pen.prox(np.array([-1.5, -0.5, 0.5, 0.9, 1.5]), 0.5)  # threshold 1.0
    np.testing.assert_array_equal(out, [-0.5, 0.0, 0.0, 0.0, 0.5])


def test_bad_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"valid losses are \['hinge', 'log_loss', 'squared_error'\]"):
        get_loss("logistic")
    with pytest.raises(ValueError, match=r"valid penalties are \['l1', 'l2'\]"):
        get_penalty("elasticnet", 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        get_penalty("l2", -1.0)
    with pytest.raises(ValueError, match="undefined"):
        relative_suboptimality(1.0, 0.0)


def test_values_evaluates_many_models_in_one_pass():
    X, y = small_classification()
    obj = Objective(get_loss("log_loss"), get_penalty("l1", 0.01), True)
    W = np.random.default_rng(2).standard_normal((X.shape[1] + 1, 4))
    np.testing.assert_allclose(obj.values(W, sp.csr_matrix(X), y),
                               [obj.value(W[:, k], X, y) for k in range(4)], rtol=1e-12)


def test_reference_matches_sklearn_logistic_and_ridge(tmp_path, monkeypatch):
    monkeypatch.setenv("ASIP_CACHE_DIR", str(tmp_path))
    X, y = small_classification(400, 8)
    n, alpha = len(y), 0.01
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha))
    ref = reference_optimum(obj, X, y)
    sk = LogisticRegression(C=1 / (alpha * n), fit_intercept=False, tol=1e-12, max_iter=10000)
    sk.fit(X, y)
    assert obj.value(sk.coef_.ravel(), X, y) >= ref.f_star - ref.gap
    np.testing.assert_allclose(ref.w, sk.coef_.ravel(), rtol=1e-5, atol=1e-7)
    assert ref.relative_precision < 1e-10
    # ridge: sklearn's Ridge minimizes ||y - Xw||^2 + a ||w||^2 = 2n * ours with a = n alpha
    ds = make_regression(300, 5)
    objr = Objective(get_loss("squared_error"), get_penalty("l2", alpha), True)
    refr = reference_optimum(objr, ds.X, ds.y)
    rr = Ridge(alpha=len(ds.y) * alpha, fit_intercept=True).fit(ds.X, ds.y)
    np.testing.assert_allclose(refr.w, np.append(rr.coef_, rr.intercept_), rtol=1e-8)
    # the cache returns the same answer without recomputing
    assert list(tmp_path.glob("reference/*.npz"))
    again = reference_optimum(obj, X, y)
    np.testing.assert_array_equal(again.w, ref.w)


@pytest.mark.parametrize("loss,pen", [("log_loss", "l1"), ("hinge", "l2"), ("hinge", "l1"),
                                      ("squared_error", "l1")])
@pytest.mark.parametrize("fi", [False, True])
def test_reference_is_certified_and_beats_perturbations(loss, pen, fi, tmp_path, monkeypatch):
    monkeypatch.setenv("ASIP_CACHE_DIR", str(tmp_path))
    if loss == "squared_error":
        ds = make_regression(300, 6)
        X, y = ds.X, ds.y
    else:
        X, y = small_classification(300, 6)
    obj = Objective(get_loss(loss), get_penalty(pen, 0.02), fi)
    ref = reference_optimum(obj, sp.csr_matrix(X), y)
    assert ref.gap >= 0
    assert ref.relative_precision < 1e-7
    # the certificate is a real bound: no perturbed model does better than f* - gap
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = ref.w + rng.standard_normal(ref.w.shape) * 1e-3
        assert obj.value(w, X, y) >= ref.f_star - ref.gap - 1e-15
    # and the duality gap of a poor model is large
    assert duality_gap(obj, X, y, np.zeros_like(ref.w)) > 100 * ref.gap


def test_synthetic_generators_follow_the_dask_demo():
    ds = make_regression(2000, 100)
    assert ds.X.shape == (2000, 100) and ds.task == "regression"
    ref = reference_optimum(Objective(get_loss("squared_error"), get_penalty("l2", 0.0)), ds.X,
                            ds.y, cache=False)
    assert np.sum(np.abs(ref.w) < 0.2) >= 10  # ten true coefficients are zero
    resid = ds.y - ds.X @ ref.w
    assert np.std(resid) == pytest.approx(2.0, rel=0.1)  # noise sd 2
    lg = make_logistic(1000, 20, random_state=3)
    assert set(np.unique(lg.y)) == {-1.0, 1.0}
    np.testing.assert_array_equal(make_logistic(1000, 20, random_state=3).X, lg.X)


def test_libsvm_loader_maps_labels_or_explains_missing(tmp_path, monkeypatch):
    shared = data_dir()  # $ASIP_DATA_DIR if set (a worktree's ../shared is not the clone's)
    monkeypatch.setenv("ASIP_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    with pytest.raises(DataUnavailable, match="ASIP_DATA_DIR"):
        load_libsvm("a9a")
    with pytest.raises(ValueError, match="valid names"):
        load_libsvm("covtype")
    monkeypatch.setenv("ASIP_DATA_DIR", str(shared))
    try:
        ds = load_libsvm("a9a", n_samples=500)
    except DataUnavailable as exc:
        pytest.skip(f"shared LIBSVM data not available: {exc}")
    assert ds.X.shape == (500, 123) and sp.issparse(ds.X)
    assert set(np.unique(ds.y)) == {-1.0, 1.0}
