"""The one adapter between the math and the runtime: a generic `asip.Operator` for any algorithm.

`SolverOperator` is the only class in `asip.algorithms` that subclasses
`asip.Operator`. It holds the algorithm's name, the `Problem` and the
hyperparameters (so a template instance pickles to every partition), and on
each ``step`` it does exactly this::

    inbox = ctx.poll(wait)                               # what peers pushed (maybe nothing)
    out = algo.local_step(state, data, inbox, ctx.elapsed)
    for o in out.outbox: ctx.push(o.payload, to=o.to)   # never blocks
    ctx.report(**algo.snapshot(state))                   # every ``report_every`` s
                                                         # (+ "objective", its local value)
    return asip.STOP if out.done else None

``wait`` is what the algorithm asked for (barrier algorithms block on ``poll``
for their peers; asynchronous ones never wait). Time, stopping, restarts and
faults are the runtime's business; a restarted operator simply runs
``setup`` again with ``ctx.incarnation > 0``, which every algorithm's ``init``
and ``local_step`` treat as "rejoin from the peers".

In ``setup`` the operator declares the algorithm's message schema with
``ctx.expect``: a peer's message with a missing or unknown key, the wrong
dtype or shape, or a NaN/inf is rejected by the runtime (counted as
``rejected`` in the stage's stats) and never reaches ``local_step``. A warm
start (``start``, a `Start`) is applied to the first incarnation only; a
restarted one rejoins from its peers as usual.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np

import dask.config
from dask.utils import parse_timedelta

import asip

from . import _kernels as K
from ._base import Problem, Start, local_data
from ._solvers import get_algorithm

__all__ = ["SolverOperator"]

logger = logging.getLogger(__name__)


class SolverOperator(asip.Operator):
    """Runs the algorithm ``solver`` on one partition ``(X_block, y_block)``.

    Parameters
    ----------
    solver : str
        A name from `asip.algorithms._solvers.RUNTIME_SOLVERS`.
    problem : Problem
    params : dict
        The algorithm's hyperparameters (merged with its defaults).
    report_every : float, optional
        Seconds between snapshots sent with ``ctx.report`` (the runtime rate-limits
        reports too; this avoids building snapshots nobody sees). Default: half of
        ``asip.trace.report-interval`` as configured on the driver.
    start : Start, optional
        Warm start: the saved model (and per-partition snapshots) to begin from.
    """

    def __init__(self, solver: str, problem: Problem, params: dict | None = None,
                 report_every: float | None = None, start: Start | None = None):
        algo = get_algorithm(solver)
        self.solver = solver
        self.problem = problem
        self.params = algo.merge(params)
        if algo.validate is not None:  # a problem the solver cannot take fails here, not on workers
            algo.validate(problem, self.params)
        if report_every is None:
            report_every = parse_timedelta(dask.config.get("asip.trace.report-interval")) / 2
        self.report_every = float(report_every)
        if start is not None:
            if algo.resume is None:
                raise ValueError(f"solver {solver!r} cannot warm-start")
            if getattr(start.w, "shape", None) != (problem.p,):
                raise ValueError(f"start.w must be a model vector of shape ({problem.p},), got "
                                 f"{getattr(start.w, 'shape', type(start.w).__name__)}")
        self.start = start
        self._state: Any = None

    def setup(self, ctx, partition) -> None:
        X, y = partition
        self._algo = get_algorithm(self.solver)
        self._data = local_data(X, y, self.problem, ctx.index, ctx.incarnation)
        if self._algo.schema is not None:
            ctx.expect(*self._algo.schema(self.problem))
        self._state = self._algo.init(self.problem, self._data, self.params)
        if self.start is not None and ctx.incarnation == 0:
            self._state = self._algo.resume(self._state, self._data, self.start)
        self._warm_up()
        self._wait = 0.0
        self._reported = -float("inf")
        self._objective_at, self._objective = 0.0, float("nan")
        logger.debug("partition %d (incarnation %d): %s on %d rows", ctx.index,
                     ctx.incarnation, self.solver, self._data.n)

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels before the gang's clock starts.

        One throw-away ``local_step`` on a copy of the state: the first fit on a new
        kind of data (dense after sparse, say) would otherwise spend its time budget
        in the JIT compiler.
        """
        self._algo.local_step(copy.deepcopy(self._state), self._data, (), 0.0)

    def step(self, ctx):
        inbox = ctx.poll(self._wait) if self._data.n_partitions > 1 else ()
        now = ctx.elapsed
        out = self._algo.local_step(self._state, self._data, inbox, now)
        self._state, self._wait = out.state, out.wait
        for o in out.outbox:
            ctx.push(o.payload, to=o.to)
        if out.done or now - self._reported >= self.report_every:
            self._reported = now
            snapshot = self._algo.snapshot(self._state)
            if now >= self._objective_at:  # for the /asip dashboard's plot; kept in
                self._objective = self._local_objective(snapshot, now)  # every report, as
            snapshot["objective"] = self._objective  # the runtime keeps the latest only
            ctx.report(**snapshot)
        if out.done:
            return asip.STOP
        return None

    def _local_objective(self, snapshot: dict, now: float) -> float:
        """This partition's mean loss plus the penalty at this operator's own model: a
        scalar the dashboard plots live. Spaced so it costs at most ~1% of the time."""
        t0 = time.perf_counter()
        try:
            w = np.asarray(self._algo.combine(self.problem, [snapshot]), dtype=np.float64)
            d = self._data
            value = K.loss_sum(d.X, d.y, w, self.problem.loss, self.problem.fit_intercept) / d.n
            coef = w[:self.problem.n_features]
            value += (self.problem.alpha * float(np.abs(coef).sum())
                      if self.problem.penalty == K.L1 else
                      0.5 * self.problem.alpha * float(coef @ coef))
        except Exception:  # a snapshot this solver cannot turn into a model yet
            value = float("nan")
        self._objective_at = now + max(0.5, 100 * (time.perf_counter() - t0))
        return float(value)

    def result(self, ctx) -> dict:
        if self._state is None:
            return {}
        return self._algo.snapshot(self._state)
