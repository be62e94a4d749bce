"""The fit loop: find the client, run the solver's stage (or driver loop), say why it stopped.

One job: given prepared partitions and a `Problem`, run the solver and hand
back a `FitOutcome` -- the combined model, the snapshots it came from, the
(time, model) points of the trace, the iteration count, the certified gap
where the solver has one, and why it stopped. Warm starts, the ``callback``,
the progress display and interrupts live here; the estimator only turns the
outcome into fitted attributes.

A fit cut short -- Ctrl-C, an exception raised in ``callback``, a stage that
fails -- stops every operator and leaves the cluster clean (the stage does
that); the outcome then holds the model so far and the exception, which the
estimator re-raises after keeping the model.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, NamedTuple

import numpy as np

from asip._data import partitions_of
from asip._exceptions import StopStage

from ._base import Problem, Start
from ._model import (combine_tasks, combined_over_time, gap_of, latest_snapshots, model_of,
                     n_iter_of, split_tasks)
from ._solvers import ASYNC_DRIVER_SOLVERS, get_algorithm

__all__ = ["FitClock", "FitOutcome", "driver_blocks", "final_objective", "get_client",
           "preload_workers", "run_driver", "run_stage"]

logger = logging.getLogger(__name__)

_embedded_clients: dict = {}  # processes (bool) -> the embedded client of that kind


def get_client(process_faults: bool = False):
    """The default distributed client, else an embedded asip cluster (made once, then reused):
    threads of this process (``asip.driver.embedded-workers: threads``, the default:
    in-memory input stays in place, no copy is scattered), or worker processes. A fit that
    injects process faults (``process_faults``: `KillWorker`, `HangWorker`) gets worker
    processes whatever the setting: the signal must hit a worker, not the driver. It
    has no Bokeh dashboard unless ``asip.driver.embedded-dashboard`` is true."""
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        pass
    processes = process_faults or embedded_processes()
    client = _embedded_clients.get(processes)
    if client is None or client.status != "running":
        import asip
        from asip._config import flag

        dashboard = flag("driver.embedded-dashboard")
        logger.info("no dask client found: starting an embedded cluster with "
                    "asip.connect(processes=%s, dashboard=%s)", processes, dashboard)
        client = _embedded_clients[processes] = asip.connect(processes=processes,
                                                             dashboard=dashboard)
    return client


def embedded_processes() -> bool:
    """Whether the embedded cluster's workers are processes (``asip.driver.embedded-workers``)."""
    import dask

    kind = str(dask.config.get("asip.driver.embedded-workers")).strip().lower()
    if kind not in ("processes", "threads"):
        raise ValueError("asip.driver.embedded-workers must be 'processes' or 'threads', "
                         f"got {kind!r}")
    return kind == "processes"


#: what an operator's unpickling imports on a worker (the whole of asip.algorithms:
#: scikit-learn, numba, scipy): ~0.5 s of a first fit's launch on a fresh cluster
WORKER_MODULES = ("asip.algorithms._operator",)


def preload_workers(client, modules=WORKER_MODULES) -> None:
    """Start importing ``modules`` on every worker, in the background, and return at once.

    A fit's first stage on fresh workers spent ~0.5 s of its launch importing what the
    operator needs, while the workers sat idle during the driver's input checks: started
    at the top of ``fit``, the imports overlap them. Runs on each worker's event loop, as a
    background task the driver does not wait for: an import in a thread of its own raced the
    loop's own import of asip's worker plugin (circular imports in two threads hand one of
    them a half-initialized module). A worker that fails to import says so when the operator
    starts there, as before. Sent from the client's loop without waiting for the reply (the
    round trip cost the fit's driver a thread hop and a wait); nothing is left on the cluster.
    """
    names = tuple(modules)
    if getattr(client, "asynchronous", False):  # run() would hand back a coroutine
        return

    async def _preload() -> None:  # nested: pickled by value, so loading it imports nothing
        import importlib

        for name in names:
            try:
                importlib.import_module(name)  # on the loop: no other import runs meanwhile
            except Exception:  # the operator's own import reports it, in context
                return

    async def _send() -> None:  # on the client's loop: nobody waits for it
        try:  # (run() hands back its coroutine there: the client's `asynchronous` is true)
            await client.run(_preload, wait=False)
        except Exception as exc:  # an optimisation only: never fail a fit over it
            logger.debug("could not preload the workers' modules: %r", exc)

    try:
        client.loop.add_callback(_send)
    except Exception as exc:  # a closed client: the fit says so itself
        logger.debug("could not preload the workers' modules: %r", exc)


class FitClock:
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


