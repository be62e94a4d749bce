"""Duality-gap certificates assembled from per-partition parts (no barrier needed).

For ``P(w) = (1/n) sum_i phi_i(x_i^T w) + (alpha/2) ||w||^2`` and duals ``a`` (one per row)
the Fenchel dual is::

    D(a) = -(1/n) sum_i phi_i*(-a_i) - (alpha/2) ||g / (alpha n)||^2,    g = sum_i a_i x_i

and ``D(a) <= P* <= P(w)`` for *any* model ``w`` and any feasible ``a``, so
``P(w) - D(a)`` bounds ``P(w) - P*`` even when ``w`` and ``a`` come from different
moments of an asynchronous run. Both sides are sums over rows: each partition
computes its `GapParts` (its loss sum at one common model, its conjugate sum and
its ``g_k``), only those travel, and `gap_from_parts` adds them up.

With ``fit_intercept`` the intercept is a constant feature here, *penalized like
the others* (``x_i = [a_i, 1]``, as liblinear does): the certificate is for that
problem. With l1, ``a`` is scaled into the dual's constraint set
``||g / n||_inf <= alpha`` (the conjugate sum scaled by the same factor bounds the
scaled one: ``phi*`` is convex with ``phi*(0) = 0``).

`dual_point` gives a primal method a dual point for free (``a_i = -phi'(x_i^T w)``,
feasible by construction), so gd or ADMM can certify with one data pass.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._sdca_kernels import conjugate_sum

__all__ = ["GapParts", "certificate_parts", "dual_point", "gap_from_parts"]

logger = logging.getLogger(__name__)


class GapParts(NamedTuple):
    """One partition's share of a duality gap (all sums over its rows)."""

    n: int  # rows
    loss_sum: float  # sum_i phi_i(x_i^T w) at the common model w
    conj_sum: float  # sum_i phi_i*(-a_i)
    g: np.ndarray  # sum_i a_i x_i (length p; the intercept's entry is sum_i a_i)


def dual_point(loss: int, margins: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The dual point a primal model gives for free: ``a_i = -phi'(m_i)`` (feasible).

    Logistic: ``y_i sigmoid(-y_i m_i)``; hinge: ``y_i`` where ``y_i m_i < 1`` else 0 (a
    subgradient, so ``b_i = y_i a_i`` is in [0, 1]); squared: ``y_i - m_i``.
    At the optimum ``w*`` this is the optimal dual, so the gap of ``w`` goes to 0
    with ``w -> w*`` for the smooth losses.
    """
    m = np.asarray(margins, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if loss == K.LOGISTIC:
        from scipy.special import expit

        return y * expit(-y * m)
    if loss == K.HINGE:
        return np.where(y * m < 1.0, y, 0.0)
    if loss == K.SQUARED:
        return y - m
    raise ValueError(f"unknown loss code {loss!r}")


def certificate_parts(X, y, w, loss: int, fit_intercept: bool,
                      dual: np.ndarray | None = None) -> GapParts:
    """A partition's `GapParts` at model ``w`` and duals ``dual`` (default: `dual_point` of ``w``).

    ``X`` is a kernel matrix (`_kernels.as_kernel_matrix`) or anything it accepts.
    One pass over the rows.
    """
    Xk = K.as_kernel_matrix(X) if not isinstance(X, tuple) else X
    y = np.ascontiguousarray(y, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    m = K.margins(Xk, w, fit_intercept)
    a = dual_point(loss, m, y) if dual is None else np.ascontiguousarray(dual, dtype=np.float64)
    g = np.zeros_like(w)
    _weighted_rows(Xk, a, g, fit_intercept)
    return GapParts(len(y), float(K.loss_sum(Xk, y, w, loss, fit_intercept)),
                    float(conjugate_sum(loss, y, a)), g)


def gap_from_parts(parts, w: np.ndarray, alpha: float, penalty: int = K.L2,
                   n_penalized: int | None = None) -> tuple[float, float, float]:
    """``(P(w), D(a), P(w) - D(a))`` from every partition's parts (``loss_sum`` at ``w``).

    ``n_penalized``: how many leading entries of ``w`` the penalty applies to
    (default all: the intercept, if any, counts as a feature; see the module doc).
    """
    w = np.asarray(w, dtype=np.float64)
    npen = w.shape[0] if n_penalized is None else int(n_penalized)
    n = sum(pt.n for pt in parts)
    loss_sum = sum(pt.loss_sum for pt in parts)
    conj = sum(pt.conj_sum for pt in parts)
    g = np.sum([pt.g for pt in parts], axis=0)[:npen]
    if penalty == K.L2:
        primal = loss_sum / n + 0.5 * alpha * float(w[:npen] @ w[:npen])
        dual = -conj / n - 0.5 / (alpha * n * n) * float(g @ g) if alpha > 0 else (
            -conj / n if not g.any() else -np.inf)
    else:
        primal = loss_sum / n + alpha * float(np.abs(w[:npen]).sum())
        vmax = float(np.abs(g).max()) / n if g.size else 0.0
        theta = min(1.0, alpha / vmax) if vmax > 0 else 1.0
        dual = -theta * conj / n
    return primal, dual, primal - dual


def _weighted_rows(Xk, a, out, fit_intercept) -> None:
    """``out += sum_i a_i x_i`` (with the constant feature last when ``fit_intercept``)."""
    if isinstance(Xk, tuple):
        data, indices, indptr = Xk
        counts = np.diff(indptr)
        np.add.at(out, indices, data * np.repeat(a, counts))
    else:
        out[: Xk.shape[1]] += a @ Xk
    if fit_intercept:
        out[-1] += a.sum()
