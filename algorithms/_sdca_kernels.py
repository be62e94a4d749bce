"""Numba kernels of asynchronous CoCoA+: SDCA steps on a partition's duals, and dual sums.

The duals ``a_i`` of the rows are tied to the model by ``w = (1/(alpha n)) sum_i a_i x_i``
(``x_i = [a_i, 1]`` with an intercept: a constant feature). Conventions as in
`asip.algorithms._kernels` (dense or CSR kernel matrices, loss codes, xorshift
rng, ``nogil``); the coordinate maximizations are the ones of `_kernels.sdca_steps`
(closed form for hinge and squared loss, a safeguarded 1-D Newton root for
logistic), here against the CoCoA+ local subproblem with aggregation ``sigma``.
"""

from __future__ import annotations

import logging
import math

from numba import njit

from . import _losses as _L

from ._kernels import _margin, _randint, dual_coordinate_step, n_rows, row_axpy

__all__ = ["cocoa_steps", "conjugate_sum"]

logger = logging.getLogger(__name__)

_JIT = {"nogil": True, "cache": True}


@njit(**_JIT)
def cocoa_steps(X, y, loss, fit_intercept, n_steps, rng, order, cursor, dual, sqn, scale, sigma,
                w, u):
    """``n_steps`` SDCA steps on the CoCoA+ local subproblem of one partition.

    Visits the rows in ``order`` from ``cursor[0]`` on, reshuffling ``order`` at the
    start of every pass, so time slices of any length continue one random pass.
    For row ``i`` with ``q = sigma * scale * ||x_i||^2`` (``scale = 1/(alpha n)``)
    and margin ``m = x_i^T w`` it maximizes exactly over ``delta``::

        -phi*(-(a_i + delta)) - m delta - (q/2) delta^2

    then ``a_i += delta``, ``w += sigma * scale * delta * x_i`` (the local view,
    own changes counted ``sigma`` times: CoCoA+ adding) and ``u += scale * delta * x_i``
    (the partition's own share of the model). O(nnz of the row) per step.
    """
    p = w.shape[0]
    n = n_rows(X)
    ss = sigma * scale
    for _ in range(n_steps):
        k = cursor[0]
        if k == 0:
            for j in range(n - 1, 0, -1):  # Fisher-Yates: a fresh pass order
                r = _randint(rng, j + 1)
                tmp = order[j]
                order[j] = order[r]
                order[r] = tmp
        i = order[k]
        cursor[0] = k + 1 if k + 1 < n else 0
        q = ss * sqn[i]
        m = _margin(X, i, w, fit_intercept)
        a = dual[i]
        delta = dual_coordinate_step(loss, y[i], a, m, q)
        if delta != 0.0:
            dual[i] = a + delta
            row_axpy(X, i, ss * delta, w)
            row_axpy(X, i, scale * delta, u)
            if fit_intercept:
                w[p - 1] += ss * delta
                u[p - 1] += scale * delta


@njit(**_JIT)
def conjugate_sum(loss, y, dual):
    """``sum_i phi_i*(-a_i)``: hinge ``-b``, logistic ``b log b + (1-b) log(1-b)`` (``b = y a``),
    squared ``a^2/2 - a y``; ``inf`` when a dual is outside its domain (``b`` not in [0, 1]).

    The conjugate itself is `_losses.conjugate`, the one definition the kernels share."""
    s = 0.0
    for i in range(dual.shape[0]):
        c = _L.conjugate(loss, -dual[i], y[i])
        if c == math.inf:
            return math.inf
        s += c
    return s
