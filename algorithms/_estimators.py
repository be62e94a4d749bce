"""scikit-learn estimators that fit linear models with asip's solvers on a Dask cluster.

`AsipClassifier` (logistic or hinge loss; two classes, or more one-vs-rest) and
`AsipRegressor` (least squares) minimize the objective of `_objectives`::

    f(w) = (1/sum s) sum_i s_i loss(y_i (a_i^T w + b)) + R(w),
    R = (alpha/2)||w||^2 or alpha ||w||_1

(``s_i`` = sample weight times class weight, 1 by default) with the solver
named by ``solver=`` (``"auto"``: `_auto.choose_solver`). This module holds the
estimators' parameters, checks and predictions only; the work is done by

* `_inputs` -- user data (numpy, scipy.sparse, pandas, dask arrays and
  DataFrames) into checked, encoded partitions;
* `_fitting` -- the client, the stage (or driver loop), warm starts, interrupts,
  stop reasons;
* `_model` -- the fitted model and ``trace_`` from the operators' snapshots.

The Dask client is looked up at fit time -- ``distributed.default_client()``,
else an embedded ``asip.connect()`` cluster created once per process -- never
passed as a parameter (``clone`` deep-copies parameters). That cluster's workers
are threads of this process (``asip.driver.embedded-workers: threads``, the default),
where in-memory ``X`` stays in place, nothing copied: the kernels release the GIL, and
operators on them hand their pushes to each other without the event loop
(`asip._handover`). With ``processes`` (``dask.config.set``, or
``DASK_ASIP__DRIVER__EMBEDDED_WORKERS=processes``) they are worker processes, the data
scattered into them; a fit that injects ``KillWorker``/``HangWorker`` gets those
whatever the setting. That cluster starts no Bokeh dashboard (its import and server were
most of a fresh script's first fit) unless ``asip.driver.embedded-dashboard`` is true;
``asip.connect()``, made the default client, has one with its ``/asip`` page.

A fit cut short -- Ctrl-C, an exception raised in ``callback``, a stage that
fails -- keeps the model so far (``coef_``, ``trace_``, ..., ``stopped_by_``
saying why), warns, and re-raises. ``checkpoint=path`` has the stage save every
partition's latest state to ``path`` every ``checkpoint_every`` seconds and at
the end (atomically), and ``warm_start=True`` starts the next fit from that
file, or from the previous fit when there is no file.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from asip._config import flag
from asip.faults import process_faults

from . import _kernels as K
from ._auto import choose_solver
from ._base import Problem, Start
from ._fitting import (FitClock, final_objective, get_client, is_driver_solver,
                       preload_workers, run_driver, run_stage)
from ._inputs import check_predict_input, is_dask, prepare
from ._model import PendingTrace
from ._objectives import PENALTIES, Objective, get_loss, get_penalty
from ._solvers import ASYNC_DRIVER_SOLVERS, RUNTIME_SOLVERS, SOLVERS, get_algorithm

__all__ = ["AsipClassifier", "AsipRegressor"]

logger = logging.getLogger(__name__)

_LOSS_CODE = {"log_loss": K.LOGISTIC, "hinge": K.HINGE, "squared_error": K.SQUARED}
_PENALTY_CODE = {"l2": K.L2, "l1": K.L1}
_STAGE_ONLY = ("faults", "callback", "checkpoint", "warm_start")  # options a stage provides


def _seed(random_state) -> int | None:
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got "
                     f"{random_state!r}")


def _trace(objective, out, n_tasks: int, prep) -> PendingTrace:
    """``trace_``: the objective at the outcome's points, taken from the solver where it
    knows it (the reports' ``objective_w``, the final model's `final_objective`: no pass
    over the data for those). Over a dask ``X`` (with ``asip.driver.lazy-trace``) that pass,
    a compute on the cluster, is taken when ``trace_`` is first read, not in ``fit``; over
    in-memory data, which the caller may change in place afterwards, in ``fit``."""
    known = list(out.objectives) if out.objectives is not None else [None] * len(out.points)
    if known:
        final = final_objective(out, n_tasks)
        known[-1] = final if final is not None else known[-1]
    deferred = flag("driver.lazy-trace") and is_dask(prep.X)
    trace = PendingTrace(objective, out.points, prep.X, prep.y, prep.sw, known=known,
                         deferred=deferred)
    if not deferred:
        trace.value()
    return trace


class _AsipLinearModel(BaseEstimator):
    """Shared fit/predict machinery; see `AsipClassifier` and `AsipRegressor`."""

    _valid_losses: tuple[str, ...] = ()
    _classifier = False

    def __init__(self, *, loss, penalty="l2", alpha=1e-4, solver="auto", max_time=10.0,
                 max_iter=None, tol=1e-6, n_partitions=None, fit_intercept=True, faults=(),
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
        if self.solver != "auto" and self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; valid solvers are "
                             f"{['auto', *SOLVERS]}")
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
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ValueError(f"fit_intercept must be a bool, got {self.fit_intercept!r}")
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
        if not isinstance(self.verbose, numbers.Integral):
            raise ValueError(f"verbose must be an int, got {self.verbose!r}")
        if self.solver in ASYNC_DRIVER_SOLVERS:
            used = [name for name in _STAGE_ONLY if getattr(self, name)]
            if used:
                what = "faults cannot be injected" if "faults" in used else f"{used} need a stage"
                raise ValueError(f"solver {self.solver!r} runs on the driver with distributed's "
                                 f"as_completed, not as an asip stage, so {what}; use one of "
                                 f"{sorted(RUNTIME_SOLVERS)}")
        return Objective(get_loss(self.loss), get_penalty(self.penalty, self.alpha),
                         bool(self.fit_intercept))

    def _resolve_solver(self, prep, problem: Problem, n_tasks: int) -> str:
        """The solver this fit runs (``"auto"`` resolved), checked against the fit's needs."""
        weighted = prep.sw is not None
        if self.solver == "auto":
            return choose_solver(self.loss, self.penalty, sum(prep.sizes),
                                 int(self.n_features_in_), prep.sparse, weighted,
                                 problem=problem)
        solver = self.solver
        if weighted and (is_driver_solver(solver) or not get_algorithm(solver).sample_weight):
            able = sorted(n for n, a in RUNTIME_SOLVERS.items() if a.sample_weight)
            raise NotImplementedError(
                f"solver {solver!r} does not support sample weights (sample_weight or "
                f"class_weight) yet; solvers that do: {able} (or solver='auto')")
        if n_tasks > 1 and is_driver_solver(solver):
            raise ValueError(f"solver {solver!r} runs on the driver and fits binary problems "
                             f"only; for {n_tasks} classes use one of {sorted(RUNTIME_SOLVERS)}")
        return solver

    def _solver_params(self, solver: str, seed: int | None) -> dict:
        """The solver's hyperparameters: ``solver_params`` plus tol, max_iter and the seed."""
        from ._admm_async import ASYNC_DEFAULTS

        defaults = (ASYNC_DEFAULTS if is_driver_solver(solver)
                    else get_algorithm(solver).defaults)
        params = dict(self.solver_params or {})
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"unknown solver_params {sorted(unknown)} for solver "
                             f"{solver!r}; valid ones are {sorted(defaults)}")
        if "tol" in defaults and self.tol is not None:
            params.setdefault("tol", float(self.tol))
        if "max_iter" in defaults and self.max_iter is not None:
            params.setdefault("max_iter", int(self.max_iter))
        if "seed" in defaults and seed is not None:
            params.setdefault("seed", seed)
        out = dict(defaults)
        out.update(params)
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None):
        """Fit the model with the chosen solver on the current Dask cluster.

        Parameters
        ----------
        X : array-like, sparse matrix, dask array or dask DataFrame of shape (n_samples, n_features)
            A dask array must be chunked along rows only; each row chunk is a partition.
        y : array-like, dask array or dask Series of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Weight of each row in the loss sum (a weight of k counts the row k times);
            solvers that cannot use weights yet raise NotImplementedError.

        Returns
        -------
        self
        """
        t_fit = time.perf_counter()
        objective = self._check_params()
        client = get_client(process_faults=bool(process_faults(self.faults)))
        preload_workers(client)  # the workers' imports overlap the input checks
        t_client = time.perf_counter()
        prep = prepare(self, X, y, sample_weight, client)
        n_tasks = len(self.classes_) if self._classifier and len(self.classes_) > 2 else 1
        problem = Problem(_LOSS_CODE[self.loss], _PENALTY_CODE[self.penalty], float(self.alpha),
                          bool(self.fit_intercept), int(self.n_features_in_), prep.sizes,
                          prep.sq_mean, prep.sq_max)
        solver = self._resolve_solver(prep, problem, n_tasks)
        self.solver_ = solver
        params = self._solver_params(solver, _seed(self.random_state))
        if solver == "asip-cocoa":  # one local solver for every partition, from the whole X
            from ._cocoa import resolve_local_solver

            params = resolve_local_solver(params, problem, prep.X, prep.sparse)
        if self.verbose:
            logger.info("%s: solver=%s on %d partitions of %s rows, %d task(s), max_time=%s",
                        type(self).__name__, solver, len(prep.sizes), prep.sizes, n_tasks,
                        self.max_time)
        clock = FitClock(t_client)
        if is_driver_solver(solver):
            out = run_driver(self, solver, prep, problem, params, client)
        elif self.verbose:
            from ._progress import FitProgress

            with FitProgress(f"{type(self).__name__}({solver})", self.max_time) as bar:
                out = run_stage(self, solver, prep, problem, params, n_tasks, client, bar)
        else:
            out = run_stage(self, solver, prep, problem, params, n_tasks, client)
        clock.solved()
        self.restarts_ = out.restarts
        self.stage_result_ = out.stage_result
        self.stopped_by_ = out.stopped_by
        self.n_iter_ = int(out.n_iter)
        self.gap_ = out.gap
        self._set_model(np.asarray(out.w, dtype=np.float64), problem)
        self._trace = _trace(objective, out, n_tasks, prep)
        # what warm_start=True starts the next fit from (when there is no checkpoint file)
        self._warm = Start(np.array(out.w, dtype=np.float64), out.snapshots)
        self.fit_timings_ = {"client": t_client - t_fit, **clock.timings()}
        if out.error is not None:
            where = (f"; it is also saved in {os.fspath(self.checkpoint)!r}"
                     if self.checkpoint else "")
            warnings.warn(f"{type(self).__name__}.fit was interrupted by {out.error!r} after "
                          f"{self._trace.last_time:.2f} s: coef_ holds the model so far{where}",
                          UserWarning, stacklevel=2)
            raise out.error
        self._warn_budget(solver, out.stopped_by)
        return self

    @property
    def trace_(self) -> np.ndarray:
        """``[seconds, objective]`` of the fit (see the class docstring), evaluated when
        first read (``asip.driver.lazy-trace``)."""
        trace = self.__dict__.get("_trace")
        if trace is None:
            raise AttributeError(f"{type(self).__name__} is not fitted: it has no trace_")
        return trace.value()

    def _warn_budget(self, solver: str, stopped_by: str) -> None:
        """ConvergenceWarning when a solver with a stopping test ran out of time or iterations."""
        max_iter_hit = self.max_iter is not None and self.n_iter_ >= self.max_iter
        algo_uses_tol = solver in RUNTIME_SOLVERS and get_algorithm(solver).uses_tol
        if stopped_by in ("max_time", "max_steps", "max_iter") or max_iter_hit:
            if algo_uses_tol or max_iter_hit:
                warnings.warn(
                    f"{type(self).__name__}(solver={solver!r}) stopped by its budget "
                    f"({stopped_by}, max_time={self.max_time}, max_iter={self.max_iter}) before "
                    f"meeting tol={self.tol}; increase max_time or max_iter",
                    ConvergenceWarning, stacklevel=3)

    def _set_model(self, w: np.ndarray, problem: Problem) -> None:
        W = np.atleast_2d(w)
        self._coef = W[:, : problem.n_features].copy()  # (n_tasks, n_features)
        self._intercept = W[:, -1].copy() if problem.fit_intercept else np.zeros(len(W))

    # ------------------------------------------------------------------ predict
    def _decision(self, X):
        """``X @ coef.T + intercept``: shape (n, n_tasks)."""
        check_is_fitted(self)
        X = check_predict_input(self, X)
        if is_dask(X):
            return X.dot(self._coef.T) + self._intercept
        return np.asarray(X @ self._coef.T).reshape(X.shape[0], -1) + self._intercept

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        deterministic = (self.solver in RUNTIME_SOLVERS
                         and get_algorithm(self.solver).deterministic)
        tags.non_deterministic = not deterministic
        return tags


