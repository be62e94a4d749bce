"""A single-process, round-robin stand-in for the runtime, for testing algorithm math without a cluster.

It calls each partition's ``local_step`` in turn and delivers pushed payloads to
the peers' next inbox. Optional faults: each copy of a message is dropped with
probability ``drop``, and ``restart={partition: round}`` re-runs ``init`` for
that partition with incarnation 1 at that round (its state is lost, as after a
real failure). The cluster tests cover real threads, clocks and processes.
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
    sent_at: float  # time.time() at the push, as on the channel


def split_rows(X, y, n_parts):
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def simulate(solver, problem, parts, params=None, max_time=1.0, max_rounds=10**9, drop=0.0,
             restart=None, seed=0, weights=None):
    """Run ``solver``; returns ``(combined model, snapshots, rounds, done)``.

    ``weights``: per partition, its row weights (`LocalData.sw`), or None."""
    algo = get_algorithm(solver)
    params = algo.merge(params)
    rng = np.random.default_rng(seed)
    restart = dict(restart or {})
    incarnation = [0] * len(parts)
    weights = weights or [None] * len(parts)
    datas = [local_data(Xb, yb, problem, i, sw=weights[i]) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes = [[] for _ in parts]
    t0 = time.monotonic()
    rounds = 0
    done = False
    while not done and time.monotonic() - t0 < max_time and rounds < max_rounds:
        rounds += 1
        for i, (Xb, yb) in enumerate(parts):
            if restart.get(i) == rounds:
                incarnation[i] += 1
                datas[i] = local_data(Xb, yb, problem, i, incarnation[i], sw=weights[i])
                states[i] = algo.init(problem, datas[i], params)
                boxes[i] = []
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], datas[i], inbox, time.monotonic() - t0)
            states[i] = out.state
            for o in out.outbox:
                for j in range(len(parts)):
                    if j != i and (o.to is None or o.to == j) and rng.random() >= drop:
                        boxes[j].append(Msg(i, incarnation[i], o.payload, time.time()))
            done = done or out.done
    snaps = [algo.snapshot(s) for s in states]
    return algo.combine(problem, snaps), snaps, rounds, done
