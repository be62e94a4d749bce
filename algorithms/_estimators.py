"""scikit-learn estimators that fit linear models with asip's solvers on a Dask cluster.

`AsipClassifier` (logistic or hinge loss, labels of any two values) and
`AsipRegressor` (least squares) minimize the objective of `_objectives`::

    f(w) = (1/n) sum_i loss(y_i (a_i^T w + b)) + R(w),   R = (alpha/2)||w||^2 or alpha ||w||_1

with the solver named by ``solver=``. The estimators only translate: user data
into partitions and a `asip.Stage` of `SolverOperator` (or the driver-side loop
of ``admm-async``), and the stage's result into fitted attributes. The Dask
client is looked up at fit time -- ``distributed.default_client()``, else an
embedded ``asip.connect()`` cluster created once per process -- never passed
as a parameter (``clone`` deep-copies parameters).

Data placement: a dask array is used as it is chunked (one partition per row
chunk; ``n_partitions`` rechunks it); numpy and scipy.sparse input is split
into ``n_partitions`` contiguous row blocks, by default one per worker thread.

A fit cut short -- Ctrl-C, an exception raised in ``callback``, a stage that
fails -- stops every operator and leaves the cluster clean (the stage does
that); the estimator then keeps the model so far (``coef_``, ``trace_``, ...,
``stopped_by_`` saying why), warns, and re-raises. ``checkpoint=path`` also
has the stage save every partition's latest state to ``path`` every
``checkpoint_every`` seconds and at the end (atomically), and
``warm_start=True`` starts the next fit from that file, or from the previous
fit when there is no file.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels as K
from ._base import Problem, Start, mean_of
from ._objectives import PENALTIES, Objective, get_loss, get_penalty
from ._solvers import ASYNC_DRIVER_SOLVERS, RUNTIME_SOLVERS, SOLVERS, get_algorithm

__all__ = ["AsipClassifier", "AsipRegressor"]

logger = logging.getLogger(__name__)

_LOSS_CODE = {"log_loss": K.LOGISTIC, "hinge": K.HINGE, "squared_error": K.SQUARED}
_PENALTY_CODE = {"l2": K.L2, "l1": K.L1}
_MAX_TRACE_POINTS = 100
_STAGE_ONLY = ("faults", "callback", "checkpoint", "warm_start")  # options a stage provides
_embedded_client = None


class _StopFit(Exception):
    """Raised in the stage's trace hook when ``callback`` returns True: a requested early stop."""


def _client():
    """The default distributed client, else an embedded asip cluster (made once, then reused)."""
    global _embedded_client
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        pass
    if _embedded_client is None or _embedded_client.status != "running":
        import asip

        logger.info("no dask client found: starting an embedded cluster with asip.connect()")
        _embedded_client = asip.connect()
    return _embedded_client


def _is_dask(a) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover
        return False
    return isinstance(a, da.Array)


def _seed(random_state) -> int | None:
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got "
                     f"{random_state!r}")


