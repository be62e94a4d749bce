"""ASIP-HOGWILD: asynchronous SGD by broadcasting update deltas, without lost updates.

Every operator keeps a replica ``x`` of one shared model and takes proximal
mini-batch SGD steps on its own rows::

    x <- prox_{eta R}(x - eta * w_i * g),     w_i = N n_i / n

(``g`` a mini-batch mean loss gradient; the weight ``w_i`` makes the mixture of
all operators' gradients an unbiased estimate of the global one). Each step is
also added to cumulative totals ``S += eta w_i g`` and ``P += eta``. Every
``push_period`` (10 ms, as in the ASIP code) an operator pushes its *cumulative*
``(S, P, count)`` and its replica ``x``; a receiver applies the difference to
what it last applied from that sender::

    x <- prox_{(P_j - P_seen) R}(x - (S_j - S_seen))

The ASIP authors' code pushed a copy of an accumulator and then zeroed it on a
different thread, losing the gradients added in between, and lost any message
the network dropped. Cumulative totals fix both: nothing is reset, a dropped
message is covered by the next one, and an out-of-order one (older count) is
ignored. ``S`` travels through the sparse exchange (`_sparse_exchange`): the
entries that changed since the previous push (on CSR data, the features of the
rows stepped on), numbered; a receiver that missed one applies nothing from that
sender until the full it asks for arrives (its difference then covers the gap).
The replica ``x`` (dense: the l2 shrink moves every entry) is not pushed: a
restarted operator (incarnation > 0) asks for it (``x_want``), a peer answers in
its next push with ``x`` and a full ``S`` of the same moment, and the restarted
operator adopts that replica and skips the history already inside it.

Step size (``T`` = steps taken by all operators together):
``eta = eta0 / (1 + eta0 mu T)`` with l2 (``mu = alpha``: the classic ``1/(mu T)``
schedule for strongly convex problems), ``eta0 / sqrt(1 + T / tau)`` with l1,
``tau`` one pass over the data. ``eta0`` is the same on every operator -- the
weight ``w_i`` in the step is what makes the mixture unbiased, so ``eta0`` must
not depend on ``i`` -- and defaults to
``1 / (N * max_i w_i * curvature * max ||[a_i, 1]||^2)``: ``1/L_max`` for one
stream of updates from the largest partition, divided by the ``N`` streams every
replica receives.
The output is the mean over operators of each one's ``T``-weighted average
iterate.

Rates: every replica applies every operator's steps, so the partitions mix in
proportion to the steps each one takes -- an operator stepping 3x as fast counted
3x in the fixed point (1.3e-3 relative suboptimality with iid halves, for ever; on
a loaded cluster a model that wandered between 5e-6 and 1e-3 as the rates moved).
Each operator therefore multiplies its step by `_step_share.balance`: the
partitions' step counts over the last ``rate_window`` seconds (its own, and its
peers' as heard in their pushes) make every partition pull as its share of the
rows, whatever its rate (capped so that a step stays below
``1 / l_max``; ``rate_window=0``: the old step-count weighting).

On sparse (CSR) data a step costs O(nnz of its rows), not O(d):
`_kernels.sgd_steps_lazy` keeps the l2 shrink as a scale and applies the l1
soft thresholds and the iterate average just in time.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._base import (AdaptiveCount, Algorithm, LocalData, Outgoing, Problem, Start, StepOutput,
                    mean_of, resume_average, slice_target)
from ._asip_sgd import SLICE_DEFAULTS
from ._sparse_exchange import Exchange, schema_fields
from ._step_share import StepShare, balance

__all__ = ["ALGORITHM", "HogwildState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    **SLICE_DEFAULTS,
    "eta0": None,
    "average": True,
    "rejoin_wait": 0.1,
    "full_every": 5.0,  # seconds between unrequested full pushes of S (else deltas)
    "rate_window": 0.25,  # seconds of step counts that balance the partitions' rates (0: off)
    "seed": None,
}


class HogwildState(NamedTuple):
    x: np.ndarray
    S: np.ndarray  # cumulative displacement of own steps
    P: np.ndarray  # float64[1], cumulative step length
    count: np.ndarray  # int64[1], own steps
    xsum: np.ndarray
    wsum: np.ndarray
    rng: np.ndarray
    peers: dict  # sender -> [incarnation, S_seen, P_seen, count_seen]
    totals: Exchange  # own S out as sparse deltas, peers' S_j in
    weight: float
    eta0: float
    tau: float
    problem: Problem
    params: dict
    chunk: AdaptiveCount
    clock: dict
    share: StepShare  # steps per partition, own and heard: the rate balance
    l_max: float  # the largest row's curvature: a balanced step stays below 1 / l_max


def init(problem: Problem, data: LocalData, params: dict) -> HogwildState:
    p = problem.p
    weight = problem.n_partitions * data.n / problem.n_total
    curv = problem.curvature if problem.curvature is not None else 1.0
    l_max = curv * (problem.sq_max + problem.fit_intercept)
    eta0 = params["eta0"]
    if eta0 is None:
        # the same eta0 on every partition: the kernel scales each step by its own weight,
        # so the mixture of all operators' steps follows the global gradient (an eta0 that
        # divided by this partition's weight cancelled it: a wrong fixed point whenever the
        # partitions differ in size)
        w_max = problem.n_partitions * max(problem.sizes) / problem.n_total
        eta0 = 1.0 / (problem.n_partitions * w_max * l_max + 1e-12)
    seed = params["seed"]
    seed = None if seed is None else seed * 1_000_003 + data.index * 7919 + data.incarnation
    return HogwildState(
        x=np.zeros(p), S=np.zeros(p), P=np.zeros(1), count=np.zeros(1, dtype=np.int64),
        xsum=np.zeros(p), wsum=np.zeros(1), rng=K.make_rng(seed), peers={},
        totals=Exchange("S", p, data.index, full_every=params["full_every"]), weight=weight,
        eta0=float(eta0), tau=max(problem.n_total / params["batch_size"], 1.0), problem=problem,
        params=params, chunk=AdaptiveCount(slice_target(params["step_time"], data, p)),
        clock={"pushed": -np.inf, "started": None,
               "mode": "normal" if data.incarnation == 0 else "rejoining"},
        share=StepShare(problem.n_partitions, params["rate_window"]), l_max=l_max,
    )


def _absorb(state: HogwildState, data: LocalData, inbox) -> None:
    pb = state.problem
    clock = state.clock
    for msg in inbox:
        pl = msg.payload
        want = pl.get("x_want")
        if want is not None and data.index in np.asarray(want).tolist():
            clock["send_x"] = True  # a restarted peer needs a replica
        if not state.totals.absorb(msg):
            continue  # no S, or one that could not be applied in sequence (a resync will come)
        S_j, P_j, c_j = state.totals.vector(msg.sender), float(pl["P"]), int(pl["count"])
        seen = state.peers.get(msg.sender)
        if clock["mode"] == "rejoining":
            if "x" not in pl:
                continue
            # a restarted operator takes over a live replica, the sender's history included
            state.x[:] = pl["x"]
            clock["mode"] = "adopted"
            state.peers[msg.sender] = [msg.incarnation, np.array(S_j), P_j, c_j]
            continue
        if seen is None or msg.incarnation > seen[0]:
            if seen is None and clock["mode"] == "adopted":
                # first news of this peer after adopting a replica: its past is inside it
                state.peers[msg.sender] = [msg.incarnation, np.array(S_j), P_j, c_j]
                continue
            seen = state.peers[msg.sender] = [msg.incarnation, np.zeros_like(state.x), 0.0, 0]
        if msg.incarnation < seen[0] or c_j <= seen[3]:
            continue  # stale or out of order: a newer total was applied already
        state.share.heard[msg.sender] += c_j - seen[3]
        np.subtract(state.x, S_j - seen[1], out=state.x)
        K.prox_inplace(state.x, pb.n_features, pb.penalty, pb.alpha, P_j - seen[2])
        seen[1][:] = S_j
        seen[2], seen[3] = P_j, c_j


def local_step(state: HogwildState, data: LocalData, inbox, now: float) -> StepOutput:
    """Apply peers' new updates, take a time slice of SGD steps, push totals every ``push_period``."""
    params = state.params
    clock = state.clock
    if clock["started"] is None:
        clock["started"] = now
    _absorb(state, data, inbox)
    resyncs = tuple(Outgoing(f, to=to) for to, f in state.totals.resyncs())
    if clock["mode"] == "rejoining":
        if data.n_partitions > 1 and now - clock["started"] < params["rejoin_wait"]:
            ask = ()  # wait briefly for a live replica, asking for one every 20 ms
            if now - clock["pushed"] >= 0.02:
                clock["pushed"] = now
                ask = (Outgoing({"P": 0.0, "count": 0, "x_want": np.asarray(
                    [j for j in range(data.n_partitions) if j != data.index], dtype=np.int64)}),)
            return StepOutput(state, resyncs + ask, wait=0.02)
        clock["mode"] = "normal"
    pb = state.problem
    T_peers = float(sum(pe[3] for pe in state.peers.values()))
    speed = _balance(state, data, T_peers, now)
    t0 = time.perf_counter()
    # CSR data: O(nnz of the rows) per step (lazy prox and average); dense: the plain loop
    steps = K.sgd_steps_lazy if isinstance(data.X, tuple) else K.sgd_steps
    steps(data.X, data.y, pb.loss, pb.fit_intercept, state.chunk.count,
                params["batch_size"], state.rng, state.weight, state.x, state.S, state.P,
                state.count, T_peers, state.eta0, pb.mu, state.tau, pb.penalty, pb.alpha,
                state.xsum, state.wsum, speed)
    state.chunk.update(time.perf_counter() - t0)
    out = resyncs
    if now - clock["pushed"] >= params["push_period"]:
        clock["pushed"] = now
        send_x = clock.pop("send_x", False)
        fields = state.totals.fields(state.S, now, full=send_x, P=float(state.P[0]),
                                     count=int(state.count[0]))
        if send_x:  # the replica of this moment, with the full S it already contains
            fields["x"] = state.x.copy()
        out += (Outgoing(fields),)
    return StepOutput(state, out)


