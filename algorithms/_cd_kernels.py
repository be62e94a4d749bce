"""Numba kernels of the distributed proximal Newton solver (`_prox_newton`): curvature, CD, line search.

A partition's rows are held column-wise (a CSC triple ``(data, indices,
indptr)``, rows as ``indices``) because coordinate descent walks columns. The
smooth surrogate of each loss is the one `_prox_newton` minimizes: logistic and
squared are themselves; hinge is replaced by its ``mu``-smoothed version
(Shalev-Shwartz & Zhang 2013)::

    phi_mu(m, y) = 0                     if y m >= 1
                 = (1 - y m)^2 / (2 mu)  if 1 - mu < y m < 1
                 = 1 - y m - mu / 2      if y m <= 1 - mu

which is within ``mu / 2`` of the hinge everywhere, has curvature ``1/mu`` on the
band and ``-phi_mu'`` a feasible hinge dual (``b`` in [0, 1]).

All kernels are ``@njit(nogil=True, cache=True)`` (see `_kernels`).
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit

from . import _losses as _L

__all__ = ["cd_dense", "cd_subproblem", "csc_matvec", "csc_sq_rmatvec", "csr_weighted_gram",
           "dense_weighted_gram",
           "forward_point", "row_curvature", "trial_losses"]

logger = logging.getLogger(__name__)

_JIT = {"nogil": True, "cache": True}


#: ``(phi_mu, phi_mu', phi_mu'')`` of the surrogate: the loss math's one copy, in `_losses`
_smooth = _L.smoothed


@njit(**_JIT)
def row_curvature(loss, m, y, mu, a, D, floor):
    """Per row: ``a_i = -phi_mu'(m_i)`` (a feasible dual) and ``D_i = phi_mu''(m_i)``.

    Hinge rows off the curved band get ``D_i = floor * c_i`` instead of 0, with
    ``c_i = 1 / (2 |z_i| + mu)``-type the smallest curvature of a quadratic upper
    bound of ``phi_mu`` at ``z_i = 1 - y_i m_i`` (Huber's majorizer): the Newton model
    then sees the kinks it would otherwise step across (``floor = 1``: every step
    of the model decreases the surrogate; 0: the plain Hessian).
    Returns the surrogate's loss sum ``sum_i phi_mu(m_i, y_i)``.
    """
    s = 0.0
    for i in range(m.shape[0]):
        v, d1, d2 = _smooth(loss, m[i], y[i], mu)
        s += v
        a[i] = -d1
        if loss == _L.HINGE and d2 == 0.0 and floor > 0.0:
            z = 1.0 - y[i] * m[i]
            d2 = floor / (2.0 * z - mu if z >= mu else mu - 2.0 * z)
        D[i] = d2
    return s


@njit(**_JIT)
def csc_sq_rmatvec(data, indices, indptr, v, out):
    """``out[j] = sum_i v_i x_ij^2`` (the diagonal of ``X^T diag(v) X``)."""
    for j in range(indptr.shape[0] - 1):
        s = 0.0
        for k in range(indptr[j], indptr[j + 1]):
            s += data[k] * data[k] * v[indices[k]]
        out[j] = s


@njit(**_JIT)
def csc_matvec(data, indices, indptr, x, intercept, out):
    """``out = X x + intercept`` (``out`` has one entry per row)."""
    out[:] = intercept
    for j in range(indptr.shape[0] - 1):
        xj = x[j]
        if xj != 0.0:
            for k in range(indptr[j], indptr[j + 1]):
                out[indices[k]] += data[k] * xj


@njit(**_JIT)
def trial_losses(loss, m, q, y, mu, steps, out):
    """``out[s] = sum_i phi_mu(m_i + steps[s] q_i, y_i)``: every line-search trial in one pass."""
    out[:] = 0.0
    for i in range(m.shape[0]):
        for s in range(steps.shape[0]):
            v, _, _ = _smooth(loss, m[i] + steps[s] * q[i], y[i], mu)
            out[s] += v


@njit(**_JIT)
def _prox_step(z, g, h, alpha):
    """A coordinate's exact minimizer of ``g t + h t^2 / 2 + alpha |z + t|``, as ``z + t``.

    The soft-threshold of the Newton point ``z - g / h`` at ``alpha / h`` (``alpha = 0``:
    an unpenalized coordinate, the Newton point itself).
    """
    u = z - g / h
    thr = alpha / h
    return u - thr if u > thr else (u + thr if u < -thr else 0.0)


@njit(**_JIT)
def cd_subproblem(data, indices, indptr, fit_intercept, D, G, extra, w, alpha, max_pass,
                  tol, delta, q):
    """Coordinate descent on the l1-regularized quadratic model of one partition.

    Minimizes over ``delta`` (length ``p``, intercept last when ``fit_intercept``)::

        G^T delta + 1/2 delta^T (X~^T diag(D) X~ + diag(extra)) delta + alpha ||w + delta||_1

    (the intercept is not penalized; ``X~`` is ``X`` with a column of ones when
    ``fit_intercept``), starting from ``delta = 0``, keeping ``q = X~ delta``.
    Cyclic passes; after a full pass, coordinates that sit at zero with
    ``|grad_j| < alpha`` are skipped until the active ones converge (then one
    more full pass checks them; glmnet's active-set strategy). Stops when a
    full pass moves no coordinate by more than ``tol`` in the ``H_jj``-norm
    (relative to the first pass) or after ``max_pass`` passes. Returns the passes.
    """
    d = indptr.shape[0] - 1
    p = d + (1 if fit_intercept else 0)
    delta[:] = 0.0
    q[:] = 0.0
    H = np.empty(p)
    csc_sq_rmatvec(data, indices, indptr, D, H)
    if fit_intercept:
        H[d] = D.sum()
    H += extra
    active = np.ones(p, dtype=np.bool_)
    full = True
    first = -1.0
    passes = 0
    while passes < max_pass:
        passes += 1
        biggest = 0.0
        for j in range(p):
            if not full and not active[j]:
                continue
            hj = H[j]
            if hj <= 0.0:
                continue
            if j < d:
                s = 0.0
                for k in range(indptr[j], indptr[j + 1]):
                    s += D[indices[k]] * data[k] * q[indices[k]]
                g = G[j] + s + extra[j] * delta[j]
                z = w[j] + delta[j]
                znew = _prox_step(z, g, hj, alpha)
                if full:
                    active[j] = not (znew == 0.0 and z == 0.0 and abs(g) < alpha)
            else:
                s = 0.0
                for i in range(q.shape[0]):
                    s += D[i] * q[i]
                g = G[j] + s + extra[j] * delta[j]
                z = w[j] + delta[j]
                znew = z - g / hj
            step = znew - z
            if step != 0.0:
                delta[j] += step
                if j < d:
                    for k in range(indptr[j], indptr[j + 1]):
                        q[indices[k]] += step * data[k]
                else:
                    for i in range(q.shape[0]):
                        q[i] += step
                change = hj * step * step
                if change > biggest:
                    biggest = change
        if first < 0.0:
            first = max(biggest, 1e-300)
        converged = biggest <= tol * first
        if converged:
            if full:
                break
            full = True  # the active set converged: check everyone once more
        else:
            full = False
    return passes


@njit(**_JIT)
def forward_point(data, indices, indptr, fit_intercept, D, G, extra, H, w, delta, q, out):
    """The model's forward (pre-threshold) point ``u = z - g / H`` at ``z = w + delta``.

    ``g = G + X~^T diag(D) q + extra * delta`` is the gradient of `cd_subproblem`'s
    smooth part at its solution (``q = X~ delta``) and ``H`` its Hessian diagonal: at an
    exact solution ``z_j`` is the soft-threshold of ``u_j`` at ``alpha / H_j``, so
    partitions' ``u`` can be averaged *before* thresholding (`_prox_newton`).
    """
    d = indptr.shape[0] - 1
    for j in range(d):
        s = 0.0
        for k in range(indptr[j], indptr[j + 1]):
            s += D[indices[k]] * data[k] * q[indices[k]]
        g = G[j] + s + extra[j] * delta[j]
        out[j] = w[j] + delta[j] - g / H[j] if H[j] > 0.0 else w[j] + delta[j]
    if fit_intercept:
        s = 0.0
        for i in range(q.shape[0]):
            s += D[i] * q[i]
        g = G[d] + s + extra[d] * delta[d]
        out[d] = w[d] + delta[d] - g / H[d] if H[d] > 0.0 else w[d] + delta[d]


@njit(**_JIT)
def cd_dense(H, G, w, n_coef, alpha, lam, max_pass, tol, delta):
    """Coordinate descent on ``G^T delta + 1/2 delta^T (H + lam I) delta + alpha ||(w + delta)_coef||_1``.

    ``H`` is the full (symmetric, p x p) model Hessian; entries past ``n_coef`` (the
    intercept) carry no l1 term. Keeps ``r = H delta``, so a coordinate costs O(p).
    Starts from the ``delta`` passed in (a warm start). Stops when a pass moves no
    coordinate by more than ``tol`` (relative to the first pass, in the
    ``H_jj``-norm) or after ``max_pass`` passes; returns the passes.
    """
    p = G.shape[0]
    r = H @ delta
    first = -1.0
    passes = 0
    while passes < max_pass:
        passes += 1
        biggest = 0.0
        for j in range(p):
            hj = H[j, j] + lam
            if hj <= 0.0:
                continue
            g = G[j] + r[j] + lam * delta[j]
            z = w[j] + delta[j]
            znew = _prox_step(z, g, hj, alpha if j < n_coef else 0.0)
            step = znew - z
            if step != 0.0:
                delta[j] += step
                for i in range(p):
                    r[i] += step * H[j, i]
                change = hj * step * step
                if change > biggest:
                    biggest = change
        if first < 0.0:
            first = max(biggest, 1e-300)
        if biggest <= tol * first:
            break
    return passes


def dense_weighted_gram(A, D, fit_intercept, H, A32=None) -> None:
    """``H += X~^T diag(D) X~`` from dense rows, as `csr_weighted_gram` from CSR ones
    (``D >= 0``): a BLAS symmetric rank-k update of ``diag(sqrt D) A`` (half a product's
    flops), its upper triangle mirrored. With ``A32``, a float32 copy of the same rows, the
    ``X^T X`` part is a float32 product added to ``H`` in float64 (~3x less CPU; the
    intercept's row and column stay float64)."""
    import scipy.linalg as sla

    d = A.shape[1]
    if A32 is not None:
        B = A32 * np.sqrt(D).astype(np.float32)[:, None]
        H[:d, :d] += B.T @ B  # numpy: a symmetric rank-k update, both triangles
    else:
        U = sla.blas.dsyrk(1.0, (A * np.sqrt(D)[:, None]).T, trans=0)  # upper triangle
        H[:d, :d] += np.triu(U) + np.triu(U, 1).T
    if fit_intercept:
        col = A.T @ D
        H[:d, d] += col
        H[d, :d] += col
        H[d, d] += D.sum()


@njit(**_JIT)
def csr_weighted_gram(data, indices, indptr, D, fit_intercept, H):
    """``H += X~^T diag(D) X~`` from CSR rows (``X~``: with a last column of ones if asked).

    O(sum_i nnz_i^2 / 2): the Hessian of a partition when ``p`` is small (see `_prox_newton`);
    each pair of a row's entries once (the product is symmetric), mirrored at the end.
    """
    n = indptr.shape[0] - 1
    p = H.shape[0]
    d = p - (1 if fit_intercept else 0)
    U = np.zeros((p, p))  # the pairs (a, b), a < b in the row, at [j_a, j_b]
    diag = np.zeros(p)  # the pairs (a, a)
    for i in range(n):
        di = D[i]
        if di == 0.0:
            continue
        end = indptr[i + 1]
        for a in range(indptr[i], end):
            va = di * data[a]
            ja = indices[a]
            diag[ja] += va * data[a]
            for b in range(a + 1, end):
                U[ja, indices[b]] += va * data[b]
            if fit_intercept:
                U[ja, d] += va
        if fit_intercept:
            diag[d] += di
    for j in range(p):
        H[j, j] += diag[j] + 2.0 * U[j, j]  # (U[j, j]: a column twice in a row)
        for k in range(j + 1, p):
            s = U[j, k] + U[k, j]
            H[j, k] += s
            H[k, j] += s