class _AsipLinearModel(BaseEstimator):
    """Shared fit/predict machinery; see `AsipClassifier` and `AsipRegressor`."""

    _valid_losses: tuple[str, ...] = ()

    def __init__(self, *, loss, penalty="l2", alpha=1e-4, solver="asip-sgd", max_time=10.0,
                 max_iter=None, tol=1e-6, n_partitions=None, fit_intercept=False, faults=(),
                 random_state=None, verbose=0, solver_params=None, callback=None,
                 checkpoint=None, checkpoint_every=5.0, warm_start=False):
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.solver = solver
        self.max_time = max_time
        self.max_iter = max_iter
        self.tol = tol
        self.n_partitions = n_partitions
        self.fit_intercept = fit_intercept
        self.faults = faults
        self.random_state = random_state
        self.verbose = verbose
        self.solver_params = solver_params
        self.callback = callback
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.warm_start = warm_start

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> Objective:
        if self.loss not in self._valid_losses:
            raise ValueError(f"unknown loss {self.loss!r} for {type(self).__name__}; valid "
                             f"losses are {list(self._valid_losses)}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"unknown penalty {self.penalty!r}; valid penalties are "
                             f"{sorted(PENALTIES)}")
        if (not isinstance(self.alpha, numbers.Real) or isinstance(self.alpha, bool)
                or not np.isfinite(self.alpha) or self.alpha < 0):
            raise ValueError(f"alpha must be a non-negative finite number, got {self.alpha!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; valid solvers are {list(SOLVERS)}")
        if (not isinstance(self.max_time, numbers.Real) or isinstance(self.max_time, bool)
                or not self.max_time > 0):
            raise ValueError(f"max_time must be a positive number of seconds, got "
                             f"{self.max_time!r}")
        if self.max_iter is not None and (not isinstance(self.max_iter, numbers.Integral)
                                          or self.max_iter < 1):
            raise ValueError(f"max_iter must be None or a positive int, got {self.max_iter!r}")
        if self.tol is not None and (not isinstance(self.tol, numbers.Real) or self.tol < 0):
            raise ValueError(f"tol must be None or a non-negative number, got {self.tol!r}")
        if self.n_partitions is not None and (not isinstance(self.n_partitions, numbers.Integral)
                                              or self.n_partitions < 1):
            raise ValueError(f"n_partitions must be None or a positive int, got "
                             f"{self.n_partitions!r}")
        if self.solver_params is not None and not isinstance(self.solver_params, dict):
            raise ValueError(f"solver_params must be None or a dict, got {self.solver_params!r}")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be None or a callable, got {self.callback!r}")
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, (str, os.PathLike)):
                raise ValueError(f"checkpoint must be None or a file path, got "
                                 f"{self.checkpoint!r}")
            folder = os.path.dirname(os.path.abspath(self.checkpoint))
            if not os.path.isdir(folder):
                raise ValueError(f"checkpoint {os.fspath(self.checkpoint)!r}: the directory "
                                 f"{folder!r} does not exist")
        if (not isinstance(self.checkpoint_every, numbers.Real)
                or isinstance(self.checkpoint_every, bool) or not self.checkpoint_every > 0):
            raise ValueError(f"checkpoint_every must be a positive number of seconds, got "
                             f"{self.checkpoint_every!r}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be a bool, got {self.warm_start!r}")
        if self.solver in ASYNC_DRIVER_SOLVERS:
            used = [name for name in _STAGE_ONLY if getattr(self, name)]
            if used:
                what = "faults cannot be injected" if "faults" in used else f"{used} need a stage"
                raise ValueError(f"solver {self.solver!r} runs on the driver with distributed's "
                                 f"as_completed, not as an asip stage, so {what}; use one of "
                                 f"{sorted(RUNTIME_SOLVERS)}")
        return Objective(get_loss(self.loss), get_penalty(self.penalty, self.alpha),
                         bool(self.fit_intercept))

    def _solver_params(self, seed: int | None) -> dict:
        """The solver's hyperparameters: ``solver_params`` plus tol, max_iter and the seed."""
        from ._admm_async import ASYNC_DEFAULTS

        defaults = (ASYNC_DEFAULTS if self.solver in ASYNC_DRIVER_SOLVERS
                    else get_algorithm(self.solver).defaults)
        params = dict(self.solver_params or {})
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"unknown solver_params {sorted(unknown)} for solver "
                             f"{self.solver!r}; valid ones are {sorted(defaults)}")
        if "tol" in defaults and self.tol is not None:
            params.setdefault("tol", float(self.tol))
        if "max_iter" in defaults and self.max_iter is not None:
            params.setdefault("max_iter", int(self.max_iter))
        if "seed" in defaults and seed is not None:
            params.setdefault("seed", seed)
        out = dict(defaults)
        out.update(params)
        return out

    def _encode_y(self, y):  # overridden by the classifier
        return np.asarray(y, dtype=np.float64)

    # ------------------------------------------------------------------ data
    def _prepare_memory(self, X, y, client):
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64,
                             y_numeric=not self._classifier, multi_output=False)
        y = self._encode_y(y)
        n = X.shape[0]
        n_parts = self.n_partitions or max(sum(client.nthreads().values()), 1)
        if self.n_partitions is not None and self.n_partitions > n:
            raise ValueError(f"n_partitions={self.n_partitions} but X has only {n} rows: every "
                             "partition needs at least one row")
        n_parts = min(n_parts, n)
        bounds = np.linspace(0, n, n_parts + 1).astype(int)
        parts = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        sq = np.asarray(X.multiply(X).sum(axis=1)).ravel() if sp.issparse(X) else np.einsum(
            "ij,ij->i", X, X)
        sizes = tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:]))
        import dask

        data = [dask.delayed(tuple)([Xb, yb]) for Xb, yb in parts]
        return data, sizes, *_row_norm_scale(sq.mean(), sq.max()), (X, y)

    def _prepare_dask(self, X, y, client):
        import dask
        import dask.array as da

        if X.ndim != 2:
            raise ValueError(f"expected a 2-D dask array for X, got {X.ndim} dimensions")
        if len(X.chunks[1]) != 1:
            raise ValueError(f"X is chunked along columns ({X.numblocks} blocks); asip partitions "
                             "by rows only: rechunk with X.rechunk({1: -1}) first")
        if any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
        if _is_dask(y):
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise ValueError(f"y must be 1-D, got shape {y.shape}")
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
            if y.chunks[0] != X.chunks[0]:
                raise ValueError(f"the row chunks of X {X.chunks[0]} and y {y.chunks[0]} do not "
                                 "line up; rechunk y with y.rechunk({0: X.chunks[0]})")
        else:
            y = np.asarray(y).ravel()
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
            y = da.from_array(y, chunks=(X.chunks[0],))
        if self.n_partitions is not None and self.n_partitions != X.numblocks[0]:
            if self.n_partitions > X.shape[0]:
                raise ValueError(f"n_partitions={self.n_partitions} but X has only "
                                 f"{X.shape[0]} rows")
            rows = int(np.ceil(X.shape[0] / self.n_partitions))
            X, y = X.rechunk({0: rows, 1: -1}), y.rechunk({0: rows})
        if any(c == 0 for c in X.chunks[0]):
            empty = [i for i, c in enumerate(X.chunks[0]) if c == 0]
            raise ValueError(f"X has empty row chunks {empty}: every partition needs at least "
                             "one row")
        X = X.astype(np.float64)
        # One task per block, each where its block lives, combined here: finiteness and
        # row-norm sum/max of X in one pass, the labels (or finiteness) of y. No reduction
        # tree, so no result hops between workers (that hop alone cost ~0.15 s a fit).
        x_blocks, y_blocks = X.to_delayed().ravel(), y.to_delayed().ravel()
        y_task = dask.delayed(np.unique if self._classifier else _all_finite, pure=True)
        outs = dask.compute(*[dask.delayed(_block_stats, pure=True)(b) for b in x_blocks],
                            *[y_task(b) for b in y_blocks])
        stats = np.asarray(outs[:len(x_blocks)]).reshape(-1, 3)
        if not stats[:, 0].all():
            raise ValueError("Input X contains NaN or infinity.")
        y_outs = outs[len(x_blocks):]
        self.n_features_in_ = X.shape[1]
        if self._classifier:
            self._set_classes(np.unique(np.concatenate(y_outs)))
            y = da.where(y == self.classes_[1], 1.0, -1.0)
        else:
            if not all(y_outs):
                raise ValueError("Input y contains NaN or infinity.")
            y = y.astype(np.float64)
        sizes = tuple(int(c) for c in X.chunks[0])
        scale = _row_norm_scale(stats[:, 1].sum() / X.shape[0], stats[:, 2].max())
        return (X, y), sizes, *scale, (X, y)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Fit the model with the chosen solver on the current Dask cluster.

        Parameters
        ----------
        X : ndarray, scipy.sparse matrix or dask array of shape (n_samples, n_features)
            A dask array must be chunked along rows only; each row chunk is a partition.
        y : ndarray or dask array of shape (n_samples,)

        Returns
        -------
        self
        """
        t_fit = time.perf_counter()
        objective = self._check_params()
        import asip

        from ._operator import SolverOperator

        client = _client()
        if _is_dask(X):
            data, sizes, sq_mean, sq_max, evaluation = self._prepare_dask(X, y, client)
        else:
            if _is_dask(y):
                y = y.compute()
            data, sizes, sq_mean, sq_max, evaluation = self._prepare_memory(X, y, client)
        problem = Problem(_LOSS_CODE[self.loss], _PENALTY_CODE[self.penalty], float(self.alpha),
                          bool(self.fit_intercept), int(self.n_features_in_), sizes, sq_mean,
                          sq_max)
        params = self._solver_params(_seed(self.random_state))
        if self.verbose:
            logger.info("%s: solver=%s on %d partitions of %s rows, max_time=%s",
                        type(self).__name__, self.solver, len(sizes), sizes, self.max_time)
        clock = _FitClock(t_fit)
        if self.solver in ASYNC_DRIVER_SOLVERS:
            w, snapshots_over_time, n_iter, stopped_by = self._fit_driver(client, data, problem,
                                                                          params)
            clock.solved()
            self.restarts_ = []
            self.stage_result_ = None
            self._finish(problem, w, snapshots_over_time, n_iter, stopped_by, objective,
                         evaluation, None)
            self.fit_timings_ = clock.timings()
            self._warn_budget(stopped_by)
            return self
        algo = get_algorithm(self.solver)
        start = self._warm_start_from(algo, problem) if self.warm_start else None
        seen: list = []  # every report, for the model so far if the stage is cut short
        stage = asip.Stage(SolverOperator(self.solver, problem, params, start=start), data,
                           client=client, max_time=float(self.max_time), faults=self.faults,
                           on_trace=self._trace_hook(algo, problem, seen),
                           checkpoint=self.checkpoint,
                           checkpoint_every=float(self.checkpoint_every))
        try:
            res = stage.run()
        except BaseException as exc:
            # The stage has stopped every operator and cleaned up; keep the model so far.
            # (The stage keeps its partial result once its gang started; else the reports.)
            clock.solved()
            partial = stage.result
            self.stage_result_ = partial
            snapshots = _latest_snapshots(problem, partial.trace if partial else seen)
            for i, r in enumerate(partial.results if partial else ()):
                if r:
                    snapshots[i] = r
            if not any(snapshots):
                raise  # the stage never got going: nothing to keep
            stopped = isinstance(exc, _StopFit)
            stopped_by = "callback" if stopped else (
                partial.stopped_by if partial else f"error: {type(exc).__name__}")
            try:
                self._finish_stage(algo, problem, snapshots, partial.trace if partial else seen,
                                   None, stopped_by, objective, evaluation)
                self.restarts_ = list(partial.restarts) if partial else []
                self.fit_timings_ = clock.timings()
            except Exception:  # never hide why the fit ended behind a second error
                logger.exception("%s: could not keep the model of the interrupted fit",
                                 type(self).__name__)
                raise exc
            if stopped:
                return self
            where = f"; it is also saved in {os.fspath(self.checkpoint)!r}" if self.checkpoint \
                else ""
            warnings.warn(f"{type(self).__name__}.fit was interrupted by {exc!r} after "
                          f"{self.trace_[-1, 0]:.2f} s: coef_ holds the model so far{where}",
                          UserWarning, stacklevel=2)
            raise
        clock.solved()
        self.restarts_ = list(res.restarts)
        self.stage_result_ = res
        if res.missing:  # nothing lost silently: say which partitions are not in the model
            warnings.warn(f"{type(self).__name__}.fit: no result from partitions "
                          f"{res.missing} (their last reports stand in where there are any)",
                          UserWarning, stacklevel=2)
        latest = _latest_snapshots(problem, res.trace) if res.missing else None
        results = [r if r is not None or latest is None else latest[i]
                   for i, r in enumerate(res.results)]
        self._finish_stage(algo, problem, results, res.trace, float(res.elapsed),
                           res.stopped_by, objective, evaluation)
        self.fit_timings_ = clock.timings()
        self._warn_budget(res.stopped_by)
        return self

    def _finish_stage(self, algo, problem, snapshots, trace, elapsed, stopped_by, objective,
                      evaluation) -> None:
        w = algo.combine(problem, snapshots)
        snapshots_over_time = _combined_over_time(algo, problem, trace)
        if elapsed is None:  # cut short: the stage's clock stopped at the last report
            elapsed = max((float(e.time) for e in trace), default=0.0)
        # the final model closes the trace (reports sent just before a STOP can be lost)
        snapshots_over_time.append((float(elapsed), w))
        self._finish(problem, w, snapshots_over_time, _n_iter(snapshots), stopped_by, objective,
                     evaluation, tuple(snapshots))

    def _finish(self, problem, w, snapshots_over_time, n_iter, stopped_by, objective, evaluation,
                snapshots) -> None:
        self.stopped_by_ = stopped_by
        self.n_iter_ = int(n_iter)
        self._set_model(np.asarray(w, dtype=np.float64), problem)
        self.trace_ = _evaluate_trace(objective, snapshots_over_time, *evaluation)
        # what warm_start=True starts the next fit from (when there is no checkpoint file)
        self._warm = Start(np.array(w, dtype=np.float64), snapshots)

    def _trace_hook(self, algo, problem, seen: list):
        """The stage's ``on_trace``: keep every report, and call ``callback`` with the model."""
        latest: list = [None] * problem.n_partitions
        clock = [0.0]  # the newest report time: reports of different operators interleave

        def on_trace(entries) -> None:
            seen.extend(entries)
            if self.callback is None:
                return
            for e in entries:
                if e.metrics and 0 <= e.partition < problem.n_partitions:
                    latest[e.partition] = e.metrics
                clock[0] = max(clock[0], float(e.time))
            if self.callback(clock[0], algo.combine(problem, latest)):
                raise _StopFit()

        return on_trace

    def _warm_start_from(self, algo, problem) -> Start | None:
        """The checkpoint file if there is one, else the previous fit, else None (a cold start)."""
        if self.checkpoint is not None and os.path.exists(self.checkpoint):
            import asip

            saved = asip.load_checkpoint(self.checkpoint).latest
            source = f"checkpoint {os.fspath(self.checkpoint)!r}"
            snapshots = ([saved.get(i) for i in range(problem.n_partitions)]
                         if set(saved) <= set(range(problem.n_partitions)) else None)
            w = _model_of(algo, problem, list(saved.values()))
        elif getattr(self, "_warm", None) is not None:
            source = "the previous fit"
            snapshots, w = self._warm.snapshots, self._warm.w
            if snapshots is not None and len(snapshots) != problem.n_partitions:
                snapshots = None
        else:
            return None
        if w is None or w.shape != (problem.p,) or not np.all(np.isfinite(w)):
            size = "no model" if w is None else f"a model of shape {w.shape}"
            raise ValueError(f"cannot warm-start from {source}: it holds {size}, but this fit "
                             f"needs {problem.p} finite values ({problem.n_features} features"
                             f"{' + intercept' if problem.fit_intercept else ''})")
        return Start(w, None if snapshots is None else tuple(snapshots))

    def _fit_driver(self, client, data, problem, params):
        from ._admm_async import run_admm_async

        if isinstance(data, tuple):  # dask arrays: one delayed (X_block, y_block) per chunk
            import dask

            Xd = data[0].to_delayed().ravel()
            yd = data[1].to_delayed().ravel()
            data = [dask.delayed(tuple)([xb, yb]) for xb, yb in zip(Xd, yd)]
        parts = client.compute(data)
        try:
            res = run_admm_async(client, parts, problem, params, float(self.max_time),
                                 batched=self.solver == "admm-async-batched")
        finally:
            for f in parts:
                f.release()
        return res.w, res.trace, res.n_iter, res.stopped_by

    def _warn_budget(self, stopped_by: str) -> None:
        """ConvergenceWarning when a solver with a stopping test ran out of time or iterations."""
        max_iter_hit = self.max_iter is not None and self.n_iter_ >= self.max_iter
        algo_uses_tol = (self.solver in RUNTIME_SOLVERS
                         and get_algorithm(self.solver).uses_tol)
        if stopped_by in ("max_time", "max_steps", "max_iter") or max_iter_hit:
            if algo_uses_tol or max_iter_hit:
                warnings.warn(
                    f"{type(self).__name__}(solver={self.solver!r}) stopped by its budget "
                    f"({stopped_by}, max_time={self.max_time}, max_iter={self.max_iter}) before "
                    f"meeting tol={self.tol}; increase max_time or max_iter",
                    ConvergenceWarning, stacklevel=3)

    def _set_model(self, w: np.ndarray, problem: Problem) -> None:
        coef = w[: problem.n_features]
        b = float(w[-1]) if problem.fit_intercept else 0.0
        self._coef = coef
        self._intercept = b

    # ------------------------------------------------------------------ predict
    def _decision(self, X):
        check_is_fitted(self)
        if _is_dask(X):
            return X.astype(np.float64).dot(self._coef) + self._intercept
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        return np.asarray(X @ self._coef).ravel() + self._intercept

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        deterministic = (self.solver in RUNTIME_SOLVERS
                         and get_algorithm(self.solver).deterministic)
        tags.non_deterministic = not deterministic
        return tags


