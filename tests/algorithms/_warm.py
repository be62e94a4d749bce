"""Warm the cluster's numba kernels before tests that fit within a wall-clock budget.

Every worker process compiles (fresh clone: empty numba cache) or loads (cache on disk)
each kernel the first time it runs one; at a load average of 10 that cost seconds inside
the first budgeted cell of each solver. `warm_up` runs a tiny fit of each given cell -- the
same solver, loss, penalty and matrix type as the cell, on its first rows -- so the cells
themselves start with every kernel loaded on every worker and in the driver.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from asip.algorithms import AsipClassifier, AsipRegressor

#: (worker process id, solver) pairs already warmed (a restarted worker is a new process)
_WARMED: set = set()
ROWS = 300


def _pids(client) -> frozenset:
    return frozenset(client.run(os.getpid).values())


def warm_up(client, cells) -> int:
    """Fit each ``(solver, loss, penalty, alpha, X, y, budget)`` cell on ``ROWS`` rows, unless
    its solver is warm on every current worker process; returns how many fits ran."""
    pids = _pids(client)
    n, solvers = 0, set()
    for solver, loss, penalty, alpha, X, y, budget in cells:
        if all((pid, solver) in _WARMED for pid in pids):
            continue
        Est = AsipRegressor if loss == "squared_error" else AsipClassifier
        Xs, ys = X[:ROWS], np.asarray(y)[:ROWS]
        est = Est(loss=loss, penalty=penalty, alpha=alpha, solver=solver, random_state=0,
                  fit_intercept=False, **budget)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: a tiny budget, by design
            est.fit(Xs, ys)
        n += 1
        solvers.add(solver)
    _WARMED.update((pid, solver) for pid in pids for solver in solvers)
    return n
