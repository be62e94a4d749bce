"""Run one of asip's solvers through its estimator, as a user would, and keep what it measured.

The clock of an asip run starts when ``fit`` is called, with the data already
where it lives (persisted dask arrays on the cluster, or CSR in memory): a
trace point at stage time ``t`` is placed at ``offset + t`` with ``offset``
= input checks before the stage + the stage's ``data`` and ``launch`` timings,
so gang launch is paid like any other cost. ``admm-async`` runs on the driver
without a stage; its clock starts at its own loop (input checks excluded).
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np

from asip.algorithms import AsipClassifier, AsipRegressor, get_algorithm
from asip.algorithms._solvers import ASYNC_DRIVER_SOLVERS

from .config import SOLVER_VARIANTS
from .data import BenchData, ClusterData, Task
from .records import Run

__all__ = ["LiveObjective", "data_passes", "run_asip"]

logger = logging.getLogger(__name__)

#: the live display evaluates the objective on a row sample above this many matrix entries
_LIVE_ENTRIES = 5_000_000


class LiveObjective:
    """Evaluates models for the live display on (a sample of) the canonical data; never raises.

    Also the estimators' ``callback(seconds, w)``: it evaluates at most every
    ``interval`` seconds and never asks the fit to stop.
    """

    def __init__(self, data: BenchData, task: Task, report, interval: float = 0.5):
        self.report = report
        self.interval = interval
        self._last = -float("inf")
        self.objective = task.objective(data.n)
        if data.n * data.d > _LIVE_ENTRIES:
            rows = np.random.default_rng(0).choice(data.n, _LIVE_ENTRIES // data.d,
                                                   replace=False)
            self.X, self.y, self.exact = data.X[rows], data.y[rows], False
        else:
            self.X, self.y, self.exact = data.X, data.y, True

    def __call__(self, w) -> None:
        try:
            self.report(float(self.objective.value(np.asarray(w, dtype=np.float64), self.X,
                                                   self.y)), self.exact)
        except Exception as exc:  # display only
            logger.debug("live objective failed: %s", exc)

    def callback(self, seconds: float, w) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self(w)
        return False


def data_passes(solver: str, results: list, sizes: list[int]) -> float | None:
    """Passes over the data the operators made, from their final snapshots (None if unknown)."""
    if not results or any(r is None for r in results):
        return None
    n = float(sum(sizes))
    if solver in ("asip-sgd", "asip-hogwild"):
        b = get_algorithm(solver).defaults["batch_size"]
        return sum(int(r.get("t", 0)) * b for r in results) / n
    if solver == "asip-admm":
        e = get_algorithm(solver).defaults["local_epochs"]
        return sum(int(r.get("k", 0)) * e * s for r, s in zip(results, sizes)) / n
    if solver == "gd":
        return float(max(int(r.get("k", 0)) for r in results))
    return None


def run_asip(cdata: ClusterData, task: Task, solver: str, budget: float, *, faults=(),
             live: LiveObjective | None = None, seed: int = 0, kind: str = "matrix",
             solver_params: dict | None = None, tol: float | None = None) -> Run:
    """Fit ``solver`` (or a `SOLVER_VARIANTS` name) for ``budget`` seconds.

    Returns its `Run`, traced on asip's objective. ``tol`` goes to the
    estimator (None: its default); 0 lets no solver stop before its budget.
    """
    data = cdata.data
    Est = AsipRegressor if task.regression else AsipClassifier
    base, variant_params = SOLVER_VARIANTS.get(solver, (solver, {}))
    solver_params = {**variant_params, **(solver_params or {})} or None
    stage_solver = base not in ASYNC_DRIVER_SOLVERS  # the driver-side ones take no callback
    options = {} if tol is None else {"tol": float(tol)}
    # fit_intercept=False: the benchmark's problem has no intercept (as in the paper), whatever
    # the estimators' default
    est = Est(loss=task.loss, penalty=task.penalty, alpha=task.alpha_for(data.n), solver=base,
              fit_intercept=False, max_time=float(budget), n_partitions=cdata.n_partitions,
              faults=tuple(faults), random_state=seed, solver_params=solver_params,
              callback=live.callback if live is not None and stage_solver else None, **options)
    run = Run(data.name, task.key, solver, "asip", kind=kind, budget=float(budget),
              n_rows=data.n, n_partitions=cdata.n_partitions, faults=[repr(f) for f in faults])
    refused = _refuses(base, task, data, solver_params)
    if refused:  # e.g. asip-cocoa on an l1 task: not run, as dask-glm without the loss
        run.status, run.note = "skipped", refused
        return run
    X, y = cdata.asip_input()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # budget-ended ConvergenceWarnings are expected here
        t0 = time.perf_counter()
        est.fit(X, y)
        run.fit_seconds = time.perf_counter() - t0
    result = est.stage_result_
    if result is not None and stage_solver:
        started = est.fit_timings_["prepare"]
        run.offset = started + result.timings.get("data", 0.0) + result.timings.get("launch", 0.0)
        run.timings = {k: float(v) for k, v in result.timings.items()}
        run.timings["before_stage"] = started
        run.timings["elapsed"] = float(result.elapsed)
        run.stats = dict(result.stats["total"])
        run.restarts = len(result.restarts)
        passes = data_passes(base, result.results, _sizes(cdata))
        run.extra.update(stopped_by=result.stopped_by, steps=list(result.steps),
                         data_passes=passes)
        run.extra["restart_times"] = [float(r.time) for r in result.restarts]
    else:
        run.note = "clock starts at its driver loop (input checks excluded)"
    run.trace = [[run.offset + float(t), float(f)] for t, f in np.asarray(est.trace_)
                 if math.isfinite(f)]
    if result is not None and stage_solver:
        # trace_ is built from rate-limited reports and can miss the model fit() returned
        # (a solver that stops early): add it at the stage's end
        t_end = run.offset + float(result.elapsed)
        if not run.trace or run.trace[-1][0] < t_end - 1e-6:
            w = np.asarray(est.coef_, dtype=np.float64).ravel()
            run.trace.append([t_end, float(task.objective(data.n).value(w, data.X, data.y))])
            run.extra["final_point_added"] = True
    run.extra["n_iter"] = int(est.n_iter_)
    return run


def _refuses(base: str, task: Task, data: BenchData, solver_params: dict | None) -> str | None:
    """Why the runtime solver ``base`` refuses ``task`` (its ``validate``), or None."""
    if base in ASYNC_DRIVER_SOLVERS:
        return None
    algo = get_algorithm(base)
    if algo.validate is None:
        return None
    from asip.algorithms import get_loss, get_penalty
    from asip.algorithms._base import Problem

    alpha = task.alpha_for(data.n)
    problem = Problem(get_loss(task.loss).code, get_penalty(task.penalty, alpha).code, alpha,
                      False, int(data.X.shape[1]), (int(data.n),))
    try:
        algo.validate(problem, algo.merge(solver_params))
    except ValueError as exc:
        return str(exc)
    return None


def _sizes(cdata: ClusterData) -> list[int]:
    n, p = cdata.data.n, cdata.n_partitions
    bounds = np.linspace(0, n, p + 1).astype(int)
    return [int(b - a) for a, b in zip(bounds[:-1], bounds[1:])]
