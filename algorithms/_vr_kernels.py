"""Numba kernels of asip-svrg: the anchor pass and proximal SVRG steps (dense and O(nnz) CSR).

An SVRG step on row ``i`` uses the row's remembered derivative ``mem_i = s_i phi'(m_i)`` at
the anchor point and a fixed full-gradient estimate ``mu``::

    w <- prox_{step R}(w - step ((s_i phi'(a_i^T w + b) - mem_i) [a_i, 1] + mu))

``s_i`` is the row weight (an empty ``sw`` array: all ones). Between two samples a
coefficient off the sampled rows only moves by ``prox(w_j - step mu_j)`` with a constant
``mu_j``, so on CSR data those moves are applied in closed form when a row next reads the
coefficient (`_kernels._saga_advance`, scikit-learn's just-in-time updates): O(nnz) a step.
With l2 the moves of every coefficient are one affine map, so `svrg_steps_scaled` keeps
``w = A v + B mu`` with two scalars ``A, B`` instead: no per-coefficient clock, no powers,
two arrays read a nonzero (at d = 10^6 the kernel is bound by those cache misses).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _kernels as K

__all__ = ["anchor_pass", "svrg_steps", "svrg_steps_lazy", "svrg_steps_scaled"]

_JIT = dict(nogil=True, cache=True)


@njit(**_JIT)
def _weight(sw, i):
    return 1.0 if sw.shape[0] == 0 else sw[i]


@njit(**_JIT)
def anchor_pass(X, y, sw, a, loss, fit_intercept, mem, grad):
    """At the anchor ``a``: ``mem_i = s_i phi'(m_i)``, ``grad = sum_i mem_i [a_i, 1]``;
    returns the weighted loss sum ``sum_i s_i phi(m_i)``. A full pass as `_kernels`' sweeps
    (`K.loss_grad_into`, ``mem`` its derivative array); a row of weight 0 keeps ``mem_i = 0``."""
    if sw.shape[0] == 0:
        return K.loss_grad_into(X, y, None, a, loss, fit_intercept, grad, mem)
    return K.loss_grad_into(X, y, sw, a, loss, fit_intercept, grad, mem)


@njit(**_JIT)
def svrg_steps(X, y, sw, loss, fit_intercept, n_steps, rng, w, mem, mu, step, pen, alpha):
    """``n_steps`` proximal SVRG steps on uniformly drawn local rows (dense: O(p) a step)."""
    p = w.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = K.n_rows(X)
    for _ in range(n_steps):
        i = K._randint(rng, n)
        delta = _weight(sw, i) * K._dphi(loss, K._margin(X, i, w, fit_intercept), y[i]) - mem[i]
        for j in range(p):
            w[j] -= step * mu[j]
        if delta != 0.0:
            K.row_axpy(X, i, -step * delta, w)
            if fit_intercept:
                w[p - 1] -= step * delta
        K.prox_inplace(w, n_coef, pen, alpha, step)


@njit(**_JIT)
def svrg_steps_lazy(X, y, sw, loss, fit_intercept, n_steps, rng, w, mem, mu, step, pen, alpha):
    """`svrg_steps` on a CSR matrix at O(nnz of the row) a step; ``w`` is current on return."""
    data, indices, indptr = X
    p = w.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = len(indptr) - 1
    last = np.zeros(n_coef, dtype=np.int64)  # the step after which w_j is current
    for r in range(1, n_steps + 1):
        i = K._randint(rng, n)
        lo, hi = indptr[i], indptr[i + 1]
        K.lazy_catch_up(w, mu, last, indices, lo, hi, r, step, pen, alpha)
        m = 0.0
        for q in range(lo, hi):
            m += data[q] * w[indices[q]]
        if fit_intercept:
            m += w[p - 1]
        delta = _weight(sw, i) * K._dphi(loss, m, y[i]) - mem[i]
        if delta != 0.0:
            for q in range(lo, hi):
                w[indices[q]] -= step * delta * data[q]
        K.lazy_move_prox(w, mu, last, indices, lo, hi, r, step, pen, alpha)  # mu's move
        if fit_intercept:
            w[p - 1] -= step * (mu[p - 1] + delta)
    for j in range(n_coef):
        w[j] = K._saga_advance(w[j], mu[j], step, pen, alpha, n_steps - last[j])


@njit(**_JIT)
def svrg_steps_scaled(X, y, sw, loss, fit_intercept, n_steps, rng, w, mem, mu, step, alpha):
    """`svrg_steps` with l2 on a CSR matrix, O(nnz of the row) a step, in the representation
    ``w[:n_coef] = A v + B mu``: a step's shrink and ``mu`` move of every coefficient,
    ``w <- c (w - step mu)`` with ``c = 1 / (1 + step alpha)``, is ``A <- c A``,
    ``B <- c (B - step)``; a row's gradient term moves ``v`` by ``-step delta a_i / A``.
    ``w`` is current on return (O(d) once per call)."""
    data, indices, indptr = X
    p = w.shape[0]
    n_coef = p - (1 if fit_intercept else 0)
    n = len(indptr) - 1
    c = 1.0 / (1.0 + step * alpha)
    vm = np.empty((n_coef, 2))  # v and mu side by side: one cache line a nonzero
    for j in range(n_coef):
        vm[j, 0] = w[j]  # A = 1, B = 0
        vm[j, 1] = mu[j]
    a_s, b_s = 1.0, 0.0
    b = w[p - 1] if fit_intercept else 0.0
    for _ in range(n_steps):
        i = K._randint(rng, n)
        lo, hi = indptr[i], indptr[i + 1]
        mv = 0.0
        mm = 0.0
        for q in range(lo, hi):
            j = indices[q]
            mv += data[q] * vm[j, 0]
            mm += data[q] * vm[j, 1]
        m = a_s * mv + b_s * mm + b
        delta = _weight(sw, i) * K._dphi(loss, m, y[i]) - mem[i]
        if delta != 0.0:
            g = step * delta / a_s
            for q in range(lo, hi):
                vm[indices[q], 0] -= g * data[q]
        if fit_intercept:
            b -= step * (mu[p - 1] + delta)
        a_s *= c
        b_s = c * (b_s - step)
        if a_s < 1e-150:  # fold the scale back into v before it underflows
            for j in range(n_coef):
                vm[j, 0] = a_s * vm[j, 0] + b_s * vm[j, 1]
            a_s, b_s = 1.0, 0.0
    for j in range(n_coef):
        w[j] = a_s * vm[j, 0] + b_s * vm[j, 1]
    if fit_intercept:
        w[p - 1] = b