def _n_iter(results: list) -> int:
    best = 0
    for r in results:
        if r:
            for key in ("k", "t", "h"):
                if key in r:
                    best = max(best, int(r[key]))
    return best


def _row_norm_scale(sq_mean, sq_max) -> tuple[float, float]:
    """Mean and max squared row norm, which set the step sizes; finite or a clear error."""
    if not np.isfinite(sq_max):
        raise ValueError("X has values so large that the squared row norms overflow float64 "
                         f"(max {sq_max}); scale the features first")
    return float(sq_mean), float(sq_max)


def _all_finite(block) -> bool:
    return bool(np.isfinite(np.asarray(block, dtype=np.float64)).all())


def _block_stats(block) -> np.ndarray:
    """`K.finite_sqnorm_stats` of one dense row block (sparse blocks: scipy)."""
    if sp.issparse(block):
        block = sp.csr_matrix(block)
        sq = np.asarray(block.multiply(block).sum(axis=1)).ravel()
        return np.array([float(np.isfinite(block.data).all()), sq.sum(), sq.max(initial=0.0)])
    return K.finite_sqnorm_stats(np.asarray(block, dtype=np.float64))


class _FitClock:
    """Where a fit's wall time went: input checks and data placement, the solver, the model."""

    def __init__(self, t_fit: float):
        self._t_fit = t_fit
        self._t_solve = time.perf_counter()
        self._t_solved: float | None = None

    def solved(self) -> None:
        self._t_solved = time.perf_counter()

    def timings(self) -> dict[str, float]:
        now = time.perf_counter()
        solved = now if self._t_solved is None else self._t_solved
        return {"prepare": self._t_solve - self._t_fit, "solve": solved - self._t_solve,
                "finish": now - solved}


