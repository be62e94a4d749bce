"""scikit-learn on one core: the solvers a user would otherwise pick, on the very same objective.

Each candidate is set up to minimize asip's objective exactly (no intercept):

* ``LogisticRegression`` / ``LinearSVC``: ``C sum loss + R`` with ``C = 1/(n alpha)``
  (l2 as ``||w||^2/2``, l1 as ``||w||_1``, chosen by ``l1_ratio``);
* ``SGDClassifier``: ``(1/n) sum loss + alpha R`` -- asip's scaling as is
  (the only scikit-learn solver for hinge-l1: it has no good peer there);
* ``Lasso``: ``(1/(2n)) ||y - Xw||^2 + alpha ||w||_1`` as is.

scikit-learn has no callbacks, so a trace is a sequence of *independent* fits
with growing ``max_iter`` (1, 2, 3, 5, 8, ... x1.5), each timed from the call
with ``tol`` near zero so the cap binds, stopped when a fit takes longer than
the budget, has not improved for three fits, or converges before its cap. BLAS is limited to
one thread (``threadpoolctl``): a single-core peer.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from .data import BenchData, Task
from .records import Run

__all__ = ["CANDIDATES", "candidates_for", "run_sklearn"]

logger = logging.getLogger(__name__)

#: per (loss, penalty): candidates, best-known first
CANDIDATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("log_loss", "l2"): ("lbfgs", "newton-cholesky", "liblinear", "saga"),
    ("log_loss", "l1"): ("liblinear", "saga"),
    ("hinge", "l2"): ("LinearSVC", "SGDClassifier"),
    ("hinge", "l1"): ("SGDClassifier",),
    ("squared_error", "l1"): ("Lasso",),
}
NOTES = {
    ("hinge", "l1"): "no good single-core peer: SGDClassifier is the only scikit-learn solver "
                     "for this objective (LinearSVC's l1 needs the squared hinge)",
}


def candidates_for(task: Task, how_many: int | None = None) -> tuple[str, ...]:
    c = CANDIDATES.get((task.loss, task.penalty), ())
    return c if how_many is None else c[:how_many]


def _make(name: str, task: Task, n: int, max_iter: int):
    from sklearn.linear_model import Lasso, LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    alpha = task.alpha_for(n)
    C = 1.0 / (n * alpha)
    if name in ("lbfgs", "newton-cholesky", "liblinear", "saga"):
        return LogisticRegression(C=C, l1_ratio=1.0 if task.penalty == "l1" else 0.0,
                                  solver=name, fit_intercept=False, max_iter=max_iter, tol=1e-12,
                                  random_state=0)
    if name == "LinearSVC":
        return LinearSVC(loss="hinge", C=C, dual=True, fit_intercept=False, max_iter=max_iter,
                         tol=1e-12, random_state=0)
    if name == "SGDClassifier":
        return SGDClassifier(loss=task.loss, penalty=task.penalty, alpha=alpha,
                             fit_intercept=False, max_iter=max_iter, tol=None, random_state=0)
    if name == "Lasso":
        return Lasso(alpha=alpha, fit_intercept=False, max_iter=max_iter, tol=1e-14)
    raise ValueError(f"unknown scikit-learn candidate {name!r}")


def _iterations(limit: int = 1_000_000):
    m = 1
    while m <= limit:
        yield m
        m = max(m + 1, int(m * 1.5))


def run_sklearn(data: BenchData, task: Task, name: str, budget: float, f_star: float | None,
                live=None, kind: str = "matrix", stop_at: float = 1e-9) -> Run:
    """Trace candidate ``name`` by independent fits (see the module docstring)."""
    from threadpoolctl import threadpool_limits

    objective = task.objective(data.n)
    run = Run(data.name, task.key, f"sklearn:{name}", "sklearn", kind=kind, budget=float(budget),
              independent=True, f_star=f_star, n_rows=data.n, n_partitions=1,
              note=NOTES.get((task.loss, task.penalty), ""))
    y = data.y
    best, stale = np.inf, 0
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in _iterations():
            est = _make(name, task, data.n, m)
            t0 = time.perf_counter()
            est.fit(data.X, y)
            seconds = time.perf_counter() - t0
            coef = np.asarray(est.coef_, dtype=np.float64).ravel()
            f = float(objective.value(coef, data.X, y))
            run.trace.append([seconds, f])
            run.fit_seconds = seconds
            if live is not None:
                live.report(f, True)
            n_iter = int(np.max(getattr(est, "n_iter_", m)))
            stale = stale + 1 if f >= best else 0
            best = min(best, f)
            if (seconds > budget or n_iter < m or stale >= 3
                    or (f_star is not None and run.rel(f) <= stop_at)):
                break
    run.extra["max_iter_last"] = m
    return run
