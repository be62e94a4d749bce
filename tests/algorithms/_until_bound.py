"""A fit's ``callback`` that ends a stochastic fit once its model has settled within half a
bound: how far a fixed number of seconds gets is the machine's load, not the solver."""

from __future__ import annotations

#: seconds the model must stay within half the bound (a model that merely touched the bound
#: early under load was 2-9x off it a few ms later)
HOLD = 0.3


class UntilBound:
    """``callback(seconds, w)``: True once ``least`` seconds have run and ``suboptimality(w)``
    has stayed within ``bound / 2`` for the last `HOLD` seconds of reports."""

    def __init__(self, suboptimality, bound: float, least: float):
        self.suboptimality, self.bound, self.least = suboptimality, bound, least
        self.since = None  # the stage time from which every model was within bound / 2

    def __call__(self, seconds, w):
        if self.suboptimality(w) > self.bound / 2:
            self.since = None
            return False
        self.since = seconds if self.since is None else self.since
        return seconds >= self.least and seconds - self.since >= HOLD
