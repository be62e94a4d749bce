"""The loss math, written once: value, derivative, curvature, conjugate and dual clip of each loss.

Every per-sample loss is a function ``phi(m, y)`` of the margin ``m = a^T w + b``
(see `_objectives`). This module is the one place that defines it, as scalar
numba functions dispatched on an integer code:

=============  ================================  ==========  ===========================  ===============
loss (code)    ``phi(m, y)``                     curvature   ``phi*(-a, y)``, ``b = a y``   dual feasible
=============  ================================  ==========  ===========================  ===============
LOGISTIC (0)   ``log(1 + exp(-y m))``            1/4         ``b log b + (1-b) log(1-b)``  ``0 <= b <= 1``
HINGE (1)      ``max(0, 1 - y m)``               none        ``-b``                        ``0 <= b <= 1``
SQUARED (2)    ``(m - y)^2 / 2``                 1           ``a^2 / 2 - a y``             all ``a``
=============  ================================  ==========  ===========================  ===============

The numba kernels (`_kernels`) call the scalar functions inside their loops;
the numpy objective (`_objectives.Loss`) calls the same functions through
numba ufuncs (`loss_value`, `loss_deriv`, `loss_conjugate`, `loss_dual_clip`),
so a loss cannot mean one thing in a kernel and another in a test or a
certificate. ``conjugate(u, y)`` is the convex conjugate ``phi*(u) = sup_m u m -
phi(m)`` (``inf`` outside its domain); a dual certificate evaluates it at
``u = -a`` for dual variables ``a`` first made feasible by ``dual_clip`` (the
duality-gap certificate of `_certificate` and README's "asip-cocoa" section; the
conjugates as in S. Shalev-Shwartz, T. Zhang, "Stochastic dual coordinate ascent
methods", JMLR 2013, and C. Duenner, S. Forte, M. Takac, M. Jaggi, "Primal-dual rates
and certificates", ICML 2016).
"""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
from numba import njit, vectorize

__all__ = [
    "CURVATURE",
    "HINGE",
    "LOGISTIC",
    "LOSS_CODES",
    "SQUARED",
    "conjugate",
    "curvature",
    "ROW_CURVATURE",
    "ROW_DERIV",
    "ROW_DUAL_CLIP",
    "ROW_SMOOTH_DERIV",
    "ROW_SMOOTH_VALUE",
    "ROW_VALUE",
    "deriv",
    "dual_clip",
    "smoothed",
    "value",
    "value_deriv",
    "loss_rows",
    "rows",
    "value_deriv_rows",
    "value_rows",
]

logger = logging.getLogger(__name__)

LOGISTIC, HINGE, SQUARED = 0, 1, 2

#: scikit-learn style name -> code
LOSS_CODES = {"log_loss": LOGISTIC, "hinge": HINGE, "squared_error": SQUARED}

#: code -> upper bound on phi''(m) (the loss's smoothness in the margin); None: not smooth
CURVATURE = {LOGISTIC: 0.25, HINGE: None, SQUARED: 1.0}

_JIT = {"nogil": True, "cache": True}
_FEAS_TOL = 1e-12  # how far outside [0, 1] a dual b may be and still count as feasible


@njit(**_JIT)
def value(loss, m, y):
    """``phi(m, y)``; the logistic loss is evaluated without overflow."""
    if loss == LOGISTIC:
        z = -y * m
        if z > 0:
            return z + math.log1p(math.exp(-z))
        return math.log1p(math.exp(z))
    if loss == HINGE:
        return max(0.0, 1.0 - y * m)
    return 0.5 * (m - y) * (m - y)


@njit(**_JIT)
def deriv(loss, m, y):
    """``d phi / d m`` (for hinge the subgradient ``-y`` where ``y m < 1``, else 0)."""
    if loss == LOGISTIC:
        z = y * m
        if z > 0:
            e = math.exp(-z)
            return -y * e / (1.0 + e)
        return -y / (1.0 + math.exp(z))
    if loss == HINGE:
        return -y if y * m < 1.0 else 0.0
    return m - y


@njit(**_JIT)
def value_deriv(loss, m, y):
    """``(value(loss, m, y), deriv(loss, m, y))``, bit for bit, with one ``exp`` for the
    logistic loss instead of two (a gradient pass wants both at every row)."""
    if loss == LOGISTIC:
        z = -y * m
        if z > 0:
            e = math.exp(-z)
            return z + math.log1p(e), -y / (1.0 + e)
        e = math.exp(z)
        return math.log1p(e), -y * e / (1.0 + e)
    return value(loss, m, y), deriv(loss, m, y)


