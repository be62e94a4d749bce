"""Numba kernels for the hot loops, for dense arrays and CSR matrices alike.

A *kernel matrix* is either a C-contiguous ``float64`` 2-D array or a CSR triple
``(data, indices, indptr)`` (``float64``, ``uint32`` as `column_indices` makes them,
``int64``); build one with `as_kernel_matrix`. Every kernel takes either: numba compiles one
specialization per form, and the row primitives (`row_dot`, `row_axpy`) pick the
dense or sparse loop at compile time, so sparse data stays sparse and a sparse
row costs O(nnz) work.

Every kernel is ``@njit(nogil=True, cache=True)``: it releases the GIL so the
worker's event loop keeps delivering messages while an operator computes (a
kernel that holds the GIL delays delivery by 100-1000 ms), and it is cached on
disk so worker processes do not recompile.

Conventions shared by all kernels:

* a model vector ``w`` has ``p = n_features + fit_intercept`` entries, the
  intercept last; ``fit_intercept`` treats it as a feature that is always 1;
* losses are dispatched on an integer code (`LOGISTIC`, `HINGE`, `SQUARED`, the
  ``code`` of `asip.algorithms._objectives.Loss`); their value, derivative and
  conjugate are the scalar functions of `_losses`, never rewritten here;
  penalties are dispatched likewise
  (`L2`, `L1`); the intercept is never penalized;
* randomness comes from an explicit xorshift64* state (`make_rng`), a
  ``uint64`` array of length 1 that the kernel advances in place, so results
  do not depend on which thread runs a kernel;
* gradients are *sums* over the rows used; callers scale them.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp
from numba import njit, types
from numba.extending import overload

from . import _losses as _L

__all__ = [
    "HINGE",
    "L1",
    "L2",
    "LOGISTIC",
    "SQUARED",
    "as_kernel_matrix",
    "batch_grad",
    "column_indices",
    "loss_grad",
    "loss_sum",
    "make_rng",
    "margins",
    "margins_blas",
    "n_rows",
    "power_sqnorm",
    "prox_inplace",
    "rda_steps",
    "rda_steps_lazy",
    "rmatvec",
    "row_sqnorms",
    "saga_steps",
    "saga_steps_lazy",
    "sdca_steps",
    "sgd_steps",
    "sgd_steps_lazy",
    "weighted_gram_matvec",
]

logger = logging.getLogger(__name__)

LOGISTIC, HINGE, SQUARED = _L.LOGISTIC, _L.HINGE, _L.SQUARED
L2, L1 = 0, 1

_JIT = {"nogil": True, "cache": True}

#: CSR products outside the kernels (asip-cocoa's Newton, certificate answers) by `margins` and
#: `rmatvec`, not scipy's or numpy's (``A @ v``, ``A.T @ r``, ``bincount``), which hold the GIL:
#: the estimators' default workers are threads of one process, whose operators then took turns
#: (0: scipy's and numpy's, as before 2026-12-01; `benchmarks/nogil_ab.py`)
NOGIL_SPARSE = 1.0


# ---------------------------------------------------------------------- data form
def as_kernel_matrix(X):
    """``X`` in the form kernels take: a C-contiguous float64 array, or a CSR triple.

    Any scipy.sparse matrix or array becomes ``(data, indices, indptr)`` of a CSR
    matrix (not densified); anything else becomes a dense 2-D float64 array.
    """
    if sp.issparse(X):
        if X.format != "csr":
            X = X.tocsr()
        # X's own arrays, not sp.csr_matrix(X)'s: its prune() copied the data and indices
        # of a block deserialized on a worker (it sizes their uint8 receive buffer in
        # elements): 0.1-4 s of each operator's setup at 15M nonzeros
        nnz = int(X.indptr[-1]) if len(X.indptr) else 0
        return (np.ascontiguousarray(X.data[:nnz], dtype=np.float64),
                column_indices(X.indices[:nnz], X.shape[1]),
                np.ascontiguousarray(X.indptr, dtype=np.int64))
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {X.shape}")
    return X


def column_indices(indices: np.ndarray, n_cols: int) -> np.ndarray:
    """A CSR matrix's column indices as kernels take them: ``uint32`` (``int64`` past 2^32
    columns); scipy's usual ``int32`` is viewed in place, not copied.

    Unsigned indices need no negative-index wraparound in the kernels' inner loops: a CSR
    gradient pass at 500k rows x 30 nonzeros takes ~14% less CPU than on ``int64`` (which
    the indices were widened to before: a 120 MB copy in each operator's setup) and ~25%
    less than on ``int32``. Arithmetic on them in a kernel mixes only with signed ints
    (``uint32 +- int64`` is ``int64`` in numba; never subtract two indices).
    """
    if n_cols > np.iinfo(np.uint32).max:
        out = np.ascontiguousarray(indices, dtype=np.int64)
        low = int(out.min()) if out.size else 0
    elif indices.dtype == np.int32 or indices.dtype == np.uint32:
        out, low = np.ascontiguousarray(indices).view(np.uint32), 0  # a negative one reads huge
    else:
        low = int(indices.min()) if indices.size else 0
        out = np.ascontiguousarray(indices, dtype=np.uint32) if low >= 0 else indices
    # the kernels index without bounds checks: an index outside [0, n_cols) would write
    # outside the gradient (one max pass, ~3 ms at 15M nonzeros)
    high = int(out.max()) if out.size else 0
    if low < 0 or high >= n_cols:
        wrapped = indices.dtype == np.int32 and high >= 2**31  # a negative int32, viewed
        bad = low if low < 0 else (high - 2**32 if wrapped else high)
        raise ValueError(f"CSR column index {bad} is outside [0, {n_cols}): the sparse "
                         "matrix is malformed")
    return out


def make_rng(seed: int | None) -> np.ndarray:
    """A fresh xorshift64* state from ``seed`` (splitmix64-scrambled; never zero)."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    z = (int(seed) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return np.array([z or 0x2545F4914F6CDD1D], dtype=np.uint64)


# ---------------------------------------------------------------------- row primitives
def n_rows(X):
    """Number of rows of a kernel matrix (works in Python and in kernels)."""
    if isinstance(X, tuple):
        return len(X[2]) - 1
    return X.shape[0]


def row_dot(X, i, w):  # pragma: no cover - replaced by the overload inside kernels
    """``a_i^T w[:n_features]``."""
    raise NotImplementedError


def row_axpy(X, i, a, out):  # pragma: no cover
    """``out[:n_features] += a * a_i``."""
    raise NotImplementedError


def row_nnz_sqnorm(X, i):  # pragma: no cover
    """``||a_i||^2``."""
    raise NotImplementedError


def is_csr(X):
    """Whether a kernel matrix is a CSR triple (works in Python and in kernels)."""
    return isinstance(X, tuple)


@overload(is_csr, jit_options=_JIT)
def _ov_is_csr(X):
    if isinstance(X, types.Array):
        return lambda X: False
    return lambda X: True


@overload(n_rows, jit_options=_JIT)
def _ov_n_rows(X):
    if isinstance(X, types.Array):
        return lambda X: X.shape[0]
    return lambda X: len(X[2]) - 1


@overload(row_dot, jit_options=_JIT)
def _ov_row_dot(X, i, w):
    if isinstance(X, types.Array):

        def dense(X, i, w):
            s = 0.0
            for j in range(X.shape[1]):
                s += X[i, j] * w[j]
            return s

        return dense

    def csr(X, i, w):
        data, indices, indptr = X
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * w[indices[k]]
        return s

    return csr


@overload(row_axpy, jit_options=_JIT)
def _ov_row_axpy(X, i, a, out):
    if isinstance(X, types.Array):

        def dense(X, i, a, out):
            for j in range(X.shape[1]):
                out[j] += a * X[i, j]

        return dense

    def csr(X, i, a, out):
        data, indices, indptr = X
        for k in range(indptr[i], indptr[i + 1]):
            out[indices[k]] += a * data[k]

    return csr


@overload(row_nnz_sqnorm, jit_options=_JIT)
def _ov_row_sqnorm(X, i):
    if isinstance(X, types.Array):

        def dense(X, i):
            s = 0.0
            for j in range(X.shape[1]):
                s += X[i, j] * X[i, j]
            return s

        return dense

    def csr(X, i):
        data, indices, indptr = X
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * data[k]
        return s

    return csr


# ---------------------------------------------------------------------- scalar math
@njit(**_JIT)
def _margin(X, i, w, fit_intercept):
    m = row_dot(X, i, w)
    if fit_intercept:
        m += w[w.shape[0] - 1]
    return m


_phi = _L.value  # the loss math lives in `_losses`, shared with the numpy objective
_dphi = _L.deriv
_phi_dphi = _L.value_deriv  # both at once: one exp for the logistic loss


@njit(**_JIT)
def _next_u64(rng):
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return x * np.uint64(0x2545F4914F6CDD1D)


@njit(**_JIT)
def _sgd_step_size(eta0, mu, tau, T):
    """The SGD step after ``T`` steps: 1/(mu t)-type when strongly convex, else 1/sqrt(t)."""
    if mu > 0.0:
        return eta0 / (1.0 + eta0 * mu * T)
    return eta0 / math.sqrt(1.0 + T / tau)


@njit(**_JIT)
def _randint(rng, n):
    return np.int64((_next_u64(rng) >> np.uint64(11)) % np.uint64(n))


@njit(**_JIT)
def _draw_batch(X, y, loss, fit_intercept, x, rng, n, scale, idx, dv):
    """A mini-batch: ``len(idx)`` rows drawn uniformly with replacement into ``idx``, and
    ``dv[k] = scale * phi'(m_k)``, their loss derivatives at ``x`` (all drawn first)."""
    for k in range(idx.shape[0]):
        idx[k] = _randint(rng, n)
    for k in range(idx.shape[0]):
        i = idx[k]
        dv[k] = _dphi(loss, _margin(X, i, x, fit_intercept), y[i]) * scale


@njit(**_JIT)
def prox_inplace(w, n_coef, pen, alpha, step):
    """Apply ``prox_{step R}`` to ``w[:n_coef]`` in place (the intercept is left alone)."""
    t = step * alpha
    if t <= 0.0:
        return
    if pen == L2:
        s = 1.0 / (1.0 + t)
        for j in range(n_coef):
            w[j] *= s
    else:
        for j in range(n_coef):
            v = w[j]
            if v > t:
                w[j] = v - t
            elif v < -t:
                w[j] = v + t
            else:
                w[j] = 0.0


# ---------------------------------------------------------------------- full passes
# On CSR rows a full pass runs as sweeps, each one job: the margins, then the loss at
# every row, then the scatter into the gradient; the same sums in the same order as row
# by row. Numba compiled the fused row loop (margin, the loss's branches, scatter) 1.8x
# slower than these sweeps together (67 against 37 ms at 500k rows x 30 nonzeros, one
# core), and the sweeps count their nonzeros with unsigned integers, so no access pays
# numba's negative-index wraparound (~20% of each sweep).


#: bytes of dense rows `loss_grad` sweeps at a time (in L2 between its margins and scatter)
DENSE_BLOCK_BYTES = 1 << 18


def sweep_margins(X, w, fit_intercept, out, start):  # pragma: no cover - replaced in kernels
    """``out[k] = a_i^T w[:n_features] (+ w[-1] with an intercept)`` for the rows
    ``i = start + k`` (``out`` says how many)."""
    raise NotImplementedError


def sweep_scatter(X, d, fit_intercept, grad, start):  # pragma: no cover
    """``grad += sum_k d_k [a_i, 1]`` over the rows ``i = start + k`` (the 1 only with an
    intercept), rows with ``d_k == 0`` skipped."""
    raise NotImplementedError


@overload(sweep_margins, jit_options=_JIT)
def _ov_sweep_margins(X, w, fit_intercept, out, start):
    if isinstance(X, types.Array):

        def dense(X, w, fit_intercept, out, start):
            for i in range(out.shape[0]):
                out[i] = _margin(X, start + i, w, fit_intercept)

        return dense

    def csr(X, w, fit_intercept, out, start):
        data, indices, indptr = X
        b = w[w.shape[0] - 1] if fit_intercept else 0.0
        for i in range(out.shape[0]):
            s = 0.0
            k, hi = np.uint64(indptr[start + i]), np.uint64(indptr[start + i + 1])
            while k < hi:
                s += data[k] * w[indices[k]]
                k += np.uint64(1)
            if fit_intercept:
                s += b
            out[i] = s

    return csr


@overload(sweep_scatter, jit_options=_JIT)
def _ov_sweep_scatter(X, d, fit_intercept, grad, start):
    if isinstance(X, types.Array):

        def dense(X, d, fit_intercept, grad, start):
            p = grad.shape[0]
            for i in range(d.shape[0]):
                if d[i] != 0.0:
                    row_axpy(X, start + i, d[i], grad)
                    if fit_intercept:
                        grad[p - 1] += d[i]

        return dense

    def csr(X, d, fit_intercept, grad, start):
        data, indices, indptr = X
        p = grad.shape[0]
        for i in range(d.shape[0]):
            a = d[i]
            if a == 0.0:
                continue
            k, hi = np.uint64(indptr[start + i]), np.uint64(indptr[start + i + 1])
            while k < hi:
                grad[indices[k]] += a * data[k]
                k += np.uint64(1)
            if fit_intercept:
                grad[p - 1] += a

    return csr


@njit(**_JIT)
def _value_deriv_sweep(loss, m, y, sw, start, s):
    """Overwrite the margins ``m`` of rows ``start, start + 1, ...`` with
    ``phi'(m_i, y_i)``; return ``s`` plus their ``phi(m_i, y_i)``, added in row order. With
    row weights ``sw`` (not None) both are times ``sw_i``; a row of weight 0 adds nothing
    (derivative 0, its loss not added even if infinite)."""
    for i in range(m.shape[0]):
        f, d = _phi_dphi(loss, m[i], y[start + i])
        if sw is None:  # numba compiles only the branch of the argument's type
            s += f
            m[i] = d
        else:
            a = sw[start + i]
            if a == 0.0:
                m[i] = 0.0
                continue
            s += a * f
            m[i] = d * a
    return s


@njit(**_JIT)
def margins(X, w, fit_intercept):
    """``A w + b`` for every row."""
    out = np.empty(n_rows(X))
    sweep_margins(X, w, fit_intercept, out, 0)
    return out


@njit(**_JIT)
def rmatvec(X, d, n_coef):
    """``A^T d`` over the ``n_coef`` features, summed row by row as scipy's ``A.T @ d`` (bit
    for bit, but for the sign of a zero): scipy's sparse products hold the GIL, so two
    operators that are threads of one process ran theirs one at a time."""
    out = np.zeros(n_coef)
    sweep_scatter(X, d, False, out, 0)
    return out


@njit(**_JIT)
def weighted_gram_matvec(X, d, u, fit_intercept, r, n_coef):
    """``A^T (d * m)`` over the ``n_coef`` features, ``m = A u + b`` (``b = u[-1]`` with an
    intercept), in one pass over the rows: each row's margin and its scatter while the row
    is in cache (`margins` then `rmatvec` read it twice). Leaves ``r = d * m``: the same
    numbers as those two kernels, bit for bit."""
    out = np.zeros(n_coef)
    data, indices, indptr = X
    b = u[u.shape[0] - 1] if fit_intercept else 0.0
    for i in range(r.shape[0]):
        s = 0.0
        lo, hi = np.uint64(indptr[i]), np.uint64(indptr[i + 1])
        k = lo
        while k < hi:
            s += data[k] * u[indices[k]]
            k += np.uint64(1)
        if fit_intercept:
            s += b
        a = d[i] * s
        r[i] = a
        if a == 0.0:
            continue
        k = lo
        while k < hi:
            out[indices[k]] += a * data[k]
            k += np.uint64(1)
    return out


def margins_blas(X, w, fit_intercept):
    """``A w + b`` for every row, as `margins`, but by BLAS (``X @ w``) on a dense array:
    2-4x faster than the kernel at 10,000 x 100 on one core (0.10-0.17 against 0.33 ms);
    a CSR triple keeps the kernel, as fast as scipy's product there. Equal to rounding."""
    if not isinstance(X, np.ndarray):
        return margins(X, w, fit_intercept)
    if X.ndim != 2 or X.dtype != np.float64:
        raise ValueError(f"margins_blas: expected a 2-D float64 array, got {X.dtype} "
                         f"with shape {X.shape}")
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (X.shape[1] + int(fit_intercept),):
        raise ValueError(f"margins_blas: w has shape {w.shape}; expected "
                         f"({X.shape[1] + int(fit_intercept)},) for {X.shape[1]} features"
                         f"{' and an intercept' if fit_intercept else ''}")
    if not fit_intercept:
        return X @ w
    m = X @ w[:-1]
    m += w[-1]
    return m


@njit(**_JIT)
def loss_sum(X, y, w, loss, fit_intercept):
    """``sum_i phi(a_i^T w + b, y_i)``."""
    if is_csr(X):  # the margins first (see `sweep_margins`), then the loss
        m = margins(X, w, fit_intercept)
        s = 0.0
        for i in range(m.shape[0]):
            s += _phi(loss, m[i], y[i])
        return s
    s = 0.0
    for i in range(n_rows(X)):
        s += _phi(loss, _margin(X, i, w, fit_intercept), y[i])
    return s


@njit(**_JIT)
def coef_is_zero(w, fit_intercept):
    """Whether every coefficient (the intercept aside) is 0: then each margin is the
    intercept and a pass needs no reads of ``w`` (a solver's first point, ~40% of a CSR pass)."""
    for j in range(w.shape[0] - int(fit_intercept)):
        if w[j] != 0.0:
            return False
    return True


@njit(**_JIT)
def loss_grad(X, y, w, loss, fit_intercept, grad):
    """Overwrite ``grad`` with ``sum_i phi'(m_i) [a_i, 1]`` and return ``sum_i phi(m_i)``."""
    return loss_grad_sw(X, y, None, w, loss, fit_intercept, grad)


@njit(**_JIT)
def loss_grad_sw(X, y, sw, w, loss, fit_intercept, grad):
    """`loss_grad` with each row's loss and derivative times its weight ``sw[i]``
    (``sw=None``: no weights, `loss_grad` itself): one pass for both, the same sweeps."""
    dv = np.empty(min(n_rows(X), sweep_block(X, w.shape[0])))
    return loss_grad_into(X, y, sw, w, loss, fit_intercept, grad, dv)


@njit(**_JIT)
def sweep_block(X, p):
    """Rows a full pass sweeps at a time: all of them on CSR; dense rows ``DENSE_BLOCK_BYTES``
    of them, so a block read for its margins is still in cache for its scatter."""
    if is_csr(X):
        return max(1, n_rows(X))
    return max(1, DENSE_BLOCK_BYTES // (8 * max(p, 1)))


@njit(**_JIT)
def loss_grad_into(X, y, sw, w, loss, fit_intercept, grad, dv):
    """`loss_grad_sw` with the sweeps' scratch ``dv``: of length ``n_rows(X)`` it keeps every
    row's (weighted) derivative ``dv_i = sw_i phi'(m_i)`` on return (asip-svrg's memory);
    on dense rows it may instead be one block long (`sweep_block`), then it is scratch."""
    grad[:] = 0.0
    s = 0.0
    p = w.shape[0]
    flat = coef_is_zero(w, fit_intercept)  # the same values: the margins are the intercept
    b = w[p - 1] if fit_intercept else 0.0
    n = n_rows(X)
    # the sweeps (see `sweep_margins`) over blocks of rows (`sweep_block`): on CSR one block,
    # random reads of w, then random writes to grad (interleaved, the two ~0.8 MB vectors
    # at 10^5 features also evict each other); dense rows read from memory once, as fast as
    # BLAS's X @ w then X.T @ r
    B = sweep_block(X, p)
    keep = dv.shape[0] == n  # each block in its own rows of dv (else dv is one block)
    for a in range(0, n, B):
        e = min(a + B, n)
        blk = dv[a:e] if keep else dv[: e - a]
        if flat:
            blk[:] = b
        else:
            sweep_margins(X, w, fit_intercept, blk, a)
        s = _value_deriv_sweep(loss, blk, y, sw, a, s)
        sweep_scatter(X, blk, fit_intercept, grad, a)
    return s


@njit(**_JIT)
def batch_grad(X, y, w, idx, loss, fit_intercept, grad):
    """Overwrite ``grad`` with ``sum_{i in idx} phi'(m_i) [a_i, 1]`` (rows may repeat)."""
    grad[:] = 0.0
    p = w.shape[0]
    for k in range(idx.shape[0]):
        i = idx[k]
        d = _dphi(loss, _margin(X, i, w, fit_intercept), y[i])
        if d != 0.0:
            row_axpy(X, i, d, grad)
            if fit_intercept:
                grad[p - 1] += d


@njit(**_JIT)
def row_sqnorms(X):
    """``||a_i||^2`` for every row."""
    n = n_rows(X)
    out = np.empty(n)
    for i in range(n):
        out[i] = row_nnz_sqnorm(X, i)
    return out


@njit(**_JIT)
def finite_sqnorm_stats(X):
    """``[all entries finite (1/0), sum of ||a_i||^2, max of ||a_i||^2]`` of a dense block.

    One pass and no temporaries: the input checks of a fit on a dask array cost one
    read of the data instead of three (isfinite, square, sum).
    """
    finite = 1.0
    total = 0.0
    top = 0.0
    for i in range(X.shape[0]):
        sq = 0.0
        for j in range(X.shape[1]):
            v = X[i, j]
            sq += v * v
        if not np.isfinite(sq):  # rare: a NaN/inf entry, or finite entries whose squares overflow
            for j in range(X.shape[1]):
                if not np.isfinite(X[i, j]):
                    finite = 0.0
        total += sq
        top = max(top, sq)
    return np.array([finite, total, top])


@njit(**_JIT)
def power_sqnorm(X, n_coef, fit_intercept, n_iter, rng):
    """Estimate ``||[A, 1]||_2^2`` (largest eigenvalue of the Gram matrix) by power iteration.

    Converges from below; ``n_iter`` of 30-50 is within a few percent, which is
    all a ``1/L`` step needs (gradient descent is stable for steps up to ``2/L``).
    """
    p = n_coef + (1 if fit_intercept else 0)
    v = np.empty(p)
    for j in range(p):
        v[j] = 1.0 + (_next_u64(rng) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    nv = math.sqrt(np.sum(v * v))
    v /= nv
    lam = 0.0
    n = n_rows(X)
    u = np.empty(p)
    for _ in range(n_iter):
        u[:] = 0.0
        for i in range(n):
            m = _margin(X, i, v, fit_intercept)
            row_axpy(X, i, m, u)
            if fit_intercept:
                u[p - 1] += m
        lam = math.sqrt(np.sum(u * u))
        if lam == 0.0:
            return 0.0
        v = u / lam
    return lam


# ---------------------------------------------------------------------- stochastic loops
@njit(**_JIT)
def _rda_point(G, t, share, C, T, n_coef, pen, alpha, beta0, gamma, damp, anchor, x):
    """The regularized dual-averaging point for the averaged gradient ``share*G/t + C``.

    ``damp > 0`` adds ``(damp/2) ||x - anchor||^2`` to the RDA objective: a prox
    term around a recent iterate that lowers the gain on (stale) gradients
    without the bias a larger prox weight around 0 would add. The intercept is
    not strongly convex even with l2, so its prox weight grows like ``sqrt(T)``
    as in the l1 case (``gamma_b = max(gamma, beta0/4)``): with ``gamma = 0`` it
    was constant-step SGD with a noise floor (log_loss-l2 with an intercept:
    2e-3 against 2e-4 after 1 s in the in-process tests).
    """
    h = (beta0 + gamma * math.sqrt(T)) / T + damp  # weight of the prox terms (1/2)||x||^2
    inv_t = share / t
    p = x.shape[0]
    for j in range(p):
        g = G[j] * inv_t + C[j] - damp * anchor[j]
        if j >= n_coef:  # intercept: unpenalized
            hb = (beta0 + max(gamma, 0.25 * beta0) * math.sqrt(T)) / T + damp
            x[j] = -g / hb
        elif pen == L2:
            x[j] = -g / (alpha + h)
        else:
            if g > alpha:
                x[j] = -(g - alpha) / h
            elif g < -alpha:
                x[j] = -(g + alpha) / h
            else:
                x[j] = 0.0


@njit(**_JIT)
def rda_steps(X, y, loss, fit_intercept, n_steps, batch, rng, G, t, share, C, T_peers,
              pen, alpha, beta0, gamma, damp, anchor, x, xsum, wsum):
    """Regularized dual averaging (Xiao 2010) on mini-batches, ``n_steps`` times.

    The dual is this operator's running sum ``G`` of mini-batch mean loss
    gradients over ``t[0]`` steps; the averaged gradient the primal point uses is
    ``gbar = share * G / t + C`` (``C`` carries the peers' share). Each step:

    1. draw ``batch`` rows uniformly with replacement, ``G += mean phi'(m) [a, 1]``
       evaluated at the current ``x``; ``t += 1``;
    2. ``x = argmin <gbar, x> + R(x) + (beta_T / T) ||x||^2 / 2
       + (damp / 2) ||x - anchor||^2`` in closed form,
       ``beta_T = beta0 + gamma sqrt(T)``, ``T = t + T_peers``
       (l1: a soft threshold of ``gbar`` at ``alpha``: exact zeros);
    3. ``xsum += T x``, ``wsum += T`` (iterate averaging with weights growing like T).
    """
    p = x.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = n_rows(X)
    scale = 1.0 / batch
    idx = np.empty(batch, dtype=np.int64)
    dv = np.empty(batch)
    for _ in range(n_steps):
        _draw_batch(X, y, loss, fit_intercept, x, rng, n, scale, idx, dv)
        for k in range(batch):
            if dv[k] != 0.0:
                row_axpy(X, idx[k], dv[k], G)
                if fit_intercept:
                    G[p - 1] += dv[k]
        t[0] += 1
        T = t[0] + T_peers
        _rda_point(G, t[0], share, C, T, n_coef, pen, alpha, beta0, gamma, damp, anchor, x)
        for j in range(p):
            xsum[j] += T * x[j]
        wsum[0] += T


@njit(**_JIT)
def _positive_range(u, w, a, b):
    """The steps ``tau`` in ``(a, b]`` where ``u / tau + w > 0``, as ``(lo, hi)``: they are ``(lo, hi]``.

    ``u / tau + w`` is monotone in ``tau > 0``, so the set is one interval at an end.
    """
    if u == 0.0:
        return (a, b) if w > 0.0 else (a, a)
    if u > 0.0:  # decreasing: tau < u / (-w)
        if w >= 0.0:
            return a, b
        c = u / -w
        if c > b + 1.0:
            return a, b
        m = np.int64(math.ceil(c)) - 1
        return a, min(b, max(a, m))
    if w <= 0.0:  # increasing towards w <= 0: never positive
        return a, a
    c = -u / w  # positive for tau > c
    if c > b + 1.0:
        return a, a
    m = np.int64(math.floor(c))
    return max(a, min(b, m)), b


@njit(**_JIT)
def _rda_avg(u, v, alpha, pen, a, b, t0, A1, A2):
    """``sum_{tau in (a, b]} T_tau x(tau)`` for a coordinate whose dual stays ``u / tau + v``.

    ``A1``/``A2`` are prefix sums (index ``tau - t0``) of ``T/(k tau)`` and ``T/k``
    with ``k = alpha + h`` (l2) or ``h`` (l1).
    """
    if b <= a:
        return 0.0
    if pen == L2:
        return -(u * (A1[b - t0] - A1[a - t0]) + v * (A2[b - t0] - A2[a - t0]))
    total = 0.0
    lo, hi = _positive_range(u, v - alpha, a, b)  # g > alpha: x = -(g - alpha) / h
    if hi > lo:
        total -= u * (A1[hi - t0] - A1[lo - t0]) + (v - alpha) * (A2[hi - t0] - A2[lo - t0])
    lo, hi = _positive_range(-u, -v - alpha, a, b)  # g < -alpha: x = -(g + alpha) / h
    if hi > lo:
        total -= u * (A1[hi - t0] - A1[lo - t0]) + (v + alpha) * (A2[hi - t0] - A2[lo - t0])
    return total


@njit(**_JIT)
def _rda_coord(u, v, tau, alpha, pen, h):
    """The RDA point of one coefficient with dual ``u / tau + v``."""
    g = u / tau + v
    if pen == L2:
        return -g / (alpha + h)
    if g > alpha:
        return -(g - alpha) / h
    if g < -alpha:
        return -(g + alpha) / h
    return 0.0


@njit(**_JIT)
def rda_steps_lazy(X, y, loss, fit_intercept, n_steps, batch, rng, G, t, share, C, T_peers,
                   pen, alpha, beta0, gamma, damp, anchor, x, xsum, wsum):
    """`rda_steps` for a CSR matrix at O(nnz of the rows) per step instead of O(d).

    The RDA point of a coefficient is a closed form of its own dual entry and the
    step count, so it is computed when a row reads it, not written for all ``d``
    coordinates every step; the ``T``-weighted iterate average of a coefficient
    whose dual entry did not change is a sum of closed forms, kept from per-step
    prefix sums (for l1 over the one interval where the soft threshold is
    active on each side). ``x`` and the averages are made current at the end of
    the call: O(d) once per call. Same iterates as `rda_steps` up to rounding.
    """
    data, indices, indptr = X
    p = x.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = len(indptr) - 1
    scale = 1.0 / batch
    t0 = t[0]
    last = np.full(n_coef, t0, dtype=np.int64)  # step up to which xsum_j is current
    A1 = np.zeros(n_steps + 1)
    A2 = np.zeros(n_steps + 1)
    v = np.empty(n_coef)
    for j in range(n_coef):
        v[j] = C[j] - damp * anchor[j]
    gamma_b = max(gamma, 0.25 * beta0)
    idx = np.empty(batch, dtype=np.int64)
    dv = np.empty(batch)
    h_prev = 0.0
    for r in range(1, n_steps + 1):
        tau_old = t0 + r - 1
        for k in range(batch):
            idx[k] = _randint(rng, n)
        for k in range(batch):
            i = idx[k]
            m = 0.0
            for q in range(indptr[i], indptr[i + 1]):
                j = indices[q]
                if r == 1:
                    xj = x[j]  # the point this call starts from
                else:
                    xj = _rda_coord(share * G[j], v[j], tau_old, alpha, pen, h_prev)
                m += data[q] * xj
            if fit_intercept:
                m += x[p - 1]
            dv[k] = _dphi(loss, m, y[i]) * scale
        for k in range(batch):
            d = dv[k]
            if d != 0.0:
                i = idx[k]
                for q in range(indptr[i], indptr[i + 1]):
                    j = indices[q]
                    a = last[j]
                    if a < tau_old:  # its dual changes now: close the average with the old one
                        xsum[j] += _rda_avg(share * G[j], v[j], alpha, pen, a, tau_old, t0,
                                            A1, A2)
                        last[j] = tau_old
                    G[j] += d * data[q]
                if fit_intercept:
                    G[p - 1] += d
        t[0] += 1
        tau = t[0]
        T = tau + T_peers
        h = (beta0 + gamma * math.sqrt(T)) / T + damp
        k_c = alpha + h if pen == L2 else h
        A1[r] = A1[r - 1] + T / (k_c * tau)
        A2[r] = A2[r - 1] + T / k_c
        h_prev = h
        if fit_intercept:
            hb = (beta0 + gamma_b * math.sqrt(T)) / T + damp
            x[p - 1] = -(G[p - 1] * share / tau + C[p - 1] - damp * anchor[p - 1]) / hb
            xsum[p - 1] += T * x[p - 1]
        wsum[0] += T
    t_end = t[0]
    if n_steps > 0:
        for j in range(n_coef):
            u = share * G[j]
            xsum[j] += _rda_avg(u, v[j], alpha, pen, last[j], t_end, t0, A1, A2)
            x[j] = _rda_coord(u, v[j], t_end, alpha, pen, h_prev)


@njit(**_JIT)
def sgd_steps(X, y, loss, fit_intercept, n_steps, batch, rng, weight, x, S, P, count,
              T_peers, eta0, mu, tau, pen, alpha, xsum, wsum, speed=1.0):
    """Proximal mini-batch SGD that also records every displacement it makes.

    Each step draws ``batch`` rows uniformly with replacement, takes
    ``g = weight * mean phi'(m) [a, 1]`` at the current ``x``, then

    ``x <- prox_{eta R}(x - eta g)``, ``S += eta g``, ``P += eta``, ``count += 1``,

    with ``eta = eta0 / (1 + eta0 mu T)`` when ``mu > 0`` (strongly convex: the
    ``1/(mu T)`` schedule) and ``eta = eta0 / sqrt(1 + T / tau)`` otherwise,
    ``T = count + T_peers``, times ``speed`` (the step rate balance of `_step_share`: it
    scales the gradient and the prox alike). ``S`` and ``P`` are cumulative, so a peer that
    applies the difference between two of them applies exactly these updates,
    none lost or doubled. ``xsum``/``wsum`` keep a T-weighted iterate average.
    """
    p = x.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = n_rows(X)
    idx = np.empty(batch, dtype=np.int64)
    dv = np.empty(batch)
    for _ in range(n_steps):
        T = count[0] + T_peers
        eta = speed * _sgd_step_size(eta0, mu, tau, T)
        c = eta * weight / batch
        _draw_batch(X, y, loss, fit_intercept, x, rng, n, c, idx, dv)
        for k in range(batch):
            if dv[k] != 0.0:
                row_axpy(X, idx[k], -dv[k], x)
                row_axpy(X, idx[k], dv[k], S)
                if fit_intercept:
                    x[p - 1] -= dv[k]
                    S[p - 1] += dv[k]
        prox_inplace(x, n_coef, pen, alpha, eta)
        P[0] += eta
        count[0] += 1
        Tn = T + 1.0
        for j in range(p):
            xsum[j] += Tn * x[j]
        wsum[0] += Tn


@njit(**_JIT)
def _soft_sum(v, a, t, lam, W, LW):
    """``sum_{tau=a+1..t} W_tau' * soft(v, lam_tau - lam_a)`` from prefix sums (``W_tau'`` the weights).

    The soft threshold of an untouched coordinate grows by ``lam_tau - lam_a``;
    its magnitude ``|v| - (lam_tau - lam_a)`` is positive up to the last
    ``tau*`` found by bisection, zero after.
    """
    av = abs(v)
    if av == 0.0 or t <= a:
        return 0.0
    lo, hi = a, t  # lam[lo] - lam[a] < av always; find the largest such index
    if lam[hi] - lam[a] < av:
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if lam[mid] - lam[a] < av:
                lo = mid
            else:
                hi = mid
    total = (av + lam[a]) * (W[lo] - W[a]) - (LW[lo] - LW[a])
    return total if v > 0 else -total


@njit(**_JIT)
def sgd_steps_lazy(X, y, loss, fit_intercept, n_steps, batch, rng, weight, x, S, P, count,
                   T_peers, eta0, mu, tau, pen, alpha, xsum, wsum, speed=1.0):
    """`sgd_steps` for a CSR matrix at O(nnz of the rows) per step instead of O(d).

    The same iterates (up to rounding) by just-in-time updates: with l2 the
    coefficients are kept as ``x = s * u`` and the prox is a change of the scalar
    ``s`` (folded back into ``u`` -- O(d) -- each time it has shrunk 1000-fold,
    rare with the ``1/(mu T)`` steps); with l1 every coordinate remembers the
    step it was last brought up to date and the soft thresholds it missed since
    are applied at once when a row next reads it (consecutive soft thresholds
    compose into one at their sum). The ``T``-weighted iterate average is kept
    lazily too, from per-step prefix sums. Coordinates are made current and
    ``x`` is written back at the end of the call: O(d) once per call.
    """
    data, indices, indptr = X
    p = x.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = len(indptr) - 1
    last = np.zeros(n_coef, dtype=np.int64)  # step up to which coordinate j's average is current
    W = np.zeros(n_steps + 1)  # prefix sums of the averaging weights Tn
    cum = np.zeros(n_steps + 1)  # l2: prefix sums of Tn * s_t;  l1: lam_t (threshold so far)
    LW = np.zeros(n_steps + 1)  # l1: prefix sums of Tn * lam_t
    u = x[:n_coef].copy()  # l2: x = s * u;  l1: the value as of step last_j (before its thresholds)
    s = 1.0
    idx = np.empty(batch, dtype=np.int64)
    dv = np.empty(batch)
    for t in range(1, n_steps + 1):
        T = count[0] + T_peers
        eta = speed * _sgd_step_size(eta0, mu, tau, T)
        c = eta * weight / batch
        for k in range(batch):
            idx[k] = _randint(rng, n)
        # bring the rows' coordinates up to step t - 1, then take all margins at that point
        for k in range(batch):
            i = idx[k]
            for q in range(indptr[i], indptr[i + 1]):
                j = indices[q]
                a = last[j]
                if a < t - 1:
                    if pen == L2:
                        xsum[j] += u[j] * (cum[t - 1] - cum[a])
                    else:
                        xsum[j] += _soft_sum(u[j], a, t - 1, cum, W, LW)
                        th = cum[t - 1] - cum[a]
                        v = u[j]
                        u[j] = v - th if v > th else (v + th if v < -th else 0.0)
                    last[j] = t - 1
        for k in range(batch):
            i = idx[k]
            m = 0.0
            for q in range(indptr[i], indptr[i + 1]):
                m += data[q] * u[indices[q]]
            if pen == L2:
                m *= s
            if fit_intercept:
                m += x[p - 1]
            dv[k] = _dphi(loss, m, y[i]) * c
        for k in range(batch):
            d = dv[k]
            if d != 0.0:
                i = idx[k]
                g = d / s if pen == L2 else d
                for q in range(indptr[i], indptr[i + 1]):
                    j = indices[q]
                    u[j] -= g * data[q]
                    S[j] += d * data[q]
                if fit_intercept:
                    x[p - 1] -= d
                    S[p - 1] += d
        Tn = T + 1.0
        W[t] = W[t - 1] + Tn
        if pen == L2:
            s /= 1.0 + eta * alpha
            cum[t] = cum[t - 1] + Tn * s
            if s < 1e-3:
                # rescale: make every coordinate current, fold s into u. Often enough that the
                # prefix sums of Tn * s keep their precision (their differences are what count)
                for j in range(n_coef):
                    xsum[j] += u[j] * (cum[t] - cum[last[j]])
                    u[j] *= s
                    last[j] = t
                s = 1.0
                cum[t] = 0.0  # every coordinate is current at t: earlier entries are not read
        else:
            cum[t] = cum[t - 1] + eta * alpha
            LW[t] = LW[t - 1] + Tn * cum[t]
        if fit_intercept:
            xsum[p - 1] += Tn * x[p - 1]
        wsum[0] += Tn
        P[0] += eta
        count[0] += 1
    for j in range(n_coef):  # make every coordinate current and write x back
        a = last[j]
        if pen == L2:
            xsum[j] += u[j] * (cum[n_steps] - cum[a])
            x[j] = s * u[j]
        else:
            xsum[j] += _soft_sum(u[j], a, n_steps, cum, W, LW)
            th = cum[n_steps] - cum[a]
            v = u[j]
            x[j] = v - th if v > th else (v + th if v < -th else 0.0)


@njit(**_JIT)
def saga_steps(X, y, loss, fit_intercept, n_steps, rng, w, mem, gbar, n_total, step, pen, alpha):
    """``n_steps`` proximal SAGA steps (Defazio, Bach & Lacoste-Julien 2014) on local rows.

    ``mem[i]`` is the remembered ``phi'`` of local row ``i`` and ``gbar`` the
    remembered *global* average gradient ``(1/n_total) sum_all mem_i [a_i, 1]``.
    A step draws a local row ``i``, sets ``d = phi'(m_i)``, and

    ``w <- prox_{step R}(w - step ((d - mem_i) [a_i, 1] + gbar))``,
    ``gbar += (d - mem_i) [a_i, 1] / n_total``, ``mem_i = d``.
    """
    p = w.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = n_rows(X)
    inv_n = 1.0 / n_total
    for _ in range(n_steps):
        i = _randint(rng, n)
        d = _dphi(loss, _margin(X, i, w, fit_intercept), y[i])
        delta = d - mem[i]
        for j in range(p):
            w[j] -= step * gbar[j]
        if delta != 0.0:
            row_axpy(X, i, -step * delta, w)
            row_axpy(X, i, delta * inv_n, gbar)
            if fit_intercept:
                w[p - 1] -= step * delta
                gbar[p - 1] += delta * inv_n
            mem[i] = d
        prox_inplace(w, n_coef, pen, alpha, step)


@njit(**_JIT)
def _saga_advance(w, g, step, pen, alpha, k):
    """``k`` SAGA steps ``w <- prox_{step R}(w - step g)`` of one coefficient with a fixed ``g``, in O(1).

    l2: an affine recursion with a geometric closed form. l1: a drift of
    ``-step (g +- alpha)`` while the sign holds, at most two changes of regime
    (positive or negative, then zero, where it stays when ``|g| <= alpha``).
    """
    if k <= 0:
        return w
    if pen == L2:
        c = 1.0 / (1.0 + step * alpha)
        if c == 1.0:
            return w - k * step * g
        ck = c ** k
        return ck * w - step * g * c * (1.0 - ck) / (1.0 - c)
    th = step * alpha
    while k > 0:
        if w > 0.0:
            r = step * (g + alpha)  # decrease per step while positive
            if r <= 0.0:
                return w - k * r
            m = min(k, max(np.int64(math.ceil(w / r)) - 1, 0))
            w -= m * r
            k -= m
        elif w < 0.0:
            r = step * (alpha - g)  # increase per step while negative
            if r <= 0.0:
                return w + k * r
            m = min(k, max(np.int64(math.ceil(-w / r)) - 1, 0))
            w += m * r
            k -= m
        elif abs(g) <= alpha:
            return 0.0
        if k == 0:
            return w
        v = w - step * g  # one step by the definition: a change of regime
        w = v - th if v > th else (v + th if v < -th else 0.0)
        k -= 1
    return w


@njit(**_JIT)
def lazy_catch_up(w, g, last, indices, lo, hi, r, step, pen, alpha):
    """Make the coefficients ``indices[lo:hi]`` current before step ``r``: each gets the steps
    ``prox(w_j - step g_j)`` it missed since step ``last[j]``, in closed form (`_saga_advance`)."""
    for q in range(lo, hi):
        j = indices[q]
        if last[j] < r - 1:
            w[j] = _saga_advance(w[j], g[j], step, pen, alpha, r - 1 - last[j])
            last[j] = r - 1


@njit(**_JIT)
def lazy_move_prox(w, g, last, indices, lo, hi, r, step, pen, alpha):
    """Step ``r``'s ``w_j <- prox(w_j - step g_j)`` of the coefficients ``indices[lo:hi]``, once
    per column (``last[j]`` becomes ``r``)."""
    th = step * alpha
    for q in range(lo, hi):
        j = indices[q]
        if last[j] == r - 1:
            v = w[j] - step * g[j]
            if pen == L2:
                w[j] = v / (1.0 + th)
            else:
                w[j] = v - th if v > th else (v + th if v < -th else 0.0)
            last[j] = r


@njit(**_JIT)
def saga_steps_lazy(X, y, loss, fit_intercept, n_steps, rng, w, mem, gbar, n_total, step, pen,
                    alpha):
    """`saga_steps` for a CSR matrix at O(nnz of the row) per step instead of O(d).

    A coefficient off the sampled rows moves by ``prox(w - step gbar_j)`` each
    step with a ``gbar_j`` that does not change, so its missed steps are applied
    at once in closed form (`_saga_advance`) when a row next reads it -- the
    just-in-time updates of scikit-learn's SAG solver. Every coefficient is
    made current at the end of the call (O(d) once per call).
    """
    data, indices, indptr = X
    p = w.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = len(indptr) - 1
    inv_n = 1.0 / n_total
    last = np.zeros(n_coef, dtype=np.int64)  # the step after which w_j is current
    for r in range(1, n_steps + 1):
        i = _randint(rng, n)
        lo, hi = indptr[i], indptr[i + 1]
        lazy_catch_up(w, gbar, last, indices, lo, hi, r, step, pen, alpha)
        m = 0.0
        for q in range(lo, hi):
            m += data[q] * w[indices[q]]
        if fit_intercept:
            m += w[p - 1]
        d = _dphi(loss, m, y[i])
        delta = d - mem[i]
        if delta != 0.0:
            for q in range(lo, hi):
                w[indices[q]] -= step * delta * data[q]
        lazy_move_prox(w, gbar, last, indices, lo, hi, r, step, pen, alpha)  # gbar's move
        if fit_intercept:
            w[p - 1] -= step * gbar[p - 1]
        if delta != 0.0:
            for q in range(lo, hi):
                gbar[indices[q]] += delta * data[q] * inv_n
            if fit_intercept:
                w[p - 1] -= step * delta
                gbar[p - 1] += delta * inv_n
            mem[i] = d
    for j in range(n_coef):
        w[j] = _saga_advance(w[j], gbar[j], step, pen, alpha, n_steps - last[j])


@njit(**_JIT)
def _logistic_dual_root(beta, ym, q):
    """Solve ``log((1-b)/b) - ym - q (b - beta) = 0`` for ``b`` in (0, 1) (safeguarded Newton).

    A warm start (``beta``: the last root) takes 2-3 Newton steps; a step that leaves the
    bracket bisects it."""
    lo, hi = 0.0, 1.0
    b = beta if 1e-12 < beta < 1.0 - 1e-12 else 0.5
    for _ in range(50):
        F = math.log((1.0 - b) / b) - ym - q * (b - beta)
        if F > 0.0:
            lo = b
        else:
            hi = b
        Fp = -1.0 / (b * (1.0 - b)) - q
        nb = b - F / Fp
        if abs(nb - b) <= 1e-13 * max(1.0, b):
            # converged: test before the bracket, whose edge a converged step rounds onto
            # (``nb == b == lo``); bisecting there threw the root away (8.9 logs a row, not 2.5)
            return nb if lo < nb < hi else b
        if not (lo < nb < hi):
            nb = 0.5 * (lo + hi)
        b = nb
    return b


@njit(**_JIT)
def dual_coordinate_step(loss, yi, a, m, q):
    """SDCA's closed-form (hinge, squared) or Newton (logistic) change of one dual ``a``.

    ``m`` is the row's margin at the current local model and ``q`` the row's curvature
    ``||x_i||^2`` times the local scaling; shared by ADMM's local solver and asip-cocoa.
    """
    if loss == HINGE:
        beta = yi * a
        if q > 0.0:
            nb = min(1.0, max(0.0, beta + (1.0 - yi * m) / q))
        else:
            nb = 1.0 if yi * m < 1.0 else 0.0
        return yi * (nb - beta)
    if loss == SQUARED:
        return (yi - m - a) / (1.0 + q)
    beta = yi * a
    return yi * (_logistic_dual_root(beta, yi * m, q) - beta)


@njit(**_JIT)
def sdca_steps(X, y, loss, fit_intercept, n_epochs, rng, dual, x, c_over_rho, sqn):
    """Stochastic dual coordinate ascent (Shalev-Shwartz & Zhang 2013) for a proximal local problem.

    Solves ``min_x c sum_i phi(a_i^T x + b, y_i) + (rho/2) ||x - v||^2`` through its
    dual: ``x = v + (c/rho) sum_i dual_i [a_i, 1]`` with ``dual_i = -phi'(m_i)`` at
    the optimum. ``x`` must enter equal to ``v + (c/rho) sum dual_i [a_i, 1]``
    (a warm start: keep ``dual`` and ``x - v`` between calls); both are
    updated in place. ``sqn[i] = ||[a_i, 1]||^2``. Each of ``n_epochs`` passes
    visits the rows in a fresh random order and maximizes the dual exactly in
    one coordinate: closed form for hinge (a clipped step) and squared loss,
    a safeguarded Newton root for logistic.
    """
    p = x.shape[0]
    n = n_rows(X)
    order = np.arange(n)
    for _ in range(n_epochs):
        for k in range(n - 1, 0, -1):  # Fisher-Yates
            r = _randint(rng, k + 1)
            tmp = order[k]
            order[k] = order[r]
            order[r] = tmp
        for k in range(n):
            i = order[k]
            q = c_over_rho * sqn[i]  # 0 for an empty row: its dual still has an optimum
            m = _margin(X, i, x, fit_intercept)
            a = dual[i]
            delta = dual_coordinate_step(loss, y[i], a, m, q)
            if delta != 0.0:
                dual[i] = a + delta
                s = c_over_rho * delta
                row_axpy(X, i, s, x)
                if fit_intercept:
                    x[p - 1] += s
