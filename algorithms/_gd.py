"""``gd``: synchronous full-batch (proximal) gradient descent, one all-reduce per step.

The baseline the ASIP paper compares against (MLlib's full-batch gradient
descent), written as it should be: every operator holds the same ``w_k``,
computes the loss and gradient sums of its rows at ``w_k``, and all-reduces
them over the channel (`_barrier.Barrier`: push, wait for all ``N``, reduce in
partition order), so each operator takes the identical step

* smooth losses (logistic, squared): ``w_{k+1} = prox_{R/L}(w_k - grad/L)``,
  the classical constant step ``1/L``; ``L = curvature * sum_i ||[A_i, 1]||_2^2
  / n (+ alpha for l2)`` from each partition's power-iteration estimate of
  its spectral norm (an upper bound on the true ``L`` within ~N, known to every
  operator after round 0);
* hinge: the proximal subgradient method with ``eta_k = R0 / (G sqrt(k+1))``,
  ``G = sqrt(mean ||[a_i, 1]||^2)`` bounding the subgradient norm and
  ``R0 = sqrt(2 / alpha)`` bounding ``||w*||`` for l2 (``f(w*) <= f(0) = 1``),
  1 for l1; the output is the best iterate seen (the reduction gives every
  operator the objective value at ``w_k`` for free).

``schedule="invsqrt"`` replaces the ``1/L`` step of the smooth losses by MLlib's
``eta0 / sqrt(k + 1)`` (``eta0`` = 0.1 in the ASIP paper's harness): the
baseline exactly as the paper ran it, for reproducing its comparisons. It is
far slower than ``1/L`` on these problems; the default is the honest baseline.

Stopping: ``max_iter`` rounds, or, for smooth losses, when the gradient-mapping
norm ``L ||w_{k+1} - w_k||`` falls below ``tol`` times its first value. Every
operator decides on the same numbers, so all stop at the same round.
A restarted operator joins at the lowest round a peer is at, with the ``w_k``
that peer sent.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from . import _weights as W
from ._barrier import Barrier
from ._barrier import push_own as _push
from ._barrier import rejoin
from ._base import Algorithm, LocalData, Problem, Start, StepOutput, latest_of

__all__ = ["ALGORITHM", "GDState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "schedule": "constant",  # "constant": 1/L (smooth losses); "invsqrt": eta0/sqrt(k+1)
    "eta0": 0.1,
    "tol": 1e-6,
    "max_iter": None,
    "resend_after": 0.1,
    "rejoin_wait": 0.5,
    "poll_wait": 0.02,
}


class GDState(NamedTuple):
    problem: Problem
    params: dict
    barrier: Barrier
    grad: np.ndarray  # scratch for the local gradient
    sq: float  # this partition's ||[A_i, 1]||_2^2 estimate
    sqsum: float  # sum of ||[a, 1]||^2 over this partition's rows
    mem: dict  # k, w, own, prev_own, L, G, best_f, best_w, gm0, phase, started


def init(problem: Problem, data: LocalData, params: dict) -> GDState:
    if params["schedule"] not in ("constant", "invsqrt"):
        raise ValueError(f"unknown schedule {params['schedule']!r} for solver 'gd'; valid "
                         "schedules are ['constant', 'invsqrt']")
    sq = K.power_sqnorm(data.X, problem.n_features, problem.fit_intercept, 50,
                        K.make_rng(1234 + data.index))
    mem = {"k": 0, "w": np.zeros(problem.p), "own": None, "prev_own": None, "L": None,
           "G": None, "best_f": np.inf, "best_w": np.zeros(problem.p), "gm0": None,
           "phase": "run" if data.incarnation == 0 else "rejoin", "started": None}
    return GDState(problem, params, Barrier(data.index, data.n_partitions),
                   np.zeros(problem.p), float(sq) * 1.02 * W.max_weight(data),
                   float(np.sum(data.sqn)), mem)


def _contribution(state: GDState, data: LocalData, w: np.ndarray) -> dict:
    pb = state.problem
    f = W.loss_grad(data, w, pb.loss, pb.fit_intercept, state.grad)  # row weights, if any
    return {"g": state.grad.copy(), "f": float(f), "w": w.copy(), "sq": state.sq,
            "sqsum": state.sqsum}


def local_step(state: GDState, data: LocalData, inbox, now: float) -> StepOutput:
    """Wait for round ``k``'s contributions; when all are in, step and push round ``k+1``'s."""
    mem, params, bar, pb = state.mem, state.params, state.barrier, state.problem
    bar.absorb(inbox)
    if mem["started"] is None:
        mem["started"] = now
    if mem["phase"] == "rejoin":
        if rejoin(state, data.n_partitions, now, "w"):
            return StepOutput(state, wait=params["poll_wait"])
    if mem["own"] is None:  # first contribution of this incarnation
        mem["own"] = _contribution(state, data, mem["w"])
        return StepOutput(state, _push(state, now))
    k = mem["k"]
    if not bar.complete(k):
        out = _push(state, now) if bar.should_resend(now, params["resend_after"]) else ()
        return StepOutput(state, out, wait=params["poll_wait"])
    parts = bar.gather(k, mem["own"])
    n = pb.n_total
    G = np.sum([c["g"] for c in parts], axis=0) / n
    coef = mem["w"][: pb.n_features]
    pen = 0.5 * pb.alpha * coef @ coef if pb.penalty == K.L2 else pb.alpha * np.abs(coef).sum()
    F = sum(float(c["f"]) for c in parts) / n + pen
    if F < mem["best_f"]:
        mem["best_f"], mem["best_w"] = F, mem["w"].copy()
    if mem["L"] is None:
        total_sq = sum(float(c["sq"]) for c in parts)
        if pb.curvature is not None:
            mem["L"] = pb.curvature * total_sq / n + pb.mu
        mem["G"] = math.sqrt(sum(float(c["sqsum"]) for c in parts) / n)
    w = mem["w"]
    done = False
    if params["schedule"] == "invsqrt":
        eta = params["eta0"] / math.sqrt(k + 1.0)
        w_new = pb.prox(w - eta * G, eta)
    elif pb.curvature is not None:
        L = mem["L"]
        w_new = pb.prox(w - G / L, 1.0 / L)
        gm = L * float(np.linalg.norm(w_new - w))
        if mem["gm0"] is None:
            mem["gm0"] = max(gm, 1e-300)
        done = gm <= params["tol"] * mem["gm0"]
    else:
        r0 = math.sqrt(2.0 / pb.alpha) if (pb.penalty == K.L2 and pb.alpha > 0) else 1.0
        eta = r0 / (max(mem["G"], 1e-12) * math.sqrt(k + 1.0))
        w_new = pb.prox(w - eta * G, eta)
    if params["max_iter"] is not None and k + 1 >= params["max_iter"]:
        done = True
    bar.prune(k + 1)
    mem["k"], mem["w"] = k + 1, w_new
    mem["prev_own"] = mem["own"]
    if done:
        return StepOutput(state, done=True)
    mem["own"] = _contribution(state, data, w_new)
    return StepOutput(state, _push(state, now), wait=params["poll_wait"])


def schema(problem: Problem) -> tuple[dict, dict]:
    """Barrier messages: this round's and the last round's contributions (`_contribution`)."""
    vec = ("float64", (problem.p,))
    return Barrier.schema({"g": vec, "f": float, "w": vec, "sq": float, "sqsum": float})


def resume(state: GDState, data: LocalData, start: Start) -> GDState:
    """Start the iteration at the saved model."""
    state.mem["w"] = np.array(start.w, dtype=np.float64)
    return state


def snapshot(state: GDState) -> dict:
    """The current iterate (smooth losses: monotone) or the best one seen (hinge)."""
    mem = state.mem
    if state.problem.curvature is None and np.isfinite(mem["best_f"]):
        return {"w": mem["best_w"].copy(), "k": int(mem["k"])}
    return {"w": mem["w"].copy(), "k": int(mem["k"])}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """Every operator holds the same model: take the most advanced one."""
    s = latest_of(snapshots, "k")
    return np.zeros(problem.p) if s is None else np.asarray(s["w"], dtype=np.float64)


ALGORITHM = Algorithm("gd", init, local_step, snapshot, combine, DEFAULTS,
                      deterministic=True, uses_tol=True, schema=schema, resume=resume,
                      sample_weight=True)
