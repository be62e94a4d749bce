"""Local Newton steps for asip-cocoa's ``local_solver="newton"``: a primal method.

Partition ``j`` keeps its own iterate ``w_j`` and minimizes a model of the global
objective that is exact on its own rows and quadratic on every peer's::

    F_j(v) = L_j(v) + sum_{k != j} [g_k^T v + (c_k / 2) (v - w_k)^T H_j (v - w_k)] + R(v)

with ``L_k(v) = (1/n) sum_{i in P_k} phi_i(x_i^T v)``, ``g_k = grad L_k(w_k)`` the peer's
gradient at its latest point ``w_k`` (pushed as ``u_k = -g_k / alpha``, which is also its
dual share for the certificate: ``a_i = -phi_i'(x_i^T w_k)``), ``H_j`` this partition's
Hessian of ``L_j`` standing in for a peer's, scaled by ``c_k = n_k / n_j``. At a common
point every model's gradient is the true one, so the fixed point is the optimum; for
i.i.d. rows ``H_j`` differs from the peers' by ``O(sqrt(d / n_j))``, so a round contracts
the error by about that factor whatever ``max ||x_i||^2 / (alpha n)`` is (the
DANE / GIANT behaviour; SDCA's rate is set by that ratio). Peers not heard from yet (a
straggler before it first wakes) are modelled by the rows heard from: the loss terms are
scaled by ``n / n_heard``, so every partition has the same fixed point, the optimum on the
rows heard from (``missing="self"``: by this partition, ``g_k = c_k grad L_j(w_j)``, a
fixed point of its own per partition).

Each partition pushes its ``H_j`` (p x p) with its round's total whenever it recomputes
it, and a peer's pushed Hessian replaces the stand-in ``c_k H_j``: with every model
exact to second order a round is a Newton step on the whole objective from stale
points, which stays stable when partitions differ (rows sorted by label). ``H_j`` is
taken on at most ``hessian_rows`` random rows (dense data; rescaled; CSR: every row, in
`_cd_kernels.csr_weighted_gram`; smooth losses where cheap, dense or CSR, `FULL_GRAM`: on
every row at the round's end point, `LocalNewton.end_hessian`) and reused while no margin
moved more than `REFRESH`;
each Newton iteration is one data pass with a backtracking line search on ``F_j``'s exact
change along the step, in the loop `_newton_loop.newton` shared with ``"newton-cg"``
(`_newton_cg`), which differs in the inner solve and the peers' model. ``R`` is
``(alpha/2) ||v||^2`` over the features: the intercept, if any, is unpenalized, as in
scikit-learn and asip's `Objective` (its Hessian entry is the loss curvature alone).

Hinge: ``phi`` is the smoothed hinge of width ``mu`` (`_losses.smoothed`; curvature
``1/mu`` on the band, plus ``floor`` times the majorizer's off it, `_cd_kernels.row_curvature`),
whose ``-phi_mu'`` are feasible hinge duals; asip-cocoa lowers ``mu`` as the certified
hinge gap falls (`_hinge_smoothing.next_mu`, `set_mu`) and stops on the true hinge gap.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from . import _cd_kernels as C
from . import _kernels as K
from . import _losses as _L
from . import _newton_cg as _CG
from . import _newton_loop as _NL
from ._newton_loop import FLAT_MOVE
from ._hinge_smoothing import curvature_floor, on_band

if TYPE_CHECKING:
    from ._base import Problem

__all__ = ["LocalNewton", "choose_local_solver", "gram_cost", "sdca_damping"]

logger = logging.getLogger(__name__)

#: the largest model (features, intercept included) for which "auto" picks Newton: its p x p
#: Hessian is built (on a row sample), factored and pushed to the peers when it changes
MAX_NEWTON_FEATURES = 500
#: "auto" takes newton-cg (wide CSR, smooth losses) only with at least this many nonzeros a
#: coefficient: a round pushes the point (O(p) where dense) and takes a few O(nnz) passes;
#: 100k x 10^6 (3 a column) certified 1e-3 later than SDCA, 6.1 s vs 4.6 s (load 7)
MIN_CG_NNZ_PER_FEATURE = 10
#: hinge only: the least fraction of nonzeros of CSR data for which "auto" picks the smoothed
#: hinge's Newton (the smooth losses take Newton on CSR of any density: `choose_local_solver`)
MIN_NEWTON_DENSITY = 0.25
#: SDCA's damping ``sigma' mean ||x_i||^2 / (alpha n)`` (`sdca_damping`) above which "auto"
#: picks the smoothed hinge's Newton (the smooth losses take Newton whatever the damping):
#: SDCA's passes grow with it (CoCoA+'s sigma' = K damps every coordinate step), Newton's
#: rounds do not. a9a at 16 partitions: 224 (alpha = 1/n), 69 (1e-4), 0.07 (0.1)
MAX_SDCA_DAMPING = 1.0
#: reuse a round's Hessian while no margin moved more than this since it was taken
REFRESH = 0.5
#: smooth losses, ``hessian_rows=None``: a partition's Hessian is taken on every row, at the end of
#: a round (`LocalNewton.end_hessian`), when its Gram's products (`gram_cost`: dense ``rows x p^2``,
#: CSR the rows' squared nonzeros summed) are at most this (10,000 x 100: a ~3.5 ms Gram on one
#: core; a9a's 16,280-row half, ~14 nonzeros a row: 3.6e6, ~2 ms). A sampled Hessian's error
#: (~sqrt(p / rows)) bounds what a round gains on the peers' models: 2 partitions of
#: synthetic-logistic:20000 (p = 100, 2,000 sampled rows), parallel lock-step rounds to 1e-6, 4 -> 2
#: at alpha 0.1, 4 -> 3 at 1/n; ijcnn1 at 1/n 11 -> 8 (`benchmarks/newton_exchanges.py`). On the 2 x
#: 1 cluster (`benchmarks/fit_timeline.py`, alternating with ``hessian_rows=2000``, 2026-12-01
#: 04:19-04:33 UTC, load 2-5) the busiest partition's rounds to 1e-6 fell 3 -> 2 (alpha 0.1, every
#: fit), 4 -> 3 (1/n), ijcnn1 1/n 7 -> 5; the first round's CPU rose ~4.5 -> ~8.7 ms (the every-row
#: Gram), and the wall time to 1e-6 was unchanged within the noise (medians of 16, 62.4 vs 62.3 ms
#: after the first step at load 2.5). CSR took its Hessian on every row already, but at a round's
#: start, and reused it while no margin moved by `REFRESH`: a9a at alpha 0.1 pushed the zero model's
#: from its first round, the peers' models of its round-1 point were off by that much, and round 2
#: gained 14x (1.7e-3 -> 1.25e-4, 1e-6 at exchange 3); with the end point's, 1.7e-3 -> 4.3e-7 (1e-6
#: at exchange 2; 8 partitions 3 -> 2), alpha 1/n 10 -> 9 exchanges (4 partitions: 12 -> 8), 1e-4
#: 9 -> 8 (4: 12 -> 10; 8: 10 -> 8) (`benchmarks/newton_exchanges.py`). Synthetic CSR already
#: below 1e-5 after round 1 ended round 2 2-30x higher (e.g. 2.8e-10 -> 1.3e-9) and round 3 lower
FULL_GRAM = 1e8
#: CSR takes the end point's Hessian too (under `FULL_GRAM`); 0: its start-of-round one, as
#: before 2026-12-01 (`benchmarks/newton_ab.py --knob CSR_END_HESSIAN`)
CSR_END_HESSIAN = 1.0
#: a dense Gram on every row is summed over blocks of this many rows: each block's scaled
#: copy is ~1.6 MB at p = 100, not the partition's 8 MB (10,000 x 100); in the workers the
#: first round's CPU had a tail of 15-24 ms in 3 of 10 fits with one copy, 1 of 12 in blocks
#: (median 8.7 vs 9.4 ms; synthetic-logistic:20000, 2 x 1 cluster, load 2.5-3.4)
GRAM_BLOCK = 2048
#: `full_hessian` with at least this many coefficients: the dense Gram in float32 (BLAS
#: sgemm on a float32 copy of the rows, each block's product summed in float64), ~3x less
#: CPU than float64's (synthetic-logistic:20000, 10,000 x 100: 1.3 vs 3.8 ms on one core);
#: relative error ~1e-7 of ``||H||`` (1e-6 of its least eigenvalue there). The Hessian only
#: shapes the steps (every gradient is exact), and a factor that fails falls back to float64
#: (`LocalNewton.solve`). Narrower models keep float64: their Gram costs little either way
F32_MIN_P = 64
#: ... and where a peer's float32 Hessian leaves the model indefinite, its diagonal raised by
#: this share of its largest entry (float32's rounding, ~1e-7, with room)
F32_LIFT = 1e-6


def sdca_damping(sigma: float, row_scale: float, alpha: float, n: int) -> float:
    """``sigma' mean ||x_i||^2 / (alpha n)``: how much CoCoA+'s SDCA steps are damped.

    A coordinate step's quadratic term is ``q_i = sigma' ||x_i||^2 / (alpha n)``; while it
    is above the loss's own curvature scale (1), steps are small and the passes SDCA needs
    grow about in proportion (Ma et al. 2015: ``(1 + sigma' R^2 / (alpha n)) log(1/eps)``).
    """
    return float(sigma) * float(row_scale) / max(float(alpha) * float(n), 1e-300)


def choose_local_solver(choice: str, loss: int, p: int, X=None, damping: float | None = None) -> str:
    """``"newton"`` or ``"sdca"`` for ``local_solver=choice`` (``"auto"`` decides).

    ``"auto"``: Newton for the smooth losses when the model has at most
    `MAX_NEWTON_FEATURES` coefficients, dense or CSR of any density (``X``: a kernel matrix;
    None: dense), the Hessian-free ``"newton-cg"`` for wider CSR; SDCA otherwise (hinge,
    wide dense data). Sparse data once kept SDCA below
    `MIN_NEWTON_DENSITY` nonzeros (a partition's Hessian is blind to rare features its peers
    have); since every partition pushes its Hessian that blind spot lasts one round, and
    Newton reached 1e-6 and the certified stop sooner than SDCA on every sparse set measured:
    a9a (11% nonzeros) and a power-law synthetic (300 columns, the rarest in ~12 of 20000
    rows, under one a partition at 16), at 2, 4, 8 and 16 partitions and alpha 0.1, 1e-4
    and 1/n (`benchmarks/sparse_newton.py`, medians of 2: a9a alpha 0.1, the one a9a case
    the old rule gave SDCA, 1e-6 at 0.034 / 0.038 / 0.070 / 0.075 s vs 0.147 / 0.212 / 0.215
    / 0.974 s at 2 / 4 / 8 / 16 partitions, certified 0.046-0.389 s vs 0.158-1.298 s; the
    synthetic at alpha 0.1 likewise but at 16 partitions, certified 0.745 s vs 0.670 s,
    1e-6 0.191 s vs 0.283 s; 2026-11-30 16:25-16:29 UTC, load 12-16).
    Wider smooth models on CSR with at least `MIN_CG_NNZ_PER_FEATURE` nonzeros a coefficient
    take ``"newton-cg"`` (`_newton_cg`: no p x p matrix; dense data wider than
    `MAX_NEWTON_FEATURES` keeps SDCA, not measured). Measured against SDCA at 2 partitions,
    side by side (`benchmarks/sparse_newton.py`, 2026-11-30): reuters log_loss-l2 (41
    nonzeros a column) alpha 0.1, 1e-6 at 0.012 s vs 0.055 s (20:08 UTC, load 5.6, medians
    of 3; 0.017 / 0.028 s vs 0.107 / 0.093 s at load 11-15), alpha 1/n 0.132 s vs 0.123 s
    (0.186 / 0.431 s vs 0.189 / 0.955 s loaded); 400k x 20k (600 a column, alpha 1e-6)
    certified 1e-6 at 6.0 / 10.6 s vs 8.9 / 15.8 s (20:09 UTC, load 5-7); 100k x 10^6 (3 a
    column, alpha 1/n) certified 1e-3 at 6.1 / 6.2 s vs 5.4 / 3.9 s (20:10 UTC, load 7-8;
    10.6 / 10.3 s vs 10.9 / 13.3 s at load 16): SDCA keeps it.
    ``"newton"`` also takes hinge (its smoothed surrogate); "auto" picks it for hinge only
    where SDCA is damped (``damping`` above `MAX_SDCA_DAMPING`) on dense data (or CSR with
    `MIN_NEWTON_DENSITY`) with at most `MAX_NEWTON_FEATURES` coefficients. Measured on 2
    partitions, hinge-l2: undamped (alpha 0.1, damping < 0.1) Newton reached 1e-6 later
    than SDCA on synthetic-logistic:20000 (never in 8 s vs 1.80 s), ijcnn1 (3.83 s vs
    0.21 s) and a9a (3.44 s vs 1.03 s) (2026-11-30 08:09-08:19 UTC, load ~20); damped,
    SDCA never reached 1e-6 in 3 s where Newton did: skin_nonskin (damping ~4: features
    0-255, label-sorted rows; Newton 0.76 / 1.21 s, admm not 1e-3) and
    synthetic-logistic:4000 at alpha 0.01 (Newton 0.63 / 0.69 s; SDCA 1e-3 at 0.19 /
    0.15 s, then stuck) (2026-11-30 10:53-10:57 UTC, load 2.1-3.8).
    """
    if choice not in ("auto", "newton", "newton-cg", "sdca"):
        raise ValueError(f"local_solver must be 'auto', 'newton', 'newton-cg' or 'sdca', got "
                         f"{choice!r}")
    smooth = loss in (K.LOGISTIC, K.SQUARED)
    if choice == "newton-cg" and not smooth:
        raise ValueError(f"local_solver='newton-cg' needs log_loss or squared_error, got loss "
                         f"code {loss!r}")
    if choice == "newton" and not (smooth or loss == K.HINGE):  # hinge: smoothed, `LocalNewton`
        raise ValueError(f"local_solver='newton' needs log_loss, squared_error or hinge, got "
                         f"loss code {loss!r}")
    if choice != "auto":
        return choice
    dense_enough = True
    if isinstance(X, tuple):
        rows = max(len(X[2]) - 1, 1)
        dense_enough = len(X[0]) >= MIN_NEWTON_DENSITY * rows * p
    damped = damping is not None and damping > MAX_SDCA_DAMPING
    if loss == K.HINGE:  # the smoothed hinge: only where SDCA is damped (see above)
        return "newton" if p <= MAX_NEWTON_FEATURES and dense_enough and damped else "sdca"
    if smooth and p > MAX_NEWTON_FEATURES:  # wide: Hessian-free on CSR (measured), else SDCA
        cg = isinstance(X, tuple) and len(X[0]) >= MIN_CG_NNZ_PER_FEATURE * p
        return "newton-cg" if cg else "sdca"
    return "newton" if smooth else "sdca"


def gram_cost(X, p: int) -> float:
    """The products of a Gram on every row of ``X`` (dense, or CSR as its kernel triple):
    ``rows x p^2`` dense, the rows' squared nonzero counts summed on CSR."""
    if isinstance(X, tuple):
        nnz = np.diff(np.asarray(X[2], dtype=np.int64)).astype(np.float64)
        return float(nnz @ nnz)
    return float(len(X)) * p * p


class LocalNewton:
    """The partition's rows as a (dense or CSR) matrix plus the round's Newton solve.

    ``mu``: hinge's smoothing width (None for the smooth losses), lowered by `set_mu`;
    ``floor``: hinge's off-band curvature share (`_hinge_smoothing.curvature_floor`)."""

    def __init__(self, X, y, loss: int, fit_intercept: bool, p: int, n_total: int,
                 alpha: float, hessian_rows: int, seed, mu: float | None = None,
                 floor: float = 0.0, hessian_free: bool = False, full_hessian: bool = False):
        if hessian_free and loss == K.HINGE:
            raise ValueError("local_solver='newton-cg' needs log_loss or squared_error")
        self.sparse = isinstance(X, tuple)
        d = p - 1 if fit_intercept else p
        if self.sparse:
            data, indices, indptr = X
            self.A = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, d))
            self.csr = (np.ascontiguousarray(data, dtype=np.float64),
                        np.ascontiguousarray(indices, dtype=np.int64),
                        np.ascontiguousarray(indptr, dtype=np.int64))
            # the rows as the nogil kernels take them (`_kernels.NOGIL_SPARSE`), else None
            self.kx = ((self.csr[0], K.column_indices(indices, d), self.csr[2])
                       if K.NOGIL_SPARSE else None)
        else:
            self.A, self.kx = X, None
        self.y = np.ascontiguousarray(y, dtype=np.float64)  # (numba's kernels take it)
        self.loss, self.fi, self.p = loss, fit_intercept, p
        self.n, self.alpha = float(n_total), float(alpha)
        # the penalty's diagonal: alpha on the features, 0 on an (unpenalized) intercept
        self.pen = np.full(p, float(alpha))
        if fit_intercept:
            self.pen[-1] = 0.0
        self.hessian_rows = int(hessian_rows)
        self.rng = np.random.default_rng(seed)
        self.hinge = loss == K.HINGE
        self.mu = float(mu if mu is not None else 1.0) if self.hinge else None
        self.floor = float(floor)
        self.cache = None  # (H, the margins where it was taken, mu, on every row)
        # the round's Hessian retaken on every row at its end point (`end_hessian`)
        self.full_hessian = bool(full_hessian and not self.hinge
                                 and (CSR_END_HESSIAN or not self.sparse))
        # dense: its Grams in float32 (`F32_MIN_P`): the rows' float32 copy, made at the
        # first one (None whenever f32 is off: `solve`'s float64 retake drops both)
        self.f32 = self.full_hessian and not self.sparse and p >= F32_MIN_P
        self.A32 = None
        self.last = None  # (v, margins, phi', gradient, loss sum) where the last solve ended
        self.passes = 0.0
        self.trials = 0  # line-search trials (a loss pass each), all solves together
        # local_solver="newton-cg" (`_newton_cg`): no p x p matrix; CG's settings, the
        # squared entries (CSR, for its preconditioner), the damping and its last observation
        self.hessian_free = bool(hessian_free)
        self.cg_rtol, self.cg_max = _CG.CG_RTOL, _CG.CG_MAX
        self.sq, self.lam, self.cg_prev = None, 0.0, None

    @classmethod
    def for_partition(cls, problem: Problem, X, y, params: dict, seed,
                      hessian_free: bool = False) -> LocalNewton:
        """The solver asip-cocoa runs on rows ``X, y`` (`_cocoa.init`'s and `warm_up`'s one
        argument list): ``problem``'s loss and sizes, ``params``' ``hessian_rows`` (None:
        ``max(2000, 4 p)``, and with a smooth loss every row at a round's end while
        `gram_cost` is at most `FULL_GRAM`: `end_hessian`), ``mu0`` and ``curv_floor``
        (`curvature_floor`); ``hessian_free``: ``local_solver="newton-cg"`` (`_newton_cg`)."""
        p = problem.p
        full = (params["hessian_rows"] is None and problem.loss in (K.LOGISTIC, K.SQUARED)
                and gram_cost(X, p) <= FULL_GRAM)
        return cls(X, y, problem.loss, problem.fit_intercept, p, problem.n_total,
                   problem.alpha, params["hessian_rows"] or max(2000, 4 * p), seed,
                   mu=params["mu0"], floor=curvature_floor(params["curv_floor"], False),
                   hessian_free=hessian_free, full_hessian=full)

    def hessian_products(self) -> float:
        """The products of one own Hessian (`gram_cost` of the rows it is taken on): what a
        round's Hessian work costs beside a data pass; 0 for newton-cg (none) and hinge
        without an off-band curvature floor (its band varies). Hinge with a floor takes every
        row, as the smooth losses (`_hinge_weights`): counted, its rounds take 4 Newton
        iterations where their passes are cheap (`_cocoa.newton_iterations`)."""
        if self.hessian_free or self.hinge and self.floor == 0.0:
            return 0.0
        if self.sparse:
            return gram_cost(self.csr, self.p)
        rows = len(self.y) if self.full_hessian else min(len(self.y), self.hessian_rows)
        return float(rows) * self.p * self.p

    def set_mu(self, mu: float) -> bool:
        """Hinge: adopt the smoothing ``mu`` if it is smaller (mu only decreases, so every
        partition ends on the same surrogate); True when it changed. The last solve's
        derivatives and the Hessian were taken at the old ``mu``: both are retaken."""
        if not self.hinge or not mu < self.mu:
            return False
        self.mu, self.last = float(mu), None
        return True

    def _value(self, m):
        """``sum_i phi(m_i)`` (hinge: the smoothed ``phi_mu``)."""
        if self.hinge:
            return _L.rows(_L.ROW_SMOOTH_VALUE, self.loss, m, self.y, self.mu).sum()
        return _L.rows(_L.ROW_VALUE, self.loss, m, self.y).sum()

    def value_deriv(self, m):
        """``(sum_i phi(m_i), phi'(m_i) per row)`` in one pass, bit for bit `_value` and
        `deriv` (`_losses.value_deriv_rows`)."""
        v, d = np.empty(len(self.y)), np.empty(len(self.y))
        _L.value_deriv_rows(self.loss, np.ascontiguousarray(m, dtype=np.float64), self.y,
                            self.mu if self.hinge else 1.0, v, d)
        return v.sum(), d

    def deriv(self, m):
        """``phi'(m_i)`` per row (hinge: ``phi_mu'``, so ``-phi_mu'`` are feasible duals)."""
        if self.hinge:
            return _L.rows(_L.ROW_SMOOTH_DERIV, self.loss, m, self.y, self.mu)
        return _L.rows(_L.ROW_DERIV, self.loss, m, self.y)

    # the design matrix with the constant column, without building it; CSR by the nogil
    # kernels (`_kernels.NOGIL_SPARSE`), the same sums in the same order as scipy's
    def _mv(self, v):
        if self.sparse and self.kx is not None:
            return K.margins(self.kx, np.ascontiguousarray(v, dtype=np.float64), self.fi)
        m = self.A @ (v[:-1] if self.fi else v)
        return m + v[-1] if self.fi else m

    def _rmv(self, r):
        if self.sparse and self.kx is not None:
            g = K.rmatvec(self.kx, np.ascontiguousarray(r, dtype=np.float64),
                          self.p - int(self.fi))
        else:
            g = self.A.T @ r
        return np.append(g, r.sum()) if self.fi else np.asarray(g)

    def _hessian(self, m):
        """``(1/n) X^T diag(phi'') X`` over this partition: the loss's own curvature weights
        (`_smooth_weights`, `_hinge_weights`) through the one Gram (`_gram_of`)."""
        if self.hinge:
            return self._gram_of(self._hinge_weights(m))
        return self._gram_of(self._smooth_weights(m))

    def _smooth_weights(self, m, every_row: bool = False):
        """Smooth losses: ``phi''(m_i) / n`` on at most ``hessian_rows`` random rows (dense
        data; rescaled), 0 on the others. CSR (rare features need each one) or
        ``every_row``: every row."""
        nk = len(self.y)
        if self.sparse or every_row or nk <= self.hessian_rows:
            return _L.rows(_L.ROW_CURVATURE, self.loss, m, self.y) * (1.0 / self.n)
        rows = np.sort(self.rng.choice(nk, self.hessian_rows, replace=False))
        c = np.zeros(nk)
        c[rows] = _L.rows(_L.ROW_CURVATURE, self.loss, m[rows], self.y[rows]) * (
            (nk / self.hessian_rows) / self.n)
        return c

    def _hinge_weights(self, m):
        """Hinge: ``phi_mu''(m_i) / n``: ``1/mu`` on every band row (few once mu is small,
        and each one matters: a sample missing some steered Newton wrong, measured 20-30x
        more iterations), plus ``floor`` times the majorizer's off it, on at most
        ``hessian_rows`` of those rows (dense data; rescaled), 0 on the others. One
        curvature pass (`_cd_kernels.row_curvature`); the band only where a sample is due."""
        nk = len(self.y)
        c = np.empty(nk)
        C.row_curvature(self.loss, np.ascontiguousarray(m, dtype=np.float64), self.y, self.mu,
                        np.empty(nk), c, self.floor)
        self.passes += 0.5  # the curvature pass over every row
        if not self.sparse and self.floor > 0.0 and nk > self.hessian_rows:
            z = 1.0 - self.y * m  # off the band: the majorizer's rows
            off = np.flatnonzero(~on_band(z, self.mu) & (c > 0.0))
            if len(off) > self.hessian_rows:
                # the off-band majorizer share on a row sample (rescaled), every band row exact
                keep = self.rng.choice(len(off), self.hessian_rows, replace=False)
                scale = len(off) / self.hessian_rows
                drop = np.ones(len(off), dtype=bool)
                drop[keep] = False
                c[off[drop]] = 0.0
                c[off[keep]] *= scale
        return np.divide(c, self.n, out=c)

    def _gram_of(self, c):
        """``X~^T diag(c) X~`` over the rows with ``c_i != 0`` (``X~``: ``X`` with the
        intercept's column of ones, if any; ``c >= 0``, the ``1/n`` and a row sample's
        rescaling included): every loss's Hessian. CSR: one pass of the nogil kernel over
        `csr`, which skips the rows with ``c_i = 0`` (scipy's product: ~10x the CPU); dense:
        a BLAS rank-k update on those rows (copied out only when some are left out)."""
        nk = len(c)
        H = np.zeros((self.p, self.p))
        if self.sparse:
            C.csr_weighted_gram(*self.csr, np.ascontiguousarray(c, dtype=np.float64),
                                self.fi, H)
            used = np.count_nonzero(c)
        else:  # in blocks of rows: a small scaled copy each (`GRAM_BLOCK`); float32
            # products from the rows' float32 copy (`F32_MIN_P`), made at the first Gram
            rows = np.flatnonzero(c)
            used = len(rows)
            if self.f32 and self.A32 is None:
                self.A32 = np.ascontiguousarray(self.A, dtype=np.float32)
            A, A32, cr = self.A, self.A32, c
            if used < nk:
                A, cr = np.ascontiguousarray(A[rows]), c[rows]
                A32 = None if A32 is None else A32[rows]
            for a in range(0, used, GRAM_BLOCK):
                C.dense_weighted_gram(A[a:a + GRAM_BLOCK], cr[a:a + GRAM_BLOCK], self.fi, H,
                                      None if A32 is None else A32[a:a + GRAM_BLOCK])
        self.passes += used / max(nk, 1)
        return H

    def hessian_at(self, m):
        """This partition's loss Hessian near the margins ``m``: the last one while no margin
        moved by more than `REFRESH` since it was taken (logistic curvature then changed by
        at most e^REFRESH; squared loss: always), else a new one. Hinge: a new one when
        ``mu`` changed, a margin moved by more than ``REFRESH mu`` or a row entered or left
        the band (`_same_band`: a row at its edge crosses with a far smaller move, and a
        Hessian without a band row's ``1/mu``, pushed to the peers, held their models of this
        partition wrong along that row for good: the rounds circled the optimum ~1e-10 apart
        and the fit ran to ``max_time``). Returns ``(H, new)``."""
        c = self.cache
        if c is not None and c[2] == self.mu and (self.loss == K.SQUARED or np.max(
                np.abs(m - c[1]), initial=0.0) <= REFRESH * (self.mu if self.hinge else 1.0)
                ) and (not self.hinge or self._same_band(m, c[1])):
            return c[0], False
        self.cache = (self._hessian(m), m, self.mu, self.sparse or len(self.y) <= self.hessian_rows)
        return self.cache[0], True

    def _same_band(self, m, m_old) -> bool:
        """Hinge: whether the same rows lie on the curved band (``0 < 1 - y_i m_i < mu``) at
        margins ``m`` as at ``m_old``."""
        return np.array_equal(on_band(1.0 - self.y * m, self.mu),
                              on_band(1.0 - self.y * m_old, self.mu))

    def end_hessian(self):
        """``full_hessian``: the Hessian a round pushes, retaken on every row at the round's
        end point (where the next round starts, so it is the one that round reuses) unless
        the cached one is such a Hessian within `REFRESH` of it (squared loss: any). Peers
        model this partition by it: a sampled one's error, ~sqrt(p / hessian_rows), or a
        start point's (CSR: the zero model's, from a first round), held their rounds to a
        linear rate (see `FULL_GRAM`). Returns ``(H, new)``."""
        c, m = self.cache, self.last[1]
        if c[3] and (self.loss == K.SQUARED or np.max(np.abs(m - c[1]), initial=0.0) <= REFRESH):
            return c[0], False
        self.cache = (self._gram_of(self._smooth_weights(m, every_row=True)), m, self.mu, True)
        return self.cache[0], True

    def end_point(self, w):
        """``(margins, duals, g)`` of the last solve's end point when it is ``w`` (the
        margins ``x_i^T w``, the duals ``-phi'`` there and their ``sum_i a_i x_i`` over the
        features, all kept by the round), else None: a certificate answer at the own point
        then takes no data pass (`_cocoa._parts`). None for hinge (its answer's duals are
        the smoothed ones at ``mu``) and where clipping moved a dual (``g`` would not sum it)."""
        last = self.last
        if self.hinge or last is None or not np.array_equal(last[0], w):
            return None
        _, m, r, g_loss, _ = last
        dual = _L.rows(_L.ROW_DUAL_CLIP, self.loss, -r, self.y)
        if not np.array_equal(dual, -r):
            return None
        return m, dual, -g_loss[:self.p - int(self.fi)]

    def solve(self, w0, peers, c_missing: float, max_iter: int, rtol: float,
              missing: str = "rescale"):
        """Newton on ``F_j`` from ``v = w0``.

        ``peers``: ``(g_k, w_k, H_k, c_k)`` per peer heard from (``H_k`` None: modelled by
        ``c_k H_j``; a pair ``(sum H_k, sum H_k w_k)``: peers already summed, ``g_k`` and
        ``c_k`` their sums, ``w_k`` unused); ``c_missing``: the ``sum c_k`` of the peers not heard from, modelled
        (``missing``) by the rows heard from, the loss terms scaled by ``n / n_heard``
        (``"rescale"``: every partition's model then has the same fixed point, the optimum
        on the rows heard from), or by this partition at ``w0`` (``"self"``: a fixed point of
        its own per partition). ``max_iter=0``: no step, only ``H_j`` and the duals at
        ``w0``. Returns ``(v, duals -phi'(x_i^T v), A_j^T duals, H_j, new)``, ``new`` when
        ``H_j`` was recomputed (``full_hessian``: ``H_j`` at ``v``, on every row, `end_hessian`).
        """
        if self.hessian_free:
            return _CG.solve_cg(self, w0, peers, c_missing, max_iter, rtol, missing)
        m, reused = _NL.start(self, w0)
        H, new = self.hessian_at(m)
        scale, c_missing = _NL.rescaled(peers, c_missing, missing)
        try:
            S, Sb, G, chol = self._factored(H, w0, peers, scale, c_missing, max_iter)
        except np.linalg.LinAlgError:
            factored = None
            if self.f32:  # the own float32 Gram's rounding (`F32_MIN_P`): float64 from now on
                logger.info("float32 Hessian not positive definite: retaken in float64")
                self.f32, self.A32, self.cache = False, None, None
                H, new = self.hessian_at(m)
                try:
                    factored = self._factored(H, w0, peers, scale, c_missing, max_iter)
                except np.linalg.LinAlgError:
                    pass
            # else a peer's float32 Hessian: the model's diagonal lifted by that rounding
            S, Sb, G, chol = factored or self._factored(H, w0, peers, scale, c_missing,
                                                        max_iter, F32_LIFT)
        v, dual, share = _NL.newton(
            self, _Dense(S, Sb, G, self.pen, chol), w0.copy(), m, reused, self.n / scale,
            c_missing, max_iter, rtol, FLAT_MOVE * (self.mu if self.hinge else 1.0))
        if self.full_hessian and max_iter > 0:
            H, new_end = self.end_hessian()
            new = new or new_end
        return v, dual, share, H, new

    def _factored(self, H, w0, peers, scale: float, c_missing: float, max_iter: int,
                  lift: float = 0.0):
        """The peers' quadratic models summed (``S = sum H_k``, ``Sb = sum H_k w_k``,
        ``G = sum g_k``, scaled by ``scale``) and the Cholesky factor of
        ``scale H + S + diag(pen)`` (None for ``max_iter=0``), its diagonal raised by
        ``lift`` times its largest entry (the steps' model only), for `solve`."""
        S, Sb, G = c_missing * H, c_missing * (H @ w0), np.zeros_like(w0)
        for g_k, w_k, H_k, c_k in peers:
            if isinstance(H_k, tuple):  # peers summed by the caller
                S += H_k[0]
                Sb += H_k[1]
            else:
                Hk = c_k * H if H_k is None else H_k
                S += Hk
                Sb += Hk @ w_k
            G += g_k
        if scale != 1.0:  # the loss terms scaled by n / n_heard
            S, Sb, G = S * scale, Sb * scale, G * scale
        M = scale * H + S
        M[np.diag_indices_from(M)] += self.pen
        if self.hinge or lift:  # hinge: an unpenalized intercept off the band has no curvature
            M[np.diag_indices_from(M)] += max(lift, 1e-9) * max(np.max(np.diag(M)), 1e-300)
        chol = sla.cho_factor(M, check_finite=False) if max_iter > 0 else None
        return S, Sb, G, chol


class _Dense:
    """`_newton_loop.Model` of the dense `LocalNewton`: the peers' quadratics summed
    (``S = sum H_k``, ``Sb = sum H_k w_k``, ``G = sum g_k``) and the penalty ``pen``; the
    inner solve is the Cholesky factor ``chol`` of ``scale H_j + S + diag(pen)``."""

    def __init__(self, S, Sb, G, pen, chol):
        self.S, self.Sb, self.G, self.pen, self.chol = S, Sb, G, pen, chol

    def rest(self, v, m):
        Sv, pv = self.S @ v, self.pen * v
        mag = (abs(self.G @ v) + abs(0.5 * (v @ Sv)) + abs(self.Sb @ v)
               + abs(0.5 * (v @ pv)))
        return self.G + Sv - self.Sb + pv, mag

    def solve(self, g):
        return -sla.cho_solve(self.chol, g, check_finite=False)

    def curvature(self, step, dm):
        return step @ (self.S @ step) + step @ (self.pen * step)
