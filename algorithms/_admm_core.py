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

``rho`` defaults (`default_rho`) to a ``sqrt(mu L)``-type choice for l2 problems
(``mu = alpha``), and otherwise to ``curvature * mean ||[a_i, 1]||^2 / (N * 10)``:
a tenth of the average per-row curvature each ``f_i`` carries (about ``L / N``
each), a compromise between fast consensus (large ``rho``) and fast progress
on the objective (small ``rho``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from numba import njit

from . import _kernels as K
from ._base import LocalData, Problem

__all__ = ["AUTO_FLOOR", "AUTO_MAX_L", "LocalSolver", "RHO_RULES", "SCALED_LOG_LOSS", "default_rho", "local_solve", "new_local_solver", "setup", "z_update"]

logger = logging.getLogger(__name__)


class LocalSolver(NamedTuple):
    """Warm-start state of the SDCA local solver: per-row duals and ``x - v``."""

    dual: np.ndarray
    dvec: np.ndarray
    rng: np.ndarray


def setup(problem: Problem, data: LocalData, params: dict, name: str) -> tuple[float, LocalSolver]:
    """``rho`` (given, else `default_rho` by ``rho_rule``) and this operator's local solver,
    seeded per partition and incarnation; ``name``: the solver, for the error message."""
    rule = params["rho_rule"]
    if rule not in RHO_RULES:
        raise ValueError(f"unknown rho_rule {rule!r} for solver {name!r}; valid rules are "
                         f"{list(RHO_RULES)}")
    rho = params["rho"] if params["rho"] is not None else default_rho(problem, rule)
    if not 0.0 < params["relaxation"] < 2.0:
        raise ValueError(f"relaxation must be in (0, 2) for solver {name!r}, got "
                         f"{params['relaxation']!r}")
    seed = params["seed"]
    seed = (0 if seed is None else seed) * 1_000_003 + data.index * 7919 + data.incarnation
    return float(rho), new_local_solver(problem, data, seed)


def new_local_solver(problem: Problem, data: LocalData, seed: int | None) -> LocalSolver:
    return LocalSolver(np.zeros(data.n), np.zeros(problem.p), K.make_rng(seed))


def local_solve(solver: LocalSolver, problem: Problem, data: LocalData, v: np.ndarray,
                rho: float, epochs: int, c: float | None = None) -> np.ndarray:
    """``argmin_x c sum phi(a^T x + b) + (rho/2) ||x - v||^2`` by ``epochs`` SDCA passes.

    ``c`` defaults to ``1/n_total`` (the consensus split); row ``i``'s loss is weighted by
    ``data.sw[i]`` when there are weights. Returns a new ``x``;
    ``solver`` is updated in place so the next call starts where this one ended.
    """
    c = 1.0 / problem.n_total if c is None else c
    x = v + solver.dvec
    if data.sw is None:
        K.sdca_steps(data.X, data.y, problem.loss, problem.fit_intercept, int(epochs), solver.rng,
                     solver.dual, x, c / rho, data.sqn)
    else:  # row i's loss counts sw[i] times: its dual moves x by (c sw[i] / rho) dual_i x_i
        weighted_sdca_steps(data.X, data.y, data.sw, problem.loss, problem.fit_intercept,
                            int(epochs), solver.rng, solver.dual, x, c / rho, data.sqn)
    np.subtract(x, v, out=solver.dvec)
    return x


def z_update(problem: Problem, xbar: np.ndarray, ybar: np.ndarray, rho: float,
             n_blocks: int) -> np.ndarray:
    """``prox_{R/(N rho)}(xbar + ybar / rho)``: the consensus step (intercept unpenalized)."""
    return problem.prox(xbar + ybar / rho, 1.0 / (n_blocks * rho))


#: valid ``rho_rule`` values (`default_rho`)
RHO_RULES = ("auto", "legacy", "scaled", "sqrt")
#: ``rule="auto"`` on hinge-l2: the sqrt rule's rho, but at least the legacy one over this
AUTO_FLOOR = 8.0
#: ``rule="auto"`` on log_loss-l2: the sqrt rule while ``L = curvature mean ||[a_i, 1]||^2`` is
#: at most this, else (unscaled features) `SCALED_LOG_LOSS` times the legacy rule. a9a 3.7, ijcnn1 0.63, synthetic
#: 20k x 100 25; skin_nonskin (features 0-255) 1.5e4, where the data's own curvature, not
#: alpha, is what counts: "sqrt" reaches nothing there at alpha 1e-4 or 0.1. It only picks
#: where asip-admm starts since its leader adapts rho (`_asip_admm._balance`); starting at "sqrt"
#: there, adapted, costs 67 / 116 lock-step rounds to 1e-6 at alpha 0.1 / 1e-4 against 49 / 49
#: from this bound's "legacy" (2 partitions, round-robin, 2026-12-01), so it stays
AUTO_MAX_L = 1e3
#: ``rule="auto"`` and ``"scaled"`` on log_loss-l2 with ``L > AUTO_MAX_L``: the legacy rule's
#: rho times this. asip-admm (adapted) lock-step rounds to 1e-6 on skin_nonskin 20,000 rows,
#: the legacy rho -> this: 52 -> 16 (round-robin), 128 -> 31 (parallel, messages held back
#: 0-2 rounds; 4 partitions 137 -> 53), alpha 1/n 53 -> 16.
#: ``admm``'s lock-step rounds to 1e-6 on skin_nonskin (20,000 rows, 2 partitions, alpha 0.1
#: and 1/n alike, 2026-12-02) by multiple of the legacy rho: 0.1 76, 0.2 38, 0.3 25, 0.5 40,
#: 1 84, 3 none in 150; 0.3 is ``sqrt(mu L) / N`` with the Hessian's own extreme eigenvalues
#: at the optimum (44 and 5.6e3) in place of alpha and the bound L
SCALED_LOG_LOSS = 0.3


def default_rho(problem: Problem, rule: str = "legacy") -> float:
    """The default penalty parameter (see the module docstring); the same on every partition.

    ``rule="legacy"``: ``curvature * mean ||[a_i, 1]||^2 / (10 N)``, blind to ``alpha``.
    ``rule="sqrt"``: for l2, ``0.3 sqrt(mu L) / N`` with ``mu = alpha`` and
    ``L = curvature * mean ||[a_i, 1]||^2`` -- the geometric mean of the strong
    convexity and the smoothness, the choice that minimizes ADMM's linear rate
    on strongly convex quadratics (Ghadimi et al. 2015), split over the ``N``
    blocks (each ``f_i`` carries about ``L / N``, each block ``alpha / N``); the
    factor 0.3 is measured (asip-admm, 4 partitions, 1 s: a9a log_loss alpha
    1e-2 / 1e-4 and hinge 1e-3 reach 4e-4 / 4e-4 / 3e-4 against 4e-3 / 6e-2 /
    3e-2 with the legacy rule, and 10x better than with factor 1; synthetic
    problems reach 1e-6 or better either way). Without strong convexity (l1,
    or ``alpha = 0``) it falls back to the legacy rule.

    ``rule="scaled"`` (``admm``'s default): the sqrt rule while ``L <= AUTO_MAX_L`` (with
    ``curvature`` 1 for the hinge). Beyond, on unscaled features, the data term is strongly
    convex on its own and ``alpha`` says little (skin_nonskin's Hessian at the optimum has
    eigenvalues 44 to 5.6e3 against alpha 0.1): the auto rule (the hinge's floor, log_loss
    `SCALED_LOG_LOSS` times the legacy rule, squared error the legacy rule). ``admm``'s
    lock-step rounds to 1e-6 on skin_nonskin (2 partitions, round-robin, 2026-12-02), sqrt ->
    scaled: log_loss-l2 none in 400 -> 25 on 20,000 rows (84 at the legacy rho), hinge-l2
    none in 400 -> 25. On scaled features nothing changes: the auto rule's floor cost admm
    3 rounds on synthetic hinge-l2 (14 -> 17), and its legacy rule for squared error 8 -> 30
    (a9a) and 5 -> 46 (synthetic).

    ``rule="auto"`` (asip-admm's default): for the hinge with a strongly convex penalty
    ``max(sqrt rule, legacy rule / AUTO_FLOOR)``, else the legacy rule. The legacy rule's
    ``L`` is a stand-in for the hinge (no curvature: 1 a row); with alpha 0.1 it is 4-10x the
    sqrt rule's rho on a9a and synthetic data, where asip-admm's lock-step rounds to 1e-6
    (2 partitions) drop 95 -> 27 and 223 -> 27 (ijcnn1 14 -> 12, reuters 11 -> 11). Where
    ``L / mu`` is huge (skin_nonskin's unscaled features: 6e5) the sqrt rule alone is 260x
    below the legacy one and does not reach 1e-3 in 400 rounds; the floor (32x the sqrt rule
    there) reaches 1e-6 in 47 (legacy: 184). For log_loss with a strongly convex penalty the
    sqrt rule while ``L <= AUTO_MAX_L``, else `SCALED_LOG_LOSS` times the legacy rule: lock-step (4
    partitions, Jacobi, delays 0..2 rounds) rounds to 1e-6 at alpha 1e-4 sqrt / legacy: a9a
    112 / > 400, ijcnn1 32 / > 400, synthetic 20k 37 / 106, reuters 68 / > 200; at alpha 0.1
    a9a 10 / 16, synthetic 12 / 53 (2026-11-30, after the z step took the peers' news first;
    the earlier cluster failure of "sqrt", a9a alpha 1e-3 left at 0.46, no longer shows).
    skin_nonskin (L 1.5e4): sqrt does not reach 1e-3 in 300 rounds at alpha 1e-4 or 0.1,
    legacy 1e-6 in 129 (0.3x legacy: see `SCALED_LOG_LOSS`), hence the bound. Squared error keeps the legacy rule (mixed: a9a 74 / > 400,
    synthetic 88 / 63).
    """
    if rule not in RHO_RULES:
        raise ValueError(f"unknown rho rule {rule!r}; valid rules are {list(RHO_RULES)}")
    scaled = (problem.curvature or 1.0) * problem.row_scale <= AUTO_MAX_L  # L within the bound
    if rule == "scaled":
        return default_rho(problem, "sqrt" if problem.mu <= 0 or scaled else "auto")
    if rule == "auto":
        if problem.mu <= 0 or problem.loss not in (K.HINGE, K.LOGISTIC):
            return default_rho(problem, "legacy")
        if problem.loss == K.LOGISTIC:
            return (default_rho(problem, "sqrt") if scaled
                    else SCALED_LOG_LOSS * default_rho(problem, "legacy"))
        return max(default_rho(problem, "sqrt"), default_rho(problem, "legacy") / AUTO_FLOOR)
    curv = problem.curvature if problem.curvature is not None else 1.0
    if rule == "sqrt" and problem.mu > 0:
        return max(0.3 * float(np.sqrt(problem.mu * curv * problem.row_scale))
                   / problem.n_partitions, 1e-8)
    return max(curv * problem.row_scale / (10.0 * problem.n_partitions), 1e-8)


@njit(nogil=True, cache=True)
def weighted_sdca_steps(X, y, sw, loss, fit_intercept, n_epochs, rng, dual, x, c_over_rho, sqn):
    """`_kernels.sdca_steps` with row ``i``'s loss weighted by ``sw[i]``.

    The local problem is ``min_x c sum_i sw_i phi(a_i^T x + b) + (rho/2) ||x - v||^2``;
    ``x = v + (c/rho) sum_i sw_i dual_i [a_i, 1]``, so a row's scale is ``c sw_i / rho``
    (a zero weight leaves its dual and ``x`` alone).
    """
    p = x.shape[0]
    n = K.n_rows(X)
    order = np.arange(n)
    for _ in range(n_epochs):
        for k in range(n - 1, 0, -1):  # Fisher-Yates
            r = K._randint(rng, k + 1)
            tmp = order[k]
            order[k] = order[r]
            order[r] = tmp
        for k in range(n):
            i = order[k]
            ci = c_over_rho * sw[i]
            if ci == 0.0:
                continue
            m = K._margin(X, i, x, fit_intercept)
            a = dual[i]
            delta = K.dual_coordinate_step(loss, y[i], a, m, ci * sqn[i])
            if delta != 0.0:
                dual[i] = a + delta
                s = ci * delta
                K.row_axpy(X, i, s, x)
                if fit_intercept:
                    x[p - 1] += s
