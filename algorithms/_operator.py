"""The one adapter between the math and the runtime: a generic `asip.Operator` for any algorithm.

`SolverOperator` is the only class in `asip.algorithms` that subclasses
`asip.Operator`. It holds the algorithm's name, the `Problem` and the
hyperparameters (so a template instance pickles to every partition), and on
each ``step`` it does exactly this::

    inbox = ctx.poll(wait)                               # what peers pushed (maybe nothing)
    out = algo.local_step(state, data, inbox, ctx.elapsed)
    for o in out.outbox: ctx.push(o.payload, to=o.to)   # never blocks
    ctx.report(**metrics(algo.snapshot(state)))          # every ``report_every`` s (more
                                                         # often early: `report_interval_at`)
                                                         # when ``ctx.report_due``
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

Several tasks in one stage (``n_tasks > 1``: one-vs-rest multiclass): the
operator holds one algorithm state per task, on the same rows with the labels
``y == task`` as +1 and the rest as -1 (``y`` holds class indices), tags every
message it pushes with ``"task"`` and hands each state only its own task's
messages. The stage stops when every task is done. Snapshots and results stack
the tasks' values along a leading axis (`_model.stack_tasks`).

Reports carry metrics, not models, unless the model is small: scalars (the
algorithm's counters, a duality gap where it has one, the messages this operator
pushed and received) always; the snapshot's arrays only while they total at most
``asip.trace.model-bytes`` (default 64 KiB, i.e. 8,192 float64s) or when
``report_models=True`` (the estimator's ``callback`` and ``checkpoint`` need the
model in every report). The final model always comes from ``result()``. So a
wide model never streams through the scheduler.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import NamedTuple, Sequence

import dask.config
import numpy as np
from dask.utils import parse_bytes, parse_timedelta

import asip
from asip._operator import report_interval_at

from . import _kernels as K
from ._base import Problem, Start, local_data
from ._model import MODEL_FLAG, stack_tasks
from ._solvers import get_algorithm

__all__ = ["SolverOperator"]

logger = logging.getLogger(__name__)

#: report the model while the snapshot's arrays take at most this many bytes
MODEL_BYTES_KEY = "asip.trace.model-bytes"
MODEL_BYTES_DEFAULT = "64 KiB"


class _TaskMessage(NamedTuple):
    """A peer's message as one task's state sees it: the payload without its task tag."""

    sender: int
    incarnation: int
    payload: dict
    sent_at: float


def model_bytes_budget() -> int:
    """``asip.trace.model-bytes`` as configured here (bytes)."""
    value = dask.config.get(MODEL_BYTES_KEY, default=MODEL_BYTES_DEFAULT)
    return int(parse_bytes(value) if isinstance(value, str) else value)


#: `warm_up_key`s this process has warmed (numba's compiled kernels live per process)
_WARMED: set = set()


def _array_kind(a) -> tuple:
    """What numba specializes an array argument on: dtype, dimensions and layout."""
    a = np.asarray(a)
    layout = "C" if a.flags.c_contiguous else ("F" if a.flags.f_contiguous else "A")
    return a.dtype.str, a.ndim, layout


def warm_up_key(solver: str, problem: Problem, params: dict, data) -> tuple:
    """What decides which kernels a fit compiles: the solver and its hyperparameters, the
    loss, penalty and intercept, dense or CSR and the arrays' dtypes and layouts, weights
    or not. Two setups with the same key in one process run the same compiled code."""
    X = data.X
    matrix = (("csr",) + tuple(_array_kind(a) for a in X) if isinstance(X, tuple)
              else ("dense", _array_kind(X)))
    return (solver, problem.loss, problem.penalty, bool(problem.fit_intercept),
            repr(sorted(params.items())), matrix, _array_kind(data.y),
            None if data.sw is None else _array_kind(data.sw))


#: stage seconds before an operator first evaluates its local objective (the dashboard's
#: live plot): a short fit is decided in its first rounds and should not pay a data pass
FIRST_OBJECTIVE_AT = 0.5


def _loss_total(d, w: np.ndarray, pb: Problem) -> float:
    """The (weighted) loss summed over the rows of partition data ``d`` at model ``w``."""
    if d.sw is None:
        return K.loss_sum(d.X, d.y, w, pb.loss, pb.fit_intercept)
    from ._weights import loss_grad
    return loss_grad(d, w, pb.loss, pb.fit_intercept, np.empty(pb.p))


class SolverOperator(asip.Operator):
    """Runs the algorithm ``solver`` on one partition ``(X_block, y_block[, w_block])``.

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
    start : Start or sequence of Start, optional
        Warm start: the saved model (and per-partition snapshots) to begin from; one
        per task when ``n_tasks > 1``.
    n_tasks : int
        Problems solved side by side on the same rows (one-vs-rest: one per class).
    report_models : bool, optional
        Put the model in every report (True), never (False), or while its arrays fit
        in ``asip.trace.model-bytes`` (None, the default).
    """

    def __init__(self, solver: str, problem: Problem, params: dict | None = None,
                 report_every: float | None = None,
                 start: Start | Sequence[Start] | None = None, n_tasks: int = 1,
                 report_models: bool | None = None):
        algo = get_algorithm(solver)
        self.solver = solver
        self.problem = problem
        self.params = algo.merge(params)
        if algo.validate is not None:  # a problem the solver cannot take fails here, not on workers
            algo.validate(problem, self.params)
        if report_every is None:
            report_every = parse_timedelta(dask.config.get("asip.trace.report-interval")) / 2
        self.report_every = float(report_every)
        if not isinstance(n_tasks, int) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive int, got {n_tasks!r}")
        self.n_tasks = n_tasks
        starts = None
        if start is not None:
            starts = (start,) if isinstance(start, Start) else tuple(start)
            if len(starts) != n_tasks:
                raise ValueError(f"start holds {len(starts)} models for {n_tasks} tasks")
            if algo.resume is None:
                raise ValueError(f"solver {solver!r} cannot warm-start")
            for s in starts:
                if getattr(s.w, "shape", None) != (problem.p,):
                    raise ValueError(f"start.w must be a model vector of shape ({problem.p},), "
                                     f"got {getattr(s.w, 'shape', type(s.w).__name__)}")
        self.start = starts
        self.model_bytes = (None if report_models is None
                            else (float("inf") if report_models else -1.0))
        if self.model_bytes is None:
            self.model_bytes = float(model_bytes_budget())
        self._states: list = []

    def setup(self, ctx, partition) -> None:
        X, y, *rest = partition
        sw = rest[0] if rest else None
        self._algo = algo = get_algorithm(self.solver)
        if sw is not None and not algo.sample_weight:
            raise NotImplementedError(f"solver {self.solver!r} does not support sample weights")
        base = local_data(X, y, self.problem, ctx.index, ctx.incarnation, sw)
        if self.n_tasks == 1:
            self._datas = [base]
        else:
            self._datas = [base._replace(y=np.where(base.y == t, 1.0, -1.0))
                           for t in range(self.n_tasks)]
        if algo.schema is not None:
            required, optional = algo.schema(self.problem)
            if self.n_tasks > 1:
                required = dict(required, task=int)
            ctx.expect(required, optional)
        self._states = [algo.init(self.problem, d, self.params) for d in self._datas]
        if self.start is not None and ctx.incarnation == 0:
            self._states = [algo.resume(s, d, st)
                            for s, d, st in zip(self._states, self._datas, self.start)]
        self._warm_up()
        self._done = [False] * self.n_tasks
        self._wait = 0.0
        self._reported = -float("inf")
        self._pushed = self._received = 0
        # the first only after FIRST_OBJECTIVE_AT: a whole loss pass at the first report
        # delayed every partition's first round (20 ms a worker at 1M x 10^5)
        self._objective_at, self._objective = FIRST_OBJECTIVE_AT, float("nan")
        logger.debug("partition %d (incarnation %d): %s on %d rows, %d task(s)", ctx.index,
                     ctx.incarnation, self.solver, base.n, self.n_tasks)

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels before the gang's clock starts.

        One throw-away ``local_step`` on a copy of the state (or the solver's own
        ``warm_up``, where a step is a whole data pass): the first fit on a new kind of
        data (dense after sparse, say) would otherwise spend its time budget in the JIT
        compiler. Only once per process and `warm_up_key`: a restarted incarnation (or a
        second partition) in a process that already warmed the same kind of fit would
        spend a whole throw-away round on kernels that are loaded (up to 2.4 s at 250k
        rows under load, before it may step).
        """
        key = warm_up_key(self.solver, self.problem, self.params, self._datas[0])
        if key in _WARMED:
            return
        if self._algo.warm_up is not None:
            self._algo.warm_up(self._states[0], self._datas[0])
        else:
            self._algo.local_step(copy.deepcopy(self._states[0]), self._datas[0], (), 0.0)
        # and the dashboard objective's pass (`_local_objective`, first at FIRST_OBJECTIVE_AT):
        # on a fresh install its compile came in the run, ~1 s of a worker's budget at load 15
        d = self._datas[0].first_row()
        _loss_total(d, np.zeros(self.problem.p), self.problem)
        _WARMED.add(key)

    def step(self, ctx):
        inbox = ctx.poll(self._wait) if self.problem.n_partitions > 1 else ()
        self._received += len(inbox)
        now = ctx.elapsed
        if self.n_tasks == 1:
            boxes = [inbox]
        else:
            boxes = [[] for _ in range(self.n_tasks)]
            for m in inbox:
                payload = dict(m.payload)
                task = payload.pop("task")
                if 0 <= task < self.n_tasks:
                    boxes[task].append(_TaskMessage(m.sender, m.incarnation, payload,
                                                    m.sent_at))
        wait = None
        for t in range(self.n_tasks):
            if self._done[t]:
                continue
            out = self._algo.local_step(self._states[t], self._datas[t], boxes[t], now)
            self._states[t] = out.state
            for o in out.outbox:
                ctx.push(o.payload if self.n_tasks == 1 else dict(o.payload, task=t), to=o.to)
            self._pushed += len(out.outbox)
            self._done[t] = bool(out.done)
            wait = out.wait if wait is None else min(wait, out.wait)
        self._wait = wait or 0.0
        done = all(self._done)
        # only when the runtime sends it now (`Context.report_due`): its own clock runs from
        # the last send, this one from a step's start, and a report it held back went out
        # only with the next one built, a period later (the trace lagged the model ~5 ms)
        if done or (now - self._reported >= report_interval_at(self.report_every, now)
                    and ctx.report_due):
            self._reported = now
            snap = self._snapshot()
            if now >= self._objective_at:  # for the /asip dashboard's plot; kept in
                self._objective = self._local_objective(now)  # every report, as
            report = self._report(snap)  # the runtime keeps the latest only
            report["objective"] = self._objective
            ctx.report(**report)
        if done:
            return asip.STOP
        return None

    def _local_objective(self, now: float) -> float:
        """This partition's mean (weighted) loss plus the penalty at this operator's own
        model, summed over the tasks: a scalar the dashboard plots live. Spaced so it
        costs at most ~1% of the time."""
        t0 = time.perf_counter()
        pb = self.problem
        value = 0.0
        try:
            for state, d in zip(self._states, self._datas):
                snap = self._algo.snapshot(state)
                w = np.asarray(self._algo.combine(pb, [snap]), dtype=np.float64)
                loss = _loss_total(d, w, pb)
                coef = w[:pb.n_features]
                value += loss / d.n + (pb.alpha * float(np.abs(coef).sum()) if pb.penalty == K.L1
                                       else 0.5 * pb.alpha * float(coef @ coef))
        except Exception:  # a snapshot this solver cannot turn into a model yet
            value = float("nan")
        self._objective_at = now + max(0.5, 100 * (time.perf_counter() - t0))
        return float(value)

    def _snapshot(self) -> dict:
        return stack_tasks([self._algo.snapshot(s) for s in self._states])

    def _report(self, snap: dict) -> dict:
        """The snapshot's scalars, plus its arrays while they fit the model budget."""
        size = sum(v.nbytes for v in snap.values() if isinstance(v, np.ndarray))
        with_model = size <= self.model_bytes
        if not with_model:
            per_task = (self.n_tasks,) if self.n_tasks > 1 else ()
            snap = {k: v for k, v in snap.items()
                    if not isinstance(v, np.ndarray) or v.shape == per_task}
        snap[MODEL_FLAG] = int(with_model)
        snap["msgs_out"] = self._pushed
        snap["msgs_in"] = self._received
        return snap

    def result(self, ctx) -> dict:
        if not self._states:
            return {}
        snap = self._snapshot()
        snap[MODEL_FLAG] = 1
        snap["msgs_out"] = self._pushed
        snap["msgs_in"] = self._received
        return snap