@njit(**_JIT)
def curvature(loss, m, y):
    """``d^2 phi / d m^2`` (hinge: 0, its kink has none); logistic ``s (1 - s)``,
    ``s = sigmoid(y m)``, as ``e / (1 + e)^2`` with ``e = exp(-|y m|)`` (no overflow)."""
    if loss == LOGISTIC:
        e = math.exp(-abs(y * m))
        return e / ((1.0 + e) * (1.0 + e))
    if loss == HINGE:
        return 0.0
    return 1.0


@njit(**_JIT)
def conjugate(loss, u, y):
    """``phi*(u) = sup_m u m - phi(m, y)``; ``inf`` outside the domain.

    For hinge and logistic the domain is ``u = -b y`` with ``b`` in [0, 1]
    (``0 log 0 = 0``); for squared loss it is everything.
    """
    if loss == SQUARED:
        return 0.5 * u * u + u * y
    b = -u * y
    if b < -_FEAS_TOL or b > 1.0 + _FEAS_TOL:
        return np.inf
    if loss == HINGE:
        return -b
    b = min(max(b, 0.0), 1.0)
    out = 0.0
    if b > 0.0:
        out += b * math.log(b)
    if b < 1.0:
        out += (1.0 - b) * math.log(1.0 - b)
    return out


@njit(**_JIT)
def dual_clip(loss, a, y):
    """The dual variable ``a`` made feasible (``a y`` clipped to [0, 1]; squared: unchanged).

    With ``a = -phi'(m)`` from a primal point this gives a feasible dual for
    every loss (for hinge the subgradient already is; the clip guards rounding).
    """
    if loss == SQUARED:
        return a
    b = min(max(a * y, 0.0), 1.0)
    return b * y


@njit(**_JIT)
def smoothed(loss, m, y, mu):
    """``(phi_mu(m, y), phi_mu'(m, y), phi_mu''(m, y))``: hinge smoothed with width ``mu``
    (Shalev-Shwartz & Zhang 2013), logistic and squared themselves (``mu`` unused)::

        phi_mu(m, y) = 0                     if y m >= 1
                     = (1 - y m)^2 / (2 mu)  if 1 - mu < y m < 1
                     = 1 - y m - mu / 2      if y m <= 1 - mu

    within ``mu / 2`` of the hinge, curvature ``1/mu`` on the band, and ``-phi_mu'`` a
    feasible hinge dual (``b`` in [0, 1]). The Newton solvers (`_prox_newton`, asip-cocoa's
    `_cocoa_newton`) minimize it for hinge; the certificates measure the hinge itself.
    """
    if loss == HINGE:
        z = 1.0 - y * m
        if z <= 0.0:
            return 0.0, 0.0, 0.0
        if z >= mu:
            return z - 0.5 * mu, -y, 0.0
        return 0.5 * z * z / mu, -y * z / mu, 1.0 / mu
    if loss == LOGISTIC:
        d = deriv(loss, m, y)
        s = -d * y  # sigmoid(-y m)
        return value(loss, m, y), d, s * (1.0 - s)
    return value(loss, m, y), m - y, 1.0


@njit(**_JIT)
def value_deriv_rows(loss, m, y, mu, v, d):
    """Per row ``v_i = phi(m_i, y_i)`` and ``d_i = phi'(m_i, y_i)`` in one pass (hinge: the
    smoothed ``phi_mu``), bit for bit what `loss_value` and `loss_deriv` (`smooth_value`
    and `smooth_deriv`) give: a line search's trial point needs the value, and the
    accepted one the derivative next (logistic: one ``exp`` for both)."""
    for i in range(m.shape[0]):
        if loss == HINGE:
            s = smoothed(loss, m[i], y[i], mu)
            v[i] = s[0]
            d[i] = s[1]
        else:
            v[i], d[i] = value_deriv(loss, m[i], y[i])


#: what `loss_rows` gives per row: `value`, `deriv`, `curvature`, `dual_clip`, and
#: hinge's smoothed value and derivative (`smoothed`; other losses: themselves)
ROW_VALUE, ROW_DERIV, ROW_CURVATURE, ROW_DUAL_CLIP, ROW_SMOOTH_VALUE, ROW_SMOOTH_DERIV = range(6)


