"""The one Newton loop on asip-cocoa's local model ``F_j`` (`_cocoa_newton`), its inner solve
pluggable: the dense `LocalNewton` (a built p x p Hessian, Cholesky) and the Hessian-free
`_newton_cg` (PCG on Hessian-vector products) each hand it a `Model` of ``F_j``'s terms
other than the own loss, and share everything else -- the gradient pass, the stopping, the
line search and the duals.

Each iteration is one data pass (the loss gradient) plus the inner solve, then a backtracking
line search on ``F_j``'s exact change along the step: the loss sums' difference plus the
model terms' expansion ``t q1 + t^2 q2 / 2``. ``F_j``'s own value is no test: its peer terms
(``v^T S v / 2``, ``Sb^T v``; hinge: ``1/mu`` band curvature) can be ~1e4 where the decrease
is ~1e-13, so their rounding rejected every step of a near-optimal round, which then left
``v`` unmoved (the peers saw no news: the fit stalled). No line search once the decrement is
below float64 rounding of ``F_j``'s terms (`ROUNDING`) and no margin moves by more than
`FLAT_MOVE`: the step is taken as is and the round ends.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from . import _losses as _L

__all__ = ["FLAT_MOVE", "Model", "ROUNDING", "newton", "rescaled", "start"]

_EPS = float(np.finfo(np.float64).eps)

#: no line search once the Newton decrement is below this many float64 roundings of the
#: model's terms and no margin moves by more than `FLAT_MOVE` (times hinge's ``mu``): no
#: trial could show the decrease (at tol=0, after convergence, the search ran to
#: ``t < 1e-10``, up to ~35 loss passes a round, to accept a move below rounding); the
#: Newton step is taken unchecked (its gradient is exact to far below the model's rounding)
#: and the round ends. 0: always search
ROUNDING = 1.0
FLAT_MOVE = 1e-3
#: Armijo's sufficient decrease, a fraction of the decrement
ARMIJO = 1e-4
#: the line search gives up (takes the step so scaled) below this
MIN_STEP = 1e-10


class Model(Protocol):
    """``F_j``'s terms other than the own loss (the peers' models, the penalty, any damping)."""

    #: the peers' gradient sum; `newton` adds the absent peers' share (``c_missing`` times
    #: the own loss gradient at ``w0``) before the first step
    G: np.ndarray

    def rest(self, v: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
        """At ``v`` (margins ``m``): these terms' gradient, and their values' magnitudes
        summed (their share of ``F_j``'s rounding)."""

    def solve(self, g: np.ndarray) -> np.ndarray:
        """The Newton step for ``F_j``'s gradient ``g`` (the inner solve)."""

    def curvature(self, step: np.ndarray, dm: np.ndarray) -> float:
        """``step^T Q step``, ``Q`` these terms' Hessian (``dm``: the step's margins)."""


def start(nw, w0: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(margins at w0, reused)``: the last solve's when it ended at ``w0`` (its margins,
    derivatives, gradient and loss sum then hold), else a new margin pass (none at the zero
    model, a fit's first round: its margins are zero)."""
    last = nw.last
    if last is not None and np.array_equal(last[0], w0):
        return last[1], True
    if not w0.any():
        return np.zeros(len(nw.y)), False
    nw.passes += 0.5
    return nw._mv(w0), False


def rescaled(peers, c_missing: float, missing: str) -> tuple[float, float]:
    """``(scale, c_missing)`` for the absent peers' ``sum c_k``: ``"rescale"``, the loss
    terms scaled by ``n / n_heard`` and none stood in for; ``"self"``, modelled by this
    partition at ``w0`` (scale 1)."""
    if missing == "rescale":
        csum = sum(c_k for *_, c_k in peers)
        return (1.0 + c_missing + csum) / (1.0 + csum), 0.0
    if missing == "self":
        return 1.0, c_missing
    raise ValueError(f"missing must be 'rescale' or 'self', got {missing!r}")


def newton(nw, model: Model, v: np.ndarray, m: np.ndarray, reused: bool, n: float,
           c_missing: float, max_iter: int, rtol: float, flat_move: float = FLAT_MOVE):
    """Newton on ``F_j = L_j / n + model`` from ``v`` (margins ``m``; `start`), at most
    ``max_iter`` iterations, until the decrement falls below ``rtol`` of the first
    (``nw``: a `LocalNewton`, its loss, passes and last point; ``n``: the scaled row count).
    Returns ``(v, duals -phi'(x_i^T v), A_j^T duals)``."""
    last = nw.last
    lsum = last[4] if reused else None  # sum_i phi(m_i) at v, once known
    dec0 = rt = None
    flat = False  # F_j flat to rounding along the last step: it was taken unchecked
    for it in range(max_iter + 1):
        if it == 0 and reused:
            r, g_loss = last[2], last[3]
        else:  # phi' at the accepted trial point: taken with its value
            r = nw.deriv(m) if rt is None else rt
            g_loss = nw._rmv(r)
            nw.passes += 0.5
        if it == max_iter or flat:
            break
        if it == 0:  # absent peers: their gradient is this partition's at w0
            if c_missing:
                model.G = model.G + c_missing * (g_loss / n)
            if lsum is None:
                lsum = nw._value(m)
        rest, mag = model.rest(v, m)
        g = g_loss / n + rest
        step = model.solve(g)
        dec = -(g @ step)
        if dec0 is None:
            dec0 = dec
        if not dec > 1e-300 or dec <= rtol * dec0:
            break
        dm = nw._mv(step)
        nw.passes += 0.5
        # converged to rounding: no trial could show the decrease, the full step is taken
        flat = dec <= ROUNDING * _EPS * (abs(lsum / n) + mag) and np.max(
            np.abs(dm), initial=0.0) <= flat_move
        # F_j(v + t step) - F_j(v), exactly: the loss sums' difference plus the model terms'
        # expansion along the step (see the module docstring)
        q1, q2 = rest @ step, model.curvature(step, dm)
        t = 1.0
        while True:  # backtracking on F_j; the data term needs only dm
            vt, mt = v + t * step, m + t * dm
            lt, rt = nw.value_deriv(mt)  # phi' too: the next iteration's, if accepted
            nw.trials += 1
            delta = (lt - lsum) / n + t * q1 + 0.5 * t * t * q2
            if flat or delta <= -ARMIJO * t * dec or t < MIN_STEP:
                break
            t *= 0.5
        v, m, lsum = vt, mt, lt
    # r, g_loss (and lsum, when known) are at v on every exit
    nw.last = (v.copy(), m, r, g_loss, lsum)
    dual = _L.rows(_L.ROW_DUAL_CLIP, nw.loss, -r, nw.y)
    # the pushed share must be exactly A_j^T dual (the certificate pairs them)
    return v, dual, (-g_loss if np.array_equal(dual, -r) else nw._rmv(dual))
