"""Ground-truth optima ``f*`` from scipy / scikit-learn, certified, and cached on disk.

Every accuracy number in asip is a relative suboptimality ``(f(w) - f*)/|f*|``
against the optimum computed here, by a method independent of asip's own solvers:

=====================  ===========================================================
problem                method
=====================  ===========================================================
squared + l2           the normal equations, solved exactly (``numpy.linalg.solve``)
squared + l1           scikit-learn ``Lasso`` (coordinate descent), ``tol=1e-12``
log_loss + l2          scipy L-BFGS-B, then Newton-CG polishing (Hessian-vector products)
log_loss + l1          scipy L-BFGS-B on the split ``w = p - q``, ``p, q >= 0``
hinge + l1             up to 50 features and from 20,000 rows, the LP over the rows
                       near the margin as for hinge-l2 below; else the exact linear
                       program, scipy ``linprog`` (HiGHS)
hinge + l2             up to 50 features (`hinge_lowdim`): the primal QP over the
                       rows near the margin (HiGHS), the others summed into a linear
                       term, until no row crosses; with more, the SVM dual (a
                       box-constrained QP) by scipy L-BFGS-B, with an intercept the
                       method of multipliers on the dual's equality constraint (the
                       intercept is its multiplier)
=====================  ===========================================================

Each result carries a *certificate*: a Fenchel duality gap ``f(w) - D(u) >=
f(w) - f*`` built from the solution (`duality_gap`), so the stated precision
is a proven bound, not the solver's own opinion. Typical gaps are 1e-10 to 1e-13
relative on the test problems.

Results are cached under ``$ASIP_CACHE_DIR`` (default ``~/.cache/asip``) in
``reference/<sha256>.npz``, keyed by the data's bytes and the problem.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp

from ._objectives import L1, L2, Hinge, Logistic, Objective, Squared
from ._svm_lowdim import LOWDIM_MAX_FEATURES, hinge_lowdim

__all__ = ["Reference", "cache_dir", "duality_gap", "reference_optimum"]

logger = logging.getLogger(__name__)

_LOWDIM_L1_MIN_ROWS = 20_000  # hinge-l1 by the working-set LP from this many rows
_VERSION = "2"  # bump to invalidate cached references when a method changes


class Reference(NamedTuple):
    """A reference optimum.

    Attributes
    ----------
    w : ndarray
        The model vector (intercept last when the objective has one).
    f_star : float
        ``f(w)``; the true optimum lies in ``[f_star - gap, f_star]``.
    gap : float
        Certified duality gap of ``w``.
    method : str
        How it was computed.
    """

    w: np.ndarray
    f_star: float
    gap: float
    method: str

    @property
    def relative_precision(self) -> float:
        """``gap / |f*|``: how far below ``f_star`` the true optimum can be, relatively."""
        return self.gap / abs(self.f_star)


def cache_dir() -> Path:
    """``$ASIP_CACHE_DIR``, else ``~/.cache/asip``."""
    return Path(os.environ.get("ASIP_CACHE_DIR") or Path.home() / ".cache" / "asip")


# ---------------------------------------------------------------------- certificate
def duality_gap(objective: Objective, X, y: np.ndarray, w: np.ndarray,
                u: np.ndarray | None = None) -> float:
    """A certified upper bound on ``f(w) - f*`` from Fenchel duality.

    With per-sample dual variables ``u`` (by default ``u_i = phi'(m_i)`` at ``w``,
    the optimal choice at the optimum), the dual of ``(1/n) sum phi(a_i^T w + b)
    + R(w)`` is ``D(u) = -(1/n) sum phi*(u_i) - R*(-A^T u / n)`` subject to
    ``sum u_i = 0`` when there is an intercept. ``u`` is first made feasible:
    the intercept constraint by shrinking the larger label group
    (classification) or removing the mean (regression); for l1, ``R*`` is the
    indicator of ``||A^T u / n||_inf <= alpha``, met by scaling ``u``. Every
    feasible ``u`` gives ``D(u) <= f*``, so ``f(w) - D(u)`` bounds the error.
    """
    loss, pen = objective.loss, objective.penalty
    n = len(y)
    m = objective.margins(w, X)
    u = loss.deriv(m, y).astype(np.float64) if u is None else np.array(u, dtype=np.float64)
    if objective.fit_intercept:
        if isinstance(loss, Squared):
            u = u - u.mean()
        else:  # u = -y s, s in [0, 1]: balance sum over y=+1 and y=-1 by shrinking one side
            s = -u * y
            pos, neg = s[y > 0].sum(), s[y < 0].sum()
            if pos > neg and pos > 0:
                s[y > 0] *= neg / pos
            elif neg > pos and neg > 0:
                s[y < 0] *= pos / neg
            u = -y * s
    v = np.asarray(X.T @ u).ravel() / n  # A^T u / n
    if isinstance(pen, L1):
        vmax = np.abs(v).max() if v.size else 0.0
        if vmax > pen.alpha:
            scale = pen.alpha / vmax
            u, v = u * scale, v * scale
        dual = -np.mean(loss.conjugate(u, y))
    else:
        dual = -np.mean(loss.conjugate(u, y)) - (0.5 / pen.alpha * float(v @ v) if pen.alpha > 0
                                                 else (0.0 if not v.any() else np.inf))
    return float(objective.value(w, X, y) - dual)


# ---------------------------------------------------------------------- solvers
def _augment(X, fit_intercept):
    if not fit_intercept:
        return X
    ones = np.ones((X.shape[0], 1))
    return sp.hstack([X, sp.csr_matrix(ones)]).tocsr() if sp.issparse(X) else np.hstack([X, ones])


def _squared_l2(obj: Objective, X, y):
    n, d = X.shape
    A = _augment(X, obj.fit_intercept)
    G = A.T @ A
    G = G.toarray() if sp.issparse(G) else np.asarray(G)
    G = G / n
    reg = np.full(A.shape[1], obj.penalty.alpha)
    if obj.fit_intercept:
        reg[-1] = 0.0
    rhs = np.asarray(A.T @ y).ravel() / n
    return np.linalg.solve(G + np.diag(reg), rhs), None, "normal equations (numpy.linalg.solve)"


def _squared_l1(obj: Objective, X, y):
    from sklearn.linear_model import Lasso

    model = Lasso(alpha=obj.penalty.alpha, fit_intercept=obj.fit_intercept, tol=1e-12,
                  max_iter=1_000_000, selection="cyclic")
    model.fit(X, y)
    w = np.asarray(model.coef_, dtype=np.float64).ravel()
    if obj.fit_intercept:
        w = np.append(w, model.intercept_)
    return w, None, "scikit-learn Lasso (coordinate descent, tol=1e-12)"


def _logistic_l2(obj: Objective, X, y):
    n, d = X.shape
    p = obj.n_params(d)
    alpha = obj.penalty.alpha
    A = _augment(X, obj.fit_intercept)

    def fg(w):
        m = np.asarray(A @ w).ravel()
        f = np.logaddexp(0.0, -y * m).mean()
        dm = obj.loss.deriv(m, y) / n
        g = np.asarray(A.T @ dm).ravel()
        pen = w[:d]
        return f + 0.5 * alpha * pen @ pen, g + alpha * np.pad(pen, (0, p - d))

    def hessp(w, v):
        m = np.asarray(A @ w).ravel()
        s = 1.0 / (1.0 + np.exp(-np.abs(m)))
        curv = s * (1.0 - s) / n
        out = np.asarray(A.T @ (curv * np.asarray(A @ v).ravel())).ravel()
        return out + alpha * np.pad(v[:d], (0, p - d))

    res = so.minimize(fg, np.zeros(p), jac=True, method="L-BFGS-B",
                      options={"maxiter": 20000, "gtol": 1e-10, "ftol": 1e-15, "maxcor": 30})
    res2 = so.minimize(fg, res.x, jac=True, hessp=hessp, method="trust-ncg",
                       options={"gtol": 1e-13, "maxiter": 200})
    w = res2.x if res2.fun <= res.fun else res.x
    return w, None, "scipy L-BFGS-B + trust-ncg (Hessian-vector products)"


def _logistic_l1(obj: Objective, X, y):
    n, d = X.shape
    alpha = obj.penalty.alpha
    k = int(obj.fit_intercept)

    def fg(z):
        pv, qv = z[:d], z[d:2 * d]
        b = z[2 * d] if k else 0.0
        m = np.asarray(X @ (pv - qv)).ravel() + b
        f = np.logaddexp(0.0, -y * m).mean() + alpha * (pv.sum() + qv.sum())
        dm = obj.loss.deriv(m, y) / n
        g = np.asarray(X.T @ dm).ravel()
        grad = np.concatenate([g + alpha, -g + alpha, [dm.sum()] if k else []])
        return f, grad

    bounds = [(0.0, None)] * (2 * d) + [(None, None)] * k
    z = np.zeros(2 * d + k)
    for _ in range(3):  # restarts sharpen the final digits
        res = so.minimize(fg, z, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 50000, "gtol": 1e-12, "ftol": 1e-16,
                                   "maxcor": 50})
        z = res.x
    w = z[:d] - z[d:2 * d]
    if k:
        w = np.append(w, z[2 * d])
    polished = _polish_l1(obj, X, y, w)
    if polished is not None:
        return polished, None, ("scipy L-BFGS-B on the split w = p - q (p, q >= 0), "
                                "then trust-ncg on the support with fixed signs")
    return w, None, "scipy L-BFGS-B on the split w = p - q (p, q >= 0)"


def _polish_l1(obj: Objective, X, y, w):
    """Newton polish of an l1 solution on its support with the signs held fixed.

    On the support ``S`` with signs ``s`` the problem is smooth:
    ``min loss(A_S w_S + b) + alpha s^T w_S``. Returns the polished vector when
    the signs survive and the duality gap shrinks, else None.
    """
    n, d = X.shape
    k = int(obj.fit_intercept)
    coef = w[:d]
    support = np.flatnonzero(np.abs(coef) > 1e-12 * max(1.0, np.abs(coef).max()))
    if support.size == 0:
        return None
    signs = np.sign(coef[support])
    A = _augment(X[:, support] if not sp.issparse(X) else sp.csr_matrix(X)[:, support], k)
    alpha = obj.penalty.alpha
    lin = np.concatenate([alpha * signs, np.zeros(k)])

    def fg(v):
        m = np.asarray(A @ v).ravel()
        dm = obj.loss.deriv(m, y) / n
        return obj.loss.value(m, y).mean() + lin @ v, np.asarray(A.T @ dm).ravel() + lin

    def hessp(v, t):
        m = np.asarray(A @ v).ravel()
        sg = 1.0 / (1.0 + np.exp(-np.abs(m)))
        return np.asarray(A.T @ (sg * (1 - sg) / n * np.asarray(A @ t).ravel())).ravel()

    v0 = np.concatenate([coef[support], w[d:]])
    res = so.minimize(fg, v0, jac=True, hessp=hessp, method="trust-ncg",
                      options={"gtol": 1e-14, "maxiter": 100})
    v = res.x
    if np.any(np.sign(v[:support.size]) != signs):
        return None
    out = np.zeros_like(w)
    out[support] = v[:support.size]
    if k:
        out[d] = v[support.size]
    if duality_gap(obj, X, y, out) < duality_gap(obj, X, y, w):
        return out
    return None


def _hinge_l1(obj: Objective, X, y):
    return _hinge_lowdim(obj, X, y, "l1") or _hinge_l1_lp(obj, X, y)


def _hinge_l1_lp(obj: Objective, X, y):
    n, d = X.shape
    alpha = obj.penalty.alpha
    k = 2 if obj.fit_intercept else 0
    Y = sp.diags(y) @ sp.csr_matrix(X)
    ones = np.ones((n, 1))
    blocks = [-Y, Y]
    if k:
        blocks += [sp.csr_matrix(-y[:, None]), sp.csr_matrix(y[:, None])]
    blocks.append(-sp.identity(n, format="csr"))
    A_ub = sp.hstack(blocks).tocsc()
    c = np.concatenate([np.full(2 * d, alpha), np.zeros(k), np.full(n, 1.0 / n)])
    res = so.linprog(c, A_ub=A_ub, b_ub=-ones.ravel(), bounds=(0, None), method="highs",
                     options={"primal_feasibility_tolerance": 1e-10,
                              "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise RuntimeError(f"reference LP failed: {res.message}")
    z = res.x
    w = z[:d] - z[d:2 * d]
    if k:
        w = np.append(w, z[2 * d] - z[2 * d + 1])
    # the LP's inequality marginals are the hinge duals: s_i = -n * marginal_i in [0, 1]
    s = np.clip(-n * res.ineqlin.marginals, 0.0, 1.0)
    return w, -y * s, "exact linear program, scipy linprog (HiGHS)"


def _svm_dual(X, y, alpha, b, beta0, c=0.0):
    """Solve the SVM dual over the box ``[0, 1]^n`` by L-BFGS-B.

    ``max (1/n) sum beta (1 - y b) - ||A^T (beta y)||^2 / (2 alpha n^2) - (c/2) h^2``
    with ``h = (1/n) sum beta y``: the intercept ``b`` enters as the multiplier of the
    constraint ``h = 0`` and ``c`` is an augmented-Lagrangian weight (0 without intercept).
    """
    n = len(y)
    lin = (1.0 - y * b) / n

    def fg(beta):
        v = np.asarray(X.T @ (beta * y)).ravel()
        h = (beta @ y) / n
        f = -(lin @ beta) + (v @ v) / (2.0 * alpha * n * n) + 0.5 * c * h * h
        g = -lin + y * np.asarray(X @ v).ravel() / (alpha * n * n) + c * h * y / n
        return f, g

    res = so.minimize(fg, beta0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * n,
                      options={"maxiter": 100000, "gtol": 1e-14, "ftol": 1e-16, "maxcor": 50})
    beta = res.x
    w = np.asarray(X.T @ (beta * y)).ravel() / (alpha * n)
    return w, beta


def _hinge_l2(obj: Objective, X, y):
    alpha = obj.penalty.alpha
    if alpha <= 0:
        raise ValueError("the hinge-l2 reference needs alpha > 0 (use l1 or a positive alpha)")
    return _hinge_lowdim(obj, X, y, "l2") or _hinge_l2_dual(obj, X, y)


def _hinge_lowdim(obj: Objective, X, y, penalty: str):
    """`hinge_lowdim` when there are few features (None otherwise, or if its master fails)."""
    if X.shape[1] > LOWDIM_MAX_FEATURES or not obj.penalty.alpha > 0:
        return None
    if penalty == "l1" and X.shape[0] < _LOWDIM_L1_MIN_ROWS:
        return None  # the full LP is fast here and its vertex exact (the master's: ~1e-9)
    kind = "QP" if penalty == "l2" else "LP"
    try:
        w, u, info = hinge_lowdim(X, y, obj.penalty.alpha, obj.fit_intercept, penalty)
    except RuntimeError as exc:  # a failed master: the general method still works
        logger.warning("hinge-%s working-set %s failed (%s); using the general method",
                       penalty, kind, exc)
        return None
    return w, u, (f"primal working-set {kind} (HiGHS) over the rows near the margin "
                  f"({info['working_set']} of {info['distinct_rows']} distinct rows, "
                  f"{info['rounds']} rounds)")


def _hinge_l2_dual(obj: Objective, X, y):
    alpha = obj.penalty.alpha
    n = len(y)
    beta = np.zeros(n)
    if not obj.fit_intercept:
        for _ in range(3):
            w, beta = _svm_dual(X, y, alpha, 0.0, beta)
        return w, -y * beta, "SVM dual box QP, scipy L-BFGS-B"
    # method of multipliers on the dual's constraint (1/n) sum beta y = 0; b is its multiplier
    b, c = 0.0, 10.0
    for _ in range(60):
        w, beta = _svm_dual(X, y, alpha, b, beta, c)
        h = (beta @ y) / n
        b += c * h
        if abs(h) < 1e-13:
            break
        c = min(c * 2.0, 1e8)
    # the intercept that is optimal for this w: a 1-D convex piecewise-linear problem
    m = np.asarray(X @ w).ravel()
    res = so.minimize_scalar(lambda bb: np.maximum(0.0, 1.0 - y * (m + bb)).mean(),
                             bracket=(b - 1.0, b + 1.0), method="brent", options={"xtol": 1e-14})
    b_best = float(res.x) if res.fun <= np.maximum(0.0, 1.0 - y * (m + b)).mean() else b
    return np.append(w, b_best), -y * beta, ("SVM dual box QP (L-BFGS-B), intercept by the "
                                            "method of multipliers on its constraint")


_METHODS = {
    (Squared, L2): _squared_l2,
    (Squared, L1): _squared_l1,
    (Logistic, L2): _logistic_l2,
    (Logistic, L1): _logistic_l1,
    (Hinge, L1): _hinge_l1,
    (Hinge, L2): _hinge_l2,
}


# ---------------------------------------------------------------------- cache + entry point
def _key(objective: Objective, X, y) -> str:
    h = hashlib.sha256()
    h.update(f"v{_VERSION}|{objective.loss.name}|{objective.penalty.name}|"
             f"{objective.penalty.alpha!r}|{objective.fit_intercept}|".encode())
    if sp.issparse(X):
        Xc = sp.csr_matrix(X)
        Xc.sum_duplicates()
        Xc.sort_indices()
        h.update(f"csr{Xc.shape}".encode())
        for arr in (Xc.data.astype(np.float64), Xc.indices.astype(np.int64),
                    Xc.indptr.astype(np.int64)):
            h.update(np.ascontiguousarray(arr).tobytes())
    else:
        Xd = np.ascontiguousarray(X, dtype=np.float64)
        h.update(f"dense{Xd.shape}".encode())
        h.update(Xd.tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


def reference_optimum(objective: Objective, X, y: np.ndarray, cache: bool = True) -> Reference:
    """The optimum of ``objective`` on ``(X, y)``, certified by a duality gap, cached on disk.

    Parameters
    ----------
    objective : Objective
    X : ndarray or scipy.sparse matrix
    y : ndarray
        Targets; {-1, +1} labels for classification losses.
    cache : bool
        Read and write ``cache_dir()/reference/<key>.npz``.

    Examples
    --------
    >>> from asip.algorithms._objectives import Objective, get_loss, get_penalty
    >>> import numpy as np
    >>> X = np.eye(3); y = np.array([1.0, 2.0, 3.0])
    >>> ref = reference_optimum(Objective(get_loss("squared_error"), get_penalty("l2", 0.0)),
    ...                         X, y, cache=False)
    >>> np.allclose(ref.w, y)
    True
    """
    y = np.asarray(y, dtype=np.float64)
    path = cache_dir() / "reference" / f"{_key(objective, X, y)}.npz"
    if cache and path.is_file():
        try:
            with np.load(path) as z:
                return Reference(z["w"].copy(), float(z["f_star"]), float(z["gap"]),
                                 str(z["method"]))
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable reference cache %s: %s", path, exc)
    method = _METHODS[(type(objective.loss), type(objective.penalty))]
    w, u, how = method(objective, X, y)
    w = np.asarray(w, dtype=np.float64)
    gap = duality_gap(objective, X, y, w)
    if u is not None:
        gap = min(gap, duality_gap(objective, X, y, w, u))
    ref = Reference(w, objective.value(w, X, y), max(gap, 0.0), how)
    logger.info("reference %s/%s alpha=%g: f*=%.12g gap=%.2e (%s)", objective.loss.name,
                objective.penalty.name, objective.penalty.alpha, ref.f_star, ref.gap, how)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        np.savez(tmp, w=ref.w, f_star=ref.f_star, gap=ref.gap, method=ref.method)
        os.replace(tmp, path)
    return ref
