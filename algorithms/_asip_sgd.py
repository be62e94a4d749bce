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
dual ``(G_i, t_i)`` (``gbar_i = G_i / t_i``); receivers keep the latest per sender.
``G_i`` travels through the sparse exchange (`_sparse_exchange`): as the entries
that changed since the previous push -- on CSR data the features of the rows it
stepped on, so traffic grows with the update's nonzeros, not with ``d`` -- with
a sequence number; a receiver that missed one asks for a full ``G_i`` in its next
push and is answered with one, and a full goes out every ``full_every`` s anyway.
A dropped message therefore costs at most one resync, and a restarted operator
(incarnation > 0) starts with an empty dual but immediately adopts the peers'
duals, so its first point is already the network's current one. Its own lost
dual comes back too, by the echo/rejoin protocol every asynchronous solver
shares (`_rejoin`): the restarted operator announces itself with ``t = 0``; a
peer that knew an older incarnation keeps using that one's last dual and echoes
it back (``echo=True``), and the restarted operator takes no step before it has
that echo and a dual from every peer (or ``rejoin_wait`` has passed). Without
this the restarted dual is an average of a few mini-batches for a while, and
the points computed from it -- or without a peer's dual -- enter every
operator's iterate average with the full weight ``T`` of a late iterate
(measured on 4 partitions of a9a: 10-100x the suboptimality of the same run
without the restart; with the echo, within 2x).

On sparse (CSR) data a step costs O(nnz of its rows), not O(d)
(`_kernels.rda_steps_lazy`): a coefficient's RDA point is a closed form of its
own dual entry, computed when a row reads it, and the iterate average of a
coefficient whose dual entry did not change comes from prefix sums.

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

Delay: the peers' duals arrive late, and ``x = -gbar / (alpha + h)`` feeds
them back with gain ``1 / alpha``; with a small ``alpha`` that delayed loop
oscillates (a9a, alpha 1e-3, 4 operators: 50 ms of channel delay took the model
from 1e-5 to 3.0). Each operator therefore adds ``(damp/2) ||x - anchor||^2``
with ``damp = staleness_damping * beta0 * D / T`` -- ``D`` the network's steps
missing from the duals in use, from each peer's transport latency (arrival
time minus ``Message.sent_at``; worker clocks are assumed in sync to a few ms)
and this operator's own step rate -- around a moving average of its own
iterates over the last ``T / anchor_rate`` own steps. The gain drops while the
fixed point stays put (same run: 2.2e-4 at 50 ms, ~5e-6 without delay).
``staleness_damping=0`` turns it off.

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
from ._base import (AdaptiveCount, Algorithm, LocalData, Outgoing, Problem, Start, StepOutput,
                    mean_of, resume_average, slice_target)
from ._rejoin import PeerStates
from ._sparse_exchange import Publisher, Subscriber, schema_fields

__all__ = ["ALGORITHM", "RDAState", "combine", "init", "local_step", "snapshot"]

logger = logging.getLogger(__name__)

#: the time-sliced stochastic solvers' (asip-sgd, asip-hogwild) shared defaults
SLICE_DEFAULTS = {
    "batch_size": 10,  # rows per stochastic step
    "push_period": 0.01,  # seconds between pushes
    "step_time": 0.002,  # seconds of steps per local_step call
}

DEFAULTS = {
    **SLICE_DEFAULTS,
    "beta0": None,
    "gamma": None,
    "staleness_damping": 0.3,
    "anchor_rate": 10.0,
    "average": True,
    "rejoin_wait": 0.3,
    "full_every": 5.0,  # seconds between unrequested full pushes of the dual (else deltas)
    "seed": None,
}


class _Decoded(NamedTuple):
    """A peer's push with its dual rebuilt from the sparse exchange (what `PeerStates` reads)."""

    sender: int
    incarnation: int
    payload: dict
    sent_at: float


