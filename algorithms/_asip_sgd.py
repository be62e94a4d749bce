"""ASIP-SGD: asynchronous distributed dual averaging over the sideways channel.

Each operator runs regularized dual averaging (RDA, Xiao 2010) on mini-batches of
its own rows. Its *dual* is the running average of the loss gradients it has
computed, ``gbar_i = G_i / t_i``; the point it evaluates gradients at is the RDA
point of the network-wide averaged dual::

    gbar = sum_j s_j gbar_j / sum_j s_j          (s_j = n_j / n, over self and peers heard)
    x    = argmin_x <gbar, x> + R(x) + (beta_T / T) ||x||^2 / 2,   beta_T = beta0 + gamma sqrt(T)

where ``T`` is the total number of mini-batch steps taken by all operators. For
l2 this is ``x = -gbar / (alpha + beta_T/T)``; for l1 a soft threshold of
``gbar`` at ``alpha`` (exact zeros). Weighting each partition's dual by its data
share ``s_j`` -- not by how many steps it managed -- keeps a straggler from
biasing the model towards the fast partitions.

Every ``push_period`` (10 ms, as in the ASIP code) an operator pushes its *full*
dual ``(gbar_i, t_i)``; receivers keep the latest per sender. A dropped message
is therefore harmless (the next one supersedes it), and a restarted operator
(incarnation > 0) starts with an empty dual but immediately adopts the peers'
duals, so its first point is already the network's current one.

Output: each operator's time-average of its iterates with weights growing like
``T`` (polynomial-decay averaging, which removes SGD noise without dragging in
the early iterates), averaged over operators by `combine`.

Step-size parameters (the "step" of dual averaging is ``T / beta_T``):

* ``beta0`` -- default ``curvature * mean ||[a_i, 1]||^2``, an upper bound on the
  smoothness of the average loss (mean row norm for hinge): the first steps
  are no longer than ``1/L``;
* ``gamma`` -- the ``sqrt(T)`` growth; default 0 with l2 (the penalty makes
  the problem ``alpha``-strongly convex, RDA needs no extra prox term), and
  ``beta0 / 4`` otherwise.

References
----------
L. Xiao, "Dual averaging methods for regularized stochastic learning and online
optimization", JMLR 2010. J. Duchi, A. Agarwal, M. Wainwright, "Dual averaging
for distributed optimization", IEEE TAC 2012.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._base import AdaptiveCount, Algorithm, LocalData, Outgoing, Problem, StepOutput, mean_of

__all__ = ["ALGORITHM", "RDAState", "combine", "init", "local_step", "snapshot"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "batch_size": 10,
    "push_period": 0.01,
    "step_time": 0.002,
    "beta0": None,
    "gamma": None,
    "average": True,
    "rejoin_wait": 0.1,
    "seed": None,
}


class RDAState(NamedTuple):
    """One operator's dual averaging state (arrays updated in place)."""

    G: np.ndarray  # sum of own mini-batch mean loss gradients
    t: np.ndarray  # int64[1], own step count
    x: np.ndarray  # current RDA point
    xsum: np.ndarray  # T-weighted sum of iterates
    wsum: np.ndarray  # float64[1], total weight
    rng: np.ndarray
    peers: dict  # sender -> (incarnation, t_j, gbar_j)
    share: float  # n_i / n
    beta0: float
    gamma: float
    problem: Problem
    params: dict
    chunk: AdaptiveCount
    clock: dict  # "pushed": time of the last push, "started": first step time


def init(problem: Problem, data: LocalData, params: dict) -> RDAState:
    """A fresh operator: empty dual, ``x = 0``."""
    p = problem.p
    curv = problem.curvature if problem.curvature is not None else 1.0
    beta0 = params["beta0"]
    if beta0 is None:
        beta0 = curv * problem.row_scale
    gamma = params["gamma"]
    if gamma is None:
        gamma = 0.0 if problem.mu > 0 else beta0 / 4.0
    seed = params["seed"]
    seed = None if seed is None else seed * 1_000_003 + data.index * 7919 + data.incarnation
    return RDAState(
        G=np.zeros(p), t=np.zeros(1, dtype=np.int64), x=np.zeros(p), xsum=np.zeros(p),
        wsum=np.zeros(1), rng=K.make_rng(seed), peers={},
        share=problem.sizes[data.index] / problem.n_total, beta0=float(max(beta0, 1e-12)),
        gamma=float(gamma), problem=problem, params=params, chunk=AdaptiveCount(params["step_time"]),
        clock={"pushed": -np.inf, "started": None},
    )


def _absorb(state: RDAState, inbox) -> None:
    for msg in inbox:
        pl = msg.payload
        if "gbar" not in pl:
            continue
        key = (msg.incarnation, int(pl["t"]))
        old = state.peers.get(msg.sender)
        if old is None or key >= (old[0], old[1]):
            state.peers[msg.sender] = (msg.incarnation, int(pl["t"]), np.array(pl["gbar"]),
                                       float(pl["share"]))


def local_step(state: RDAState, data: LocalData, inbox, now: float) -> StepOutput:
    """Absorb peers' duals, take a time slice of RDA steps, push the dual every ``push_period``."""
    _absorb(state, inbox)
    params = state.params
    if state.clock["started"] is None:
        state.clock["started"] = now
    if (data.incarnation > 0 and not state.peers and data.n_partitions > 1
            and now - state.clock["started"] < params["rejoin_wait"]):
        return StepOutput(state, wait=0.02)  # a restart: wait briefly for the peers' duals
    W = state.share + sum(pe[3] for pe in state.peers.values())
    C = np.zeros_like(state.G)
    T_peers = 0.0
    for _, t_j, gbar_j, s_j in state.peers.values():
        C += (s_j / W) * gbar_j
        T_peers += t_j
    n_steps = state.chunk.count
    t0 = time.perf_counter()
    pb = state.problem
    K.rda_steps(data.X, data.y, pb.loss, pb.fit_intercept, n_steps, params["batch_size"],
                state.rng, state.G, state.t, state.share / W, C, T_peers, pb.penalty,
                pb.alpha, state.beta0, state.gamma, state.x, state.xsum, state.wsum)
    state.chunk.update(time.perf_counter() - t0)
    out = ()
    if now - state.clock["pushed"] >= params["push_period"]:
        state.clock["pushed"] = now
        out = (Outgoing({"gbar": state.G / state.t[0], "t": int(state.t[0]),
                         "share": state.share}),)
    return StepOutput(state, out)


def snapshot(state: RDAState) -> dict:
    """The operator's estimate: its averaged iterate (or the last one), and its step count."""
    if state.params["average"] and state.wsum[0] > 0:
        w = state.xsum / state.wsum[0]
    else:
        w = state.x.copy()
    return {"w": w, "t": int(state.t[0])}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """The mean of the operators' estimates."""
    w = mean_of(snapshots, "w")
    return np.zeros(problem.p) if w is None else w


ALGORITHM = Algorithm("asip-sgd", init, local_step, snapshot, combine, DEFAULTS)
