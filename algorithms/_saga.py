"""``saga``: the *sequential* baseline -- block-cyclic proximal SAGA, the model passed round a ring.

This is not a parallel or asynchronous method, and it is named and measured as
what it is: one chunk at a time, as a single-machine SAGA would walk through
data too big for one machine. Only one operator computes at any time; with
``N`` workers it uses one core's worth of compute and pays a hop per pass. Use
it as the sequential reference a parallel solver must beat.

Operator ``i`` waits for the *token* -- the model ``w``, the per-partition sums
of gradient memory ``S`` (``N x p``; their total over ``n`` is SAGA's averaged
gradient), and a hop counter -- runs one pass of proximal SAGA steps over its
own rows (`_kernels.saga_steps`, with the per-row memory it keeps locally), and
pushes the token to ``(i + 1) % N``.

What the sampling does: within a pass, rows are drawn from the holder's
partition only, while the control variate ``gbar`` averages the memory of all
rows. So a single step is *not* an unbiased estimate of the global gradient
(the other partitions' memory is stale by up to one ring round) -- this is
SAGA with block-cyclic sampling, an incremental method like cyclic SAG, not
the uniformly sampled SAGA of Defazio et al. Its fixed point is still exactly
the optimum: there every row's memory equals its gradient at ``w*``, the
correction terms vanish, and the step is the full proximal gradient step.
(Tested to 1e-8 relative suboptimality in ``tests/algorithms``.)

On sparse (CSR) data a step costs O(nnz of its row), not O(d)
(`_kernels.saga_steps_lazy`: a coefficient's missed steps are applied in closed
form when a row next reads it).

Step size ``1 / (3 L_max)`` with ``L_max = curvature * max ||[a_i, 1]||^2``
(Defazio, Bach & Lacoste-Julien 2014); for hinge, whose SAGA has no guarantee,
the same with curvature 1.

The token must not be lost: the receiver acknowledges each hop and the sender
re-pushes its last token every ``resend_after`` seconds until it is
acknowledged; hop numbers make duplicates harmless. A restarted operator has
lost its memory: it announces itself (``hello``), its predecessor re-sends the
last token it passed, and the restarted operator's row of ``S`` is reset to
its (now empty) memory, so ``S`` stays consistent. Stops after ``max_iter``
passes over all the data, or when a full round of the ring changes ``w`` by
less than ``tol * ||w||``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._base import Algorithm, LocalData, Outgoing, Problem, Start, StepOutput, latest_of

__all__ = ["ALGORITHM", "SagaState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {"step": None, "tol": 1e-7, "max_iter": None, "resend_after": 0.1, "seed": None}


class SagaState(NamedTuple):
    problem: Problem
    params: dict
    mem: np.ndarray  # per-row remembered phi'
    rng: np.ndarray
    step: float
    ring: dict  # token, holding, max_hop, last_sent, sent_at, acked, w_prev, hello


def init(problem: Problem, data: LocalData, params: dict) -> SagaState:
    curv = problem.curvature if problem.curvature is not None else 1.0
    step = params["step"]
    if step is None:
        step = 1.0 / (3.0 * curv * (problem.sq_max + problem.fit_intercept) + 1e-12)
    seed = params["seed"]
    seed = (0 if seed is None else seed) * 1_000_003 + data.index * 7919 + data.incarnation
    ring = {"token": None, "holding": False, "max_hop": -1, "last_sent": None, "sent_at": 0.0,
            "acked": True, "w_prev": None, "hello": data.incarnation > 0, "done": False,
            "own_sum": np.zeros(problem.p)}  # sum_i mem_i [a_i, 1] over this partition
    if data.index == 0 and data.incarnation == 0:
        ring["token"] = {"w": np.zeros(problem.p),
                         "S": np.zeros((data.n_partitions, problem.p)), "h": 0}
        ring["holding"], ring["max_hop"] = True, 0
    return SagaState(problem, params, np.zeros(data.n), K.make_rng(seed), float(step), ring)


def _absorb(state: SagaState, data: LocalData, inbox) -> list:
    ring, out = state.ring, []
    for msg in inbox:
        pl = msg.payload
        if "h" in pl and "w" in pl and "S" in pl:  # the token (all three, or it is not one)
            h = int(pl["h"])
            out.append(Outgoing({"ack": h}, to=msg.sender))
            if h > ring["max_hop"]:
                ring["max_hop"] = h
                ring["token"] = {"w": np.array(pl["w"]), "S": np.array(pl["S"]), "h": h}
                ring["holding"] = True
                if pl.get("stop"):
                    ring["done"] = True
        elif "ack" in pl:
            if ring["last_sent"] is not None and int(pl["ack"]) >= ring["last_sent"]["h"]:
                ring["acked"] = True
        elif pl.get("hello") and ring["last_sent"] is not None and \
                msg.sender == (data.index + 1) % data.n_partitions:
            ring["acked"] = False
            ring["sent_at"] = -np.inf  # re-send at once
    return out


def _token_payload(tok: dict, stop: bool = False) -> dict:
    return {"w": tok["w"], "S": tok["S"], "h": int(tok["h"]), "stop": bool(stop)}


def local_step(state: SagaState, data: LocalData, inbox, now: float) -> StepOutput:
    """If holding the token: one SAGA pass over the local rows, then pass it on; else wait."""
    ring, params, pb = state.ring, state.params, state.problem
    out = _absorb(state, data, inbox)
    if ring["hello"]:
        ring["hello"] = False
        out.append(Outgoing({"hello": True}))
    if ring["done"]:
        return StepOutput(state, tuple(out), done=True)
    if not ring["holding"]:
        if not ring["acked"] and now - ring["sent_at"] >= params["resend_after"]:
            ring["sent_at"] = now
            out.append(Outgoing(_token_payload(ring["last_sent"]),
                                to=(data.index + 1) % data.n_partitions))
        return StepOutput(state, tuple(out), wait=0.02)
    tok = ring["token"]
    w, S = tok["w"], tok["S"]
    n = pb.n_total
    # this operator's row of S is what its memory sums to now (zero after a restart)
    S[data.index] = ring["own_sum"]
    gbar = S.sum(axis=0) / n
    gbar_before = gbar.copy()
    # CSR data: O(nnz of the row) per step (just-in-time updates); dense: the plain loop
    steps = K.saga_steps_lazy if isinstance(data.X, tuple) else K.saga_steps
    steps(data.X, data.y, pb.loss, pb.fit_intercept, data.n, state.rng, w, state.mem,
          gbar, float(n), state.step, pb.penalty, pb.alpha)
    ring["own_sum"] = ring["own_sum"] + (gbar - gbar_before) * n
    S[data.index] = ring["own_sum"]
    h = tok["h"] + 1
    done = False
    if params["max_iter"] is not None and h >= params["max_iter"] * data.n_partitions:
        done = True
    if ring["w_prev"] is not None:
        done = done or float(np.linalg.norm(w - ring["w_prev"])) <= params["tol"] * max(
            float(np.linalg.norm(w)), 1e-12)
    ring["w_prev"] = w.copy()
    new_tok = {"w": w, "S": S, "h": h}
    ring["max_hop"] = h
    if data.n_partitions == 1:
        ring["token"] = new_tok
        return StepOutput(state, tuple(out), done=done)
    ring.update(token=new_tok, holding=False, last_sent=new_tok, sent_at=now, acked=False)
    out.append(Outgoing(_token_payload(new_tok, stop=done),
                        to=(data.index + 1) % data.n_partitions))
    return StepOutput(state, tuple(out), done=done)


def schema(problem: Problem) -> tuple[dict, dict]:
    """The token ``(w, S, h, stop)``, an ``ack`` or a ``hello``: every key optional."""
    return {}, {"w": ("float64", (problem.p,)),
                "S": ("float64", (problem.n_partitions, problem.p)),
                "h": int, "stop": bool, "ack": int, "hello": bool}


def resume(state: SagaState, data: LocalData, start: Start) -> SagaState:
    """The token starts at the saved model (the gradient memory starts empty, as usual)."""
    if state.ring["token"] is not None:
        state.ring["token"]["w"] = np.array(start.w, dtype=np.float64)
    return state


def snapshot(state: SagaState) -> dict:
    tok = state.ring["token"]
    if tok is None:
        return {"h": -1, "w": np.zeros(state.problem.p)}
    return {"w": np.array(tok["w"]), "h": int(tok["h"])}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """The model of the most recent hop of the token."""
    s = latest_of(snapshots, "h")
    return np.zeros(problem.p) if s is None else np.asarray(s["w"], dtype=np.float64)


ALGORITHM = Algorithm("saga", init, local_step, snapshot, combine, DEFAULTS, uses_tol=True,
                      schema=schema, resume=resume)