def _log_proba(d):
    """OvR log-probabilities, normalized: ``log_expit(d_k) - logsumexp_j log_expit(d_j)``;
    binary: ``[log_expit(-d), log_expit(d)]``. Stable for any margin."""
    from scipy.special import log_expit, logsumexp

    if d.shape[1] == 1:
        return np.column_stack([log_expit(-d[:, 0]), log_expit(d[:, 0])])
    lp = log_expit(d)
    return lp - logsumexp(lp, axis=1, keepdims=True)


class AsipClassifier(ClassifierMixin, _AsipLinearModel):
    """A linear classifier (logistic regression or linear SVM) fitted with asip.

    Minimizes ``(1/sum s) sum_i s_i loss(y_i (a_i^T w + b)) + R(w)`` with labels
    mapped to {-1, +1} (``classes_[1]`` is +1), the loss ``log(1 + exp(-m))``
    (``"log_loss"``) or ``max(0, 1 - m)`` (``"hinge"``), and
    ``R = (alpha/2)||w||^2`` or ``alpha ||w||_1`` -- ``SGDClassifier``'s scaling.
    With K > 2 classes it fits K such models one-vs-rest, all in one stage (each
    operator holds K solver states), and ``decision_function`` has K columns.

    Parameters
    ----------
    loss : {"log_loss", "hinge"}
    penalty : {"l2", "l1"}
    alpha : float
        Regularization strength (>= 0).
    solver : str
        ``"auto"`` (default: a solver with a certified stopping test for the
        loss/penalty, see `asip.algorithms._auto`), ``"asip-sgd"`` (asynchronous dual
        averaging), ``"asip-hogwild"``, ``"asip-admm"``, or the baselines ``"gd"``,
        ``"admm"``, ``"averaging"``, ``"admm-async"``, ``"admm-async-batched"``,
        ``"saga"``.
    max_time : float
        A cap on the seconds the solver runs (the stage's time budget); solvers with a
        stopping test end earlier, when ``tol`` is met.
    max_iter : int, optional
        The solver's own iteration budget (rounds for gd/admm, ring passes for
        saga, local iterations for averaging, z updates for admm-async); the
        stochastic solvers run on time only.
    tol : float, optional
        Stopping tolerance of the solvers that have a test (``uses_tol``: gd, admm,
        saga, ...); asynchronous stochastic solvers run for the whole budget.
    n_partitions : int, optional
        Row blocks numpy/scipy input is split into (default: one per worker
        thread); rechunks a dask array into exactly that many when given.
    fit_intercept : bool
        Fit an unpenalized intercept (default True, as scikit-learn).
    class_weight : dict, "balanced" or None
        Weights of the classes in the loss sum (``{label: weight}``; "balanced":
        ``n / (n_classes * count)``), multiplied into the sample weights.
    faults : sequence of asip.faults objects
        Faults injected into the stage (fault-tolerance experiments).
    random_state : int, RandomState or None
        Seeds the solvers' sampling.
    verbose : int
        With 1 or more: a progress bar (rich) with elapsed time, the certified gap or
        the iteration, and messages per second; the setup is logged at INFO level.
    solver_params : dict, optional
        Hyperparameters of the solver (e.g. ``{"rho": 0.1}`` for ADMM,
        ``{"batch_size": 32}`` for the SGDs); unknown keys raise ValueError
        listing the valid ones.
    callback : callable, optional
        ``callback(seconds, w)`` is called on the driver as reports arrive, with the
        current combined model ``w`` (coefficients, then the intercept if fitted;
        ``(n_classes, p)`` for multiclass). Returning True stops the fit early
        (``stopped_by_ == "callback"``); raising stops every operator, keeps the model
        so far in ``coef_`` (with a warning) and re-raises -- as Ctrl-C does.
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
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names of a pandas or dask DataFrame ``X`` (when all are strings).
    solver_ : str
        The solver the fit ran (``solver="auto"`` resolved).
    n_iter_ : int
        The solver's iteration counter at the end (see ``max_iter``).
    gap_ : float or None
        The certified duality gap at the end, for solvers that report one.
    trace_ : ndarray of shape (k, 2)
        ``[seconds, objective]`` at the reports that carried the model (every report
        while the model is small, see ``asip.trace.model-bytes``) and at the end; up
        to 100 rows. Multiclass: the sum of the classes' objectives. Where the solver
        does not know the objective it takes a pass over the data: for a dask ``X``, a
        compute on the cluster taken when ``trace_`` is first read (no part of
        ``fit``'s time; until then the estimator holds ``X``, and its client must
        still be open); ``asip.driver.lazy-trace: false`` takes it in ``fit``, as it
        always is for in-memory data.
    restarts_ : list
        Operator restarts during the fit (``asip.Restart`` tuples).
    stage_result_ : asip.StageResult or None
        The fit's stage: per-operator results, trace, restarts, channel statistics
        (messages, drops, staleness) and data/launch/teardown timings; partial if the
        fit was interrupted; None for the driver-side solvers (``admm-async*``).
    fit_timings_ : dict
        Seconds spent in ``fit``: ``client`` (finding or starting the cluster),
        ``prepare`` (input checks, placing the data), ``solve`` (the stage or driver
        loop) and ``finish`` (model; the trace, but for a dask ``X``'s, see ``trace_``).
    stopped_by_ : str
        Why the solver stopped: "tol" (certified), "max_iter", "max_time",
        "callback", "interrupted", "error: ...", "STOP from partition i".

    Examples
    --------
    >>> from asip.algorithms import AsipClassifier            # doctest: +SKIP
    >>> clf = AsipClassifier(alpha=1e-3).fit(X, y)            # doctest: +SKIP
    """

    _classifier = True
    _valid_losses = ("log_loss", "hinge")

    def __init__(self, loss="log_loss", penalty="l2", alpha=1e-4, solver="auto",
                 max_time=10.0, max_iter=None, tol=1e-6, n_partitions=None,
                 fit_intercept=True, class_weight=None, faults=(), random_state=None,
                 verbose=0, solver_params=None, callback=None, checkpoint=None,
                 checkpoint_every=5.0, warm_start=False):
        super().__init__(loss=loss, penalty=penalty, alpha=alpha, solver=solver,
                         max_time=max_time, max_iter=max_iter, tol=tol,
                         n_partitions=n_partitions, fit_intercept=fit_intercept, faults=faults,
                         random_state=random_state, verbose=verbose,
                         solver_params=solver_params, callback=callback,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         warm_start=warm_start)
        self.class_weight = class_weight

    def _set_classes(self, labels) -> None:
        labels = np.unique(labels)
        if len(labels) < 2:
            raise ValueError(f"AsipClassifier needs samples of at least 2 classes, but the "
                             f"data contains only one class: {labels.tolist()}")
        self.classes_ = labels

    def _set_model(self, w, problem):
        super()._set_model(w, problem)
        self.coef_ = self._coef
        self.intercept_ = self._intercept

    def decision_function(self, X):
        """``a^T w + b`` per sample: shape (n,) for two classes (positive means
        ``classes_[1]``), (n, n_classes) for more."""
        d = self._decision(X)
        return d[:, 0] if d.shape[1] == 1 else d

    def predict(self, X):
        """The class of each sample."""
        d = self._decision(X)
        if is_dask(d):
            import dask.array as da

            if d.shape[1] == 1:
                return da.where(d[:, 0] > 0, self.classes_[1], self.classes_[0])
            return d.map_blocks(lambda b: self.classes_[np.argmax(b, axis=1)], drop_axis=1,
                                dtype=self.classes_.dtype)
        if d.shape[1] == 1:
            return self.classes_[(d[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(d, axis=1)]

    @available_if(lambda self: self.loss == "log_loss")
    def predict_log_proba(self, X):
        """Log of `predict_proba`, computed stably (``log_expit``, ``logsumexp``)."""
        d = self._decision(X)
        if is_dask(d):
            k = max(d.shape[1], 2)
            return d.map_blocks(_log_proba, chunks=(d.chunks[0], (k,)), dtype=np.float64)
        return _log_proba(d)

    @available_if(lambda self: self.loss == "log_loss")
    def predict_proba(self, X):
        """Class probabilities, one column per ``classes_``: the logistic model's for two
        classes, the one-vs-rest probabilities normalized to sum to 1 for more."""
        lp = self.predict_log_proba(X)
        return np.exp(lp)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class AsipRegressor(RegressorMixin, _AsipLinearModel):
    """A least-squares linear regressor (ridge or lasso) fitted with asip.

    Minimizes ``(1/(2 sum s)) sum_i s_i (y_i - a_i^T w - b)^2 + R(w)``
    (scikit-learn ``Lasso``'s scaling for l1). Parameters and attributes as
    `AsipClassifier`, except ``loss`` (only ``"squared_error"``), no
    ``class_weight``, ``coef_`` of shape (n_features,) and a float ``intercept_``.
    """

    _classifier = False
    _valid_losses = ("squared_error",)

    def __init__(self, loss="squared_error", penalty="l2", alpha=1e-4, solver="auto",
                 max_time=10.0, max_iter=None, tol=1e-6, n_partitions=None,
                 fit_intercept=True, faults=(), random_state=None, verbose=0,
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
        self.coef_ = self._coef[0].copy()
        self.intercept_ = float(self._intercept[0])

    def predict(self, X):
        """``a^T w + b`` per sample."""
        d = self._decision(X)
        return d[:, 0]
