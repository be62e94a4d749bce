"""The model and its trace: combining the operators' snapshots, and evaluating ``trace_``.

One job: turn what a fit's operators reported and returned into the fitted
model and the ``[seconds, objective]`` trace. A fit has ``n_tasks`` models (one
per class for one-vs-rest multiclass, else 1); an operator's snapshot stacks
the per-task snapshots along a leading axis when ``n_tasks > 1``
(`stack_tasks` / `split_tasks`).

Reports carry metrics (scalars) always and the model only while it is small
(see `asip.algorithms._operator`), so ``trace_`` is evaluated at the reports
that carry a model -- every report for small models, a few for large ones --
plus the final model (from the operators' results), which always closes it.
"""

from __future__ import annotations

import logging

import numpy as np

from . import _losses as _L
from ._base import Problem, mean_of

__all__ = ["MODEL_FLAG", "PendingTrace", "combine_tasks", "combined_over_time",
           "evaluate_trace", "known_objective", "latest_snapshots", "model_of", "n_iter_of", "split_tasks", "stack_tasks"]

logger = logging.getLogger(__name__)

MAX_TRACE_POINTS = 100
#: report key saying whether the report carries the model (1) or metrics only (0)
MODEL_FLAG = "has_model"


def stack_tasks(snapshots: list[dict]) -> dict:
    """One snapshot from the per-task ones: every value stacked along a new leading axis."""
    if len(snapshots) == 1:
        return dict(snapshots[0])
    keys = set(snapshots[0]).intersection(*snapshots[1:])
    return {k: np.stack([np.asarray(s[k]) for s in snapshots]) for k in sorted(keys)}


def split_tasks(snapshot: dict | None, n_tasks: int) -> list:
    """Inverse of `stack_tasks` (``[snapshot]`` for one task); ``None`` stays ``None``."""
    if snapshot is None:
        return [None] * n_tasks
    if n_tasks == 1:
        return [snapshot]
    out: list = [{} for _ in range(n_tasks)]
    for key, value in snapshot.items():
        stacked = isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n_tasks
        for t in range(n_tasks):
            v = value[t] if stacked else value
            out[t][key] = v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
    return out


def has_model(metrics: dict | None) -> bool:
    """Whether a report (or result) carries the model, not only scalar metrics."""
    return bool(metrics) and bool(metrics.get(MODEL_FLAG, 1))


def combine_tasks(algo, problem: Problem, snapshots: list, n_tasks: int) -> np.ndarray:
    """The combined model: shape ``(p,)`` for one task, ``(n_tasks, p)`` for several."""
    per_task = [split_tasks(s, n_tasks) for s in snapshots]
    models = [np.asarray(algo.combine(problem, [s[t] for s in per_task]), dtype=np.float64)
              for t in range(n_tasks)]
    return models[0] if n_tasks == 1 else np.stack(models)


def latest_snapshots(problem: Problem, trace: list) -> list:
    """The last reported snapshot carrying a model, per partition (None where there is none)."""
    latest: list = [None] * problem.n_partitions
    for entry in sorted(trace, key=lambda e: e.time):
        if has_model(entry.metrics) and 0 <= entry.partition < problem.n_partitions:
            latest[entry.partition] = entry.metrics
    return latest


def model_of(algo, problem: Problem, snapshots: list, n_tasks: int = 1) -> np.ndarray | None:
    """The model saved snapshots combine to; another solver's snapshots by their ``w``/``z``."""
    try:
        return combine_tasks(algo, problem, snapshots, n_tasks)
    except (KeyError, TypeError, ValueError, IndexError):
        if n_tasks != 1:
            return None
        for key in ("w", "z"):
            try:
                w = mean_of(snapshots, key)
            except ValueError:  # shapes differ
                w = None
            if w is not None:
                return w
    return None


def combined_over_time(algo, problem: Problem, trace: list, n_tasks: int = 1,
                       objectives: list | None = None) -> list:
    """(time, combined model) after each report that carries a model.

    ``objectives``: a list to append, per point, the objective at its model where a
    snapshot already knows it exactly (`known_objective`), else None.
    """
    latest: list = [None] * problem.n_partitions
    out = []
    for entry in sorted(trace, key=lambda e: e.time):
        if not has_model(entry.metrics) or not 0 <= entry.partition < problem.n_partitions:
            continue
        latest[entry.partition] = entry.metrics
        w = combine_tasks(algo, problem, latest, n_tasks)
        out.append((float(entry.time), w))
        if objectives is not None:
            objectives.append(known_objective(latest, w) if n_tasks == 1 else None)
    return out


def known_objective(snapshots, w: np.ndarray) -> float | None:
    """The objective at ``w`` from a snapshot of that very model that carries it
    (``objective_w``: lbfgs, at each accepted point), else None: `evaluate_trace` then
    takes a pass over the data for it."""
    for snap in snapshots:
        if (snap and "objective_w" in snap and np.isfinite(snap["objective_w"])
                and np.array_equal(np.asarray(snap["w"]), w)):
            return float(snap["objective_w"])
    return None


