"""The hinge smoothing schedule of `_prox_newton`: how fast ``mu`` may shrink.

The smoothed hinge (`_cd_kernels`) is within ``mu / 2`` of the hinge, so ``mu``
must follow the certified gap down (``mu <= kappa * gap``). But each time it
shrinks, fewer rows lie on the curved band and the previous iterate is no longer
near the new surrogate's minimizer: a jump by orders of magnitude (a gap that
suddenly tightens) leaves a Newton model with almost no curvature, whose steps
the line search cuts to nothing. So ``mu`` shrinks by at most ``shrink`` per
iteration, and the damping restarts whenever it does.
"""

from __future__ import annotations

__all__ = ["next_mu"]


def next_mu(mu: float, gap: float, params: dict) -> float:
    """The next iteration's smoothing: ``kappa * gap``, but no less than ``shrink * mu`` or ``mu_min``."""
    target = max(params["mu_min"], params["kappa"] * gap, params["mu_shrink"] * mu)
    return min(mu, target)
