"""Duality-gap certificates for the primal solvers (gd, admm, asip-svrg) from their gradient sums.

A primal model ``w`` gives a dual point for free, ``a_i = -s_i phi'(m_i)``
(`_certificate.dual_point`, ``s_i`` the row weight), and by Fenchel-Young
``phi(m) + phi*(phi'(m)) = m phi'(m)`` its conjugate sum needs no pass of its own::

    sum_i s_i phi*(phi'(m_i)) = grad_sum^T w - loss_sum,     g = sum_i a_i x_i = -grad_sum

where ``grad_sum = sum_i s_i phi'(m_i) [x_i, 1]`` and ``loss_sum`` are exactly what a
gradient pass at ``w`` returns. So without an intercept a partition's `GapParts` come
from its gradient contribution (`free_parts`) and the gap costs nothing extra. With an
unpenalized intercept the dual must satisfy ``sum_i a_i = 0``; `side_parts` adds, in
one margin pass and one row pass, the per-class sums `_certificate.gap_from_parts` uses
to make it so (weighted least squares with an intercept has no such construction here:
`certifiable` says so and the solvers fall back on their own test).
`gap_from_parts` then gives ``P(w) - D(a)``, l1 included (the dual is scaled into
``||g / n||_inf <= alpha``).
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit

from . import _kernels as K
from . import _weights as W
from ._base import LocalData, Problem
from ._certificate import GapParts, certificate_parts, certified, gap_from_parts

__all__ = ["certifiable", "decode", "encode", "fields_schema", "free_parts", "parts_at",
           "record_gap", "relative_gap", "side_len", "side_parts"]

logger = logging.getLogger(__name__)


def certifiable(problem: Problem, weighted: bool) -> bool:
    """Whether the free dual point certifies this problem (all but weighted least squares
    with an intercept)."""
    return not (weighted and problem.fit_intercept and problem.loss == K.SQUARED)


def side_len(problem: Problem) -> int:
    """Length of the intercept side sums (`side_parts`): 2 for least squares, else 3."""
    return 2 if problem.loss == K.SQUARED else 3


def free_parts(problem: Problem, n: int, w: np.ndarray, loss_sum: float, grad: np.ndarray,
               side=None, side_g=None) -> GapParts:
    """A partition's `GapParts` at ``w`` from its loss sum and gradient sum there (no pass);
    with an intercept also its `side_parts` ``(side, side_g)``."""
    conj = float(np.dot(grad, w)) - float(loss_sum)
    g = -np.asarray(grad[: problem.n_features], dtype=np.float64)
    parts = GapParts(int(n), float(loss_sum), conj, g)
    if not problem.fit_intercept:
        return parts
    balance = "mean" if problem.loss == K.SQUARED else "classes"
    return parts._replace(side=np.asarray(side, dtype=np.float64),
                          side_g=np.asarray(side_g, dtype=np.float64), balance=balance)


def side_parts(problem: Problem, data: LocalData, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(side, side_g)`` at ``w`` for the intercept balance (see `_certificate.GapParts`);
    one pass over the rows."""
    side = np.zeros(side_len(problem))
    side_g = np.zeros(problem.n_features + 1)  # row_axpy's scratch has the intercept slot
    sw = np.zeros(0) if data.sw is None else data.sw
    _side_pass(data.X, data.y, sw, np.ascontiguousarray(w, dtype=np.float64), problem.loss,
               side, side_g)
    return side, side_g[: problem.n_features]


@njit(nogil=True, cache=True)
def _side_pass(X, y, sw, w, loss, side, side_g):
    """Least squares: ``side = [sum (y - m), sum y]``, ``side_g = sum x_i``; else, with
    ``a_i = -s_i phi'(m_i)``, ``b = y a``: ``side = [sum_{y>0} b, sum_{y>0} s (m phi' - phi),
    sum_{y<0} b]``, ``side_g = sum_{y>0} a_i x_i``. As `_kernels`' sweeps (margins, each
    row's sums, scatter; dense rows a block at a time), the same sums in row order."""
    n = K.n_rows(X)
    B = K.sweep_block(X, w.shape[0])
    m = np.empty(min(n, B))
    for a in range(0, n, B):
        blk = m[: min(a + B, n) - a]
        K.sweep_margins(X, w, True, blk, a)
        _side_rows(loss, blk, y, sw, a, side)
        K.sweep_scatter(X, blk, False, side_g, a)  # side_g's intercept slot stays 0


@njit(nogil=True, cache=True)
def _side_rows(loss, m, y, sw, start, side):
    """Add rows ``start, start + 1, ...`` (margins ``m``) to ``side`` in row order and
    overwrite ``m`` with each row's coefficient in ``side_g`` (``sw`` empty: no weights)."""
    for k in range(m.shape[0]):
        i = start + k
        if loss == K.SQUARED:
            side[0] += y[i] - m[k]
            side[1] += y[i]
            m[k] = 1.0
            continue
        s = 1.0 if sw.shape[0] == 0 else sw[i]
        if s == 0.0:
            m[k] = 0.0
            continue
        f, d = K._phi_dphi(loss, m[k], y[i])
        d = s * d
        if y[i] > 0:
            side[0] -= y[i] * d
            side[1] += m[k] * d - s * f
            m[k] = -d
        else:
            side[2] -= y[i] * d
            m[k] = 0.0