class FitOutcome(NamedTuple):
    """What one run of a solver produced (complete, or cut short by ``error``)."""

    w: np.ndarray  # the combined model: (p,) or (n_tasks, p)
    snapshots: tuple | None  # per partition: its final snapshot (warm starts), or None
    points: list  # (seconds, model) for trace_, the final model last
    n_iter: int
    stopped_by: str
    restarts: list
    stage_result: Any  # asip.StageResult, partial if interrupted; None on the driver path
    gap: float | None  # certified duality gap from the snapshots that carry one
    error: BaseException | None = None  # why the fit was cut short (re-raised by the caller)
    objectives: tuple | None = None  # per point: its objective where a snapshot knows it, or None


def final_objective(out: FitOutcome, n_tasks: int) -> float | None:
    """The objective at the outcome's model when the solver already knows it exactly (a
    snapshot of that very model with ``objective_w``: lbfgs at its certified point), else
    None. Evaluating it costs the fit's trace a pass over all of the data (0.15 s at 1M
    rows x 30 nonzeros)."""
    if n_tasks != 1 or out.error is not None or not out.snapshots:
        return None
    for snap in out.snapshots:
        if (snap and "objective_w" in snap and np.isfinite(snap["objective_w"])
                and np.array_equal(np.asarray(snap["w"]), out.w)):
            return float(snap["objective_w"])
    return None


def stop_reason(stopped_by: str, algo, n_iter: int, max_iter: int | None) -> str:
    """The stage's reason, named for users: an operator's STOP is "tol" or "max_iter"."""
    if stopped_by.startswith("STOP from") and algo is not None and algo.uses_tol:
        return "max_iter" if max_iter is not None and n_iter >= max_iter else "tol"
    return stopped_by


def run_stage(est, solver: str, prep, problem: Problem, params: dict, n_tasks: int,
              client, progress=None) -> FitOutcome:
    """Run ``solver`` as an asip stage of `SolverOperator` on the prepared partitions."""
    import asip

    from ._operator import SolverOperator

    algo = get_algorithm(solver)
    start = warm_start_from(est, algo, problem, n_tasks) if est.warm_start else None
    seen: list = []  # every report, for the model so far if the stage is cut short
    models = True if (est.callback is not None or est.checkpoint is not None) else None
    operator = SolverOperator(solver, problem, params, start=start, n_tasks=n_tasks,
                              report_models=models)
    stage = asip.Stage(operator, prep.data, client=client, max_time=float(est.max_time),
                       faults=est.faults,
                       on_trace=_trace_hook(est, algo, problem, n_tasks, seen, progress),
                       checkpoint=est.checkpoint, checkpoint_every=float(est.checkpoint_every))
    try:
        res = stage.run()
    except BaseException as exc:
        # The stage has stopped every operator and cleaned up; keep the model so far.
        # (The stage keeps its partial result once its gang started; else the reports.)
        partial = stage.result
        trace = partial.trace if partial else seen
        snapshots = latest_snapshots(problem, trace)
        for i, r in enumerate(partial.results if partial else ()):
            if r:
                snapshots[i] = r
        if not any(snapshots):
            raise  # the stage never got going: nothing to keep
        stopped_by = partial.stopped_by if partial else f"error: {type(exc).__name__}"
        try:
            out = _outcome(algo, problem, n_tasks, snapshots, trace, None, stopped_by,
                           list(partial.restarts) if partial else [], partial,
                           est.max_iter)
        except Exception:  # never hide why the fit ended behind a second error
            logger.exception("%s: could not keep the model of the interrupted fit",
                             type(est).__name__)
            raise exc
        return out._replace(error=exc)
    results = list(res.results)
    missing = getattr(res, "missing", None)
    if missing:  # nothing lost silently: say which partitions are not in the model
        warnings.warn(f"{type(est).__name__}.fit: no result from partitions {missing} (their "
                      "last reports that carry a model stand in where there are any)",
                      UserWarning, stacklevel=3)
        latest = latest_snapshots(problem, res.trace)
        results = [r if r is not None else latest[i] for i, r in enumerate(results)]
    return _outcome(algo, problem, n_tasks, results, res.trace, float(res.elapsed),
                    res.stopped_by, list(res.restarts), res, est.max_iter)


