"""Duality-gap certificates assembled from per-partition parts (no barrier needed).

For ``P(w) = (1/n) sum_i phi_i(x_i^T w) + (alpha/2) ||w||^2`` and duals ``a`` (one per row)
the Fenchel dual is::

    D(a) = -(1/n) sum_i phi_i*(-a_i) - (alpha/2) ||g / (alpha n)||^2,    g = sum_i a_i x_i

and ``D(a) <= P* <= P(w)`` for *any* model ``w`` and any feasible ``a``, so
``P(w) - D(a)`` bounds ``P(w) - P*`` even when ``w`` and ``a`` come from different
moments of an asynchronous run. Both sides are sums over rows: each partition
computes its `GapParts` (its loss sum at one common model, its conjugate sum and
its ``g_k``), only those travel, and `gap_from_parts` adds them up.

With ``fit_intercept`` the intercept is unpenalized (asip's `Objective`), and the
dual asks ``sum_i a_i = 0``: `gap_from_parts` first makes ``a`` feasible -- for
classification by shrinking the duals of the label class with the larger
``sum b_i`` (``b_i = y_i a_i``), for least squares by removing the mean -- from a
few extra per-class sums each partition sends (the `_reference.duality_gap`
construction, in parts). With l1, ``a`` is then scaled into the dual's
constraint set ``||g / n||_inf <= alpha``. Scaled conjugate sums are bounded
through ``phi*(t u) <= t phi*(u)`` for ``t`` in [0, 1] (``phi*`` convex,
``phi*(0) = 0``), so every step keeps ``D`` a lower bound.

`dual_point` gives a primal method a dual point for free (``a_i = -phi'(x_i^T w)``,
feasible by construction), so gd or ADMM can certify with one data pass.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from . import _losses as _L
from ._sdca_kernels import conjugate_sum

__all__ = ["GapParts", "certificate_parts", "certified", "certified_model", "dual_point",
           "gap_from_parts", "snapshot_fields"]

logger = logging.getLogger(__name__)


class GapParts(NamedTuple):
    """One partition's share of a duality gap (all sums over its rows)."""

    n: int  # rows
    loss_sum: float  # sum_i phi_i(x_i^T w) at the common model w
    conj_sum: float  # sum_i phi_i*(-a_i)
    g: np.ndarray  # sum_i a_i x_i over the features (length n_features)
    # with an intercept only (None otherwise), to make sum_i a_i = 0 -- classification:
    # [sum b over y > 0, conj sum over y > 0, sum b over y < 0] and the g of the y > 0
    # rows; least squares: [sum a, sum y] and the column sums sum_i x_i
    side: np.ndarray | None = None
    side_g: np.ndarray | None = None
    balance: str | None = None  # "classes" or "mean"


def certified(rel_gap: float, tol: float) -> bool:
    """True when a relative gap meets ``tol``; ``tol=0`` never certifies (a gap of exactly 0 can be rounding)."""
    return 0 < tol and rel_gap <= tol


def snapshot_fields(book: dict) -> dict:
    """A leader's certificate bookkeeping as snapshot fields: ``gap``, ``rel_gap`` (and
    ``primal`` when kept) once a gap is known, and the ``certified`` model once there is one.

    ``book`` holds ``gap``, ``rel_gap``, ``certified`` (None until certified) and optionally
    ``primal``; the certified solvers share it so that their snapshots read the same.
    """
    out = {}
    if np.isfinite(book["gap"]):
        out.update(gap=float(book["gap"]), rel_gap=float(book["rel_gap"]))
        if "primal" in book:
            out["primal"] = float(book["primal"])
    if book.get("certified") is not None:
        out["certified"] = np.array(book["certified"], dtype=np.float64)
    return out


def certified_model(snapshots) -> np.ndarray | None:
    """The ``certified`` model of the first snapshot that has one (the leader's), else None."""
    for s in snapshots:
        if s is not None and "certified" in s:
            return np.asarray(s["certified"], dtype=np.float64)
    return None


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


