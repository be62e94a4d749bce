"""The hinge smoothing schedule of `_prox_newton`: how fast ``mu`` may shrink.

The smoothed hinge (`_cd_kernels`) is within ``mu / 2`` of the hinge, so ``mu``
must follow the certified gap down (``mu <= kappa * gap``). But each time it
shrinks, fewer rows lie on the curved band and the previous iterate is no longer
near the new surrogate's minimizer: a jump by orders of magnitude (a gap that
suddenly tightens) leaves a Newton model with almost no curvature, whose steps
the line search cuts to nothing. So ``mu`` shrinks by at most ``mu_shrink`` per
iteration (100x by default: a tighter cap, 10x, made ijcnn1's certificate 2.5x
slower, while a deep drop only comes with a small certified gap, i.e. a
near-optimal iterate, and the best dual seen is kept, `_model_dual.best`).

With local Hessians (a direction averaged from each partition's model) the
plain Hessian of the smoothed hinge -- ``1/mu`` on the band, 0 elsewhere --
lets every model step across kinks it cannot see; off-band rows then get a
share of their quadratic majorizer's curvature (`curvature_floor`).

asip-cocoa's Newton also stops lowering ``mu`` once the smoothing's own part of the gap
(`smoothing_bias`, which only the rows on the band make) is small against the target
(`smooth_enough`): the hinge gap is then reached at that ``mu``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["curvature_floor", "next_mu", "smoothing_bias", "smooth_enough"]

#: asip-cocoa's Newton: ``mu`` stays while the smoothing's share of the certified hinge gap
#: (`smoothing_bias`) is at most this fraction of the gap the fit stops at (`smooth_enough`)
BIAS_SHARE = 0.25


def next_mu(mu: float, gap: float, params: dict) -> float:
    """The next iteration's smoothing: ``kappa * gap``, but no less than ``mu_shrink * mu`` or ``mu_min``."""
    target = max(params["mu_min"], params["kappa"] * gap, params["mu_shrink"] * mu)
    return min(mu, target)


def curvature_floor(floor, full_hessian: bool) -> float:
    """The off-band curvature share: ``floor``, or by default 1 with local Hessians and 0 with the full one."""
    if floor is None:
        return 0.0 if full_hessian else 1.0
    floor = float(floor)
    if not 0.0 <= floor:
        raise ValueError(f"prox-newton needs curv_floor >= 0, got {floor!r}")
    return floor


def on_band(z, mu: float):
    """Which rows lie on the smoothed hinge's curved band, ``0 < z_i < mu`` with
    ``z_i = 1 - y_i m_i`` (a boolean mask): the rows whose curvature is ``1/mu``."""
    return (z > 0.0) & (z < mu)


def smoothing_bias(m, y, mu: float) -> float:
    """``sum_i z_i (1 - z_i / mu)`` over the band rows (``z_i = 1 - y_i m_i`` in ``(0, mu)``):
    how much of the hinge duality gap at margins ``m`` (with the smoothed duals
    ``-phi_mu'``) the smoothing itself makes, times ``n``.

    The hinge gap splits as ``gap_mu + bias / n``: the smoothed problem's own gap (0 at its
    optimum) plus, per row, ``(phi - phi_mu)(m_i) - (mu / 2) b_i^2``, which is 0 off the band
    (``b_i = 1`` where ``phi - phi_mu = mu / 2``, 0 where both vanish) and ``z (1 - z / mu)
    <= mu / 4`` on it. So only the band rows tie the attainable gap to ``mu``."""
    z = 1.0 - np.asarray(y, dtype=np.float64) * np.asarray(m, dtype=np.float64)
    band = z[on_band(z, mu)]
    return float(np.sum(band * (1.0 - band / mu)))


def smooth_enough(bias: float, target: float) -> bool:
    """Whether ``mu`` can stay: the smoothing's part of the gap (`smoothing_bias` / n) is at
    most `BIAS_SHARE` of the ``target`` gap (``tol |P|``), so Newton on this smooth surrogate
    reaches the target by itself; a smaller ``mu`` only makes its rounds harder (fewer band
    rows, a model valid on a narrower region)."""
    return bias <= BIAS_SHARE * target
