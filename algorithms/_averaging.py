"""``averaging``: one-shot parameter mixing -- solve each partition alone, then take the mean.

Every operator minimizes the full objective *on its own rows*,
``(1/n_i) sum_{rows of i} phi + R``, with no communication, and the result is
the plain mean of the local solutions (the ASIP paper's "AVG" baseline, without
its accidental pull towards a random start). The local solver is consensus ADMM
with a single block (`_admm_core`: SDCA for the loss, the exact prox for the
penalty), run until ``||z - z_prev||`` and ``||x - z||`` fall below
``tol * ||z||``. A finished operator tells its peers; the stage stops when
all have finished. It is not consistent -- the mean of local optima is not the
global optimum -- which is the point of the baseline.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from ._admm_core import LocalSolver, local_solve, new_local_solver, z_update
from ._base import Algorithm, LocalData, Outgoing, Problem, Start, StepOutput, mean_of

__all__ = ["ALGORITHM", "AveragingState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {"rho": None, "local_epochs": 2, "tol": 1e-7, "max_iter": 10_000,
            "resend_after": 0.1, "seed": None}


class AveragingState(NamedTuple):
    problem: Problem
    params: dict
    rho: float
    solver: LocalSolver
    mem: dict  # x, y, z, k, finished, peers_done, pushed


def init(problem: Problem, data: LocalData, params: dict) -> AveragingState:
    curv = problem.curvature if problem.curvature is not None else 1.0
    rho = params["rho"] if params["rho"] is not None else max(curv * problem.row_scale / 10, 1e-8)
    seed = params["seed"]
    seed = (0 if seed is None else seed) * 1_000_003 + data.index * 7919 + data.incarnation
    p = problem.p
    mem = {"x": np.zeros(p), "y": np.zeros(p), "z": np.zeros(p), "k": 0, "finished": False,
           "peers_done": set(), "pushed": -np.inf}
    return AveragingState(problem, params, float(rho), new_local_solver(problem, data, seed), mem)


def local_step(state: AveragingState, data: LocalData, inbox, now: float) -> StepOutput:
    mem, params, pb = state.mem, state.params, state.problem
    for msg in inbox:
        if msg.payload.get("done"):
            mem["peers_done"].add(msg.sender)
    if mem["finished"]:
        if len(mem["peers_done"]) >= data.n_partitions - 1:
            return StepOutput(state, done=True)
        out = ()
        if now - mem["pushed"] >= params["resend_after"]:
            mem["pushed"] = now
            out = (Outgoing({"done": True}),)
        return StepOutput(state, out, wait=0.05)
    v = mem["z"] - mem["y"] / state.rho
    mem["x"] = local_solve(state.solver, pb, data, v, state.rho, params["local_epochs"],
                           c=1.0 / data.n)
    z_old = mem["z"]
    mem["z"] = z_update(pb, mem["x"], mem["y"], state.rho, 1)
    mem["y"] = mem["y"] + state.rho * (mem["x"] - mem["z"])
    mem["k"] += 1
    scale = max(float(np.linalg.norm(mem["z"])), 1e-12)
    if mem["k"] > 1 and (float(np.linalg.norm(mem["z"] - z_old)) <= params["tol"] * scale
                         and float(np.linalg.norm(mem["x"] - mem["z"])) <= params["tol"] * scale
                         or mem["k"] >= params["max_iter"]):
        mem["finished"] = True
        mem["pushed"] = now
        return StepOutput(state, (Outgoing({"done": True}),))
    return StepOutput(state)


def schema(problem: Problem) -> tuple[dict, dict]:
    """The only message is ``{"done": True}``."""
    return {"done": bool}, {}


def resume(state: AveragingState, data: LocalData, start: Start) -> AveragingState:
    """Start the local solve at the saved model."""
    state.mem["z"] = np.array(start.w, dtype=np.float64)
    state.mem["x"] = state.mem["z"].copy()
    return state


def snapshot(state: AveragingState) -> dict:
    return {"w": state.mem["z"].copy(), "k": int(state.mem["k"])}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    w = mean_of(snapshots, "w")
    return np.zeros(problem.p) if w is None else w


ALGORITHM = Algorithm("averaging", init, local_step, snapshot, combine, DEFAULTS,
                      deterministic=True, schema=schema, resume=resume)
