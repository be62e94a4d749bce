"""The exact hinge-l2 (linear SVM) and hinge-l1 optima when the features are few, whatever the rows.

The primal ``f(w, b) = (1/n) sum max(0, 1 - y_i (a_i^T w + b)) + (alpha/2) ||w||^2``
has only ``d (+1)`` unknowns; its difficulty is the ``n`` kinks. Rows far inside
the margin (``m_i < 1``) contribute the *linear* term ``1 - m_i`` and rows far
outside (``m_i > 1``) contribute 0, so only the rows near ``m_i = 1`` need a slack
variable of their own. `hinge_lowdim` solves a restricted master QP (HiGHS)
over a working set ``W`` of those rows, with the others summed into one linear
term::

    min  (alpha n / 2) ||w||^2 - g_L^T (w, b) + sum_{i in W} xi_i
    s.t. y_i (a_i^T w + b) + xi_i >= 1,  xi_i >= 0   (i in W)

Both replacements are lower bounds on the hinge, so the master is a lower model of
``n f``; when its solution leaves every row outside ``W`` on the side it was
assumed to be, the model is exact there and the solution is the optimum. Rows that
crossed join ``W`` (which only grows, so this ends) and the master is solved again.
The start is the minimizer of a softplus-smoothed hinge by Newton's method in the
``d + 1`` dimensions, so ``W`` starts near its final size (hundreds of rows on
skin_nonskin, 245,057 x 3). The master's row duals are the SVM duals
``beta_i in [0, 1]`` (1 on the linear rows, 0 on the others): the caller certifies
the result with `asip.algorithms._reference.duality_gap`. With the l1 penalty the
same scheme has an LP master (``alpha n ||w||_1`` by the split ``w = w+ - w-``).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ._lp_master import column_lp, highspy

__all__ = ["LOWDIM_MAX_FEATURES", "hinge_lowdim"]

logger = logging.getLogger(__name__)

#: `reference_optimum` uses this method for hinge-l2 and hinge-l1 up to this many features
LOWDIM_MAX_FEATURES = 50
_START_ROWS = 500  # the initial working set: this many (distinct) rows nearest the margin
_MAX_ROUNDS = 60
_DENSIFY_ENTRIES = 50_000_000  # sparse input up to this many entries is made dense (400 MB)
_SMOOTHING = (1.0, 0.1, 1e-2, 1e-3, 1e-4)  # the softplus widths of the start's continuation


def _design(X, fit_intercept: bool):
    """``[X, 1]`` (or ``X``) with its columns scaled to max |entry| 1; the scales."""
    A = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, np.float64)
    if sp.issparse(A) and A.shape[0] * (A.shape[1] + 1) <= _DENSIFY_ENTRIES:
        A = A.toarray()  # dense rows can be merged, and d is small
    if fit_intercept:
        ones = np.ones((A.shape[0], 1))
        A = sp.hstack([A, sp.csr_matrix(ones)]).tocsr() if sp.issparse(A) else np.hstack([A, ones])
    scale = np.asarray(abs(A).max(axis=0).todense() if sp.issparse(A) else np.abs(A).max(axis=0),
                       dtype=np.float64).ravel()
    scale[scale == 0] = 1.0
    A = A @ sp.diags(1.0 / scale) if sp.issparse(A) else A / scale
    return (sp.csr_matrix(A) if sp.issparse(A) else A), scale


def _unique_rows(A, y):
    """Identical rows ``(a_i, y_i)`` merged: the distinct rows, their labels, counts, and the map."""
    if sp.issparse(A):  # only dense data is merged (sparse data this large stays as it is)
        return A, y, np.ones(len(y)), np.arange(len(y))
    rows, inverse, counts = np.unique(np.hstack([A, y[:, None]]), axis=0, return_inverse=True,
                                      return_counts=True)
    return (np.ascontiguousarray(rows[:, :-1]), rows[:, -1].copy(), counts.astype(np.float64),
            inverse.ravel())


def _smoothed_start(A, y, c, reg):
    """Newton's method on ``sum c_i mu softplus((1 - m_i)/mu) + (1/2) sum reg w^2``, mu -> 1e-4.

    ``c`` are the row weights (counts over ``n``).
    """
    p = A.shape[1]
    w = np.zeros(p)
    for mu in _SMOOTHING:
        def value(v, mu=mu):
            return mu * c @ np.logaddexp(0.0, (1.0 - y * (A @ v)) / mu) + 0.5 * (reg * v) @ v

        for _ in range(12):
            s = expit((1.0 - y * (A @ w)) / mu)
            grad = -np.asarray(A.T @ (c * y * s)).ravel() + reg * w
            c2 = c * s * (1.0 - s) / mu
            AcA = A.T @ (sp.diags(c2) @ A) if sp.issparse(A) else (A.T * c2) @ A
            hess = np.asarray(AcA.toarray() if sp.issparse(AcA) else AcA) + np.diag(reg + 1e-12)
            try:
                step = np.linalg.solve(hess, grad)
            except np.linalg.LinAlgError:
                step = grad
            decrement = float(grad @ step)
            if not decrement > 1e-14:
                break
            f0, t = value(w), 1.0
            while value(w - t * step) > f0 - 0.25 * t * decrement and t > 1e-10:
                t *= 0.5
            w = w - t * step
    return w


#: a master QP/LP that takes more iterations (at least this many, else 20 per row and
#: column) or seconds than these is treated as failed (`_reference` then uses the dual)
MASTER_MIN_ITERATIONS = 10_000
MASTER_TIME_LIMIT = 60.0


def _master(YA, cW, g, gb, pen, fit_intercept, hs, l1=False):
    """The restricted master QP (l2) or LP (l1) by HiGHS; ``(w [, b])`` scaled, the row duals.

    ``cW`` are the rows' counts: the cost of their slacks and the bound on their duals;
    ``pen`` the penalty's weights per coordinate (the Hessian's diagonal for l2, the
    costs of ``w = w+ - w-`` for l1).
    """
    m, p = YA.shape
    k = int(fit_intercept)
    d = p - k
    YA = sp.csr_matrix(YA)
    if l1:  # columns w+, w-, b, xi
        cols = [YA[:, :d], -YA[:, :d], YA[:, d:]]
        cost = [pen[:d] - g, pen[:d] + g, [-gb] if k else []]
        lower = [np.zeros(2 * d), np.full(k, -hs.kHighsInf)]
    else:  # columns w, b, xi
        cols, cost, lower = [YA], [-g, [-gb] if k else []], [np.full(p, -hs.kHighsInf)]
    M = sp.hstack(cols + [sp.identity(m, format="csr")])
    nv = M.shape[1]
    lp = column_lp(M, np.concatenate(cost + [cW]), np.concatenate(lower + [np.zeros(m)]),
                   np.full(nv, hs.kHighsInf), np.ones(m), np.full(m, hs.kHighsInf))
    h = hs.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    for opt in ("primal_feasibility_tolerance", "dual_feasibility_tolerance",
                "optimality_tolerance"):
        h.setOptionValue(opt, 1e-10)
    # HiGHS' active-set QP can cycle (the tests' 4,000 x 50 synthetic set: 140,000
    # iterations in 10 s without an answer, where skin_nonskin and ijcnn1 need 500-900):
    # a bound makes that a failed master, and the caller falls back to the general method
    h.setOptionValue("qp_iteration_limit", max(MASTER_MIN_ITERATIONS, 20 * (m + p)))
    h.setOptionValue("time_limit", MASTER_TIME_LIMIT)
    if l1:
        h.passModel(lp)
    else:
        model = hs.HighsModel()
        model.lp_ = lp
        H = model.hessian_
        H.dim_, H.format_ = nv, hs.HessianFormat.kTriangular
        H.start_ = np.concatenate([np.arange(d + 1), np.full(nv - d, d)]).astype(np.int32)
        H.index_ = np.arange(d, dtype=np.int32)
        H.value_ = np.asarray(pen[:d], dtype=np.float64)
        h.passModel(model)
    h.run()
    status = h.getModelStatus()
    if status != hs.HighsModelStatus.kOptimal:
        raise RuntimeError(f"hinge master problem: HiGHS ended with "
                           f"{h.modelStatusToString(status)}")
    x = np.asarray(h.getSolution().col_value)
    v = np.concatenate([x[:d] - x[d:2 * d], x[2 * d:2 * d + k]]) if l1 else x[:p]
    info = h.getInfo()
    return (v, np.clip(np.asarray(h.getSolution().row_dual), 0.0, cW),
            int(info.qp_iteration_count) + int(info.simplex_iteration_count))


def _polish(A, y, c, pen, v, margin):
    """The optimality system on the solution's own partition, solved exactly; or None.

    Rows below the margin keep ``beta = 1``, rows above it ``beta = 0``; the rows on
    it (``|m_i - 1| <= 1e-7``) give the linear system ``pen * v - A_S^T (c beta y)_S =
    A^T (c beta y)_rest``, ``y_i a_i^T v = 1`` (i in S), solved by least squares for
    ``(v, beta_S)``, and for ``beta_S`` alone at the QP's ``v`` (bounded least squares).
    The QP meets these only to HiGHS' tolerances (relative gaps up to 1e-8 on small
    problems), these to rounding; the caller keeps what certifies best.
    """
    on = np.flatnonzero(np.abs(margin - 1.0) <= 1e-7)
    if on.size == 0:
        return None
    p = A.shape[1]
    fixed = np.where(margin < 1.0, 1.0, 0.0)
    fixed[on] = 0.0
    base = np.asarray(A.T @ (c * fixed * y)).ravel()
    rows = (A[on].toarray() if sp.issparse(A) else A[on]) * y[on, None]  # y_i a_i, i in S
    K = np.block([[np.diag(pen), -(rows * c[on, None]).T],
                  [rows, np.zeros((on.size, on.size))]])
    sol = np.linalg.lstsq(K, np.concatenate([base, np.ones(on.size)]), rcond=None)[0]
    beta = fixed.copy()
    beta[on] = np.clip(sol[p:], 0.0, 1.0)
    # and the duals alone for the QP's own v, by bounded least squares on the first block
    from scipy.optimize import lsq_linear

    res = lsq_linear(-K[:p, p:], base - pen * v, bounds=(0.0, 1.0), method="bvls", tol=1e-15)
    beta_v = fixed
    beta_v[on] = np.clip(res.x, 0.0, 1.0)
    return sol[:p], [beta, beta_v]


def hinge_lowdim(X, y: np.ndarray, alpha: float, fit_intercept: bool, penalty: str = "l2"):
    """The linear SVM's optimum by a working-set master QP (LP for l1) over the rows near the margin.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix, shape (n, d)
    y : ndarray
        Labels in {-1, +1}.
    alpha : float
        The penalty's strength (> 0).
    fit_intercept : bool
    penalty : {"l2", "l1"}
        ``(alpha/2) ||w||^2`` (a QP master) or ``alpha ||w||_1`` (an LP master).

    Returns
    -------
    w : ndarray
        The model vector (intercept last when fitted).
    u : ndarray
        Per-row duals ``-y_i beta_i`` for `duality_gap`.
    info : dict
        ``rounds``, ``working_set`` (final size) and ``qp_iterations``.
    """

    hs = highspy()
    n = X.shape[0]
    k = int(fit_intercept)
    A, scale = _design(X, fit_intercept)
    A, yu, counts, rows_of = _unique_rows(A, np.asarray(y, dtype=np.float64))
    p = A.shape[1]
    l1 = penalty == "l1"
    pen = np.full(p, alpha) / scale ** 2  # (alpha/2)||w||^2 in the scaled coordinates
    if k:
        pen[-1] = 0.0
    v = _smoothed_start(A, yu, counts / n, pen)  # (l1 starts from the l2 problem)
    if l1:
        pen = np.full(p, alpha) / scale  # alpha ||w||_1 in the scaled coordinates
    margin = yu * (A @ v)
    in_w = np.zeros(len(yu), dtype=bool)
    in_w[np.argsort(np.abs(margin - 1.0))[:_START_ROWS]] = True
    lin = ~in_w & (margin < 1.0)
    qp_iters = 0
    for rounds in range(1, _MAX_ROUNDS + 1):
        W = np.flatnonzero(in_w)
        gy = np.asarray(A[lin].T @ (counts[lin] * yu[lin])).ravel()  # sum of c_i y_i a_i
        YA = A[W] * yu[W, None] if not sp.issparse(A) else sp.diags(yu[W]) @ A[W]
        v, lam, iters = _master(YA, counts[W], gy[:p - k], gy[-1] if k else 0.0, pen * n,
                                fit_intercept, hs, l1)
        qp_iters += iters
        margin = yu * (A @ v)
        crossed = (lin & (margin > 1.0)) | (~in_w & ~lin & (margin < 1.0))
        logger.debug("hinge-%s master round %d: %d rows, %d QP iterations, %d crossed",
                     penalty, rounds, W.size, iters, int(crossed.sum()))
        if not crossed.any():
            break
        in_w |= crossed
        lin &= ~crossed
    beta = lin.astype(np.float64)
    beta[W] = lam / counts[W]
    w, u = v / scale, -y * beta[rows_of]
    polished = None if l1 else _polish(A, yu, counts, pen * n, v, margin)
    if polished is not None:  # keep the polished primal and dual each where they certify better
        from ._objectives import L2, Hinge, Objective
        from ._reference import duality_gap

        obj = Objective(Hinge(), L2(alpha), fit_intercept)
        w2 = polished[0] / scale
        if obj.value(w2, X, y) < obj.value(w, X, y):
            w = w2
        u = min([u] + [-y * b[rows_of] for b in polished[1]],
                key=lambda cand: duality_gap(obj, X, y, w, cand))
    return (w, u,
            {"rounds": rounds, "working_set": int(W.size), "distinct_rows": int(len(yu)),
             "qp_iterations": qp_iters})
