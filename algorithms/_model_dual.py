"""A better dual point for `_prox_newton`'s certificate: the Newton model's own duals, and the best dual kept.

The free dual point of a primal iterate, ``a_i = -phi'(m_i)``, certifies an l1
problem only once the gradient is right to about ``tol * alpha`` (it must be
scaled into ``||X^T a / n||_inf <= alpha``). For the smoothed hinge near the
optimum that takes many Newton steps after the objective itself is there.
The quadratic model at ``w`` gives a better one: its minimizer ``d`` moves the
margins by ``q = X~ d``, and the model's optimality condition says the
*linearized* duals ``a - D q`` (``D_i = phi''(m_i)``) meet the l1 dual constraint
(exactly when the model is solved exactly and undamped). On the smoothed
hinge's band this linearization is the surrogate's own derivative at
``w + d``. Clipped into the loss's dual domain (``b = y a`` in [0, 1]; squared
loss: no limit) it is a feasible point whose value tracks the Newton iterates.

Every feasible dual value is a lower bound on ``P*`` whatever the model, so the
solver keeps the largest one seen (`best`): a later, worse dual point -- e.g.
after the hinge smoothing shrinks -- never widens the certified gap.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from ._certificate import GapParts, certificate_parts, gap_from_parts
from ._primal_cert import side_len

__all__ = ["best", "model_dual", "model_dual_fields", "model_dual_value"]

_PREFIX = "md_"  # message fields of the model's dual parts


def model_dual(loss: int, a: np.ndarray, D: np.ndarray, q: np.ndarray,
               y: np.ndarray) -> np.ndarray:
    """The linearized duals ``a - D q``, clipped into the loss's dual domain."""
    u = a - D * q
    if loss == K.SQUARED:
        return u
    return y * np.clip(y * u, 0.0, 1.0)


def model_dual_fields(X, y: np.ndarray, w: np.ndarray, loss: int, fit_intercept: bool,
                      dual: np.ndarray) -> dict:
    """A partition's `GapParts` of ``dual`` as message fields (``md_*``)."""
    parts = certificate_parts(X, y, w, loss, fit_intercept, dual=dual)
    out = {f"{_PREFIX}n": parts.n, f"{_PREFIX}conj": parts.conj_sum, f"{_PREFIX}g": parts.g}
    if parts.side is not None:
        out[f"{_PREFIX}side"], out[f"{_PREFIX}side_g"] = parts.side, parts.side_g
    return out


def model_dual_value(contributions: list, w: np.ndarray, alpha: float, penalty: int,
                     balance: str | None) -> float:
    """The dual value ``D(a)`` of the summed ``md_*`` parts (``-inf`` when any is missing)."""
    if any(f"{_PREFIX}conj" not in c for c in contributions):
        return -np.inf
    parts = [GapParts(int(c[f"{_PREFIX}n"]), 0.0, float(c[f"{_PREFIX}conj"]),
                      np.asarray(c[f"{_PREFIX}g"]),
                      None if balance is None else np.asarray(c[f"{_PREFIX}side"]),
                      None if balance is None else np.asarray(c[f"{_PREFIX}side_g"]),
                      balance)
             for c in contributions]
    _, dual, _ = gap_from_parts(parts, w, alpha, penalty)
    return float(dual) if np.isfinite(dual) else -np.inf


def best(current: float, *candidates: float) -> float:
    """The largest finite dual value (each is a lower bound on ``P*``)."""
    vals = [float(v) for v in (current, *candidates) if v is not None and np.isfinite(v)]
    return max(vals) if vals else -np.inf


def schema_fields(problem) -> dict:
    """The ``md_*`` message fields and their types (for a solver's `schema`)."""
    d = problem.n_features
    return {f"{_PREFIX}n": int, f"{_PREFIX}conj": float, f"{_PREFIX}g": ("float64", (d,)),
            f"{_PREFIX}side": ("float64", (side_len(problem),)),
            f"{_PREFIX}side_g": ("float64", (d,))}
