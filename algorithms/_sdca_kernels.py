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

__all__ = ["BLOCK_ROWS", "SHRINK_EPS", "SHRINK_PASSES", "cocoa_steps", "conjugate_sum", "hinge_steps_blocks",
           "hinge_steps_shrinking", "new_shrink_state", "shuffled_rows"]

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
            active = _end_of_pass(sh, active, n)
            cursor[1] = active
            cursor[0] = 0
            k = 0
            sh[_FRESH] = 1.0
        if sh[_FRESH] != 0.0:
            sh[_FRESH] = 0.0
            _shuffle(order, active, rng)  # over the active rows
        i = order[k]
        m = _margin(X, i, w, fit_intercept)
        if _shrinks(y[i], dual[i], m, sh):  # at a bound and pushed further out of the box
            active -= 1
            order[k] = order[active]
            order[active] = i
            cursor[1] = active
            cursor[0] = k  # the swapped-in row is visited next
            continue
        cursor[0] = k + 1
        _hinge_step(X, y, i, m, ss, scale, fit_intercept, dual, sqn, w, u)


@njit(**_JIT)
def _end_of_pass(sh, active, n):
    """Shrinking's bookkeeping at the end of a pass over ``active`` rows: the next pass's
    thresholds, and its active count (``n`` when every row comes back)."""
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
    return active


@njit(**_JIT)
def _shrinks(yi, ai, m, sh):
    """Whether a row at margin ``m`` with dual ``ai`` leaves the active rows: its dual at a
    bound and its gradient pointing out of the box by more than last pass's spread; else
    its projected gradient widens this pass's spread."""
    g = yi * m - 1.0
    b = yi * ai
    if (b <= 0.0 and g > sh[_PG_MAX_OLD]) or (b >= 1.0 and g < sh[_PG_MIN_OLD]):
        return True
    pg = 0.0 if (b <= 0.0 and g > 0.0) or (b >= 1.0 and g < 0.0) else g
    if pg > sh[_PG_MAX]:
        sh[_PG_MAX] = pg
    if pg < sh[_PG_MIN]:
        sh[_PG_MIN] = pg
    return False


@njit(**_JIT)
def _hinge_step(X, y, i, m, ss, scale, fit_intercept, dual, sqn, w, u):
    """The closed-form hinge step on row ``i`` at margin ``m`` (`cocoa_steps`' math)."""
    delta = dual_coordinate_step(_L.HINGE, y[i], dual[i], m, ss * sqn[i])
    _apply_dual_step(X, i, delta, ss, scale, fit_intercept, dual, w, u)


#: rows a block of `hinge_steps_blocks` (read front to back; the blocks in a fresh order)
BLOCK_ROWS = 32


@njit(**_JIT)
def hinge_steps_blocks(X, y, fit_intercept, n_steps, rng, order, blocks, cursor, dual, sqn,
                       scale, sigma, w, u, sh):
    """`hinge_steps_shrinking` on rows stored in a random order (`shuffled_rows`), a pass
    visiting blocks of `BLOCK_ROWS` consecutive active rows in a fresh random order: a
    block's rows are read front to back, which the prefetcher follows (a fresh random row
    order each pass read every row's cache lines cold: on a9a's and ijcnn1's partitions a
    step took 2.3-3.7x as long), and the passes still differ (one fixed order for every
    pass took 4x the exchanges to 1e-6 on a9a, lock-step).

    ``order[:cursor[1]]`` are the active rows, increasing; a row shrunk in this pass is
    marked ``-1 - i`` and the marked ones leave at the pass's end (all rows come back as
    ``arange(n)``); ``cursor[0]`` counts the pass's visits, ``blocks`` holds its block
    order. Same steps, same shrinking rule and thresholds, so the same duals' certificate."""
    n = n_rows(X)
    ss = sigma * scale
    done = 0
    while done < n_steps:
        j = cursor[0]
        active = cursor[1]
        n_blocks = (active + BLOCK_ROWS - 1) // BLOCK_ROWS
        if j >= n_blocks * BLOCK_ROWS:  # the end of a pass over the active rows
            kept = 0
            for k in range(active):
                if order[k] >= 0:
                    order[kept] = order[k]
                    kept += 1
            active = _end_of_pass(sh, kept, n)
            if active == n and kept < n:
                for k in range(n):
                    order[k] = k
            cursor[1] = active
            j = 0
            n_blocks = (active + BLOCK_ROWS - 1) // BLOCK_ROWS
        if j == 0:
            for b in range(n_blocks):
                blocks[b] = b
            _shuffle(blocks, n_blocks, rng)
        cursor[0] = j + 1
        k = blocks[j // BLOCK_ROWS] * BLOCK_ROWS + j % BLOCK_ROWS
        if k >= cursor[1]:  # past the last, partial block
            continue
        done += 1
        i = order[k]
        m = _margin(X, i, w, fit_intercept)
        if _shrinks(y[i], dual[i], m, sh):
            order[k] = -1 - i
            continue
        _hinge_step(X, y, i, m, ss, scale, fit_intercept, dual, sqn, w, u)


def shuffled_rows(X, y, sqn, seed):
    """A copy of a partition's rows ``(X, y, sqn)`` in one random order (``X`` a kernel matrix:
    dense, or a CSR triple whose dtypes it keeps), for `hinge_steps_blocks`. Sums over
    the rows (the certificate's) are the same on the copy, with the duals in its order."""
    perm = np.random.default_rng(seed).permutation(len(y))
    if not isinstance(X, tuple):
        return np.ascontiguousarray(X[perm]), y[perm], sqn[perm]
    values, indices, indptr = X
    lengths = np.diff(indptr)[perm]
    out_ptr = np.zeros(len(indptr), dtype=indptr.dtype)
    np.cumsum(lengths, out=out_ptr[1:])
    # each entry's source position: its row's start in X plus its offset within the row
    src = np.repeat(indptr[:-1][perm] - out_ptr[:-1], lengths) + np.arange(out_ptr[-1])
    return (values[src], indices[src], out_ptr), y[perm], sqn[perm]


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
