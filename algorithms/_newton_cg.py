"""Hessian-free local Newton for asip-cocoa's ``local_solver="newton-cg"`` (wide models).

The model ``F_j`` of `_cocoa_newton` with every peer's curvature stood in by this
partition's own (``c_k H_j``; nothing p x p is built, pushed or factored), each Newton
iteration solved by Jacobi-preconditioned, truncated conjugate gradients on
Hessian-vector products over the local rows (``X_j^T (D X_j u)``: two sparse passes,
O(nnz)), in the Newton loop `_newton_loop.newton` the dense solve shares. With one
curvature for every term the model's quadratic part is a function of margins alone, so
``F_j``'s change along a step (the line search) costs O(rows), not a product.

The stand-in is wrong where partitions differ (rows sorted by label; rare features only a
peer has): ``F_j``'s steps then overshoot and the rounds can cycle. Damping: a proximal
term ``(lam / 2) ||v - w0||^2`` (the fixed point is unchanged: at ``v = w0`` it has no
gradient), ``lam`` grown from the observed model error -- between two rounds the peers'
gradients moved by ``dg`` while the stand-in predicted ``H_j dw`` for their moved points
(``dw``); ``lam = ||dg - H_j dw|| / ||dw||`` is the curvature the stand-in misses (0 when it
is exact), halved each round it is not observed larger.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from . import _losses as _L
from . import _newton_loop as _NL

__all__ = ["pcg", "solve_cg"]

#: CG stops once the residual is below this fraction of the Newton gradient (truncated)
CG_RTOL = 0.1
#: CG iterations per Newton iteration, at most (two sparse passes each)
CG_MAX = 50
#: the damping's decay per round it is not observed larger (``lam <- max(est, lam * DECAY)``)
DECAY = 0.5


def pcg(matvec, b: np.ndarray, diag: np.ndarray, rtol: float, max_iter: int):
    """``x ~ M^{-1} b`` by conjugate gradients preconditioned with ``diag`` (M's diagonal,
    positive), from 0, until ``||M x - b|| <= rtol ||b||`` or ``max_iter`` products.
    Returns ``(x, products)``."""
    x = np.zeros_like(b)
    r = b.copy()
    bn = float(np.linalg.norm(b))
    if not bn > 0.0:
        return x, 0
    z = r / diag
    d = z.copy()
    rz = float(r @ z)
    for it in range(1, max_iter + 1):
        q = matvec(d)
        dq = float(d @ q)
        if not dq > 0.0:  # not positive along d (rounding): stop with what we have
            return x, it
        a = rz / dq
        x += a * d
        r -= a * q
        if np.linalg.norm(r) <= rtol * bn:
            return x, it
        z = r / diag
        rz_new = float(r @ z)
        d *= rz_new / rz
        d += z
        rz = rz_new
    return x, max_iter


def _curvature(nw, m):
    """``(phi''(m_i) / n per row, diag of H_j)``, kept while no margin moved more than
    ``REFRESH`` since they were taken (squared loss: always)."""
    from ._cocoa_newton import REFRESH

    c = nw.cache
    if c is not None and (nw.loss == K.SQUARED or np.max(
            np.abs(m - c[1]), initial=0.0) <= REFRESH):
        return c[0], c[2]
    d = _L.rows(_L.ROW_CURVATURE, nw.loss, m, nw.y) * (1.0 / nw.n)
    if nw.sparse and nw.kx is not None:  # the squared entries' nogil product
        if nw.sq is None:
            nw.sq = (nw.kx[0] * nw.kx[0], *nw.kx[1:])
        diag = K.rmatvec(nw.sq, d, nw.p - int(nw.fi))
    elif nw.sparse:
        if nw.sq is None:
            nw.sq = nw.A.multiply(nw.A).tocsr()
        diag = nw.sq.T @ d
    else:
        diag = np.einsum("ij,ij,i->j", nw.A, nw.A, d)
    if nw.fi:
        diag = np.append(diag, d.sum())
    nw.passes += 1.0  # the curvature and the squared entries' pass
    nw.cache = (d, m, np.asarray(diag, dtype=np.float64))
    return nw.cache[0], nw.cache[2]


def _damping(nw, d, G, wsum, mw, key):
    """The proximal weight ``lam`` from the stand-in's error since the last round (see the
    module docstring); ``G``, ``wsum`` unscaled peer sums, ``mw = X_j wsum``; ``key`` names
    the peers summed (a changed set: no estimate)."""
    prev = nw.cg_prev
    lam = nw.lam * DECAY
    if prev is not None and prev[0] == key:
        dw = wsum - prev[2]
        nd = float(np.linalg.norm(dw))
        if nd > 0.0:
            Hdw = nw._rmv(d * (mw - prev[3]))
            nw.passes += 0.5
            lam = max(lam, float(np.linalg.norm(G - prev[1] - Hdw)) / nd)
    nw.cg_prev = (key, G.copy(), wsum.copy(), mw.copy())
    nw.lam = lam
    return lam


def solve_cg(nw, w0, peers, c_missing: float, max_iter: int, rtol: float,
             missing: str = "rescale"):
    """`LocalNewton.solve` without a p x p matrix (``nw`` a `LocalNewton`); every peer's
    ``H_k`` must be None (modelled by ``c_k H_j``). Same arguments and returns, ``H_j``
    None and ``new`` False."""
    m, reused = _NL.start(nw, w0)
    d, diagH = _curvature(nw, m)
    csum = sum(c_k for *_, c_k in peers)
    scale, c_missing = _NL.rescaled(peers, c_missing, missing)
    # the peers' models summed: sum_k [g_k^T v + (c_k/2)(v - w_k)^T H_j (v - w_k)]
    #   = G^T v + (kappa/2) v^T H_j v - (H_j wsum)^T v + const
    G, wsum = np.zeros_like(w0), np.zeros_like(w0)
    for g_k, w_k, H_k, c_k in peers:
        if H_k is not None:
            raise ValueError("local_solver='newton-cg' takes no pushed Hessians")
        G += g_k
        wsum += c_k * w_k
    mw = nw._mv(wsum)
    nw.passes += 0.5
    lam = _damping(nw, d, G, wsum, mw, (len(peers), csum, c_missing)) if peers else 0.0
    # missing="self": the absent peers' models sit at w0 (their gradient is added by the loop)
    mw = mw + c_missing * m
    kappa = scale * (csum + c_missing)
    model = _Free(nw, G * scale, mw * scale, d, diagH, scale, kappa, lam, w0)
    v, dual, share = _NL.newton(nw, model, w0.copy(), m, reused, nw.n / scale, c_missing,
                                max_iter, rtol)
    return v, dual, share, None, False


class _Free:
    """`_newton_loop.Model` of the Hessian-free Newton: the peers' models ``G^T v + (kappa/2)
    v^T H_j v - mw^T D X_j v`` (``H_j = X_j^T D X_j``, ``D = diag(d)``, ``mw = X_j wsum``: a
    function of the margins), the penalty and the damping ``(lam / 2) ||v - w0||^2``; the
    inner solve is PCG on ``M = h H_j + diag(pen) + lam I``, ``h = scale + kappa``."""

    def __init__(self, nw, G, mw, d, diagH, scale, kappa, lam, w0):
        self.nw, self.G, self.mw, self.d = nw, G, mw, d
        self.kappa, self.lam, self.w0, self.pen = kappa, lam, w0, nw.pen
        self.h = scale + kappa
        diagM = self.h * diagH + self.pen + lam
        self.diagM = np.maximum(diagM, 1e-12 * max(float(np.max(diagM, initial=0.0)), 1e-300))

    def rest(self, v, m):
        nw, d, kappa, lam = self.nw, self.d, self.kappa, self.lam
        dv, pv = v - self.w0, self.pen * v
        g = self.G + nw._rmv(d * (kappa * m - self.mw)) + pv + lam * dv
        nw.passes += 0.5
        mag = (abs(self.G @ v) + abs(float(d @ (m * (0.5 * kappa * m - self.mw))))
               + abs(0.5 * (v @ pv)) + 0.5 * lam * (dv @ dv))
        return g, mag

    def _matvec(self, u):
        nw = self.nw
        nw.passes += 1.0
        if nw.kx is None:
            return self.h * nw._rmv(self.d * nw._mv(u)) + (self.pen + self.lam) * u
        # CSR: both passes in one (`_kernels.weighted_gram_matvec`), the same numbers
        r = np.empty(len(self.d))
        g = K.weighted_gram_matvec(nw.kx, self.d, u, nw.fi, r, nw.p - int(nw.fi))
        if nw.fi:
            g = np.append(g, r.sum())
        return self.h * g + (self.pen + self.lam) * u

    def solve(self, g):
        return pcg(self._matvec, -g, self.diagM, self.nw.cg_rtol, self.nw.cg_max)[0]

    def curvature(self, step, dm):
        return self.kappa * float(self.d @ (dm * dm)) + step @ ((self.pen + self.lam) * step)
