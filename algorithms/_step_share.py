"""Each partition's share of the network's recent steps, so asynchronous SGD weights data, not speed.

An operator that applies every peer's step deltas (`_asip_hogwild`) mixes the
partitions' gradients in proportion to how many steps each one takes: a
partition stepping 3x as fast as its peer counts 3x in the fixed point (measured:
1.4e-3 relative suboptimality with iid halves, 3e-3 with 4 partitions at rates
1:2:4:8, whatever the number of steps; 1e-5 at equal rates). A `StepShare`
records, at each call, this operator's cumulative steps and those it has heard
from every peer, and reports how many each partition took within the last
``window`` seconds; `balance` turns that into the factor on this operator's
step (gradient and prox alike) that makes every partition pull as its share of
the rows, as if all stepped at one rate. Scaling the whole step, not only the
gradient, keeps each partition's ratio of loss to penalty exact, so an estimate
that is noisy for every operator alike (its mean of ``1 / share`` is above 1)
moves no fixed point: scaling the gradient alone took abalone's squared-l2 from
1e-5 to 2e-3.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["MAX_SPEEDUP", "StepShare", "balance"]

#: the largest factor `balance` gives a slow partition's steps: it evens out rates up to
#: 1:5 between two partitions; without it, at alpha 1e-4 (constant steps) an operator whose
#: window had just counted a stall stepped up to 15x as long and took the model from 3e-4
#: to 1.5e-1 (1 of 6 fits on 4 partitions, 2x2 cluster, load 10)
MAX_SPEEDUP = 3.0


class StepShare:
    """Cumulative steps per partition (own exact, peers' as heard), sampled over a sliding window."""

    __slots__ = ("window", "heard", "samples")

    def __init__(self, n_partitions: int, window: float):
        self.window = window
        self.heard = np.zeros(n_partitions, dtype=np.int64)  # steps per partition, cumulative
        self.samples: deque = deque()  # (stage time, copy of heard)

    def record(self, now: float) -> np.ndarray:
        """Sample ``heard`` at ``now``; the steps per partition since the window's start."""
        self.samples.append((now, self.heard.copy()))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()  # keep one sample at or before the window's start as its base
        return self.samples[-1][1] - self.samples[0][1]


def balance(recent: np.ndarray, index: int, sizes, cap: float) -> float:
    """The factor on partition ``index``'s step that makes it pull as its rows' share of the
    partitions that stepped (``recent > 0``), at any step rate.

    1 at equal rates; ``(n / (N n_active)) / share_i`` in general, at most ``cap`` (a
    straggler's first steps after a pause must stay short enough to be stable) and
    `MAX_SPEEDUP`; 1 until the window has steps of its own.
    """
    total = recent.sum()
    if recent[index] <= 0 or total <= 0:
        return 1.0
    sizes = np.asarray(sizes, dtype=np.float64)
    active = sizes[recent > 0].sum()
    factor = sizes.sum() / (len(sizes) * active) * total / recent[index]
    return float(min(factor, cap, MAX_SPEEDUP))
