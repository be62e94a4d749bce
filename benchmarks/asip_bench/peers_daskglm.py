"""dask-glm on the same cluster and the same persisted data, on the same objective.

dask-glm minimizes *sums*: ``sum loss_i + lamduh R(w)`` with its logistic loss
on labels in {0, 1} and its Normal family's ``sum (y - Xw)^2`` (no 1/2), so
``lamduh = n alpha`` (logistic) or ``2 n alpha`` (least squares) gives asip's
problem scaled by a constant -- the same minimizer, and every iterate is scored
with asip's objective. ``normalize=False``: dask-glm otherwise standardizes
the columns and so penalizes different coefficients. It has no hinge loss;
its ``lbfgs`` raises on l1 ("l1 norm is not differentiable at 0");
``gradient_descent`` takes no regularizer at all (it minimizes the
unregularized loss -- shown, scored on the regularized objective).

dask-glm returns only the final vector, so iterates are recorded as it runs:
``lbfgs`` through scipy's ``callback`` (dask-glm's module-level
``fmin_l_bfgs_b`` is wrapped), ``admm`` and ``proximal_grad`` through a
`Regularizer` whose prox records its output (dask-glm passes instances
through), ``gradient_descent`` through its line search's entry point. The
recorder also ends the solve at the budget. ``proximal_grad`` records every
line-search candidate, so its trace keeps the best value so far (a reading
that can only favour it). Tolerances are tightened so a solver uses its
budget rather than stopping early at its defaults' accuracy.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings

import numpy as np

from .data import ClusterData, Task
from .records import Run

__all__ = ["SOLVERS", "run_dask_glm", "unsupported"]

logger = logging.getLogger(__name__)

SOLVERS = ("admm", "lbfgs", "gradient_descent", "proximal_grad")
_MAX_POINTS = 200  # iterates scored per run (evenly spread, the last one kept)


class _BudgetReached(Exception):
    pass


def unsupported(solver: str, task: Task) -> str | None:
    """Why dask-glm cannot run ``solver`` on ``task`` (None when it can)."""
    if task.loss == "hinge":
        return "dask-glm has no hinge loss"
    if solver == "lbfgs" and task.penalty == "l1":
        return "dask-glm's lbfgs cannot start on l1 ('l1 norm is not differentiable at 0')"
    return None


class _Recorder:
    def __init__(self, budget: float, live):
        self.t0 = time.perf_counter()
        self.budget = budget
        self.live = live
        self.points: list = []
        self._shown = 0.0

    def __call__(self, beta) -> None:
        now = time.perf_counter() - self.t0
        self.points.append((now, beta))
        if self.live is not None and isinstance(beta, np.ndarray) and now - self._shown > 0.5:
            self._shown = now
            self.live(beta)
        if now >= self.budget:
            raise _BudgetReached


def _recording_regularizer(name: str, record):
    from dask_glm.regularizers import L1, L2

    base = {"l1": L1, "l2": L2}[name]

    class Recording(base):  # type: ignore[misc, valid-type]
        def proximal_operator(self, beta, t):
            out = super().proximal_operator(beta, t)
            record(out)
            return out

    return Recording()


@contextlib.contextmanager
def _patched(solver: str, record):
    import dask_glm.algorithms as A

    if solver == "lbfgs":
        original = A.fmin_l_bfgs_b

        def wrapped(*args, **kwargs):
            kwargs["callback"] = lambda xk: record(np.array(xk))
            return original(*args, **kwargs)

        A.fmin_l_bfgs_b = wrapped
        try:
            yield
        finally:
            A.fmin_l_bfgs_b = original
    elif solver == "gradient_descent":
        original = A.compute_stepsize_dask

        def wrapped(beta, *args, **kwargs):
            record(np.array(beta))
            return original(beta, *args, **kwargs)

        A.compute_stepsize_dask = wrapped
        try:
            yield
        finally:
            A.compute_stepsize_dask = original
    else:
        yield


HANG_GRACE = 60.0  # seconds past the budget before a dask-glm run counts as hung


def _call_with_watchdog(fn, timeout: float) -> dict:
    """``{"value": ...}``, ``{"error": exc}``, or ``{"hung": True}`` if ``fn`` has not
    returned after ``timeout`` s (it runs on a daemon thread, left to finish or die)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller, re-raised there
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="dask-glm-run", daemon=True)
    thread.start()
    thread.join(timeout)
    return {"hung": True} if thread.is_alive() else outcome