def _latest_snapshots(problem: Problem, trace: list) -> list:
    """The last reported snapshot of every partition (None where there is none)."""
    latest: list = [None] * problem.n_partitions
    for entry in sorted(trace, key=lambda e: e.time):
        if entry.metrics and 0 <= entry.partition < problem.n_partitions:
            latest[entry.partition] = entry.metrics
    return latest


def _model_of(algo, problem: Problem, snapshots: list) -> np.ndarray | None:
    """The model saved snapshots combine to; another solver's snapshots by their ``w``/``z``."""
    try:
        return np.asarray(algo.combine(problem, snapshots), dtype=np.float64)
    except (KeyError, TypeError, ValueError, IndexError):
        for key in ("w", "z"):
            try:
                w = mean_of(snapshots, key)
            except ValueError:  # shapes differ
                w = None
            if w is not None:
                return w
    return None


def _combined_over_time(algo, problem: Problem, trace: list) -> list:
    """(time, combined model) after each report, from the latest snapshot of every partition."""
    latest: list = [None] * problem.n_partitions
    out = []
    for entry in sorted(trace, key=lambda e: e.time):
        if not entry.metrics or not 0 <= entry.partition < problem.n_partitions:
            continue
        latest[entry.partition] = entry.metrics
        if any(s is not None for s in latest):
            out.append((float(entry.time), algo.combine(problem, latest)))
    return out


