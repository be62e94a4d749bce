"""ASIP-ADMM: asynchronous consensus ADMM in which every operator keeps its own ``z``.

The asynchronous ADMM of the ASIP paper (the authors' "PORKCHOP"). Each
operator loops, never waiting for anyone (`_admm_core` holds the updates)::

    x_i <- argmin f_i(x) + (rho/2) ||x - (z_i - y_i/rho)||^2      (SDCA epochs, warm-started)
    z_i <- prox_{R/(N rho)}( mean_j (x_j + y_j / rho) )           (self + latest from each peer)
    y_i <- y_i + rho (x_i - z_i)
    push (x_i, y_i) if ``push_period`` has passed since the last push

Receivers keep only the *latest* ``(x_j, y_j)`` per sender (ordered by
incarnation and round), so messages are idempotent state: a dropped one is
replaced by the next, a late one is ignored. Peers not heard from yet are left
out of the mean (``N`` in the threshold stays the true count). The l1 ``z``
step is the correct soft threshold (the authors' code shifted small entries
instead of zeroing them). The ASIP code's table was written by another thread
without a lock -- here it is only touched by the operator's own thread.

``rho`` defaults (``rho_rule="auto"``) to a ``sqrt(mu L)``-type choice for the
hinge with an l2 penalty, floored at an eighth of the ``alpha``-blind one, and to
the ``alpha``-blind one otherwise (`_admm_core.default_rho`; see `auto_rho` for
the measurements). ``relaxation`` (gamma)
over-relaxes as in the synchronous ``admm`` (each operator sends
``x^_i = gamma x_i + (1 - gamma) z_i``), but defaults to 1 (none): with the
staleness of asynchronous peers, gamma = 1.3 already diverged on a9a hinge and
1.5 on least squares in the same measurement, where the synchronous ``admm``
is stable up to 1.8.

``push_period`` defaults to 10 ms, not the paper's 100 ms: the paper's local
solve was up to 10,000 SGD steps, ours is one SDCA epoch (well under a
millisecond on a partition of a few thousand rows), and with 100 ms between
pushes an operator runs hundreds of rounds against frozen peers (measured:
1e-2 relative suboptimality after 1 s on a9a, against 1e-12 with 10 ms).
Pass ``push_period=0.1`` to reproduce the paper's setting.

A restarted operator (incarnation > 0) gets its lost state back from its
peers by the echo/rejoin protocol the asynchronous solvers share (`_rejoin`):
it announces itself with ``k = 0``; a peer that knew an
older incarnation keeps using that one's last ``(x_j, y_j)`` and echoes it back
(``echo=True``); the restarted operator takes it up, redoes the dual step with
the ``z`` of the current states, and goes on from there, once it has the echo
and a state from every peer (or after ``rejoin_wait``). If nobody remembers it,
it starts from ``x_i = z_i`` (from the peers) and ``y_i = 0``, which costs a
long detour: the duals are most of what ADMM has learnt (measured on 4
partitions of a9a: 1.5x the fault-free suboptimality 1.4 s after the restart,
1.1x with the echo).
The output (`combine`) applies the ``z`` step once to the mean of all
operators' final ``(x_i, y_i)``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._admm_core import LocalSolver, default_rho, local_solve, setup, z_update
from ._base import Algorithm, LocalData, Outgoing, Problem, Start, StepOutput
from ._rejoin import PeerStates

__all__ = ["ALGORITHM", "AsyncADMMState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "rho": None,
    # default rho: "legacy" (alpha-blind), "sqrt" sqrt(mu L)-type (`_admm_core.default_rho`),
    # or "auto" (`auto_rho`): for hinge with l2 "sqrt" floored at "legacy" / 8, else "legacy".
    # "sqrt" wins in lock-step simulation but left a 2 s, 4-operator a9a log_loss fit (alpha
    # 1e-3) at 0.46 on the cluster, where "legacy" is in the 1e-5 band (test_fault_convergence)
    "rho_rule": "auto",
    "relaxation": 1.0,  # over-relaxation gamma in (0, 2); > 1 is unstable with stale peers
    "local_epochs": 1,
    "push_period": 0.01,
    "rejoin_wait": 0.3,
    "seed": None,
}


class AsyncADMMState(NamedTuple):
    problem: Problem
    params: dict
    rho: float
    solver: LocalSolver
    table: PeerStates  # latest (x_j, y_j) per peer and its round k_j (`_rejoin`)
    mem: dict  # x, y, z, k, pushed, started, phase


#: ``rho_rule="auto"`` on hinge-l2: the sqrt rule's rho, but at least the alpha-blind one over
#: this (`auto_rho`)
AUTO_FLOOR = 8.0


def auto_rho(problem: Problem) -> float | None:
    """``rho_rule="auto"``: for the hinge with a strongly convex penalty ``max(sqrt rule,
    legacy rule / AUTO_FLOOR)`` (`_admm_core.default_rho`); None elsewhere (the legacy rule).

    The legacy rule's ``L`` is a stand-in for the hinge (no curvature: 1 a row); with alpha
    0.1 it is 4-10x the sqrt rule's rho on a9a and synthetic data, where lock-step rounds to
    1e-6 (2 partitions) drop 95 -> 27 and 223 -> 27 (ijcnn1 14 -> 12, reuters 11 -> 11). Where
    ``L / mu`` is huge (skin_nonskin's unscaled features: 6e5) the sqrt rule alone is 260x
    below the legacy one and does not reach 1e-3 in 400 rounds; the floor (32x the sqrt rule
    there) reaches 1e-6 in 47 (legacy: 184). Smooth losses keep the legacy rule (the cluster
    fault fit under DEFAULTS).
    """
    if problem.loss != K.HINGE or problem.mu <= 0:
        return None
    return max(default_rho(problem, "sqrt"), default_rho(problem, "legacy") / AUTO_FLOOR)


def _setup_params(problem: Problem, params: dict) -> dict:
    """``params`` for `_admm_core.setup`, with ``rho_rule="auto"`` resolved (`auto_rho`)."""
    rule = params["rho_rule"]
    if rule not in ("auto", "legacy", "sqrt"):
        raise ValueError(f"unknown rho_rule {rule!r} for solver 'asip-admm'; valid rules are "
                         "['auto', 'legacy', 'sqrt']")
    if rule != "auto":
        return params
    rho = auto_rho(problem) if params["rho"] is None else None
    return {**params, "rho_rule": "legacy"} if rho is None else {**params, "rho": rho}


def init(problem: Problem, data: LocalData, params: dict) -> AsyncADMMState:
    rho, solver = setup(problem, data, _setup_params(problem, params), "asip-admm")
    p = problem.p
    mem = {"x": np.zeros(p), "y": np.zeros(p), "y_used": np.zeros(p), "z": np.zeros(p), "k": 0,
           "pushed": -np.inf, "started": None,
           "phase": "run" if data.incarnation == 0 else "rejoin"}
    return AsyncADMMState(problem, params, rho, solver,
                          PeerStates(("x", "y"), "k", expecting=data.incarnation > 0), mem)


def _absorb(state: AsyncADMMState, inbox) -> tuple:
    """Keep the latest state per sender (`_rejoin.PeerStates`); returns the echoes owed to peers.

    A restarted operator takes the first echo of its own state up as its saved round.
    """
    echoes, own = state.table.absorb(inbox)
    mem = state.mem
    if own is not None and mem["phase"] == "rejoin":
        mem["x"], mem["y_used"], mem["k"] = own["x"], own["y"], int(own["k"])
    return echoes


def _z(state: AsyncADMMState, data: LocalData, include_self: bool) -> np.ndarray:
    xs = [pe.state["x"] for pe in state.table.values()]
    ys = [pe.state["y"] for pe in state.table.values()]
    if include_self:
        xs.append(state.mem["x"])
        ys.append(state.mem["y"])
    return z_update(state.problem, np.mean(xs, axis=0), np.mean(ys, axis=0), state.rho,
                    data.n_partitions)


def local_step(state: AsyncADMMState, data: LocalData, inbox, now: float) -> StepOutput:
    """One inexact local solve, a local z step from the latest states, a dual step, maybe a push."""
    mem, params = state.mem, state.params
    echoes = _absorb(state, inbox)
    if mem["started"] is None:
        mem["started"] = now
    waiting = now - mem["started"] < params["rejoin_wait"] and data.n_partitions > 1
    if mem["phase"] == "resume":
        # a warm start from every operator's saved (x, y, z): a z step before the peers'
        # states are in would be a local one (a jump of y_i/rho); push ours, wait for theirs
        if len(state.table) < data.n_partitions - 1 and waiting:
            return StepOutput(state, echoes + _push_state(state, now), wait=0.02)
        mem["phase"] = "run"
        state.table.stop_expecting()
    if mem["phase"] == "rejoin":
        # a restart: wait for our old state (echoed) and a state from every peer
        if not state.table.ready(data.n_partitions) and waiting:
            return StepOutput(state, echoes + _push_state(state, now), wait=0.02)
        state.table.stop_expecting()  # a late echo must not overwrite a running state
        if state.table.recovered:  # redo the dual step of the saved round with today's z
            mem["y"] = mem["y_used"]
            mem["z"] = _z(state, data, include_self=True)
            mem["y"] = mem["y_used"] + state.rho * (mem["x"] - mem["z"])
        elif state.table:
            mem["z"] = _z(state, data, include_self=False)
            mem["x"] = mem["z"].copy()
        mem["phase"] = "run"
    v = mem["z"] - mem["y"] / state.rho
    x = local_solve(state.solver, state.problem, data, v, state.rho, params["local_epochs"])
    gamma = params["relaxation"]
    # over-relaxation: the z and dual steps see x^ = gamma x + (1 - gamma) z (Eckstein-Bertsekas)
    mem["x"] = x if gamma == 1.0 else gamma * x + (1.0 - gamma) * mem["z"]
    mem["z"] = _z(state, data, include_self=True)
    # (x_i, y_i) travel as the pair the z step uses: y_i is the dual this x step saw
    mem["y_used"] = mem["y"]
    mem["y"] = mem["y"] + state.rho * (mem["x"] - mem["z"])
    mem["k"] += 1
    return StepOutput(state, echoes + _push_state(state, now))


def _push_state(state: AsyncADMMState, now: float) -> tuple:
    """``(x_i, y_i, k)`` if ``push_period`` has passed (``k = 0`` announces a restart)."""
    mem = state.mem
    if now - mem["pushed"] < state.params["push_period"]:
        return ()
    mem["pushed"] = now
    return (Outgoing({"x": mem["x"], "y": mem["y_used"], "k": mem["k"]}),)


def schema(problem: Problem) -> tuple[dict, dict]:
    """An operator's latest ``(x_i, y_i)`` and its round ``k``."""
    vec = ("float64", (problem.p,))
    return {"x": vec, "y": vec, "k": int}, {"echo": bool}


def resume(state: AsyncADMMState, data: LocalData, start: Start) -> AsyncADMMState:
    """Continue from this partition's saved ``(x_i, y_i, z_i)``, else from consensus at ``start.w``.

    A snapshot holds the dual its ``x_i`` step used; the dual step after it is redone here,
    so the next round is the one the saved run would have taken.
    """
    mem, p = state.mem, state.problem.p
    own = start.own(data.index)
    if own is not None and all(np.shape(own.get(key)) == (p,) for key in ("x", "y", "z")):
        mem["x"], mem["z"] = np.array(own["x"], dtype=np.float64), np.array(own["z"], dtype=np.float64)
        mem["y_used"] = np.array(own["y"], dtype=np.float64)
        mem["y"] = mem["y_used"] + float(own.get("rho", state.rho)) * (mem["x"] - mem["z"])
        mem["k"] = int(own.get("k", 0))
        mem["phase"] = "resume" if data.n_partitions > 1 else "run"
    else:
        mem["z"] = np.array(start.w, dtype=np.float64)
        mem["x"] = mem["z"].copy()
    return state


def snapshot(state: AsyncADMMState) -> dict:
    mem = state.mem
    return {"x": mem["x"].copy(), "y": mem.get("y_used", mem["y"]).copy(), "z": mem["z"].copy(),
            "rho": state.rho, "k": int(mem["k"])}


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """``prox_{R/(N rho)}(mean x_i + mean y_i / rho)`` over the operators that reported."""
    got = [s for s in snapshots if s is not None and "x" in s]
    if not got:
        return np.zeros(problem.p)
    xbar = np.mean([s["x"] for s in got], axis=0)
    ybar = np.mean([s["y"] for s in got], axis=0)
    return z_update(problem, xbar, ybar, float(got[0]["rho"]), problem.n_partitions)


ALGORITHM = Algorithm("asip-admm", init, local_step, snapshot, combine, DEFAULTS, schema=schema,
                      resume=resume)
