"""A single-process, round-robin stand-in for the runtime, for testing algorithm math without a cluster.

It calls each partition's ``local_step`` in turn and delivers pushed payloads to
the peers' next inbox. It has no threads, no clock skew and no failures: the
cluster tests cover those; this layer checks that the math converges.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from asip.algorithms._base import local_data
from asip.algorithms._solvers import get_algorithm


class Msg(NamedTuple):
    sender: int
    incarnation: int
    payload: dict


def split_rows(X, y, n_parts):
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def simulate(solver, problem, parts, params=None, max_time=1.0, max_rounds=10**9):
    algo = get_algorithm(solver)
    params = algo.merge(params)
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes = [[] for _ in parts]
    t0 = time.monotonic()
    rounds = 0
    done = False
    while not done and time.monotonic() - t0 < max_time and rounds < max_rounds:
        rounds += 1
        for i, d in enumerate(datas):
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], d, inbox, time.monotonic() - t0)
            states[i] = out.state
            for o in out.outbox:
                for j in range(len(parts)):
                    if j != i and (o.to is None or o.to == j):
                        boxes[j].append(Msg(i, 0, o.payload))
            done = done or out.done
    snaps = [algo.snapshot(s) for s in states]
    return algo.combine(problem, snaps), snaps, rounds
