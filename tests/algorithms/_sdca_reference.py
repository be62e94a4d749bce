"""One SDCA dual coordinate step in plain numpy/scipy: the reference the numba kernels match."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from asip.algorithms import _kernels as K


def dual_delta(loss: int, q: float, m: float, yi: float, a: float) -> float:
    """The exact step on dual ``a`` of a row with margin ``m``, label ``yi``, curvature ``q``.

    Hinge and squared in closed form; logistic by scipy's brentq on the 1-D optimality condition.
    """
    if loss == K.HINGE:
        beta = yi * a
        nb = min(1.0, max(0.0, beta + (1 - yi * m) / q)) if q > 0 else float(yi * m < 1)
        return yi * (nb - beta)
    if loss == K.SQUARED:
        return (yi - m - a) / (1 + q)
    beta = yi * a
    root = brentq(lambda b: np.log((1 - b) / b) - yi * m - q * (b - beta), 1e-300, 1 - 1e-16,
                  xtol=1e-15, rtol=1e-15)
    return yi * (root - beta)
