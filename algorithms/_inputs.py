"""Input preparation for the estimators: user data -> checked partitions, a `Problem`'s sizes.

One job: take what a scikit-learn user passes to ``fit`` -- a numpy array, a
scipy.sparse matrix, a pandas DataFrame, a dask array or a dask DataFrame, with
``y`` and optional ``sample_weight`` -- check it (finite values, matching rows,
labels, non-negative weights), encode the labels and weights, and split it into
the row partitions a `asip.Stage` runs on:

* numpy / scipy.sparse / pandas: ``n_partitions`` contiguous row blocks (default:
  one per worker thread), each an in-memory tuple ``(X_block, y_block[, w_block])``
  that the stage scatters straight to a worker;
* dask arrays / DataFrames: one partition per row chunk as chunked (``n_partitions``
  rechunks to exactly that many), checked with one task per block where it lives.

Labels: binary problems get ``y`` in {-1, +1} (``classes_[1]`` is +1); with more
classes ``y`` holds the class index (0..K-1) and the operator builds one {-1, +1}
task per class (one-vs-rest). Weights (``sample_weight`` times the class weights)
are rescaled to mean 1 over all rows, so that the objective is
``(1 / sum s) sum_i s_i phi_i + R``: a weight of k is the row repeated k times.
Uniform weights become ``None`` (no weights at all).
"""

from __future__ import annotations

import logging
import numbers
import sys
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numba import njit
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (_assert_all_finite, _check_sample_weight,
                                      validate_data)

from . import _kernels as K

__all__ = ["Prepared", "as_dask_array", "check_predict_input", "is_dask", "prepare"]

logger = logging.getLogger(__name__)


class Prepared(NamedTuple):
    """Checked, encoded and partitioned training data."""

    data: Any  # what the Stage runs on: a list of in-memory blocks or a tuple of dask arrays
    sizes: tuple[int, ...]  # rows per partition
    sq_mean: float  # mean squared row norm (no intercept)
    sq_max: float  # max squared row norm
    X: Any  # the whole X, y, weights (or None) for evaluating the objective
    y: Any
    sw: Any
    sparse: bool


