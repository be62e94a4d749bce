"""asip.algorithms: asynchronous (and baseline) solvers for linear models on the asip runtime.

The estimators are the front door; the rest is the math they are built from:

* `AsipClassifier`, `AsipRegressor` -- scikit-learn estimators (`_estimators`);
* `SOLVERS` -- the names ``solver=`` accepts; each runtime solver is an
  `Algorithm` of pure ``init``/``local_step``/``combine`` functions in its own
  module, run by the generic `SolverOperator` (`_operator`);
* `Objective`, `get_loss`, `get_penalty`, `relative_suboptimality` -- the one
  objective every solver minimizes (`_objectives`);
* `reference_optimum` -- the certified scipy/scikit-learn optimum (`_reference`);
* `load_libsvm`, `make_regression`, `make_logistic` -- datasets (`_datasets`).
"""

from __future__ import annotations

from ._base import Algorithm, Problem, Start, StepOutput
from ._datasets import DataUnavailable, data_dir, load_libsvm, make_logistic, make_regression
from ._estimators import AsipClassifier, AsipRegressor
from ._objectives import Objective, get_loss, get_penalty, relative_suboptimality
from ._operator import SolverOperator
from ._reference import Reference, reference_optimum
from ._solvers import SOLVERS, get_algorithm

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
    "make_regression",
    "reference_optimum",
    "relative_suboptimality",
]