def n_iter_of(results: list) -> int:
    """The largest iteration counter (``k``, ``t`` or ``h``) among the partitions' results."""
    best = 0
    for r in results:
        if r:
            for key in ("k", "t", "h"):
                if key in r:
                    best = max(best, int(np.max(r[key])))
    return best


def gap_of(results: list) -> float | None:
    """The duality gap of the certificate the fit ended on (None without one).

    That is the gap of the snapshot carrying the ``certified`` model (the one ``combine``
    returns, `_certificate.certified_model`), else of the most advanced operator's (largest
    round ``k``: barrier solvers' model comes from it, `_barrier.latest_model`). An operator
    stopped before reducing the last round still reports the round before's larger gap: it
    must not stand for the certificate that stopped the fit. Snapshots without a round
    counter: the largest gap. Several tasks (stacked snapshots): the largest over the tasks
    of each task's gap chosen so.
    """
    have = [r for r in results if r and "gap" in r]
    if not have:
        return None
    for r in have:  # the same snapshot `certified_model` takes the model from
        if "certified" in r:
            return float(np.max(r["gap"]))
    gaps = [np.atleast_1d(np.asarray(r["gap"], dtype=np.float64)) for r in have]
    if not all("k" in r for r in have) or len({g.shape for g in gaps}) != 1:
        return float(max(np.max(g) for g in gaps))
    ks = np.stack([np.broadcast_to(np.atleast_1d(np.asarray(r["k"])), gaps[0].shape)
                   for r in have])
    G = np.stack(gaps)
    newest = ks == ks.max(axis=0)  # per task: the operators at the newest round
    return float(np.max(np.where(newest, G, -np.inf).max(axis=0)))


def task_labels(y: np.ndarray, task: int, n_tasks: int) -> np.ndarray:
    """{-1, +1} labels of one task: ``y`` itself for one task, class ``task`` vs rest else."""
    if n_tasks == 1:
        return y
    return np.where(y == task, 1.0, -1.0)


def _block_loss_sums(objective, W: np.ndarray, X, y, sw, rows: int = 20_000):
    """``sum_t sum_i s_i phi(a_i^T w_tk + b_tk, y_ti)`` for each point ``k`` of ``W`` of shape
    ``(n_tasks, p, k)`` on one block, a slice of rows at a time (bounded memory)."""
    from ._inputs import row_block  # CSR rows as views: scipy's slicing copied each slice

    n_tasks = W.shape[0]
    y = np.asarray(y, dtype=np.float64)
    sw = None if sw is None else np.asarray(sw, dtype=np.float64)
    out = np.zeros(W.shape[2])
    d = X.shape[1]
    for t in range(n_tasks):
        yt = task_labels(y, t, n_tasks)
        for a in range(0, X.shape[0], rows):
            M = np.asarray(row_block(X, a, min(a + rows, X.shape[0])) @ W[t, :d])
            if objective.fit_intercept:
                M = M + W[t, -1][None, :]
            vals = _L.value_rows(objective.loss.code, M, yt[a:a + rows])
            if sw is not None:
                vals = vals * sw[a:a + rows, None]
            out += vals.sum(axis=0)
    return out


