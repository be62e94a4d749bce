"""A single-process, round-robin stand-in for the runtime, for testing algorithm math without a cluster.

It calls each partition's ``local_step`` in turn and delivers pushed payloads to
the peers' next inbox. Optional faults: each copy of a message is dropped with
probability ``drop``, and ``restart={partition: round}`` re-runs ``init`` for
that partition with incarnation 1 at that round (its state is lost, as after a
real failure); ``silent={partition: (first, last)}`` skips that partition's steps in
rounds ``first..last`` (a straggler: its inbox piles up meanwhile). The cluster tests cover real threads, clocks and processes.

A fixed amount of work, whatever the machine's load: ``chunk=k`` makes each
time-sliced solver's ``local_step`` (asip-sgd, asip-hogwild, asip-cocoa's
SDCA: an `AdaptiveCount` sizing its slice by wall time) take exactly ``k``
inner steps (a list: ``k`` per partition, operators stepping at unequal rates), and
``round_time=s`` runs the clock the solvers see (``now``: push periods, resends, rejoin
waits, and ``max_time``) at ``s`` simulated seconds a round. With both, a run is a
budget in steps, not in wall time: on a loaded machine it is slower, never shorter.
With ``round_time``, asip-cocoa's and the certificate rounds' (`_cert_round`)
stopwatches (``time.perf_counter``, ``time.thread_time``: the certificate pass whose 4x
floors the certificate period, a Newton round's length) read that clock too, so a loaded
machine's slower pass does not space the certificates out (it did: 128 exchanges instead
of 43-63).
"""

from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import numpy as np

from asip.algorithms import _cert_round, _cocoa
from asip.algorithms._base import AdaptiveCount, local_data
from asip.algorithms._solvers import get_algorithm


class Msg(NamedTuple):
    sender: int
    incarnation: int
    payload: dict
    sent_at: float  # time.time() at the push, as on the channel


def split_rows(X, y, n_parts):
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


class FixedCount(AdaptiveCount):
    """An `AdaptiveCount` that keeps its count: the same inner steps per call at any load."""

    __slots__ = ()

    def update(self, elapsed: float) -> None:
        pass


def _fix_chunk(state, chunk, index: int):
    chunk = chunk[index] if isinstance(chunk, (list, tuple)) else chunk
    if chunk is None or not isinstance(getattr(state, "chunk", None), AdaptiveCount):
        return state
    return state._replace(chunk=FixedCount(state.chunk.target, start=chunk))


class _SimTime:
    """The `time` module, but its stopwatches read the simulated clock ``clock()``."""

    def __init__(self, clock):
        self.perf_counter = self.thread_time = clock

    def __getattr__(self, name):
        return getattr(time, name)


#: modules whose stopwatch steers what a solver does (not only what it reports)
_TIMED = (_cocoa, _cert_round)


@contextlib.contextmanager
def _simulated_stopwatches(clock):
    """`_TIMED` modules read ``clock`` for their stopwatches while the block runs."""
    saved = [module.time for module in _TIMED]
    for module in _TIMED:
        module.time = _SimTime(clock)
    try:
        yield
    finally:
        for module, original in zip(_TIMED, saved):
            module.time = original


def simulate(solver, problem, parts, params=None, max_time=1.0, max_rounds=10**9, drop=0.0,
             restart=None, seed=0, weights=None, chunk=None, round_time=None, silent=None):
    """Run ``solver``; returns ``(combined model, snapshots, rounds, done)``.

    ``weights``: per partition, its row weights (`LocalData.sw`), or None. ``chunk``: inner
    steps per ``local_step`` of a time-sliced solver, or a list of them per partition (None:
    sized by wall time, as deployed).
    ``round_time``: simulated seconds per round (None: the wall clock); ``max_time`` is on
    the same clock. ``silent``: per partition, the rounds it sleeps through."""
    algo = get_algorithm(solver)
    params = algo.merge(params)
    rng = np.random.default_rng(seed)
    restart = dict(restart or {})
    incarnation = [0] * len(parts)
    weights = weights or [None] * len(parts)
    datas = [local_data(Xb, yb, problem, i, sw=weights[i]) for i, (Xb, yb) in enumerate(parts)]
    states = [_fix_chunk(algo.init(problem, d, params), chunk, d.index) for d in datas]
    boxes = [[] for _ in parts]
    t0 = time.monotonic()

    def clock() -> float:
        return rounds * round_time if round_time is not None else time.monotonic() - t0

    rounds = 0
    done = False
    with _simulated_stopwatches(clock) if round_time is not None else contextlib.nullcontext():
        while not done and clock() < max_time and rounds < max_rounds:
            rounds += 1
            for i, (Xb, yb) in enumerate(parts):
                if restart.get(i) == rounds:
                    incarnation[i] += 1
                    datas[i] = local_data(Xb, yb, problem, i, incarnation[i], sw=weights[i])
                    states[i] = _fix_chunk(algo.init(problem, datas[i], params), chunk, i)
                    boxes[i] = []
                first, last = (silent or {}).get(i, (0, -1))
                if first <= rounds <= last:
                    continue
                inbox, boxes[i] = boxes[i], []
                out = algo.local_step(states[i], datas[i], inbox, clock())
                states[i] = out.state
                for o in out.outbox:
                    for j in range(len(parts)):
                        if j != i and (o.to is None or o.to == j) and rng.random() >= drop:
                            boxes[j].append(Msg(i, incarnation[i], o.payload, time.time()))
                done = done or out.done
    snaps = [algo.snapshot(s) for s in states]
    return algo.combine(problem, snaps), snaps, rounds, done
