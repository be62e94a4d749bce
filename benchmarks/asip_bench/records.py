"""One benchmark run as data: its trace, its reference, and the questions asked of it.

A trace is a list of ``[seconds, objective]`` with seconds counted from the
call that started the solve (see `asip_bench.runner` for what each family's
clock includes). Two readings exist:

* a *running* trace (asip, dask-glm): points of one solve; the model at a
  budget ``b`` is the last point at or before ``b``;
* *independent fits* (scikit-learn): each point is a separate complete fit
  with a larger iteration cap; the result at ``b`` is the best fit that
  finished within ``b``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["REL_FLOOR", "Run"]

#: relative suboptimalities below this are clamped for ratios (below typical f* precision)
REL_FLOOR = 1e-10


@dataclass
class Run:
    """A solver on a dataset x task under a budget, and what came of it."""

    dataset: str
    task: str
    solver: str
    family: str  # "asip", "sklearn" or "dask-glm"
    kind: str = "matrix"  # matrix | straggler | kill | scaling | crossover | fixed-cost | decided
    budget: float = 0.0
    status: str = "ok"  # ok | skipped | error | hung (a peer call that never returned)
    note: str = ""
    trace: list = field(default_factory=list)  # [[seconds, objective], ...]
    independent: bool = False  # trace points are separate fits (scikit-learn)
    f_star: float | None = None
    f_star_precision: float = 0.0  # the reference's certified relative precision
    fit_seconds: float | None = None  # wall time of the whole call, evaluation excluded
    offset: float = 0.0  # seconds added to the solver's own clock (asip: input checks + launch)
    n_rows: int = 0
    n_partitions: int = 0
    faults: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # asip stage: data / launch / teardown
    stats: dict = field(default_factory=dict)  # asip stage: channel statistics (total)
    restarts: int = 0
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ readings
    def rel(self, f: float) -> float:
        """Relative suboptimality of objective ``f`` (nan without a reference)."""
        if self.f_star is None or not math.isfinite(f):
            return math.nan
        return (f - self.f_star) / abs(self.f_star)

    def rel_trace(self) -> list[tuple[float, float]]:
        return [(float(t), self.rel(float(f))) for t, f in self.trace]

    def rel_at(self, budget: float) -> float:
        """Relative suboptimality of the model available at ``budget`` s (nan if none yet)."""
        pts = [(t, r) for t, r in self.rel_trace() if t <= budget + 1e-9]
        if not pts:
            return math.nan
        if self.independent:
            return min(r for _, r in pts)
        return pts[-1][1]

    def time_to(self, target: float) -> float:
        """First time the relative suboptimality is at most ``target`` (inf if never)."""
        times = [t for t, r in self.rel_trace() if r <= target]
        return min(times) if times else math.inf

    def best_rel(self) -> float:
        rels = [r for _, r in self.rel_trace() if math.isfinite(r)]
        return min(rels) if rels else math.nan

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.trace)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["rel"] = [[t, r] for t, r in self.rel_trace()]
        return out