def _block_loss_sums(objective: Objective, W: np.ndarray, X, y, rows: int = 20_000):
    """``sum_i phi(a_i^T w_k + b_k, y_i)`` for every column ``k`` of ``W`` on one block,
    a slice of rows at a time so the margins never take more than ``rows x k`` floats."""
    coefs, y = W[: X.shape[1]], np.asarray(y, dtype=np.float64)
    out = np.zeros(W.shape[1])
    for a in range(0, X.shape[0], rows):
        M = np.asarray(X[a:a + rows] @ coefs)
        if objective.fit_intercept:
            M = M + W[-1][None, :]
        out += objective.loss.value(M, y[a:a + rows, None]).sum(axis=0)
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


def _evaluate_trace(objective: Objective, points: list, X, y) -> np.ndarray:
    """``[[time, f(w)], ...]`` for up to 100 of the points, with one pass over the data."""
    if not points:
        return np.empty((0, 2))
    if len(points) > _MAX_TRACE_POINTS:
        points = [points[i] for i in _spread(np.array([t for t, _ in points]),
                                             _MAX_TRACE_POINTS)]
    times = np.array([t for t, _ in points])
    W = np.column_stack([np.asarray(w, dtype=np.float64) for _, w in points])
    if _is_dask(X):
        import dask

        # one task per block where it lives, summed here (no reduction tree across workers)
        part = dask.delayed(_block_loss_sums, pure=True)
        sums = dask.compute(*[part(objective, W, xb, yb) for xb, yb in
                              zip(X.to_delayed().ravel(), y.to_delayed().ravel())])
        coefs = W[: X.shape[1]]
        pens = np.array([objective.penalty.value(coefs[:, k]) for k in range(W.shape[1])])
        values = np.sum(sums, axis=0) / X.shape[0] + pens
    else:
        values = objective.values(W, X, y)
    return np.column_stack([times, values])