def certificate_parts(X, y, w, loss: int, fit_intercept: bool, dual: np.ndarray | None = None,
                      penalized_intercept: bool = False, g: np.ndarray | None = None,
                      margins: np.ndarray | None = None) -> GapParts:
    """A partition's `GapParts` at model ``w`` and duals ``dual`` (default: `dual_point` of ``w``).

    ``X`` is a kernel matrix (`_kernels.as_kernel_matrix`) or anything it accepts.
    Two passes over the rows (CSR with an unpenalized intercept: three).
    ``penalized_intercept``: certify the problem whose intercept is a constant feature
    penalized like the others (asip-cocoa's with SDCA). ``g``: ``sum_i a_i x_i`` over the
    features when the caller keeps it (SDCA's share ``alpha n u``; a Newton round's gradient
    pass), which saves the pass that would sum it (only with ``dual`` given). ``margins``:
    ``x_i^T w`` when the caller has them (a Newton round's end point), which saves that pass.
    """
    Xk = K.as_kernel_matrix(X) if not isinstance(X, tuple) else X
    y = np.ascontiguousarray(y, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    m = (K.margins_blas(Xk, w, fit_intercept) if margins is None  # BLAS on dense rows
         else np.ascontiguousarray(margins, dtype=np.float64))
    a = dual_point(loss, m, y) if dual is None else np.ascontiguousarray(dual, dtype=np.float64)
    d = w.shape[0] - int(fit_intercept)
    side_w = None  # the second row weighting an unpenalized intercept needs
    pos = y > 0
    if fit_intercept and not penalized_intercept:
        side_w = np.ones_like(a) if loss == K.SQUARED else np.where(pos, a, 0.0)
    g_known = g
    g, side_g = np.zeros(d), np.zeros(d)
    if g_known is not None:
        if dual is None or np.shape(g_known) != (d,):
            raise ValueError("certificate_parts: g is taken only with the duals it sums, "
                             f"shape ({d},); got {np.shape(g_known)}")
        g[:] = g_known
    else:  # dense: a BLAS gemv each, 0.3-0.8x the time of one 2-row gemm (np.stack(...) @ X)
        _weighted_rows(Xk, a, g)
    if side_w is not None:
        _weighted_rows(Xk, side_w, side_g)
    # the loss sum from the margins already taken (one pass fewer than `K.loss_sum`)
    parts = GapParts(len(y), float(_L.rows(_L.ROW_VALUE, loss, m, y).sum()),
                     float(conjugate_sum(loss, y, a)), g)
    if not fit_intercept:
        return parts
    if penalized_intercept:
        return parts._replace(g=np.append(g, a.sum()))
    if loss == K.SQUARED:
        return parts._replace(side=np.array([a.sum(), y.sum()]), side_g=side_g, balance="mean")
    b = y * a
    side = np.array([b[pos].sum(), float(conjugate_sum(loss, y[pos], a[pos])), b[~pos].sum()])
    return parts._replace(side=side, side_g=side_g, balance="classes")


def gap_from_parts(parts, w: np.ndarray, alpha: float,
                   penalty: int = K.L2) -> tuple[float, float, float]:
    """``(P(w), D(a), P(w) - D(a))`` from every partition's parts (``loss_sum`` at ``w``).

    ``w`` is the model vector the parts were computed at (the intercept last when
    the parts carry one); the penalty applies to the first ``len(g)`` entries: the
    features, and a penalized intercept.
    """
    w = np.asarray(w, dtype=np.float64)
    parts = list(parts)
    npen = parts[0].g.shape[0]
    n = sum(pt.n for pt in parts)
    loss_sum = sum(pt.loss_sum for pt in parts)
    conj = sum(pt.conj_sum for pt in parts)
    g = np.sum([pt.g for pt in parts], axis=0)
    if parts[0].side is not None:
        conj, g = _balanced(parts, conj, g, n)
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


def _balanced(parts, conj: float, g: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    """A conjugate sum bound and ``g`` for duals made to satisfy ``sum_i a_i = 0``."""
    side = np.sum([pt.side for pt in parts], axis=0)
    side_g = np.sum([pt.side_g for pt in parts], axis=0)
    if parts[0].balance == "mean":  # least squares: a - mean(a), exactly
        mean = side[0] / n
        return conj - 0.5 * n * mean * mean + mean * side[1], g - mean * side_g
    s_pos, c_pos, s_neg = side  # sum_i a_i = s_pos - s_neg: shrink the larger side
    r_pos = s_neg / s_pos if s_pos > s_neg else 1.0
    r_neg = s_pos / s_neg if s_neg > s_pos else 1.0
    return r_pos * c_pos + r_neg * (conj - c_pos), r_pos * side_g + r_neg * (g - side_g)


def _weighted_rows(Xk, a, out) -> None:
    """``out += sum_i a_i x_i`` over the features (CSR: `_kernels.NOGIL_SPARSE`)."""
    if isinstance(Xk, tuple) and K.NOGIL_SPARSE:
        out += K.rmatvec(Xk, a, out.shape[0])
    elif isinstance(Xk, tuple):
        data, indices, indptr = Xk
        out += np.bincount(indices, weights=data * np.repeat(a, np.diff(indptr)),
                           minlength=out.shape[0])
    else:
        out += a @ Xk
