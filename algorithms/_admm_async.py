"""``admm-async`` / ``admm-async-batched``: the driver-side ``as_completed`` ADMM of Rocklin & White (2017).

This is the one module in `asip.algorithms` that uses ``distributed`` directly:
these baselines are *not* runtime stages but the pattern Dask users write by
hand, kept here so asip can be compared with it. The driver keeps ``2 x cores``
local solves in flight with ``client.submit``; on every finished solve
(``admm-async``) or every batch of finished solves from
``as_completed(...).batches()`` (``admm-async-batched``) it

1. stores the partition's new ``x_i`` (and its warm-start state),
2. recomputes ``z = prox_{R/(N rho)}(mean x_j + mean y_j / rho)`` over the
   partitions heard from so far (the blog's "artificial inflation" of a
   zero-filled mean is replaced by a mean over the slots actually filled),
3. updates that partition's dual ``y_i += rho (x_i - z)``,
4. resubmits a local solve for a partition drawn at random (among those with no
   solve in flight, when there are any).

Each task costs a scheduler round trip (several ms), so a local solve is
``local_epochs = 10`` SDCA passes by default: enough work to amortize it.

One safeguard the blog's loop lacks: with more solves in flight than
partitions, the same partition is often being solved twice from the same
``(z, y_i)``; applying the dual step for both double-counts one ``x_i`` and
made the loop diverge on abalone (lasso). The dual step of 3. is therefore
taken only for a result computed against the partition's *current* dual (a
version counter per partition); a stale result still refreshes ``x_i``.

Local solves are `_admm_core.local_solve` (SDCA, ``local_epochs`` passes,
warm-started from the partition's previous duals, which travel with the task).
Faults from `asip.faults` cannot be injected here (there is no stage); the
estimator refuses them for these solvers.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np
from distributed import as_completed

from ._admm_core import LocalSolver, default_rho, local_solve, z_update
from ._base import Problem, local_data
from . import _kernels as K

__all__ = ["ASYNC_DEFAULTS", "AsyncResult", "run_admm_async"]

logger = logging.getLogger(__name__)

ASYNC_DEFAULTS = {"rho": None, "local_epochs": 10, "in_flight": None, "max_iter": None,
                  "seed": None}


class AsyncResult(NamedTuple):
    w: np.ndarray
    trace: list  # (seconds, z) after each z update
    n_iter: int  # z updates
    stopped_by: str


def _solve(part, problem: Problem, index: int, ver: int, v: np.ndarray, rho: float,
           epochs: int, dual: np.ndarray | None, dvec: np.ndarray | None, seed: int):
    """A local ADMM solve on a worker: returns ``(index, ver, x, dual, dvec)``."""
    X, y = part
    data = local_data(X, y, problem, index)
    solver = LocalSolver(np.zeros(data.n) if dual is None else dual.copy(),
                         np.zeros(problem.p) if dvec is None else dvec.copy(), K.make_rng(seed))
    x = local_solve(solver, problem, data, v, rho, epochs)
    return index, ver, x, solver.dual, solver.dvec


def run_admm_async(client, parts: list, problem: Problem, params: dict, max_time: float,
                   batched: bool) -> AsyncResult:
    """Run the driver-side asynchronous ADMM on partition futures ``parts`` for ``max_time`` s."""
    N = len(parts)
    rho = params["rho"] if params["rho"] is not None else default_rho(problem)
    in_flight = params["in_flight"] or 2 * sum(client.nthreads().values())
    rng = np.random.default_rng(params["seed"])
    p = problem.p
    xs: list[np.ndarray | None] = [None] * N
    ys = np.zeros((N, p))
    warm: list[tuple] = [(None, None)] * N
    version = [0] * N  # dual updates taken per partition
    z = np.zeros(p)
    trace: list = []
    n_iter = 0
    t0 = time.monotonic()

    def submit(i: int):
        v = z - ys[i] / rho
        return client.submit(_solve, parts[i], problem, i, version[i], v, rho,
                             params["local_epochs"], warm[i][0], warm[i][1],
                             int(rng.integers(2**31)), pure=False)

    busy = [0] * N  # solves in flight per partition

    def pick() -> int:
        idle = [j for j in range(N) if busy[j] == 0]
        return int(rng.choice(idle)) if idle else int(rng.integers(N))

    first = []
    for i in range(max(in_flight, N)):
        j = i if i < N else pick()
        busy[j] += 1
        first.append(submit(j))
    ac = as_completed(first, with_results=True)
    stopped_by = "max_time"
    try:
        batches = ac.batches() if batched else ([item] for item in ac)
        for batch in batches:
            fresh = set()
            for _, (i, ver, x, dual, dvec) in batch:
                busy[i] -= 1
                xs[i] = x
                warm[i] = (dual, dvec)
                if ver == version[i]:
                    fresh.add(i)
            filled = [j for j in range(N) if xs[j] is not None]
            z = z_update(problem, np.mean([xs[j] for j in filled], axis=0),
                         np.mean(ys[filled], axis=0), rho, N)
            for i in fresh:
                ys[i] += rho * (xs[i] - z)
                version[i] += 1
            n_iter += 1
            trace.append((time.monotonic() - t0, z.copy()))
            if params["max_iter"] is not None and n_iter >= params["max_iter"]:
                stopped_by = "max_iter"
                break
            if time.monotonic() - t0 >= max_time:
                break
            for _ in batch:
                j = pick()
                busy[j] += 1
                ac.add(submit(j))
    finally:
        for f in list(ac.futures):
            f.cancel()
    return AsyncResult(z, trace, n_iter, stopped_by)
