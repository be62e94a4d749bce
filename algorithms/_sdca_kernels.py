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

import numpy as np
from numba import njit

from . import _losses as _L

from ._kernels import _margin, _randint, dual_coordinate_step, n_rows, row_axpy

__all__ = ["SHRINK_EPS", "SHRINK_PASSES", "cocoa_steps", "conjugate_sum", "hinge_steps_shrinking",
           "new_shrink_state"]

logger = logging.getLogger(__name__)

_JIT = {"nogil": True, "cache": True}


@njit(**_JIT)
def _shuffle(order, count, rng):
    """Fisher-Yates over ``order[:count]``: a fresh pass order."""
    for j in range(count - 1, 0, -1):
        r = _randint(rng, j + 1)
        tmp = order[j]
        order[j] = order[r]
        order[r] = tmp


@njit(**_JIT)
def _apply_dual_step(X, i, delta, ss, scale, fit_intercept, dual, w, u):
    """``a_i += delta``, ``w += ss delta x_i`` (the view, own changes counted ``sigma``
    times), ``u += scale delta x_i`` (the own share); the intercept is the last entry."""
    if delta != 0.0:
        dual[i] += delta
        row_axpy(X, i, ss * delta, w)
        row_axpy(X, i, scale * delta, u)
        if fit_intercept:
            p = w.shape[0]
            w[p - 1] += ss * delta
            u[p - 1] += scale * delta


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
    n = n_rows(X)
    ss = sigma * scale
    for _ in range(n_steps):
        k = cursor[0]
        if k == 0:
            _shuffle(order, n, rng)  # a fresh pass order
        i = order[k]
        cursor[0] = k + 1 if k + 1 < n else 0
        q = ss * sqn[i]
        m = _margin(X, i, w, fit_intercept)
        delta = dual_coordinate_step(loss, y[i], dual[i], m, q)
        _apply_dual_step(X, i, delta, ss, scale, fit_intercept, dual, w, u)


#: projected-gradient spread (margin units, liblinear's ``eps``) at which the rows not
#: shrunk count as converged: all rows come back, and the next spread is a tenth of it
SHRINK_EPS = 0.1
#: passes over the rows not shrunk after which all rows come back anyway: a peer's push can
#: move a shrunk row's margin back inside, which no local test sees
SHRINK_PASSES = 8
#: indices into the float state of `hinge_steps_shrinking`
_PG_MAX_OLD, _PG_MIN_OLD, _PG_MAX, _PG_MIN, _EPS, _SHRUNK_PASSES, _FRESH = range(7)


def new_shrink_state():
    """The float state of `hinge_steps_shrinking` before its first step: no threshold yet
    (the first pass visits every row), spread target `SHRINK_EPS`."""
    return np.array([math.inf, -math.inf, -math.inf, math.inf, SHRINK_EPS, 0.0, 1.0])


@njit(**_JIT)
def hinge_steps_shrinking(X, y, fit_intercept, n_steps, rng, order, cursor, dual, sqn, scale,
                          sigma, w, u, sh):
    """`cocoa_steps` for the hinge loss with shrinking (Hsieh et al. 2008, liblinear's dual CD).

    ``order[:cursor[1]]`` are the active rows; a pass visits them in a fresh random order.
    A row whose dual sits at a bound (``b = y a`` at 0 or 1) with a gradient
    ``G = y m - 1`` pointing out of the box by more than last pass's largest projected
    gradient (``sh``: ``G > PGmax`` at 0, ``G < PGmin`` at 1) is swapped out of the
    active part: on a9a, ijcnn1 and the synthetic sets more than 99% of the optimal duals
    are at a bound, so late passes touch a few percent of the rows. Every row comes back
    (``cursor[1] = n``) when the active rows' projected-gradient spread falls below
    ``sh[_EPS]`` (which then shrinks tenfold) or after `SHRINK_PASSES` shrunk passes.
    Shrinking only skips rows: the duals, ``w`` and ``u`` are exactly those of the steps
    taken, so the certificate needs nothing. ``n_steps`` counts row visits (a margin each).
    """
    n = n_rows(X)
    ss = sigma * scale
    for _ in range(n_steps):
        k = cursor[0]
        active = cursor[1]
        if k >= active:  # the end of a pass over the active rows
            spread = sh[_PG_MAX] - sh[_PG_MIN]
            sh[_SHRUNK_PASSES] += 1.0
            if spread <= sh[_EPS] or sh[_SHRUNK_PASSES] >= SHRINK_PASSES:
                if spread <= sh[_EPS] and active == n:
                    sh[_EPS] = max(0.1 * sh[_EPS], 1e-12)  # converged to eps on all rows
                active = n  # every row comes back; the next pass shrinks nothing
                sh[_PG_MAX_OLD] = math.inf
                sh[_PG_MIN_OLD] = -math.inf
                sh[_SHRUNK_PASSES] = 0.0
            else:
                sh[_PG_MAX_OLD] = sh[_PG_MAX] if sh[_PG_MAX] > 0.0 else math.inf
                sh[_PG_MIN_OLD] = sh[_PG_MIN] if sh[_PG_MIN] < 0.0 else -math.inf
            sh[_PG_MAX] = -math.inf
            sh[_PG_MIN] = math.inf
            cursor[1] = active
            cursor[0] = 0
            k = 0
            sh[_FRESH] = 1.0
        if sh[_FRESH] != 0.0:
            sh[_FRESH] = 0.0
            _shuffle(order, active, rng)  # over the active rows
        i = order[k]
        yi = y[i]
        m = _margin(X, i, w, fit_intercept)
        g = yi * m - 1.0
        b = yi * dual[i]
        if (b <= 0.0 and g > sh[_PG_MAX_OLD]) or (b >= 1.0 and g < sh[_PG_MIN_OLD]):
            # at a bound and pushed further out of the box: shrink
            active -= 1
            order[k] = order[active]
            order[active] = i
            cursor[1] = active
            cursor[0] = k  # the swapped-in row is visited next
            continue
        pg = 0.0 if (b <= 0.0 and g > 0.0) or (b >= 1.0 and g < 0.0) else g
        if pg > sh[_PG_MAX]:
            sh[_PG_MAX] = pg
        if pg < sh[_PG_MIN]:
            sh[_PG_MIN] = pg
        cursor[0] = k + 1
        q = ss * sqn[i]
        delta = dual_coordinate_step(_L.HINGE, yi, dual[i], m, q)
        _apply_dual_step(X, i, delta, ss, scale, fit_intercept, dual, w, u)


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
