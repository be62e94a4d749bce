"""Per-row weights in the loss sum, for the solvers that read ``LocalData.sw``.

The estimators rescale sample weights (times class weights) to mean 1 over all
rows, so a solver that multiplies each row's loss and gradient by ``sw[i]`` and
keeps dividing by ``n_total`` minimizes ``(1/sum s) sum_i s_i phi_i + R``. A
solver declares that it does with ``Algorithm(sample_weight=True)``; the others
raise NotImplementedError when given weights.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K

__all__ = ["loss_grad", "max_weight"]


def loss_grad(data, w, loss, fit_intercept, grad) -> float:
    """`K.loss_grad` on a partition, each row's loss and derivative times ``data.sw`` when
    there are weights (`K.loss_grad_sw`: the same sweeps as the unweighted pass)."""
    return K.loss_grad_sw(data.X, data.y, data.sw, w, loss, fit_intercept, grad)


def max_weight(data) -> float:
    """The largest row weight of a partition (1 without weights): scales curvature bounds."""
    return 1.0 if data.sw is None else float(np.max(data.sw, initial=0.0))
