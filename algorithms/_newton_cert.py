"""A certified bound on ``P(w) - P*`` from the exact Hessian, for l2 problems with few features.

At ``alpha = 1/n`` the free duality gap of a primal model (`_primal_cert`) is exactly
``||grad P(w)||^2 / (2 alpha)``: ~10^4 times the suboptimality, so a barrier solver
spends its last rounds certifying, not optimizing. (A dual point corrected by the
solver's own L-BFGS step does no better: its gap is the next point's free gap, measured
on 100k x 100 logistic.) The Newton decrement ``lambda^2 = g^T H^-1 g`` is the
suboptimality to second order; what makes it a *bound* is self-concordance:

* logistic loss: ``|phi'''| <= phi''``, so along any ``v`` the Hessian of ``P`` shrinks
  at most as ``H(w + t v) >= exp(-R t ||v||) H(w)`` (``R = max_i ||[x_i, 1]||``; the l2
  term keeps its curvature), and integrating twice,
  ``P(w + v) >= P(w) + g^T v + psi(R ||v||) v^T H v`` with
  ``psi(s) = (e^-s + s - 1) / s^2`` (decreasing, ``psi(0) = 1/2``);
* at ``v* = w* - w``: ``psi ||v*||_H^2 <= -g^T v* <= lambda ||v*||_H`` and
  ``||v*|| <= ||v*||_H / sqrt(mu)`` (``mu`` the smallest eigenvalue of ``H``), so
  ``s = R ||v*||`` obeys ``s psi(s) <= kappa = R lambda / sqrt(mu)``; ``s psi(s)``
  increases to 1, so for ``kappa < 1`` it caps ``s`` at ``s_bar``, and
  ``P(w) - P* <= max_z (lambda z - psi(s_bar) z^2) = lambda^2 / (4 psi(s_bar))``
  (``-> lambda^2 / 2`` as ``kappa -> 0``);
* least squares: ``phi''' = 0``, so ``P(w) - P* = lambda^2 / 2`` exactly.

Any ``M <= H`` may stand for ``H`` above, so a Hessian ``H0`` taken at ``w0`` keeps
certifying later points ``w`` as ``M = exp(-R ||w - w0||) H0``: one Hessian (a pass of
``d`` times a gradient pass's flops, BLAS-3) serves the rounds after it. Row weights
keep all of this (they scale ``phi''`` and ``phi'''`` alike); an unpenalized intercept is
one more coordinate (its row of ``[x_i, 1]`` is in ``R``).

References
----------
F. Bach, "Self-concordant analysis for logistic regression", Electron. J. Statist. 4, 2010.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from . import _cd_kernels as C
from . import _kernels as K
from . import _losses as _L

__all__ = ["AUTO_P", "MAX_P", "HessianCert", "bound", "local_hessian", "psi", "usable"]

logger = logging.getLogger(__name__)

#: most coefficients (features + intercept) a Hessian certificate is taken for: its
#: message is ``p^2`` floats (80 KB at 100) and its pass ``p`` times a gradient's flops
MAX_P = 256
#: most coefficients ``hessian_cert="auto"`` takes a Hessian for: its pass costs about
#: ``p / 20`` gradient passes of CPU (BLAS-3 against a memory-bound pass; measured 5.5x at
#: p = 100, 150k rows), and it saves 2-3 rounds, so at p = 100 the 300k x 100 fit was slower
#: with it (2 rounds instead of 5, but 3.3-4.1 s against 1.9-2.0 s, load 15)
AUTO_P = 32
#: rows per block of the Hessian pass (a block stays in cache between its two uses)
BLOCK = 4096
#: float rounding allowance on a bound, relative to ``|P|`` (sums over 10^6 rows)
ROUNDING = 1e-13


def usable(problem, dense: bool) -> bool:
    """Whether a Hessian certificate applies: smooth loss, l2, few coefficients, dense rows."""
    return (dense and problem.loss in (K.LOGISTIC, K.SQUARED) and problem.penalty == K.L2
            and problem.p <= MAX_P)


def local_hessian(problem, X: np.ndarray, y: np.ndarray, sw, w: np.ndarray,
                  block: int = BLOCK) -> np.ndarray:
    """``sum_i s_i phi''(m_i) z_i z_i^T`` over a partition's dense rows, ``z_i = [x_i, 1]``
    (the 1 only with an intercept): a ``(p, p)`` array, one pass over ``X`` (BLAS syrk per
    block of rows, `_cd_kernels.dense_weighted_gram`)."""
    d = X.shape[1]
    fi = bool(problem.fit_intercept)
    coef, b = np.ascontiguousarray(w[:d], dtype=np.float64), (float(w[-1]) if fi else 0.0)
    H = np.zeros((problem.p, problem.p))
    for a in range(0, X.shape[0], block):
        Xc = X[a:a + block]
        c = _L.rows(_L.ROW_CURVATURE, problem.loss, Xc @ coef + b, y[a:a + block])
        if sw is not None:
            c = c * sw[a:a + block]
        C.dense_weighted_gram(Xc, c, fi, H)
    return H


def psi(s: float) -> float:
    """``(e^-s + s - 1) / s^2`` (a series near 0, where the formula cancels)."""
    if s < 1e-3:
        return 0.5 - s / 6.0 + s * s / 24.0
    return (math.expm1(-s) + s) / (s * s)


def _s_bar(kappa: float) -> float:
    """The ``s`` with ``s psi(s) = kappa`` (< 1), rounded up: ``s psi(s)`` increases."""
    lo, hi = 0.0, max(2.0 * kappa, 1e-300)
    while hi * psi(hi) < kappa:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid * psi(mid) < kappa:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi


class HessianCert(NamedTuple):
    """A Hessian ``H0`` of ``P`` taken at ``w0`` (factored), what later bounds reuse."""

    w0: np.ndarray
    chol: tuple  # scipy.linalg.cho_factor of H0
    mu: float  # smallest eigenvalue of H0
    r: float  # R = max_i ||[x_i, 1]||, 0 for least squares (no third derivative)

    @classmethod
    def of(cls, H: np.ndarray, w0: np.ndarray, r: float) -> HessianCert | None:
        """From the full Hessian of ``P`` (penalty included) at ``w0``; None when it is not
        safely positive definite (then only the free gap certifies)."""
        import scipy.linalg as sla

        H = 0.5 * (H + H.T)
        try:
            ev = np.linalg.eigvalsh(H)
            if not (np.all(np.isfinite(ev)) and ev[0] > 1e-8 * max(ev[-1], 1e-300)):
                return None
            chol = sla.cho_factor(H)
        except (np.linalg.LinAlgError, ValueError):
            return None
        # eigvalsh is backward stable: shave its rounding off the smallest eigenvalue
        mu = float(ev[0]) - 1e-12 * float(ev[-1]) * H.shape[0]
        return cls(np.array(w0, dtype=np.float64), chol, mu, float(r)) if mu > 0 else None


def bound(cert: HessianCert, w: np.ndarray, g: np.ndarray, primal: float) -> float:
    """An upper bound on ``P(w) - P*`` from the gradient ``g`` of ``P`` at ``w`` and a
    Hessian certificate taken at ``cert.w0`` (``inf`` where the bound does not apply).

    The Hessian at ``w`` is at least ``exp(-R ||w - w0||) H0`` (see the module doc).
    """
    import scipy.linalg as sla

    shrink = math.exp(-cert.r * float(np.linalg.norm(np.asarray(w) - cert.w0)))
    if shrink < 1e-3:
        return math.inf
    lam2 = float(g @ sla.cho_solve(cert.chol, g)) / shrink
    if not (np.isfinite(lam2) and lam2 >= 0.0):
        return math.inf
    if cert.r == 0.0:
        out = 0.5 * lam2
    else:
        kappa = cert.r * math.sqrt(lam2 / (shrink * cert.mu))
        if not kappa < 0.99:
            return math.inf
        out = lam2 / (4.0 * psi(_s_bar(kappa)))
    return out * (1.0 + 1e-6) + ROUNDING * abs(primal)  # the solve's rounding (cond <= 1e8)


# ---------------------------------------------------------------- in a barrier solver
#: message fields of a round's contribution that carries a Hessian (`contribution`)
FIELDS = ("H", "r2")


def fields_schema(problem) -> dict:
    """The optional message fields of `contribution`: key -> type or (dtype, shape)."""
    return {"H": ("float64", (problem.p * problem.p,)), "r2": float}


def contribution(problem, data, mem: dict, w: np.ndarray) -> dict:
    """A round's Hessian fields at ``w`` when the last reduction asked for them (`plan`),
    else nothing: ``H`` (this partition's `local_hessian`) and ``r2`` (its largest
    ``||[x_i, 1]||^2``)."""
    if not mem.get("want_h"):
        return {}
    H = local_hessian(problem, data.X, data.y, data.sw, w)
    return {"H": H.ravel(), "r2": float(np.max(data.sqn, initial=0.0))}


def certify(state, parts: list, x: np.ndarray, G: np.ndarray, F: float) -> bool:
    """Take a new Hessian certificate from the parts when they all carry one, then bound
    ``P(x) - P*`` with the latest (`bound`); True, with the certificate in ``state.mem``
    like `_primal_cert.record_gap`'s, when ``bound / |P| <= tol``. ``G``, ``F``: ``P``'s
    gradient and value at ``x``."""
    mem, pb = state.mem, state.problem
    if all("H" in c for c in parts):
        H = np.sum([np.asarray(c["H"], dtype=np.float64) for c in parts], axis=0)
        H = H.reshape(pb.p, pb.p) / pb.n_total
        H[np.arange(pb.n_features), np.arange(pb.n_features)] += pb.alpha
        r = 0.0 if pb.loss == K.SQUARED else math.sqrt(max(float(c["r2"]) for c in parts))
        mem["hcert"] = HessianCert.of(H, x, r)
        mem["h_taken"] = mem.get("h_taken", 0) + 1
    cert = mem.get("hcert")
    if cert is None:
        return False
    b = bound(cert, x, G, F)
    rel = b / max(abs(F), 1e-300)
    if not rel < mem["rel_gap"] and mem.get("gap_w") is x:  # the free gap is better
        return False
    mem.update(gap=b, rel_gap=rel, gap_w=x, gap_primal=F, gap_kind="hessian")
    from ._certificate import certified

    if certified(rel, state.params["tol"]):
        mem["certified"] = x.copy()
        return True
    return False


def plan(state, parts: list, F: float, k: int) -> None:
    """Whether the next round's contributions carry a Hessian (``mem["want_h"]``, the same
    decision on every operator): at the first trial point, then again only once L-BFGS's
    own estimate of the suboptimality, ``-g^T d / 2``, is within ``10 tol`` and 100 times
    below what it was at the last Hessian (each costs ``p`` gradient passes' flops).
    ``params["hessian_cert"]``: True, False, or "auto" (only for ``p <= AUTO_P``, or up to
    `MAX_P` where the free dual point cannot certify: weighted least squares with an
    intercept)."""
    mem, pb = state.mem, state.problem
    mem["want_h"] = False
    if any(c.get("fresh") for c in parts):  # a restart: every operator forgets alike
        mem["hcert"], mem["h_est"] = None, None
    choice = state.params.get("hessian_cert", "auto")
    if not (choice and mem.get("h_ok")):
        return
    if choice == "auto" and pb.p > AUTO_P and state.certify:  # (no free gap: the only one)
        return
    if k == 0:
        mem["want_h"] = True
        return
    if not mem["S"] or mem["d"] is None:
        return
    est = max(-0.5 * float(mem["gbase"] @ mem["d"]), 0.0)
    last = mem.get("h_est")
    if (mem.get("rel_gap", math.inf) > state.params["tol"]
            and est <= 10.0 * state.params["tol"] * abs(F)
            and (last is None or est <= 1e-2 * last)):
        mem["want_h"], mem["h_est"] = True, est
