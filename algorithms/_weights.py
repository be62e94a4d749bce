"""Per-row weights in the loss sum, for the solvers that read ``LocalData.sw``.

The estimators rescale sample weights (times class weights) to mean 1 over all
rows, so a solver that multiplies each row's loss and gradient by ``sw[i]`` and
keeps dividing by ``n_total`` minimizes ``(1/sum s) sum_i s_i phi_i + R``. A
solver declares that it does with ``Algorithm(sample_weight=True)``; the others
raise NotImplementedError when given weights.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _kernels as K

__all__ = ["loss_grad", "max_weight"]


@njit(nogil=True, cache=True)
def _weighted_loss_grad(X, y, sw, w, loss, fit_intercept, grad):
    grad[:] = 0.0
    s = 0.0
    p = w.shape[0]
    flat = K.coef_is_zero(w, fit_intercept)  # as in `K.loss_grad`
    b = w[p - 1] if fit_intercept else 0.0
    for i in range(K.n_rows(X)):
        if sw[i] == 0.0:
            continue
        m = b if flat else K._margin(X, i, w, fit_intercept)
        f, d = K._phi_dphi(loss, m, y[i])
        s += sw[i] * f
        d *= sw[i]
        if d != 0.0:
            K.row_axpy(X, i, d, grad)
            if fit_intercept:
                grad[p - 1] += d
    return s


def loss_grad(data, w, loss, fit_intercept, grad) -> float:
    """`K.loss_grad` on a partition, each row weighted by ``data.sw`` when there are weights."""
    if data.sw is None:
        return K.loss_grad(data.X, data.y, w, loss, fit_intercept, grad)
    return _weighted_loss_grad(data.X, data.y, data.sw, w, loss, fit_intercept, grad)


def max_weight(data) -> float:
    """The largest row weight of a partition (1 without weights): scales curvature bounds."""
    return 1.0 if data.sw is None else float(np.max(data.sw, initial=0.0))