@njit(**_JIT)
def loss_rows(kind, loss, m, y, mu):
    """Per row ``i`` the ``kind`` (`ROW_VALUE`, ...) of ``(m_i, y_i)``: bit for bit the ufunc
    of that name (`loss_value`, ..., `smooth_deriv`) over 1-D float64 arrays, as one cached
    kernel, where each ufunc's wrapper is built (uncached, 30-150 ms) in every process that
    first calls it. Call it through `rows`."""
    out = np.empty(m.shape[0])
    for i in range(m.shape[0]):
        if kind == ROW_VALUE:
            out[i] = value(loss, m[i], y[i])
        elif kind == ROW_DERIV:
            out[i] = deriv(loss, m[i], y[i])
        elif kind == ROW_CURVATURE:
            out[i] = curvature(loss, m[i], y[i])
        elif kind == ROW_DUAL_CLIP:
            out[i] = dual_clip(loss, m[i], y[i])
        elif kind == ROW_SMOOTH_VALUE:
            out[i] = smoothed(loss, m[i], y[i], mu)[0]
        else:
            out[i] = smoothed(loss, m[i], y[i], mu)[1]
    return out


def rows(kind: int, loss: int, m, y, mu: float = 1.0) -> np.ndarray:
    """`loss_rows` of 1-D ``m`` and ``y``, cast to float64 as the ufuncs cast their input."""
    return loss_rows(kind, loss, np.asarray(m, dtype=np.float64),
                     np.asarray(y, dtype=np.float64), float(mu))


@njit(**_JIT)
def value_rows(loss, M, y):
    """``phi(M_ik, y_i)`` for margins ``M`` (rows x points), what ``loss_value(loss, M,
    y[:, None])`` gives: a cached kernel for the trace's objective, instead of the ufunc's
    uncached wrapper."""
    out = np.empty(M.shape)
    for i in range(M.shape[0]):
        for k in range(M.shape[1]):
            out[i, k] = value(loss, M[i, k], y[i])
    return out


# numpy-facing ufuncs over the same scalar functions (broadcasting like any ufunc), built
# on first use (`__getattr__`): each costs a cache load and an uncached LLVM wrapper (30-150
# ms; at import, the first also paid numba's ~0.3 s setup), and a default fit needs none of
# the eight (`rows`, `value_rows` above are what the solvers use).
_SIG = "float64(int64, float64, float64)"
_SIG_MU = "float64(int64, float64, float64, float64)"


def _loss_value(loss, m, y):
    return value(loss, m, y)


def _loss_deriv(loss, m, y):
    return deriv(loss, m, y)


def _loss_curvature(loss, m, y):
    return curvature(loss, m, y)


def _loss_conjugate(loss, u, y):
    return conjugate(loss, u, y)


def _loss_dual_clip(loss, a, y):
    return dual_clip(loss, a, y)


def _smooth_value(loss, m, y, mu):
    return smoothed(loss, m, y, mu)[0]


def _smooth_deriv(loss, m, y, mu):
    return smoothed(loss, m, y, mu)[1]


def _smooth_curvature(loss, m, y, mu):
    return smoothed(loss, m, y, mu)[2]


#: ufunc name -> (its scalar function, its one signature)
_UFUNCS = {"loss_value": (_loss_value, _SIG), "loss_deriv": (_loss_deriv, _SIG),
           "loss_curvature": (_loss_curvature, _SIG), "loss_conjugate": (_loss_conjugate, _SIG),
           "loss_dual_clip": (_loss_dual_clip, _SIG), "smooth_value": (_smooth_value, _SIG_MU),
           "smooth_deriv": (_smooth_deriv, _SIG_MU),
           "smooth_curvature": (_smooth_curvature, _SIG_MU)}
__all__ += sorted(_UFUNCS)  # defined on first access, by `__getattr__`
_ufunc_lock = threading.Lock()  # in-process workers may ask for the same one at once


def __getattr__(name: str):
    """The ufunc ``name`` (`loss_value`, ..., `smooth_curvature`), built on first access."""
    if name not in _UFUNCS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _ufunc_lock:
        if name not in globals():
            func, sig = _UFUNCS[name]
            func.__name__ = func.__qualname__ = name  # the ufunc's name, as if defined here
            globals()[name] = vectorize([sig], cache=True)(func)
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(_UFUNCS))
