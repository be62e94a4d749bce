"""Consensus ADMM building blocks shared by ``admm``, ``asip-admm``, ``averaging`` and ``admm-async``.

Consensus form: ``min sum_i f_i(x_i) + R(z)`` subject to ``x_i = z``, with
``f_i(x) = (1/n) sum_{rows of i} phi(a^T x + b)`` (so the ``f_i`` add up to the
data term of the global objective) and unscaled duals ``y_i``. One round::

    x_i <- argmin f_i(x) + y_i^T (x - z) + (rho/2) ||x - z||^2      (local, inexact)
    z   <- prox_{R / (N rho)}( mean_i (x_i + y_i / rho) )            (closed form)
    y_i <- y_i + rho (x_i - z)

The ``z`` step is a shrink by ``N rho / (alpha + N rho)`` for l2 and a *correct*
soft threshold at ``alpha / (N rho)`` for l1 (entries inside the threshold
become exactly zero); the intercept is averaged, never penalized.

The local step is solved by stochastic dual coordinate ascent (`_kernels.sdca_steps`),
warm-started from the previous round's dual variables: the local problem is
``rho``-strongly convex for every loss, hinge included, and SDCA's per-row
dual steps are exact (closed form for hinge and squared loss), so a few
epochs per round suffice and nothing needs a step size.

``rho`` defaults to ``curvature * mean ||[a_i, 1]||^2 / (N * 10)``: a tenth of the
average per-row curvature each ``f_i`` carries (about ``L / N`` each), a
compromise between fast consensus (large ``rho``) and fast progress on the
objective (small ``rho``) that works across the losses in the test table.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._base import LocalData, Problem

__all__ = ["LocalSolver", "default_rho", "local_solve", "new_local_solver", "z_update"]

logger = logging.getLogger(__name__)


class LocalSolver(NamedTuple):
    """Warm-start state of the SDCA local solver: per-row duals and ``x - v``."""

    dual: np.ndarray
    dvec: np.ndarray
    rng: np.ndarray


def new_local_solver(problem: Problem, data: LocalData, seed: int | None) -> LocalSolver:
    return LocalSolver(np.zeros(data.n), np.zeros(problem.p), K.make_rng(seed))


def local_solve(solver: LocalSolver, problem: Problem, data: LocalData, v: np.ndarray,
                rho: float, epochs: int, c: float | None = None) -> np.ndarray:
    """``argmin_x c sum phi(a^T x + b) + (rho/2) ||x - v||^2`` by ``epochs`` SDCA passes.

    ``c`` defaults to ``1/n_total`` (the consensus split). Returns a new ``x``;
    ``solver`` is updated in place so the next call starts where this one ended.
    """
    c = 1.0 / problem.n_total if c is None else c
    x = v + solver.dvec
    K.sdca_steps(data.X, data.y, problem.loss, problem.fit_intercept, int(epochs), solver.rng,
                 solver.dual, x, c / rho, data.sqn)
    np.subtract(x, v, out=solver.dvec)
    return x


def z_update(problem: Problem, xbar: np.ndarray, ybar: np.ndarray, rho: float,
             n_blocks: int) -> np.ndarray:
    """``prox_{R/(N rho)}(xbar + ybar / rho)``: the consensus step (intercept unpenalized)."""
    return problem.prox(xbar + ybar / rho, 1.0 / (n_blocks * rho))


def default_rho(problem: Problem) -> float:
    """The default penalty parameter (see the module docstring); the same on every partition."""
    curv = problem.curvature if problem.curvature is not None else 1.0
    return max(curv * problem.row_scale / (10.0 * problem.n_partitions), 1e-8)