class RDAState(NamedTuple):
    """One operator's dual averaging state (arrays updated in place)."""

    G: np.ndarray  # sum of own mini-batch mean loss gradients
    t: np.ndarray  # int64[1], own step count
    x: np.ndarray  # current RDA point
    anchor: np.ndarray  # recent iterate the staleness damping pulls towards
    xsum: np.ndarray  # T-weighted sum of iterates
    wsum: np.ndarray  # float64[1], total weight
    rng: np.ndarray
    peers: PeerStates  # latest (G_j, share_j) per peer, its t_j and latency (`_rejoin`)
    pub: Publisher  # own G as sparse deltas
    sub: Subscriber  # peers' G, rebuilt from their deltas
    share: float  # n_i / n
    beta0: float
    gamma: float
    problem: Problem
    params: dict
    chunk: AdaptiveCount
    clock: dict  # "pushed": time of the last push, "started": first step time; the
    # staleness damping's "stepping_since", "own_steps", "t_anchor", "anchored"


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
        G=np.zeros(p), t=np.zeros(1, dtype=np.int64), x=np.zeros(p), anchor=np.zeros(p),
        xsum=np.zeros(p),
        wsum=np.zeros(1), rng=K.make_rng(seed),
        peers=PeerStates(("G", "share"), "t", expecting=data.incarnation > 0),
        pub=Publisher("G", p, full_every=params["full_every"]), sub=Subscriber("G", p),
        share=problem.sizes[data.index] / problem.n_total, beta0=float(max(beta0, 1e-12)),
        gamma=float(gamma), problem=problem, params=params,
        chunk=AdaptiveCount(slice_target(params["step_time"], data, p)),
        clock={"pushed": -np.inf, "started": None,
               "rejoining": data.incarnation > 0 and data.n_partitions > 1,
               "stepping_since": None, "own_steps": 0, "t_anchor": 0, "anchored": False},
    )


def _absorb(state: RDAState, data: LocalData, inbox) -> tuple:
    """Keep the latest dual per sender (`_rejoin.PeerStates`); returns the echoes owed to peers.

    Pushes go through the sparse exchange first: only one whose delta applied in sequence
    (the sender's ``G`` as of that push) counts, the latest per sender; echoes carry a dense
    ``G``. When a peer echoes this operator's own dual from before its restart, the lost
    history is added to what this incarnation has gathered; the iterates averaged so far
    were computed without it, so they are dropped.
    """
    decoded, latest = [], {}
    for msg in inbox:
        state.pub.note_requests(msg.payload, msg.sender, data.index)
        if msg.payload.get("echo"):
            decoded.append(msg)
        elif state.sub.absorb(msg):
            latest[msg.sender] = msg
    for sender, msg in latest.items():
        pl = msg.payload
        decoded.append(_Decoded(sender, msg.incarnation, {"G": state.sub.vecs[sender],
                                                          "t": pl["t"], "share": pl["share"]},
                                getattr(msg, "sent_at", 0.0)))
    echoes, own = state.peers.absorb(decoded)
    echoes += tuple(Outgoing(fields, to=to) for to, fields in state.pub.resyncs())
    if own is not None:
        t_j = int(own["t"])
        state.G[:] += np.asarray(own["G"])
        state.t[0] += t_j
        state.xsum[:] = 0.0
        state.wsum[0] = 0.0
    return echoes


