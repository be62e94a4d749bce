"""Losses, penalties and the objective every solver minimizes, in one vocabulary.

Every solver in `asip.algorithms` minimizes the same function, so results compare:

* classification, labels ``y`` in {-1, +1}::

      f(w) = (1/n) sum_i loss(y_i * (a_i^T w + b)) + R(w)

  with the logistic loss ``log(1 + exp(-m))`` (evaluated stably) or the hinge
  loss ``max(0, 1 - m)``;
* regression::

      f(w) = (1/(2n)) ||y - A w - b||^2 + R(w)

* ``R(w) = (alpha/2) ||w||^2`` (``"l2"``) or ``alpha ||w||_1`` (``"l1"``) -- the
  scaling of scikit-learn's ``SGDClassifier``; the intercept ``b`` is never
  penalized and exists only with ``fit_intercept=True``.

A *model vector* is ``w`` with the intercept appended as its last entry when
there is one (length ``n_features + fit_intercept``); `Objective.split` takes it
apart. Losses are written per sample as a function ``phi(m, y)`` of the margin
``m = a^T w + b``; their math is written once, in `_losses`, which the numba
kernels (dispatching on the integer ``code``) and dual certificates
(`Loss.conjugate`, `Loss.dual_clip`) share.

References
----------
F. Pedregosa et al., *copt* (``copt/loss.py``, ``copt/penalty.py``): losses and
penalties as small objects with ``value``/``grad``/``prox``/``lipschitz``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import _losses as _L

__all__ = [
    "LOSSES",
    "PENALTIES",
    "Hinge",
    "L1",
    "L2",
    "Logistic",
    "Loss",
    "Objective",
    "Penalty",
    "Squared",
    "get_loss",
    "get_penalty",
    "relative_suboptimality",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- losses
class Loss:
    """A per-sample loss ``phi(m, y)`` of the margin ``m``: a name over the math in `_losses`.

    The formulas live once, in `asip.algorithms._losses` (the numba kernels use
    the same scalar functions); these methods apply them elementwise to arrays.

    Attributes
    ----------
    name : str
        The scikit-learn style name (``"log_loss"``, ``"hinge"``, ``"squared_error"``).
    code : int
        The integer the numba kernels dispatch on (`_losses.LOSS_CODES`).
    curvature : float or None
        An upper bound on ``phi''(m)``; the smoothness constant of the loss in
        the margin. ``None`` for a non-smooth loss (hinge).
    classification : bool
        Whether ``y`` holds labels in {-1, +1}.
    """

    name: str = ""
    code: int = -1
    curvature: float | None = None
    classification: bool = True

    def value(self, m: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``phi(m_i, y_i)`` for each sample."""
        return _L.loss_value(self.code, m, y)

    def deriv(self, m: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``d phi / d m`` for each sample (a subgradient where not differentiable)."""
        return _L.loss_deriv(self.code, m, y)

    def conjugate(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The convex conjugate ``phi*(u) = sup_m u m - phi(m)``; ``inf`` outside its domain.

        A dual certificate evaluates it at ``u = -a`` (see `dual_clip`).
        """
        return _L.loss_conjugate(self.code, u, y)

    def dual_clip(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Dual variables ``a`` projected onto the feasible set (where ``conjugate(-a)`` is finite)."""
        return _L.loss_dual_clip(self.code, a, y)

    def lipschitz(self, row_sqnorm: np.ndarray | float) -> np.ndarray | float | None:
        """Smoothness of ``w -> phi(a^T w)`` for rows with ``||a||^2 = row_sqnorm``."""
        return None if self.curvature is None else self.curvature * row_sqnorm

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Logistic(Loss):
    """``phi(m, y) = log(1 + exp(-y m))``, computed without overflow."""

    name = "log_loss"
    code = _L.LOGISTIC
    curvature = _L.CURVATURE[_L.LOGISTIC]


class Hinge(Loss):
    """``phi(m, y) = max(0, 1 - y m)``: the SVM loss, non-smooth at ``y m = 1``."""

    name = "hinge"
    code = _L.HINGE
    curvature = _L.CURVATURE[_L.HINGE]


class Squared(Loss):
    """``phi(m, y) = (m - y)^2 / 2``: least squares (the 1/2 is part of the objective)."""

    name = "squared_error"
    code = _L.SQUARED
    curvature = _L.CURVATURE[_L.SQUARED]
    classification = False


# ---------------------------------------------------------------------- penalties
@dataclass(frozen=True)
class Penalty:
    """A regularizer ``R(w)`` with strength ``alpha`` (never applied to the intercept)."""

    alpha: float
    name = ""
    code = -1

    def value(self, coef: np.ndarray) -> float:
        raise NotImplementedError

    def subgrad(self, coef: np.ndarray) -> np.ndarray:
        """A (sub)gradient of ``R`` at ``coef`` (``alpha * sign`` for l1, 0 at 0)."""
        raise NotImplementedError

    def prox(self, coef: np.ndarray, step: float) -> np.ndarray:
        """``argmin_x R(x) + ||x - coef||^2 / (2 step)``."""
        raise NotImplementedError

    @property
    def strong_convexity(self) -> float:
        """The modulus ``mu`` with ``R - mu/2 ||.||^2`` convex."""
        return 0.0


@dataclass(frozen=True)
class L2(Penalty):
    """``R(w) = (alpha/2) ||w||^2``; prox is a shrink by ``1 / (1 + step alpha)``."""

    name = "l2"
    code = 0

    def value(self, coef):
        return 0.5 * self.alpha * float(coef @ coef)

    def subgrad(self, coef):
        return self.alpha * coef

    def prox(self, coef, step):
        return coef / (1.0 + step * self.alpha)

    @property
    def strong_convexity(self) -> float:
        return self.alpha


@dataclass(frozen=True)
class L1(Penalty):
    """``R(w) = alpha ||w||_1``; prox is the soft threshold at ``step * alpha``.

    The soft threshold zeroes every entry in ``[-t, t]`` and shrinks the others by
    ``t`` towards zero: ``sign(x) * max(|x| - t, 0)`` (the ASIP authors' code
    tested ``x < t`` instead of ``x < -t`` and so shifted small entries instead of
    zeroing them; this is the correct one).
    """

    name = "l1"
    code = 1

    def value(self, coef):
        return self.alpha * float(np.abs(coef).sum())

    def subgrad(self, coef):
        return self.alpha * np.sign(coef)

    def prox(self, coef, step):
        t = step * self.alpha
        return np.sign(coef) * np.maximum(np.abs(coef) - t, 0.0)


LOSSES: dict[str, type[Loss]] = {"log_loss": Logistic, "hinge": Hinge, "squared_error": Squared}
PENALTIES: dict[str, type[Penalty]] = {"l2": L2, "l1": L1}


def get_loss(name: str) -> Loss:
    """The loss called ``name``; raises ValueError listing the valid names."""
    try:
        return LOSSES[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown loss {name!r}; valid losses are {sorted(LOSSES)}"
        ) from None


def get_penalty(name: str, alpha: float) -> Penalty:
    """The penalty called ``name`` with strength ``alpha``; raises ValueError on bad input."""
    if name not in PENALTIES:
        raise ValueError(f"unknown penalty {name!r}; valid penalties are {sorted(PENALTIES)}")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a non-negative number, got {alpha!r}") from None
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a non-negative finite number, got {alpha!r}")
    return PENALTIES[name](alpha)


# ---------------------------------------------------------------------- objective
@dataclass(frozen=True)
class Objective:
    """``f(w) = (1/n) sum_i phi(a_i^T w + b, y_i) + R(w)``, the one function every solver minimizes.

    Parameters
    ----------
    loss : Loss
    penalty : Penalty
    fit_intercept : bool
        Whether the model vector carries an unpenalized intercept as its last entry.

    Examples
    --------
    >>> import numpy as np
    >>> obj = Objective(get_loss("squared_error"), get_penalty("l2", 0.0), False)
    >>> float(obj.value(np.array([2.0]), np.array([[1.0]]), np.array([1.0])))
    0.5
    """

    loss: Loss
    penalty: Penalty
    fit_intercept: bool = False

    def split(self, w: np.ndarray) -> tuple[np.ndarray, float]:
        """``(coef, intercept)`` of a model vector (intercept 0.0 without one)."""
        if self.fit_intercept:
            return w[:-1], float(w[-1])
        return w, 0.0

    def n_params(self, n_features: int) -> int:
        """Length of a model vector for ``n_features`` features."""
        return n_features + int(self.fit_intercept)

    def margins(self, w: np.ndarray, X) -> np.ndarray:
        """``A w + b`` (dense or sparse ``X``)."""
        coef, b = self.split(np.asarray(w, dtype=np.float64))
        return np.asarray(X @ coef).ravel() + b

    def value(self, w: np.ndarray, X, y: np.ndarray) -> float:
        """``f(w)`` on ``(X, y)``."""
        m = self.margins(w, X)
        coef, _ = self.split(w)
        return float(np.mean(self.loss.value(m, y))) + self.penalty.value(coef)

    def values(self, W: np.ndarray, X, y: np.ndarray) -> np.ndarray:
        """``f`` at each column of ``W`` (``n_params x k``) with one pass over ``X``."""
        W = np.asarray(W, dtype=np.float64)
        if self.fit_intercept:
            M = np.asarray(X @ W[:-1]) + W[-1][None, :]
            C = W[:-1]
        else:
            M = np.asarray(X @ W)
            C = W
        losses = self.loss.value(M, np.asarray(y)[:, None]).mean(axis=0)
        pens = np.array([self.penalty.value(C[:, k]) for k in range(C.shape[1])])
        return losses + pens

    def smooth_grad(self, w: np.ndarray, X, y: np.ndarray) -> np.ndarray:
        """Gradient of the data term ``(1/n) sum phi`` (a subgradient for hinge), intercept included."""
        m = self.margins(w, X)
        d = self.loss.deriv(m, y) / len(y)
        g = np.asarray(X.T @ d).ravel()
        if self.fit_intercept:
            g = np.append(g, d.sum())
        return g

    def prox(self, w: np.ndarray, step: float) -> np.ndarray:
        """The penalty's prox on the coefficients; the intercept passes through."""
        coef, b = self.split(w)
        out = self.penalty.prox(coef, step)
        return np.append(out, b) if self.fit_intercept else out

    def gradient_mapping_norm(self, w: np.ndarray, X, y: np.ndarray, step: float) -> float:
        """``||w - prox(w - step grad)|| / step``: zero exactly at a minimizer of a smooth-loss problem."""
        g = self.smooth_grad(w, X, y)
        return float(np.linalg.norm(w - self.prox(w - step * g, step)) / step)

    def lipschitz(self, X) -> float | None:
        """Smoothness constant of the data term: ``curvature * ||[A, 1]||_2^2 / n`` (+ alpha for l2).

        ``None`` for a non-smooth loss.
        """
        if self.loss.curvature is None:
            return None
        n = X.shape[0]
        sq = _spectral_sqnorm(X, self.fit_intercept)
        return self.loss.curvature * sq / n + self.penalty.strong_convexity


def _spectral_sqnorm(X, fit_intercept: bool) -> float:
    """``||[A, 1]||_2^2`` via scipy's sparse SVD (exact to ~1e-10 relative)."""
    from scipy.sparse.linalg import svds

    A = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    if fit_intercept:
        ones = np.ones((A.shape[0], 1))
        A = sp.hstack([A, sp.csr_matrix(ones)]).tocsr() if sp.issparse(A) else np.hstack([A, ones])
    if min(A.shape) <= 2:
        dense = A.toarray() if sp.issparse(A) else A
        return float(np.linalg.norm(dense, 2) ** 2)
    s = svds(A, k=1, return_singular_vectors=False, tol=1e-10, random_state=0)
    return float(s[0] ** 2)


def relative_suboptimality(f: float | np.ndarray, f_star: float) -> float | np.ndarray:
    """``(f - f*) / |f*|``: how far an objective value is from the optimum, relative to it.

    A negative value means ``f`` beat the reference optimum (only possible within
    the reference's stated precision). ``f*`` must be non-zero.
    """
    if f_star == 0:
        raise ValueError("relative suboptimality is undefined for f* == 0")
    return (np.asarray(f, dtype=np.float64) - f_star) / abs(f_star)
