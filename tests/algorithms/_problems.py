"""The problems the algorithm tests share: data, objective, and its certified optimum.

Real data comes from the shared LIBSVM sets (a9a subsample, abalone) and is
skipped with the reason when the files are missing; synthetic data needs
nothing.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from asip.algorithms import (DataUnavailable, Objective, get_loss, get_penalty, load_libsvm,
                             make_logistic, make_regression, reference_optimum,
                             relative_suboptimality)

#: task name -> (loss, penalty, alpha)
TASKS = {
    "log_loss-l2": ("log_loss", "l2", 1e-2),
    "log_loss-l1": ("log_loss", "l1", 1e-3),
    "hinge-l2": ("hinge", "l2", 1e-2),
    "squared-l2": ("squared_error", "l2", 1e-2),
    "squared-l1": ("squared_error", "l1", 1e-2),
}


@functools.lru_cache(maxsize=None)
def dataset(kind: str, task: str):
    """``kind`` "real" (a9a subsample / abalone) or "synthetic"; skips if real data is missing."""
    regression = TASKS[task][0] == "squared_error"
    if kind == "synthetic":
        return make_regression(4000, 50) if regression else make_logistic(4000, 50)
    try:
        return load_libsvm("abalone") if regression else load_libsvm("a9a", n_samples=4000)
    except DataUnavailable as exc:
        pytest.skip(f"shared LIBSVM data not available: {exc}")


def objective(task: str, fit_intercept: bool = False) -> Objective:
    loss, pen, alpha = TASKS[task]
    return Objective(get_loss(loss), get_penalty(pen, alpha), fit_intercept)


@functools.lru_cache(maxsize=None)
def reference(kind: str, task: str, fit_intercept: bool = False):
    ds = dataset(kind, task)
    return reference_optimum(objective(task, fit_intercept), ds.X, ds.y)


def rel_subopt(kind: str, task: str, w, fit_intercept: bool = False) -> float:
    ds = dataset(kind, task)
    f = objective(task, fit_intercept).value(np.asarray(w, dtype=np.float64).ravel(), ds.X, ds.y)
    return float(relative_suboptimality(f, reference(kind, task, fit_intercept).f_star))