def local_step(state: RDAState, data: LocalData, inbox, now: float) -> StepOutput:
    """Absorb peers' duals, take a time slice of RDA steps, push the dual every ``push_period``."""
    t_call = time.perf_counter()
    echoes = _absorb(state, data, inbox)
    params = state.params
    clock = state.clock
    if clock["started"] is None:
        clock["started"] = now
    if clock["rejoining"]:
        if not state.peers.ready(data.n_partitions) and now - clock["started"] < params["rejoin_wait"]:
            # a restart: wait (up to rejoin_wait) for our old dual, echoed by a peer, and for
            # a dual from every peer -- an iterate computed without them is far off, and the
            # average would give it the full weight of a late iterate. Until the echo comes,
            # announce the new incarnation with t = 0 (peers keep our old dual and echo it)
            if now - clock["pushed"] >= params["push_period"]:
                clock["pushed"] = now
                echoes += (_dual_message(state, now),)
            return StepOutput(state, echoes, wait=0.02)
        clock["rejoining"] = False
    W = state.share + sum(float(pe.state["share"]) for pe in state.peers.values())
    C = np.zeros_like(state.G)
    T_peers = 0.0
    latency = 0.0
    for pe in state.peers.values():
        C += (float(pe.state["share"]) / (W * pe.clock)) * pe.state["G"]
        T_peers += pe.clock
        latency += pe.latency
    damp = _staleness_damping(state, state.t[0] + T_peers, latency, now)
    n_steps = state.chunk.count
    t0 = time.perf_counter()
    pb = state.problem
    # CSR data: O(nnz of the rows) per step (points computed when read); dense: the plain loop
    steps = K.rda_steps_lazy if isinstance(data.X, tuple) else K.rda_steps
    steps(data.X, data.y, pb.loss, pb.fit_intercept, n_steps, params["batch_size"],
                state.rng, state.G, state.t, state.share / W, C, T_peers, pb.penalty,
                pb.alpha, state.beta0, state.gamma, damp, state.anchor, state.x, state.xsum,
                state.wsum)
    kernel = time.perf_counter() - t0
    state.chunk.update(kernel)
    wide = isinstance(data.X, tuple)  # CSR: O(d) fixed costs per call (see `_fit_slice`)
    if wide and kernel < 0.125 * state.chunk.target and state.chunk.count < 1 << 20:
        state.chunk.count *= 2  # far below the slice (calls are slow on wide data): ramp faster
    clock["own_steps"] += n_steps
    out = echoes
    if now - clock["pushed"] >= params["push_period"]:
        clock["pushed"] = now
        out += (_dual_message(state, now),)
    if wide:
        _fit_slice(state, data, time.perf_counter() - t_call, kernel)
    return StepOutput(state, out)


def _fit_slice(state: RDAState, data: LocalData, elapsed: float, kernel: float) -> None:
    """Keep a step's fixed O(d) costs (peers' duals, the kernel's catch-up of ``x`` and the
    averages, the push) under a third of it: the slice is at least 3x their estimate.

    On wide data those costs, not the O(nnz) steps, dominate a short call (d = 10^6: tens of
    ms), and a slice shorter than them would halve the step count down to one per call.
    The estimate is the cheapest kernel call seen (the first ones take few steps, so that is
    its fixed cost) plus the cheapest rest of a call: minima over the operator's life, so
    it never grows with the slice it sizes.
    """
    clock = state.clock
    clock["fixed_kernel"] = min(clock.get("fixed_kernel", np.inf), kernel)
    clock["fixed_rest"] = min(clock.get("fixed_rest", np.inf), max(elapsed - kernel, 0.0))
    state.chunk.target = max(slice_target(state.params["step_time"], data, state.problem.p),
                             3.0 * (clock["fixed_kernel"] + clock["fixed_rest"]))