def relative_gap(problem: Problem, parts: list, w: np.ndarray) -> tuple[float, float, float]:
    """``(P(w), D, (P - D) / |P|)`` from every partition's parts at ``w``."""
    primal, dual, gap = gap_from_parts(parts, w, problem.alpha, problem.penalty)
    return primal, dual, gap / max(abs(primal), 1e-300)


def record_gap(mem: dict, primal: float, dual: float, x: np.ndarray, tol: float) -> bool:
    """Note a round's gap at ``x`` in a barrier solver's ``mem``; True (and ``x`` kept as
    ``mem["certified"]``) when ``gap / |P| <= tol``.

    The best dual value seen is kept (any feasible dual bounds ``P*``), so the gap
    is ``P(x) - max D``; ``mem["gap_w"]`` is the point it belongs to.
    """
    mem["best_dual"] = max(mem["best_dual"], dual)
    mem["gap"] = primal - mem["best_dual"]
    mem["rel_gap"] = mem["gap"] / max(abs(primal), 1e-300)
    mem["gap_w"] = x
    if certified(mem["rel_gap"], tol):
        mem["certified"] = x.copy()
        return True
    return False


def round_side(problem: Problem, data: LocalData, w: np.ndarray, certify: bool, k: int,
               cert_every) -> dict:
    """A barrier round's intercept certificate fields at ``w`` (empty without an intercept):
    the side sums every ``cert_every`` rounds, zeros (``cert=False``) in between."""
    if not problem.fit_intercept:
        return {}
    cert = certify and k % max(int(cert_every), 1) == 0
    side, side_g = (side_parts(problem, data, w) if cert else
                    (np.zeros(side_len(problem)), np.zeros(problem.n_features)))
    return {"cert": bool(cert), "side": side, "side_g": side_g}


def certify_round(state, parts: list, x: np.ndarray) -> bool:
    """A barrier round's free duality gap at ``x`` from every partition's contribution
    (``f``, ``g`` and the side sums); True when ``gap / |P| <= tol`` (see `record_gap`).
    ``state``: a gd or lbfgs state (its ``problem``, ``mem``, ``certify``, ``params["tol"]``)."""
    pb = state.problem
    if not state.certify or not all(c.get("cert", True) for c in parts):
        return False
    gp = [free_parts(pb, pb.sizes[j], x, c["f"], c["g"], c.get("side"), c.get("side_g"))
          for j, c in enumerate(parts)]
    primal, dual, _ = relative_gap(pb, gp, x)
    return record_gap(state.mem, primal, dual, x, state.params["tol"])


def fields_schema(problem: Problem) -> dict:
    """Message fields of one partition's parts (`encode`): key -> type or (dtype, shape)."""
    out = {"cert": bool, "cf": float, "cc": float, "cg": ("float64", (problem.n_features,))}
    if problem.fit_intercept:
        out.update(side=("float64", (side_len(problem),)),
                   side_g=("float64", (problem.n_features,)))
    return out


def encode(problem: Problem, parts: GapParts | None) -> dict:
    """``parts`` as message fields (`fields_schema`); None: zeros with ``cert=False``."""
    d = problem.n_features
    if parts is None:
        out = {"cert": False, "cf": 0.0, "cc": 0.0, "cg": np.zeros(d)}
        if problem.fit_intercept:
            out.update(side=np.zeros(side_len(problem)), side_g=np.zeros(d))
        return out
    out = {"cert": True, "cf": float(parts.loss_sum), "cc": float(parts.conj_sum),
           "cg": np.asarray(parts.g, dtype=np.float64)}
    if problem.fit_intercept:
        out.update(side=np.asarray(parts.side, dtype=np.float64),
                   side_g=np.asarray(parts.side_g, dtype=np.float64))
    return out


def decode(problem: Problem, n: int, fields: dict) -> GapParts:
    """`GapParts` from message fields (`encode`) of a partition with ``n`` rows."""
    parts = GapParts(int(n), float(fields["cf"]), float(fields["cc"]),
                     np.asarray(fields["cg"], dtype=np.float64))
    if not problem.fit_intercept:
        return parts
    return parts._replace(side=np.asarray(fields["side"], dtype=np.float64),
                          side_g=np.asarray(fields["side_g"], dtype=np.float64),
                          balance="mean" if problem.loss == K.SQUARED else "classes")


def parts_at(problem: Problem, data: LocalData, w: np.ndarray, grad: np.ndarray,
             dual: np.ndarray | None = None) -> GapParts:
    """A partition's `GapParts` at ``w`` by a pass of its own: the free dual point, or, for
    hinge (whose free point is a crude subgradient), ``dual`` (e.g. SDCA duals, unweighted)."""
    if dual is not None:
        return certificate_parts(data.X, data.y, w, problem.loss, problem.fit_intercept, dual)
    f = W.loss_grad(data, w, problem.loss, problem.fit_intercept, grad)
    side = side_parts(problem, data, w) if problem.fit_intercept else (None, None)
    return free_parts(problem, data.n, w, f, grad, *side)
