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
"""

from __future__ import annotations

__all__ = ["curvature_floor", "next_mu"]


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