def is_dask(a) -> bool:
    """Whether ``a`` is a dask array. Never imports dask.array: until something has, nothing
    is one (the import cost a fit on numpy input 0.3-0.5 s, a third of its preparation)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(a, da.Array)


def _is_dask_collection(a) -> bool:
    return hasattr(a, "__dask_graph__") and not isinstance(a, type)


def _is_dask_frame(a) -> bool:
    if not _is_dask_collection(a) or is_dask(a):
        return False
    return hasattr(a, "to_dask_array")


def as_dask_array(a, name: str):
    """A dask DataFrame / Series as a dask array with known chunk sizes; arrays unchanged."""
    if _is_dask_frame(a):
        return a.to_dask_array(lengths=True)
    if _is_dask_collection(a) and not is_dask(a):
        raise TypeError(f"{name} is a {type(a).__name__}; pass a dask array or DataFrame")
    return a


def _frame_columns(X) -> np.ndarray | None:
    """Column names of a (dask) DataFrame when all are strings, as scikit-learn keeps them."""
    cols = getattr(X, "columns", None)
    if cols is None:
        return None
    names = np.asarray(list(cols), dtype=object)
    if len(names) and all(isinstance(c, str) for c in names):
        return names
    return None


def check_predict_input(est, X):
    """``X`` for predicting: dask input checked like numpy input (features, names)."""
    if _is_dask_frame(X):
        names = _frame_columns(X)
        fitted = getattr(est, "feature_names_in_", None)
        if fitted is not None and (names is None or list(names) != list(fitted)):
            raise ValueError(f"The feature names of X {None if names is None else list(names)} "
                             f"differ from those seen in fit {list(fitted)}")
        X = as_dask_array(X, "X")
    if is_dask(X):
        if X.ndim != 2 or X.shape[1] != est.n_features_in_:
            raise ValueError(f"X has {X.shape[1] if X.ndim == 2 else X.shape} features, but "
                             f"{type(est).__name__} is expecting {est.n_features_in_} features "
                             "as input.")
        if len(X.chunks[1]) != 1:
            X = X.rechunk({1: -1})
        return X.astype(np.float64)
    return validate_data(est, X, accept_sparse="csr", dtype=np.float64, reset=False)


def prepare(est, X, y, sample_weight, client) -> Prepared:
    """Check and partition ``X, y, sample_weight`` for ``est`` (sets ``n_features_in_``,
    ``feature_names_in_`` and, for classifiers, ``classes_``)."""
    if _is_dask_frame(X) or is_dask(X):
        return _prepare_dask(est, X, y, sample_weight)
    if is_dask(y) or _is_dask_collection(y):
        y = np.asarray(as_dask_array(y, "y").compute())
    if is_dask(sample_weight) or _is_dask_collection(sample_weight):
        sample_weight = np.asarray(as_dask_array(sample_weight, "sample_weight").compute())
    return _prepare_memory(est, X, y, sample_weight, client)


# ---------------------------------------------------------------------- in memory
def _prepare_memory(est, X, y, sample_weight, client) -> Prepared:
    # X's finiteness comes from the row-norm pass below (`memory_sqnorm_stats`), not from
    # a pass of scikit-learn's of its own: one read of the data fewer (10 ms at 30M nonzeros)
    X, y = validate_data(est, X, y, accept_sparse="csr", dtype=np.float64,
                         y_numeric=not est._classifier, multi_output=False,
                         ensure_all_finite=False)
    n = X.shape[0]
    if est._classifier:
        est._set_classes(_label_stats(y, None)["labels"])  # the checks, with no sort of y
        y_enc = encode_labels(y, est.classes_)
    else:
        y_enc = np.asarray(y, dtype=np.float64)
    sw = None
    if sample_weight is not None:
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if est._classifier and getattr(est, "class_weight", None) is not None:
        # "balanced" counts each class by its weight: weight k is the row repeated k times
        idx = np.searchsorted(est.classes_, y)
        wsums = np.bincount(idx, weights=sw, minlength=len(est.classes_))
        table = class_weight_table(est.class_weight, est.classes_, wsums)
        sw = table[idx] if sw is None else sw * table[idx]
    sw = normalize_weights(sw, None if sw is None else float(sw.sum()), n)
    n_parts = est.n_partitions or max(sum(client.nthreads().values()), 1)
    if est.n_partitions is not None and est.n_partitions > n:
        raise ValueError(f"n_partitions={est.n_partitions} but X has only {n} rows: every "
                         "partition needs at least one row")
    n_parts = min(n_parts, n)  # the default (one per thread) on a tiny X
    bounds = np.linspace(0, n, n_parts + 1).astype(int)
    # in-memory blocks: the stage scatters them straight to the workers (not carried in
    # the task graph through the scheduler) and again from here if a worker dies
    blocks = [tuple([row_block(X, a, b), y_enc[a:b]] + ([] if sw is None else [sw[a:b]]))
              for a, b in zip(bounds[:-1], bounds[1:])]
    sq_sum, sq_top = memory_sqnorm_stats(est, X, [blk[0] for blk in blocks])
    sizes = tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:]))
    sq_mean, sq_max = row_norm_scale(sq_sum / n, sq_top)
    return Prepared(blocks, sizes, sq_mean, sq_max, X, y_enc, sw, sp.issparse(X))


def memory_sqnorm_stats(est, X, blocks: list) -> tuple[float, float]:
    """Sum and max of ``||a_i||^2`` over the rows of an in-memory ``X`` (validated, float64),
    and its finiteness check in the same pass: a NaN or inf entry makes a square, so the sum,
    non-finite; then scikit-learn's own check raises its own error (an overflowing square
    of finite entries is left to `row_norm_scale`). A CSR ``X`` is read a row block of
    ``blocks`` at a time by the dask path's own per-block checks (`block_stats`), summed as
    that path sums them: numpy and dask input of the same row blocks give the same `Problem`."""
    if sp.issparse(X):
        stats = np.array([block_stats(b) for b in blocks])
        sq_sum, sq_top = float(stats[:, 1].sum()), float(stats[:, 2].max())
    else:
        sq = np.einsum("ij,ij->i", X, X)
        sq_sum, sq_top = float(sq.sum()), float(sq.max())
    if not np.isfinite(sq_sum):
        _assert_all_finite(X.data if sp.issparse(X) else X, estimator_name=type(est).__name__,
                           input_name="X")
    return sq_sum, sq_top


def row_block(X, a: int, b: int):
    """Rows ``a:b`` of ``X``; of a CSR matrix without copying its nonzeros (views of ``data``
    and ``indices``): scipy's general slicing copied 360 MB in 2 s at 1M rows x 30 nonzeros,
    before the scatter copies the blocks once more anyway."""
    if not sp.issparse(X):
        return X[a:b]
    lo, hi = int(X.indptr[a]), int(X.indptr[b])
    out = sp.csr_matrix((b - a, X.shape[1]), dtype=X.dtype)  # the constructor would copy
    out.data, out.indices = X.data[lo:hi], X.indices[lo:hi]
    out.indptr = (X.indptr[a:b + 1] - lo).astype(X.indices.dtype, copy=False)
    out.has_sorted_indices = X.has_sorted_indices  # a row block keeps its rows' order
    return out


def csr_row_sqnorms(X) -> np.ndarray:
    """``||a_i||^2`` of every row of a CSR matrix from its nonzeros (no elementwise product
    matrix: ``X.multiply(X)`` built a second 360 MB matrix at 1M rows x 30 nonzeros)."""
    out = np.zeros(X.shape[0])
    starts = X.indptr[:-1]
    rows = np.flatnonzero(np.diff(X.indptr) > 0)
    if rows.size:  # consecutive non-empty rows' starts bound each row's run of nonzeros
        out[rows] = np.add.reduceat(np.square(X.data[:X.indptr[-1]]), starts[rows])
    return out


@njit(nogil=True, cache=True)
def _sqnorm_stats(data, indptr):  # pragma: no cover (compiled)
    total, top, finite = 0.0, 0.0, True
    for i in range(indptr.shape[0] - 1):
        sq = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            sq += data[k] * data[k]
        if not np.isfinite(sq):  # rare: a NaN/inf entry, or finite squares that overflow
            for k in range(indptr[i], indptr[i + 1]):
                if not np.isfinite(data[k]):
                    finite = False
        total += sq
        top = max(top, sq)
    return total, top, finite


def csr_sqnorm_stats(X) -> tuple[float, float]:
    """Sum and max of ``||a_i||^2`` over the rows of a CSR matrix, in one pass and no
    temporaries (`csr_row_sqnorms` squares all the nonzeros into a new array first: 240 MB
    and ~0.2 s of a fit's preparation at 1M rows x 30 nonzeros)."""
    return csr_finite_sqnorm_stats(X)[1:]


def csr_finite_sqnorm_stats(X) -> tuple[bool, float, float]:
    """`csr_sqnorm_stats` and whether every stored entry is finite, in the same one pass
    (a dask block's checks read its nonzeros once, not twice). A column index outside
    ``[0, n_features)`` raises ``ValueError`` here, before the stage: the same check
    (`_kernels.column_indices`) an operator's setup makes, where it would surface as the
    gang's failure."""
    K.column_indices(X.indices[:X.indptr[-1]], X.shape[1])
    total, top, finite = _sqnorm_stats(X.data, X.indptr)
    return bool(finite), float(total), float(top)


def encode_labels(y, classes: np.ndarray) -> np.ndarray:
    """{-1, +1} for two classes (``classes[1]`` is +1), else the class index as float.

    Two classes: ``2 [y == classes[1]] - 1``, cast and then scaled in place (np.where with
    scalar branches took 4-9 ms on 1M labels, this 0.6-1.1 ms)."""
    if len(classes) == 2:
        out = np.asarray(y == classes[1]).astype(np.float64)
        out *= 2.0
        out -= 1.0
        return out
    return np.searchsorted(classes, y).astype(np.float64)


def class_weight_table(cw, classes: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Weight per class (aligned with ``classes``) from a dict or ``"balanced"``
    (``n / (n_classes * count)``, with ``counts`` the classes' sample-weight sums)."""
    if cw is None:
        return None
    if isinstance(cw, str):
        if cw != "balanced":
            raise ValueError(f"class_weight must be a dict, 'balanced' or None, got {cw!r}")
        counts = np.asarray(counts, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.where(counts > 0, counts.sum() / (len(classes) * counts), 0.0)
    if not isinstance(cw, dict):
        raise ValueError(f"class_weight must be a dict, 'balanced' or None, got {cw!r}")
    unknown = [c for c in cw if c not in set(classes.tolist())]
    if unknown:
        raise ValueError(f"class_weight names classes {unknown} that are not in y "
                         f"(classes: {classes.tolist()})")
    return np.array([float(cw.get(c, 1.0)) for c in classes.tolist()])


def normalize_weights(sw, total: float | None, n: int):
    """Weights rescaled to mean 1 (``None`` when uniform); a clear error when all are zero."""
    if sw is None:
        return None
    if not total > 0:
        raise ValueError("sample_weight (times class_weight) sums to zero: no row would count")
    if is_dask(sw):
        return sw * (n / total)
    sw = np.asarray(sw, dtype=np.float64) * (n / total)
    if np.allclose(sw, 1.0, rtol=0, atol=1e-12):
        return None
    return sw


def row_norm_scale(sq_mean, sq_max) -> tuple[float, float]:
    """Mean and max squared row norm, which set the step sizes; finite or a clear error."""
    if not np.isfinite(sq_max):
        raise ValueError("X has values so large that the squared row norms overflow float64 "
                         f"(max {sq_max}); scale the features first")
    return float(sq_mean), float(sq_max)


# ---------------------------------------------------------------------- dask
def _prepare_dask(est, X, y, sample_weight) -> Prepared:
    names = _frame_columns(X)
    X = as_dask_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D dask array for X, got {X.ndim} dimensions")
    if len(X.chunks[1]) != 1:
        raise ValueError(f"X is chunked along columns ({X.numblocks} blocks); asip partitions "
                         "by rows only: rechunk with X.rechunk({1: -1}) first")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
    n = X.shape[0]
    y = _as_rows(y, "y", X)
    sw = None if sample_weight is None else _as_rows(sample_weight, "sample_weight", X)
    if est.n_partitions is not None and est.n_partitions != X.numblocks[0]:
        if est.n_partitions > n:
            raise ValueError(f"n_partitions={est.n_partitions} but X has only {n} rows")
        bounds = np.linspace(0, n, est.n_partitions + 1).astype(int)
        rows = tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:]))
        X, y = X.rechunk({0: rows, 1: -1}), y.rechunk({0: rows})
        sw = None if sw is None else sw.rechunk({0: rows})
    if any(c == 0 for c in X.chunks[0]):
        empty = [i for i, c in enumerate(X.chunks[0]) if c == 0]
        raise ValueError(f"X has empty row chunks {empty}: every partition needs at least "
                         "one row")
    X = X.astype(np.float64)
    # One task per block, each where its block lives, combined here: finiteness and
    # row-norm sum/max of X in one pass, the labels (or finiteness) of y and the weights'
    # sums. No reduction tree, so no result hops between workers (~0.15 s a fit).
    x_blocks, y_blocks = X.to_delayed().ravel(), y.to_delayed().ravel()
    w_blocks = [None] * len(y_blocks) if sw is None else sw.to_delayed().ravel()
    y_fn = _label_stats if est._classifier else _target_stats
    xk, yk = persisted_keys(X), persisted_keys(y)
    wk = [None] * len(y_blocks) if sw is None else persisted_keys(sw)
    outs = _block_checks(
        [(block_stats, (b,), _known(block_stats, xk[i])) for i, b in enumerate(x_blocks)]
        + [(y_fn, (b, w), _known(y_fn, yk[i], wk[i] if sw is not None else ()))
           for i, (b, w) in enumerate(zip(y_blocks, w_blocks))])
    stats = np.asarray(outs[:len(x_blocks)]).reshape(-1, 3)
    if not stats[:, 0].all():
        raise ValueError("Input X contains NaN or infinity.")
    y_outs = outs[len(x_blocks):]
    if sw is not None and not all(o["weights_ok"] for o in y_outs):
        raise ValueError("sample_weight must be finite and non-negative")
    est.n_features_in_ = X.shape[1]
    if names is not None:
        est.feature_names_in_ = names
    elif hasattr(est, "feature_names_in_"):
        del est.feature_names_in_
    if est._classifier:
        y, sw, total = _encode_dask_labels(est, y, sw, y_outs)
    else:
        if not all(o["finite"] for o in y_outs):
            raise ValueError("Input y contains NaN or infinity.")
        y = y.astype(np.float64)
        total = float(sum(o["wsum"] for o in y_outs))
    sw = normalize_weights(sw, total, n)
    sizes = tuple(int(c) for c in X.chunks[0])
    sq_mean, sq_max = row_norm_scale(stats[:, 1].sum() / n, stats[:, 2].max())
    data = (X, y) if sw is None else (X, y, sw)
    sparse = isinstance(getattr(X, "_meta", None), sp.spmatrix) or sp.issparse(
        getattr(X, "_meta", None))
    return Prepared(data, sizes, sq_mean, sq_max, X, y, sw, bool(sparse))


#: (check, keys of the persisted blocks it read) -> its result: a refit on the same
#: persisted blocks (a search over alpha, warm starts) skips the checks' round trip
_CHECKED: OrderedDict = OrderedDict()
_CHECKED_MAX = 512


def _block_checks(tasks: list) -> list:
    """``[fn(*blocks) for fn, blocks, key in tasks]``, computed where the blocks live, in
    one ``dask.compute``; a result with a ``key`` (blocks held as futures: persisted,
    immutable data) is remembered and not computed again."""
    import dask

    todo = [i for i, (_, _, key) in enumerate(tasks) if key is None or key not in _CHECKED]
    done = dask.compute(*[dask.delayed(tasks[i][0], pure=True)(*tasks[i][1]) for i in todo])
    for i, out in zip(todo, done):
        if tasks[i][2] is not None:
            _CHECKED[tasks[i][2]] = out
            while len(_CHECKED) > _CHECKED_MAX:
                _CHECKED.popitem(last=False)
    fresh = dict(zip(todo, done))
    return [fresh[i] if i in fresh else _CHECKED[tasks[i][2]] for i in range(len(tasks))]


def _known(fn, *keys) -> tuple | None:
    """The cache key of ``fn`` on blocks with these keys (None: a block is not persisted)."""
    return None if any(k is None for k in keys) else (fn.__qualname__, *keys)


def persisted_keys(arr) -> list:
    """The key of each row block of a dask array, or None for a block that is not a
    future on the cluster (``arr`` persisted as is: its graph maps each key to a future)."""
    from distributed import Future

    graph = arr.__dask_graph__()
    keys = [k for k in _flat(arr.__dask_keys__())]
    return [k if isinstance(graph.get(k), Future) else None for k in keys]


def _flat(keys):
    for k in keys:
        if isinstance(k, list):
            yield from _flat(k)
        else:
            yield k


def _as_rows(v, name: str, X):
    """``y`` or ``sample_weight`` as a 1-D dask array chunked like the rows of ``X``."""
    import dask.array as da

    v = as_dask_array(v, name)
    if is_dask(v):
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
        if v.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but {name} has {v.shape[0]}")
        if v.chunks[0] != X.chunks[0]:
            raise ValueError(f"the row chunks of X {X.chunks[0]} and {name} {v.chunks[0]} do "
                             f"not line up; rechunk {name} with {name}.rechunk({{0: X.chunks[0]}})")
        return v
    if isinstance(v, numbers.Number) and name == "sample_weight":
        v = np.full(X.shape[0], float(v))
    v = np.asarray(v).ravel()
    if v.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but {name} has {v.shape[0]}")
    return da.from_array(v, chunks=(X.chunks[0],))


def _encode_dask_labels(est, y, sw, y_outs):
    """Classes from the per-block label counts; labels encoded, class weights applied."""
    import dask.array as da

    classes = np.unique(np.concatenate([o["labels"] for o in y_outs]))
    est._set_classes(classes)
    wsums = np.zeros(len(classes))
    for o in y_outs:
        wsums[np.searchsorted(classes, o["labels"])] += o["wsums"]
    table = class_weight_table(getattr(est, "class_weight", None), classes, wsums)
    if len(classes) == 2 and y.dtype == np.float64 and classes.tolist() == [-1.0, 1.0]:
        y_enc = y  # already the encoding: no task a block (a persisted y stays as it is)
    elif len(classes) == 2:
        y_enc = da.where(y == classes[1], 1.0, -1.0)
    else:
        y_enc = y.map_blocks(lambda b: np.searchsorted(classes, b).astype(np.float64),
                             dtype=np.float64)
    if table is not None:
        per_row = y.map_blocks(lambda b: table[np.searchsorted(classes, b)], dtype=np.float64)
        sw = per_row if sw is None else sw.astype(np.float64) * per_row
        total = float((table * wsums).sum())
    else:
        total = float(wsums.sum())
        sw = None if sw is None else sw.astype(np.float64)
    return y_enc, sw, total


def _label_stats(yb, wb) -> dict:
    """One block of labels: classes, their counts and weight sums, whether weights are valid."""
    yb = np.asarray(yb).ravel()
    wb = None if wb is None else np.asarray(wb, dtype=np.float64).ravel()
    ok = True if wb is None else bool(np.isfinite(wb).all() and (wb >= 0).all())
    found = few_labels(yb, wb)
    if found is not None:  # the labels' own type checks, on the distinct values alone
        labels, counts, wsums = found
        check_classification_targets(labels)
        return {"labels": labels, "counts": counts, "wsums": wsums, "weights_ok": ok}
    check_classification_targets(yb)
    labels, inverse, counts = np.unique(yb, return_inverse=True, return_counts=True)
    wsums = (counts.astype(np.float64) if wb is None
             else np.bincount(inverse.ravel(), weights=wb, minlength=len(labels)))
    return {"labels": labels, "counts": counts, "wsums": wsums, "weights_ok": ok}


def few_labels(yb: np.ndarray, wb: np.ndarray | None):
    """``(labels, counts, weight sums)`` of a numeric label block with at most two distinct
    values, as np.unique gives them, from a few vectorized passes and no sort (np.unique
    took ~25 ms of a fit's checks on 500k labels, this ~2 ms; plain numpy, so a first fit
    compiles nothing); None for other dtypes, more labels, or a NaN among them."""
    if yb.dtype.kind not in "fiu" or yb.ndim != 1 or yb.size == 0:
        return None
    lo, hi = yb.min(), yb.max()
    if lo != lo or hi != hi:  # a NaN: np.unique and sklearn's checks say what is wrong
        return None
    top = yb == hi
    n_hi = int(np.count_nonzero(top))
    if lo == hi:
        labels, counts = np.array([lo], dtype=yb.dtype), np.array([yb.size])
    elif n_hi + int(np.count_nonzero(yb == lo)) == yb.size:
        labels, counts = np.array([lo, hi], dtype=yb.dtype), np.array([yb.size - n_hi, n_hi])
    else:
        return None
    if wb is None:
        return labels, counts, counts.astype(np.float64)
    w_hi = float(wb[top].sum())
    return labels, counts, (np.array([w_hi]) if lo == hi
                            else np.array([float(wb[~top].sum()), w_hi]))


def _target_stats(yb, wb) -> dict:
    """One block of regression targets: finite?, and the weights' sum and validity."""
    finite = bool(np.isfinite(np.asarray(yb, dtype=np.float64)).all())
    if wb is None:
        return {"finite": finite, "wsum": float(np.size(yb)), "weights_ok": True}
    wb = np.asarray(wb, dtype=np.float64)
    return {"finite": finite, "wsum": float(wb.sum()),
            "weights_ok": bool(np.isfinite(wb).all() and (wb >= 0).all())}


def block_stats(block) -> np.ndarray:
    """`K.finite_sqnorm_stats` of one dense row block (sparse blocks: scipy)."""
    if sp.issparse(block):  # not sp.csr_matrix(block): it copies a block deserialized here
        block = block if block.format == "csr" else block.tocsr()
        return np.array(csr_finite_sqnorm_stats(block), dtype=np.float64)
    return K.finite_sqnorm_stats(np.asarray(block, dtype=np.float64))