def run_dask_glm(cdata: ClusterData, task: Task, solver: str, budget: float,
                 f_star: float | None, live=None, kind: str = "matrix") -> Run:
    """Run dask-glm's ``solver`` for at most ``budget`` s; iterates scored by asip's objective."""
    data = cdata.data
    run = Run(data.name, task.key, f"dask-glm:{solver}", "dask-glm", kind=kind,
              budget=float(budget), f_star=f_star, n_rows=data.n,
              n_partitions=cdata.n_partitions)
    try:
        import dask_glm.algorithms as A
    except ImportError:
        A = None
    reason = ("dask-glm is not installed (pip install 'asip[bench]')" if A is None
              else unsupported(solver, task))
    if reason is None:
        pair = cdata.dask_glm_input(task)
        reason = None if pair is not None else cdata.dask_glm_note
    if reason:
        run.status, run.note = "skipped", reason
        return run
    from dask_glm.families import Logistic, Normal

    X, y = pair
    alpha = task.alpha_for(data.n)
    logistic = task.loss == "log_loss"
    lam = data.n * alpha if logistic else 2.0 * data.n * alpha
    rec = _Recorder(budget, live)
    kwargs = {"family": Logistic if logistic else Normal, "normalize": False}
    if solver == "admm":
        kwargs.update(regularizer=_recording_regularizer(task.penalty, rec), lamduh=lam,
                      max_iter=1_000_000, abstol=1e-14, reltol=1e-14)
    elif solver == "proximal_grad":
        kwargs.update(regularizer=_recording_regularizer(task.penalty, rec), lamduh=lam,
                      max_iter=1_000_000, tol=1e-16)
    elif solver == "lbfgs":
        kwargs.update(regularizer=task.penalty, lamduh=lam, max_iter=1_000_000, tol=1e-14)
    else:
        kwargs.update(max_iter=1_000_000, tol=1e-16)
        run.note = "dask-glm's gradient_descent takes no regularizer: unregularized loss"
    stopped = "converged"
    with _patched(solver, rec), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dask-glm's deprecated dask/scipy options
        outcome = _call_with_watchdog(lambda: getattr(A, solver)(X, y, **kwargs),
                                      budget + HANG_GRACE)
    if "hung" in outcome:
        # one dask compute that never returned must not stall the whole benchmark: keep
        # what was recorded, say so, and go on (the thread ends when the cluster closes)
        run.status, stopped = "hung", "hung"
        run.note = (f"dask-glm's {solver} did not return {budget + HANG_GRACE:g} s after it "
                    "started (a dask compute never finished); its iterates so far are kept")
    elif isinstance(outcome.get("error"), _BudgetReached):
        stopped = "budget"
    elif "error" in outcome:
        raise outcome["error"]
    else:
        rec.points.append((time.perf_counter() - rec.t0, np.asarray(outcome["value"])))
    run.fit_seconds = time.perf_counter() - rec.t0
    run.extra["stopped_by"] = stopped
    run.extra["iterates"] = len(rec.points)
    run.extra["lamduh"] = lam
    run.trace = _score(rec.points, task, data)
    if solver == "proximal_grad":  # candidates of a line search: keep the best so far
        best = np.inf
        for p in run.trace:
            best = min(best, p[1])
            p[1] = best
    return run


def _score(points: list, task: Task, data) -> list:
    """``[[t, f(beta)], ...]`` with one pass over the data (lazy betas computed together)."""
    if not points:
        return []
    import dask

    if len(points) > _MAX_POINTS:
        keep = np.unique(np.linspace(0, len(points) - 1, _MAX_POINTS).astype(int))
        points = [points[i] for i in keep]

    betas = dask.compute(*[b for _, b in points])
    W = np.column_stack([np.asarray(b, dtype=np.float64).ravel() for b in betas])
    values = task.objective(data.n).values(W, data.X, data.y)
    return [[float(t), float(f)] for (t, _), f in zip(points, values) if np.isfinite(f)]