class AsipClassifier(ClassifierMixin, _AsipLinearModel):
    """A binary linear classifier (logistic regression or linear SVM) fitted with asip.

    Minimizes ``(1/n) sum_i loss(y_i (a_i^T w + b)) + R(w)`` with labels mapped
    to {-1, +1} (``classes_[1]`` is +1), the loss ``log(1 + exp(-m))``
    (``"log_loss"``) or ``max(0, 1 - m)`` (``"hinge"``), and
    ``R = (alpha/2)||w||^2`` or ``alpha ||w||_1`` -- ``SGDClassifier``'s scaling.

    Parameters
    ----------
    loss : {"log_loss", "hinge"}
    penalty : {"l2", "l1"}
    alpha : float
        Regularization strength (>= 0).
    solver : str
        ``"asip-sgd"`` (asynchronous dual averaging, the default), ``"asip-hogwild"``,
        ``"asip-admm"``, or the baselines ``"gd"``, ``"admm"``, ``"averaging"``,
        ``"admm-async"``, ``"admm-async-batched"``, ``"saga"``.
    max_time : float
        Seconds the solver runs (the stage's time budget).
    max_iter : int, optional
        The solver's own iteration budget (rounds for gd/admm, ring passes for
        saga, local iterations for averaging, z updates for admm-async); the
        stochastic solvers run on time only.
    tol : float, optional
        Stopping tolerance of the solvers that have a test (gd, admm, saga,
        averaging); asynchronous stochastic solvers run for the whole budget.
    n_partitions : int, optional
        Row blocks numpy/scipy input is split into (default: one per worker
        thread); rechunks a dask array when given.
    fit_intercept : bool
        Fit an unpenalized intercept.
    faults : sequence of asip.faults objects
        Faults injected into the stage (fault-tolerance experiments).
    random_state : int, RandomState or None
        Seeds the solvers' sampling.
    verbose : int
        Log the setup at INFO level when > 0.
    solver_params : dict, optional
        Hyperparameters of the solver (e.g. ``{"rho": 0.1}`` for ADMM,
        ``{"batch_size": 32}`` for the SGDs); unknown keys raise ValueError
        listing the valid ones.
    callback : callable, optional
        ``callback(seconds, w)`` is called on the driver as reports arrive, with the
        current combined model ``w`` (coefficients, then the intercept if fitted).
        Returning True stops the fit early (``stopped_by_ == "callback"``); raising
        stops every operator, keeps the model so far in ``coef_`` (with a warning)
        and re-raises -- as Ctrl-C does.
    checkpoint : str or path, optional
        File where the stage saves every partition's latest state, every
        ``checkpoint_every`` seconds and when the fit ends (also on Ctrl-C or an
        error), atomically; ``asip.load_checkpoint`` reads it.
    checkpoint_every : float
        Seconds between checkpoints.
    warm_start : bool
        Start from the ``checkpoint`` file when it exists, else from the previous
        fit of this estimator (else from zero). The runtime solvers only.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features)
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    n_iter_ : int
        The solver's iteration counter at the end (see ``max_iter``).
    trace_ : ndarray of shape (k, 2)
        ``[seconds, objective]`` after reports during the fit (up to 100 rows).
    restarts_ : list
        Operator restarts during the fit (``asip.Restart`` tuples).
    stage_result_ : asip.StageResult or None
        The fit's stage: per-operator results, trace, restarts, channel statistics
        (messages, drops, staleness) and data/launch/teardown timings; partial if the
        fit was interrupted; None for the driver-side solvers (``admm-async*``).
    fit_timings_ : dict
        Seconds spent in ``fit``: ``prepare`` (input checks, placing the data),
        ``solve`` (the stage or driver loop) and ``finish`` (model, trace evaluation).
    stopped_by_ : str
        Why the solver stopped ("max_time", "STOP from partition 0", "callback",
        "interrupted", ...).

    Examples
    --------
    >>> from asip.algorithms import AsipClassifier            # doctest: +SKIP
    >>> clf = AsipClassifier(alpha=1e-3, max_time=2.0).fit(X, y)  # doctest: +SKIP
    """

    _classifier = True
    _valid_losses = ("log_loss", "hinge")

    def __init__(self, loss="log_loss", penalty="l2", alpha=1e-4, solver="asip-sgd",
                 max_time=10.0, max_iter=None, tol=1e-6, n_partitions=None,
                 fit_intercept=False, faults=(), random_state=None, verbose=0,
                 solver_params=None, callback=None, checkpoint=None, checkpoint_every=5.0,
                 warm_start=False):
        super().__init__(loss=loss, penalty=penalty, alpha=alpha, solver=solver,
                         max_time=max_time, max_iter=max_iter, tol=tol,
                         n_partitions=n_partitions, fit_intercept=fit_intercept, faults=faults,
                         random_state=random_state, verbose=verbose,
                         solver_params=solver_params, callback=callback,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         warm_start=warm_start)

    def _set_classes(self, labels) -> None:
        labels = np.unique(labels)
        if len(labels) < 2:
            raise ValueError(f"AsipClassifier needs samples of 2 classes, but the data contains "
                             f"only one class: {labels.tolist()}")
        if len(labels) > 2:
            raise ValueError(f"Only binary classification is supported: AsipClassifier got y "
                             f"with {len(labels)} classes {labels.tolist()[:10]}; fit one model "
                             "per class (e.g. sklearn.multiclass.OneVsRestClassifier) for "
                             "multiclass problems")
        self.classes_ = labels

    def _encode_y(self, y):
        check_classification_targets(y)
        self._set_classes(y)
        return np.where(y == self.classes_[1], 1.0, -1.0)

    def _set_model(self, w, problem):
        super()._set_model(w, problem)
        self.coef_ = self._coef.reshape(1, -1)
        self.intercept_ = np.array([self._intercept])

    def decision_function(self, X):
        """``a^T w + b`` per sample: positive means ``classes_[1]``."""
        return self._decision(X)

    def predict(self, X):
        """The class of each sample."""
        d = self.decision_function(X)
        if _is_dask(d):
            import dask.array as da

            return da.where(d > 0, self.classes_[1], self.classes_[0])
        return self.classes_[(d > 0).astype(int)]

    @available_if(lambda self: self.loss == "log_loss")
    def predict_proba(self, X):
        """Class probabilities ``[P(classes_[0]), P(classes_[1])]`` of the logistic model."""
        from scipy.special import expit

        d = self.decision_function(X)
        if _is_dask(d):
            import dask.array as da

            p1 = d.map_blocks(expit)
            return da.stack([1 - p1, p1], axis=1)
        p1 = expit(d)
        return np.column_stack([1 - p1, p1])

    @available_if(lambda self: self.loss == "log_loss")
    def predict_log_proba(self, X):
        """Logarithm of `predict_proba`."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


class AsipRegressor(RegressorMixin, _AsipLinearModel):
    """A least-squares linear regressor (ridge or lasso) fitted with asip.

    Minimizes ``(1/(2n)) ||y - A w - b||^2 + R(w)`` (scikit-learn ``Lasso``'s
    scaling for l1). Parameters and attributes as `AsipClassifier`, except
    ``loss`` (only ``"squared_error"``), ``coef_`` of shape (n_features,) and
    a float ``intercept_``.
    """

    _classifier = False
    _valid_losses = ("squared_error",)

    def __init__(self, loss="squared_error", penalty="l2", alpha=1e-4, solver="asip-sgd",
                 max_time=10.0, max_iter=None, tol=1e-6, n_partitions=None,
                 fit_intercept=False, faults=(), random_state=None, verbose=0,
                 solver_params=None, callback=None, checkpoint=None, checkpoint_every=5.0,
                 warm_start=False):
        super().__init__(loss=loss, penalty=penalty, alpha=alpha, solver=solver,
                         max_time=max_time, max_iter=max_iter, tol=tol,
                         n_partitions=n_partitions, fit_intercept=fit_intercept, faults=faults,
                         random_state=random_state, verbose=verbose,
                         solver_params=solver_params, callback=callback,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         warm_start=warm_start)

    def _set_model(self, w, problem):
        super()._set_model(w, problem)
        self.coef_ = self._coef.copy()
        self.intercept_ = float(self._intercept)

    def predict(self, X):
        """``a^T w + b`` per sample."""
        return self._decision(X)
