"""A fit's fixed costs around the solve: no dask.array import for numpy input, the workers'
imports started while the driver checks the input, no data pass for a final objective the
solver already knows -- each without changing what the fit returns."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms import AsipClassifier, Objective, get_loss, get_penalty, make_logistic
from asip.algorithms._fitting import FitOutcome, final_objective, preload_workers
from asip.algorithms._inputs import csr_sqnorm_stats, is_dask
from asip.algorithms._model import evaluate_trace


def test_is_dask_never_imports_dask_array(monkeypatch):
    import dask.array as da

    assert is_dask(da.zeros(3)) and not is_dask(np.zeros(3))
    monkeypatch.delitem(sys.modules, "dask.array")  # as in a process that never imported it
    assert not is_dask(np.zeros(3))
    assert "dask.array" not in sys.modules


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_row_norm_stats_in_one_pass_match_scipy(index):
    X = sp.random(300, 40, density=0.05, format="csr", random_state=2)  # has empty rows
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    assert (sq == 0).any()
    total, top = csr_sqnorm_stats(X)
    np.testing.assert_allclose([total, top], [sq.sum(), sq.max()], rtol=1e-13)
    assert csr_sqnorm_stats(sp.csr_matrix((4, 3))) == (0.0, 0.0)



def test_a_dask_blocks_checks_read_its_nonzeros_once_and_catch_nan_inf():
    """A CSR block's finiteness comes from the same pass as its row norms: NaN and inf are
    caught, finite entries whose squares overflow are not mistaken for them."""
    from asip.algorithms._inputs import block_stats

    X = sp.random(50, 20, density=0.2, format="csr", random_state=1)
    sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    np.testing.assert_allclose(block_stats(X), [1.0, sq.sum(), sq.max()], rtol=1e-13)
    for bad, finite in ((np.nan, 0.0), (np.inf, 0.0), (-np.inf, 0.0), (1e200, 1.0)):
        Y = X.copy()
        Y.data[3] = bad
        assert block_stats(Y)[0] == finite, bad
    np.testing.assert_array_equal(block_stats(X.toarray()), block_stats(X))

def _outcome(w, snapshots, error=None):
    return FitOutcome(w, snapshots, [(0.5, w)], 3, "tol", [], None, 1e-4, error)


def test_final_objective_only_from_a_snapshot_of_that_very_model():
    w = np.array([1.0, -2.0])
    known = {"w": w.copy(), "k": 3, "objective_w": 0.25}
    assert final_objective(_outcome(w, (None, known)), 1) == 0.25
    assert final_objective(_outcome(w, ({"w": w + 1e-9, "k": 3, "objective_w": 0.2},)), 1) is None
    assert final_objective(_outcome(w, ({"w": w, "k": 3},)), 1) is None  # not known
    assert final_objective(_outcome(w, (known,)), 2) is None  # several tasks: evaluated
    assert final_objective(_outcome(w, (known,), error=KeyboardInterrupt()), 1) is None
    assert final_objective(_outcome(w, None), 1) is None


@pytest.mark.timeout(90)
def test_preload_and_the_known_final_objective_on_the_cluster(client):
    # a module no worker has imported yet is imported there, in the background
    name = "asip_preload_probe_module_that_does_not_exist"
    preload_workers(client, ("colorsys", name))  # a missing module is no error
    deadline = time.monotonic() + 30
    while not all(client.run(lambda: "colorsys" in sys.modules).values()):
        assert time.monotonic() < deadline, "preload never imported the module on the workers"
        time.sleep(0.05)
    # lbfgs's trace ends at its certified model with the value the solver computed, which is
    # the objective there (weights and intercept included)
    ds = make_logistic(2000, 12, random_state=5)
    sw = np.random.default_rng(1).uniform(0.5, 1.5, size=len(ds.y))
    clf = AsipClassifier(solver="lbfgs", alpha=1e-3, tol=1e-6, max_time=30.0).fit(
        ds.X, ds.y, sample_weight=sw)
    assert clf.stopped_by_ == "tol"
    obj = Objective(get_loss("log_loss"), get_penalty("l2", 1e-3), fit_intercept=True)
    w = np.append(clf.coef_.ravel(), clf.intercept_)
    want = evaluate_trace(obj, [(0.0, w)], ds.X, ds.y, sw * len(sw) / sw.sum())[0, 1]
    np.testing.assert_allclose(clf.trace_[-1, 1], want, rtol=1e-10)
    told = [r.get("objective_w") for r in clf.stage_result_.results if r]
    assert clf.trace_[-1, 1] in told  # the solver's value, not another pass over the data
    assert clf.trace_.shape[1] == 2 and np.all(np.diff(clf.trace_[:, 0]) >= 0)


def _labels_by_unique(yb, wb):
    labels, inverse, counts = np.unique(yb, return_inverse=True, return_counts=True)
    wsums = counts.astype(float) if wb is None else np.bincount(inverse, weights=wb)
    return labels, counts, wsums


@pytest.mark.parametrize("y", [
    np.where(np.arange(500) % 3 == 0, 1.0, -1.0), np.arange(500) % 2,
    (np.arange(500) % 2 + 3).astype(np.int8), np.array([2, 2, 9], dtype=np.uint16),
    np.array([3.0]), np.arange(500) % 7, np.arange(500) % 4 == 0, np.array(["b", "a", "b"])])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_label_blocks_stats_match_np_unique(y, weighted):
    """The per-block label stats: two numeric labels at most without a sort, else
    np.unique; either way what np.unique gives (labels sorted, in their dtype; counts;
    weight sums)."""
    from asip.algorithms._inputs import _label_stats, few_labels

    w = np.linspace(0.5, 2.0, len(y)) if weighted else None
    fast = y.dtype.kind in "fiu" and len(np.unique(y)) <= 2
    assert (few_labels(y, w) is not None) == fast
    got = _label_stats(y, w)
    labels, counts, wsums = _labels_by_unique(y, w)
    assert got["labels"].dtype == labels.dtype
    np.testing.assert_array_equal(got["labels"], labels)
    np.testing.assert_array_equal(got["counts"], counts)
    np.testing.assert_allclose(got["wsums"], wsums, rtol=1e-12)


def test_label_stats_keep_sklearns_errors():
    from asip.algorithms._inputs import _label_stats, few_labels

    assert few_labels(np.array([1.0, np.nan, -1.0]), None) is None
    with pytest.raises(ValueError, match="NaN"):
        _label_stats(np.array([1.0, np.nan, -1.0]), None)
    with pytest.raises(ValueError, match="continuous"):
        _label_stats(np.array([0.5, 1.0, 1.0]), None)
    assert not _label_stats(np.array([1.0, -1.0]), np.array([1.0, -2.0]))["weights_ok"]


def test_dask_labels_already_plus_minus_one_are_passed_through():
    """No encoding task a block when ``y`` already holds -1.0/+1.0 (float64); other labels
    are encoded as before (the local threaded scheduler: no cluster needed)."""
    import dask.array as da

    from asip.algorithms._inputs import prepare

    rng = np.random.default_rng(0)
    X = da.from_array(rng.standard_normal((120, 4)), chunks=(60, 4))
    pm = np.where(rng.uniform(size=120) < 0.5, 1.0, -1.0)
    y = da.from_array(pm, chunks=60)
    est = AsipClassifier()
    assert prepare(est, X, y, None, None).data[1] is y
    np.testing.assert_array_equal(est.classes_, [-1.0, 1.0])
    for labels in ((pm > 0).astype(np.float64), pm.astype(np.int64)):
        enc = prepare(est, X, da.from_array(labels, chunks=60), None, None).data[1]
        np.testing.assert_array_equal(enc.compute(), pm)


@pytest.mark.timeout(90)
def test_checks_of_persisted_blocks_run_once_and_still_refuse_nan(client, monkeypatch):
    """A refit on the same persisted blocks reuses their checks (no round trip); what the
    checks found -- a NaN -- is refused again; blocks that are not futures are checked
    every time."""
    import dask
    import dask.array as da

    from asip.algorithms import _inputs as I

    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 3))
    y = da.from_array(np.where(A[:, 0] > 0, 1.0, -1.0), chunks=100).persist()
    X = da.from_array(A, chunks=(100, 3)).persist()
    est = AsipClassifier()
    first = I.prepare(est, X, y, None, client)
    assert all(k is not None for k in I.persisted_keys(X) + I.persisted_keys(y))
    calls = []
    real = dask.compute
    monkeypatch.setattr(dask, "compute", lambda *a, **k: calls.append(len(a)) or real(*a, **k))
    again = I.prepare(est, X, y, None, client)
    assert calls == [0] and (again.sq_mean, again.sq_max) == (first.sq_mean, first.sq_max)
    A[5, 1] = np.nan
    bad = da.from_array(A, chunks=(100, 3))
    assert I.persisted_keys(bad) == [None, None]
    for Xb in (bad, bad.persist(), bad.persist()):
        with pytest.raises(ValueError, match="NaN or infinity"):
            I.prepare(est, Xb, y, None, client)
    assert calls[1:] == [2, 2, 0]  # X (y: remembered); the persisted X; nothing again


def test_a_model_reported_several_times_is_evaluated_once(monkeypatch):
    """trace_ holds the same values whether repeated models are evaluated each time or once
    (a barrier solver's partitions all report the same iterate); a known one costs no pass."""
    import asip.algorithms._model as M

    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((300, 4)), np.sign(rng.standard_normal(300))
    obj = Objective(get_loss("log_loss"), get_penalty("l2", 1e-2), fit_intercept=True)
    w1, w2, w3 = (rng.standard_normal(5) for _ in range(3))
    points = [(0.1, w1), (0.2, w1.copy()), (0.3, w2), (0.4, w2.copy()), (0.5, w3), (0.6, w3)]
    want = np.array([evaluate_trace(obj, [p], X, y)[0, 1] for p in points])
    evaluated = []
    real = M._evaluate
    monkeypatch.setattr(M, "_evaluate", lambda o, pts, *a: evaluated.append(len(pts)) or real(o, pts, *a))
    known = [None, None, None, 1.25, None, None]  # w2's value, as the solver told it
    got = evaluate_trace(obj, points, X, y, known=known)
    assert evaluated == [2]  # w1 and w3, once each
    np.testing.assert_allclose(got[:, 0], [t for t, _ in points])
    np.testing.assert_allclose(got[[0, 1, 4, 5], 1], want[[0, 1, 4, 5]], rtol=1e-12)
    assert list(got[2:4, 1]) == [1.25, 1.25]


@pytest.mark.parametrize("sparse", [False, True])
def test_cocoa_newton_warm_up_steps_on_a_few_rows_and_leaves_the_state(monkeypatch, sparse):
    """The warm-up before the gang's start compiles a Newton round's kernels on the first
    rows only (a whole round on a copy of the state was a round's CPU before every start)."""
    from asip.algorithms import _cocoa
    from asip.algorithms._base import Problem, local_data

    ds = make_logistic(3_000, 12, random_state=4)
    X = sp.csr_matrix(ds.X) if sparse else ds.X
    pb = Problem(get_loss("log_loss").code, get_penalty("l2", 0.1).code, 0.1, False, 12,
                 (3_000, 3_000), float((ds.X ** 2).sum(1).mean()),
                 float((ds.X ** 2).sum(1).max()))
    params = _cocoa.ALGORITHM.merge({"local_solver": "newton", "seed": 0})
    data = local_data(X, ds.y, pb, 0, 0)
    state = _cocoa.init(pb, data, params)
    seen = []

    class Counting(_cocoa.LocalNewton):
        def __init__(self, X, y, *args, **kwargs):
            seen.append(len(y))
            super().__init__(X, y, *args, **kwargs)

    monkeypatch.setattr(_cocoa, "LocalNewton", Counting)
    before = {k: v.copy() for k, v in _cocoa.snapshot(state).items() if isinstance(v, np.ndarray)}
    _cocoa.ALGORITHM.warm_up(state, data)
    assert seen == [_cocoa.WARM_UP_ROWS]
    assert state.newton.passes == 0 and state.newton.cache is None  # the real one untouched
    for k, v in _cocoa.snapshot(state).items():
        if k in before:
            np.testing.assert_array_equal(v, before[k])
    # and the first real round after it is the same as without a warm-up
    fresh = _cocoa.init(pb, data, params)
    a = _cocoa.local_step(state, data, (), 0.0)
    b = _cocoa.local_step(fresh, data, (), 0.0)
    np.testing.assert_array_equal(a.state.w, b.state.w)


@pytest.mark.parametrize("sparse", [False, True])
def test_cocoa_sdca_warm_up_answers_a_certificate_on_a_few_rows_and_leaves_the_state(
        monkeypatch, sparse):
    """SDCA's warm-up compiles the certificate answer's kernels too (their first call cost
    4-7 ms inside the run), on the first rows only, and leaves the real state alone."""
    from asip.algorithms import _cocoa
    from asip.algorithms._base import Problem, local_data

    ds = make_logistic(3_000, 12, random_state=6)
    X = sp.csr_matrix(ds.X) if sparse else ds.X
    pb = Problem(get_loss("hinge").code, get_penalty("l2", 0.1).code, 0.1, False, 12,
                 (3_000, 3_000), float((ds.X ** 2).sum(1).mean()),
                 float((ds.X ** 2).sum(1).max()))
    params = _cocoa.ALGORITHM.merge({"local_solver": "sdca", "seed": 0})
    data = local_data(X, ds.y, pb, 0, 0)
    state = _cocoa.init(pb, data, params)
    seen = []
    real = _cocoa.certificate_parts
    monkeypatch.setattr(_cocoa, "certificate_parts",
                        lambda X, y, *a, **k: seen.append(len(y)) or real(X, y, *a, **k))
    before = {k: v.copy() for k, v in _cocoa.snapshot(state).items() if isinstance(v, np.ndarray)}
    _cocoa.ALGORITHM.warm_up(state, data)
    assert seen == [_cocoa.WARM_UP_ROWS]
    for k, v in _cocoa.snapshot(state).items():
        if k in before:
            np.testing.assert_array_equal(v, before[k])


def test_cocoa_newton_multiplies_an_aligned_copy_of_a_misaligned_partition():
    """A block a worker received is often misaligned, and numpy then skips BLAS (a Newton
    round's products 7-20x slower): Newton works on an aligned copy, with the same result."""
    from asip.algorithms import _cocoa
    from asip.algorithms._base import Problem, local_data

    ds = make_logistic(2_000, 10, random_state=5)
    buf = np.empty(ds.X.nbytes + 8, dtype=np.uint8)
    X = np.frombuffer(buf.data, dtype=np.float64, count=ds.X.size, offset=3).reshape(ds.X.shape)
    X[...] = ds.X
    assert not X.flags.aligned
    pb = Problem(get_loss("log_loss").code, get_penalty("l2", 0.1).code, 0.1, False, 10,
                 (2_000, 2_000), float((ds.X ** 2).sum(1).mean()),
                 float((ds.X ** 2).sum(1).max()))
    params = _cocoa.ALGORITHM.merge({"local_solver": "newton", "seed": 0})
    odd = _cocoa.init(pb, local_data(X, ds.y, pb, 0, 0), params)
    assert odd.newton.A.flags.aligned
    plain = _cocoa.init(pb, local_data(ds.X, ds.y, pb, 0, 0), params)
    assert plain.newton.A is not None and np.shares_memory(plain.newton.A, ds.X)  # no copy
    a = _cocoa.local_step(odd, local_data(X, ds.y, pb, 0, 0), (), 0.0)
    b = _cocoa.local_step(plain, local_data(ds.X, ds.y, pb, 0, 0), (), 0.0)
    np.testing.assert_array_equal(a.state.w, b.state.w)


@pytest.mark.timeout(120)
def test_no_local_objective_pass_in_a_fits_first_half_second(monkeypatch):
    """The dashboard's live objective is a whole loss pass: not at the first report, where
    it delayed every partition's first round, only from `FIRST_OBJECTIVE_AT` on."""
    from distributed import Client, LocalCluster

    from asip.algorithms import _operator as O

    calls = []
    real = O.SolverOperator._local_objective

    def recorded(self, now):
        calls.append(now)
        return real(self, now)

    monkeypatch.setattr(O.SolverOperator, "_local_objective", recorded)
    ds = make_logistic(4_000, 10, random_state=0)
    # in-process workers: they run this module's SolverOperator, recorded
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):  # the default
        AsipClassifier(solver="gd", tol=0, max_time=1.0, n_partitions=2).fit(ds.X, ds.y)
    assert calls, "the objective was never evaluated in a 1 s fit"
    assert min(calls) >= O.FIRST_OBJECTIVE_AT, sorted(calls)[:4]