def _staleness_damping(state: RDAState, T: float, age: float, now: float) -> float:
    """Weight of the prox term around the anchor, from how stale the peers' duals are.

    The duals in use arrived ``age`` seconds late in all (summed over peers), so about
    ``D = rate * age`` of the network's steps are missing from them. The point
    ``x = -gbar / (alpha + h)`` feeds them back with gain ``1 / alpha``, and such
    delayed feedback oscillates once ``L D / (alpha T)`` is large (measured on a9a,
    alpha 1e-3: 50 ms of channel delay took the model from 1e-5 to 3.0 relative
    suboptimality). ``damp = c beta0 D / T`` lowers that gain; the anchor, a
    moving average of ``x`` over the last ``T / anchor_rate`` steps, keeps the
    fixed point where it was.
    """
    params, clock = state.params, state.clock
    c = params["staleness_damping"]
    if c <= 0 or T <= 0:
        return 0.0
    since = clock["stepping_since"]
    if since is None:  # x is not yet a point of the duals (a fresh or restarted operator)
        clock.update(stepping_since=now, own_steps=0, t_anchor=int(state.t[0]), anchored=False)
        return 0.0
    if not clock["anchored"] or params["anchor_rate"] <= 0:
        state.anchor[:] = state.x
        clock["anchored"] = True
    else:
        t = max(int(state.t[0]), 1)
        weight = min(max(params["anchor_rate"] * (t - clock["t_anchor"]) / t, 0.0), 1.0)
        state.anchor[:] += weight * (state.x - state.anchor)
    clock["t_anchor"] = int(state.t[0])
    rate = clock["own_steps"] / max(now - since, 1e-3)  # this incarnation's steps per second
    return c * state.beta0 * rate * age / T


def _dual_message(state: RDAState, now: float) -> Outgoing:
    """The dual ``(G, t, share)``, ``G`` as a sparse delta (or full), plus any resync requests."""
    fields = state.pub.publish(state.G, now, t=int(state.t[0]), share=state.share)
    fields.update(state.sub.want_field(now))
    return Outgoing(fields)


def schema(problem: Problem) -> tuple[dict, dict]:
    """The dual: ``(t, share)`` and ``G`` as sparse-exchange fields; ``echo`` (with a dense
    ``G``) marks a dual sent back to a restarted peer."""
    return {"t": int, "share": float}, {**schema_fields("G", problem.p), "echo": bool}


def resume(state: RDAState, data: LocalData, start: Start) -> RDAState:
    """Start at the saved model: a dual whose RDA point is ``start.w``, with the saved step counts.

    Every operator takes the same averaged gradient ``g`` (so the network average is ``g``
    whatever the shares), solved from the closed form of the RDA point at ``T`` = the saved
    total steps (one pass over the data if unknown). The iterate average goes on from the
    saved one (this partition's, else the model) with the weight it had, ``sum T ~ t T / 2``.
    """
    pb, params = state.problem, state.params
    w0 = np.asarray(start.w, dtype=np.float64)
    own = start.own(data.index)
    T0, t0 = start.total("t"), int(own["t"]) if own is not None and "t" in own else 0
    if T0 <= 0 or t0 <= 0:
        T0 = max(pb.n_total // params["batch_size"], 1)
        t0 = max(data.n // params["batch_size"], 1)
    h = (state.beta0 + state.gamma * np.sqrt(T0)) / T0
    g = -h * w0
    coef = slice(0, pb.n_features)
    if pb.penalty == K.L2:
        g[coef] -= pb.alpha * w0[coef]
    else:
        g[coef] -= pb.alpha * np.sign(w0[coef])
    state.G[:] = t0 * g
    state.t[0] = t0
    state.x[:] = w0
    resume_average(state.xsum, state.wsum, own, w0, 0.5 * t0 * T0)
    return state


def snapshot(state: RDAState) -> dict:
    """The operator's estimate: its averaged iterate (or the last one), and its step count;
    ``gaps``: peers' pushes it missed (each cost one resync), ``resyncs``: fulls it sent."""
    if state.params["average"] and state.wsum[0] > 0:
        w = state.xsum / state.wsum[0]
    else:
        w = state.x.copy()
    return {"w": w, "t": int(state.t[0]), "gaps": state.sub.counts["gaps"],
            "resyncs": state.pub.counts["resync"]}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """The mean of the operators' estimates."""
    w = mean_of(snapshots, "w")
    return np.zeros(problem.p) if w is None else w


ALGORITHM = Algorithm("asip-sgd", init, local_step, snapshot, combine, DEFAULTS, schema=schema,
                      resume=resume)