def _balance(state: HogwildState, data: LocalData, T_peers: float, now: float) -> float:
    """The factor on this operator's step (gradient and prox) that offsets its rate (`_step_share`)."""
    if not state.params["rate_window"]:
        return 1.0
    state.share.heard[data.index] = state.count[0]
    recent = state.share.record(now)
    eta = K._sgd_step_size(state.eta0, state.problem.mu, state.tau, state.count[0] + T_peers)
    cap = max(1.0, 1.0 / (eta * state.weight * state.l_max + 1e-300))
    return balance(recent, data.index, state.problem.sizes, cap)


def schema(problem: Problem) -> tuple[dict, dict]:
    """Cumulative totals ``(P, count)`` and ``S`` (sparse-exchange fields); the replica ``x``
    for a restarted peer, and its ask ``x_want``."""
    return {"P": float, "count": int}, {**schema_fields("S", problem.p),
                                        "x": ("float64", (problem.p,)),
                                        "x_want": ("int64", (None,))}


def resume(state: HogwildState, data: LocalData, start: Start) -> HogwildState:
    """The replica starts at the saved model, the step count (and so the step size) where it was.

    The iterate average goes on from the saved one with the weight it had (as in ASIP-SGD).
    """
    state.x[:] = start.w
    own = start.own(data.index)
    if own is not None and "t" in own and start.total("t") > 0:
        state.count[0] = int(own["t"])
        resume_average(state.xsum, state.wsum, own, state.x, 0.5 * own["t"] * start.total("t"))
    return state


def snapshot(state: HogwildState) -> dict:
    if state.params["average"] and state.wsum[0] > 0:
        w = state.xsum / state.wsum[0]
    else:
        w = state.x.copy()
    return {"w": w, "t": int(state.count[0])}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    w = mean_of(snapshots, "w")
    return np.zeros(problem.p) if w is None else w


ALGORITHM = Algorithm("asip-hogwild", init, local_step, snapshot, combine, DEFAULTS,
                      schema=schema, resume=resume)
