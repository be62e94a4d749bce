"""Run one of asip's solvers through its estimator, as a user would, and keep everything it measured.

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

from .capture import capture_stages
from .data import BenchData, ClusterData, Task
from .records import Run

__all__ = ["LiveObjective", "data_passes", "run_asip"]

logger = logging.getLogger(__name__)

#: the live display evaluates the objective on at most this many rows
_LIVE_ROWS = 20_000


class LiveObjective:
    """Evaluates models for the live display on (a sample of) the canonical data; never raises."""

    def __init__(self, data: BenchData, task: Task, report):
        self.report = report
        self.objective = task.objective(data.n)
        if data.n > _LIVE_ROWS:
            rows = np.random.default_rng(0).choice(data.n, _LIVE_ROWS, replace=False)
            self.X, self.y, self.exact = data.X[rows], data.y[rows], False
        else:
            self.X, self.y, self.exact = data.X, data.y, True

    def __call__(self, w) -> None:
        try:
            self.report(float(self.objective.value(np.asarray(w, dtype=np.float64), self.X,
                                                   self.y)), self.exact)
        except Exception as exc:  # display only
            logger.debug("live objective failed: %s", exc)

    def from_snapshots(self, solver: str, problem, latest: dict) -> None:
        algo = get_algorithm(solver)
        self(algo.combine(problem, [latest.get(i) for i in range(problem.n_partitions)]))


def data_passes(solver: str, results: list, sizes: list[int]) -> float | None:
    """Passes over the data the operators made, from their final snapshots (None if unknown)."""
    if not results or any(r is None for r in results):
        return None
    n = float(sum(sizes))
    if solver in ("asip-sgd", "asip-hogwild"):
        b = get_algorithm(solver).defaults["batch_size"]
        key = "t"
        return sum(int(r.get(key, 0)) * b for r in results) / n
    if solver == "asip-admm":
        e = get_algorithm(solver).defaults["local_epochs"]
        return sum(int(r.get("k", 0)) * e * s for r, s in zip(results, sizes)) / n
    if solver == "gd":
        return float(max(int(r.get("k", 0)) for r in results))
    return None


def run_asip(cdata: ClusterData, task: Task, solver: str, budget: float, *, faults=(),
             live: LiveObjective | None = None, seed: int = 0, kind: str = "matrix",
             solver_params: dict | None = None) -> Run:
    """Fit ``solver`` for ``budget`` seconds and return its `Run` (trace on asip's objective)."""
    data = cdata.data
    X, y = cdata.asip_input()
    Est = AsipRegressor if task.regression else AsipClassifier
    est = Est(loss=task.loss, penalty=task.penalty, alpha=task.alpha_for(data.n), solver=solver,
              max_time=float(budget), n_partitions=cdata.n_partitions, faults=tuple(faults),
              random_state=seed, solver_params=solver_params)
    run = Run(data.name, task.key, solver, "asip", kind=kind, budget=float(budget),
              n_rows=data.n, n_partitions=cdata.n_partitions, faults=[repr(f) for f in faults])
    hook = live.from_snapshots if live is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # budget-ended ConvergenceWarnings are expected here
        with capture_stages(hook) as cap:
            t0 = time.perf_counter()
            est.fit(X, y)
            run.fit_seconds = time.perf_counter() - t0
    result = getattr(est, "stage_result_", None) or (cap.results[-1] if cap.results else None)
    if result is not None and solver not in ASYNC_DRIVER_SOLVERS:
        started = cap.run_started[-1] - t0 if cap.run_started else 0.0
        run.offset = started + result.timings.get("data", 0.0) + result.timings.get("launch", 0.0)
        run.timings = {k: float(v) for k, v in result.timings.items()}
        run.timings["before_stage"] = started
        run.timings["elapsed"] = float(result.elapsed)
        run.stats = dict(result.stats["total"])
        run.restarts = len(result.restarts)
        passes = data_passes(solver, result.results, _sizes(cdata))
        run.extra.update(stopped_by=result.stopped_by, steps=list(result.steps),
                         data_passes=passes)
        run.extra["restart_times"] = [float(r.time) for r in result.restarts]
    else:
        run.note = "clock starts at its driver loop (input checks excluded)"
    run.trace = [[run.offset + float(t), float(f)] for t, f in np.asarray(est.trace_)
                 if math.isfinite(f)]
    run.extra["n_iter"] = int(est.n_iter_)
    if live is not None and run.trace:
        live.report(run.trace[-1][1], True)
    return run


def _sizes(cdata: ClusterData) -> list[int]:
    n, p = cdata.data.n, cdata.n_partitions
    bounds = np.linspace(0, n, p + 1).astype(int)
    return [int(b - a) for a, b in zip(bounds[:-1], bounds[1:])]