def _outcome(algo, problem, n_tasks, snapshots, trace, elapsed, stopped_by, restarts,
             stage_result, max_iter) -> FitOutcome:
    w = combine_tasks(algo, problem, snapshots, n_tasks)
    known: list = []
    points = combined_over_time(algo, problem, trace, n_tasks, objectives=known)
    if elapsed is None:  # cut short: the stage's clock stopped at the last report
        elapsed = max((float(e.time) for e in trace), default=0.0)
    # the final model closes the trace (reports sent just before a STOP can be lost); never
    # before the last report: the reports' stage times come from the workers' clocks, which
    # can run a few ms ahead of the driver's ``elapsed`` (seen: 1.0025 s, then 0.9999 s)
    points.append((max([float(elapsed)] + [float(t) for t, _ in points]), w))
    known.append(None)  # the final model's: `final_objective`, when its snapshot knows it
    n_iter = n_iter_of(snapshots)
    return FitOutcome(w, tuple(snapshots), points, n_iter,
                      stop_reason(stopped_by, algo, n_iter, max_iter), restarts, stage_result,
                      gap_of(snapshots), objectives=tuple(known))


def _trace_hook(est, algo, problem: Problem, n_tasks: int, seen: list, progress):
    """The stage's ``on_trace``: keep every report, show progress, call ``callback``."""
    latest: list = [None] * problem.n_partitions
    clock = [0.0]  # the newest report time: reports of different operators interleave
    callback = est.callback

    def on_trace(entries) -> None:
        seen.extend(entries)
        if progress is not None:
            progress.update(entries)
        if callback is None:
            return
        for e in entries:
            if e.metrics and 0 <= e.partition < problem.n_partitions:
                latest[e.partition] = e.metrics
            clock[0] = max(clock[0], float(e.time))
        w = combine_tasks(algo, problem, latest, n_tasks)
        if callback(clock[0], w):
            raise StopStage("callback")  # a normal stop: the operators' results come back

    return on_trace


def warm_start_from(est, algo, problem: Problem, n_tasks: int):
    """The checkpoint file if there is one, else the previous fit, else None (a cold start).

    One `Start` for one task, a tuple of them (one per class) for several."""
    if est.checkpoint is not None and os.path.exists(est.checkpoint):
        import asip

        saved = asip.load_checkpoint(est.checkpoint).latest
        source = f"checkpoint {os.fspath(est.checkpoint)!r}"
        snapshots = ([saved.get(i) for i in range(problem.n_partitions)]
                     if set(saved) <= set(range(problem.n_partitions)) else None)
        w = model_of(algo, problem, list(saved.values()), n_tasks)
    elif getattr(est, "_warm", None) is not None:
        source = "the previous fit"
        snapshots, w = est._warm.snapshots, est._warm.w
        if snapshots is not None and len(snapshots) != problem.n_partitions:
            snapshots = None
    else:
        return None
    shape = (problem.p,) if n_tasks == 1 else (n_tasks, problem.p)
    if w is None or w.shape != shape or not np.all(np.isfinite(w)):
        size = "no model" if w is None else f"a model of shape {w.shape}"
        raise ValueError(f"cannot warm-start from {source}: it holds {size}, but this fit "
                         f"needs {problem.p} finite values ({problem.n_features} features"
                         f"{' + intercept' if problem.fit_intercept else ''})"
                         f"{'' if n_tasks == 1 else f' for each of {n_tasks} classes'}")
    if n_tasks == 1:
        return Start(w, None if snapshots is None else tuple(snapshots))
    per_task = (None if snapshots is None
                else [split_tasks(s, n_tasks) for s in snapshots])
    return tuple(Start(w[t], None if per_task is None else tuple(s[t] for s in per_task))
                 for t in range(n_tasks))


def driver_blocks(data: list, client) -> list:
    """The futures of a driver-side solver's blocks: in-memory ones placed as a stage places
    its partitions (straight to the workers, one a worker slot, aligned on arrival so BLAS
    takes them: `asip._data`), delayed ones computed on the workers."""
    if isinstance(data[0], tuple):
        return [fs[0] for fs in partitions_of(data, client).futures]
    return client.compute(data)


def run_driver(est, solver: str, prep, problem: Problem, params: dict, client) -> FitOutcome:
    """Run a driver-side solver (``admm-async*``: distributed's ``as_completed`` loop)."""
    from ._admm_async import run_admm_async

    data = prep.data
    if isinstance(data, tuple):  # dask arrays: one delayed (X_block, y_block) per chunk
        import dask

        Xd = data[0].to_delayed().ravel()
        yd = data[1].to_delayed().ravel()
        data = [dask.delayed(tuple)([xb, yb]) for xb, yb in zip(Xd, yd)]
    parts = driver_blocks(data, client)
    try:
        res = run_admm_async(client, parts, problem, params, float(est.max_time),
                             batched=solver == "admm-async-batched")
    finally:
        for f in parts:
            f.release()
    points = list(res.trace)
    return FitOutcome(np.asarray(res.w, dtype=np.float64), None, points, int(res.n_iter),
                      res.stopped_by, [], None, None)


def is_driver_solver(solver: str) -> bool:
    return solver in ASYNC_DRIVER_SOLVERS