def _spread(times: np.ndarray, k: int) -> np.ndarray:
    """Indices of at most ``k`` of the sorted ``times``: half evenly spread, half evenly in
    log time, so the trace reads well on linear and log time axes and the early progress
    (where time-to-target is decided) is not thinned away. Keeps the first and last."""
    n = len(times)
    even = np.linspace(0, n - 1, k // 2 - 1).astype(int)
    t0 = max(float(times[0]), 1e-3)
    marks = np.geomspace(t0, max(float(times[-1]), t0), k - k // 2 - 1)
    logs = np.clip(np.searchsorted(times, marks), 0, n - 1)
    return np.unique(np.concatenate([[0, n - 1], even, logs]))


def evaluate_trace(objective, points: list, X, y, sw=None, known=None) -> np.ndarray:
    """``[[time, f(w)], ...]`` for up to 100 of the points, with at most one pass over the data.

    A point's model is ``(p,)`` or ``(n_tasks, p)``; with several tasks ``f`` is the sum
    of the tasks' objectives (what the one-vs-rest fit minimizes). ``known``: per point,
    its objective where the solver already knows it (None: evaluated). Points whose
    coefficients are all zero (a barrier solver's start) take no pass over ``X`` either:
    their margins are the intercept. A trace of known points costs nothing (the pass over
    300k x 100 dense rows was 0.5 s of a 2 s fit).
    """
    if not points:
        return np.empty((0, 2))
    known = [None] * len(points) if known is None else list(known)
    if len(points) > MAX_TRACE_POINTS:
        keep = _spread(np.array([t for t, _ in points]), MAX_TRACE_POINTS)
        points, known = [points[i] for i in keep], [known[i] for i in keep]
    times = np.array([t for t, _ in points])
    values = np.array([np.nan if f is None else float(f) for f in known])
    # a model reported more than once (a barrier solver's partitions all report the same
    # iterate) is evaluated once, or not at all where one of its points is known
    first: dict[bytes, int] = {}
    same = []
    for i, (_, w) in enumerate(points):
        key = np.ascontiguousarray(w, dtype=np.float64).tobytes()
        j = first.setdefault(key, i)
        if not np.isfinite(values[j]) and np.isfinite(values[i]):
            values[j] = values[i]
        same.append(j)
    todo = [i for i in sorted(set(same)) if not np.isfinite(values[i])]
    if todo:
        values[todo] = _evaluate(objective, [points[i] for i in todo], X, y, sw)
    values = np.where(np.isfinite(values), values, values[same])
    return np.column_stack([times, values])


class PendingTrace:
    """``trace_``, evaluated once: in ``fit``, or (``deferred``: a dask ``X``) when first read,
    so that the pass over the data it may take (a compute on the cluster) is no part of the
    fit's return.

    Holds the points and the training data (references, no copy) until then, and nothing but
    the evaluated trace after. ``last_time``: the trace's last time, read without evaluating.
    """

    def __init__(self, objective, points: list, X, y, sw=None, known=None, deferred=False):
        self._args: tuple | None = (objective, points, X, y, sw, known)
        self._value: np.ndarray | None = None
        self.deferred = deferred
        self.last_time = float(points[-1][0]) if points else float("nan")

    def value(self) -> np.ndarray:
        """The ``[[time, f(w)], ...]`` of `evaluate_trace`, evaluated once."""
        if self._value is None:
            objective, points, X, y, sw, known = self._args
            try:
                self._value = evaluate_trace(objective, points, X, y, sw, known=known)
            except Exception as exc:
                if not self.deferred:
                    raise
                raise RuntimeError(
                    "trace_ is evaluated over the dask X when first read "
                    "(asip.driver.lazy-trace) and that pass failed: keep X's client open "
                    "until trace_ is read, or set asip.driver.lazy-trace: false") from exc
            self._args = None  # the data is the user's again
        return self._value

    def __getstate__(self) -> dict:  # pickled (or deep-copied): the trace, not the data
        self.value()
        return dict(self.__dict__)


def _evaluate(objective, points: list, X, y, sw) -> np.ndarray:
    """The objective at each point's model (see `evaluate_trace`)."""
    W = np.stack([np.atleast_2d(np.asarray(w, dtype=np.float64)) for _, w in points], axis=2)
    d = X.shape[1]
    zero = ~W[:, :d, :].any(axis=(0, 1))  # no coefficients: margins = the intercept
    out = np.empty(W.shape[2])
    if zero.any():
        out[zero] = [_objective_at_zero(objective, W[:, :, k], y, sw)
                     for k in np.flatnonzero(zero)]
    if not zero.all():
        out[~zero] = _evaluate_pass(objective, W[:, :, ~zero], X, y, sw)
    return out


def _objective_at_zero(objective, W: np.ndarray, y, sw) -> float:
    """The objective at models ``W`` ``(n_tasks, p)`` without coefficients, in one pass over
    ``y`` (not ``X``)."""
    from ._inputs import is_dask

    y = np.asarray(y.compute() if is_dask(y) else y, dtype=np.float64)
    sw = None if sw is None else np.asarray(sw.compute() if is_dask(sw) else sw,
                                            dtype=np.float64)
    total = 0.0
    for t in range(W.shape[0]):
        b = float(W[t, -1]) if objective.fit_intercept else 0.0
        vals = _L.value_rows(objective.loss.code, np.full((y.shape[0], 1), b),
                             task_labels(y, t, W.shape[0]))[:, 0]
        total += float((vals if sw is None else vals * sw).sum()) / y.shape[0]
        total += objective.penalty.value(W[t, : W.shape[1] - int(objective.fit_intercept)])
    return total


def _evaluate_pass(objective, W: np.ndarray, X, y, sw) -> np.ndarray:
    """The objective at each model of ``W`` ``(n_tasks, p, k)``, with one pass over the data."""
    from ._inputs import is_dask

    if is_dask(X):
        import dask

        # one task per block where it lives, summed here (no reduction tree across workers)
        part = dask.delayed(_block_loss_sums, pure=True)
        sw_blocks = [None] * X.numblocks[0] if sw is None else sw.to_delayed().ravel()
        sums = dask.compute(*[part(objective, W, xb, yb, wb) for xb, yb, wb in
                              zip(X.to_delayed().ravel(), y.to_delayed().ravel(), sw_blocks)])
        losses = np.sum(sums, axis=0)
    else:
        losses = _block_loss_sums(objective, W, X, y, sw)
    d = X.shape[1]
    pens = np.array([sum(objective.penalty.value(W[t, :d, k]) for t in range(W.shape[0]))
                     for k in range(W.shape[2])])
    return losses / X.shape[0] + pens
