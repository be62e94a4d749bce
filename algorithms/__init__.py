"""asip.algorithms: asynchronous (and baseline) solvers for linear models on the asip runtime.

The estimators are the front door; the rest is the math they are built from:

* `AsipClassifier`, `AsipRegressor` -- scikit-learn estimators (`_estimators`:
  parameters and predictions; `_inputs`: user data into partitions; `_fitting`:
  the stage and why it stopped; `_model`: the model and ``trace_``; `_auto`:
  ``solver="auto"``; `_progress`: ``verbose=1``);
* `SOLVERS` -- the names ``solver=`` accepts; each runtime solver is an
  `Algorithm` of pure ``init``/``local_step``/``combine`` functions in its own
  module, run by the generic `SolverOperator` (`_operator`);
* `Objective`, `get_loss`, `get_penalty`, `relative_suboptimality` -- the one
  objective every solver minimizes (`_objectives`);
* `reference_optimum` -- the certified scipy/scikit-learn optimum (`_reference`);
* `load_libsvm`, `make_regression`, `make_logistic`, `make_sparse_logistic` -- datasets
  (`_datasets`).
"""

from __future__ import annotations

from ._base import Algorithm, Problem, Start, StepOutput
from ._datasets import (DataUnavailable, data_dir, load_libsvm, make_logistic, make_regression,
                        make_sparse_logistic)
from ._objectives import Objective, get_loss, get_penalty, relative_suboptimality
from ._operator import SolverOperator
from ._solvers import SOLVERS, get_algorithm
from ._numba_warmup import start as _start_numba_warmup

_start_numba_warmup()  # numba's set-up in the background (see `_numba_warmup`)

# Imported on first use: workers unpickle `SolverOperator` (and import this package)
# without paying for scikit-learn and scipy.optimize, which only the driver needs.
_LAZY = {"AsipClassifier": "._estimators", "AsipRegressor": "._estimators",
         "Reference": "._reference", "reference_optimum": "._reference"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "SOLVERS",
    "Algorithm",
    "AsipClassifier",
    "AsipRegressor",
    "DataUnavailable",
    "Objective",
    "Problem",
    "Reference",
    "SolverOperator",
    "Start",
    "StepOutput",
    "data_dir",
    "get_algorithm",
    "get_loss",
    "get_penalty",
    "load_libsvm",
    "make_logistic",
    "make_sparse_logistic",
    "make_regression",
    "reference_optimum",
    "relative_suboptimality",
]
