"""The ``lp-hinge`` leader's restricted master LP: a working set of rows and columns, solved by IPM.

The master is the hinge-l1 LP restricted to rows ``R`` and columns ``J``, built in its
*dual* form (half the columns of the primal's ``w+ / w-`` split)::

    max  sum_{i in R} s_i   s.t.  -alpha n <= sum_{i in R} s_i y_i x_ij <= alpha n  (j in J),
                                  sum_{i in R} s_i y_i = 0  (with an intercept),  0 <= s <= 1

whose row duals give ``w_J`` (and ``b``) back. It is rebuilt every round from the rows
received so far and solved by HiGHS' interior-point method without crossover: measured
on reuters (2026-11-30, `benchmarks/l1.py`), the warm-started dual simplex needed
~1,500-2,000 iterations a round (as many as a cold start: each round's rows and columns
move the optimum far), where IPM's cost depends on the master's size only. Rows and
columns idle for ``drop_after`` solves in a row (``s_i = 0`` with slack; ``w_j = 0``
with reduced cost inside) leave the working set, each at most once so the generation
still ends; that keeps the master near the optimum's own size (reuters: ~720 rows and
~700 columns, not ~1,500 and ~1,500). When nothing is left to add and the caller still
wants more, `solve` runs crossover: a vertex, the LP optimum to HiGHS' tolerances.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ._base import Problem

__all__ = ["Master", "highspy"]

logger = logging.getLogger(__name__)

_S_ZERO = 1e-10  # an IPM's s_i below this is 0 (its interior point never reaches the bound)
_IDLE_S = 1e-6  # a row is idle when s_i is below this and its margin above 1 + _IDLE_SLACK
_IDLE_SLACK = 1e-4
_IDLE_W = 1e-9  # a column is idle when |w_j| is below this and |reduced cost| inside by _IDLE_SLACK


def highspy():
    """The ``highspy`` module (HiGHS), with a clear error when it is missing."""
    try:
        import highspy as hs
    except ImportError as e:  # pragma: no cover - a dependency of asip
        raise ImportError("solver 'lp-hinge' needs highspy (pip install highspy)") from e
    return hs


def column_lp(M, cost, col_lower, col_upper, row_lower, row_upper):
    """A HiGHS LP ``min cost^T x, row_lower <= M x <= row_upper, col_lower <= x <= col_upper``
    with the constraint matrix ``M`` handed over column-wise (CSC, int32 indices)."""
    hs = highspy()
    M = sp.csc_matrix(M)
    lp = hs.HighsLp()
    lp.num_col_, lp.num_row_ = M.shape[1], M.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, col_lower, col_upper
    lp.row_lower_, lp.row_upper_ = row_lower, row_upper
    lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
    lp.a_matrix_.start_ = M.indptr.astype(np.int32)
    lp.a_matrix_.index_ = M.indices.astype(np.int32)
    lp.a_matrix_.value_ = M.data
    return lp


class Master:
    """Rows ``y_i x_i`` received from the partitions and the working set ``(R, J)`` over them.

    Parameters
    ----------
    problem : Problem
        The hinge-l1 problem (``alpha``, ``n_total``, ``n_features``, ``fit_intercept``).
    threads : int
        HiGHS threads.
    drop_after : int
        Solves a row or column must stay idle before it leaves the working set (0: never).
    """

    def __init__(self, problem: Problem, threads: int = 1, drop_after: int = 3):
        self.pb, self.threads, self.drop_after = problem, int(threads), int(drop_after)
        n, d = problem.n_total, problem.n_features
        self.lam = problem.alpha * n
        self.pos = np.full(n, -1, dtype=np.int64)  # global row id -> its index in the store
        self.blocks: list[sp.csr_matrix] = []  # the received rows, in store order
        self.block_y: list[np.ndarray] = []
        self.store_ids = np.zeros(0, dtype=np.int64)
        self._store = sp.csr_matrix((0, d))
        self._store_y = np.zeros(0)
        self.in_r = np.zeros(n, dtype=bool)
        self.in_j = np.zeros(d, dtype=bool)
        self.idle_r = np.zeros(n, dtype=np.int32)
        self.idle_j = np.zeros(d, dtype=np.int32)
        self.dropped_r = np.zeros(n, dtype=bool)  # left once already: it stays if it returns
        self.dropped_j = np.zeros(d, dtype=bool)
        self.changed = True  # rows or columns added since the last solve
        self.exact = False  # the last solution is a vertex (crossover ran)
        self.iters = 0  # IPM + simplex iterations over all solves
        self.solves = 0

    # ------------------------------------------------------------------ the working set
    @property
    def rows(self) -> np.ndarray:
        """Global ids of the working rows, ascending."""
        return np.flatnonzero(self.in_r)

    @property
    def columns(self) -> np.ndarray:
        """The working columns (features), ascending."""
        return np.flatnonzero(self.in_j)

    def add_columns(self, new: np.ndarray) -> None:
        """Features ``new`` join the working set."""
        new = np.asarray(new, dtype=np.int64)
        if new.size and not self.in_j[new].all():
            self.in_j[new] = True
            self.idle_j[new] = 0
            self.changed = True

    def add_rows(self, ids: np.ndarray, data: sp.csr_matrix, y: np.ndarray) -> None:
        """Rows ``y_i x_i`` (global ids ``ids``, labels ``y``) join the working set.

        A row seen before (sent again by a restarted partition, or returning after it
        left) keeps its stored copy."""
        ids = np.asarray(ids, dtype=np.int64)
        new = self.pos[ids] < 0
        if new.any():
            sel = np.flatnonzero(new)
            self.pos[ids[sel]] = self.store_ids.size + np.arange(sel.size)
            self.store_ids = np.concatenate([self.store_ids, ids[sel]])
            self.blocks.append(sp.csr_matrix(data[sel]))
            self.block_y.append(np.asarray(y, dtype=np.float64)[sel])
        fresh = ids[~self.in_r[ids]]
        if fresh.size:
            self.in_r[fresh] = True
            self.idle_r[fresh] = 0
            self.changed = True

    def _stored(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """All received rows as one matrix (stacked once per new block, not per round)."""
        if self.blocks:
            self._store = sp.vstack([self._store, *self.blocks], format="csr")
            self._store_y = np.concatenate([self._store_y, *self.block_y])
            self.blocks, self.block_y = [], []
        return self._store, self._store_y

    # ------------------------------------------------------------------ solving
    def solve(self, exact: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Solve the master; ``exact``: with crossover (a vertex).

        Returns ``w`` (``b`` last), the working rows' global ids, their ``s``, and the
        global ids of the rows that left the working set after this solve (their
        partitions may send them again)."""
        store, store_y = self._stored()
        R, J = self.rows, self.columns
        idx = self.pos[R]
        rows, y = store[idx], store_y[idx]  # taken once: the solve and the idle test share it
        M = rows[:, J].tocsc() if J.size else sp.csc_matrix((R.size, 0))
        w_j, b, s = self._run(M, y, exact)
        pb = self.pb
        w = np.zeros(pb.p)
        w[J] = w_j
        if pb.fit_intercept:
            w[-1] = b
        self.changed, self.exact = False, exact
        left = self._drop_idle(rows, y, R, J, w, s, M)
        return w, R, s, left

    def _run(self, M: sp.csc_matrix, y: np.ndarray, exact: bool):
        """HiGHS on the dual form; returns ``w_J``, ``b`` and ``s``."""
        hs = highspy()
        r, c = M.shape
        if r == 0:
            return np.zeros(c), 0.0, np.zeros(0)
        Mt = sp.csc_matrix(M.T)  # the LP's columns are the rows s_i; its rows the features
        lower, upper = np.full(c, -self.lam), np.full(c, self.lam)
        if self.pb.fit_intercept:  # b's row: sum s_i y_i = 0
            Mt = sp.csc_matrix(sp.vstack([Mt, sp.csr_matrix(y[None, :])]))
            lower, upper = np.append(lower, 0.0), np.append(upper, 0.0)
        lp = column_lp(Mt, -np.ones(r), np.zeros(r), np.ones(r), lower, upper)
        h = hs.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", self.threads)
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "on" if exact else "off")
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
        if status != hs.HighsModelStatus.kOptimal:  # an imprecise IPM: the simplex finishes
            logger.warning("lp-hinge: master IPM ended with status %s; re-solving by simplex",
                           h.modelStatusToString(status))
            h.setOptionValue("solver", "simplex")
            h.run()
        info = h.getInfo()
        self.iters += int(info.ipm_iteration_count) + int(info.simplex_iteration_count)
        self.solves += 1
        sol = h.getSolution()
        s = np.clip(np.asarray(sol.col_value), 0.0, 1.0)
        s[s < _S_ZERO] = 0.0
        duals = -np.asarray(sol.row_dual)  # max sum s <=> min -sum s: w is minus the row duals
        return duals[:c], (float(duals[c]) if self.pb.fit_intercept else 0.0), s

    def _drop_idle(self, rows, y, R, J, w, s, M) -> np.ndarray:
        """Idle rows and columns leave the working set (each once); the rows' global ids."""
        if self.drop_after <= 0:
            return np.zeros(0, dtype=np.int64)
        margin = rows @ w[: self.pb.n_features]
        if self.pb.fit_intercept:
            margin = margin + y * w[-1]
        idle = (s < _IDLE_S) & (margin > 1.0 + _IDLE_SLACK)
        self.idle_r[R] = np.where(idle, self.idle_r[R] + 1, 0)
        reduced = np.abs(M.T @ s) if J.size else np.zeros(0)
        idle = (np.abs(w[J]) < _IDLE_W) & (reduced < self.lam * (1.0 - _IDLE_SLACK))
        self.idle_j[J] = np.where(idle, self.idle_j[J] + 1, 0)
        out_r = R[(self.idle_r[R] >= self.drop_after) & ~self.dropped_r[R]]
        out_j = J[(self.idle_j[J] >= self.drop_after) & ~self.dropped_j[J]]
        self.in_r[out_r], self.dropped_r[out_r] = False, True
        self.in_j[out_j], self.dropped_j[out_j] = False, True
        return out_r
